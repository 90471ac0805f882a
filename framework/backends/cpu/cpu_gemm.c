/*
 * backends/cpu/cpu_gemm.c — every matrix multiply of the CPU backend: plain,
 * batched, grouped (MoE experts) and the grouped weight gradient, all on
 * oneDNN's row-major dnnl_sgemm (measured fastest fp32 path here, see
 * MEASUREMENTS.md) — except the kinds of product other libraries run
 * faster on AVX2 CPUs, or oneDNN itself when transposed on AVX-512 ones
 * (cpu_blas.c) — or in the bf16 precision mode on oneDNN's
 * bf16 matmul (cpu_gemm_bf16.c). Attention's products (cpu_attention.c) call cpu_sgemm
 * directly and stay fp32 in either mode.
 *
 * Inputs (A, B, W, dY) are f32 or bf16, each on its own (ffnlab/host.h);
 * C is f32. Only a bf16 input in the fp32 mode takes a detour: it is
 * widened to f32 first (cpu_sgemm_widened). All-f32 products in the fp32
 * mode are plain sgemm, as before bf16 inputs existed.
 *
 * Threading: one large product uses oneDNN's own OpenMP threads. Many small
 * products (batches, expert groups with few rows) run one per thread instead,
 * because a small sgemm cannot keep all threads busy; oneDNN notices it is
 * inside a parallel region and stays on the calling thread.
 */
#include "cpu.h"
#include "cpu_gemm_bf16.h"
#include "row_groups.h" /* the groups' offsets, checked as CUDA checks them */

#include <omp.h>
#include <stdlib.h>
#include <oneapi/dnnl/dnnl.h>

/* Below this many FLOPs per product, products go one per thread. */
#define SMALL_GEMM_FLOPS (16.0 * 1024 * 1024)

/* C[M,N] *= beta (beta = 0 overwrites, so NaN in C does not survive) */
static void scale_matrix(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
}

void cpu_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        /* oneDNN rejects K = 0 (lda would be 0); the product is zero */
        scale_matrix(M, N, beta, C, ldc);
        return;
    }
    if (cpu_blas_sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return; /* see cpu_blas.c */
    dnnl_status_t st = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda,
                                  B, ldb, beta, C, ldc);
    if (st != dnnl_success) cpu_shape_error("dnnl_sgemm", "dnnl_sgemm returned an error");
}

/* One product of the gemm ops, in the backend's precision mode. */
static void gemm_mode(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, cpu_operand A,
                      cpu_operand B, float beta, float *C, int64_t ldc) {
    if (cpu_gemm_is_bf16()) cpu_bf16gemm(transA, transB, M, N, K, alpha, A, B, beta, C, ldc);
    else if (A.dtype == FL_F32 && B.dtype == FL_F32)
        cpu_sgemm(transA, transB, M, N, K, alpha, A.p, A.ld, B.p, B.ld, beta, C, ldc);
    else cpu_sgemm_widened(transA, transB, M, N, K, alpha, A, B, beta, C, ldc);
}

/* A GEMM input's dtype: f32 or bf16. */
static int gemm_input(const fl_tensor *t) { return t->dtype == FL_F32 || t->dtype == FL_BF16; }

/* t's values from element `at` on, in rows of ld elements. */
static cpu_operand operand(const fl_tensor *t, int64_t at, int64_t ld) {
    return (cpu_operand){(const char *)t->data + (size_t)at * fl_dtype_size(t->dtype), ld, t->dtype};
}

/* The last two dimensions of t and how many such matrices it holds. */
static void mat_dims(const fl_tensor *t, int64_t *batch, int64_t *r, int64_t *c) {
    *c = cpu_cols(t);
    *r = t->ndim >= 2 ? t->shape[t->ndim - 2] : 1;
    *batch = 1;
    for (int i = 0; i + 2 < t->ndim; i++) *batch *= t->shape[i];
}

/* C[M,N] = alpha op(A) op(B) + beta C; A[M,K] or [K,M], B[K,N] or [N,K]. */
void cpu_gemm(int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B,
              float beta, fl_tensor *C) {
    const int64_t ar = cpu_rows(A), ac = cpu_cols(A), br = cpu_rows(B), bc = cpu_cols(B);
    const int64_t M = transA ? ac : ar, K = transA ? ar : ac;
    const int64_t N = transB ? br : bc, KB = transB ? bc : br;
    CPU_CHECK(gemm_input(A) && gemm_input(B) && C->dtype == FL_F32);
    CPU_CHECK(K == KB);
    CPU_CHECK(cpu_rows(C) == M && cpu_cols(C) == N);
    gemm_mode(transA, transB, M, N, K, alpha, operand(A, 0, ac), operand(B, 0, bc), beta, cpu_f32(C), N);
}

/* C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for every b. */
void cpu_gemm_batched(int transA, int transB, float alpha, const fl_tensor *A,
                      const fl_tensor *B, float beta, fl_tensor *C) {
    int64_t nb, ar, ac, nbb, br, bc, nbc, cr, cc;
    mat_dims(A, &nb, &ar, &ac);
    mat_dims(B, &nbb, &br, &bc);
    mat_dims(C, &nbc, &cr, &cc);
    const int64_t M = transA ? ac : ar, K = transA ? ar : ac;
    const int64_t N = transB ? br : bc, KB = transB ? bc : br;
    CPU_CHECK(gemm_input(A) && gemm_input(B) && C->dtype == FL_F32);
    CPU_CHECK(nb == nbb && nb == nbc && K == KB && cr == M && cc == N);
    float *c = cpu_f32(C);
    const int small = 2.0 * M * N * K < SMALL_GEMM_FLOPS && nb > 1;
    CPU_FOR_EACH(small, i, nb, {
        gemm_mode(transA, transB, M, N, K, alpha, operand(A, i * ar * ac, ac), operand(B, i * br * bc, bc), beta,
                  c + i * M * N, N);
    });
}

/* Whether to run the groups one per thread (each GEMM single-threaded)
   rather than one after another on all threads: when there are at least as
   many non-empty groups as threads, or they are too small to split. Measured
   on MoE shapes (d=256, 4 experts of ~1024 tokens): one expert per thread is
   1.8-2.4x faster than splitting each expert's GEMM over both cores. */
static int one_group_per_thread(const int64_t *off, int G, int64_t flops_per_row) {
    int busy = 0;
    for (int g = 0; g < G; g++) busy += off[g + 1] > off[g];
    if (busy < 2) return 0;
    if (busy >= omp_get_max_threads()) return 1;
    double avg = (double)(off[G] - off[0]) * (double)flops_per_row / busy;
    return avg < SMALL_GEMM_FLOPS;
}

/* Groups run one per thread go largest first (ties in index order): the
   long products start first and the short ones fill in after them, so no
   thread is left with a long one at the end (loads 600, 1496, 600, 1400 on
   2 threads: 2096 rows on the busier thread instead of 2600 in index order). */
typedef struct group_rows {
    int64_t rows;
    int g;
} group_rows;

static int more_rows_first(const void *a, const void *b) {
    const group_rows *x = a, *y = b;
    return x->rows != y->rows ? (x->rows < y->rows) - (x->rows > y->rows) : (x->g > y->g) - (x->g < y->g);
}

/* NULL without memory: then index order. */
static group_rows *largest_first(const int64_t *off, int G) {
    group_rows *order = malloc((size_t)G * sizeof *order);
    if (!order) return NULL;
    for (int g = 0; g < G; g++) order[g] = (group_rows){off[g + 1] - off[g], g};
    qsort(order, (size_t)G, sizeof *order, more_rows_first);
    return order;
}

/* How many of the largest groups (order, largest first) have over 5/4 of
   an even share of all rows per thread: one of those on one thread would
   outlast the other threads' work by more than a product split over all
   threads loses, so each runs on all threads first and the rest one per
   thread after. Measured on the EPYC (2 threads, d=256, d_expert=1023, a
   grouped product and its weight gradient): loads 3000, 400, 400, 296 and
   2700, 500, 500, 396 were 1.20-1.37x and 1.02-1.29x faster split; 2200,
   600, 700, 596 (1.07 shares) was slower split, so the margin. */
static int split_first(const group_rows *order, int G, int64_t rows) {
    const int64_t share = rows / omp_get_max_threads();
    int n = 0;
    while (n < G && order[n].rows * 4 > share * 5) n++;
    return n;
}

/* What one group's product needs (cpu_gemm_grouped and its weight gradient). */
typedef struct group_job {
    int transW;
    float alpha, beta;
    const fl_tensor *A, *B; /* A[N,K]; B: W[G,K,M] ([G,M,K] with transW) or dY[N,M] */
    const int64_t *off;
    int64_t K, M, ldw;      /* ldw: a row of W as stored */
    float *C;               /* C[N,M] or dW[G,K,M] */
} group_job;

/* C[rows of g] = alpha A[rows of g] op(W[g]) + beta C[rows of g]; an empty group is skipped. */
static void group_product(const group_job *j, int g) {
    const int64_t r0 = j->off[g], n = j->off[g + 1] - r0;
    if (n <= 0) return;
    gemm_mode(0, j->transW, n, j->M, j->K, j->alpha, operand(j->A, r0 * j->K, j->K),
              operand(j->B, g * j->K * j->M, j->ldw), j->beta, j->C + r0 * j->M, j->M);
}

/* dW[g] = alpha A[rows of g]ᵀ dY[rows of g] + beta dW[g]; an empty group
   still gets dW[g] = beta dW[g] (its product is zero). */
static void group_wgrad(const group_job *j, int g) {
    const int64_t r0 = j->off[g], n = j->off[g + 1] - r0;
    gemm_mode(1, 0, j->K, j->M, n, j->alpha, operand(j->A, r0 * j->K, j->K), operand(j->B, r0 * j->M, j->M), j->beta,
              j->C + g * j->K * j->M, j->M);
}

/* Runs product(job, g) for every group g < G, on all threads each or one
   group per thread (one_group_per_thread); one per thread, the largest
   first, after any too large for one thread (split_first). */
static void for_each_group(const int64_t *off, int G, int64_t flops_per_row,
                           void (*product)(const group_job *, int), const group_job *job) {
    const int small = one_group_per_thread(off, G, flops_per_row);
    group_rows *order = small ? largest_first(off, G) : NULL;
    const int first = order ? split_first(order, G, off[G]) : 0;
    for (int j = 0; j < first; j++) product(job, order[j].g);
    CPU_FOR_EACH(small, j, G - first, { product(job, order ? order[first + j].g : (int)j); });
    free(order);
}

/* C[off[g]:off[g+1], :] = alpha A[off[g]:off[g+1], :] op(W[g]) + beta C[...];
   A[N,K], W[G,K,M] or [G,M,K] (transW), C[N,M]. Empty groups are skipped. */
void cpu_gemm_grouped(int transW, float alpha, const fl_tensor *A, const fl_tensor *W,
                      const int64_t *off, int G, float beta, fl_tensor *C) {
    int64_t nw, wr, wc;
    mat_dims(W, &nw, &wr, &wc);
    const int64_t N = cpu_rows(A), K = cpu_cols(A), M = transW ? wr : wc;
    CPU_CHECK(gemm_input(A) && gemm_input(W) && C->dtype == FL_F32);
    CPU_CHECK(G >= 0 && nw == G && (transW ? wc : wr) == K);
    CPU_CHECK(cpu_rows(C) == N && cpu_cols(C) == M);
    CPU_CHECK(fl_row_groups_ok(off, G, N));
    const group_job job = {transW, alpha, beta, A, W, off, K, M, wc, cpu_f32(C)};
    for_each_group(off, G, 2 * K * M, group_product, &job);
}

/* dW[g][K,M] = alpha A_gᵀ dY_g + beta dW[g]; A[N,K], dY[N,M], dW[G,K,M]. An
   empty group still gets dW[g] = beta dW[g] (its product is zero). */
void cpu_gemm_grouped_wgrad(float alpha, const fl_tensor *A, const fl_tensor *dY,
                            const int64_t *off, int G, float beta, fl_tensor *dW) {
    int64_t nw, wr, wc;
    mat_dims(dW, &nw, &wr, &wc);
    const int64_t N = cpu_rows(A), K = cpu_cols(A), M = cpu_cols(dY);
    CPU_CHECK(gemm_input(A) && gemm_input(dY) && dW->dtype == FL_F32);
    CPU_CHECK(G >= 0 && nw == G && wr == K && wc == M && cpu_rows(dY) == N);
    CPU_CHECK(fl_row_groups_ok(off, G, N));
    const group_job job = {0, alpha, beta, A, dY, off, K, M, M, cpu_f32(dW)};
    for_each_group(off, G, 2 * K * M, group_wgrad, &job);
}
