/*
 * base/log.c — log lines on stderr (see log.h).
 */
#include "log.h"

#include <stdio.h>

static int g_log_level = FL_LOG_INFO;

void fl_log_set_level(int level) { g_log_level = level; }

void fl_logv(int level, const char *fmt, va_list ap) {
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level > g_log_level) return;
    fprintf(stderr, "ffnlab: %s: ", names[level < 0 ? 0 : level > 3 ? 3 : level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void fl_log(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fl_logv(level, fmt, ap);
    va_end(ap);
}
