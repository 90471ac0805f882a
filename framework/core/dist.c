/*
 * core/dist.c — data-parallel gradient synchronisation (see dist.h).
 *
 * Each step the gradients are packed into two fused device buffers, one per
 * reduction group (0: the world, for replicated parameters; 1: the replica
 * group, for expert shards), reduced with one all-reduce each and unpacked
 * scaled by 1/P. Packing is a device copy per parameter; the buffers grow to
 * the largest step seen (sparse-row parameters vary) and are then reused.
 */
#include "dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "error.h"
#include "host_table.h"
#include "optim.h"
#include "params.h"

enum { G_WORLD = 0, G_REPLICA = 1, N_GROUPS = 2 };

struct fl_dist {
    fl_model *m;
    const fl_backend *be;
    const fl_comm *c;
    void *buf[N_GROUPS];       /* fused f32 gradients on the device */
    size_t cap[N_GROUPS];      /* bytes allocated */
    int64_t used[N_GROUPS];    /* floats packed this step */
    int64_t *at;               /* [n params] float offset of each in its buffer */
    int64_t *idx_at;           /* [n params] offset of a sparse param's rows in idx */
    void *idx;                 /* i32 row lists of the sparse params, on the device */
    size_t idx_cap;
    int64_t idx_used;
};

static int group_of(const fl_dist *d, const fl_param *p) {
    return (p->flags & FL_PARAM_EXPERT) && d->c->ep_size > 1 ? G_REPLICA : G_WORLD;
}

/* The comm group reducing buffer g, and whether it has more than one rank. */
static int comm_group(int g) { return g == G_WORLD ? FL_COMM_WORLD : FL_COMM_REPLICA; }
static int group_size(const fl_dist *d, int g) { return g == G_WORLD ? d->c->size : d->c->dp_size; }

static int is_sparse(const fl_param_impl *p) { return (p->pub.flags & FL_PARAM_SPARSE_ROWS) != 0; }

fl_status fl_dist_create(fl_model *m, fl_dist **out, fl_error *err) {
    fl_dist *d = calloc(1, sizeof *d);
    int n = fl_model_n_params(m);
    if (d) {
        d->at = calloc((size_t)n + 1, sizeof *d->at);
        d->idx_at = calloc((size_t)n + 1, sizeof *d->idx_at);
    }
    if (!d || !d->at || !d->idx_at) {
        fl_dist_free(d);
        return fl_fail(err, FL_ENOMEM, "out of memory for gradient synchronisation");
    }
    d->m = m;
    d->be = fl_host_backend(fl_model_host(m));
    d->c = fl_model_host(m)->comm;
    *out = d;
    return FL_OK;
}

void fl_dist_free(fl_dist *d) {
    if (!d) return;
    for (int g = 0; g < N_GROUPS; g++)
        if (d->buf[g]) d->be->free(d->buf[g]);
    if (d->idx) d->be->free(d->idx);
    free(d->at);
    free(d->idx_at);
    free(d);
}

/* Device memory of at least `bytes` in *p (contents not kept). */
static fl_status grow(const fl_backend *be, void **p, size_t *cap, size_t bytes, fl_error *err) {
    if (bytes <= *cap && *p) return FL_OK;
    if (*p) be->free(*p);
    *p = be->alloc(bytes ? bytes : 4);
    *cap = *p ? bytes : 0;
    return *p ? FL_OK : fl_fail(err, FL_ENOMEM, "out of memory for %zu bytes of fused gradients", bytes);
}

static fl_tensor f32_view(const fl_dist *d, int g, int64_t at, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    return fl_wrap((float *)d->buf[g] + at, FL_F32, d->be->device, 2, shape);
}

/* A sparse-row parameter as [rows, row length]. */
static fl_tensor as_rows(const fl_tensor *t) { return fl_view2(t, t->shape[0], fl_numel(t) / t->shape[0]); }

/* ------------------------------------------------------------- sparse */

/* The rows touched on any rank of the group become touched here too. */
static fl_status unite_rows(fl_dist *d, fl_param_impl *p, fl_error *err) {
    int g = group_of(d, &p->pub);
    const int64_t R = p->pub.value.shape[0];
    if (group_size(d, g) > 1) {
        fl_status st = fl_comm_or_u8(d->c, comm_group(g), p->touched, R, err);
        if (st) return st;
    }
    p->n_rows_touched = 0;
    for (int64_t r = 0; r < R; r++)
        if (p->touched[r]) p->rows[p->n_rows_touched++] = (int32_t)r;
    return FL_OK;
}

/* ------------------------------------------------------- pack / unpack */

/* Offsets of every parameter in its buffer (and of sparse row lists). */
static void lay_out(fl_dist *d, fl_param_list *ps) {
    d->used[0] = d->used[1] = d->idx_used = 0;
    for (int i = 0; i < ps->n; i++) {
        fl_param_impl *p = ps->items[i];
        int g = group_of(d, &p->pub);
        d->at[i] = d->used[g];
        d->idx_at[i] = d->idx_used;
        if (is_sparse(p)) {
            d->used[g] += p->n_rows_touched * fl_param_row_numel(&p->pub);
            d->idx_used += p->n_rows_touched;
        } else {
            d->used[g] += fl_numel(&p->pub.grad);
        }
    }
}

static fl_tensor idx_view(const fl_dist *d, int i, int64_t n) {
    int64_t shape[1] = {n};
    return fl_wrap((int32_t *)d->idx + d->idx_at[i], FL_I32, d->be->device, 1, shape);
}

static void pack(fl_dist *d, fl_param_list *ps) {
    const fl_ops *o = &d->be->ops;
    for (int i = 0; i < ps->n; i++) {
        fl_param_impl *p = ps->items[i];
        int g = group_of(d, &p->pub);
        if (is_sparse(p)) {
            int64_t n = p->n_rows_touched, w = fl_param_row_numel(&p->pub);
            if (!n) continue;
            fl_tensor idx = idx_view(d, i, n), dst = f32_view(d, g, d->at[i], n, w);
            o->from_host(&idx, p->rows, (size_t)n * sizeof(int32_t));
            fl_tensor src = as_rows(&p->pub.grad);
            o->gather_rows(&src, &idx, &dst);
        } else {
            fl_tensor dst = f32_view(d, g, d->at[i], 1, fl_numel(&p->pub.grad));
            fl_tensor src = fl_view2(&p->pub.grad, 1, fl_numel(&p->pub.grad));
            o->copy(&src, &dst);
        }
    }
}

/* grad = scale * reduced (dense); only the united rows for sparse ones. */
static void unpack(fl_dist *d, fl_param_list *ps, float scale) {
    const fl_ops *o = &d->be->ops;
    for (int i = 0; i < ps->n; i++) {
        fl_param_impl *p = ps->items[i];
        int g = group_of(d, &p->pub);
        if (is_sparse(p)) {
            int64_t n = p->n_rows_touched, w = fl_param_row_numel(&p->pub);
            if (!n) continue;
            fl_tensor idx = idx_view(d, i, n), src = f32_view(d, g, d->at[i], n, w);
            fl_tensor dst = as_rows(&p->pub.grad);
            o->axpby(scale, &src, 0.0f, &src);
            d->be->zero_rows(&dst, p->rows, n);
            o->scatter_add_rows(&src, &idx, &dst);
        } else {
            fl_tensor src = f32_view(d, g, d->at[i], 1, fl_numel(&p->pub.grad));
            fl_tensor dst = fl_view2(&p->pub.grad, 1, fl_numel(&p->pub.grad));
            o->axpby(scale, &src, 0.0f, &dst);
        }
    }
}

fl_status fl_dist_sync_grads(fl_dist *d, fl_error *err) {
    fl_param_list *ps = fl_model_params(d->m);
    fl_status st = FL_OK;
    for (int i = 0; i < ps->n && !st; i++)
        if (is_sparse(ps->items[i])) st = unite_rows(d, ps->items[i], err);
    if (st) return st;
    lay_out(d, ps);
    for (int g = 0; g < N_GROUPS && !st; g++)
        st = grow(d->be, &d->buf[g], &d->cap[g], (size_t)d->used[g] * sizeof(float), err);
    if (!st) st = grow(d->be, &d->idx, &d->idx_cap, (size_t)d->idx_used * sizeof(int32_t), err);
    if (st) return st;
    pack(d, ps);
    for (int g = 0; g < N_GROUPS && !st; g++) {
        if (!d->used[g] || group_size(d, g) == 1) continue;
        fl_tensor all = f32_view(d, g, 0, 1, d->used[g]);
        st = d->c->allreduce_sum_group(d->c, comm_group(g), &all, err);
    }
    if (st) return st;
    unpack(d, ps, 1.0f / (float)d->c->size);
    return FL_OK;
}

fl_status fl_dist_grad_norm(fl_dist *d, double *norm, fl_error *err) {
    fl_param_list *ps = fl_model_params(d->m);
    double sum[N_GROUPS] = {0, 0};
    unsigned char *keep = malloc((size_t)(ps->n > 0 ? ps->n : 1));
    if (!keep) return fl_fail(err, FL_ENOMEM, "out of memory for the gradient norm");
    for (int g = 0; g < N_GROUPS; g++) {
        for (int i = 0; i < ps->n; i++) keep[i] = group_of(d, &ps->items[i]->pub) == g;
        sum[g] = fl_grad_sumsq(d->be, ps, keep);
    }
    free(keep);
    /* shards: each expert once, so summed over the expert-parallel group */
    if (d->c->ep_size > 1) {
        fl_status st = fl_comm_sum_f64(d->c, FL_COMM_EXPERT, &sum[G_REPLICA], 1, err);
        if (st) return st;
    }
    *norm = sqrt(sum[G_WORLD] + sum[G_REPLICA]);
    return FL_OK;
}

void fl_dist_sizes(const fl_dist *d, int64_t *world, int64_t *replica) {
    if (world) *world = d->used[G_WORLD];
    if (replica) *replica = d->used[G_REPLICA];
}
