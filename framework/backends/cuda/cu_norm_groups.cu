/*
 * backends/cuda/cu_norm_groups.cu — the product-key memory's batch norm over
 * rows and its gradient (the CPU's cpu_norm_groups.c, same formulas). Its
 * other query norm, layer norm over groups of columns, shares the layer
 * norm's kernels in cu_layernorm.cu.
 *
 * Batch norm: the per-column statistics and the affine gradients are column
 * sums over rows, taken by the deterministic two-stage sum of cu_colsum.cuh
 * (double partials over fixed row chunks, added in order: no atomics, the
 * same bits on every run). Two passes as on the CPU: the mean, then the
 * centred squares. The elementwise passes are grid-stride loops.
 */
#include "cu_colsum.cuh"
#include "cu_ops.h"

/* ---------------------------------------------------------- batch norm */

/* f(r, c) = x[r, c] */
struct bn_col {
    const float *x;
    int64_t F;
    __device__ float2 operator()(int64_t r, int64_t c) const { return make_float2(x[r * F + c], 0.0f); }
};

/* f(r, c) = (x[r, c] - mean[c])² */
struct bn_col_sq {
    const float *x, *mean;
    int64_t F;
    __device__ float2 operator()(int64_t r, int64_t c) const {
        const float d = x[r * F + c] - mean[c];
        return make_float2(d * d, 0.0f);
    }
};

/* mean[F] holds column sums on entry, the means on return */
static __global__ void k_bn_mean(float *mean, int64_t F, int64_t N) {
    CU_LOOP(f, F) mean[f] = (float)((double)mean[f] / (double)N);
}

/* rstd[F] holds the centred sums of squares on entry; the running
   statistics take the unbiased variance (PyTorch's BatchNorm1d rule). */
static __global__ void k_bn_stats(const float *mean, float *rstd, float *run_mean, float *run_var, int64_t F,
                                  int64_t N, float eps, float momentum) {
    const double unbias = N > 1 ? (double)N / (double)(N - 1) : 1.0;
    CU_LOOP(f, F) {
        const double var = (double)rstd[f] / (double)N;
        rstd[f] = (float)(1.0 / sqrt(var + (double)eps));
        if (run_mean) run_mean[f] = (1.0f - momentum) * run_mean[f] + momentum * mean[f];
        if (run_var) run_var[f] = (1.0f - momentum) * run_var[f] + momentum * (float)(var * unbias);
    }
}

/* eval: the running statistics */
static __global__ void k_bn_eval_stats(const float *run_mean, const float *run_var, float *mean, float *rstd,
                                       int64_t F, float eps) {
    CU_LOOP(f, F) {
        mean[f] = run_mean[f];
        rstd[f] = 1.0f / sqrtf(run_var[f] + eps);
    }
}

/* y[N,F] = (x - mean) rstd g + b, per column */
static __global__ void k_bn_affine(const float *x, const float *mean, const float *rstd, const float *g,
                                   const float *b, float *y, int64_t N, int64_t F) {
    CU_LOOP(i, N * F) {
        const int64_t f = i % F;
        y[i] = (x[i] - mean[f]) * rstd[f] * g[f] + b[f];
    }
}

void cu_batchnorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps, float momentum,
                  int train, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, fl_tensor *run_mean,
                  fl_tensor *run_var) {
    const int64_t N = cu_rows(x), F = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && y->dtype == FL_F32 && fl_numel(y) == N * F);
    CU_CHECK(g && b && fl_numel(g) == F && fl_numel(b) == F && fl_numel(mean) == F && fl_numel(rstd) == F);
    CU_CHECK(!run_mean || fl_numel(run_mean) == F);
    CU_CHECK(!run_var || fl_numel(run_var) == F);
    CU_CHECK(train ? N >= 1 : run_mean && run_var);
    if (F == 0) return;
    float *pm = cu_f32(mean), *pr = cu_f32(rstd);
    float *rm = run_mean ? cu_f32(run_mean) : NULL, *rv = run_var ? cu_f32(run_var) : NULL;
    if (train) {
        if (!cu_colsum(bn_col{cu_f32(x), F}, N, F, 0.0f, pm, NULL)) return;
        CU_LAUNCH(cu_grid(F), CU_THREADS, 0, k_bn_mean)(pm, F, N);
        if (!CU_LAUNCHED("k_bn_mean")) return;
        if (!cu_colsum(bn_col_sq{cu_f32(x), pm, F}, N, F, 0.0f, pr, NULL)) return;
        CU_LAUNCH(cu_grid(F), CU_THREADS, 0, k_bn_stats)(pm, pr, rm, rv, F, N, eps, momentum);
        if (!CU_LAUNCHED("k_bn_stats")) return;
    } else {
        CU_LAUNCH(cu_grid(F), CU_THREADS, 0, k_bn_eval_stats)(rm, rv, pm, pr, F, eps);
        if (!CU_LAUNCHED("k_bn_eval_stats")) return;
    }
    if (N == 0) return;
    CU_LAUNCH(cu_grid(N * F), CU_THREADS, 0, k_bn_affine)(cu_f32(x), pm, pr, cu_f32(g), cu_f32(b), cu_f32(y),
                                                                N, F);
    CU_LAUNCHED("k_bn_affine");
}

/* (dy xh, dy) at (r, c), xh = (x - mean[c]) rstd[c] */
struct bn_grads {
    const float *x, *dy, *mean, *rstd;
    int64_t F;
    __device__ float2 operator()(int64_t r, int64_t c) const {
        const float d = dy[r * F + c];
        return make_float2(d * ((x[r * F + c] - mean[c]) * rstd[c]), d);
    }
};

/* s[2F] = (sum dy xh, sum dy) per column on entry: adds them to dg, db and
   leaves their means (batch) or zeros (fixed statistics) in s */
static __global__ void k_bn_grad_finish(float *s, float *dg, float *db, int64_t F, int64_t N, int batch) {
    CU_LOOP(f, F) {
        const double s2 = s[f], s1 = s[F + f];
        if (dg) dg[f] += (float)s2;
        if (db) db[f] += (float)s1;
        s[f] = batch ? (float)(s2 / (double)N) : 0.0f;
        s[F + f] = batch ? (float)(s1 / (double)N) : 0.0f;
    }
}

/* dx = g rstd (dy - mean(dy) - xh mean(dy xh)); m = (mean(dy xh), mean(dy)) */
static __global__ void k_bn_dx(const float *x, const float *g, const float *mean, const float *rstd,
                               const float *dy, const float *m, float *dx, int64_t N, int64_t F) {
    CU_LOOP(i, N * F) {
        const int64_t f = i % F;
        const float xh = (x[i] - mean[f]) * rstd[f];
        dx[i] = g[f] * rstd[f] * (dy[i] - m[F + f] - xh * m[f]);
    }
}

void cu_batchnorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean, const fl_tensor *rstd,
                           const fl_tensor *dy, int batch, fl_tensor *dx, fl_tensor *dg, fl_tensor *db) {
    const int64_t N = cu_rows(x), F = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32);
    CU_CHECK(fl_numel(dy) == N * F && fl_numel(dx) == N * F);
    CU_CHECK(fl_numel(g) == F && fl_numel(mean) == F && fl_numel(rstd) == F);
    CU_CHECK(!dg || fl_numel(dg) == F);
    CU_CHECK(!db || fl_numel(db) == F);
    if (N == 0 || F == 0) return;
    /* the column sums go first (dx may alias dy); CU_SLOT_REDUCE is cu_colsum's */
    float *s = (float *)cu_scratch(CU_SLOT_RESULT, (size_t)(2 * F) * sizeof(float));
    if (!s) return;
    if (!CU_OK(cudaMemsetAsync(s + F, 0, (size_t)F * sizeof(float), g_cu.stream))) return; /* out2 accumulates */
    const float *px = cu_f32(x), *pm = cu_f32(mean), *pr = cu_f32(rstd), *pdy = cu_f32(dy);
    if (!cu_colsum(bn_grads{px, pdy, pm, pr, F}, N, F, 0.0f, s, s + F)) return;
    CU_LAUNCH(cu_grid(F), CU_THREADS, 0, k_bn_grad_finish)(s, dg ? cu_f32(dg) : NULL, db ? cu_f32(db) : NULL,
                                                                 F, N, batch);
    if (!CU_LAUNCHED("k_bn_grad_finish")) return;
    CU_LAUNCH(cu_grid(N * F), CU_THREADS, 0, k_bn_dx)(px, cu_f32(g), pm, pr, pdy, s, cu_f32(dx), N, F);
    CU_LAUNCHED("k_bn_dx");
}
