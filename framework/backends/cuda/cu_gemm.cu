/*
 * backends/cuda/cu_gemm.cu — every matrix multiply of the CUDA backend, on
 * cuBLAS: plain, strided-batched, grouped (MoE experts) and the grouped
 * weight gradient, in the backend's precision mode (TF32 tensor cores by
 * default; see cuda_backend.h).
 *
 * Row-major to cuBLAS. cuBLAS is column-major; a row-major [M,N] matrix with
 * row stride ld is the column-major [N,M] matrix with the same ld. So the
 * row-major C = op(A) op(B) is computed as the column-major Cᵀ = op(B)ᵀ op(A)ᵀ:
 * cublas(opB, opA, N, M, K, B, ldb, A, lda, C, ldc) with the row strides as
 * leading dimensions — no transposes, no copies (cu_gemm_rm).
 *
 * Grouped GEMMs (experts' rows off[g]..off[g+1] of A times W[g]) are one
 * cublasGemmGroupedBatchedEx launch over the non-empty groups (CUDA 12.5+):
 * each expert is a group of one problem with its own row count. The device
 * pointer arrays it needs go up through the upload ring, without a stall.
 * If cuBLAS refuses the grouped call for this precision or GPU (or
 * FFNLAB_CUDA_GROUPED=loop), the groups run as one cuBLAS call each, in
 * order, on the same stream — the same results, more launches.
 *
 * Inputs of either dtype (ffnlab/host.h): A and B (W, dY) are f32 or bf16,
 * each on its own; C is f32. All-f32 products run as they always did (the
 * bf16 mode lets cuBLAS round f32 inputs, CUBLAS_COMPUTE_32F_FAST_16BF).
 * With a bf16 input, both go to cuBLAS in one type (inputs_of): in the
 * bf16 mode as bf16 (the f32 one rounded into a scratch buffer by a small
 * kernel, cu_bf16.cuh's rounding, as the CPU rounds) with f32 accumulation
 * (CUBLAS_COMPUTE_32F); in the tf32 and fp32 modes as f32 (the bf16 one
 * widened, exactly), computed in that mode, the converted input in the
 * scratch slot CU_SLOT_GEMM_A or _B (one stream: the next GEMM reuses it
 * only after this one has run).
 */
#include "cu_bf16.cuh"
#include "cu_ops.h"
#include "row_groups.h" /* the groups' offsets, checked as the CPU checks them */

#include <stdlib.h>

/* C[b][M,N] *= beta for every batch matrix (beta = 0 writes zeros). */
static __global__ void k_scale_matrix(float *C, int64_t M, int64_t N, int64_t ldc, int64_t sC, int64_t batch,
                                      float beta) {
    const int64_t per = M * N;
    CU_LOOP(i, per * batch) {
        const int64_t b = i / per, r = (i % per) / N, c = i % N;
        float *p = C + b * sC + r * ldc + c;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

static void scale_matrix(float *C, int64_t M, int64_t N, int64_t ldc, int64_t sC, int64_t batch, float beta) {
    if (beta == 1.0f || M <= 0 || N <= 0 || batch <= 0) return;
    CU_LAUNCH(cu_grid(M * N * batch), CU_THREADS, 0, k_scale_matrix)(C, M, N, ldc, sC, batch, beta);
    CU_LAUNCHED("k_scale_matrix");
}

static inline cublasOperation_t op(int t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

/* ------------------------------------------------------------ input types */

/* What a product's two inputs go to cuBLAS as: one type for both, and the
   compute type for it. */
typedef struct gemm_inputs {
    const void *a, *b;
    cudaDataType_t type;           /* CUDA_R_32F or CUDA_R_16BF */
    cublasComputeType_t compute;
} gemm_inputs;

static inline size_t type_size(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }

/* p advanced by n elements of type t */
static inline const void *at(const void *p, int64_t n, cudaDataType_t t) {
    return (const char *)p + (size_t)n * type_size(t);
}

static __global__ void k_round_bf16(const float *x, uint16_t *y, int64_t n) {
    CU_LOOP(i, n) y[i] = cu_bf16(x[i]);
}

static __global__ void k_widen_bf16(const uint16_t *x, float *y, int64_t n) {
    CU_LOOP(i, n) y[i] = cu_bf16_f32(x[i]);
}

/* t's values as `type` (its own memory, or converted into buffer which);
   NULL when out of memory. */
static const void *as_type(const fl_tensor *t, cudaDataType_t type, int which) {
    const int64_t n = fl_numel(t);
    if ((type == CUDA_R_16BF) == (t->dtype == FL_BF16) || n == 0) return t->data;
    void *d = cu_scratch(which ? CU_SLOT_GEMM_B : CU_SLOT_GEMM_A, (size_t)n * type_size(type));
    if (!d) return NULL;
    if (type == CUDA_R_16BF)
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_round_bf16)(cu_f32(t), (uint16_t *)d, n);
    else
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_widen_bf16)((const uint16_t *)t->data, (float *)d, n);
    return CU_LAUNCHED(type == CUDA_R_16BF ? "k_round_bf16" : "k_widen_bf16") ? d : NULL;
}

/* The inputs of a product of A and B (f32 or bf16 each): both f32 as they
   are in the backend's mode; with a bf16 one, both bf16 with f32 compute in
   the bf16 mode, else both f32 (bf16 widened) in the mode. 0 when out of
   memory (nothing to compute then; the sticky error says why). */
static int inputs_of(const fl_tensor *A, const fl_tensor *B, gemm_inputs *in) {
    const int any_bf16 = A->dtype == FL_BF16 || B->dtype == FL_BF16;
    const int bf16 = any_bf16 && g_cu.math == CU_MATH_BF16;
    in->type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    in->compute = bf16 ? CUBLAS_COMPUTE_32F : g_cu.compute;
    in->a = as_type(A, in->type, 0);
    in->b = as_type(B, in->type, 1);
    return in->a && in->b;
}

/* A GEMM input's dtype: f32 or bf16. */
static int gemm_input(const fl_tensor *t) { return t->dtype == FL_F32 || t->dtype == FL_BF16; }

/* ------------------------------------------------------------ products */

/* cu_gemm_rm with inputs of `type` computed as `compute`. */
static void gemm_rm_typed(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
                          int64_t sA, const void *B, int64_t ldb, int64_t sB, cudaDataType_t type,
                          cublasComputeType_t compute, float beta, float *C, int64_t ldc, int64_t sC,
                          int64_t batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0 || alpha == 0.0f) { /* the product is zero; cuBLAS rejects ld = 0 */
        scale_matrix(C, M, N, ldc, sC, batch, beta);
        return;
    }
    if (batch == 1)
        CUBLAS_OK(cublasGemmEx_64(g_cu.blas, op(tb), op(ta), N, M, K, &alpha, B, type, ldb, A, type, lda, &beta, C,
                                  CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_OK(cublasGemmStridedBatchedEx_64(g_cu.blas, op(tb), op(ta), N, M, K, &alpha, B, type, ldb, sB, A, type,
                                                lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch, compute,
                                                CUBLAS_GEMM_DEFAULT));
}

void cu_gemm_rm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc,
                int64_t sC, int64_t batch) {
    gemm_rm_typed(ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, CUDA_R_32F, g_cu.compute, beta, C, ldc, sC,
                  batch);
}

/* The last two dimensions of t and how many such matrices it holds. */
static void mat_dims(const fl_tensor *t, int64_t *batch, int64_t *r, int64_t *c) {
    *c = cu_cols(t);
    *r = t->ndim >= 2 ? t->shape[t->ndim - 2] : 1;
    *batch = 1;
    for (int i = 0; i + 2 < t->ndim; i++) *batch *= t->shape[i];
}

/* C[M,N] = alpha op(A) op(B) + beta C; A[M,K] or [K,M], B[K,N] or [N,K]. */
void cu_gemm(int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B, float beta,
             fl_tensor *C) {
    const int64_t ar = cu_rows(A), ac = cu_cols(A), br = cu_rows(B), bc = cu_cols(B);
    const int64_t M = transA ? ac : ar, K = transA ? ar : ac;
    const int64_t N = transB ? br : bc, KB = transB ? bc : br;
    CU_CHECK(gemm_input(A) && gemm_input(B) && C->dtype == FL_F32);
    CU_CHECK(K == KB);
    CU_CHECK(cu_rows(C) == M && cu_cols(C) == N);
    gemm_inputs in;
    if (!inputs_of(A, B, &in)) return;
    gemm_rm_typed(transA, transB, M, N, K, alpha, in.a, ac, 0, in.b, bc, 0, in.type, in.compute, beta, cu_f32(C), N,
                  0, 1);
}

/* C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for every b: one strided launch. */
void cu_gemm_batched(int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B, float beta,
                     fl_tensor *C) {
    int64_t nb, ar, ac, nbb, br, bc, nbc, cr, cc;
    mat_dims(A, &nb, &ar, &ac);
    mat_dims(B, &nbb, &br, &bc);
    mat_dims(C, &nbc, &cr, &cc);
    const int64_t M = transA ? ac : ar, K = transA ? ar : ac;
    const int64_t N = transB ? br : bc, KB = transB ? bc : br;
    CU_CHECK(gemm_input(A) && gemm_input(B) && C->dtype == FL_F32);
    CU_CHECK(nb == nbb && nb == nbc && K == KB && cr == M && cc == N);
    gemm_inputs in;
    if (!inputs_of(A, B, &in)) return;
    gemm_rm_typed(transA, transB, M, N, K, alpha, in.a, ac, ar * ac, in.b, bc, br * bc, in.type, in.compute, beta,
                  cu_f32(C), N, M * N, nb);
}

/* One problem of a grouped call, in cuBLAS's (column-major) terms; A and B
   of the call's input type. */
typedef struct problem {
    cublasOperation_t ta, tb;
    int m, n, k, lda, ldb, ldc;
    const void *A, *B;
    float *C;
} problem;

/* Runs the problems (inputs of in.type) as one grouped launch when
   possible, else one by one. */
static void run_problems(const problem *p, int cnt, const gemm_inputs *in, float alpha, float beta) {
    if (cnt <= 0) return;
#if CUBLAS_VERSION >= 120500
    /* cuBLAS said no once for this input type: do not ask again (bf16
       inputs with an f32 C may not be a grouped combination it has) */
    static int refused[2];
    const int bf16 = in->type == CUDA_R_16BF;
    if (cnt > 1 && !g_cu.grouped_loop && !refused[bf16]) {
        /* host arrays of per-group parameters, device arrays of pointers */
        size_t ni = (size_t)cnt;
        cublasOperation_t *ta = (cublasOperation_t *)malloc(2 * ni * sizeof *ta);
        int *dims = (int *)malloc(7 * ni * sizeof *dims);
        float *ab = (float *)malloc(2 * ni * sizeof *ab);
        const void **ptrs = (const void **)malloc(3 * ni * sizeof *ptrs);
        if (ta && dims && ab && ptrs) {
            int *m = dims, *n = dims + ni, *k = dims + 2 * ni, *lda = dims + 3 * ni, *ldb = dims + 4 * ni,
                *ldc = dims + 5 * ni, *gs = dims + 6 * ni;
            for (int i = 0; i < cnt; i++) {
                ta[i] = p[i].ta, ta[ni + i] = p[i].tb;
                m[i] = p[i].m, n[i] = p[i].n, k[i] = p[i].k;
                lda[i] = p[i].lda, ldb[i] = p[i].ldb, ldc[i] = p[i].ldc, gs[i] = 1;
                ab[i] = alpha, ab[ni + i] = beta;
                ptrs[i] = p[i].A, ptrs[ni + i] = p[i].B, ptrs[2 * ni + i] = p[i].C;
            }
            const void *const *dptr = (const void *const *)cu_upload(ptrs, 3 * ni * sizeof *ptrs);
            cublasStatus_t s = CUBLAS_STATUS_EXECUTION_FAILED;
            if (dptr)
                s = cublasGemmGroupedBatchedEx(g_cu.blas, ta, ta + ni, m, n, k, ab, dptr, in->type, lda, dptr + ni,
                                               in->type, ldb, ab + ni, (void *const *)(dptr + 2 * ni), CUDA_R_32F,
                                               ldc, cnt, gs, in->compute);
            free(ta), free(dims), free(ab), free(ptrs);
            if (s == CUBLAS_STATUS_SUCCESS) return;
            if (!dptr) return; /* sticky error already set */
            /* Refused (not supported for this precision or GPU, or any other
               status): the loop below is always right, and if the device
               itself is broken its calls will say so. */
            refused[bf16] = 1;
            fl_log(FL_LOG_WARN, "cuda: cublasGemmGroupedBatchedEx (%s inputs): %s (%s); such grouped GEMMs run as "
                                "one cuBLAS call per group from now on",
                   bf16 ? "bf16" : "f32", cublasGetStatusName(s), cublasGetStatusString(s));
        } else {
            free(ta), free(dims), free(ab), free(ptrs);
        }
    }
#endif
    /* one call per problem, in order, on the stream; the same arithmetic */
    for (int i = 0; i < cnt; i++)
        CUBLAS_OK(cublasGemmEx(g_cu.blas, p[i].ta, p[i].tb, p[i].m, p[i].n, p[i].k, &alpha, p[i].A, in->type,
                               p[i].lda, p[i].B, in->type, p[i].ldb, &beta, p[i].C, CUDA_R_32F, p[i].ldc,
                               in->compute, CUBLAS_GEMM_DEFAULT));
}

/* C[off[g]:off[g+1], :] = alpha A[off[g]:off[g+1], :] op(W[g]) + beta C[...];
   A[N,K], W[G,K,M] or [G,M,K] (transW), C[N,M]. Empty groups are skipped;
   rows past off[G] are not touched. */
void cu_gemm_grouped(int transW, float alpha, const fl_tensor *A, const fl_tensor *W, const int64_t *off, int G,
                     float beta, fl_tensor *C) {
    int64_t nw, wr, wc;
    mat_dims(W, &nw, &wr, &wc);
    const int64_t N = cu_rows(A), K = cu_cols(A), M = transW ? wr : wc;
    CU_CHECK(gemm_input(A) && gemm_input(W) && C->dtype == FL_F32);
    CU_CHECK(G >= 0 && nw == G && (transW ? wc : wr) == K);
    CU_CHECK(cu_rows(C) == N && cu_cols(C) == M);
    CU_CHECK(fl_row_groups_ok(off, G, N));
    CU_CHECK(N < INT32_MAX && K < INT32_MAX && M < INT32_MAX);
    if (M == 0) return;
    float *c = cu_f32(C);
    if (K == 0 || alpha == 0.0f) { /* zero product: scale the grouped rows */
        if (off[G] > 0) scale_matrix(c, off[G], M, M, 0, 1, beta);
        return;
    }
    gemm_inputs in;
    if (!inputs_of(A, W, &in)) return;
    problem *p = (problem *)malloc((size_t)(G > 0 ? G : 1) * sizeof *p);
    if (!p) {
        cu_shape_error(__func__, "out of host memory");
        return;
    }
    int cnt = 0;
    for (int g = 0; g < G; g++) {
        const int64_t r0 = off[g], n = off[g + 1] - off[g];
        if (n <= 0) continue;
        /* row-major C_g[n,M] = A_g[n,K] op(W_g): cublas(opW, N, M, n, K, W_g, A_g, C_g) */
        p[cnt++] = (problem){op(transW), CUBLAS_OP_N, (int)M, (int)n, (int)K, (int)wc, (int)K, (int)M,
                             at(in.b, (int64_t)g * K * M, in.type), at(in.a, r0 * K, in.type), c + r0 * M};
    }
    run_problems(p, cnt, &in, alpha, beta);
    free(p);
}

/* dW[g][K,M] = alpha A_gᵀ dY_g + beta dW[g]; A[N,K], dY[N,M], dW[G,K,M]. An
   empty group still gets dW[g] = beta dW[g]. */
void cu_gemm_grouped_wgrad(float alpha, const fl_tensor *A, const fl_tensor *dY, const int64_t *off, int G,
                           float beta, fl_tensor *dW) {
    int64_t nw, wr, wc;
    mat_dims(dW, &nw, &wr, &wc);
    const int64_t N = cu_rows(A), K = cu_cols(A), M = cu_cols(dY);
    CU_CHECK(gemm_input(A) && gemm_input(dY) && dW->dtype == FL_F32);
    CU_CHECK(G >= 0 && nw == G && wr == K && wc == M && cu_rows(dY) == N);
    CU_CHECK(fl_row_groups_ok(off, G, N));
    CU_CHECK(N < INT32_MAX && K < INT32_MAX && M < INT32_MAX);
    if (K == 0 || M == 0) return;
    float *dw = cu_f32(dW);
    gemm_inputs in;
    if (!inputs_of(A, dY, &in)) return;
    problem *p = (problem *)malloc((size_t)(G > 0 ? G : 1) * sizeof *p);
    if (!p) {
        cu_shape_error(__func__, "out of host memory");
        return;
    }
    int cnt = 0;
    for (int g = 0; g < G; g++) {
        const int64_t r0 = off[g], n = off[g + 1] - off[g];
        float *dwg = dw + (int64_t)g * K * M;
        if (n <= 0 || alpha == 0.0f) {
            scale_matrix(dwg, K, M, M, 0, 1, beta);
            continue;
        }
        /* row-major dW_g[K,M] = A_gᵀ[K,n] dY_g[n,M]: cublas(N, T, M, K, n, dY_g, A_g, dW_g) */
        p[cnt++] = (problem){CUBLAS_OP_N, CUBLAS_OP_T, (int)M, (int)K, (int)n, (int)M, (int)K, (int)M,
                             at(in.b, r0 * M, in.type), at(in.a, r0 * K, in.type), dwg};
    }
    run_problems(p, cnt, &in, alpha, beta);
    free(p);
}
