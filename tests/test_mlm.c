/*
 * tests/test_mlm.c — the encoder's masked-LM objective (core/mlm.h): proof
 * that the masking is really applied, which the study ffnlab reproduces
 * lacked (its collator never masked, so its encoder learned to copy).
 *
 * Specification, on one batch of the built-in corpus with a fixed seed
 * (32 windows x 128 tokens, a 320-token BPE with the encoder's tokens):
 *  - every row begins with <s>, every <|endoftext|> shows as </s>, and the
 *    other tokens are the stream's, shifted by one;
 *  - the fraction of chosen positions among the n maskable ones is within
 *    4.5 binomial standard deviations of mask_prob (0.15), and of the chosen
 *    ones 80% / 10% / 10% become <mask> / a random ordinary token / stay,
 *    each within 4.5 standard deviations; special tokens are never chosen
 *    and a random replacement is never special; other mask_prob values too;
 *  - a target is set exactly at the chosen positions (the original token);
 *  - the model's loss on such a batch counts only the chosen positions: it
 *    equals the mean cross-entropy over them computed from the logits, and
 *    differs from the mean over all positions;
 *  - copying the input cannot score: a model that predicts each input token
 *    with probability 0.999 has a loss of more than 8 nats on the chosen
 *    positions (where copying the unmasked input, the study's mistake,
 *    costs 0.001);
 *  - masks are a pure function of (key, row): the same row draws the same
 *    masks, a row seen at another step (another row number) draws new ones,
 *    and validation keys differ from training keys;
 *  - a tokenizer without the encoder's tokens is refused with one line.
 */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "batches.h"
#include "mlm.h"
#include "model.h"
#include "story_fixture.h"
#include "tokenizer.h"

enum { B = 32, T = 128, V = 320 };

static fl_tokenizer *g_tok;
static int32_t *g_stream; /* the tokenized corpus */
static size_t g_n;

static int setup(void **state) {
    (void)state;
    g_tok = ts_story_tokenizer(5, 200000, V, 1, &g_stream, &g_n);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fl_tokenizer_free(g_tok);
    free(g_stream);
    return 0;
}

/* Windows of the stream as fl_batch_train cuts them: row b starts at b*T. */
static void windows(int32_t *x) {
    for (int64_t i = 0; i < (int64_t)B * T; i++) x[i] = g_stream[i];
}

static void within(const char *what, double k, double n, double p) {
    const double sd = sqrt(n * p * (1 - p)), z = (k - n * p) / sd;
    print_message("  %-34s %6.0f of %6.0f = %.4f (expected %.3f, z = %+.2f)\n", what, k, n, k / n, p, z);
    if (fabs(z) > 4.5) fail_msg("%s: %.0f of %.0f is %.1f standard deviations from %.3f", what, k, n, z, p);
}

/* Counts of one masked batch, checking the layout and the targets. */
typedef struct counts {
    double maskable, chosen, masked, random, kept;
} counts;

static counts check_batch(const fl_mlm *m, const int32_t *orig, const int32_t *x, const int32_t *y) {
    counts c = {0};
    const int32_t eot = fl_tokenizer_eot(g_tok);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t i = (int64_t)b * T + t;
            const int32_t want = t == 0 ? m->ids.bos : orig[i - 1] == eot ? m->ids.sep : orig[i - 1];
            if (fl_tokenizer_is_special(g_tok, want)) { /* never chosen */
                assert_int_equal(x[i], want);
                assert_int_equal(y[i], -1);
                continue;
            }
            c.maskable++;
            if (y[i] < 0) {
                assert_int_equal(x[i], want); /* not chosen: untouched */
                continue;
            }
            assert_int_equal(y[i], want); /* the target is the original */
            c.chosen++;
            if (x[i] == m->ids.mask) c.masked++;
            else if (x[i] == want) c.kept++;
            else {
                assert_false(fl_tokenizer_is_special(g_tok, x[i]));
                c.random++;
            }
        }
    return c;
}

static void masks_at(double prob) {
    fl_error err = {0};
    fl_mlm m;
    ts_assert_ok(fl_mlm_init(&m, g_tok, V, prob, &err), &err);
    int32_t *orig = malloc((size_t)B * T * sizeof *orig), *x = malloc((size_t)B * T * sizeof *x);
    int32_t *y = malloc((size_t)B * T * sizeof *y);
    windows(orig);
    memcpy(x, orig, (size_t)B * T * sizeof *x);
    fl_mlm_batch(&m, fl_mlm_train_key(1337), 0, B, T, x, y);
    const counts c = check_batch(&m, orig, x, y);
    print_message("mask_prob %.2f:\n", prob);
    within("chosen among maskable", c.chosen, c.maskable, prob);
    within("<mask> among chosen", c.masked, c.chosen, 0.8);
    within("random among chosen", c.random, c.chosen, 0.1);
    /* a random draw may land on the original token: 1 in ~300 of the 10% */
    within("unchanged among chosen", c.kept, c.chosen, 0.1 + 0.1 / m.n_plain);
    assert_int_equal(fl_mlm_count(y, 0, B, T), (int64_t)c.chosen);
    free(orig), free(x), free(y);
    fl_mlm_free(&m);
}

static void test_masking_statistics(void **state) {
    (void)state;
    masks_at(0.15);
    masks_at(0.4);
}

/* The same row draws the same masks; another row number (the same window
   seen at another step) and the validation key draw others. */
static void test_masks_are_redrawn(void **state) {
    (void)state;
    fl_error err = {0};
    fl_mlm m;
    ts_assert_ok(fl_mlm_init(&m, g_tok, V, 0.15, &err), &err);
    int32_t x[4][T], y[4][T];
    const uint64_t train = fl_mlm_train_key(1337);
    const uint64_t rows[4] = {7, 7, 7 + B, 7};
    const uint64_t keys[4] = {train, train, train, fl_mlm_val_key(1337)};
    for (int k = 0; k < 4; k++) {
        memcpy(x[k], g_stream, sizeof x[k]);
        fl_mlm_batch(&m, keys[k], rows[k], 1, T, x[k], y[k]);
    }
    assert_memory_equal(y[0], y[1], sizeof y[0]);
    assert_memory_equal(x[0], x[1], sizeof x[0]);
    assert_memory_not_equal(y[0], y[2], sizeof y[0]);
    assert_memory_not_equal(y[0], y[3], sizeof y[0]);
    fl_mlm_free(&m);
}

/* ln q(target | input) of the copying predictor: input token 0.999, the
   other V-1 tokens the rest evenly. */
static double copy_nll(int32_t input, int32_t target) {
    return input == target ? -log(0.999) : -log(0.001 / (V - 1));
}

/* The loss counts only chosen positions, and copying cannot reach it. */
static void test_loss_counts_masked_positions_only(void **state) {
    (void)state;
    fl_error err = {0};
    fl_mlm m;
    ts_assert_ok(fl_mlm_init(&m, g_tok, V, 0.15, &err), &err);
    const int Bm = 4;
    int32_t x[Bm * T], y[Bm * T];
    memcpy(x, g_stream, sizeof x);
    int32_t orig[Bm * T];
    memcpy(orig, x, sizeof orig);
    fl_mlm_batch(&m, fl_mlm_train_key(1337), 0, Bm, T, x, y);
    /* a small encoder, random weights */
    const fl_backend *be = fl_backend_cpu();
    const char *specs[1] = {"dense"};
    fl_model_config mc = {.vocab_size = V, .context = T, .d_model = 16, .n_layers = 1, .n_heads = 2,
                          .ffn_specs = specs, .seed = 3, .arch = FL_ARCH_BERT, .pad_token = m.ids.pad};
    fl_model *model = NULL;
    ts_assert_ok(fl_model_create(&mc, be, &model, &err), &err);
    double loss = 0;
    ts_assert_ok(fl_model_forward(model, x, y, Bm, T, 0, 0, &loss, &err), &err);
    float *logits = malloc((size_t)Bm * T * V * sizeof *logits);
    be->ops.to_host(logits, fl_model_logits(model), (size_t)Bm * T * V * sizeof *logits);
    double chosen = 0, all = 0, copy = 0, copy_unmasked = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < (int64_t)Bm * T; i++) {
        const float *l = logits + i * V;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, l[v]);
        for (int v = 0; v < V; v++) s += exp(l[v] - mx);
        const double lse = mx + log(s);
        const int32_t tgt = y[i] >= 0 ? y[i] : x[i];
        all += lse - l[tgt];
        if (y[i] < 0) continue;
        chosen += lse - l[y[i]], n++;
        copy += copy_nll(x[i], y[i]);
        copy_unmasked += copy_nll(y[i], y[i]); /* the input left unmasked */
    }
    chosen /= (double)n, all /= (double)Bm * T, copy /= (double)n, copy_unmasked /= (double)n;
    print_message("  %lld chosen positions: model loss %.6f, over them %.6f, over all %.6f\n", (long long)n,
                  fl_model_ce_loss(model), chosen, all);
    print_message("  copying the input: %.3f nats on the masked batch, %.4f if nothing were masked\n", copy,
                  copy_unmasked);
    assert_int_equal(n, fl_mlm_count(y, 0, Bm, T));
    assert_true(fabs(fl_model_ce_loss(model) - chosen) < 1e-5 * chosen);
    assert_true(fabs(all - chosen) > 1e-3);
    assert_true(copy > 8.0);
    assert_true(copy_unmasked < 0.01);
    free(logits);
    fl_model_free(model);
    fl_mlm_free(&m);
}

/* A tokenizer trained without the encoder's tokens (every tokenizer file
   made before them) still loads, and an encoder refuses it in one line. */
static void test_tokenizer_without_encoder_tokens(void **state) {
    (void)state;
    fl_error err = {0};
    const char *doc = "the cat sat on the mat";
    const size_t len = strlen(doc);
    fl_tokenizer *plain = NULL;
    ts_assert_ok(fl_tokenizer_train(&doc, &len, 1, 260, &plain, &err), &err);
    fl_mlm m;
    assert_int_equal(fl_mlm_init(&m, plain, 260, 0.15, &err), FL_EINVAL);
    print_message("  refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "<s>"));
    assert_null(strchr(err.msg, '\n'));
    fl_tokenizer_free(plain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masking_statistics),
        cmocka_unit_test(test_masks_are_redrawn),
        cmocka_unit_test(test_loss_counts_masked_positions_only),
        cmocka_unit_test(test_tokenizer_without_encoder_tokens),
    };
    return cmocka_run_group_tests_name("mlm", tests, setup, teardown);
}
