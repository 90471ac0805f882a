/*
 * run/bench_decode.c — decoding speed with and without the KV cache (see
 * bench_decode.h).
 *
 * The measurement is the generation loop itself (fl_sample_batch, greedy),
 * so it counts what `ffnlab generate` pays per token: the model, reading the
 * logits back to the host and picking the token. The uncached figure is the
 * path generate took before the cache: a forward over the whole visible
 * window, LM head included, for every token.
 */
#include "bench_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "error.h"
#include "host_table.h"
#include "sample.h"

/* Greedy decoding of n_new tokens after prompts[B, prompt_len]; seconds taken. */
static fl_status time_decoding(fl_model *m, const int32_t *prompts, int B, int prompt_len, int n_new, int cached,
                               int32_t *out, double *seconds, fl_error *err) {
    fl_sample_opts so = {.max_new = n_new, .temperature = 0, .stop_id = -1, .uncached = !cached};
    int n = 0;
    const double t0 = fl_now_s();
    fl_status st = fl_sample_batch(m, prompts, B, prompt_len, &so, out, &n, err);
    *seconds = fl_now_s() - t0;
    return st;
}

fl_status fl_decode_rate(fl_model *m, int batch, int prompt_len, int n_new, int cached, double *tokens_per_s,
                         fl_error *err) {
    const fl_model_config *mc = fl_model_cfg(m);
    if (batch < 1 || prompt_len < 1 || prompt_len > mc->context || n_new < 1)
        return fl_fail(err, FL_EINVAL, "decode rate: batch %d, prompts of %d tokens, %d new tokens (each at least 1, "
                       "the prompts at most the context, %d)", batch, prompt_len, n_new, mc->context);
    const size_t n_prompts = (size_t)batch * (size_t)prompt_len;
    int32_t *prompts = malloc(n_prompts * sizeof *prompts);
    int32_t *out = malloc((size_t)batch * ((size_t)prompt_len + (size_t)n_new) * sizeof *out);
    fl_status st = prompts && out ? FL_OK : fl_fail(err, FL_ENOMEM, "out of memory for the decode benchmark");
    for (size_t i = 0; !st && i < n_prompts; i++) prompts[i] = (int32_t)(fl_rng_bits(11, i) % (uint64_t)mc->vocab_size);
    double warm = 0, sec = 0; /* warm-up: buffers, oneDNN's kernels, first touch */
    if (!st) st = time_decoding(m, prompts, batch, prompt_len, n_new < 2 ? n_new : 2, cached, out, &warm, err);
    if (!st) st = time_decoding(m, prompts, batch, prompt_len, n_new, cached, out, &sec, err);
    if (!st) *tokens_per_s = (double)batch * n_new / sec;
    free(prompts), free(out);
    return st;
}

/* Batch 1 and o->batch, each cached and uncached, on the model m. */
static fl_status measure_rates(fl_model *m, const fl_bench_decode_opts *o, fl_bench_decode_result *r,
                               fl_error *err) {
    const int batches[2] = {1, o->batch};
    r->n_rates = o->batch == 1 ? 1 : 2;
    fl_status st = FL_OK;
    for (int i = 0; i < r->n_rates && !st; i++) {
        fl_bench_decode_rate *x = &r->rates[i];
        x->batch = batches[i];
        st = fl_decode_rate(m, x->batch, o->prompt_len, o->n_new, 1, &x->cached_tokens_per_s, err);
        if (!st) st = fl_decode_rate(m, x->batch, o->prompt_len, o->n_new, 0, &x->uncached_tokens_per_s, err);
    }
    return st;
}

fl_status fl_bench_decode(const fl_bench_decode_opts *o, fl_bench_decode_result *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    r->opts = *o;
    if (o->n_layers < 1 || o->n_layers > 64 || o->batch < 1)
        return fl_fail(err, FL_EINVAL, "bench --decode: %d layers (1 to 64), batch %d (at least 1)", o->n_layers, o->batch);
    const char *specs[64];
    for (int l = 0; l < o->n_layers; l++) specs[l] = o->ffn;
    fl_model_config mc = {.vocab_size = o->vocab, .context = o->context, .d_model = o->d_model,
                          .n_layers = o->n_layers, .n_heads = o->n_heads, .ffn_specs = specs, .seed = 1};
    const fl_backend *be = NULL;
    fl_model *m = NULL;
    fl_status st = fl_backend_select(o->device ? o->device : "auto", &be, err);
    if (!st) st = fl_model_create(&mc, be, &m, err);
    if (st) return st;
    snprintf(r->backend, sizeof r->backend, "%s", be->name);
    snprintf(r->kernel, sizeof r->kernel, "%s", be->describe());
    snprintf(r->precision, sizeof r->precision, "%s", fl_backend_precision(be));
    st = measure_rates(m, o, r, err);
    fl_model_free(m);
    return st;
}
