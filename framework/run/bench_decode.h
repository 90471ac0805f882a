/*
 * run/bench_decode.h — how fast a model decodes: new tokens per second with
 * the KV cache and without it (core/sample.h), at batch 1 and batched.
 *
 * `ffnlab bench --decode` measures a freshly initialised model of a given
 * shape (fl_bench_decode; the weights do not change the work, only the
 * tokens picked); fl_decode_rate measures any loaded or trained model, one
 * figure at a time, for sweeps that tabulate decoding speed per run.
 */
#ifndef FFNLAB_BENCH_DECODE_H
#define FFNLAB_BENCH_DECODE_H

#include "model.h"

/* New tokens per second of greedy decoding: `batch` random prompts of
   prompt_len tokens (1..context), n_new tokens appended to each, through
   fl_sample_batch with the cache (cached = 1) or without (0). Timed from
   the prompts to the last token, prefill included, after a warm-up of two
   tokens; counts batch * n_new tokens. Bad arguments are an FL_EINVAL
   message. Where prompt_len + n_new passes the context the cached run, like
   generate, slides the uncached window for the tokens beyond. */
fl_status fl_decode_rate(fl_model *m, int batch, int prompt_len, int n_new, int cached, double *tokens_per_s,
                         fl_error *err);

typedef struct fl_bench_decode_opts {
    int d_model, n_layers, n_heads, context, vocab;  /* the model's shape (n_layers <= 64) */
    const char *ffn;           /* FFN spec of every layer */
    const char *device;        /* auto, cpu, cuda[:N] */
    int batch;                 /* the batched figure's B; batch 1 is always measured */
    int prompt_len, n_new;     /* tokens per prompt; new tokens per sequence */
} fl_bench_decode_opts;

/* One batch size, cached and uncached: new tokens/s of all sequences together. */
typedef struct fl_bench_decode_rate {
    int batch;
    double cached_tokens_per_s, uncached_tokens_per_s;
} fl_bench_decode_rate;

typedef struct fl_bench_decode_result {
    fl_bench_decode_opts opts;         /* what was measured (its strings are the caller's) */
    char backend[16];                  /* "cpu", "cuda" */
    char kernel[256];                  /* the backend's kernel line */
    char precision[8];                 /* the GEMM precision it ran in */
    int n_rates;                       /* 1 when opts.batch is 1, else 2 */
    fl_bench_decode_rate rates[2];     /* batch 1, then opts.batch */
} fl_bench_decode_result;

/* Creates the model (seed 1) on the device and measures every rate. */
fl_status fl_bench_decode(const fl_bench_decode_opts *o, fl_bench_decode_result *r, fl_error *err);


#endif
