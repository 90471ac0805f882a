/*
 * tasks/blimp/blimp_score.c — total log-probability of each sentence of a
 * minimal pair (see blimp.h).
 *
 * A sentence is scored as GPT-2 scores a text: <|endoftext|> first, then
 * log p(w_1 | eot) + log p(w_2 | eot w_1) + ... over its tokens. The two
 * sentences of a pair usually share a prefix ("The dog" / "The dogs"): a
 * causal model gives those prefix tokens the same log-probabilities in both,
 * so the bad sentence is scored only from the first token where they differ
 * (svc->logprobs' `from`) and its prefix scores are taken from the good one.
 * Pairs are scored in chunks (progress, bounded memory); the host runs a
 * prefix that several sentences of a chunk share through the model once.
 */
#include "blimp.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_PAIRS 16384

typedef struct encoded {
    tu_seqs seqs;              /* 2 per pair: good, bad */
    int64_t *from;             /* [2 * pairs] */
    float *out;
} encoded;

/* [eot] + tokens of text, cut to the context; *cut set when cut. */
static fl_status add_sentence(const fl_task_services *svc, tu_seqs *seqs, const char *text, int *cut,
                              fl_error *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    fl_status st = svc->encode(svc, text, strlen(text), &ids, &n, err);
    if (st) return st;
    size_t room = (size_t)svc->context - 1;
    if (n > room) n = room, *cut = 1;
    const int32_t *parts[2] = {&svc->eot, ids};
    size_t lens[2] = {1, n};
    st = tu_seqs_add(seqs, parts, lens, 2, err);
    svc->free(ids);
    return st;
}

static int64_t common_prefix(const fl_token_seqs *v, int64_t a, int64_t b) {
    const int32_t *x = v->tokens + v->offsets[a], *y = v->tokens + v->offsets[b];
    int64_t la = fl_seq_len(v, a), lb = fl_seq_len(v, b), p = 0;
    while (p < la && p < lb && x[p] == y[p]) p++;
    return p;
}

static fl_status encode_chunk(const fl_task_services *svc, const blimp_set *s, int64_t first, int64_t n,
                              encoded *e, int64_t *truncated, fl_error *err) {
    fl_status st = tu_seqs_init(&e->seqs, err);
    for (int64_t i = 0; i < n && !st; i++) {
        int cut = 0;
        st = add_sentence(svc, &e->seqs, s->pairs[first + i].good, &cut, err);
        if (!st) st = add_sentence(svc, &e->seqs, s->pairs[first + i].bad, &cut, err);
        *truncated += cut;
    }
    if (st) return st;
    fl_token_seqs v = tu_seqs_view(&e->seqs);
    e->from = malloc((size_t)v.n * sizeof *e->from);
    e->out = malloc((size_t)(v.offsets[v.n] ? v.offsets[v.n] : 1) * sizeof *e->out);
    if (!e->from || !e->out) return tu_fail(err, FL_ENOMEM, "blimp: out of memory");
    for (int64_t i = 0; i < n; i++) {
        e->from[2 * i] = 0;
        e->from[2 * i + 1] = common_prefix(&v, 2 * i, 2 * i + 1);
    }
    return FL_OK;
}

static double sum(const float *x, int64_t a, int64_t b) {
    double s = 0;
    for (int64_t i = a; i < b; i++) s += x[i];
    return s;
}

/* lp of pair i of the chunk from the scored tokens. */
static void totals(const encoded *e, int64_t i, double *good, double *bad) {
    const int64_t *off = e->seqs.offsets;
    int64_t g = 2 * i, b = 2 * i + 1, p = e->from[b];
    int64_t lg = off[g + 1] - off[g], shared = p < lg ? p : lg;
    *good = sum(e->out, off[g], off[g + 1]);
    *bad = sum(e->out, off[g], off[g] + shared) + sum(e->out, off[b] + shared, off[b + 1]);
}

fl_status blimp_score(const fl_task_services *svc, const blimp_set *s, int32_t batch, double *lp_good,
                      double *lp_bad, int64_t *truncated, int64_t *tokens, fl_error *err) {
    *truncated = 0, *tokens = 0;
    fl_status st = FL_OK;
    for (int64_t first = 0; first < s->n && !st; first += CHUNK_PAIRS) {
        int64_t n = s->n - first < CHUNK_PAIRS ? s->n - first : CHUNK_PAIRS;
        encoded e = {0};
        st = encode_chunk(svc, s, first, n, &e, truncated, err);
        fl_token_seqs v = tu_seqs_view(&e.seqs);
        *tokens += e.seqs.n_tokens;
        if (!st) st = svc->logprobs(svc, &v, e.from, batch, e.out, err);
        for (int64_t i = 0; i < n && !st; i++) totals(&e, i, &lp_good[first + i], &lp_bad[first + i]);
        tu_seqs_free(&e.seqs);
        free(e.from), free(e.out);
        if (!st) svc->progress(svc, "pairs scored", first + n, s->n);
    }
    return st;
}
