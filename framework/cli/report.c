/*
 * cli/report.c — the one place errors are printed (see cli.h), and --json
 * files written for the commands.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "error.h"
#include "job.h"
#include "results.h"

int fl_cli_report(const fl_error *err) {
    fprintf(stderr, "ffnlab: error: %s\n", err->msg[0] ? err->msg : "unknown error");
    return 1;
}

int fl_cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ffnlab %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see ffnlab %s --help)\n", cmd);
    va_end(ap);
    return 2;
}

int fl_cli_write_json(const char *path, struct cJSON *doc) {
    fl_error err = {0};
    fl_status st = doc ? fl_json_write_file(path, doc, &err) : fl_fail(&err, FL_ENOMEM, "out of memory");
    cJSON_Delete(doc);
    if (st) fl_error_prefix(&err, "--json");
    return st ? fl_cli_report(&err) : 0;
}

int fl_cli_json_target(const char *path) {
    fl_error err = {0};
    return path && fl_json_check_report(path, &err) ? fl_cli_report(&err) : 0;
}

int fl_cli_int(const char *cmd, const char *flag, const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return fl_cli_usage(cmd, "%s: '%s' is not an integer in [%d, %d]", flag, s, lo, hi);
    *out = (int)v;
    return 0;
}

int fl_cli_precision(const char *cmd, const char *mode) {
    fl_error err = {0};
    return fl_job_request_precision(mode, &err) ? fl_cli_usage(cmd, "%s", err.msg) : 0;
}
