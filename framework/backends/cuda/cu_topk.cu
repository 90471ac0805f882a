/*
 * backends/cuda/cu_topk.cu — the k largest values of each row, with their
 * column indices: descending by value, ties → lower index first (the CPU's
 * order exactly).
 *
 * Rows here are short (experts, sub-keys), so one warp owns a row and picks
 * the winners one at a time: pass p takes the best element that comes after
 * winner p-1 in the total order (value descending, then index ascending),
 * i.e. (v < v_prev) or (v == v_prev and j > j_prev). No marks, no scratch:
 * each pass is a scan of the row (M/32 elements per lane, from L1) and a
 * warp arg-max of (value, index) pairs. O(k*M) per row, fine for k*M up to
 * ~1e5. NaN values are never chosen (no order holds for them).
 */
#include "cu_ops.h"

/* (v, j) beats (bv, bj): bj < 0 means "nothing yet" */
__device__ __forceinline__ bool better(float v, int j, float bv, int bj) {
    return j >= 0 && (bj < 0 || v > bv || (v == bv && j < bj));
}

static __global__ void k_topk(const float *x, int64_t N, int64_t M, int k, float *vals, int32_t *idx) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + row * M;
    float pv = INFINITY;
    int pj = -1; /* the previous winner; (+inf, -1) admits everything */
    for (int p = 0; p < k; p++) {
        float bv = 0.0f;
        int bj = -1;
        for (int64_t j = lane; j < M; j += 32) {
            const float v = xr[j];
            const bool after = v < pv || (v == pv && (int)j > pj);
            if (after && better(v, (int)j, bv, bj)) bv = v, bj = (int)j;
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oj = __shfl_xor_sync(0xffffffffu, bj, o);
            if (better(ov, oj, bv, bj)) bv = ov, bj = oj;
        }
        if (lane == 0) {
            vals[row * k + p] = bj >= 0 ? bv : NAN;
            idx[row * k + p] = bj;
        }
        pv = bv, pj = bj;
    }
}

void cu_topk(const fl_tensor *x, int k, fl_tensor *vals, fl_tensor *idx) {
    const int64_t N = cu_rows(x), M = cu_cols(x);
    CU_CHECK(x->dtype == FL_F32 && vals->dtype == FL_F32 && idx->dtype == FL_I32);
    CU_CHECK(k >= 1 && k <= M && fl_numel(vals) == N * k && fl_numel(idx) == N * k);
    CU_CHECK(M < INT32_MAX);
    if (N == 0) return;
    CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_topk)(cu_f32(x), N, M, k, cu_f32(vals),
                                                                              cu_i32(idx));
    CU_LAUNCHED("k_topk");
}
