/*
 * tests/test_shared_forward.c — the forward that computes a row shared by
 * several sequences once (core/model.h: fl_model_forward_shared; its plan,
 * core/row_plan.h).
 *
 * Specification:
 *  - every real row's hidden state equals that of fl_model_forward_hidden
 *    over its sequence alone, for a batch whose sequences share prefixes
 *    every way (a duplicate, one the prefix of another, pairs that part at
 *    position 1 or 3, none shared) and are padded to different lengths; on
 *    every FFN plugin, and with a local-attention layer;
 *  - it computes each shared row once: the computed rows are exactly the
 *    rows same_as marks, rows that share get one hidden row, pads get -1;
 *  - the plan lays every sequence's real rows out grouped by length, each
 *    layout row reading the computed row it is;
 *  - the FFN plugins see each computed row's token and position (FFN ABI
 *    2.1, checked by tests/plugins/ffn_ctxcheck.c);
 *  - a same_as that breaks a rule (names a later row, a row that is itself
 *    shared, another token or position, a row whose earlier tokens differ;
 *    a real row after padding; nothing but padding) and an encoder are
 *    FL_EINVAL messages naming the row and the rule.
 *
 * The model is tiny (vocabulary 96, context 24, d_model 16, 2 layers of 2
 * heads), its embeddings and attention weights scaled up 10x so attention
 * prefers some positions strongly: a row that read the wrong key, position
 * or token would move the hidden states by O(1). Both paths sum the same
 * products in other orders (GEMMs over other row counts), so they agree to
 * f32 round-off; 1e-4 (1 + |h|) is the bound, as in test_decode.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "row_plan.h"

enum { V = 96, CTX = 24, D = 16, L = 2, H = 2 };
enum { B = 7, T = 9 };
#define TOL 1e-4

static const char *const SPECS[] = {
    "dense:d_ff=32",
    "moe:experts=4,top_k=2,d_expert=16",
    "cnt:d_ff=64,block=8,rank=4",
    "pkm:heads=2,k_dim=8,n_keys=8,knn=4",
    FFNLAB_TEST_PLUGIN_DIR "/ffn_ctxcheck.so",
};
#define N_SPECS (int)(sizeof SPECS / sizeof SPECS[0])

/* The batch: 7 sequences of tokens, their lengths and what each shares with
   the one before it (the host's token order makes such runs). */
static const int32_t SEQ[B][T] = {
    {5, 17, 42, 8, 61, 3, 0, 0, 0},    /* 6 */
    {5, 17, 42, 8, 61, 3, 0, 0, 0},    /* a duplicate: shares all 6 */
    {5, 17, 42, 8, 61, 3, 77, 12, 9},  /* begins with it: shares 6 */
    {5, 17, 42, 50, 2, 0, 0, 0, 0},    /* parts at position 3: shares 3 */
    {5, 90, 1, 0, 0, 0, 0, 0, 0},      /* parts at position 1: shares 1 */
    {44, 90, 1, 33, 0, 0, 0, 0, 0},    /* shares nothing */
    {44, 90, 1, 33, 7, 7, 7, 7, 0},    /* shares 4 */
};
static const int LEN[B] = {6, 6, 9, 5, 3, 4, 8};
static const int SHARE[B] = {0, 6, 6, 3, 1, 0, 4};

static fl_model *make_model(const char *spec, uint64_t local, int arch) {
    const char *specs[L] = {spec, spec};
    fl_model_config mc = {.vocab_size = V, .context = CTX, .d_model = D, .n_layers = L, .n_heads = H,
                          .ffn_specs = specs, .seed = 9, .local_layers = local, .window = local ? 3 : 0,
                          .arch = arch, .pad_token = 0};
    fl_model *m = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, fl_backend_cpu(), &m, &err), &err);
    ts_sharpen_attention(m, 10.0f);
    return m;
}

/* same_as for SEQ: a shared position is the sequence before's row. */
static void plan_batch(int32_t *same_as) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            same_as[b * T + t] = t >= LEN[b] ? -1 : t < SHARE[b] ? same_as[(b - 1) * T + t] : b * T + t;
}

static int expected_rows(void) {
    int n = 0;
    for (int b = 0; b < B; b++) n += LEN[b] - SHARE[b];
    return n;
}

static float *hidden_copy(fl_model *m, int64_t rows) {
    float *h = malloc((size_t)rows * D * sizeof *h);
    assert_non_null(h);
    fl_backend_cpu()->ops.to_host(h, fl_model_hidden(m), (size_t)rows * D * sizeof *h);
    return h;
}

static void check_against_alone(const char *spec, uint64_t local) {
    fl_model *m = make_model(spec, local, FL_ARCH_GPT);
    int32_t same_as[B * T], hidden_row[B * T];
    plan_batch(same_as);
    fl_error err = {0};
    ts_assert_ok(fl_model_forward_shared(m, &SEQ[0][0], same_as, B, T, hidden_row, &err), &err);
    const int n = expected_rows();
    float *shared = hidden_copy(m, n);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const int r = b * T + t;
            if (t >= LEN[b]) assert_int_equal(hidden_row[r], -1);
            else if (t < SHARE[b]) assert_int_equal(hidden_row[r], hidden_row[r - T]);
            else assert_true(hidden_row[r] >= 0 && hidden_row[r] < n);
        }
        ts_assert_ok(fl_model_forward_hidden(m, SEQ[b], 1, LEN[b], 0, 0, &err), &err);
        float *alone = hidden_copy(m, LEN[b]);
        for (int t = 0; t < LEN[b]; t++)
            for (int c = 0; c < D; c++) {
                const double want = alone[t * D + c], got = shared[(size_t)hidden_row[b * T + t] * D + c];
                const double d = fabs(got - want) / (1 + fabs(want));
                if (d > TOL) fail_msg("%s: sequence %d position %d unit %d: %.6f shared vs %.6f alone", spec, b, t, c, got, want);
                if (d > worst) worst = d;
            }
        free(alone);
    }
    print_message("  %-40s%s shared vs alone: max |d|/(1+|h|) %.2e over %d computed rows\n", spec,
                  local ? " (local)" : "", worst, n);
    free(shared);
    fl_model_free(m);
}

static void test_shared_rows_match_each_sequence_alone(void **state) {
    (void)state;
    for (int s = 0; s < N_SPECS; s++) check_against_alone(SPECS[s], 0);
    check_against_alone(SPECS[0], 2); /* layer 1 local over 3 positions */
}

static void test_plan_lays_sequences_out_by_length(void **state) {
    (void)state;
    int32_t same_as[B * T], hidden_row[B * T];
    plan_batch(same_as);
    fl_row_plan p = {0};
    fl_error err = {0};
    ts_assert_ok(fl_row_plan_build(&p, &SEQ[0][0], same_as, B, T, hidden_row, &err), &err);
    assert_int_equal(p.n, expected_rows());
    int64_t real = 0;
    for (int b = 0; b < B; b++) real += LEN[b];
    assert_int_equal(p.L, real);
    /* lengths 3, 4, 5, 8, 9 once, 6 twice */
    const int count[T + 1] = {0, 0, 0, 1, 1, 1, 2, 0, 1, 1};
    for (int l = 1; l <= T; l++) assert_int_equal(fl_row_plan_count(&p, l), count[l]);
    for (int l = 1; l <= T; l++) /* each group's rows hold whole sequences, positions 0..l-1 */
        for (int64_t r = p.start[l]; r < p.start[l + 1]; r++) assert_int_equal(p.pos[p.src[r]], (r - p.start[l]) % l);
    for (int64_t c = 0; c < p.n; c++) assert_int_equal(p.src[p.own[c]], c);
    /* the two sequences of length 6 (the duplicates) read the same rows */
    for (int t = 0; t < 6; t++) assert_int_equal(p.src[p.start[6] + t], p.src[p.start[6] + 6 + t]);
    fl_row_plan_free(&p);
}

/* same_as with row r changed to v must be refused naming row r and why. */
static void refuse(fl_model *m, int r, int32_t v, const char *why) {
    int32_t same_as[B * T], hidden_row[B * T];
    plan_batch(same_as);
    same_as[r] = v;
    fl_error err = {0};
    assert_int_equal(fl_model_forward_shared(m, &SEQ[0][0], same_as, B, T, hidden_row, &err), FL_EINVAL);
    char row[32];
    snprintf(row, sizeof row, "row %d ", r);
    if (!strstr(err.msg, row) || !strstr(err.msg, why)) fail_msg("same_as[%d] = %d: got \"%s\"", r, v, err.msg);
}

static void test_broken_rules_are_refused(void **state) {
    (void)state;
    fl_model *m = make_model(SPECS[0], 0, FL_ARCH_GPT);
    refuse(m, 1 * T + 2, 2 * T + 2, "names a later row");
    refuse(m, 2 * T + 2, 1 * T + 2, "not computed itself");     /* row 1*T+2 is itself shared */
    refuse(m, 3 * T + 3, 0 * T + 3, "another token or position"); /* 50 vs 8 */
    refuse(m, 4 * T + 1, 0 * T + 2, "another token or position"); /* position 2 for 1 */
    fl_model_free(m);
}

static void test_bad_input_is_refused(void **state) {
    (void)state;
    fl_model *m = make_model(SPECS[0], 0, FL_ARCH_GPT);
    fl_error err = {0};
    int32_t same_as[B * T], hidden_row[B * T];
    /* earlier tokens differ: sequence 5 (44 90 ...) naming sequence 4's 90 at position 1 */
    int32_t seq[B * T];
    memcpy(seq, SEQ, sizeof seq);
    plan_batch(same_as);
    same_as[5 * T + 1] = 4 * T + 1;
    assert_int_equal(fl_model_forward_shared(m, seq, same_as, B, T, hidden_row, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "earlier tokens differ"));
    /* a real row after padding */
    plan_batch(same_as);
    same_as[0 * T + 2] = -1;
    assert_int_equal(fl_model_forward_shared(m, seq, same_as, B, T, hidden_row, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "follows a padding row"));
    /* nothing but padding */
    for (int r = 0; r < B * T; r++) same_as[r] = -1;
    assert_int_equal(fl_model_forward_shared(m, seq, same_as, B, T, hidden_row, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "every row is padding"));
    /* a token outside the vocabulary, a batch past the context */
    plan_batch(same_as);
    seq[3] = V;
    assert_int_equal(fl_model_forward_shared(m, seq, same_as, B, T, hidden_row, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "outside the vocabulary"));
    assert_int_equal(fl_model_forward_shared(m, &SEQ[0][0], same_as, 1, CTX + 1, hidden_row, &err), FL_EINVAL);
    fl_model_free(m);
    /* an encoder sees both ways: no row is the same in two sequences */
    m = make_model(SPECS[0], 0, FL_ARCH_BERT);
    plan_batch(same_as);
    assert_int_equal(fl_model_forward_shared(m, &SEQ[0][0], same_as, B, T, hidden_row, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "encoder"));
    fl_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_rows_match_each_sequence_alone),
        cmocka_unit_test(test_plan_lays_sequences_out_by_length),
        cmocka_unit_test(test_broken_rules_are_refused),
        cmocka_unit_test(test_bad_input_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
