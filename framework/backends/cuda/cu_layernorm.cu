/*
 * backends/cuda/cu_layernorm.cu — LayerNorm over the last dimension and its
 * gradient, and the same over groups of columns (PKM's per-head query norm:
 * x[N, G*c] as the matrix [N*G, c], the affine indexed by column), one set
 * of kernels for both.
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

/* Rows of c values: R = N*G rows when each row of x[N,F] holds G groups of
   c = F/G (a group's values are contiguous, so x is the matrix [R, c]).
   Row r's affine starts at column (r % G) * c of g, b (NULL: none). G = 1
   is the plain layer norm. */
typedef struct ln_rows {
    int64_t R, c;
    int G;
} ln_rows;

/* Out: float, or uint16_t for a bf16 y */
template <int TPR, class Out>
static __global__ void k_layernorm(const float *x, const float *g, const float *b, float eps, Out *y,
                                   float *mean, float *rstd, ln_rows s) {
    __shared__ float sm[32];
    int t;
    const int64_t row = cu_row_index<TPR>(&t);
    if (row >= s.R) return;
    const int64_t D = s.c, a0 = (row % s.G) * D;
    const float *xr = x + row * D, *gr = g ? g + a0 : NULL, *br = b ? b + a0 : NULL;
    Out *yr = y + row * D;
    float sum = 0.0f;
    for (int64_t j = t; j < D; j += TPR) sum += xr[j];
    const float mu = cu_row_sum<TPR>(sum, sm) / (float)D;
    float v = 0.0f;
    for (int64_t j = t; j < D; j += TPR) {
        const float c = xr[j] - mu;
        v += c * c;
    }
    const float rs = 1.0f / sqrtf(cu_row_sum<TPR>(v, sm) / (float)D + eps);
    for (int64_t j = t; j < D; j += TPR) {
        const float h = (xr[j] - mu) * rs;
        cu_store(&yr[j], (gr ? h * gr[j] : h) + (br ? br[j] : 0.0f));
    }
    if (t == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = rs;
    }
}

/* One launch of k_layernorm: a warp per row, or a block for long rows. */
template <class Out>
static void layernorm_launch(const float *x, const float *g, const float *b, float eps, Out *y, float *mean,
                             float *rstd, ln_rows s) {
    if (s.R == 0) return;
    if (s.c <= CU_WARP_ROW_MAX)
        CU_LAUNCH(cu_row_blocks(s.R, CU_THREADS / 32), CU_THREADS, 0, k_layernorm<32, Out>)(x, g, b, eps, y, mean,
                                                                                            rstd, s);
    else
        CU_LAUNCH((unsigned)s.R, CU_THREADS, 0, k_layernorm<CU_THREADS, Out>)(x, g, b, eps, y, mean, rstd, s);
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
    const float *pg = g ? cu_f32(g) : NULL, *pb = b ? cu_f32(b) : NULL;
    float *pm = mean ? cu_f32(mean) : NULL, *pr = rstd ? cu_f32(rstd) : NULL;
    const ln_rows s = {N, D, 1};
    if (y->dtype == FL_BF16) layernorm_launch(cu_f32(x), pg, pb, eps, (uint16_t *)y->data, pm, pr, s);
    else layernorm_launch(cu_f32(x), pg, pb, eps, cu_f32(y), pm, pr, s);
}

/* x, y [N,F], F = G*c; g, b [F]; mean, rstd [N*G] */
void cu_layernorm_groups(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *b, float eps,
                         fl_tensor *y, fl_tensor *mean, fl_tensor *rstd) {
    const int64_t N = cu_rows(x), F = cu_cols(x), c = G > 0 ? F / G : 0, R = N * G;
    CU_CHECK(G >= 1 && c >= 1 && c * G == F);
    CU_CHECK(x->dtype == FL_F32 && y->dtype == FL_F32 && fl_numel(y) == N * F);
    CU_CHECK(g && b && fl_numel(g) == F && fl_numel(b) == F);
    CU_CHECK(fl_numel(mean) == R && fl_numel(rstd) == R);
    layernorm_launch(cu_f32(x), cu_f32(g), cu_f32(b), eps, cu_f32(y), cu_f32(mean), cu_f32(rstd),
                     ln_rows{R, c, G});
}

/* (dy xh, dy) at (r, col) of [N,F] with the statistics of row r's group
   col / c (GROUPS false: one group, no division) */
template <bool GROUPS> struct ln_param_grads {
    const float *x, *dy, *mean, *rstd;
    int64_t F, c;
    int G;
    __device__ float2 operator()(int64_t r, int64_t col) const {
        const int64_t j = GROUPS ? r * G + col / c : r;
        const float d = dy[r * F + col];
        return make_float2(d * ((x[r * F + col] - mean[j]) * rstd[j]), d);
    }
};

template <int TPR>
static __global__ void k_layernorm_dx(const float *x, const float *g, const float *mean, const float *rstd,
                                      const float *dy, float *dx, ln_rows s) {
    __shared__ float sm[32];
    int t;
    const int64_t row = cu_row_index<TPR>(&t);
    if (row >= s.R) return;
    const int64_t D = s.c;
    const float *xr = x + row * D, *dr = dy + row * D, *gr = g ? g + (row % s.G) * D : NULL;
    float *or_ = dx + row * D;
    const float mu = mean[row], rs = rstd[row];
    float a = 0.0f, bb = 0.0f;
    for (int64_t j = t; j < D; j += TPR) {
        const float gy = gr ? dr[j] * gr[j] : dr[j];
        a += gy;
        bb += gy * (xr[j] - mu) * rs;
    }
    a = cu_row_sum<TPR>(a, sm) / (float)D;
    bb = cu_row_sum<TPR>(bb, sm) / (float)D;
    for (int64_t j = t; j < D; j += TPR) {
        const float xh = (xr[j] - mu) * rs, gy = gr ? dr[j] * gr[j] : dr[j];
        or_[j] = rs * (gy - a - xh * bb);
    }
}

/* The backward of either op on x[N,F] viewed as s (see ln_rows). */
static void layernorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean, const fl_tensor *rstd,
                               const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg, fl_tensor *db, int64_t N,
                               int64_t F, ln_rows s) {
    const float *px = cu_f32(x), *pm = cu_f32(mean), *pr = cu_f32(rstd), *pdy = cu_f32(dy);
    /* parameter gradients first: dx may overwrite dy */
    if (dg && s.G == 1) cu_colsum(ln_param_grads<false>{px, pdy, pm, pr, F, s.c, 1}, N, F, 1.0f, cu_f32(dg),
                                  db ? cu_f32(db) : NULL);
    else if (dg) cu_colsum(ln_param_grads<true>{px, pdy, pm, pr, F, s.c, s.G}, N, F, 1.0f, cu_f32(dg),
                           db ? cu_f32(db) : NULL);
    else if (db) cu_sum_rows_raw(pdy, N, F, 1.0f, cu_f32(db));
    if (s.R == 0) return;
    const float *pg = g ? cu_f32(g) : NULL;
    if (s.c <= CU_WARP_ROW_MAX)
        CU_LAUNCH(cu_row_blocks(s.R, CU_THREADS / 32), CU_THREADS, 0, k_layernorm_dx<32>)(px, pg, pm, pr, pdy,
                                                                                           cu_f32(dx), s);
    else
        CU_LAUNCH((unsigned)s.R, CU_THREADS, 0, k_layernorm_dx<CU_THREADS>)(px, pg, pm, pr, pdy, cu_f32(dx), s);
    CU_LAUNCHED("k_layernorm_dx");
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
    layernorm_backward(x, g, mean, rstd, dy, dx, dg, db, N, D, ln_rows{N, D, 1});
}

void cu_layernorm_groups_backward(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *mean,
                                  const fl_tensor *rstd, const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg,
                                  fl_tensor *db) {
    const int64_t N = cu_rows(x), F = cu_cols(x), c = G > 0 ? F / G : 0, R = N * G;
    CU_CHECK(G >= 1 && c >= 1 && c * G == F);
    CU_CHECK(x->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32);
    CU_CHECK(fl_numel(dy) == N * F && fl_numel(dx) == N * F && fl_numel(g) == F);
    CU_CHECK(fl_numel(mean) == R && fl_numel(rstd) == R);
    CU_CHECK(!dg || fl_numel(dg) == F);
    CU_CHECK(!db || fl_numel(db) == F);
    layernorm_backward(x, g, mean, rstd, dy, dx, dg, db, N, F, ln_rows{R, c, G});
}
