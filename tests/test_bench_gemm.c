/*
 * tests/test_bench_gemm.c — `ffnlab bench --gemm` (run/bench_gemm.c), end to
 * end at a small shape:
 *  - it prints one row per linear layer of a training step and the slowest
 *    backward ratio, and its JSON holds each layer's shape, how its W is
 *    stored (as the model stores it: [in,out], the LM head [out,in]) and, for each of
 *    the three products (forward, dx, dW), a positive time, GFLOP/s that
 *    agree with the layer's FLOPs and the time, and the time over the
 *    forward's;
 *  - --activations bf16 (x stored in bf16) runs in the bf16 precision and
 *    says so in the table and the JSON; without it, it is refused;
 *  - bad flags are one line and exit status 2; a --json file that cannot be
 *    written is refused (one line, status 1) before anything is measured.
 * Speed itself is a benchmark, not a test: nothing here asserts a ratio.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* access */

#include <cjson/cJSON.h>

#include "fsutil.h" /* fl_dir_is_empty */
#include "support.h"

static const char *const LAYERS[] = {"qkv", "attn proj", "ffn fc", "ffn proj", "lm head"};

static void check_layer(const cJSON *l, int i, double *worst) {
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(l, "layer")->valuestring, LAYERS[i]);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(l, "weights")->valuestring, i == 4 ? "out,in" : "in,out");
    const double tokens = ts_json_num(l, "tokens"), in = ts_json_num(l, "in"), out = ts_json_num(l, "out");
    assert_true(tokens == 2 * 16);
    const double flop = 2.0 * tokens * in * out;
    const double fwd = ts_json_num(cJSON_GetObjectItemCaseSensitive(l, "forward"), "ms");
    const char *products[] = {"forward", "dx", "dW"};
    for (int p = 0; p < 3; p++) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(l, products[p]);
        assert_non_null(q);
        const double ms = ts_json_num(q, "ms"), gf = ts_json_num(q, "gflops");
        const double ratio = ts_json_num(q, "time_vs_forward");
        assert_true(ms > 0);
        assert_true(fabs(gf - flop / (ms * 1e-3) / 1e9) <= 1e-6 * gf);
        assert_true(fabs(ratio - ms / fwd) <= 1e-9 * ratio);
        if (p > 0 && ratio > *worst) *worst = ratio;
    }
}

static void test_prints_and_writes_every_layer(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), cmd[2048], *out = NULL;
    int rc = ts_ffnlab(&out, "bench --gemm --device cpu --d-model 32 --context 16 --batch 2 --vocab 96 --reps 2 --json %s/g.json",
                       dir);
    if (rc) fail_msg("bench --gemm failed (%d): %s", rc, out);
    for (int i = 0; i < 5; i++) assert_non_null(strstr(out, LAYERS[i]));
    assert_non_null(strstr(out, "slowest backward product: "));
    free(out);

    snprintf(cmd, sizeof cmd, "%s/g.json", dir);
    cJSON *doc = ts_read_json(cmd);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "backend")->valuestring, "cpu");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "activations")->valuestring, "f32");
    assert_true(ts_json_num(doc, "reps") == 2);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
    assert_int_equal(cJSON_GetArraySize(layers), 5);
    const double expect_io[5][2] = {{32, 96}, {32, 32}, {32, 128}, {128, 32}, {32, 96}};
    double worst = 0;
    for (int i = 0; i < 5; i++) {
        const cJSON *l = cJSON_GetArrayItem(layers, i);
        assert_true(ts_json_num(l, "in") == expect_io[i][0] && ts_json_num(l, "out") == expect_io[i][1]);
        check_layer(l, i, &worst);
    }
    assert_true(fabs(ts_json_num(doc, "worst_backward_vs_forward") - worst) <= 1e-9 * worst);
    cJSON_Delete(doc);
    ts_rmtree(dir);
    free(dir);
}

/* --activations bf16: x stored in bf16 (as a bf16 step stores the inputs
   that only feed GEMMs), in the bf16 precision only. */
static void test_bf16_activations(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4096], *out = NULL;
    int rc = ts_ffnlab(&out, "bench --gemm --device cpu --precision bf16 --activations bf16 --d-model 32 --context 16 "
                             "--batch 2 --vocab 96 --reps 1 --json %s/g.json", dir);
    if (rc) fail_msg("bench --gemm --activations bf16 failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "x in bf16"));
    free(out);
    snprintf(path, sizeof path, "%s/g.json", dir);
    cJSON *doc = ts_read_json(path);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "activations")->valuestring, "bf16");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
    assert_int_equal(cJSON_GetArraySize(layers), 5);
    double worst = 0;
    for (int i = 0; i < 5; i++) check_layer(cJSON_GetArrayItem(layers, i), i, &worst);
    cJSON_Delete(doc);

    /* in fp32 there is no bf16 step to mirror: one line, status 1, no report */
    rc = ts_ffnlab(&out, "bench --gemm --device cpu --precision fp32 --activations bf16 --json %s/f.json", dir);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "--activations bf16 needs the bf16 precision"));
    assert_null(strchr(strchr(out, '\n') + 1, '\n'));
    free(out);
    snprintf(path, sizeof path, "%s/f.json", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    ts_rmtree(dir);
    free(dir);
}

static void test_bad_flags_are_usage_errors(void **state) {
    (void)state;
    const char *bad[] = {"--reps 0", "--reps 65", "--d-model x", "--vocab", "--frobnicate 1", "--precision fp64",
                         "--activations fp16", "--activations"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        const int rc = ts_ffnlab(&out, "bench --gemm --device cpu %s", bad[i]);
        print_message("  %s -> %d: %s", bad[i], rc, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, "ffnlab bench"));
        free(out);
    }
}

/* The report is written last: a place it cannot go is found first. */
static void test_unwritable_json_refused_first(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), *out = NULL;
    const char *where[][2] = {{"/no/such/folder/b.json", "cannot create"}, {dir, "is a folder"}};
    for (int i = 0; i < 2; i++) {
        const int rc = ts_ffnlab(&out, "bench --gemm --device cpu --d-model 32 --context 16 --batch 2 --vocab 64 --json '%s'",
                                 where[i][0]);
        print_message("  --json %s -> %d: %s", where[i][0], rc, out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "ffnlab: error: --json: "));
        assert_non_null(strstr(out, where[i][1]));
        assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* one line: no table measured before it */
        free(out);
    }
    /* a place it can go, and the bench failing after the check: nothing is
       left there (neither a report nor the check's temporary file) */
    assert_int_equal(ts_ffnlab(NULL, "bench --gemm --device nosuch --json '%s/b.json'", dir), 1);
    assert_true(fl_dir_is_empty(dir));
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prints_and_writes_every_layer),
        cmocka_unit_test(test_bf16_activations),
        cmocka_unit_test(test_bad_flags_are_usage_errors),
        cmocka_unit_test(test_unwritable_json_refused_first),
    };
    return cmocka_run_group_tests_name("bench_gemm", tests, NULL, NULL);
}
