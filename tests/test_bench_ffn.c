/*
 * tests/test_bench_ffn.c — `ffnlab bench --ffn-only` (run/bench_ffn.c), end
 * to end on the CPU at 256 tokens, one sparse case (PKM, knn 14):
 *  - the table has the case's forward and fwd+bwd rows, and the JSON the
 *    dense baselines of both widths and rows whose throughput and ratios
 *    agree with their times; no profile without --profile;
 *  - --profile adds, per layer and mode (the dense baselines and the case,
 *    in the order measured), each host op the layer called: calls, ms and
 *    GFLOP per plugin call. The dense FFN's GEMMs are its definition: 2
 *    products of 2·N·d·d_ff FLOPs forward, 6 forward and backward; the ops
 *    and the plugin's own time add up to the profiled call; each row names
 *    the mode's unprofiled median;
 *  - bad options are one line and a non-zero exit, found before anything is
 *    measured: an --only that selects no layer, a --json file that cannot
 *    be written.
 * Speed itself is a benchmark, not a test: nothing here asserts a ratio.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "support.h"

#define CASE "pkm:heads=4,n_keys=56,k_dim=256,knn=14"
#define TOKENS 256.0

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) fail_msg("bench --ffn-only JSON: '%s' is not a string", key);
    return v->valuestring;
}

static int close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b)); }

/* Runs the bench (extra flags `flags`) into dir/b.json; returns the JSON
   and, in *text, what it printed. */
static cJSON *run_bench(const char *dir, const char *flags, char **text) {
    char cmd[2048];
    const int rc = ts_ffnlab(text, "bench --ffn-only --device cpu --only %s --tokens 256 --reps 1 %s --json %s/b.json",
                             CASE, flags, dir);
    if (rc) fail_msg("bench --ffn-only failed (%d): %s", rc, *text);
    snprintf(cmd, sizeof cmd, "%s/b.json", dir);
    return ts_read_json(cmd);
}

/* The dense baseline's median (ms) at width d in `mode`. */
static double dense_ms(const cJSON *doc, int d, const char *mode) {
    char key[32];
    snprintf(key, sizeof key, "%s_ms", mode);
    const cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(doc, "dense")) {
        if (ts_json_num(b, "d") == d) return ts_json_num(b, key);
    }
    fail_msg("no dense baseline at d=%d", d);
    return 0;
}

static void test_table_and_json(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), *text = NULL;
    cJSON *doc = run_bench(dir, "", &text);
    assert_non_null(strstr(text, "d=256  " CASE "   forward"));
    assert_non_null(strstr(text, "d=256  " CASE "   fwd+bwd"));
    assert_null(strstr(text, "profile d="));
    assert_string_equal(str(doc, "backend"), "cpu");
    assert_true(ts_json_num(doc, "tokens") == TOKENS);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "dense")), 2);
    assert_string_equal(str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "dense"), 0), "spec"),
                        "dense:d_ff=4096");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(doc, "ffn"), *row;
    assert_int_equal(cJSON_GetArraySize(rows), 2);
    const char *modes[] = {"forward", "fwd+bwd"};
    int i = 0;
    cJSON_ArrayForEach(row, rows) {
        assert_string_equal(str(row, "spec"), CASE);
        assert_string_equal(str(row, "mode"), modes[i++]);
        const double ms = ts_json_num(row, "ms");
        assert_true(ms > 0);
        assert_true(close_to(ts_json_num(row, "tokens_per_s"), TOKENS / (ms * 1e-3)));
        assert_true(close_to(ts_json_num(row, "speedup_equal_params"), dense_ms(doc, 256, str(row, "mode")) / ms));
    }
    assert_null(cJSON_GetObjectItemCaseSensitive(doc, "profiles"));
    cJSON_Delete(doc);
    free(text);
    ts_rmtree(dir);
    free(dir);
}

/* One op of a profile row, or NULL. */
static const cJSON *op_of(const cJSON *prof, const char *name) {
    const cJSON *op;
    cJSON_ArrayForEach(op, cJSON_GetObjectItemCaseSensitive(prof, "ops")) if (!strcmp(str(op, "op"), name)) return op;
    return NULL;
}

/* The ops and the plugin's own time make up the profiled call; the ops
   lie inside it. */
static void check_sums(const cJSON *prof) {
    double ops_ms = 0;
    const cJSON *op;
    cJSON_ArrayForEach(op, cJSON_GetObjectItemCaseSensitive(prof, "ops")) {
        assert_true(ts_json_num(op, "calls") >= 1);
        assert_true(ts_json_num(op, "ms") >= 0);
        ops_ms += ts_json_num(op, "ms");
    }
    const double ms = ts_json_num(prof, "ms"), own = ts_json_num(prof, "own_ms");
    assert_true(ms > 0);
    assert_true(close_to(ops_ms + own, ms));
    assert_true(own >= -1e-9 * ms);
}

static void test_profile(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), *text = NULL;
    cJSON *doc = run_bench(dir, "--profile", &text);
    assert_non_null(strstr(text, "profile d=256 dense:d_ff=4096 fwd+bwd: "));
    assert_non_null(strstr(text, "profile d=256 " CASE " forward: "));
    assert_non_null(strstr(text, "(the plugin's own code and kernels)"));

    const cJSON *profs = cJSON_GetObjectItemCaseSensitive(doc, "profiles");
    const struct { int d; const char *spec, *mode; } want[] = {
        {256, "dense:d_ff=4096", "forward"}, {256, "dense:d_ff=4096", "fwd+bwd"}, {256, "dense:d_ff=4096", "inference"},
        {256, CASE, "forward"},               {256, CASE, "fwd+bwd"},
        {512, "dense:d_ff=2048", "forward"}, {512, "dense:d_ff=2048", "fwd+bwd"}, {512, "dense:d_ff=2048", "inference"}};
    assert_int_equal(cJSON_GetArraySize(profs), 8);
    for (int i = 0; i < 8; i++) {
        const cJSON *p = cJSON_GetArrayItem(profs, i);
        assert_true(ts_json_num(p, "d") == want[i].d);
        assert_string_equal(str(p, "spec"), want[i].spec);
        assert_string_equal(str(p, "mode"), want[i].mode);
        assert_true(ts_json_num(p, "calls") == 1);
        assert_true(ts_json_num(p, "idle_op_us") >= 0);
        check_sums(p);
        if (strncmp(want[i].spec, "dense", 5)) continue;
        /* dense: 2·N·d·d_ff FLOPs per product, d_ff = 4096 at d=256 and 4d at d=512 */
        const double d = want[i].d, dff = d == 256 ? 4096 : 4 * d, products = strcmp(want[i].mode, "fwd+bwd") ? 2 : 6;
        const cJSON *gemm = op_of(p, "gemm");
        assert_non_null(gemm);
        assert_true(ts_json_num(gemm, "calls") == products);
        assert_true(close_to(ts_json_num(gemm, "gflop"), products * 2.0 * TOKENS * d * dff / 1e9));
        const double gflop = ts_json_num(gemm, "gflop");
        assert_true(close_to(ts_json_num(gemm, "gflops"), gflop / (ts_json_num(gemm, "ms") * 1e-3)));
        assert_true(close_to(ts_json_num(p, "unprofiled_ms"), dense_ms(doc, want[i].d, want[i].mode)));
    }
    /* the case: its query projection is a GEMM; its medians are its rows' */
    const cJSON *pkm = cJSON_GetArrayItem(profs, 3), *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "ffn"), 0);
    assert_non_null(op_of(pkm, "gemm"));
    assert_true(ts_json_num(op_of(pkm, "gemm"), "gflop") > 0);
    assert_true(close_to(ts_json_num(pkm, "unprofiled_ms"), ts_json_num(row, "ms")));
    cJSON_Delete(doc);
    free(text);
    ts_rmtree(dir);
    free(dir);
}

static void test_bad_options(void **state) {
    (void)state;
    const char *bad[] = {"--reps 0",    "--reps 33",   "--tokens 100",         "--frobnicate", "--only",
                         "--only nosuch", "--precision fp64", "--json /no/such/folder/b.json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        const int rc = ts_ffnlab(&out, "bench --ffn-only --device cpu --profile %s", bad[i]);
        print_message("  %s -> %d: %s", bad[i], rc, out);
        assert_true(rc == 1 || rc == 2);
        assert_non_null(strstr(out, "ffnlab"));
        assert_non_null(strchr(out, '\n'));
        assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* one line */
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_and_json),
        cmocka_unit_test(test_profile),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests_name("bench_ffn", tests, NULL, NULL);
}
