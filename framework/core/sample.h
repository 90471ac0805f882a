/*
 * core/sample.h — sampling text from a model (temperature, top-k).
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
} fl_sample_opts;

/* Appends up to max_new sampled tokens to prompt[n_prompt]; *out (malloc'ed)
   holds prompt + new tokens. The model sees the last `context` tokens. */
fl_status fl_sample(fl_model *m, const int32_t *prompt, size_t n_prompt, const fl_sample_opts *o,
                    int32_t **out, size_t *n_out, fl_error *err);

#endif
