/*
 * backends/cuda/cu_layernorm.cu — LayerNorm over the last dimension and its
 * gradient.
 *
 * Forward: a warp per row (a block for rows longer than CU_WARP_ROW_MAX),
 * two passes like the CPU (the mean, then the centred variance, so no
 * cancellation), rstd = 1 / sqrt(var + eps), then y = xh * g + b, written
 * as f32 or rounded to bf16 (an input that only feeds a GEMM).
 *
 * Backward, with xh = (x - mean) rstd and gy = dy * g:
 *     dx = rstd (gy - mean(gy) - xh mean(gy xh))        per row (a warp)
 *     dg += sum_rows dy * xh,   db += sum_rows dy        per column
 * The column sums go first (dx may alias dy) through the deterministic
 * two-stage column sum of cu_colsum.cuh, recomputing xh from the saved mean
 * and rstd rather than storing it.
 */
#include "cu_bf16.cuh"
#include "cu_colsum.cuh"
#include "cu_ops.h"

/* Out: float, or uint16_t for a bf16 y */
template <int TPR, class Out>
static __global__ void k_layernorm(const float *x, const float *g, const float *b, float eps, Out *y,
                                   float *mean, float *rstd, int64_t N, int64_t D) {
    __shared__ float sm[32];
    int t;
    const int64_t row = cu_row_index<TPR>(&t);
    if (row >= N) return;
    const float *xr = x + row * D;
    Out *yr = y + row * D;
    float s = 0.0f;
    for (int64_t j = t; j < D; j += TPR) s += xr[j];
    const float mu = cu_row_sum<TPR>(s, sm) / (float)D;
    float v = 0.0f;
    for (int64_t j = t; j < D; j += TPR) {
        const float c = xr[j] - mu;
        v += c * c;
    }
    const float rs = 1.0f / sqrtf(cu_row_sum<TPR>(v, sm) / (float)D + eps);
    for (int64_t j = t; j < D; j += TPR) {
        const float h = (xr[j] - mu) * rs;
        cu_store(&yr[j], (g ? h * g[j] : h) + (b ? b[j] : 0.0f));
    }
    if (t == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = rs;
    }
}

/* One launch of k_layernorm: a warp per row, or a block for long rows. */
template <class Out>
static void layernorm_launch(const float *x, const float *g, const float *b, float eps, Out *y, float *mean,
                             float *rstd, int64_t N, int64_t D) {
    if (D <= CU_WARP_ROW_MAX)
        CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_layernorm<32, Out>)(x, g, b, eps, y, mean,
                                                                                          rstd, N, D);
    else
        CU_LAUNCH((unsigned)N, CU_THREADS, 0, k_layernorm<CU_THREADS, Out>)(x, g, b, eps, y, mean, rstd, N, D);
    CU_LAUNCHED("k_layernorm");
}

void cu_layernorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps, fl_tensor *y,
                  fl_tensor *mean, fl_tensor *rstd) {
    const int64_t N = cu_rows(x), D = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && (y->dtype == FL_F32 || y->dtype == FL_BF16));
    CU_CHECK(fl_numel(y) == N * D && D > 0);
    CU_CHECK(!g || (g->dtype == FL_F32 && fl_numel(g) == D));
    CU_CHECK(!b || (b->dtype == FL_F32 && fl_numel(b) == D));
    CU_CHECK(!mean || (mean->dtype == FL_F32 && fl_numel(mean) == N));
    CU_CHECK(!rstd || (rstd->dtype == FL_F32 && fl_numel(rstd) == N));
    if (N == 0) return;
    const float *pg = g ? cu_f32(g) : NULL, *pb = b ? cu_f32(b) : NULL;
    float *pm = mean ? cu_f32(mean) : NULL, *pr = rstd ? cu_f32(rstd) : NULL;
    if (y->dtype == FL_BF16) layernorm_launch(cu_f32(x), pg, pb, eps, (uint16_t *)y->data, pm, pr, N, D);
    else layernorm_launch(cu_f32(x), pg, pb, eps, cu_f32(y), pm, pr, N, D);
}

/* (dy * xh, dy) at (r, c), for dg and db */
struct ln_param_grads {
    const float *x, *dy, *mean, *rstd;
    int64_t D;
    __device__ float2 operator()(int64_t r, int64_t c) const {
        const float d = dy[r * D + c];
        return make_float2(d * ((x[r * D + c] - mean[r]) * rstd[r]), d);
    }
};

template <int TPR>
static __global__ void k_layernorm_dx(const float *x, const float *g, const float *mean, const float *rstd,
                                      const float *dy, float *dx, int64_t N, int64_t D) {
    __shared__ float sm[32];
    int t;
    const int64_t row = cu_row_index<TPR>(&t);
    if (row >= N) return;
    const float *xr = x + row * D, *dr = dy + row * D;
    float *or_ = dx + row * D;
    const float mu = mean[row], rs = rstd[row];
    float a = 0.0f, bb = 0.0f;
    for (int64_t j = t; j < D; j += TPR) {
        const float gy = g ? dr[j] * g[j] : dr[j];
        a += gy;
        bb += gy * (xr[j] - mu) * rs;
    }
    a = cu_row_sum<TPR>(a, sm) / (float)D;
    bb = cu_row_sum<TPR>(bb, sm) / (float)D;
    for (int64_t j = t; j < D; j += TPR) {
        const float xh = (xr[j] - mu) * rs, gy = g ? dr[j] * g[j] : dr[j];
        or_[j] = rs * (gy - a - xh * bb);
    }
}

void cu_layernorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean, const fl_tensor *rstd,
                           const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg, fl_tensor *db) {
    const int64_t N = cu_rows(x), D = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32 && D > 0);
    CU_CHECK(fl_numel(dy) == N * D && fl_numel(dx) == N * D);
    CU_CHECK(fl_numel(mean) == N && fl_numel(rstd) == N);
    CU_CHECK(!g || fl_numel(g) == D);
    CU_CHECK(!dg || fl_numel(dg) == D);
    CU_CHECK(!db || fl_numel(db) == D);
    const float *px = cu_f32(x), *pm = cu_f32(mean), *pr = cu_f32(rstd), *pdy = cu_f32(dy);
    /* parameter gradients first: dx may overwrite dy */
    ln_param_grads f{px, pdy, pm, pr, D};
    if (dg && db) cu_colsum(f, N, D, 1.0f, cu_f32(dg), cu_f32(db));
    else if (dg) cu_colsum(f, N, D, 1.0f, cu_f32(dg), NULL);
    else if (db) cu_sum_rows_raw(pdy, N, D, 1.0f, cu_f32(db));
    if (N == 0) return;
    const float *pg = g ? cu_f32(g) : NULL;
    if (D <= CU_WARP_ROW_MAX)
        CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_layernorm_dx<32>)(px, pg, pm, pr, pdy,
                                                                                             cu_f32(dx), N, D);
    else
        CU_LAUNCH((unsigned)N, CU_THREADS, 0, k_layernorm_dx<CU_THREADS>)(px, pg, pm, pr, pdy, cu_f32(dx), N, D);
    CU_LAUNCHED("k_layernorm_dx");
}
