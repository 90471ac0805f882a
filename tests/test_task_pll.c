/*
 * tests/test_task_pll.c — the host's task services for an encoder (arch
 * bert, task ABI 2.1) and BLiMP's pseudo-log-likelihood scoring.
 *
 * Specification:
 *  - the services say arch bert and give the tokenizer's <s>, </s>, <pad>,
 *    <mask> ids; logprobs refuses an encoder and masked_logprobs a decoder,
 *    each with one line;
 *  - masked_logprobs equals log-softmax of fl_model_logits at each target
 *    of each sequence forwarded alone (no padding), with sequences of
 *    different lengths batched together (the <pad> keys are masked, so no
 *    pad leaks into a score), whatever the batch size; 0 where no target;
 *  - BLiMP's PLL (blimp_score_pll) of each sentence equals the sum over its
 *    words of log p(word | <s> sentence </s> with that word masked),
 *    computed one position at a time with fl_model_forward;
 *  - svc->hidden of a sequence is the same alone and batched with longer
 *    ones (padding masked);
 *  - the fine-tuning service classifies an encoder from its first token
 *    (<s>): it learns a task whose label is decided by a word in the
 *    middle of the sentence to >= 95% dev accuracy.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tasks/blimp/blimp_data.c"
#include "../tasks/blimp/blimp_pll.c"
#include "../tasks/common/task_util.c"
#include "backend.h"
#include "model.h"
#include "story_fixture.h"
#include "task_fixture.h"
#include "task_host.h"
#include "tokenizer.h"

static ts_task_fixture g;
static fl_special_ids g_ids; /* the encoder's <s> </s> <pad> <mask> */

static int setup(void **state) {
    (void)state;
    ts_task_fixture_init(&g, FL_ARCH_BERT, "unit", "unit");
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_encoder_ids(g.tok, "tok", &g_ids, &err), &err);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ts_task_fixture_free(&g);
    return 0;
}

/* log p(target | tokens[n]) at position t, from one forward of the
   sequence alone and a log-softmax of its logits, in double. */
static double direct_masked(const int32_t *tokens, int n, int t, int32_t target) {
    fl_error err = {0};
    ts_assert_ok(fl_model_forward(g.model, tokens, NULL, 1, n, 0, 0, NULL, &err), &err);
    const int V = fl_model_cfg(g.model)->vocab_size;
    float *row = malloc((size_t)V * sizeof *row);
    fl_tensor r = fl_rows(fl_model_logits(g.model), t, 1);
    fl_backend_cpu()->ops.to_host(row, &r, (size_t)V * sizeof *row);
    const double lp = ts_log_softmax(row, V, target);
    free(row);
    return lp;
}

/* <s> text </s> into ids; returns the length. */
static int wrap(const char *text, int32_t *ids) {
    fl_error err = {0};
    int32_t *w = NULL;
    size_t n = 0;
    ts_assert_ok(fl_tokenizer_encode(g.tok, text, strlen(text), &w, &n, &err), &err);
    ids[0] = g_ids.bos;
    memcpy(ids + 1, w, n * sizeof *ids);
    ids[n + 1] = g_ids.sep;
    free(w);
    return (int)n + 2;
}


static void test_services_know_the_encoder(void **state) {
    (void)state;
    const fl_task_services *svc = &g.th.svc;
    assert_true(FL_TASK_HAS(svc, masked_logprobs));
    assert_int_equal(svc->arch, FL_TASK_ARCH_BERT);
    assert_true(svc->bos == g_ids.bos && svc->sep == g_ids.sep && svc->pad == g_ids.pad && svc->mask == g_ids.mask);
    fl_error err = {0};
    int32_t toks[3] = {g_ids.bos, 5, g_ids.sep}, tg[3] = {-1, 5, -1};
    int64_t off[2] = {0, 3};
    fl_token_seqs v = {.tokens = toks, .offsets = off, .n = 1};
    float out[3];
    assert_int_equal(svc->logprobs(svc, &v, NULL, 0, out, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "encoder"));
    /* a decoder's host: masked_logprobs refuses it */
    fl_model *dec = ts_task_model(g.tok, FL_ARCH_GPT, -1);
    fl_task_host th;
    fl_metric_list ml = {0};
    ts_assert_ok(fl_task_host_init(&th, dec, g.tok, "", g.dir, "", &ml, &err), &err);
    assert_int_equal(th.svc.arch, FL_TASK_ARCH_GPT);
    assert_int_equal(th.svc.mask, -1);
    assert_int_equal(th.svc.masked_logprobs(&th.svc, &v, tg, 0, out, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "decoder"));
    fl_model_free(dec);
    fl_metric_list_free(&ml);
}

static void test_masked_logprobs_match_the_lm_head(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs s;
    ts_assert_ok(tu_seqs_init(&s, &err), &err);
    int32_t targets[512];
    for (int i = 0; i < TS_N_SENTENCES; i++) { /* every third word masked */
        int32_t ids[64];
        const int n = wrap(ts_sentences[i], ids);
        for (int t = 0; t < n; t++) {
            const int chosen = t > 0 && t < n - 1 && (t + i) % 3 == 0;
            targets[s.n_tokens + t] = chosen ? ids[t] : -1;
            if (chosen) ids[t] = g_ids.mask;
        }
        const int32_t *part = ids;
        const size_t len = (size_t)n;
        ts_assert_ok(tu_seqs_add(&s, &part, &len, 1, &err), &err);
    }
    fl_token_seqs v = tu_seqs_view(&s);
    float *out = malloc((size_t)v.offsets[v.n] * sizeof *out);
    for (int batch = 0; batch <= 4; batch += 2) { /* 0: all in one padded batch */
        ts_assert_ok(g.th.svc.masked_logprobs(&g.th.svc, &v, targets, batch, out, &err), &err);
        double worst = 0;
        for (int i = 0; i < TS_N_SENTENCES; i++) {
            const int n = (int)(v.offsets[i + 1] - v.offsets[i]);
            for (int t = 0; t < n; t++) {
                const int64_t k = v.offsets[i] + t;
                if (targets[k] < 0) {
                    assert_true(out[k] == 0.0f);
                    continue;
                }
                const double d = fabs(out[k] - direct_masked(v.tokens + v.offsets[i], n, t, targets[k]));
                worst = d > worst ? d : worst;
            }
        }
        print_message("  batch %d: max |masked_logprobs - direct| %.2e\n", batch, worst);
        assert_true(worst < 1e-4);
    }
    free(out);
    tu_seqs_free(&s);
}

/* A sentence's PLL, one position at a time. */
static double pll_direct(const char *text) {
    int32_t ids[64];
    const int n = wrap(text, ids);
    double sum = 0;
    for (int t = 1; t < n - 1; t++) {
        const int32_t w = ids[t];
        ids[t] = g_ids.mask;
        sum += direct_masked(ids, n, t, w);
        ids[t] = w;
    }
    return sum;
}

static void test_pll_is_the_sum_of_masked_logprobs(void **state) {
    (void)state;
    fl_error err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/pairs.jsonl", g.dir);
    const char *lines =
        "{\"sentence_good\": \"The dogs like to run.\", \"sentence_bad\": \"The dogs likes to run.\", \"UID\": \"sv\"}\n"
        "{\"sentence_good\": \"Ben saw an old owl.\", \"sentence_bad\": \"Ben saw a old owl.\", \"UID\": \"art\"}\n"
        "{\"sentence_good\": \"Lily hurt herself.\", \"sentence_bad\": \"Lily hurt himself.\", \"UID\": \"ana\"}\n"
        "{\"sentence_good\": \"Cats run.\", \"sentence_bad\": \"Dogs in the big garden run very fast today.\", \"UID\": \"x\"}\n";
    assert_int_equal(ts_write_file(path, lines, strlen(lines)), 0);
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, path, 0, 0, NULL, &err), &err);
    for (int batch = 0; batch <= 3; batch += 3) {
        double good[4], bad[4];
        int64_t truncated = -1, tokens = 0;
        ts_assert_ok(blimp_score_pll(&g.th.svc, &s, batch, good, bad, &truncated, &tokens, &err), &err);
        assert_int_equal(truncated, 0);
        for (int i = 0; i < 4; i++) {
            const double want_g = pll_direct(s.pairs[i].good), want_b = pll_direct(s.pairs[i].bad);
            print_message("  batch %d pair %d: PLL good %.5f (direct %.5f), bad %.5f (direct %.5f)\n", batch, i, good[i],
                          want_g, bad[i], want_b);
            assert_true(fabs(good[i] - want_g) < 1e-3 && fabs(bad[i] - want_b) < 1e-3);
            assert_true(good[i] < 0 && bad[i] < 0);
        }
    }
    blimp_set_free(&s);
}

static void test_hidden_ignores_padding(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs s;
    ts_assert_ok(tu_seqs_init(&s, &err), &err);
    int32_t ids[64];
    for (int i = 3; i >= 2; i--) { /* the long one, then the short one: batched together, padded */
        const int32_t *part = ids;
        const size_t len = (size_t)wrap(ts_sentences[i], ids);
        ts_assert_ok(tu_seqs_add(&s, &part, &len, 1, &err), &err);
    }
    fl_token_seqs v = tu_seqs_view(&s), alone = {.tokens = v.tokens, .offsets = v.offsets, .n = 1};
    const int C = g.th.svc.d_model, n0 = (int)v.offsets[1];
    float *both = malloc((size_t)v.offsets[2] * C * sizeof *both), *one = malloc((size_t)n0 * C * sizeof *one);
    ts_assert_ok(g.th.svc.hidden(&g.th.svc, &v, 0, both, &err), &err);
    ts_assert_ok(g.th.svc.hidden(&g.th.svc, &alone, 0, one, &err), &err);
    double worst = 0;
    for (int k = 0; k < n0 * C; k++) worst = fmax(worst, fabs(both[k] - one[k]));
    print_message("  the short sentence alone vs padded beside a longer one: max |d| %.2e\n", worst);
    assert_true(worst < 1e-5);
    free(both), free(one);
    tu_seqs_free(&s);
}

/* Class = whether the sentence mentions a dog, a word in its middle: only
   attention from <s> to it can tell. */
static void make_set(tu_seqs *s, int32_t *labels, int n, int offset) {
    static const char *animals[] = {"dog", "cat", "bird", "fish"};
    static const char *verbs[] = {"runs", "sleeps", "plays", "jumps", "sings"};
    static const char *names[] = {"Lily", "Tom", "Ben", "Mia", "Sue", "Dan", "Tim"};
    fl_error err = {0};
    ts_assert_ok(tu_seqs_init(s, &err), &err);
    for (int i = 0; i < n; i++) {
        int k = i + offset, a = (k * 7) % 4;
        char text[128];
        int32_t ids[64];
        snprintf(text, sizeof text, "%s has a %s that %s.", names[k % 7], animals[a], verbs[(k / 3) % 5]);
        const int32_t *part = ids;
        const size_t len = (size_t)wrap(text, ids);
        ts_assert_ok(tu_seqs_add(s, &part, &len, 1, &err), &err);
        labels[i] = a == 0;
    }
}

static void test_finetune_classifies_from_the_first_token(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs tr, dv;
    int32_t ytr[160], ydv[60], pred[60];
    make_set(&tr, ytr, 160, 0);
    make_set(&dv, ydv, 60, 1000);
    fl_ft_data train = {.seqs = tu_seqs_view(&tr), .labels = ytr}, dev = {.seqs = tu_seqs_view(&dv), .labels = ydv};
    fl_finetune_opts o = {.n_classes = 2, .lr = 3e-3, .batch_size = 16, .epochs = 6, .max_len = 32, .seed = 5,
                          .eval_every = 10, .patience = 0, .grad_clip = 1.0, .name = "synthetic"};
    fl_finetune_result res;
    ts_assert_ok(g.th.svc.finetune(&g.th.svc, &o, &train, &dev, NULL, 0, pred, NULL, &res, &err), &err);
    const double acc = tu_accuracy(pred, ydv, 60);
    print_message("fine-tune (encoder, <s>): dev accuracy %.3f (best at step %lld of %lld)\n", acc,
                  (long long)res.best_step, (long long)res.steps);
    assert_true(acc >= 0.95);
    tu_seqs_free(&tr), tu_seqs_free(&dv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_services_know_the_encoder),
        cmocka_unit_test(test_masked_logprobs_match_the_lm_head),
        cmocka_unit_test(test_pll_is_the_sum_of_masked_logprobs),
        cmocka_unit_test(test_hidden_ignores_padding),
        cmocka_unit_test(test_finetune_classifies_from_the_first_token),
    };
    return cmocka_run_group_tests_name("task services, encoder", tests, setup, teardown);
}
