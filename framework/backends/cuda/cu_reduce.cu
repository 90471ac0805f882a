/*
 * backends/cuda/cu_reduce.cu — sums across rows and along rows: the bias
 * gradient sum_rows (column sums, deterministic two-stage, cu_colsum.cuh;
 * per group of rows for the experts' biases) and row_dot (one warp per row).
 */
#include "cu_colsum.cuh"
#include "cu_ops.h"

/* f(r, c) = x[r, c] */
struct plain_rows {
    const float *x;
    int64_t M;
    __device__ float2 operator()(int64_t r, int64_t c) const { return make_float2(x[r * M + c], 0.0f); }
};

void cu_sum_rows_raw(const float *x, int64_t N, int64_t M, float beta, float *out) {
    cu_colsum(plain_rows{x, M}, N, M, beta, out, NULL);
}

/* out[g,:] = beta out[g,:] + the sum of rows off[g]..off[g+1] of x[N,M]
   (off on the host, d_off its copy on the device) */
void cu_sum_rows_grouped_raw(const float *x, const int64_t *off, const int64_t *d_off, int G, int64_t N, int64_t M,
                             float beta, float *out) {
    cu_colsum_grouped(plain_rows{x, M}, off, d_off, G, N, M, beta, out, NULL);
}

/* out[M] = beta * out + sum over rows of x[N,M] */
void cu_sum_rows(const fl_tensor *x, float beta, fl_tensor *out) {
    const int64_t N = cu_rows(x), M = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && out->dtype == FL_F32 && fl_numel(out) == M);
    cu_sum_rows_raw(cu_f32(x), N, M, beta, cu_f32(out));
}

/* out[N] = sum_j a[N,j] b[N,j]: a warp per row, float partials per lane */
static __global__ void k_row_dot(const float *a, const float *b, float *out, int64_t N, int64_t M) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *ra = a + row * M, *rb = b + row * M;
    float s = 0.0f;
    for (int64_t j = lane; j < M; j += 32) s += ra[j] * rb[j];
    s = cu_warp_sum(s);
    if (lane == 0) out[row] = s;
}

void cu_row_dot(const fl_tensor *a, const fl_tensor *b, fl_tensor *out) {
    const int64_t N = cu_rows(a), M = cu_cols(a);
    CU_CHECK(a->dtype == FL_F32 && b->dtype == FL_F32 && fl_numel(b) == N * M);
    CU_CHECK(out->dtype == FL_F32 && fl_numel(out) == N);
    if (N == 0) return;
    CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_row_dot)(cu_f32(a), cu_f32(b), cu_f32(out),
                                                                                 N, M);
    CU_LAUNCHED("k_row_dot");
}
