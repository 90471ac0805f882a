/*
 * core/params.c — allocation, init and sparse-row bookkeeping of parameters,
 * and the expert shard a rank keeps under expert parallelism.
 */
#include "params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

/* A shard's values are the global tensor's from element shard_offset * row
   on: the same RNG counters, so sharding never changes the model. */
static void init_value(const fl_backend *be, fl_param_impl *p, const fl_param_spec *s,
                       uint64_t seed, int n_layers) {
    fl_tensor *v = &p->pub.value;
    uint64_t key = fl_rng_key(seed, p->pub.name);
    uint64_t at = (uint64_t)p->pub.shard_offset * (uint64_t)fl_param_row_numel(&p->pub);
    float scale = s->init_scale;
    if ((s->flags & FL_PARAM_RESIDUAL_OUT) && n_layers > 0) scale /= sqrtf(2.0f * (float)n_layers);
    switch (s->init) {
    case FL_INIT_ONES: be->ops.fill(v, 1.0f); break;
    case FL_INIT_NORMAL: be->ops.rng_normal(v, key, at, 0.0f, scale); break;
    case FL_INIT_UNIFORM: be->ops.rng_uniform(v, key, at, -scale, scale); break;
    default: be->ops.fill(v, 0.0f); break;
    }
}

static fl_status check_spec(const char *full_name, const fl_param_spec *s, fl_error *err) {
    if (s->ndim < 1 || s->ndim > FL_MAX_DIMS)
        return fl_fail(err, FL_EINVAL, "parameter %s: ndim %d not in 1..%d", full_name, s->ndim, FL_MAX_DIMS);
    for (int i = 0; i < s->ndim; i++)
        if (s->shape[i] < 1 || s->shape[i] > ((int64_t)1 << 40))
            return fl_fail(err, FL_EINVAL, "parameter %s: dimension %d is %lld", full_name, i,
                           (long long)s->shape[i]);
    if (s->init < FL_INIT_ZEROS || s->init > FL_INIT_UNIFORM)
        return fl_fail(err, FL_EINVAL, "parameter %s: unknown init kind %d", full_name, s->init);
    return FL_OK;
}

static fl_status list_push(fl_param_list *list, fl_param_impl *p, fl_error *err) {
    if (list->n == list->cap) {
        int cap = list->cap ? 2 * list->cap : 32;
        fl_param_impl **items = realloc(list->items, (size_t)cap * sizeof *items);
        if (!items) return fl_fail(err, FL_ENOMEM, "out of memory for the parameter list");
        list->items = items;
        list->cap = cap;
    }
    list->items[list->n++] = p;
    return FL_OK;
}

fl_param *fl_params_add(fl_param_list *list, const fl_backend *be, const char *full_name,
                        const fl_param_spec *s, uint64_t seed, int n_layers, fl_error *err) {
    return fl_params_add_shard(list, be, full_name, s, seed, n_layers, 0, 1, err);
}

/* The local part of s: dim 0 cut to this rank's experts when s is
   expert-sharded and the group has more than one rank. */
static fl_status local_shape(const char *full_name, const fl_param_spec *s, int ep_rank, int ep_size,
                             int64_t *shape, int64_t *offset, fl_error *err) {
    for (int i = 0; i < FL_MAX_DIMS; i++) shape[i] = i < s->ndim ? s->shape[i] : 1;
    *offset = 0;
    if (!(s->flags & FL_PARAM_EXPERT) || ep_size <= 1) return FL_OK;
    if (s->shape[0] % ep_size)
        return fl_fail(err, FL_EINVAL, "parameter %s: its %lld experts do not split evenly over expert_parallel = %d ranks",
                       full_name, (long long)s->shape[0], ep_size);
    shape[0] = s->shape[0] / ep_size;
    *offset = (int64_t)ep_rank * shape[0];
    return FL_OK;
}

fl_param *fl_params_add_shard(fl_param_list *list, const fl_backend *be, const char *full_name,
                              const fl_param_spec *s, uint64_t seed, int n_layers, int ep_rank,
                              int ep_size, fl_error *err) {
    int64_t shape[FL_MAX_DIMS], offset = 0;
    if (check_spec(full_name, s, err) || local_shape(full_name, s, ep_rank, ep_size, shape, &offset, err))
        return NULL;
    for (int i = 0; i < list->n; i++)
        if (!strcmp(list->items[i]->pub.name, full_name)) {
            fl_fail(err, FL_EINVAL, "parameter %s declared twice", full_name);
            return NULL;
        }
    fl_param_impl *p = calloc(1, sizeof *p);
    if (!p) goto nomem;
    p->name_storage = strdup(full_name);
    p->pub.name = p->name_storage;
    p->pub.flags = s->flags;
    p->pub.global_dim0 = s->shape[0];
    p->pub.shard_offset = offset;
    p->lr_scale = s->lr_scale > 0 ? s->lr_scale : 1.0f;
    p->lr_fixed = s->lr;
    fl_tensor t = fl_wrap(NULL, FL_F32, be->device, s->ndim, shape);
    size_t bytes = fl_nbytes(&t);
    p->pub.value = t;
    p->pub.grad = t;
    p->pub.value.data = be->alloc(bytes);
    p->pub.grad.data = be->alloc(bytes);
    if (!p->name_storage || !p->pub.value.data || !p->pub.grad.data) goto nomem;
    p->pub.value.capacity = p->pub.grad.capacity = bytes;
    if (s->flags & FL_PARAM_SPARSE_ROWS) {
        p->touched = calloc((size_t)shape[0], 1);
        p->rows = malloc((size_t)shape[0] * sizeof *p->rows);
        if (!p->touched || !p->rows) goto nomem;
    }
    init_value(be, p, s, seed, n_layers);
    if (list_push(list, p, err)) goto fail;
    return &p->pub;
nomem:
    fl_fail(err, FL_ENOMEM, "parameter %s: out of memory", full_name);
fail:
    if (p) {
        be->free(p->pub.value.data);
        be->free(p->pub.grad.data);
        free(p->name_storage);
        free(p->touched);
        free(p->rows);
        free(p);
    }
    return NULL;
}

void fl_params_free(fl_param_list *list, const fl_backend *be) {
    for (int i = 0; i < list->n; i++) {
        fl_param_impl *p = list->items[i];
        be->free(p->pub.value.data);
        be->free(p->pub.grad.data);
        be->free(p->m.data);
        be->free(p->v.data);
        free(p->name_storage);
        free(p->touched);
        free(p->rows);
        free(p);
    }
    free(list->items);
    memset(list, 0, sizeof *list);
}

void fl_params_touch_rows(const fl_backend *be, fl_param_impl *p, const fl_tensor *idx) {
    if (!p->touched) return;
    int64_t n = fl_numel(idx), R = p->pub.value.shape[0];
    int32_t *host = malloc((size_t)n * sizeof *host);
    if (!host) return;
    be->ops.to_host(host, idx, (size_t)n * sizeof *host);
    for (int64_t i = 0; i < n; i++) {
        int32_t r = host[i];
        if (r >= 0 && r < R && !p->touched[r]) {
            p->touched[r] = 1;
            p->rows[p->n_rows_touched++] = r;
        }
    }
    free(host);
}

void fl_params_clear_touched(fl_param_impl *p) {
    for (int64_t i = 0; i < p->n_rows_touched; i++) p->touched[p->rows[i]] = 0;
    p->n_rows_touched = 0;
}

fl_status fl_params_ensure_moments(const fl_backend *be, fl_param_impl *p, fl_error *err) {
    if (p->m.data) return FL_OK;
    size_t bytes = fl_nbytes(&p->pub.value);
    p->m = p->v = p->pub.value;
    p->m.data = be->alloc(bytes);
    p->v.data = be->alloc(bytes);
    p->m.capacity = p->m.data ? bytes : 0;
    p->v.capacity = p->v.data ? bytes : 0;
    if (!p->m.data || !p->v.data) return fl_fail(err, FL_ENOMEM, "%s: out of memory for AdamW moments", p->pub.name);
    return FL_OK;
}
