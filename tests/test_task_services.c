/*
 * tests/test_task_services.c — the host side of the task ABI.
 *
 * Specification:
 *  - svc->logprobs equals log-softmax of fl_model_logits at every position,
 *    with sequences of different lengths batched together (pads never leak
 *    into a score), whatever the batch size, and `from` skips a prefix;
 *    also when sequences share prefixes (duplicates, one beginning
 *    another, pairs that part after a few tokens) and some skip prefixes
 *    of their own: the host computes a shared position once and copies a
 *    score only where it is the same;
 *  - BLiMP's pair score (blimp_score, which scores a shared prefix once) equals
 *    the sum of per-token log-probabilities computed through the LM head
 *    directly, for both sentences of every pair;
 *  - svc->hidden returns the ln_f output the LM head reads (logits = h · wteᵀ);
 *  - the fine-tuning service learns a trivially separable synthetic task to
 *    ~100% dev accuracy and leaves the pretrained weights bit-identical;
 *  - load_tokens reads a shard as it is and encodes a text file with an eot
 *    after each document; builtin_data("blimp") writes the built-in pairs;
 *  - metrics reported through the table reach the host's list with their task.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tasks/blimp/blimp_data.c"
#include "../tasks/blimp/blimp_score.c"
#include "../tasks/common/task_util.c"
#include "backend.h"
#include "host_table.h"
#include "model.h"
#include "shard.h"
#include "story_fixture.h"
#include "task_fixture.h"
#include "task_host.h"
#include "tokenizer.h"

static ts_task_fixture g;

static int setup(void **state) {
    (void)state;
    ts_task_fixture_init(&g, FL_ARCH_GPT, "unit", "unit:x=1");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ts_task_fixture_free(&g);
    return 0;
}

/* log p(tokens[t] | tokens[<t]) for t = 1..n-1 via one full forward and a
   log-softmax of the logits, in double. */
static void direct_logprobs(fl_model *m, const int32_t *tokens, int n, double *out) {
    fl_error err = {0};
    ts_assert_ok(fl_model_forward(m, tokens, NULL, 1, n, 0, 0, NULL, &err), &err);
    const int V = fl_model_cfg(m)->vocab_size;
    float *logits = malloc((size_t)n * V * sizeof *logits);
    fl_backend_cpu()->ops.to_host(logits, fl_model_logits(m), (size_t)n * V * sizeof *logits);
    out[0] = 0;
    for (int t = 1; t < n; t++) out[t] = ts_log_softmax(logits + (size_t)(t - 1) * V, V, tokens[t]);
    free(logits);
}

static void encode_with_bos(const char *text, tu_seqs *s) {
    fl_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    ts_assert_ok(fl_tokenizer_encode(g.tok, text, strlen(text), &ids, &n, &err), &err);
    int32_t eot = fl_tokenizer_eot(g.tok);
    const int32_t *parts[2] = {&eot, ids};
    size_t lens[2] = {1, n};
    ts_assert_ok(tu_seqs_add(s, parts, lens, 2, &err), &err);
    free(ids);
}


static void test_logprobs_match_the_lm_head(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs s;
    ts_assert_ok(tu_seqs_init(&s, &err), &err);
    for (int i = 0; i < TS_N_SENTENCES; i++) encode_with_bos(ts_sentences[i], &s);
    fl_token_seqs v = tu_seqs_view(&s);
    float *out = malloc((size_t)v.offsets[v.n] * sizeof *out);
    double want[64];
    for (int batch = 0; batch <= 4; batch += 2) { /* 0 = host's choice: all in one padded batch */
        ts_assert_ok(g.th.svc.logprobs(&g.th.svc, &v, NULL, batch, out, &err), &err);
        for (int i = 0; i < TS_N_SENTENCES; i++) {
            int n = (int)(v.offsets[i + 1] - v.offsets[i]);
            direct_logprobs(g.model, v.tokens + v.offsets[i], n, want);
            assert_true(out[v.offsets[i]] == 0.0f);
            for (int t = 1; t < n; t++)
                if (fabs(out[v.offsets[i] + t] - want[t]) > 1e-4)
                    fail_msg("batch %d sentence %d token %d: %.6f vs %.6f", batch, i, t, out[v.offsets[i] + t], want[t]);
        }
    }
    /* from: positions before it are left at 0, the rest unchanged */
    int64_t from[TS_N_SENTENCES];
    for (int i = 0; i < TS_N_SENTENCES; i++) from[i] = 3;
    ts_assert_ok(g.th.svc.logprobs(&g.th.svc, &v, from, 0, out, &err), &err);
    int n0 = (int)(v.offsets[1] - v.offsets[0]);
    direct_logprobs(g.model, v.tokens, n0, want);
    assert_true(out[1] == 0.0f && out[2] == 0.0f);
    assert_true(fabs(out[3] - want[3]) < 1e-4);
    free(out);
    tu_seqs_free(&s);
}

/* Adds tokens[0..n) with token k replaced by r (k < 0: none). */
static void add_variant(tu_seqs *s, const int32_t *tokens, size_t n, int k, int32_t r) {
    int32_t buf[64];
    fl_error err = {0};
    memcpy(buf, tokens, n * sizeof *buf);
    if (k >= 0 && (size_t)k < n) buf[k] = r;
    const int32_t *parts[1] = {buf};
    ts_assert_ok(tu_seqs_add(s, parts, &n, 1, &err), &err);
}

static void test_logprobs_of_sequences_sharing_prefixes(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs base, s;
    ts_assert_ok(tu_seqs_init(&base, &err), &err);
    ts_assert_ok(tu_seqs_init(&s, &err), &err);
    for (int i = 0; i < TS_N_SENTENCES; i++) encode_with_bos(ts_sentences[i], &base);
    fl_token_seqs b = tu_seqs_view(&base);
    const int32_t V = fl_model_cfg(g.model)->vocab_size;
    for (int i = 0; i < TS_N_SENTENCES; i++) {
        const int32_t *t = b.tokens + b.offsets[i];
        const size_t n = (size_t)(b.offsets[i + 1] - b.offsets[i]);
        add_variant(&s, t, n, -1, 0);                     /* the sentence */
        add_variant(&s, t, n, -1, 0);                     /* a duplicate */
        add_variant(&s, t, n > 2 ? n - 2 : n, -1, 0);     /* its beginning */
        add_variant(&s, t, n, 3, (t[3 % n] + 1) % V);   /* parts at token 3 */
        add_variant(&s, t, n, 1, (t[1 % n] + 7) % V);   /* parts at token 1 */
    }
    fl_token_seqs v = tu_seqs_view(&s);
    int64_t *from = malloc((size_t)v.n * sizeof *from);
    for (int64_t i = 0; i < v.n; i++) from[i] = (i * 7) % 5; /* 0..4: each skips its own prefix */
    float *out = malloc((size_t)v.offsets[v.n] * sizeof *out);
    double want[64];
    for (int batch = 0; batch <= 3; batch += 3) {
        ts_assert_ok(g.th.svc.logprobs(&g.th.svc, &v, from, batch, out, &err), &err);
        for (int64_t i = 0; i < v.n; i++) {
            const int n = (int)(v.offsets[i + 1] - v.offsets[i]);
            direct_logprobs(g.model, v.tokens + v.offsets[i], n, want);
            for (int t = 0; t < n; t++) {
                const float got = out[v.offsets[i] + t];
                if (t < (from[i] > 1 ? from[i] : 1) ? got != 0.0f : fabs(got - want[t]) > 1e-4)
                    fail_msg("batch %d sequence %lld (from %lld) token %d: %.6f vs %.6f", batch, (long long)i,
                             (long long)from[i], t, got, t < from[i] ? 0.0 : want[t]);
            }
        }
    }
    free(out), free(from);
    tu_seqs_free(&s), tu_seqs_free(&base);
}

static void test_bad_sequences_are_refused(void **state) {
    (void)state;
    fl_error err = {0};
    int32_t toks[60] = {0};
    int64_t off[2] = {0, 49}; /* context is 48 */
    fl_token_seqs v = {.tokens = toks, .offsets = off, .n = 1};
    float out[60];
    assert_int_equal(g.th.svc.logprobs(&g.th.svc, &v, NULL, 0, out, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "49 tokens"));
    off[1] = 3;
    toks[1] = 100000;
    assert_int_equal(g.th.svc.logprobs(&g.th.svc, &v, NULL, 0, out, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "outside the vocabulary"));
}

static void test_blimp_pair_score_is_the_sum_of_token_logprobs(void **state) {
    (void)state;
    fl_error err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/pairs.jsonl", g.dir);
    const char *lines =
        "{\"sentence_good\": \"The dogs like to run.\", \"sentence_bad\": \"The dogs likes to run.\", \"UID\": \"sv\"}\n"
        "{\"sentence_good\": \"Ben saw an old owl.\", \"sentence_bad\": \"Ben saw a old owl.\", \"UID\": \"art\"}\n"
        "{\"sentence_good\": \"Lily hurt herself.\", \"sentence_bad\": \"Lily hurt himself.\", \"UID\": \"ana\"}\n"
        "{\"sentence_good\": \"Cats run.\", \"sentence_bad\": \"Dogs in the garden run fast.\", \"UID\": \"x\"}\n";
    assert_int_equal(ts_write_file(path, lines, strlen(lines)), 0);
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, path, 0, 0, NULL, &err), &err);
    assert_int_equal(s.n, 4);
    double good[4], bad[4];
    int64_t truncated = -1, tokens = 0;
    ts_assert_ok(blimp_score(&g.th.svc, &s, 0, good, bad, &truncated, &tokens, &err), &err);
    assert_int_equal(truncated, 0);
    assert_true(tokens > 8 * 3);
    for (int i = 0; i < 4; i++) {
        for (int which = 0; which < 2; which++) {
            tu_seqs q;
            ts_assert_ok(tu_seqs_init(&q, &err), &err);
            encode_with_bos(which ? s.pairs[i].bad : s.pairs[i].good, &q);
            double lp[64], total = 0;
            int n = (int)q.offsets[1];
            direct_logprobs(g.model, q.tokens, n, lp);
            for (int t = 1; t < n; t++) total += lp[t];
            double got = which ? bad[i] : good[i];
            if (fabs(got - total) > 1e-3) fail_msg("pair %d %s: %.6f vs %.6f", i, which ? "bad" : "good", got, total);
            tu_seqs_free(&q);
        }
    }
    blimp_set_free(&s);
}

static void test_hidden_is_what_the_head_reads(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs s;
    ts_assert_ok(tu_seqs_init(&s, &err), &err);
    encode_with_bos(ts_sentences[0], &s);
    encode_with_bos(ts_sentences[2], &s);
    fl_token_seqs v = tu_seqs_view(&s);
    const int C = g.th.svc.d_model, V = g.th.svc.vocab_size;
    float *h = malloc((size_t)v.offsets[2] * C * sizeof *h);
    ts_assert_ok(g.th.svc.hidden(&g.th.svc, &v, 0, h, &err), &err);
    /* the second sequence on its own: logits[t] = h[t] · wte */
    int n = (int)(v.offsets[2] - v.offsets[1]);
    ts_assert_ok(fl_model_forward(g.model, v.tokens + v.offsets[1], NULL, 1, n, 0, 0, NULL, &err), &err);
    float *logits = malloc((size_t)n * V * sizeof *logits), *wte = malloc((size_t)V * C * sizeof *wte);
    fl_backend_cpu()->ops.to_host(logits, fl_model_logits(g.model), (size_t)n * V * sizeof *logits);
    fl_backend_cpu()->ops.to_host(wte, &fl_model_find_param(g.model, "transformer.wte.weight")->value,
                                  (size_t)V * C * sizeof *wte);
    for (int t = 0; t < n; t += 3)
        for (int w = 0; w < V; w += 37) {
            double dot = 0;
            for (int c = 0; c < C; c++) dot += (double)h[(v.offsets[1] + t) * C + c] * wte[(size_t)w * C + c];
            assert_true(fabs(dot - logits[(size_t)t * V + w]) < 1e-3);
        }
    free(h), free(logits), free(wte);
    tu_seqs_free(&s);
}

/* ---- fine-tuning ---- */

/* Class = whether the sentence mentions a dog: one token decides it. */
static void make_set(tu_seqs *s, int32_t *labels, int n, int offset) {
    static const char *animals[] = {"dog", "cat", "bird", "fish"};
    static const char *verbs[] = {"runs", "sleeps", "plays", "jumps", "sings"};
    static const char *names[] = {"Lily", "Tom", "Ben", "Mia", "Sue", "Dan", "Tim"};
    fl_error err = {0};
    ts_assert_ok(tu_seqs_init(s, &err), &err);
    for (int i = 0; i < n; i++) {
        int k = i + offset, a = (k * 7) % 4;
        char text[128];
        snprintf(text, sizeof text, "%s has a %s that %s.", names[k % 7], animals[a], verbs[(k / 3) % 5]);
        encode_with_bos(text, s);
        labels[i] = a == 0;
    }
}

static void snapshot_params(fl_model *m, float **copy, size_t *n) {
    *n = 0;
    for (int i = 0; i < fl_model_n_params(m); i++) *n += (size_t)fl_numel(&fl_model_param(m, i)->value);
    *copy = malloc(*n * sizeof **copy);
    size_t k = 0;
    for (int i = 0; i < fl_model_n_params(m); i++) {
        const fl_tensor *v = &fl_model_param(m, i)->value;
        memcpy(*copy + k, v->data, fl_nbytes(v));
        k += (size_t)fl_numel(v);
    }
}

static void test_finetune_learns_and_leaves_the_base_alone(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs tr, dv;
    int32_t ytr[160], ydv[60], pred[60], pred2[60];
    make_set(&tr, ytr, 160, 0);
    make_set(&dv, ydv, 60, 1000);
    float *before = NULL, *after = NULL;
    size_t n_before = 0, n_after = 0;
    snapshot_params(g.model, &before, &n_before);
    fl_ft_data train = {.seqs = tu_seqs_view(&tr), .labels = ytr}, dev = {.seqs = tu_seqs_view(&dv), .labels = ydv};
    const fl_ft_data *extra[1] = {&dev};
    int32_t *extra_out[1] = {pred2};
    fl_finetune_opts o = {.n_classes = 2, .lr = 3e-3, .batch_size = 16, .epochs = 6, .max_len = 32, .seed = 5,
                          .eval_every = 10, .patience = 0, .grad_clip = 1.0, .name = "synthetic"};
    fl_finetune_result res;
    ts_assert_ok(g.th.svc.finetune(&g.th.svc, &o, &train, &dev, extra, 1, pred, extra_out, &res, &err), &err);
    double acc = tu_accuracy(pred, ydv, 60);
    print_message("fine-tune: dev accuracy %.3f (best %.3f at step %lld of %lld)\n", acc, res.best_dev_score,
                  (long long)res.best_step, (long long)res.steps);
    assert_true(acc >= 0.95);
    assert_true(fabs(acc - res.best_dev_score) < 1e-9); /* the kept weights are the best ones */
    assert_memory_equal(pred, pred2, sizeof pred);       /* predict sets use the same weights */
    assert_int_equal(res.steps, 60);
    snapshot_params(g.model, &after, &n_after);
    assert_int_equal(n_before, n_after);
    assert_memory_equal(before, after, n_before * sizeof *before); /* bit-identical */
    free(before), free(after);
    tu_seqs_free(&tr), tu_seqs_free(&dv);
}

static void test_finetune_refuses_bad_labels(void **state) {
    (void)state;
    fl_error err = {0};
    tu_seqs tr;
    int32_t y[8];
    make_set(&tr, y, 8, 0);
    y[3] = 2;
    fl_ft_data d = {.seqs = tu_seqs_view(&tr), .labels = y};
    int32_t pred[8];
    fl_finetune_opts o = {.n_classes = 2, .lr = 1e-3, .batch_size = 4, .epochs = 1, .max_len = 32, .name = "bad"};
    fl_finetune_result res;
    assert_int_equal(g.th.svc.finetune(&g.th.svc, &o, &d, &d, NULL, 0, pred, NULL, &res, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "label 2 of sequence 3"));
    tu_seqs_free(&tr);
}

/* ---- data and results ---- */

static void test_load_tokens_and_builtin_data(void **state) {
    (void)state;
    fl_error err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/text.txt", g.dir);
    const char *text = "The dog runs.\n<|endoftext|>\nA cat sleeps.\n";
    assert_int_equal(ts_write_file(path, text, strlen(text)), 0);
    int32_t *ids = NULL;
    size_t n = 0;
    ts_assert_ok(g.th.svc.load_tokens(&g.th.svc, path, &ids, &n, &err), &err);
    int eots = 0;
    for (size_t i = 0; i < n; i++) eots += ids[i] == g.th.svc.eot;
    assert_int_equal(eots, 2);
    assert_int_equal(ids[n - 1], g.th.svc.eot);
    snprintf(path, sizeof path, "%s/t.bin", g.dir);
    ts_assert_ok(fl_shard_write(path, ids, n, (uint32_t)g.th.svc.vocab_size, &err), &err);
    int32_t *ids2 = NULL;
    size_t n2 = 0;
    ts_assert_ok(g.th.svc.load_tokens(&g.th.svc, path, &ids2, &n2, &err), &err);
    assert_int_equal(n, n2);
    assert_memory_equal(ids, ids2, n * sizeof *ids);
    g.th.svc.free(ids), g.th.svc.free(ids2);

    char dir[2048];
    ts_assert_ok(g.th.svc.builtin_data(&g.th.svc, "blimp", dir, sizeof dir, &err), &err);
    snprintf(path, sizeof path, "%s/subject_verb_agreement_builtin.jsonl", dir);
    assert_true(tu_exists(path));
    assert_int_equal(g.th.svc.builtin_data(&g.th.svc, "glue", dir, sizeof dir, &err), FL_EINVAL);
}

static void test_metrics_reach_the_host(void **state) {
    (void)state;
    fl_error err = {0};
    size_t before = g.metrics.n;
    fl_metric m = {.name = "accuracy", .kind = FL_METRIC_ACCURACY, .value = 0.75, .n = 4, .group = "paradigm",
                   .item = "p1"};
    ts_assert_ok(g.th.svc.metric(&g.th.svc, &m, &err), &err);
    assert_int_equal(g.metrics.n, before + 1);
    const fl_metric_rec *r = &g.metrics.items[before];
    assert_string_equal(r->task, "unit");
    assert_string_equal(r->spec, "unit:x=1");
    assert_string_equal(r->group, "paradigm");
    assert_null(r->subtask);
    m.name = NULL;
    assert_int_equal(g.th.svc.metric(&g.th.svc, &m, &err), FL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logprobs_match_the_lm_head),
        cmocka_unit_test(test_logprobs_of_sequences_sharing_prefixes),
        cmocka_unit_test(test_bad_sequences_are_refused),
        cmocka_unit_test(test_blimp_pair_score_is_the_sum_of_token_logprobs),
        cmocka_unit_test(test_hidden_is_what_the_head_reads),
        cmocka_unit_test(test_finetune_learns_and_leaves_the_base_alone),
        cmocka_unit_test(test_finetune_refuses_bad_labels),
        cmocka_unit_test(test_load_tokens_and_builtin_data),
        cmocka_unit_test(test_metrics_reach_the_host),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
