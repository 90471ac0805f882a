/*
 * tasks/blimp/blimp_pll.c — BLiMP for encoders: each sentence's
 * pseudo-log-likelihood (Salazar et al. 2020), as the BabyLM pipeline
 * scores masked LMs (see blimp.h).
 *
 * A sentence is <s> w_1 .. w_n </s> (RoBERTa's layout; cut to the context),
 * and its PLL is
 *
 *   PLL = Σ_t log p(w_t | <s> w_1 .. w_{t-1} <mask> w_{t+1} .. w_n </s>)
 *
 * one copy of the sentence per token, that token masked and its target set,
 * all scored by svc->masked_logprobs, which batches copies of equal length
 * with little padding and runs the LM head only on the masked rows. Unlike
 * a causal model's scores, nothing is shared between the two sentences of a
 * pair: every token sees the whole sentence. Pairs go in chunks (progress,
 * bounded memory: ~30 copies of ~17 tokens per pair).
 */
#include "blimp.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_PAIRS 1024

typedef struct copies {
    tu_seqs seqs;              /* n_words copies of every sentence, sentence by sentence */
    int32_t *targets;          /* aligned with seqs.tokens: the masked token, -1 elsewhere */
    int64_t cap;
    int64_t *first;            /* [sentences + 1]: sentence j's copies are first[j] .. first[j+1]-1 */
} copies;

/* <s> + tokens of text + </s> into ids[] (room for context), cut to the
   context; *cut set when cut. Returns the length. */
static fl_status sentence(const fl_task_services *svc, const char *text, int32_t *ids, int64_t *n, int *cut,
                          fl_error *err) {
    int32_t *words = NULL;
    size_t k = 0;
    fl_status st = svc->encode(svc, text, strlen(text), &words, &k, err);
    if (st) return st;
    const size_t room = (size_t)svc->context - 2;
    if (k > room) k = room, *cut = 1;
    ids[0] = svc->bos;
    memcpy(ids + 1, words, k * sizeof *ids);
    ids[k + 1] = svc->sep;
    *n = (int64_t)k + 2;
    svc->free(words);
    return FL_OK;
}

/* One copy of ids[n] per word (positions 1..n-2), that word masked. */
static fl_status add_copies(const fl_task_services *svc, copies *c, int32_t *ids, int64_t n, fl_error *err) {
    const size_t len = (size_t)n;
    const int32_t *part = ids;
    fl_status st = FL_OK;
    for (int64_t t = 1; t + 1 < n && !st; t++) {
        const int32_t word = ids[t];
        ids[t] = svc->mask;
        st = tu_seqs_add(&c->seqs, &part, &len, 1, err);
        ids[t] = word;
        if (!st && c->seqs.n_tokens > c->cap) {
            int64_t cap = 2 * c->seqs.n_tokens;
            int32_t *g = realloc(c->targets, (size_t)cap * sizeof *g);
            if (!g) return tu_fail(err, FL_ENOMEM, "blimp: out of memory");
            c->targets = g, c->cap = cap;
        }
        if (st) break;
        int32_t *tg = c->targets + c->seqs.n_tokens - n;
        for (int64_t i = 0; i < n; i++) tg[i] = i == t ? word : -1;
    }
    return st;
}

/* Copies of both sentences of pairs first..first+n-1 (sentence 2i good, 2i+1 bad). */
static fl_status build(const fl_task_services *svc, const blimp_set *s, int64_t first, int64_t n, copies *c,
                       int64_t *truncated, int64_t *tokens, fl_error *err) {
    int32_t *ids = malloc((size_t)svc->context * sizeof *ids);
    c->first = malloc((size_t)(2 * n + 1) * sizeof *c->first);
    fl_status st = ids && c->first ? tu_seqs_init(&c->seqs, err) : tu_fail(err, FL_ENOMEM, "blimp: out of memory");
    for (int64_t i = 0; i < n && !st; i++) {
        int cut = 0; /* either sentence of the pair */
        for (int64_t j = 2 * i; j < 2 * i + 2 && !st; j++) {
            int64_t len = 0;
            c->first[j] = c->seqs.n;
            st = sentence(svc, j % 2 ? s->pairs[first + i].bad : s->pairs[first + i].good, ids, &len, &cut, err);
            if (!st) st = add_copies(svc, c, ids, len, err);
            *tokens += len;
        }
        *truncated += cut;
    }
    if (!st) c->first[2 * n] = c->seqs.n;
    free(ids);
    return st;
}

/* Sentence j's PLL: the scores of its copies (each is 0 but at its mask). */
static double pll(const copies *c, const float *out, int64_t j) {
    double sum = 0;
    for (int64_t k = c->seqs.offsets[c->first[j]]; k < c->seqs.offsets[c->first[j + 1]]; k++) sum += out[k];
    return sum;
}

fl_status blimp_score_pll(const fl_task_services *svc, const blimp_set *s, int32_t batch, double *lp_good,
                          double *lp_bad, int64_t *truncated, int64_t *tokens, fl_error *err) {
    *truncated = 0, *tokens = 0;
    if (svc->context < 3) return tu_fail(err, FL_EINVAL, "blimp: the model's context (%d) cannot hold <s> w </s>", svc->context);
    fl_status st = FL_OK;
    for (int64_t first = 0; first < s->n && !st; first += CHUNK_PAIRS) {
        const int64_t n = s->n - first < CHUNK_PAIRS ? s->n - first : CHUNK_PAIRS;
        copies c = {0};
        float *out = NULL;
        st = build(svc, s, first, n, &c, truncated, tokens, err);
        if (!st && !(out = malloc((size_t)(c.seqs.n_tokens ? c.seqs.n_tokens : 1) * sizeof *out)))
            st = tu_fail(err, FL_ENOMEM, "blimp: out of memory");
        fl_token_seqs v = tu_seqs_view(&c.seqs);
        if (!st) st = svc->masked_logprobs(svc, &v, c.targets, batch, out, err);
        for (int64_t i = 0; i < n && !st; i++) lp_good[first + i] = pll(&c, out, 2 * i), lp_bad[first + i] = pll(&c, out, 2 * i + 1);
        tu_seqs_free(&c.seqs);
        free(c.targets), free(c.first), free(out);
        if (!st) svc->progress(svc, "pairs scored (PLL)", first + n, s->n);
    }
    return st;
}
