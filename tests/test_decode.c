/*
 * tests/test_decode.c — decoding with the KV cache (core/model.h:
 * fl_model_prefill, fl_model_decode_step; core/sample.h) and its benchmark
 * (run/bench_decode.h), on every FFN plugin.
 *
 * Specification:
 *  - after a prefill and after every decoding step, the cached logits of the
 *    new position equal those of fl_model_forward over the whole sequence,
 *    for B = 3 sequences, up to a full cache (decode_len = context), with a
 *    forward run between the steps (it must not disturb the cache); with a
 *    local layer too (GPT-Neo), whose cached steps attend only its window;
 *  - greedy generation gives exactly the tokens of the uncached path, for
 *    prompts shorter than, equal to and longer than the context, and past
 *    the context (where the cached path slides the uncached window);
 *  - a batch of B prompts decodes each sequence as it decodes alone;
 *  - a full cache refuses another step with a message naming the context;
 *  - bad input (no prompt, B = 0, a prompt longer than the context, a token
 *    outside the vocabulary, a step before any prefill, an encoder, bad benchmark
 *    arguments) is an FL_EINVAL message, never a crash, and a failed prefill
 *    leaves nothing cached;
 *  - every path tells the FFN plugins the batch's tokens and positions and
 *    the vocabulary size (FFN ABI 2.0): a training step (forward and
 *    backward), an evaluation forward, a prefill and decoding steps, checked
 *    by tests/plugins/ffn_ctxcheck.c;
 *  - fl_decode_rate measures positive rates; fl_json_bench_decode writes
 *    every field; `ffnlab bench --decode` runs end to end and refuses bad
 *    flags with exit code 2.
 *
 * The models are tiny (vocabulary 96, context 24, d_model 16, 2 layers of 2
 * heads) with every plugin at its conformance size. Their embeddings and
 * attention weights are scaled up 10x from the 0.02 init: attention then
 * prefers some positions strongly and the logits spread over several units,
 * so a cache that is wrong anywhere (a position, a head, a layer) moves the
 * logits by O(1) and the greedy tokens with them.
 *
 * Tolerance of cached vs uncached logits. Both compute the same sums in
 * different orders (GEMMs of 1 row instead of T, attention as dot products
 * instead of sgemm blocks), so they differ by f32 round-off only: a length-K
 * dot product carries at most K u Σ|a_i b_i| (u = 2^-24 ≈ 6e-8), here
 * K <= 64 (d_ff), so below 4e-6 of the terms' magnitudes per product, and
 * layer norms rescale without amplifying relative error. Through two layers
 * that is a few 1e-5 of the logits' scale at worst; we allow
 * |Δ| <= 1e-4 (1 + |logit|) and print the largest seen (about 3e-7 on an
 * AVX2 CPU). A wrong cache is off by O(1e-1..1), a thousand times more.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_decode.h"
#include "results.h" /* fl_json_bench_decode */
#include "ffnlab/rng.h"
#include "model.h"
#include "sample.h"

enum { V = 96, CTX = 24, D = 16, L = 2, H = 2, B = 3 };
#define LOGIT_TOL 1e-4

/* Every FFN plugin, at the size its conformance test uses. */
static const char *const SPECS[] = {
    "dense:d_ff=32",
    "moe:experts=4,top_k=2,d_expert=16",
    "cnt:d_ff=64,block=8,rank=4",
    "pkm:heads=2,k_dim=8,n_keys=8,knn=4",
};
#define N_SPECS (int)(sizeof SPECS / sizeof SPECS[0])

/* A tiny model with plugin spec in every layer, its embeddings and attention
   weights sharpened (see the top); the layers in bit mask `local` attend
   locally over `window` positions. */
static fl_model *make_model_attn(const char *spec, uint64_t local, int window) {
    const char *specs[L] = {spec, spec};
    fl_model_config mc = {.vocab_size = V, .context = CTX, .d_model = D, .n_layers = L, .n_heads = H,
                          .ffn_specs = specs, .seed = 5, .local_layers = local, .window = window};
    fl_model *m = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, fl_backend_cpu(), &m, &err), &err);
    ts_sharpen_attention(m, 10.0f);
    return m;
}

static fl_model *make_model(const char *spec) { return make_model_attn(spec, 0, 0); }

/* n random tokens (stream `key`) */
static void random_tokens(int32_t *t, int n, uint64_t key) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)(fl_rng_bits(key, (uint64_t)i) % V);
}

/* The model's logits [rows, V] starting at row r0, on the host. */
static void logits_rows(fl_model *m, int64_t r0, int rows, float *out) {
    fl_tensor t = fl_rows(fl_model_logits(m), r0, rows);
    fl_backend_cpu()->ops.to_host(out, &t, (size_t)rows * V * sizeof *out);
}

/* ref[B,V]: the last position's logits of fl_model_forward over the first
   n tokens of each row of seq[B,CTX]. */
static void forward_last(fl_model *m, const int32_t *seq, int n, float *ref) {
    int32_t win[B * CTX];
    for (int b = 0; b < B; b++) memcpy(win + b * n, seq + b * CTX, (size_t)n * sizeof *win);
    fl_error err = {0};
    ts_assert_ok(fl_model_forward(m, win, NULL, B, n, 0, 0, NULL, &err), &err);
    for (int b = 0; b < B; b++) logits_rows(m, (int64_t)b * n + n - 1, 1, ref + b * V);
}

/* Largest |a - b| / (1 + |b|) over n values. */
static double scaled_diff(const float *a, const float *b, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

/* ------------------------------------------------------------------------ */

/* Prefill 5 tokens, then decode to a full cache, comparing each step's
   logits with the whole forward's. */
static void check_cached(fl_model *m, const char *what, uint64_t key) {
    {
        int32_t seq[B * CTX], step[B];
        random_tokens(seq, B * CTX, key);
        float got[B * V], ref[B * V];
        fl_error err = {0};
        enum { P = 5 };
        int32_t prompts[B * P]; /* the first P tokens of each row of seq */
        for (int b = 0; b < B; b++) memcpy(prompts + b * P, seq + b * CTX, sizeof(int32_t) * P);
        ts_assert_ok(fl_model_prefill(m, prompts, B, P, &err), &err);
        double worst = 0;
        for (int n = P;; n++) {
            assert_int_equal(fl_model_decode_len(m), n);
            logits_rows(m, 0, B, got);
            forward_last(m, seq, n, ref); /* a forward between steps leaves the cache alone */
            const double d = scaled_diff(got, ref, B * V);
            if (d > LOGIT_TOL) fail_msg("%s: logits of position %d differ by %.3g (tol %.0e)", what, n, d, LOGIT_TOL);
            if (d > worst) worst = d;
            if (n == CTX) break;
            for (int b = 0; b < B; b++) step[b] = seq[b * CTX + n];
            ts_assert_ok(fl_model_decode_step(m, step, &err), &err);
        }
        print_message("  %-40s cached vs forward, positions %d..%d: max |d|/(1+|x|) %.2e\n", what, P, CTX, worst);
    }
}

static void test_cached_logits_match_forward(void **state) {
    (void)state;
    for (int s = 0; s < N_SPECS; s++) {
        fl_model *m = make_model(SPECS[s]);
        check_cached(m, SPECS[s], 40 + (uint64_t)s);
        fl_model_free(m);
    }
}

/* GPT-Neo's alternation: the second layer local over 7 of the 24
   positions, so from position 7 on its cached steps must read only the
   last 7 keys; and a local model differs from the global one there. */
static void test_local_attention_cache(void **state) {
    (void)state;
    fl_model *m = make_model_attn("dense:d_ff=32", 2, 7), *g = make_model("dense:d_ff=32");
    check_cached(m, "dense, layer 1 local (window 7)", 44);
    int32_t seq[B * CTX];
    float a[B * V], b[B * V];
    random_tokens(seq, B * CTX, 45);
    forward_last(m, seq, 7, a), forward_last(g, seq, 7, b);
    assert_true(scaled_diff(a, b, B * V) < 1e-6); /* position 6 sees all 7 keys either way */
    forward_last(m, seq, CTX, a), forward_last(g, seq, CTX, b);
    assert_true(scaled_diff(a, b, B * V) > 1e-3);
    fl_model_free(m), fl_model_free(g);
}

/* The tokens fl_sample appends to prompt[n] (greedy), cached or not, into
   out (malloc'ed, *n_out long). */
static int32_t *greedy(fl_model *m, const int32_t *prompt, size_t n, int max_new, int uncached, size_t *n_out) {
    fl_sample_opts o = {.max_new = max_new, .temperature = 0, .stop_id = -1, .uncached = uncached};
    int32_t *out = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_sample(m, prompt, n, &o, &out, n_out, &err), &err);
    assert_int_equal(*n_out, n + (size_t)max_new);
    return out;
}

static void test_greedy_tokens_match_uncached(void **state) {
    (void)state;
    /* prompt lengths: short, one short of the context, the context, longer;
       2 * CTX new tokens take each one past the context */
    const int lens[] = {1, 5, CTX - 1, CTX, CTX + 7};
    for (int s = 0; s < N_SPECS; s++) {
        fl_model *m = make_model(SPECS[s]);
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            int32_t prompt[2 * CTX];
            random_tokens(prompt, lens[i], 60 + i);
            size_t na, nb;
            int32_t *a = greedy(m, prompt, (size_t)lens[i], 2 * CTX, 0, &na);
            int32_t *b = greedy(m, prompt, (size_t)lens[i], 2 * CTX, 1, &nb);
            for (size_t j = 0; j < na; j++)
                if (a[j] != b[j]) fail_msg("%s, prompt of %d: token %zu is %d cached, %d uncached", SPECS[s], lens[i], j, a[j], b[j]);
            free(a), free(b);
        }
        print_message("  %-40s greedy: cached = uncached for prompts of 1..%d tokens + %d\n", SPECS[s], CTX + 7, 2 * CTX);
        fl_model_free(m);
    }
}

static void test_batch_decodes_each_sequence_alone(void **state) {
    (void)state;
    enum { NB = 4, P = 6, NEW = CTX - P };
    for (int s = 0; s < N_SPECS; s++) {
        fl_model *m = make_model(SPECS[s]);
        int32_t prompts[NB * P], out[NB * (P + NEW)];
        random_tokens(prompts, NB * P, 80 + (uint64_t)s);
        fl_sample_opts o = {.max_new = NEW, .temperature = 0, .stop_id = -1};
        fl_error err = {0};
        int n = 0;
        ts_assert_ok(fl_sample_batch(m, prompts, NB, P, &o, out, &n, &err), &err);
        assert_int_equal(n, P + NEW);
        for (int b = 0; b < NB; b++) {
            size_t n1;
            int32_t *alone = greedy(m, prompts + b * P, P, NEW, 0, &n1);
            assert_memory_equal(alone, out + b * (P + NEW), (P + NEW) * sizeof *alone);
            free(alone);
        }
        fl_model_free(m);
    }
}

static void test_batch_stops_when_every_sequence_has(void **state) {
    (void)state;
    enum { NB = 2, P = 3, NEW = 10 };
    fl_model *m = make_model(SPECS[0]);
    int32_t prompts[NB * P], out[NB * (P + NEW)];
    random_tokens(prompts, NB * P, 90);
    /* the greedy tokens without a stop, then the first sequence's third new token as the stop id */
    fl_sample_opts o = {.max_new = NEW, .temperature = 0, .stop_id = -1};
    fl_error err = {0};
    int n = 0;
    ts_assert_ok(fl_sample_batch(m, prompts, NB, P, &o, out, &n, &err), &err);
    int32_t free_run[NB * (P + NEW)];
    memcpy(free_run, out, sizeof out);
    o.stop_id = free_run[P + 2];
    ts_assert_ok(fl_sample_batch(m, prompts, NB, P, &o, out, &n, &err), &err);
    /* each sequence is the free run up to its first stop id, then padded
       with it; the run ends when the last sequence stops (or at NEW) */
    int last = P;
    for (int b = 0; b < NB; b++) {
        const int32_t *row = out + b * (P + NEW), *want = free_run + b * (P + NEW);
        int end = P;
        while (end < P + NEW && want[end++] != o.stop_id) {}
        assert_memory_equal(row, want, (size_t)end * sizeof *row);
        if (end > last) last = end;
        for (int j = end; j < n; j++) assert_int_equal(row[j], o.stop_id);
    }
    assert_int_equal(n, last);
    fl_model_free(m);
}

static void test_full_cache_refuses_a_step(void **state) {
    (void)state;
    fl_model *m = make_model(SPECS[0]);
    int32_t prompts[CTX], tok[1] = {7};
    random_tokens(prompts, CTX, 100);
    fl_error err = {0};
    ts_assert_ok(fl_model_prefill(m, prompts, 1, CTX, &err), &err);
    assert_int_equal(fl_model_decode_len(m), CTX);
    assert_int_equal(fl_model_decode_step(m, tok, &err), FL_EINVAL);
    print_message("  %s\n", err.msg);
    assert_non_null(strstr(err.msg, "context (24 positions)"));
    assert_int_equal(fl_model_decode_len(m), CTX); /* the cache is still there */
    fl_model_free(m);
}

/* ffn_ctxcheck fails any call whose context is incomplete or whose
   positions do not continue where the last forward ended. */
static void test_every_path_fills_the_context(void **state) {
    (void)state;
    fl_model *m = make_model(FFNLAB_TEST_PLUGIN_DIR "/ffn_ctxcheck.so");
    int32_t x[B * CTX], y[B * CTX];
    random_tokens(x, B * CTX, 11), random_tokens(y, B * CTX, 12);
    fl_error err = {0};
    double loss = 0;
    ts_assert_ok(fl_model_forward(m, x, y, B, CTX, 1, 0, &loss, &err), &err); /* training */
    ts_assert_ok(fl_model_backward(m, &err), &err);
    ts_assert_ok(fl_model_forward(m, x, y, B, 10, 0, 0, &loss, &err), &err); /* evaluation */
    ts_assert_ok(fl_model_prefill(m, x, B, 5, &err), &err);                  /* positions 0..4 */
    for (int step = 0; step < 4; step++) ts_assert_ok(fl_model_decode_step(m, x + step * B, &err), &err); /* 5.. */
    assert_int_equal(fl_model_decode_len(m), 9);
    fl_model_free(m);
}

/* st must be FL_EINVAL with a message containing sub. */
static void expect_einval(fl_status st, const fl_error *err, const char *sub) {
    print_message("  %s\n", err->msg);
    assert_int_equal(st, FL_EINVAL);
    if (!strstr(err->msg, sub)) fail_msg("message '%s' does not mention '%s'", err->msg, sub);
}

static void test_bad_input_is_an_error(void **state) {
    (void)state;
    fl_model *m = make_model(SPECS[0]);
    int32_t ok[2 * CTX] = {0}, bad[2] = {3, V};
    fl_error err = {0};
    expect_einval(fl_model_decode_step(m, ok, &err), &err, "nothing cached");
    expect_einval(fl_model_prefill(m, ok, 0, 4, &err), &err, "batch 0 x 4");
    expect_einval(fl_model_prefill(m, ok, 1, 0, &err), &err, "batch 1 x 0");
    expect_einval(fl_model_prefill(m, ok, 1, CTX + 1, &err), &err, "the context is 24");
    ts_assert_ok(fl_model_prefill(m, ok, 1, 4, &err), &err);
    expect_einval(fl_model_decode_step(m, bad + 1, &err), &err, "outside the vocabulary");
    assert_int_equal(fl_model_decode_len(m), 4); /* a refused step changes nothing */
    expect_einval(fl_model_prefill(m, bad, 1, 2, &err), &err, "outside the vocabulary");
    assert_int_equal(fl_model_decode_len(m), 0); /* a failed prefill leaves nothing cached */
    expect_einval(fl_model_decode_step(m, ok, &err), &err, "nothing cached");

    fl_sample_opts o = {.max_new = 2, .stop_id = -1};
    int32_t out[4 * CTX];
    int n = 0;
    expect_einval(fl_sample_batch(m, ok, 0, 3, &o, out, &n, &err), &err, "batch 0 x 3");
    expect_einval(fl_sample_batch(m, ok, 1, 0, &o, out, &n, &err), &err, "batch 1 x 0");
    int32_t *seq = NULL;
    size_t n_seq = 0;
    expect_einval(fl_sample(m, ok, 0, &o, &seq, &n_seq, &err), &err, "empty prompt");
    assert_null(seq);

    double r = 0;
    expect_einval(fl_decode_rate(m, 0, 4, 8, 1, &r, &err), &err, "batch 0");
    expect_einval(fl_decode_rate(m, 1, CTX + 1, 8, 1, &r, &err), &err, "at most the context");
    expect_einval(fl_decode_rate(m, 1, 4, 0, 0, &r, &err), &err, "0 new tokens");
    fl_model_free(m);

    /* an encoder has nothing to decode */
    const char *specs[L] = {"dense", "dense"};
    fl_model_config mc = {.vocab_size = V, .context = CTX, .d_model = D, .n_layers = L, .n_heads = H,
                          .ffn_specs = specs, .seed = 5, .arch = FL_ARCH_BERT, .pad_token = 0};
    ts_assert_ok(fl_model_create(&mc, fl_backend_cpu(), &m, &err), &err);
    expect_einval(fl_model_prefill(m, ok, 1, 4, &err), &err, "encoder");
    expect_einval(fl_sample_batch(m, ok, 1, 3, &o, out, &n, &err), &err, "encoder");
    fl_model_free(m);
}

static void test_decode_rate_and_json(void **state) {
    (void)state;
    for (int s = 0; s < N_SPECS; s++) {
        fl_model *m = make_model(SPECS[s]);
        double cached = 0, uncached = 0;
        fl_error err = {0};
        ts_assert_ok(fl_decode_rate(m, 2, 4, 16, 1, &cached, &err), &err);
        ts_assert_ok(fl_decode_rate(m, 2, 4, 16, 0, &uncached, &err), &err);
        print_message("  %-40s %.0f tokens/s cached, %.0f uncached\n", SPECS[s], cached, uncached);
        assert_true(isfinite(cached) && cached > 0 && isfinite(uncached) && uncached > 0);
        fl_model_free(m);
    }
    fl_bench_decode_result r = {
        .opts = {.d_model = 32, .n_layers = 2, .n_heads = 4, .context = 64, .vocab = 100, .ffn = "moe:experts=4",
                 .device = "cpu", .batch = 8, .prompt_len = 16, .n_new = 256},
        .backend = "cpu", .kernel = "k", .precision = "fp32", .n_rates = 2,
        .rates = {{1, 300.0, 100.0}, {8, 1600.0, 200.0}}};
    cJSON *doc = fl_json_bench_decode(&r);
    assert_non_null(doc);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(doc, "shape");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "backend")->valuestring, "cpu");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(doc, "precision")->valuestring, "fp32");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(shape, "ffn")->valuestring, "moe:experts=4");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(shape, "context")->valueint, 64);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(doc, "new_tokens")->valueint, 256);
    const cJSON *rates = cJSON_GetObjectItemCaseSensitive(doc, "decode");
    assert_int_equal(cJSON_GetArraySize(rates), 2);
    const cJSON *b8 = cJSON_GetArrayItem(rates, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(b8, "batch")->valueint, 8);
    assert_true(cJSON_GetObjectItemCaseSensitive(b8, "cached_tokens_per_s")->valuedouble == 1600.0);
    assert_true(cJSON_GetObjectItemCaseSensitive(b8, "uncached_tokens_per_s")->valuedouble == 200.0);
    assert_true(cJSON_GetObjectItemCaseSensitive(b8, "speedup")->valuedouble == 8.0);
    cJSON_Delete(doc);
}

static void test_bench_decode_command(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), cmd[2048], *out = NULL;
    int rc = ts_ffnlab(&out, "bench --decode --device cpu --ffn moe:experts=4,d_expert=16 --d-model 16 --layers 1 "
                       "--heads 2 --context 32 --vocab 64 --batch 3 --prompt 4 --tokens 12 --json %s/d.json", dir);
    if (rc) fail_msg("bench --decode failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "batch 1: cached "));
    assert_non_null(strstr(out, "batch 3: cached "));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/d.json", dir);
    cJSON *doc = ts_read_json(cmd);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "decode")), 2);
    cJSON_Delete(doc);
    const char *bad[] = {"--batch 0", "--prompt 40", "--tokens x", "--precision fp64", "--frobnicate"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = ts_ffnlab(&out, "bench --decode --device cpu --context 32 %s", bad[i]);
        print_message("  %s -> %d: %s", bad[i], rc, out);
        assert_int_equal(rc, 2);
        free(out);
    }
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cached_logits_match_forward),
        cmocka_unit_test(test_local_attention_cache),
        cmocka_unit_test(test_greedy_tokens_match_uncached),
        cmocka_unit_test(test_batch_decodes_each_sequence_alone),
        cmocka_unit_test(test_batch_stops_when_every_sequence_has),
        cmocka_unit_test(test_full_cache_refuses_a_step),
        cmocka_unit_test(test_bad_input_is_an_error),
        cmocka_unit_test(test_every_path_fills_the_context),
        cmocka_unit_test(test_decode_rate_and_json),
        cmocka_unit_test(test_bench_decode_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
