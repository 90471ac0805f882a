/*
 * core/params.h — parameters as the host owns them.
 *
 * A plugin sees an fl_param (value + grad). The host keeps more beside it:
 * the optimizer moments, the LR rule and, for FL_PARAM_SPARSE_ROWS, which
 * rows were touched this step. fl_param_impl starts with the public struct so
 * a plugin's fl_param* converts back with fl_param_impl_of().
 */
#ifndef FFNLAB_PARAMS_H
#define FFNLAB_PARAMS_H

#include <stdint.h>

#include "backend.h"
#include "ffnlab/host.h"

typedef struct fl_param_impl {
    fl_param pub;              /* first: plugins hold &pub */
    char *name_storage;
    float lr_scale;            /* 1 unless the spec says otherwise */
    float lr_fixed;            /* > 0: own LR (e.g. PKM values) */
    fl_tensor m, v;            /* AdamW moments, allocated on first step */
    uint8_t *touched;          /* SPARSE_ROWS: per-row flag (host memory) */
    int32_t *rows;             /* SPARSE_ROWS: touched row list this step */
    int64_t n_rows_touched;
} fl_param_impl;

static inline fl_param_impl *fl_param_impl_of(fl_param *p) { return (fl_param_impl *)p; }

/* A growable list of parameters. */
typedef struct fl_param_list {
    fl_param_impl **items;
    int n, cap;
} fl_param_list;

/* Where host->param() puts a layer's parameters. */
struct fl_param_scope {
    const char *prefix;        /* "transformer.h.3.mlp." */
    fl_param_list *list;
    const fl_backend *be;
    uint64_t seed;
    int n_layers;
};

/* Allocates value and grad on be's device, initialises the value with
   key fl_rng_key(seed, full name), adds it to list. */
fl_param *fl_params_add(fl_param_list *list, const fl_backend *be, const char *full_name,
                        const fl_param_spec *spec, uint64_t seed, int n_layers, fl_error *err);
void fl_params_free(fl_param_list *list, const fl_backend *be);

/* Records rows idx (i32, any shape, on the device) as touched in p. */
void fl_params_touch_rows(const fl_backend *be, fl_param_impl *p, const fl_tensor *idx);
/* Allocates the AdamW moments m, v (zeros) if not yet there. */
fl_status fl_params_ensure_moments(const fl_backend *be, fl_param_impl *p, fl_error *err);

/* Forgets touched rows (after the optimizer step). */
void fl_params_clear_touched(fl_param_impl *p);

#endif
