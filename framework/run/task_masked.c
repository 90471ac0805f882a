/*
 * run/task_masked.c — svc->masked_logprobs (ffnlab/task.h): an encoder's
 * predictions at chosen positions, batched (task_masked.h).
 *
 * Sequences are ordered longest first and cut into batches of about
 * BATCH_TOKENS tokens, each padded to its first (longest) member with <pad>,
 * whose keys the encoder masks (core/model.h), so a sequence scores the
 * same in any batch. The model runs without its LM head; the head then runs
 * only on the rows that have a target, in chunks that keep the [rows, V]
 * logits small:
 *
 *   logp = h · wte[target] - logsumexp(h · wteᵀ)    h = ln_f output of the row
 *
 * Pseudo-log-likelihood scoring (BLiMP for encoders) sends one copy of a
 * sentence per token, that token masked: about 15 rows of 17 tokens per
 * BLiMP sentence and one head row each, so the forwards are nearly all of
 * the work, and sorting by length keeps their padding near zero.
 */
#include "task_masked.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "host_table.h"
#include "seq_order.h"

#define BATCH_TOKENS 8192     /* tokens per forward when the task leaves it to us */
#define HEAD_FLOATS (1 << 22) /* logits per head chunk: 16 MB */

/* Every sequence 1..context tokens, every token and target in the vocabulary
   (a target may be -1: not scored). */
static fl_status check(const fl_model *m, const fl_token_seqs *s, const int32_t *targets, fl_error *err) {
    const fl_model_config *mc = fl_model_cfg(m);
    if (mc->arch != FL_ARCH_BERT)
        return fl_fail(err, FL_EINVAL, "masked_logprobs: the model is a decoder (arch gpt); it scores with logprobs");
    if (s->n < 0 || (s->n > 0 && (!s->tokens || !s->offsets || !targets || s->offsets[0] != 0)))
        return fl_fail(err, FL_EINVAL, "masked_logprobs: bad sequence table (n = %lld)", (long long)s->n);
    for (int64_t i = 0; i < s->n; i++) {
        if (fl_seq_len(s, i) < 1 || fl_seq_len(s, i) > mc->context)
            return fl_fail(err, FL_EINVAL, "masked_logprobs: sequence %lld has %lld tokens; the model takes 1 to %d",
                           (long long)i, (long long)fl_seq_len(s, i), mc->context);
        for (int64_t k = s->offsets[i]; k < s->offsets[i + 1]; k++)
            if (s->tokens[k] < 0 || s->tokens[k] >= mc->vocab_size || targets[k] < -1 || targets[k] >= mc->vocab_size)
                return fl_fail(err, FL_EINVAL, "masked_logprobs: sequence %lld: token %d or target %d is outside "
                               "the vocabulary [0, %d)", (long long)i, s->tokens[k], targets[k], mc->vocab_size);
    }
    return FL_OK;
}

/* ------------------------------------------------------------ the head */

/* Rows of the last forward's hidden states to score, collected up to a chunk. */
typedef struct head {
    fl_model *m;
    const fl_ops *o;
    const fl_tensor *wte;      /* [V,C] */
    int64_t V, chunk, n;       /* n: rows collected */
    int32_t *row, *pick;       /* [chunk] hidden row; flat index row*V + target into the logits */
    int64_t *dst;              /* [chunk] where the score goes */
    float *lse_h, *pick_h;     /* [chunk] */
    fl_tensor row_d, H, L, lse, pick_d, picked;
} head;

static fl_status head_init(head *h, fl_model *m, fl_error *err) {
    const fl_param *wte = fl_model_find_param(m, "transformer.wte.weight");
    if (!wte) return fl_fail(err, FL_EINTERNAL, "model has no transformer.wte.weight");
    const fl_host *host = fl_model_host(m);
    *h = (head){.m = m, .o = &fl_host_backend(host)->ops, .wte = &wte->value, .V = wte->value.shape[0]};
    h->chunk = HEAD_FLOATS / h->V > 0 ? HEAD_FLOATS / h->V : 1;
    const int64_t C = wte->value.shape[1], s1[1] = {h->chunk}, s2[2] = {h->chunk, C}, sv[2] = {h->chunk, h->V},
                  sp[2] = {h->chunk, 1}; /* picked: gathered rows of width 1 */
    fl_status st;
    if ((st = host->tensor_ensure(host, &h->row_d, FL_I32, 1, s1, err)) ||
        (st = host->tensor_ensure(host, &h->pick_d, FL_I32, 1, s1, err)) ||
        (st = host->tensor_ensure(host, &h->lse, FL_F32, 1, s1, err)) ||
        (st = host->tensor_ensure(host, &h->picked, FL_F32, 2, sp, err)) ||
        (st = host->tensor_ensure(host, &h->H, FL_F32, 2, s2, err)) ||
        (st = host->tensor_ensure(host, &h->L, FL_F32, 2, sv, err)))
        return st;
    const size_t c = (size_t)h->chunk;
    h->row = malloc(c * sizeof *h->row), h->pick = malloc(c * sizeof *h->pick), h->dst = malloc(c * sizeof *h->dst);
    h->lse_h = malloc(c * sizeof *h->lse_h), h->pick_h = malloc(c * sizeof *h->pick_h);
    if (!h->row || !h->pick || !h->dst || !h->lse_h || !h->pick_h)
        return fl_fail(err, FL_ENOMEM, "out of memory for masked scoring");
    return FL_OK;
}

static void head_free(head *h) {
    if (h->m) {
        const fl_host *host = fl_model_host(h->m);
        fl_tensor *ts[] = {&h->row_d, &h->pick_d, &h->lse, &h->picked, &h->H, &h->L};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) host->tensor_release(host, ts[i]);
    }
    free(h->row), free(h->pick), free(h->dst), free(h->lse_h), free(h->pick_h);
}

/* out[dst[r]] = log p(target of r | hidden row r) for the rows collected. */
static void head_flush(head *h, float *out) {
    const int64_t R = h->n;
    if (!R) return;
    fl_tensor rows = fl_rows(&h->row_d, 0, R), pick = fl_rows(&h->pick_d, 0, R), H = fl_rows(&h->H, 0, R);
    fl_tensor L = fl_rows(&h->L, 0, R), lse = fl_rows(&h->lse, 0, R), picked = fl_rows(&h->picked, 0, R);
    fl_tensor flat = fl_view2(&L, R * h->V, 1);
    h->o->from_host(&rows, h->row, (size_t)R * sizeof *h->row);
    h->o->from_host(&pick, h->pick, (size_t)R * sizeof *h->pick);
    h->o->gather_rows(fl_model_hidden(h->m), &rows, &H); /* H[R,C] */
    h->o->gemm(0, 1, 1.0f, &H, h->wte, 0.0f, &L);        /* [R,C]·[V,C]ᵀ */
    h->o->logsumexp(&L, &lse);
    h->o->gather_rows(&flat, &pick, &picked);             /* L[r, target] */
    h->o->to_host(h->lse_h, &lse, (size_t)R * sizeof(float));
    h->o->to_host(h->pick_h, &picked, (size_t)R * sizeof(float));
    for (int64_t r = 0; r < R; r++) out[h->dst[r]] = h->pick_h[r] - h->lse_h[r];
    h->n = 0;
}

/* Queues hidden row `row` with its target for the score at out[dst]. */
static void head_add(head *h, int32_t row, int32_t target, int64_t dst, float *out) {
    h->row[h->n] = row;
    h->pick[h->n] = (int32_t)(h->n * h->V + target); /* chunk * V < 2^31 */
    h->dst[h->n++] = dst;
    if (h->n == h->chunk) head_flush(h, out);
}

/* ------------------------------------------------------------ batches */

/* Sequences idx[0..B) as tokens[B,T], right-padded with pad. */
static void fill(const fl_token_seqs *s, const int64_t *idx, int B, int T, int32_t pad, int32_t *tok) {
    for (int b = 0; b < B; b++) {
        const int64_t n = fl_seq_len(s, idx[b]);
        int32_t *row = tok + (size_t)b * T;
        memcpy(row, s->tokens + s->offsets[idx[b]], (size_t)n * sizeof *row);
        for (int64_t t = n; t < T; t++) row[t] = pad;
    }
}

/* Every target of the batch idx[0..B) (rows T apart) through the head. */
static void score(head *h, const fl_token_seqs *s, const int32_t *targets, const int64_t *idx, int B, int T,
                  float *out) {
    for (int b = 0; b < B; b++)
        for (int64_t k = s->offsets[idx[b]]; k < s->offsets[idx[b] + 1]; k++)
            if (targets[k] >= 0) head_add(h, (int32_t)(b * T + (k - s->offsets[idx[b]])), targets[k], k, out);
    head_flush(h, out);
}

fl_status fl_task_masked_logprobs(fl_model *m, const fl_token_seqs *s, const int32_t *targets, int32_t batch,
                                  float *out, fl_error *err) {
    fl_status st = check(m, s, targets, err);
    if (st || s->n == 0) return st;
    memset(out, 0, (size_t)s->offsets[s->n] * sizeof *out);
    int64_t *order = fl_seqs_longest_first(s);
    int32_t *tok = NULL;
    size_t cap = 0;
    head h = {0};
    st = order ? head_init(&h, m, err) : fl_fail(err, FL_ENOMEM, "out of memory for masked scoring");
    for (int64_t first = 0; first < s->n && !st;) {
        const int T = (int)fl_seq_len(s, order[first]); /* the longest of its batch */
        int64_t B = batch > 0 ? batch : BATCH_TOKENS / T > 0 ? BATCH_TOKENS / T : 1;
        if (B > s->n - first) B = s->n - first;
        if ((size_t)(B * T) > cap) {
            free(tok);
            cap = (size_t)(B * T);
            if (!(tok = malloc(cap * sizeof *tok))) st = fl_fail(err, FL_ENOMEM, "out of memory for a batch");
        }
        if (st) break;
        fill(s, order + first, (int)B, T, fl_model_cfg(m)->pad_token, tok);
        if (!(st = fl_model_forward_hidden(m, tok, (int)B, T, 0, 0, err))) score(&h, s, targets, order + first, (int)B, T, out);
        first += B;
    }
    head_free(&h);
    free(order), free(tok);
    return st;
}
