/*
 * tests/test_json_check.c — the strict JSON check (ffnlab/json_check.h) and
 * its framework wording (base/json_strict.h).
 *
 * Specification:
 *  - well-formed JSON passes: every value kind, nesting, escapes, surrogate
 *    pairs, numbers as RFC 8259 writes them, a leading UTF-8 BOM, the same key
 *    in different objects;
 *  - a key twice in one object is refused naming the key and its line, also
 *    when one spelling is escaped ("a" and "\u0061", "é" raw and escaped),
 *    deep inside a file, and among the 50,000 keys of a GPT-2-sized vocab;
 *  - inside strings: a raw control character (0x00..0x1F), invalid UTF-8
 *    (stray continuation, overlong, surrogate, past U+10FFFF, cut short), an
 *    unpaired \uD800..\uDFFF escape and \u0000 are refused with the byte
 *    offset (plus the caller's offset of the text in its file);
 *  - not JSON (what cJSON also refuses, and leading zeros, '+', a bare '.',
 *    bytes after the value, nesting past FL_JSON_MAX_DEPTH) is a syntax fault
 *    with its byte offset;
 *  - anything the check passes, cJSON parses;
 *  - fl_json_strict words it as one line: "FILE: line L: ..." for a whole
 *    file, "FILE:LINE: ..." for a JSON Lines line.
 */
#include "support.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffnlab/json_check.h"
#include "json_strict.h"

/* text (a literal: NUL bytes count) must pass, and cJSON must parse it */
#define FINE(lit) fine(lit, sizeof lit - 1)
static void fine(const char *text, size_t len) {
    fl_json_problem p;
    fl_json_fault f = fl_json_check(text, len, 0, &p);
    if (f) fail_msg("refused %.*s: %s", (int)len, text, p.what);
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!o) fail_msg("the check passed what cJSON refuses: %.*s", (int)len, text);
    cJSON_Delete(o);
}

/* text must be refused with fault, the message holding want, at line */
#define BAD(lit, fault, line, want) bad(lit, sizeof lit - 1, fault, line, want)
static void bad(const char *text, size_t len, fl_json_fault fault, long long line, const char *want) {
    fl_json_problem p;
    fl_json_fault f = fl_json_check(text, len, 0, &p);
    if (f != fault || p.fault != fault) fail_msg("%.*s: fault %d, want %d (%s)", (int)len, text, f, fault, p.what);
    if (!strstr(p.what, want)) fail_msg("%.*s: message \"%s\" lacks \"%s\"", (int)len, text, p.what, want);
    if (p.line != line) fail_msg("%.*s: line %lld, want %lld", (int)len, text, p.line, line);
}

static void test_well_formed_passes(void **state) {
    (void)state;
    FINE("{}");
    FINE("[]");
    FINE(" \t\r\n{\"a\": [1, -2.5e+3, 0, 0.0, 1E-2, true, false, null, \"x\", {}, []]}\n");
    FINE("\"plain\"");
    FINE("-0");
    FINE("{\"a\": {\"a\": 1}, \"b\": {\"a\": 2}, \"c\": [{\"a\": 1}, {\"a\": 2}]}"); /* one key per object */
    FINE("[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"]");
    FINE("[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f\"]"); /* 2, 3 and 4-byte UTF-8, DEL */
    FINE("\xEF\xBB\xBF{\"bom\": 1}");
    FINE("{\"\": 1, \" \": 2}");
}

static void test_duplicate_keys(void **state) {
    (void)state;
    BAD("{\"n_layers\": 2, \"n_layers\": 12}", FL_JSON_DUPLICATE_KEY, 1, "duplicate key \"n_layers\"");
    BAD("{\n \"a\": 1,\n \"b\": {\"x\": 1,\n       \"x\": 2}}", FL_JSON_DUPLICATE_KEY, 4, "duplicate key \"x\"");
    BAD("{\"a\": 1, \"\\u0061\": 2}", FL_JSON_DUPLICATE_KEY, 1, "duplicate key \"\\u0061\"");
    BAD("{\"caf\xc3\xa9\": 1, \"caf\\u00E9\": 2}", FL_JSON_DUPLICATE_KEY, 1, "duplicate key");
    BAD("{\"\\uD83D\\uDE00\": 1, \"\xf0\x9f\x98\x80\": 2}", FL_JSON_DUPLICATE_KEY, 1, "duplicate key");
    BAD("[{\"a\": 1}, {\"b\": 1, \"c\": 2, \"b\": 3}]", FL_JSON_DUPLICATE_KEY, 1, "duplicate key \"b\"");
    /* a vocab of 50,000 keys: the last repeats the first, found in linear time */
    size_t cap = 50000 * 24, k = 0;
    char *big = malloc(cap);
    k += (size_t)snprintf(big + k, cap - k, "{\"model\": {\"vocab\": {");
    for (int i = 0; i < 50000; i++) k += (size_t)snprintf(big + k, cap - k, "\"tok%d\": %d,\n", i, i);
    k += (size_t)snprintf(big + k, cap - k, "\"tok0\": 0}}}");
    fl_json_problem p;
    assert_int_equal(fl_json_check(big, k, 0, &p), FL_JSON_DUPLICATE_KEY);
    assert_string_equal(p.what, "duplicate key \"tok0\"");
    assert_int_equal(p.line, 50001);
    big[k - 4] = '1', big[k - 8] = 'x'; /* "tokx": 1: no longer a repeat */
    fine(big, k);
    free(big);
}

static void test_strings_refused_with_offset(void **state) {
    (void)state;
    BAD("{\"transformer.ln_f.weight\0evil\": 1}", FL_JSON_CONTROL_CHAR, 1, "raw control character 0x00 in a string at byte 25");
    BAD("[\"a\tb\"]", FL_JSON_CONTROL_CHAR, 1, "0x09 in a string at byte 3");
    BAD("[\n\"a\nb\"]", FL_JSON_CONTROL_CHAR, 2, "0x0A in a string at byte 4");
    BAD("[\"\x80\"]", FL_JSON_BAD_UTF8, 1, "invalid UTF-8 in a string at byte 2");     /* stray continuation */
    BAD("[\"\xc0\xaf\"]", FL_JSON_BAD_UTF8, 1, "at byte 2");                           /* overlong '/' */
    BAD("[\"\xed\xa0\x80\"]", FL_JSON_BAD_UTF8, 1, "at byte 2");                       /* a surrogate */
    BAD("[\"\xf4\x90\x80\x80\"]", FL_JSON_BAD_UTF8, 1, "at byte 2");                   /* past U+10FFFF */
    BAD("[\"ab\xe2\x82\"]", FL_JSON_BAD_UTF8, 1, "at byte 4");                         /* cut short */
    BAD("[\"\\uD800\"]", FL_JSON_BAD_UTF8, 1, "unpaired UTF-16 surrogate \\uD800 in a string at byte 2");
    BAD("[\"\\uDC00\\uD800\"]", FL_JSON_BAD_UTF8, 1, "\\uDC00");
    BAD("[\"\\uD800\\u0041\"]", FL_JSON_BAD_UTF8, 1, "\\uD800");
    BAD("{\"name\\u0000evil\": 1}", FL_JSON_NUL_ESCAPE, 1, "\\u0000 (a NUL character) in a string at byte 6");
    /* the caller's offset of the text in its file is added (a safetensors header starts at 8) */
    fl_json_problem p;
    assert_int_equal(fl_json_check("[\"\x80\"]", 5, 8, &p), FL_JSON_BAD_UTF8);
    assert_string_equal(p.what, "invalid UTF-8 in a string at byte 10");
    assert_int_equal(p.offset, 10);
}

static void test_syntax(void **state) {
    (void)state;
    BAD("", FL_JSON_SYNTAX, 1, "the text ends at byte 0");
    BAD("{\"a\": 1", FL_JSON_SYNTAX, 1, "the text ends at byte 7");
    BAD("[1,]", FL_JSON_SYNTAX, 1, "at byte 3");
    BAD("{\"a\" 1}", FL_JSON_SYNTAX, 1, "at byte 5");
    BAD("{a: 1}", FL_JSON_SYNTAX, 1, "at byte 1");
    BAD("[01]", FL_JSON_SYNTAX, 1, "at byte 2");
    BAD("[+1]", FL_JSON_SYNTAX, 1, "at byte 1");
    BAD("[1.]", FL_JSON_SYNTAX, 1, "at byte 2");
    BAD("[.5]", FL_JSON_SYNTAX, 1, "at byte 1");
    BAD("[1e]", FL_JSON_SYNTAX, 1, "at byte 3");
    BAD("[tru]", FL_JSON_SYNTAX, 1, "at byte 1");
    BAD("[\"\\x\"]", FL_JSON_SYNTAX, 1, "at byte 2");
    BAD("[\"\\u12G4\"]", FL_JSON_SYNTAX, 1, "at byte 4");
    BAD("{} {}", FL_JSON_SYNTAX, 1, "unexpected bytes after the JSON value at byte 3");
    BAD("{}\0", FL_JSON_SYNTAX, 1, "at byte 2");
    BAD("[\f1]", FL_JSON_SYNTAX, 1, "at byte 1"); /* RFC 8259 has four whitespace characters */
    char deep[2 * FL_JSON_MAX_DEPTH + 4];
    memset(deep, '[', FL_JSON_MAX_DEPTH + 1);
    memset(deep + FL_JSON_MAX_DEPTH + 1, ']', FL_JSON_MAX_DEPTH + 1);
    fl_json_problem p;
    assert_int_equal(fl_json_check(deep, 2 * FL_JSON_MAX_DEPTH + 2, 0, &p), FL_JSON_TOO_DEEP);
    assert_int_equal(p.offset, FL_JSON_MAX_DEPTH);
    fine(deep + 1, 2 * FL_JSON_MAX_DEPTH); /* one level less is fine */
}

static void test_framework_wording(void **state) {
    (void)state;
    fl_error err = {0};
    const char *cfg = "{\"d_model\": 64,\n \"n_layers\": 2,\n \"n_layers\": 12}";
    assert_int_equal(fl_json_strict(cfg, strlen(cfg), "run.json", 0, 0, &err), FL_EINVAL);
    assert_string_equal(err.msg, "run.json: line 3: duplicate key \"n_layers\"");
    assert_int_equal(fl_json_strict("{\"t\": \"\x01\"}", 10, "c.jsonl", 100, 7, &err), FL_EINVAL);
    assert_string_equal(err.msg, "c.jsonl:7: raw control character 0x01 in a string at byte 107");
    ts_assert_ok(fl_json_strict("{\"a\": [1, 2]}", 13, "ok.json", 0, 0, &err), &err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed_passes),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_strings_refused_with_offset),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_framework_wording),
    };
    return cmocka_run_group_tests_name("json_check", tests, NULL, NULL);
}
