/*
 * backends/cuda/cu_softmax.cu — row softmax, its gradient and logsumexp.
 *
 * One row per warp for rows up to CU_WARP_ROW_MAX columns (MoE gates, PKM
 * scores: many short rows), one row per block of 256 threads for longer
 * rows (a vocabulary). Numerically stable: the row maximum is subtracted
 * before exponentiating; a row of only -inf gives zeros (softmax) or -inf
 * (logsumexp), as on the CPU. Outputs may alias inputs: each element is
 * read and then written by the same thread, after the row's reductions.
 */
#include "cu_ops.h"

/* y = softmax(x) per row of x[N,M] */
template <int TPR> static __global__ void k_softmax(const float *x, float *y, int64_t N, int64_t M) {
    __shared__ float sm[32];
    int t;
    const int64_t row = cu_row_index<TPR>(&t);
    if (row >= N) return; /* whole warp / whole block: the row is uniform */
    const float *xr = x + row * M;
    float *yr = y + row * M;
    float m = -INFINITY;
    for (int64_t j = t; j < M; j += TPR) m = fmaxf(m, xr[j]);
    m = cu_row_max<TPR>(m, sm);
    if (m == -INFINITY) m = 0.0f;
    float s = 0.0f;
    for (int64_t j = t; j < M; j += TPR) s += expf(xr[j] - m);
    s = cu_row_sum<TPR>(s, sm);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int64_t j = t; j < M; j += TPR) yr[j] = expf(xr[j] - m) * inv;
}

void cu_softmax(const fl_tensor *x, fl_tensor *y) {
    const int64_t N = cu_rows(x), M = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && y->dtype == FL_F32 && fl_numel(y) == N * M);
    if (N == 0 || M == 0) return;
    if (M <= CU_WARP_ROW_MAX)
        CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_softmax<32>)(cu_f32(x), cu_f32(y), N, M);
    else
        CU_LAUNCH((unsigned)N, CU_THREADS, 0, k_softmax<CU_THREADS>)(cu_f32(x), cu_f32(y), N, M);
    CU_LAUNCHED("k_softmax");
}

/* dx = y (dy - sum_j dy_j y_j) per row; dx may alias dy */
template <int TPR>
static __global__ void k_softmax_backward(const float *y, const float *dy, float *dx, int64_t N, int64_t M) {
    __shared__ float sm[32];
    int t;
    const int64_t row = cu_row_index<TPR>(&t);
    if (row >= N) return;
    const float *yr = y + row * M, *gr = dy + row * M;
    float *dr = dx + row * M;
    float dot = 0.0f;
    for (int64_t j = t; j < M; j += TPR) dot += yr[j] * gr[j];
    dot = cu_row_sum<TPR>(dot, sm);
    for (int64_t j = t; j < M; j += TPR) dr[j] = yr[j] * (gr[j] - dot);
}

void cu_softmax_backward(const fl_tensor *y, const fl_tensor *dy, fl_tensor *dx) {
    const int64_t N = cu_rows(y), M = cu_cols(y);
    CU_CHECK(y->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32);
    CU_CHECK(fl_numel(dy) == N * M && fl_numel(dx) == N * M);
    if (N == 0 || M == 0) return;
    if (M <= CU_WARP_ROW_MAX)
        CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_softmax_backward<32>)(
            cu_f32(y), cu_f32(dy), cu_f32(dx), N, M);
    else
        CU_LAUNCH((unsigned)N, CU_THREADS, 0, k_softmax_backward<CU_THREADS>)(cu_f32(y), cu_f32(dy), cu_f32(dx),
                                                                                    N, M);
    CU_LAUNCHED("k_softmax_backward");
}

/* out[N] = log sum_j exp(x[N,j]); a row of only -inf gives -inf */
template <int TPR> static __global__ void k_logsumexp(const float *x, float *out, int64_t N, int64_t M) {
    __shared__ float sm[32];
    int t;
    const int64_t row = cu_row_index<TPR>(&t);
    if (row >= N) return;
    const float *xr = x + row * M;
    float m = -INFINITY;
    for (int64_t j = t; j < M; j += TPR) m = fmaxf(m, xr[j]);
    m = cu_row_max<TPR>(m, sm);
    if (m == -INFINITY) {
        if (t == 0) out[row] = -INFINITY;
        return; /* uniform over the row */
    }
    float s = 0.0f;
    for (int64_t j = t; j < M; j += TPR) s += expf(xr[j] - m);
    s = cu_row_sum<TPR>(s, sm);
    if (t == 0) out[row] = m + logf(s);
}

void cu_logsumexp(const fl_tensor *x, fl_tensor *out) {
    const int64_t N = cu_rows(x), M = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && out->dtype == FL_F32 && fl_numel(out) == N);
    if (N == 0) return;
    if (M <= CU_WARP_ROW_MAX)
        CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_logsumexp<32>)(cu_f32(x), cu_f32(out), N,
                                                                                          M);
    else
        CU_LAUNCH((unsigned)N, CU_THREADS, 0, k_logsumexp<CU_THREADS>)(cu_f32(x), cu_f32(out), N, M);
    CU_LAUNCHED("k_logsumexp");
}
