/*
 * base/error.c — fl_fail and friends (see error.h).
 */
#include "error.h"

#include <stdarg.h>  /* va_list */
#include <stdio.h>   /* vsnprintf */
#include <string.h>  /* memcpy, strncmp */

fl_status fl_fail(fl_error *err, fl_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void fl_error_prefix(fl_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[FL_ERRMSG_LEN], old[FL_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t k = strlen(prefix);
    if (!strncmp(old, prefix, k) && !strncmp(old + k, ": ", 2)) return; /* said already (a plugin names its flag too) */
    if (k + 2 >= sizeof err->msg) k = sizeof err->msg - 3;
    memcpy(err->msg, prefix, k);
    memcpy(err->msg + k, ": ", 2);
    size_t m = strlen(old), room = sizeof err->msg - k - 3;
    memcpy(err->msg + k + 2, old, m < room ? m : room); /* truncation is fine */
    err->msg[k + 2 + (m < room ? m : room)] = 0;
}
