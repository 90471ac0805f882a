/*
 * core/sample.h — sampling text from a model (temperature, top-k), with a
 * KV cache.
 */
#ifndef FFNLAB_SAMPLE_H
#define FFNLAB_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct fl_sample_opts {
    int max_new;          /* tokens to add at most */
    float temperature;    /* 0 = greedy */
    int top_k;            /* 0 = whole vocabulary */
    uint64_t seed;
    int32_t stop_id;      /* stop after emitting this id (-1: never) */
    int uncached;         /* 1: no KV cache; every step runs the model over the
                             whole visible window (the reference path, for
                             tests and benchmarks) */
} fl_sample_opts;

/* Appends up to max_new sampled tokens to prompt[n_prompt]; *out (malloc'ed)
   holds prompt + new tokens. The model sees the last `context` tokens.

   While the sequence fits the context, a KV cache makes each new token one
   position's work (fl_model_prefill of the prompt, then fl_model_decode_step
   per token). Past the context every step runs the model over the last
   `context` tokens at positions 0..context-1, a window that slides by one
   token per step and so moves every position: that is the uncached path,
   and the cache is not used there. Cached or not, the logits agree to f32
   round-off, so greedy decoding gives the same tokens (barring an exact tie
   within round-off). */
fl_status fl_sample(fl_model *m, const int32_t *prompt, size_t n_prompt, const fl_sample_opts *o,
                    int32_t **out, size_t *n_out, fl_error *err);

/* The same for B prompts of equal length, prompts[B, n_prompt], decoded
   together (one prefill, then one step of B tokens per position). out[B, n_prompt
   + max_new] (the caller's) receives each prompt and its continuation;
   *n_out the length every row reached. A sequence that has emitted stop_id
   is padded with it, and decoding ends once all have. Sequence b draws its
   sample at step i from index i*B + b of the seed's stream (B = 1: exactly
   fl_sample's draws). */
fl_status fl_sample_batch(fl_model *m, const int32_t *prompts, int B, int n_prompt, const fl_sample_opts *o,
                          int32_t *out, int *n_out, fl_error *err);

#endif
