/*
 * base/error.h — building fl_error values.
 *
 * fl_fail() is the one way code in the framework reports an error: it writes
 * the message and returns the code, so a failing branch is one line:
 *     if (n < 1) return fl_fail(err, FL_EINVAL, "%s: empty corpus", path);
 * The same function is handed to plugins as host->error.
 */
#ifndef FFNLAB_ERROR_H
#define FFNLAB_ERROR_H

#include "ffnlab/status.h"

fl_status fl_fail(fl_error *err, fl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->msg with "prefix: " (to add context as an error travels up),
   unless the message starts with it already. */
void fl_error_prefix(fl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
