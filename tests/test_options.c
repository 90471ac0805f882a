/*
 * tests/test_options.c — the plugin option parser (core/options.c).
 *
 * Every plugin's user-facing errors come from here, so each error case is
 * checked for its status and for the words that make the message useful:
 * where the text came from, the key, and what would have been accepted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>   /* open_memstream */
#include <stdlib.h>  /* free */
#include <string.h>  /* strstr */

#include "options.h"
#include "support.h"

/* A table with one option of each type, the way a plugin would write it. */
static const fl_option OPTS[] = {
    {"experts", FL_OPT_INT, "8", 1, 1024, NULL, "number of experts"},
    {"top_k", FL_OPT_INT, NULL, 1, 64, NULL, "experts per token"},
    {"noise", FL_OPT_FLOAT, "0.5", 0, 1, NULL, "gate noise std"},
    {"act", FL_OPT_ENUM, "gelu", 0, -1, "gelu|relu|silu", "activation function"},
    {"shared", FL_OPT_BOOL, "false", 0, -1, NULL, "add a shared expert"},
    {"path", FL_OPT_STRING, NULL, 0, -1, NULL, "where to read from"},
    {"scale", FL_OPT_FLOAT, "2", 1, 0, NULL, "any real number"},
};
#define N_OPTS ((int)(sizeof OPTS / sizeof OPTS[0]))
enum { EXPERTS, TOP_K, NOISE, ACT, SHARED, PATH, SCALE };

static fl_option_set parse_ok(const char *text) {
    fl_option_set s;
    fl_error err = {0};
    ts_assert_ok(fl_options_parse(OPTS, N_OPTS, text, "--ffn moe", &s, &err), &err);
    return s;
}

/* Fails unless parsing `text` gives FL_EINVAL and a message with every one of
   the NULL-terminated substrings. */
static void expect_error(const char *text, ...) {
    fl_option_set s;
    fl_error err = {0};
    fl_status st = fl_options_parse(OPTS, N_OPTS, text, "--ffn moe", &s, &err);
    if (st != FL_EINVAL) fail_msg("'%s': status %d, want FL_EINVAL (msg: %s)", text, st, err.msg);
    assert_null(s.values); /* nothing to free after a failure */
    assert_null(strchr(err.msg, '\n'));
    va_list ap;
    va_start(ap, text);
    for (const char *sub; (sub = va_arg(ap, const char *));)
        if (!strstr(err.msg, sub)) fail_msg("'%s': message \"%s\" lacks \"%s\"", text, err.msg, sub);
    va_end(ap);
    print_message("  %-28s -> %s\n", text, err.msg);
}

/* ------------------------------------------------------------------------ */

static void test_defaults(void **state) {
    (void)state;
    fl_option_set s = parse_ok(NULL);
    assert_int_equal(s.n, N_OPTS);
    assert_int_equal(s.values[EXPERTS].present, 1);
    assert_int_equal(s.values[EXPERTS].set, 0);
    assert_int_equal(s.values[EXPERTS].i, 8);
    assert_string_equal(s.values[EXPERTS].s, "8");
    assert_int_equal(s.values[TOP_K].present, 0); /* NULL default: the plugin derives it */
    assert_int_equal(s.values[TOP_K].set, 0);
    assert_true(s.values[NOISE].f == 0.5);
    assert_int_equal(s.values[ACT].i, 0);
    assert_int_equal(s.values[SHARED].present, 1);
    assert_int_equal(s.values[SHARED].i, 0);
    assert_int_equal(s.values[PATH].present, 0);
    assert_true(s.values[SCALE].f == 2.0);
    fl_options_free(&s);

    s = parse_ok("");
    assert_int_equal(s.values[EXPERTS].i, 8);
    fl_options_free(&s);
}

static void test_all_types(void **state) {
    (void)state;
    fl_option_set s = parse_ok("experts=16, top_k = 2,noise=0.25,act=silu,shared=yes,path=/a/b.txt,scale=-1e3");
    assert_int_equal(s.values[EXPERTS].i, 16);
    assert_int_equal(s.values[EXPERTS].set, 1);
    assert_true(s.values[EXPERTS].f == 16.0);
    assert_int_equal(s.values[TOP_K].i, 2);
    assert_int_equal(s.values[TOP_K].present, 1);
    assert_string_equal(s.values[TOP_K].s, "2");
    assert_true(s.values[NOISE].f == 0.25);
    assert_int_equal(s.values[ACT].i, 2);
    assert_string_equal(s.values[ACT].s, "silu");
    assert_int_equal(s.values[SHARED].i, 1);
    assert_string_equal(s.values[PATH].s, "/a/b.txt");
    assert_true(s.values[SCALE].f == -1000.0); /* min > max: unbounded */
    fl_options_free(&s);
}

static void test_range_edges(void **state) {
    (void)state;
    fl_option_set s = parse_ok("experts=1,noise=0");
    assert_int_equal(s.values[EXPERTS].i, 1);
    fl_options_free(&s);
    s = parse_ok("experts=1024,noise=1");
    assert_int_equal(s.values[EXPERTS].i, 1024);
    fl_options_free(&s);
}

static void test_bools(void **state) {
    (void)state;
    const char *yes[] = {"true", "1", "yes", "TRUE", "Yes"}, *no[] = {"false", "0", "no", "False"};
    char text[64];
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        snprintf(text, sizeof text, "shared=%s", yes[i]);
        fl_option_set s = parse_ok(text);
        assert_int_equal(s.values[SHARED].i, 1);
        fl_options_free(&s);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        snprintf(text, sizeof text, "shared=%s", no[i]);
        fl_option_set s = parse_ok(text);
        assert_int_equal(s.values[SHARED].i, 0);
        assert_int_equal(s.values[SHARED].set, 1);
        fl_options_free(&s);
    }
    expect_error("shared=maybe", "--ffn moe", "shared", "maybe", "true/false/1/0/yes/no", NULL);
}

static void test_enums(void **state) {
    (void)state;
    const char *names[] = {"gelu", "relu", "silu"};
    char text[64];
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof text, "act=%s", names[i]);
        fl_option_set s = parse_ok(text);
        assert_int_equal(s.values[ACT].i, i);
        fl_options_free(&s);
    }
    expect_error("act=tanh", "--ffn moe", "act", "tanh", "gelu|relu|silu", NULL);
    expect_error("act=GELU", "act", "gelu|relu|silu", NULL); /* choices are exact */
    expect_error("act=gel", "act", "gelu|relu|silu", NULL);
}

static void test_errors(void **state) {
    (void)state;
    expect_error("expertz=4", "--ffn moe", "unknown option 'expertz'", "experts", "top_k", "noise",
                 "act", "shared", "path", NULL);
    expect_error("experts", "--ffn moe", "experts", "key=value", NULL);
    expect_error("top_k=2,experts", "experts", "key=value", NULL);
    expect_error("=3", "--ffn moe", "name", NULL);
    expect_error("experts=", "--ffn moe", "experts", "empty", "integer in [1, 1024]", NULL);
    expect_error("experts=  ", "experts", "empty", NULL);
    expect_error("experts=abc", "--ffn moe", "experts", "'abc'", "not an integer", "[1, 1024]", NULL);
    expect_error("experts=1.5", "experts", "not an integer", NULL);
    expect_error("experts=8x", "experts", "not an integer", NULL);
    expect_error("experts=99999999999999999999999", "experts", "not an integer", NULL);
    expect_error("noise=abc", "--ffn moe", "noise", "not a number", "[0, 1]", NULL);
    expect_error("noise=nan", "noise", "not a number", NULL);
    expect_error("noise=inf", "noise", "not a number", NULL);
    expect_error("experts=0", "--ffn moe", "experts", "out of range", "[1, 1024]", NULL);
    expect_error("experts=1025", "experts", "out of range", "[1, 1024]", NULL);
    expect_error("experts=-3", "experts", "out of range", NULL);
    expect_error("noise=1.5", "noise", "out of range", "[0, 1]", NULL);
    expect_error("noise=-0.1", "noise", "out of range", NULL);
    expect_error("experts=2,experts=3", "--ffn moe", "experts", "twice", NULL);
    expect_error("top_k=1,act=relu,top_k=1", "top_k", "twice", NULL);
}

static void test_blank_items(void **state) {
    (void)state;
    fl_option_set s = parse_ok("experts=4,,top_k=2,");
    assert_int_equal(s.values[EXPERTS].i, 4);
    assert_int_equal(s.values[TOP_K].i, 2);
    fl_options_free(&s);
}

static void test_no_options(void **state) {
    (void)state;
    fl_option_set s;
    fl_error err = {0};
    ts_assert_ok(fl_options_parse(NULL, 0, NULL, "plugin x", &s, &err), &err);
    fl_options_free(&s);
    assert_int_equal(fl_options_parse(NULL, 0, "a=1", "plugin x", &s, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "plugin x"));
    assert_non_null(strstr(err.msg, "'a'"));
    assert_non_null(strstr(err.msg, "no options"));
}

static void test_bad_defaults(void **state) {
    (void)state;
    static const fl_option bad_int[] = {{"width", FL_OPT_INT, "0", 1, 64, NULL, "w"}};
    static const fl_option bad_enum[] = {{"act", FL_OPT_ENUM, "tanh", 0, -1, "gelu|relu", "a"}};
    static const fl_option bad_bool[] = {{"on", FL_OPT_BOOL, "sure", 0, -1, NULL, "b"}};
    const fl_option *tables[] = {bad_int, bad_enum, bad_bool};
    const char *names[] = {"width", "act", "on"};
    for (int i = 0; i < 3; i++) {
        fl_option_set s;
        fl_error err = {0};
        assert_int_equal(fl_options_parse(tables[i], 1, NULL, "plugin p", &s, &err), FL_EINVAL);
        assert_non_null(strstr(err.msg, "plugin p"));
        assert_non_null(strstr(err.msg, "default"));
        assert_non_null(strstr(err.msg, names[i]));
        print_message("  %s\n", err.msg);
    }
}

static void test_spec_split(void **state) {
    (void)state;
    char name[64];
    const char *opts = (const char *)1;
    fl_error err = {0};
    ts_assert_ok(fl_spec_split("moe:experts=8,top_k=1", name, sizeof name, &opts, &err), &err);
    assert_string_equal(name, "moe");
    assert_string_equal(opts, "experts=8,top_k=1");
    ts_assert_ok(fl_spec_split("dense", name, sizeof name, &opts, &err), &err);
    assert_string_equal(name, "dense");
    assert_null(opts);
    ts_assert_ok(fl_spec_split("dense:", name, sizeof name, &opts, &err), &err);
    assert_string_equal(name, "dense");
    assert_null(opts);
    assert_int_equal(fl_spec_split(":experts=8", name, sizeof name, &opts, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, ":experts=8"));
    assert_int_equal(fl_spec_split("", name, sizeof name, &opts, &err), FL_EINVAL);
    assert_int_equal(fl_spec_split(NULL, name, sizeof name, &opts, &err), FL_EINVAL);
    assert_int_equal(fl_spec_split("averyveryverylongname:x=1", name, 8, &opts, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "longer"));
}

static void test_help(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fl_options_print_help(f, OPTS, N_OPTS);
    fclose(f);
    print_message("%s", buf);
    for (int i = 0; i < N_OPTS; i++) {
        assert_non_null(strstr(buf, OPTS[i].name));
        assert_non_null(strstr(buf, OPTS[i].help));
    }
    const char *want[] = {"int", "float", "bool", "enum", "string", "(derived)", "[1, 1024]",
                          "[0, 1]", "gelu|relu|silu", "true|false", "0.5"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(buf, want[i])) fail_msg("help lacks \"%s\"", want[i]);
    /* Aligned: every line's help text starts in the same column. */
    int col = -1, lines = 0;
    for (char *line = buf, *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
        const char *h = strstr(line, OPTS[lines].help);
        assert_non_null(h);
        if (col < 0) col = (int)(h - line);
        assert_int_equal((int)(h - line), col);
    }
    assert_int_equal(lines, N_OPTS);
    free(buf);

    f = open_memstream(&buf, &len);
    fl_options_print_help(f, NULL, 0);
    fclose(f);
    assert_non_null(strstr(buf, "no options"));
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_all_types),
        cmocka_unit_test(test_range_edges), cmocka_unit_test(test_bools),
        cmocka_unit_test(test_enums),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_blank_items), cmocka_unit_test(test_no_options),
        cmocka_unit_test(test_bad_defaults), cmocka_unit_test(test_spec_split),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
