/*
 * backends/cuda/cu_colsum.cuh — deterministic column sums over rows, for
 * bias gradients (sum_rows) and LayerNorm's dg / db.
 *
 * out[c] = beta * out[c] + sum_{r<N} f(r, c) for c < M, where f returns a
 * float2 so one pass can produce two sums (.x into out, .y into out2).
 *
 * Stage 1 (k_colsum_part): a block of 32 x 8 threads owns 32 columns and a
 * chunk of `rows_per` rows; each thread sums every 8th row of the chunk in
 * double, the 8 row-partials are added in a fixed order, and the chunk's sum
 * goes to part[chunk][c]. Stage 2 (k_colsum_finish) adds the chunks in order.
 * No atomics, so the result does not depend on scheduling. Chunks are sized
 * so about 8 blocks per multiprocessor run in stage 1.
 */
#ifndef FFNLAB_CU_COLSUM_CUH
#define FFNLAB_CU_COLSUM_CUH

#include "cu_common.h"

template <class F>
__global__ void k_colsum_part(F f, int64_t N, int64_t M, int64_t rows_per, double *part,
                              int two) {
    __shared__ double sx[8][33], sy[8][33];
    const int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.y * rows_per;
    const int64_t r1 = r0 + rows_per < N ? r0 + rows_per : N;
    double ax = 0.0, ay = 0.0;
    if (c < M)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
            float2 v = f(r, c);
            ax += (double)v.x;
            ay += (double)v.y;
        }
    sx[threadIdx.y][threadIdx.x] = ax;
    sy[threadIdx.y][threadIdx.x] = ay;
    __syncthreads();
    if (threadIdx.y == 0 && c < M) {
        double tx = 0.0, ty = 0.0;
        for (int k = 0; k < 8; k++) {
            tx += sx[k][threadIdx.x];
            ty += sy[k][threadIdx.x];
        }
        part[(int64_t)blockIdx.y * M + c] = tx;
        if (two) part[((int64_t)gridDim.y + blockIdx.y) * M + c] = ty;
    }
}

/* out[c] = beta out[c] + sum_p part[p][c]; out2 (when not NULL) likewise
   from the second half of part, always accumulated (LayerNorm's db).
   beta = 0 does not read out, so NaN there does not survive. */
static __global__ void k_colsum_finish(const double *part, int64_t P, int64_t M, float beta,
                                       float *out, float *out2) {
    CU_LOOP(c, M) {
        double s = 0.0, s2 = 0.0;
        for (int64_t p = 0; p < P; p++) s += part[p * M + c];
        out[c] = (float)(beta == 0.0f ? s : (double)beta * (double)out[c] + s);
        if (out2) {
            for (int64_t p = 0; p < P; p++) s2 += part[(P + p) * M + c];
            out2[c] = (float)((double)out2[c] + s2);
        }
    }
}

/* Runs both stages; returns 0 (sticky error set) when scratch failed. */
template <class F>
int cu_colsum(F f, int64_t N, int64_t M, float beta, float *out, float *out2) {
    if (M <= 0) return 1;
    const int64_t col_blocks = (M + 31) / 32;
    const int64_t target = (int64_t)(g_cu.prop.multiProcessorCount > 0 ? g_cu.prop.multiProcessorCount : 80) * 8;
    int64_t chunks = (target + col_blocks - 1) / col_blocks;
    int64_t rows_per = N > 0 ? (N + chunks - 1) / chunks : 1;
    if (rows_per < 64) rows_per = 64;
    chunks = N > 0 ? (N + rows_per - 1) / rows_per : 1;
    if (chunks > 65535) { /* grid.y limit */
        chunks = 65535;
        rows_per = (N + chunks - 1) / chunks;
        chunks = (N + rows_per - 1) / rows_per;
    }
    double *part = (double *)cu_scratch(CU_SLOT_REDUCE, (size_t)(2 * chunks * M) * sizeof(double));
    if (!part) return 0;
    dim3 grid((unsigned)col_blocks, (unsigned)chunks), block(32, 8);
    CU_LAUNCH(grid, block, 0, k_colsum_part<F>)(f, N, M, rows_per, part, out2 != NULL);
    if (!CU_LAUNCHED("k_colsum_part")) return 0;
    CU_LAUNCH(cu_grid(M), CU_THREADS, 0, k_colsum_finish)(part, chunks, M, beta, out, out2);
    return CU_LAUNCHED("k_colsum_finish");
}

#endif
