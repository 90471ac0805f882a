/*
 * base/log.h — the framework's log lines on stderr ("ffnlab: info: ...").
 *
 * Levels are ffnlab/host.h's FL_LOG_*; plugins log through host->log, which
 * ends here too. Messages above the level set are dropped.
 */
#ifndef FFNLAB_LOG_H
#define FFNLAB_LOG_H

#include "ffnlab/host.h" /* FL_LOG_ERROR .. FL_LOG_DEBUG */

#include <stdarg.h>

/* The most verbose level printed (FL_LOG_*); default FL_LOG_INFO. */
void fl_log_set_level(int level);
void fl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fl_logv(int level, const char *fmt, va_list ap);
#define fl_log_info(...) fl_log(FL_LOG_INFO, __VA_ARGS__)
#define fl_log_warn(...) fl_log(FL_LOG_WARN, __VA_ARGS__)

#endif
