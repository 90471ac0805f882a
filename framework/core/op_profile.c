/*
 * core/op_profile.c — the host ops, timed one by one (see op_profile.h).
 */
#include "op_profile.h"

#include <stddef.h>
#include <stdlib.h>

#include "backend.h"
#include "clock.h"

/* Shared by every wrapper: the ops carry no context of their own. */
static struct {
    const fl_backend *be; /* whose ops the wrappers call */
    fl_op_profile *p;     /* where they count; NULL: they only forward */
} g;

/* Each wrapper's body: a profile waits for the queued work, so the time
   measured is this op's alone (on a GPU, its kernels to the end). */
static double op_begin(void) {
    if (!g.p) return 0;
    if (g.be->sync) g.be->sync(NULL); /* a device error stays reported to the caller's next sync */
    return fl_now_s();
}

static void op_end(fl_op_id op, double t0, double flops) {
    if (!g.p) return;
    if (g.be->sync) g.be->sync(NULL);
    g.p->seconds[op] += fl_now_s() - t0;
    g.p->calls[op] += 1;
    g.p->flops[op] += flops;
}

/* The rows of t as a matrix: every dimension but the last. */
static double rows_of(const fl_tensor *t) {
    const int64_t c = t->ndim ? t->shape[t->ndim - 1] : 1;
    return c ? (double)fl_numel(t) / (double)c : 0.0;
}
static double cols_of(const fl_tensor *t) { return t->ndim ? (double)t->shape[t->ndim - 1] : 1.0; }
/* The second-last dimension (a batched matrix's rows). */
static double dim2_of(const fl_tensor *t) { return t->ndim >= 2 ? (double)t->shape[t->ndim - 2] : 1.0; }

/* FLOPs: every C element is a dot product of length K, 2 FLOPs per term. */
#define GEMM_FLOPS (2.0 * (double)fl_numel(C) * (transA ? rows_of(A) : cols_of(A)))
#define BATCHED_FLOPS (2.0 * (double)fl_numel(C) * (transA ? dim2_of(A) : cols_of(A)))
#define GROUPED_FLOPS (2.0 * (double)off[G] * cols_of(A) * cols_of(C))
#define WGRAD_FLOPS (2.0 * (double)off[G] * cols_of(A) * cols_of(dY))

#define WRAP(name, params, args, flops)                  \
    static void w_##name params {                        \
        const double t0 = op_begin();                    \
        g.be->ops.name args;                             \
        op_end(FL_OP_##name, t0, g.p ? (flops) : 0.0);   \
    }

WRAP(gemm, (int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B, float beta, fl_tensor *C),
     (transA, transB, alpha, A, B, beta, C), GEMM_FLOPS)
WRAP(gemm_batched,
     (int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B, float beta, fl_tensor *C),
     (transA, transB, alpha, A, B, beta, C), BATCHED_FLOPS)
WRAP(gemm_grouped,
     (int transW, float alpha, const fl_tensor *A, const fl_tensor *W, const int64_t *off, int G, float beta,
      fl_tensor *C),
     (transW, alpha, A, W, off, G, beta, C), GROUPED_FLOPS)
WRAP(gemm_grouped_wgrad,
     (float alpha, const fl_tensor *A, const fl_tensor *dY, const int64_t *off, int G, float beta, fl_tensor *dW),
     (alpha, A, dY, off, G, beta, dW), WGRAD_FLOPS)
WRAP(add_bias, (fl_tensor *y, const fl_tensor *b), (y, b), 0)
WRAP(sum_rows, (const fl_tensor *x, float beta, fl_tensor *out), (x, beta, out), 0)
WRAP(activation, (int act, const fl_tensor *x, fl_tensor *y), (act, x, y), 0)
WRAP(activation_backward, (int act, const fl_tensor *x, const fl_tensor *dy, fl_tensor *dx), (act, x, dy, dx), 0)
WRAP(mul, (const fl_tensor *a, const fl_tensor *b, fl_tensor *out), (a, b, out), 0)
WRAP(axpby, (float alpha, const fl_tensor *x, float beta, fl_tensor *y), (alpha, x, beta, y), 0)
WRAP(fill, (fl_tensor *x, float v), (x, v), 0)
WRAP(copy, (const fl_tensor *src, fl_tensor *dst), (src, dst), 0)
WRAP(scale_rows, (const fl_tensor *x, const fl_tensor *s, fl_tensor *y), (x, s, y), 0)
WRAP(row_dot, (const fl_tensor *a, const fl_tensor *b, fl_tensor *out), (a, b, out), 0)
WRAP(softmax, (const fl_tensor *x, fl_tensor *y), (x, y), 0)
WRAP(softmax_backward, (const fl_tensor *y, const fl_tensor *dy, fl_tensor *dx), (y, dy, dx), 0)
WRAP(logsumexp, (const fl_tensor *x, fl_tensor *out), (x, out), 0)
WRAP(topk, (const fl_tensor *x, int k, fl_tensor *vals, fl_tensor *idx), (x, k, vals, idx), 0)
WRAP(gather_rows, (const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst), (src, idx, dst), 0)
WRAP(scatter_add_rows, (const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst), (src, idx, dst), 0)
WRAP(embedding_bag, (const fl_tensor *table, const fl_tensor *idx, const fl_tensor *w, fl_tensor *out),
     (table, idx, w, out), 0)
WRAP(embedding_bag_backward,
     (const fl_tensor *dout, const fl_tensor *table, const fl_tensor *idx, const fl_tensor *w, fl_tensor *dtable,
      fl_tensor *dw),
     (dout, table, idx, w, dtable, dw), 0)
WRAP(layernorm,
     (const fl_tensor *x, const fl_tensor *gain, const fl_tensor *b, float eps, fl_tensor *y, fl_tensor *mean,
      fl_tensor *rstd),
     (x, gain, b, eps, y, mean, rstd), 0)
WRAP(layernorm_backward,
     (const fl_tensor *x, const fl_tensor *gain, const fl_tensor *mean, const fl_tensor *rstd, const fl_tensor *dy,
      fl_tensor *dx, fl_tensor *dg, fl_tensor *db),
     (x, gain, mean, rstd, dy, dx, dg, db), 0)
WRAP(rng_normal, (fl_tensor *x, uint64_t key, uint64_t offset, float mean, float std), (x, key, offset, mean, std), 0)
WRAP(rng_uniform, (fl_tensor *x, uint64_t key, uint64_t offset, float lo, float hi), (x, key, offset, lo, hi), 0)
WRAP(bucket_sort, (const fl_tensor *keys, int G, fl_tensor *perm, int64_t *off), (keys, G, perm, off), 0)
WRAP(to_host, (void *dst, const fl_tensor *src, size_t bytes), (dst, src, bytes), 0)
WRAP(from_host, (fl_tensor *dst, const void *src, size_t bytes), (dst, src, bytes), 0)
WRAP(permute01, (const fl_tensor *x, int64_t A, int64_t B, int64_t C, fl_tensor *y), (x, A, B, C, y), 0)
WRAP(dropout, (const fl_tensor *x, float p, uint64_t key, fl_tensor *y), (x, p, key, y), 0)
WRAP(batchnorm,
     (const fl_tensor *x, const fl_tensor *gain, const fl_tensor *b, float eps, float momentum, int train,
      fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, fl_tensor *run_mean, fl_tensor *run_var),
     (x, gain, b, eps, momentum, train, y, mean, rstd, run_mean, run_var), 0)
WRAP(batchnorm_backward,
     (const fl_tensor *x, const fl_tensor *gain, const fl_tensor *mean, const fl_tensor *rstd, const fl_tensor *dy,
      int batch, fl_tensor *dx, fl_tensor *dg, fl_tensor *db),
     (x, gain, mean, rstd, dy, batch, dx, dg, db), 0)
WRAP(layernorm_groups,
     (const fl_tensor *x, int G, const fl_tensor *gain, const fl_tensor *b, float eps, fl_tensor *y,
      fl_tensor *mean, fl_tensor *rstd),
     (x, G, gain, b, eps, y, mean, rstd), 0)
WRAP(layernorm_groups_backward,
     (const fl_tensor *x, int G, const fl_tensor *gain, const fl_tensor *mean, const fl_tensor *rstd,
      const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg, fl_tensor *db),
     (x, G, gain, mean, rstd, dy, dx, dg, db), 0)
WRAP(hash_ids, (const fl_tensor *ids, uint64_t seed, int64_t buckets, fl_tensor *out), (ids, seed, buckets, out), 0)
WRAP(bias_activation, (int act, const fl_tensor *x, const fl_tensor *b, fl_tensor *y), (act, x, b, y), 0)
WRAP(bias_activation_backward,
     (int act, const fl_tensor *x, const fl_tensor *b, const fl_tensor *dy, fl_tensor *dx, fl_tensor *db),
     (act, x, b, dy, dx, db), 0)
WRAP(bias_activation_grouped,
     (int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G, fl_tensor *y),
     (act, x, b, off, G, y), 0)
WRAP(bias_activation_grouped_backward,
     (int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G, const fl_tensor *dy,
      fl_tensor *dx, fl_tensor *db),
     (act, x, b, off, G, dy, dx, db), 0)

/* A field added to fl_ops needs its wrapper above and its name in FL_OP_NAMES. */
_Static_assert(offsetof(fl_ops, gemm) + FL_OP_COUNT * sizeof(void (*)(void)) == sizeof(fl_ops),
               "fl_ops has an op that op_profile.c does not wrap");

void fl_op_profile_table(const fl_backend *be, fl_ops *ops) {
    g.be = be;
    *ops = be->ops;
#define FL_OP_SET(name) ops->name = be->ops.name ? w_##name : NULL;
    FL_OP_NAMES(FL_OP_SET)
#undef FL_OP_SET
}

/* The median time of a wait for the device when nothing is queued. */
static double idle_wait_s(void) {
    double t[15];
    for (int i = 0; i < 15; i++) {
        if (g.be->sync) g.be->sync(NULL);
        const double t0 = fl_now_s();
        if (g.be->sync) g.be->sync(NULL);
        t[i] = fl_now_s() - t0;
    }
    qsort(t, 15, sizeof *t, fl_cmp_double);
    return t[7];
}

void fl_op_profile_attach(fl_op_profile *p) {
    if (p && g.be) p->wait_s = idle_wait_s();
    g.p = p;
}

const char *fl_op_name(int op) {
    static const char *const names[FL_OP_COUNT] = {
#define FL_OP_STR(name) #name,
        FL_OP_NAMES(FL_OP_STR)
#undef FL_OP_STR
    };
    return op >= 0 && op < FL_OP_COUNT ? names[op] : "?";
}
