/*
 * base/json_strict.c — fl_json_strict (see json_strict.h): the SDK's check,
 * worded as a framework error.
 */
#include "json_strict.h"

#include "error.h"
#include "ffnlab/json_check.h" /* fl_json_check */

fl_status fl_json_strict(const char *text, size_t len, const char *where, size_t at, int64_t line, fl_error *err) {
    fl_json_problem p;
    fl_json_fault f = fl_json_check(text, len, at, &p);
    if (!f) return FL_OK;
    fl_status code = f == FL_JSON_NO_MEMORY ? FL_ENOMEM : FL_EINVAL;
    if (line > 0) return fl_fail(err, code, "%s:%lld: %s", where, (long long)line, p.what);
    return fl_fail(err, code, "%s: line %lld: %s", where, p.line, p.what);
}
