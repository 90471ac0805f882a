/*
 * run/task_logprobs.c — svc->logprobs (ffnlab/task.h): per-token
 * log-probabilities of many sequences under a decoder (task_logprobs.h).
 *
 * Scoring is the hot path (BLiMP is 134,000 sentences), and its sentences
 * overlap: every one starts with <|endoftext|>, a minimal pair shares its
 * first words, and many pairs share "The". A causal model gives a token the
 * same state in every sequence that has the same tokens before it, so:
 *
 *   - sequences are put in token order (lexicographic), where each shares
 *     with the one before it the longest prefix it shares with any earlier
 *     one;
 *   - consecutive sequences make a batch, and fl_model_forward_shared
 *     computes each shared row once (only attention sees the padded batch,
 *     so padding costs no GEMM work either);
 *   - the LM head runs only on the rows that get a score and that the
 *     sequence before did not already score: such a position has the same
 *     state and target there, so its score is copied.
 *
 * A sequence's last token is only a target (no later position reads it), so
 * each is forwarded without it. Per scored row, in chunks small enough that
 * the [rows, V] logits stay cache-friendly:
 *
 *   logit[v]  = h · wte[v]                  h = ln_f output of position t-1
 *   logp      = logit[target] - logsumexp(logit)
 *
 * All of it goes through the backend's ops, so the same code serves a GPU.
 */
#include "task_logprobs.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "host_table.h"

#define BATCH_ROWS 8192           /* computed rows per forward when the task leaves it to us */
#define PADDED_ROWS (2 * BATCH_ROWS) /* rows of the padded batch attention sees, at most */
#define HEAD_FLOATS (1 << 22)     /* logits per head chunk: 16 MB */

fl_status fl_task_check_seqs(const fl_model *m, const fl_token_seqs *s, fl_error *err) {
    const fl_model_config *mc = fl_model_cfg(m);
    if (s->n < 0 || (s->n > 0 && (!s->tokens || !s->offsets)) || (s->n > 0 && s->offsets[0] != 0))
        return fl_fail(err, FL_EINVAL, "token sequences: bad table (n = %lld)", (long long)s->n);
    for (int64_t i = 0; i < s->n; i++) {
        int64_t len = fl_seq_len(s, i);
        if (len < 1 || len > mc->context)
            return fl_fail(err, FL_EINVAL, "token sequence %lld has %lld tokens; the model takes 1 to %d",
                           (long long)i, (long long)len, mc->context);
        for (int64_t k = s->offsets[i]; k < s->offsets[i + 1]; k++)
            if (s->tokens[k] < 0 || s->tokens[k] >= mc->vocab_size)
                return fl_fail(err, FL_EINVAL, "token sequence %lld: id %d is outside the vocabulary [0, %d)",
                               (long long)i, s->tokens[k], mc->vocab_size);
    }
    return FL_OK;
}

/* ------------------------------------------------------------ token order */

/* The tokens sequences x and y begin with alike. */
static int64_t common_prefix(const fl_token_seqs *s, int64_t x, int64_t y) {
    const int64_t lx = fl_seq_len(s, x), ly = fl_seq_len(s, y);
    const int32_t *tx = s->tokens + s->offsets[x], *ty = s->tokens + s->offsets[y];
    int64_t k = 0;
    while (k < lx && k < ly && tx[k] == ty[k]) k++;
    return k;
}

/* Lexicographic on the tokens (a sequence before the longer ones it
   begins), then by index. */
static int cmp_tokens(const void *a, const void *b, void *ctx) {
    const fl_token_seqs *s = ctx;
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b, lx = fl_seq_len(s, x), ly = fl_seq_len(s, y);
    const int64_t k = common_prefix(s, x, y);
    if (k < lx && k < ly) return s->tokens[s->offsets[x] + k] < s->tokens[s->offsets[y] + k] ? -1 : 1;
    return lx != ly ? (lx < ly ? -1 : 1) : (x > y) - (x < y);
}

/* The sequences with something to score (2 tokens or more) in token order,
   and lcp[p]: the tokens order[p] shares with order[p-1] (0 for p = 0). */
typedef struct ordering {
    int64_t n, *order, *lcp;
} ordering;

static fl_status order_init(ordering *o, const fl_token_seqs *s, fl_error *err) {
    o->n = 0;
    o->order = malloc((size_t)(s->n ? s->n : 1) * sizeof *o->order);
    o->lcp = malloc((size_t)(s->n ? s->n : 1) * sizeof *o->lcp);
    if (!o->order || !o->lcp) return fl_fail(err, FL_ENOMEM, "out of memory ordering %lld sequences", (long long)s->n);
    for (int64_t i = 0; i < s->n; i++)
        if (fl_seq_len(s, i) >= 2) o->order[o->n++] = i;
    qsort_r(o->order, (size_t)o->n, sizeof *o->order, cmp_tokens, (void *)s);
    for (int64_t p = 0; p < o->n; p++) o->lcp[p] = p > 0 ? common_prefix(s, o->order[p - 1], o->order[p]) : 0;
    return FL_OK;
}

static void order_free(ordering *o) { free(o->order), free(o->lcp); }

/* The first position sequence i scores. */
static int64_t first_scored(const int64_t *from, int64_t i) { return from && from[i] > 1 ? from[i] : 1; }

/* Is position t of the p-th sequence in order scored by copying the one
   before's? (same tokens up to t, so the same state and target, and it
   scored t itself) */
static int copies(const ordering *o, const int64_t *from, int64_t p, int64_t t) {
    return p > 0 && t < o->lcp[p] && t >= first_scored(from, o->order[p - 1]);
}

/* ------------------------------------------------------------ batches */

/* One forward: sequences order[first, first + B), rows padded to T. */
typedef struct batch {
    int64_t first;
    int B, T;
    int32_t *tok, *same_as, *hidden_row;   /* [B*T] each */
    int64_t cap;
} batch;

/* Rows of the p-th sequence the forward computes (its last token is only a
   target; the ones it shares with the sequence before, in the same batch,
   are that one's). */
static int64_t own_rows(const fl_token_seqs *s, const ordering *o, int64_t p, int first_in_batch) {
    const int64_t fwd = fl_seq_len(s, o->order[p]) - 1;
    if (first_in_batch) return fwd;
    const int64_t prev = fl_seq_len(s, o->order[p - 1]) - 1, shared = o->lcp[p] < prev ? o->lcp[p] : prev;
    return shared < fwd ? fwd - shared : 0;
}

/* The batch from order[next]: max_seqs consecutive sequences, or with
   max_seqs 0 as many as keep the computed rows within BATCH_ROWS and the
   padded batch within PADDED_ROWS; at least one. 0 when none are left. */
static int batch_next(const fl_token_seqs *s, const ordering *o, int64_t next, int32_t max_seqs, batch *bt) {
    if (next >= o->n) return 0;
    int64_t rows = 0, T = 0, B = 0;
    for (int64_t p = next; p < o->n; p++, B++) {
        const int64_t fwd = fl_seq_len(s, o->order[p]) - 1, t = fwd > T ? fwd : T;
        const int64_t r = rows + own_rows(s, o, p, p == next);
        if (B > 0 && (max_seqs > 0 ? B >= max_seqs : r > BATCH_ROWS || (B + 1) * t > PADDED_ROWS)) break;
        rows = r, T = t;
    }
    bt->first = next, bt->B = (int)B, bt->T = (int)T;
    return 1;
}

/* tok, same_as for fl_model_forward_shared: each row its sequence without
   the last token, padded with pad; a position shared with the row above is
   that row's. */
static fl_status batch_fill(const fl_token_seqs *s, const ordering *o, int32_t pad, batch *bt, fl_error *err) {
    const int64_t N = (int64_t)bt->B * bt->T;
    if (N > bt->cap) {
        free(bt->tok), free(bt->same_as), free(bt->hidden_row);
        bt->tok = malloc((size_t)N * sizeof *bt->tok);
        bt->same_as = malloc((size_t)N * sizeof *bt->same_as);
        bt->hidden_row = malloc((size_t)N * sizeof *bt->hidden_row);
        bt->cap = N;
        if (!bt->tok || !bt->same_as || !bt->hidden_row) {
            bt->cap = 0;
            return fl_fail(err, FL_ENOMEM, "out of memory for a batch of %lld tokens", (long long)N);
        }
    }
    for (int b = 0; b < bt->B; b++) {
        const int64_t p = bt->first + b, i = o->order[p], fwd = fl_seq_len(s, i) - 1;
        const int64_t shared = b == 0 ? 0 : fwd - own_rows(s, o, p, 0);
        int32_t *row = bt->tok + (int64_t)b * bt->T, *same = bt->same_as + (int64_t)b * bt->T;
        for (int64_t t = 0; t < bt->T; t++) {
            row[t] = t < fwd ? s->tokens[s->offsets[i] + t] : pad;
            same[t] = t < shared ? same[t - bt->T] : t < fwd ? (int32_t)((int64_t)b * bt->T + t) : -1;
        }
    }
    return FL_OK;
}

static void batch_free(batch *bt) { free(bt->tok), free(bt->same_as), free(bt->hidden_row); }

/* ------------------------------------------------------------ the head */

static fl_status ensure(const fl_host *h, fl_tensor *t, int dtype, int64_t d0, int64_t d1, fl_error *err) {
    int64_t shape[2] = {d0, d1};
    return h->tensor_ensure(h, t, dtype, d1 ? 2 : 1, shape, err);
}

typedef struct scorer {
    fl_model *m;
    const fl_backend *be;
    const fl_host *h;
    const fl_tensor *wte;      /* [V,C] */
    int64_t V, C, chunk;       /* chunk: rows per head pass */
    int32_t *rows, *pick;      /* [chunk] hidden row, flat logit index */
    int64_t *dst;              /* [chunk] where the score goes in out */
    int32_t *tgt;              /* [chunk] target token */
    float *lse_h, *pick_h;     /* [chunk] */
    int64_t R;                 /* rows collected */
    fl_tensor rows_d, H, L, lse, pick_d, picked;
} scorer;

static fl_status scorer_init(scorer *sc, fl_model *m, fl_error *err) {
    memset(sc, 0, sizeof *sc);
    sc->m = m;
    sc->h = fl_model_host(m);
    sc->be = fl_host_backend(sc->h);
    fl_param *wte = fl_model_find_param(m, "transformer.wte.weight");
    if (!wte) return fl_fail(err, FL_EINTERNAL, "model has no transformer.wte.weight");
    sc->wte = &wte->value;
    sc->V = sc->wte->shape[0], sc->C = sc->wte->shape[1];
    sc->chunk = HEAD_FLOATS / sc->V > 0 ? HEAD_FLOATS / sc->V : 1;
    size_t c = (size_t)sc->chunk;
    const fl_host *h = sc->h;
    fl_status st; /* device buffers for a whole chunk at once: score_chunk uses their first rows */
    if ((st = ensure(h, &sc->rows_d, FL_I32, sc->chunk, 0, err)) || (st = ensure(h, &sc->H, FL_F32, sc->chunk, sc->C, err)) ||
        (st = ensure(h, &sc->L, FL_F32, sc->chunk, sc->V, err)) || (st = ensure(h, &sc->lse, FL_F32, sc->chunk, 0, err)) ||
        (st = ensure(h, &sc->pick_d, FL_I32, sc->chunk, 0, err)) || (st = ensure(h, &sc->picked, FL_F32, sc->chunk, 1, err)))
        return st;
    sc->rows = malloc(c * sizeof *sc->rows), sc->pick = malloc(c * sizeof *sc->pick);
    sc->dst = malloc(c * sizeof *sc->dst), sc->tgt = malloc(c * sizeof *sc->tgt);
    sc->lse_h = malloc(c * sizeof *sc->lse_h), sc->pick_h = malloc(c * sizeof *sc->pick_h);
    if (!sc->rows || !sc->pick || !sc->dst || !sc->tgt || !sc->lse_h || !sc->pick_h)
        return fl_fail(err, FL_ENOMEM, "out of memory for scoring");
    return FL_OK;
}

static void scorer_free(scorer *sc) {
    if (sc->h) {
        fl_tensor *ts[] = {&sc->rows_d, &sc->H, &sc->L, &sc->lse, &sc->pick_d, &sc->picked};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) sc->h->tensor_release(sc->h, ts[i]);
    }
    free(sc->rows), free(sc->pick), free(sc->dst), free(sc->tgt), free(sc->lse_h), free(sc->pick_h);
}

/* Scores the rows collected in sc: out[dst[r]] = log p(tgt[r]). */
static void score_chunk(scorer *sc, float *out) {
    const fl_ops *o = &sc->be->ops;
    const int64_t R = sc->R;
    fl_tensor rows = fl_rows(&sc->rows_d, 0, R), H = fl_rows(&sc->H, 0, R), L = fl_rows(&sc->L, 0, R);
    fl_tensor lse = fl_rows(&sc->lse, 0, R), pick = fl_rows(&sc->pick_d, 0, R), picked = fl_rows(&sc->picked, 0, R);
    for (int64_t r = 0; r < R; r++) sc->pick[r] = (int32_t)(r * sc->V + sc->tgt[r]); /* R*V < 2^31 by chunk */
    o->from_host(&rows, sc->rows, (size_t)R * sizeof *sc->rows);
    o->from_host(&pick, sc->pick, (size_t)R * sizeof *sc->pick);
    o->gather_rows(fl_model_hidden(sc->m), &rows, &H);   /* H[R,C] */
    o->gemm(0, 1, 1.0f, &H, sc->wte, 0.0f, &L);           /* [R,C]·[V,C]ᵀ */
    o->logsumexp(&L, &lse);
    fl_tensor flat = fl_view2(&L, R * sc->V, 1);
    o->gather_rows(&flat, &pick, &picked);                 /* L[r, tgt[r]] */
    o->to_host(sc->lse_h, &lse, (size_t)R * sizeof(float));
    o->to_host(sc->pick_h, &picked, (size_t)R * sizeof(float));
    for (int64_t r = 0; r < R; r++) out[sc->dst[r]] = sc->pick_h[r] - sc->lse_h[r];
    sc->R = 0;
}

/* Every position of the batch that is scored and not copied, in head chunks. */
static void score_batch(scorer *sc, const fl_token_seqs *s, const ordering *o, const int64_t *from,
                        const batch *bt, float *out) {
    for (int b = 0; b < bt->B; b++) {
        const int64_t p = bt->first + b, i = o->order[p], n = fl_seq_len(s, i);
        const int32_t *seq = s->tokens + s->offsets[i];
        for (int64_t t = first_scored(from, i); t < n; t++) {
            if (copies(o, from, p, t)) continue;
            sc->rows[sc->R] = bt->hidden_row[(int64_t)b * bt->T + t - 1];
            sc->tgt[sc->R] = seq[t];
            sc->dst[sc->R] = s->offsets[i] + t;
            if (++sc->R == sc->chunk) score_chunk(sc, out);
        }
    }
    if (sc->R) score_chunk(sc, out);
}

/* The copied scores, in order: a copy's source is scored or copied before it. */
static void copy_scores(const fl_token_seqs *s, const ordering *o, const int64_t *from, float *out) {
    for (int64_t p = 1; p < o->n; p++) {
        const int64_t i = o->order[p], prev = o->order[p - 1];
        for (int64_t t = first_scored(from, i); t < o->lcp[p]; t++)
            if (copies(o, from, p, t)) out[s->offsets[i] + t] = out[s->offsets[prev] + t];
    }
}

fl_status fl_task_score_logprobs(fl_model *m, int32_t pad, const fl_token_seqs *s, const int64_t *from,
                                 int32_t batch_seqs, float *out, fl_error *err) {
    fl_status st = fl_task_check_seqs(m, s, err);
    if (st || s->n == 0) return st;
    memset(out, 0, (size_t)s->offsets[s->n] * sizeof *out);
    scorer sc;
    ordering o = {0};
    batch bt = {0};
    if (!(st = scorer_init(&sc, m, err))) st = order_init(&o, s, err);
    for (int64_t next = 0; !st && batch_next(s, &o, next, batch_seqs, &bt); next += bt.B) {
        if (!(st = batch_fill(s, &o, pad, &bt, err)))
            st = fl_model_forward_shared(m, bt.tok, bt.same_as, bt.B, bt.T, bt.hidden_row, err);
        if (!st) score_batch(&sc, s, &o, from, &bt, out);
    }
    if (!st) copy_scores(s, &o, from, out);
    batch_free(&bt);
    order_free(&o);
    scorer_free(&sc);
    return st;
}
