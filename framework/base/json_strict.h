/*
 * base/json_strict.h — one JSON text held to RFC 8259 where cJSON is lenient.
 *
 * Every framework reader of JSON parses with cJSON (its own syntax messages)
 * and then calls fl_json_strict on the same bytes, which refuses what cJSON
 * lets through (ffnlab/json_check.h): a key twice in one object, raw control
 * characters, invalid UTF-8 or \u0000 in a string. The message names the
 * file, the line and the key or byte offset:
 *     config.json: line 5: duplicate key "n_layers"
 *     data.jsonl:12: invalid UTF-8 in a string at byte 4711
 */
#ifndef FFNLAB_JSON_STRICT_H
#define FFNLAB_JSON_STRICT_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/status.h"

/* text[0..len) is one JSON value; where names it (a path). at: its byte
   offset in the file (0 for a whole file). line: 0 for a whole file (the
   message then says "line L" of the problem), else the number of the JSON
   Lines line text is (the message says "where:LINE:"). FL_EINVAL when it
   breaks a rule. */
fl_status fl_json_strict(const char *text, size_t len, const char *where, size_t at, int64_t line, fl_error *err);

#endif
