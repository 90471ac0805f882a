/*
 * core/sample.c — autoregressive sampling (see sample.h).
 *
 * One loop for B sequences of equal length: logits of the next position of
 * each, one token picked per sequence, appended, again. The logits come from
 * the KV cache while the sequences fit the context (a prefill of the
 * prompts, then one decoding step per position), else from a forward over
 * the visible window; opts->uncached takes the window path throughout, the
 * reference the cache is tested and benchmarked against.
 */
#include "sample.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "host_table.h"

/* Index drawn from softmax(logits / temperature) restricted to the top k. */
static int32_t pick(const float *logits, int V, const fl_sample_opts *o, uint64_t key, uint64_t step,
                    float *scratch) {
    int32_t best = 0;
    for (int v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    if (o->temperature <= 0) return best;
    float thresh = -INFINITY;
    if (o->top_k > 0 && o->top_k < V) { /* the k-th largest value, by partial selection */
        memcpy(scratch, logits, (size_t)V * sizeof *scratch);
        for (int i = 0; i < o->top_k; i++) {
            int arg = i;
            for (int v = i + 1; v < V; v++) if (scratch[v] > scratch[arg]) arg = v;
            float t = scratch[i]; scratch[i] = scratch[arg]; scratch[arg] = t;
        }
        thresh = scratch[o->top_k - 1];
    }
    double sum = 0;
    for (int v = 0; v < V; v++) sum += logits[v] >= thresh ? exp((logits[v] - logits[best]) / o->temperature) : 0;
    double u = fl_rng_uniform(key, step) * sum, acc = 0;
    for (int v = 0; v < V; v++) {
        if (logits[v] < thresh) continue;
        acc += exp((logits[v] - logits[best]) / o->temperature);
        if (acc >= u) return v;
    }
    return best;
}

/* The state of one decoding run. */
typedef struct gen {
    fl_model *m;
    const fl_backend *be;
    int B, V, ctx, cached;   /* cached: the prompts are prefilled */
    size_t len;              /* row stride of seq: prompt + max_new */
    int32_t *seq;            /* [B, len], the caller's out */
    int32_t *win;            /* [B, ctx]: a window of every sequence, or a step's tokens [B] */
    float *logits;           /* [B, V] + V of pick's scratch, host */
} gen;

/* win[B,T] = the last T of the first n tokens of each sequence */
static void window(gen *g, size_t n, int T) {
    for (int b = 0; b < g->B; b++)
        memcpy(g->win + (size_t)b * T, g->seq + (size_t)b * g->len + n - (size_t)T, (size_t)T * sizeof *g->win);
}

/* The logits [B,V] (host) of position n of every sequence, from the cache */
static fl_status cached_logits(gen *g, size_t n, fl_error *err) {
    fl_status st;
    if (!g->cached) { /* the first step: every prompt at once */
        window(g, n, (int)n);
        st = fl_model_prefill(g->m, g->win, g->B, (int)n, err);
        g->cached = !st;
    } else { /* one token per sequence: the last one picked */
        for (int b = 0; b < g->B; b++) g->win[b] = g->seq[(size_t)b * g->len + n - 1];
        st = fl_model_decode_step(g->m, g->win, err);
    }
    if (!st) g->be->ops.to_host(g->logits, fl_model_logits(g->m), (size_t)g->B * (size_t)g->V * sizeof *g->logits);
    return st;
}

/* The same from a forward over each sequence's last min(n, context) tokens */
static fl_status window_logits(gen *g, size_t n, fl_error *err) {
    const int T = n < (size_t)g->ctx ? (int)n : g->ctx;
    window(g, n, T);
    fl_status st = fl_model_forward(g->m, g->win, NULL, g->B, T, 0, 0, NULL, err);
    for (int b = 0; b < g->B && !st; b++) {
        fl_tensor last = fl_rows(fl_model_logits(g->m), (int64_t)b * T + T - 1, 1);
        g->be->ops.to_host(g->logits + (size_t)b * g->V, &last, (size_t)g->V * sizeof *g->logits);
    }
    return st;
}

fl_status fl_sample_batch(fl_model *m, const int32_t *prompts, int B, int n_prompt, const fl_sample_opts *o,
                          int32_t *out, int *n_out, fl_error *err) {
    if (B < 1 || n_prompt < 1 || o->max_new < 0 || o->max_new > INT_MAX - n_prompt)
        return fl_fail(err, FL_EINVAL, "generate: batch %d x %d prompt tokens, %d new tokens (at least 1 x 1, and 0 or more new)",
                       B, n_prompt, o->max_new);
    const fl_model_config *mc = fl_model_cfg(m);
    if (mc->arch != FL_ARCH_GPT)
        return fl_fail(err, FL_EINVAL, "generate: the model is an encoder (arch bert), which predicts masked tokens, "
                       "not the next one");
    gen g = {.m = m, .be = fl_host_backend(fl_model_host(m)), .B = B, .V = mc->vocab_size, .ctx = mc->context,
             .len = (size_t)n_prompt + (size_t)o->max_new, .seq = out};
    g.win = malloc((size_t)B * (size_t)g.ctx * sizeof *g.win);
    g.logits = malloc(((size_t)B + 1) * (size_t)g.V * sizeof *g.logits);
    unsigned char *done = calloc((size_t)B, 1);
    fl_status st = g.win && g.logits && done ? FL_OK : fl_fail(err, FL_ENOMEM, "out of memory for generation");
    for (int b = 0; b < B && !st; b++)
        memcpy(out + (size_t)b * g.len, prompts + (size_t)b * n_prompt, (size_t)n_prompt * sizeof *out);
    const uint64_t key = fl_rng_key(o->seed, "sample");
    size_t n = (size_t)n_prompt;
    for (int i = 0, live = B; i < o->max_new && live && !st; i++, n++) {
        st = !o->uncached && n <= (size_t)g.ctx ? cached_logits(&g, n, err) : window_logits(&g, n, err);
        for (int b = 0; b < B && !st; b++) {
            int32_t *next = out + (size_t)b * g.len + n;
            *next = done[b] ? o->stop_id
                            : pick(g.logits + (size_t)b * g.V, g.V, o, key, (uint64_t)i * (uint64_t)B + (uint64_t)b,
                                   g.logits + (size_t)B * g.V);
            if (!done[b] && *next == o->stop_id) done[b] = 1, live--;
        }
    }
    free(g.win), free(g.logits), free(done);
    if (!st) *n_out = (int)n;
    return st;
}

fl_status fl_sample(fl_model *m, const int32_t *prompt, size_t n_prompt, const fl_sample_opts *o,
                    int32_t **out, size_t *n_out, fl_error *err) {
    if (n_prompt == 0) return fl_fail(err, FL_EINVAL, "generate: empty prompt");
    if (n_prompt > (size_t)INT_MAX / 2) return fl_fail(err, FL_EINVAL, "generate: a prompt of %zu tokens is too long", n_prompt);
    int32_t *seq = malloc((n_prompt + (size_t)(o->max_new > 0 ? o->max_new : 0)) * sizeof *seq);
    if (!seq) return fl_fail(err, FL_ENOMEM, "out of memory for generation");
    int n = 0;
    fl_status st = fl_sample_batch(m, prompt, 1, (int)n_prompt, o, seq, &n, err);
    if (st) {
        free(seq);
        return st;
    }
    *out = seq;
    *n_out = (size_t)n;
    return FL_OK;
}
