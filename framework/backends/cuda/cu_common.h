/*
 * backends/cuda/cu_common.h — private to the CUDA backend: the one device's
 * state, error checking, scratch memory, host-array uploads, shape helpers
 * and the warp/block reductions the kernels share.
 *
 * Execution model. One GPU per process, one cuBLAS handle, and every kernel,
 * cuBLAS call and copy on the legacy default stream, so ops run in the order
 * the host issues them and a host copy (to_host, a returned loss or norm)
 * waits for everything before it. Ops never return errors (fl_ops has no
 * status); a failed CUDA or cuBLAS call is recorded once as the backend's
 * sticky error — "file:line: call: cudaErrorX: the API's message" — logged
 * at once, and reported by fl_backend.sync, which the host calls every step.
 *
 * Determinism. No float atomics: sums that several threads add into the
 * same element (scatter-add, embedding gradients, column sums) are ordered
 * (sorted by destination, or partial sums added in a fixed order), so the
 * same inputs give the same bits on every run of the same GPU model. cuBLAS
 * promises the same for one GPU model and toolkit version.
 *
 * Tensors are read as matrices by their last dimension, as on the CPU
 * (cu_rows / cu_cols). Shape checks log "cuda op <op>: shape check failed:
 * <cond>" and the op does nothing, like the CPU backend. Indices outside a
 * table (gather, scatter, embedding bag, embed, cross-entropy targets, row
 * lists) are treated as padding on the device and raise a flag bit that the
 * next sync() logs with the op's name.
 */
#ifndef FFNLAB_CU_COMMON_H
#define FFNLAB_CU_COMMON_H

#include <math.h>
#include <stdint.h>

#ifdef FFNLAB_CUDA_EMULATE
/* tests: the kernels on the CPU, launches and intrinsics emulated
   (tests/support/cuda_emu.h; see tests/support/cuda_emu_backend.cpp) */
#include "cuda_emu.h"
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
/* CU_LAUNCH(grid, threads, shared bytes, kernel)(args...): a launch on the
   backend's stream (a macro so that tests can run the kernels on the CPU) */
#define CU_LAUNCH(grid, threads, smem, ...) __VA_ARGS__<<<grid, threads, smem, g_cu.stream>>>
/* the block's dynamic shared memory, as bytes */
#define CU_DYNAMIC_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

extern "C" {
#include "backend.h"
#include "log.h"
}

/* ------------------------------------------------------------------ state */

/* Scratch buffers: one grow-only device allocation per slot; a function
   owns its slot for the duration of the op (ops never nest on one slot). */
enum {
    CU_SLOT_REDUCE = 0,   /* partial sums: column sums, sumsq, cross-entropy */
    CU_SLOT_SCATTER,      /* sorted keys/values and CUB temp of cu_scatter_add */
    CU_SLOT_ATTENTION,    /* dP / dS of one head in attention backward, the
                             flash backward's rowsum(dy * y), or decode
                             attention's scores and partial sums */
    CU_SLOT_BUCKET,       /* bucket sort tile counters */
    CU_SLOT_RESULT,       /* small results copied to the host */
    CU_SLOT_UPLOAD,       /* uploads larger than the ring */
    CU_SLOT_GEMM_A,       /* a GEMM input converted to the other's type */
    CU_SLOT_GEMM_B,
    CU_N_SLOTS
};

/* Bits of the device-side flag word: an op met an index outside its table. */
enum {
    CU_FLAG_GATHER = 1u << 0,
    CU_FLAG_SCATTER = 1u << 1,
    CU_FLAG_EMBAG = 1u << 2,
    CU_FLAG_EMBED = 1u << 3,
    CU_FLAG_TARGET = 1u << 4,
    CU_FLAG_BUCKET = 1u << 5,
    CU_FLAG_ROWS = 1u << 6
};

/* GEMM precision: fp32 inputs and outputs always; what the tensor cores may
   round the inputs to. */
enum { CU_MATH_TF32 = 0, CU_MATH_FP32 = 1, CU_MATH_BF16 = 2 };

typedef struct cu_state {
    int ready;                     /* 1 once fl_backend_cuda succeeded */
    int device;
    cudaDeviceProp prop;
    cublasHandle_t blas;
    cudaStream_t stream;           /* 0: the legacy default stream */
    int math;                      /* CU_MATH_* */
    cublasComputeType_t compute;   /* the cuBLAS compute type for it */
    int grouped_loop;              /* 1: MoE GEMMs loop over groups */
    int attention_gemm;            /* 1: no flash attention (FFNLAB_CUDA_ATTENTION=gemm) */
    unsigned *flags;               /* device word of CU_FLAG_* bits */
    void *scratch[CU_N_SLOTS];
    size_t scratch_cap[CU_N_SLOTS];
    char *ring_host, *ring_dev;    /* host-array uploads (see cu_upload) */
    size_t ring_cap, ring_pos;
    int sticky;                    /* a CUDA/cuBLAS call failed */
    fl_status sticky_code;
    char sticky_msg[FL_ERRMSG_LEN];
} cu_state;

extern cu_state g_cu;

/* ------------------------------------------------------------------ errors */

/* Each returns 1 when the call succeeded; otherwise records the sticky error
   (the first one only; later ones are counted in the log) and returns 0. */
int cu_ok_rt(cudaError_t e, const char *call, const char *file, int line);
int cu_ok_blas(cublasStatus_t s, const char *call, const char *file, int line);
#define CU_OK(call) cu_ok_rt((call), #call, __FILE__, __LINE__)
#define CUBLAS_OK(call) cu_ok_blas((call), #call, __FILE__, __LINE__)
/* After a kernel launch: catches bad launch configurations at once. */
#define CU_LAUNCHED(kernel) cu_ok_rt(cudaGetLastError(), kernel, __FILE__, __LINE__)

void cu_shape_error(const char *op, const char *cond);
#define CU_CHECK(cond, ...)                      \
    do {                                         \
        if (!(cond)) {                           \
            cu_shape_error(__func__, #cond);     \
            return __VA_ARGS__;                  \
        }                                        \
    } while (0)

/* ------------------------------------------------------------------ memory */

/* A device buffer of at least `bytes` for `slot`, valid until the next call
   for the same slot; NULL (sticky error set) when out of memory. */
void *cu_scratch(int slot, size_t bytes);

/* Copies `bytes` of host memory to the device and returns where: the copy is
   queued on the stream, so kernels queued after it see the data, and the
   caller may reuse src at once. Small copies go through a pinned ring
   (asynchronous), large ones through CU_SLOT_UPLOAD (synchronous). */
const void *cu_upload(const void *src, size_t bytes);

/* Device memory → host, synchronous (waits for the queued work). */
int cu_download(void *dst, const void *src, size_t bytes);

/* ------------------------------------------------------------------ shapes */

static inline int64_t cu_cols(const fl_tensor *t) { return t->ndim > 0 ? t->shape[t->ndim - 1] : 1; }
static inline int64_t cu_rows(const fl_tensor *t) {
    int64_t r = 1;
    for (int i = 0; i + 1 < t->ndim; i++) r *= t->shape[i];
    return r;
}
static inline float *cu_f32(const fl_tensor *t) { return (float *)t->data; }
static inline int32_t *cu_i32(const fl_tensor *t) { return (int32_t *)t->data; }

/* ------------------------------------------------------------------ launch */

#define CU_THREADS 256

/* Blocks for a grid-stride loop over n items: enough to fill the GPU a few
   times over, never more than needed. */
static inline unsigned cu_grid(int64_t n, int threads = CU_THREADS) {
    int64_t want = (n + threads - 1) / threads;
    int64_t cap = (int64_t)(g_cu.prop.multiProcessorCount > 0 ? g_cu.prop.multiProcessorCount : 80) * 16;
    if (want > cap) want = cap;
    return (unsigned)(want > 0 ? want : 1);
}

/* Blocks of `per_block` rows covering n rows. */
static inline unsigned cu_row_blocks(int64_t n, int per_block) {
    return (unsigned)((n + per_block - 1) / per_block);
}

#define CU_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* -------------------------------------------------------------- reductions */

__device__ __forceinline__ float cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double cu_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float cu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the whole block (blockDim.x a multiple of 32), returned to every
   thread. sm: 32 floats of shared memory; the leading barrier lets a block
   call this several times in a row with the same sm. */
__device__ __forceinline__ float cu_block_sum(float v, float *sm) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cu_warp_sum(v);
    __syncthreads();
    if (lane == 0) sm[wid] = v;
    __syncthreads();
    return cu_warp_sum(lane < nw ? sm[lane] : 0.0f);
}

__device__ __forceinline__ double cu_block_sum_d(double v, double *sm) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cu_warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sm[wid] = v;
    __syncthreads();
    return cu_warp_sum_d(lane < nw ? sm[lane] : 0.0);
}

__device__ __forceinline__ float cu_block_max(float v, float *sm) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cu_warp_max(v);
    __syncthreads();
    if (lane == 0) sm[wid] = v;
    __syncthreads();
    return cu_warp_max(lane < nw ? sm[lane] : -INFINITY);
}

/* Row kernels come in two shapes: TPR = 32 (a warp per row, 8 rows per block
   of 256: short rows) and TPR = 256 (the whole block per row: long rows).
   These pick the matching reduction; every thread of the row gets the result. */
template <int TPR> __device__ __forceinline__ float cu_row_sum(float v, float *sm) {
    if constexpr (TPR == 32) return cu_warp_sum(v);
    else return cu_block_sum(v, sm);
}
template <int TPR> __device__ __forceinline__ float cu_row_max(float v, float *sm) {
    if constexpr (TPR == 32) return cu_warp_max(v);
    else return cu_block_max(v, sm);
}
/* This thread's row and its lane within the row (t in [0, TPR)). */
template <int TPR> __device__ __forceinline__ int64_t cu_row_index(int *t) {
    if constexpr (TPR == 32) {
        *t = threadIdx.x & 31;
        return (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    } else {
        *t = threadIdx.x;
        return blockIdx.x;
    }
}
/* Rows up to this length get a warp each; longer rows a block. */
#define CU_WARP_ROW_MAX 2048

/* ------------------------------------------------------- shared functions */

/* Row-major, strided-batched GEMM through cuBLAS in the backend's precision:
   C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for b < batch, where op(A) is
   [M,K] (A stored [M,K] with row stride lda, or [K,M] when ta), op(B) is
   [K,N], C is [M,N] with row stride ldc, and sA, sB, sC are the element
   strides between batch matrices. K = 0 or alpha = 0 scales C by beta
   (beta = 0: C is not read). cu_gemm.cu. */
void cu_gemm_rm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta,
                float *C, int64_t ldc, int64_t sC, int64_t batch);

/* dst[idx[e],:] += w[e] * src[e / k,:] for e < n (w NULL: 1); rows outside
   [0, R) are skipped (>= R raises `flag`). Deterministic: each destination
   row adds its entries in their original order. cu_scatter.cu. */
void cu_scatter_add(const float *src, int64_t k, const int32_t *idx, const float *w, int64_t n,
                    float *dst, int64_t R, int64_t D, unsigned flag);

/* out[c] (+)= sum over rows r < N of f(r, c).x for c < M (and out2 with .y):
   out = beta * out + sum; beta = 0 does not read out. Partial sums in double
   over fixed row chunks, added in order (deterministic). cu_colsum.cuh holds
   the template; these are its entries for plain row sums, of all rows or
   per group of rows (off: host, G+1, and d_off its copy on the device;
   out[G,M]). cu_reduce.cu. */
void cu_sum_rows_raw(const float *x, int64_t N, int64_t M, float beta, float *out);
void cu_sum_rows_grouped_raw(const float *x, const int64_t *off, const int64_t *d_off, int G, int64_t N, int64_t M,
                             float beta, float *out);

#endif
