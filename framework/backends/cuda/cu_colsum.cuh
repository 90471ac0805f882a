/*
 * backends/cuda/cu_colsum.cuh — deterministic column sums over rows, for
 * bias gradients (sum_rows, and one per expert: bias_activation_grouped's
 * backward) and LayerNorm's dg / db.
 *
 * out[c] = beta * out[c] + sum_{r<N} f(r, c) for c < M, where f returns a
 * float2 so one pass can produce two sums (.x into out, .y into out2).
 * Grouped: out[g,c] = beta * out[g,c] + the sum over group g's rows
 * off[g]..off[g+1] (backends/row_groups.h), all groups in the same two
 * launches.
 *
 * Stage 1 (k_colsum_part): a block of 32 x 8 threads owns 32 columns and a
 * chunk of `rows_per` rows of one group; each thread sums every 8th row of
 * the chunk in double, the 8 row-partials are added in a fixed order, and
 * the chunk's sum goes to part[group][chunk][c]. Stage 2 (k_colsum_finish)
 * adds each group's chunks in order. No atomics, so the result does not
 * depend on scheduling. Chunks are sized so about 8 blocks per
 * multiprocessor run in stage 1 (every group gets as many chunks as the
 * largest needs; the smaller groups' extra chunks sum nothing).
 */
#ifndef FFNLAB_CU_COLSUM_CUH
#define FFNLAB_CU_COLSUM_CUH

#include "cu_common.h"

/* The rows of stage-1 block y: chunk y % chunks of group y / chunks; off
   (device, G+1) NULL: one group, rows 0..N. */
typedef struct cu_colsum_rows {
    const int64_t *off;
    int64_t N, chunks, rows_per;
} cu_colsum_rows;

template <class F>
__global__ void k_colsum_part(F f, cu_colsum_rows rows, int64_t M, double *part, int two) {
    __shared__ double sx[8][33], sy[8][33];
    const int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    const int64_t g = (int64_t)blockIdx.y / rows.chunks, chunk = (int64_t)blockIdx.y % rows.chunks;
    const int64_t first = rows.off ? rows.off[g] : 0, end = rows.off ? rows.off[g + 1] : rows.N;
    const int64_t r0 = first + chunk * rows.rows_per;
    const int64_t r1 = r0 + rows.rows_per < end ? r0 + rows.rows_per : end;
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

/* out[g,c] = beta out[g,c] + sum_p part[g][p][c] for G groups of P chunks;
   out2 (when not NULL) likewise from the second half of part, always
   accumulated (LayerNorm's db). beta = 0 does not read out, so NaN there
   does not survive. */
static __global__ void k_colsum_finish(const double *part, int64_t G, int64_t P, int64_t M, float beta,
                                       float *out, float *out2) {
    CU_LOOP(i, G * M) {
        const int64_t g = i / M, c = i % M;
        const double *pg = part + g * P * M + c;
        double s = 0.0, s2 = 0.0;
        for (int64_t p = 0; p < P; p++) s += pg[p * M];
        out[i] = (float)(beta == 0.0f ? s : (double)beta * (double)out[i] + s);
        if (out2) {
            for (int64_t p = 0; p < P; p++) s2 += pg[(G * P + p) * M];
            out2[i] = (float)((double)out2[i] + s2);
        }
    }
}

/* Runs both stages over G groups of rows (off: host, G+1, for the chunk
   sizes; d_off: the same on the device, as the caller uploaded them; both
   NULL: one group of N rows); returns 0 (sticky error set) when scratch
   failed. */
template <class F>
int cu_colsum_grouped(F f, const int64_t *off, const int64_t *d_off, int G, int64_t N, int64_t M, float beta,
                      float *out, float *out2) {
    if (M <= 0 || G <= 0) return 1;
    CU_CHECK(G <= 65535, 0); /* a group's chunks in one column of blocks at least */
    int64_t most = off ? 0 : N; /* rows of the largest group */
    for (int g = 0; off && g < G; g++)
        if (off[g + 1] - off[g] > most) most = off[g + 1] - off[g];
    const int64_t col_blocks = (M + 31) / 32;
    const int64_t target = (int64_t)(g_cu.prop.multiProcessorCount > 0 ? g_cu.prop.multiProcessorCount : 80) * 8;
    int64_t chunks = (target + col_blocks * G - 1) / (col_blocks * G);
    int64_t rows_per = most > 0 ? (most + chunks - 1) / chunks : 1;
    if (rows_per < 64) rows_per = 64;
    chunks = most > 0 ? (most + rows_per - 1) / rows_per : 1;
    if (chunks * G > 65535) { /* grid.y limit */
        chunks = 65535 / G;
        rows_per = (most + chunks - 1) / chunks;
        chunks = most > 0 ? (most + rows_per - 1) / rows_per : 1;
    }
    double *part = (double *)cu_scratch(CU_SLOT_REDUCE, (size_t)(2 * G * chunks * M) * sizeof(double));
    if (!part) return 0;
    dim3 grid((unsigned)col_blocks, (unsigned)(G * chunks)), block(32, 8);
    CU_LAUNCH(grid, block, 0, k_colsum_part<F>)(f, cu_colsum_rows{d_off, N, chunks, rows_per}, M, part,
                                                out2 != NULL);
    if (!CU_LAUNCHED("k_colsum_part")) return 0;
    CU_LAUNCH(cu_grid(G * M), CU_THREADS, 0, k_colsum_finish)(part, G, chunks, M, beta, out, out2);
    return CU_LAUNCHED("k_colsum_finish");
}

/* One group of all N rows. */
template <class F>
int cu_colsum(F f, int64_t N, int64_t M, float beta, float *out, float *out2) {
    return cu_colsum_grouped(f, NULL, NULL, 1, N, M, beta, out, out2);
}

#endif
