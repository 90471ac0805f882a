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

typedef struct fl_backend fl_backend; /* defined in backends/backend.h */
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
    int32_t ep_rank, ep_size;  /* expert parallelism (0, 0 or 0, 1: none) */
};

/* Allocates value and grad on be's device, initialises the value with
   key fl_rng_key(seed, full name), adds it to list. */
fl_param *fl_params_add(fl_param_list *list, const fl_backend *be, const char *full_name,
                        const fl_param_spec *spec, uint64_t seed, int n_layers, fl_error *err);
/* The same for a rank of an expert-parallel group: an FL_PARAM_EXPERT
   parameter keeps only its experts ep_rank*E/ep_size .. +E/ep_size of the
   spec's E = shape[0] (pub.shard_offset, pub.global_dim0 = E), initialised
   as exactly that slice of the whole tensor (the RNG is counter-based), so
   any layout starts from the same model. E must divide by ep_size. */
fl_param *fl_params_add_shard(fl_param_list *list, const fl_backend *be, const char *full_name,
                              const fl_param_spec *spec, uint64_t seed, int n_layers, int ep_rank,
                              int ep_size, fl_error *err);
/* Elements per expert (dim-0 row) of a parameter. */
static inline int64_t fl_param_row_numel(const fl_param *p) {
    return fl_numel(&p->value) / p->value.shape[0];
}
void fl_params_free(fl_param_list *list, const fl_backend *be);

/* Records rows idx (i32, any shape, on the device) as touched in p. */
void fl_params_touch_rows(const fl_backend *be, fl_param_impl *p, const fl_tensor *idx);
/* Allocates the AdamW moments m, v (zeros) if not yet there. */
fl_status fl_params_ensure_moments(const fl_backend *be, fl_param_impl *p, fl_error *err);

/* Forgets touched rows (after the optimizer step). */
void fl_params_clear_touched(fl_param_impl *p);

#endif
