/*
 * backends/attn_shapes.h — the shapes the attention ops accept (backend.h:
 * attention, attention_backward, kv_append, attention_decode) as both
 * backends check them, written once so that the CPU and CUDA accept exactly
 * the same calls.
 *
 * Training: qkv[B,T,3C] with H heads of hs = C/H columns each.
 * Decoding: k_cache and v_cache are f32 [B,H,S,hs] of one shape: B
 * sequences, H heads, S positions of capacity, head size hs; C = H*hs is
 * d_model.
 */
#ifndef FFNLAB_ATTN_SHAPES_H
#define FFNLAB_ATTN_SHAPES_H

#include <stdint.h>

#include "backend.h" /* fl_attn_mask */
#include "ffnlab/tensor.h"

typedef struct fl_attn_dims {
    int64_t B, T, C, H, hs;
} fl_attn_dims;

/* 1 with d filled when qkv is [B,T,3C] and C splits into n_head heads;
   else 0. */
static inline int fl_attn_dims_of(const fl_tensor *qkv, int n_head, fl_attn_dims *d) {
    if (qkv->ndim != 3 || n_head < 1 || qkv->shape[2] % (3 * (int64_t)n_head)) return 0;
    d->B = qkv->shape[0];
    d->T = qkv->shape[1];
    d->C = qkv->shape[2] / 3;
    d->H = n_head;
    d->hs = d->C / n_head;
    return 1;
}

/* A mask for B sequences: none (causal), or a window >= 0 and lengths NULL
   or i32 [B]. */
static inline int fl_attn_mask_ok(const fl_attn_mask *mask, int64_t B) {
    return !mask || (mask->window >= 0 &&
                     (!mask->lengths || (mask->lengths->dtype == FL_I32 && fl_numel(mask->lengths) == B)));
}

typedef struct fl_kv_dims {
    int64_t B, H, S, hs, C;
} fl_kv_dims;

/* 1 with d filled when k and v are such a pair with B >= 1; else 0. */
static inline int fl_kv_dims_of(const fl_tensor *k, const fl_tensor *v, fl_kv_dims *d) {
    if (k->ndim != 4 || v->ndim != 4 || k->dtype != FL_F32 || v->dtype != FL_F32) return 0;
    for (int i = 0; i < 4; i++)
        if (k->shape[i] != v->shape[i]) return 0;
    d->B = k->shape[0];
    d->H = k->shape[1];
    d->S = k->shape[2];
    d->hs = k->shape[3];
    d->C = d->H * d->hs;
    return d->B > 0;
}

/* kv_append's arguments: a cache pair, qkv f32 with 3C columns and B*n rows
   (*n positions per sequence), pos..pos+n-1 inside the cache. */
static inline int fl_kv_append_dims(const fl_tensor *qkv, int64_t pos, const fl_tensor *k, const fl_tensor *v,
                                    fl_kv_dims *d, int64_t *n) {
    if (!fl_kv_dims_of(k, v, d) || qkv->dtype != FL_F32 || qkv->ndim < 1 || qkv->shape[qkv->ndim - 1] != 3 * d->C)
        return 0;
    const int64_t rows = d->C ? fl_numel(qkv) / (3 * d->C) : 0;
    *n = rows / d->B;
    return rows % d->B == 0 && pos >= 0 && pos + *n <= d->S;
}

/* attention_decode's: a cache pair, qkv f32 of B*3C values, out f32 of B*C,
   1 <= t <= S. */
static inline int fl_kv_decode_dims(const fl_tensor *qkv, const fl_tensor *k, const fl_tensor *v, int64_t t,
                                    const fl_tensor *out, fl_kv_dims *d) {
    return fl_kv_dims_of(k, v, d) && qkv->dtype == FL_F32 && fl_numel(qkv) == d->B * 3 * d->C &&
           out->dtype == FL_F32 && fl_numel(out) == d->B * d->C && t >= 1 && t <= d->S;
}

/* The first cache position a decoding query at t-1 attends: 0, or t-window
   for a local layer (backend.h: attention_decode). */
static inline int64_t fl_kv_window_start(int64_t t, int64_t window) {
    return window > 0 && t > window ? t - window : 0;
}

#endif
