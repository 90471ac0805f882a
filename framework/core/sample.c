/*
 * core/sample.c — autoregressive sampling (see sample.h).
 *
 * Every step re-runs the model over the visible window: simple, and cheap at
 * the context lengths ffnlab trains (no KV cache to keep in sync with plugins).
 */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "host.h"

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

fl_status fl_sample(fl_model *m, const int32_t *prompt, size_t n_prompt, const fl_sample_opts *o,
                    int32_t **out, size_t *n_out, fl_error *err) {
    const fl_model_config *mc = fl_model_cfg(m);
    const int V = mc->vocab_size;
    if (n_prompt == 0) return fl_fail(err, FL_EINVAL, "generate: empty prompt");
    int32_t *seq = malloc((n_prompt + (size_t)o->max_new) * sizeof *seq);
    float *logits = malloc((size_t)V * 2 * sizeof *logits);
    if (!seq || !logits) {
        free(seq), free(logits);
        return fl_fail(err, FL_ENOMEM, "out of memory for generation");
    }
    memcpy(seq, prompt, n_prompt * sizeof *seq);
    size_t n = n_prompt;
    uint64_t key = fl_rng_key(o->seed, "sample");
    const fl_backend *be = fl_host_backend(fl_model_host(m));
    fl_status st = FL_OK;
    for (int i = 0; i < o->max_new && !st; i++) {
        size_t T = n < (size_t)mc->context ? n : (size_t)mc->context;
        if ((st = fl_model_forward(m, seq + n - T, NULL, 1, (int)T, 0, 0, NULL, err))) break;
        fl_tensor last = fl_rows(fl_model_logits(m), (int64_t)T - 1, 1);
        be->ops.to_host(logits, &last, (size_t)V * sizeof *logits);
        seq[n++] = pick(logits, V, o, key, (uint64_t)i, logits + V);
        if (seq[n - 1] == o->stop_id) break;
    }
    free(logits);
    if (st) {
        free(seq);
        return st;
    }
    *out = seq;
    *n_out = n;
    return FL_OK;
}
