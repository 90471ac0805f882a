/*
 * core/host.h — filling the fl_host table plugins receive.
 */
#ifndef FFNLAB_HOST_IMPL_H
#define FFNLAB_HOST_IMPL_H

#include "backend.h"
#include "ffnlab/host.h"

/* Fills h for backend be and communicator comm (NULL = single process). */
void fl_host_init(fl_host *h, const fl_backend *be, const fl_comm *comm);
const fl_backend *fl_host_backend(const fl_host *h);

/* Log verbosity for host->log (FL_LOG_*); default FL_LOG_INFO. */
void fl_log_set_level(int level);
void fl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define fl_log_info(...) fl_log(FL_LOG_INFO, __VA_ARGS__)
#define fl_log_warn(...) fl_log(FL_LOG_WARN, __VA_ARGS__)

#endif
