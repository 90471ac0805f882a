/*
 * tests/support/cuda_emu.h — just enough of CUDA to run the backend's kernel
 * files on the CPU, for machines without a GPU. framework/backends/cuda/
 * cu_common.h includes it instead of the CUDA headers when
 * FFNLAB_CUDA_EMULATE is defined (tests/support/cuda_emu_backend.cpp), and
 * the kernels launch through CU_LAUNCH, which is <<<>>> on a GPU and a call
 * of emu::make_launch here.
 *
 * What it models:
 *   - a launch runs its blocks one after another; a block's threads are
 *     fibers on one OS thread, switched only at barriers, so a run is
 *     deterministic;
 *   - __syncthreads waits for every live thread of the block, __syncwarp,
 *     the shuffles and __match_any_sync for every live thread of the warp;
 *     a thread that reaches a different barrier than the rest (a deadlock
 *     on a GPU) aborts the test with a message. Between two __syncthreads
 *     each warp runs as far as it can before the next one starts (first to
 *     last, then last to first), so a read that needs a missing
 *     __syncthreads sees unwritten (NaN) shared memory;
 *   - dynamic shared memory is one buffer, filled with 0xff (NaN) before
 *     each block (the bytes the launch asks for); static __shared__ arrays
 *     are function statics;
 *   - WMMA fragments hold the whole 16x16 tile in every lane (the kernels
 *     never depend on the real register layout, so any layout is faithful);
 *     load and store are warp-collective as on the GPU (every lane reads
 *     before any lane of the warp goes on; a store waits for the warp),
 *     check the 256-bit alignment and ldm rules, and tf32 inputs lose their
 *     low 13 mantissa bits as on the hardware;
 *   - atomics are plain read-modify-writes (one fiber runs at a time);
 *   - __nv_bfloat16 is a 16-bit value with round-to-nearest-even.
 *   - CUB's radix sort of pairs is a stable sort by the same key bits;
 *   - cuBLAS's GEMMs (plain, strided-batched, grouped) are reference loops
 *     in double over the inputs as the compute type reads them (tf32:
 *     low 13 bits dropped; bf16 inputs as they are), so the backend's own
 *     GEMM code (row-major mapping, bf16 conversions, grouped problems) runs.
 * What it does not: timing, occupancy, bank conflicts, memory fences
 * between blocks (blocks never run at the same time here), cuBLAS's and
 * CUB's own code.
 */
#ifndef FFNLAB_CUDA_EMU_H
#define FFNLAB_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __align__(n)

/* ------------------------------------------------------------ the grid */

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

[[noreturn]] inline void fail(const char *what) {
    fprintf(stderr, "cuda_emu: %s\n", what);
    abort();
}

enum { RUN, WAIT_BLOCK, WAIT_WARP, DONE };

/* A fiber starts once through swapcontext (its own stack) and from then on
   switches with _setjmp/_longjmp, which (unlike swapcontext) make no system
   call; it serves block after block. glibc's fortified longjmp refuses to jump between stacks, so the
   emulation builds with -U_FORTIFY_SOURCE (tests/CMakeLists.txt). */
struct fiber {
    ucontext_t ctx;
    jmp_buf jb;
    int state, started;
    dim3 tid;
    char *stack;
};

enum { MAX_THREADS = 1024, STACK_BYTES = 256 * 1024, SMEM_BYTES = 256 * 1024 };

struct block_state {
    fiber f[MAX_THREADS];
    unsigned n, cur;
    ucontext_t sched;
    jmp_buf sched_jb;
    std::function<void()> body;
    double xchg[MAX_THREADS]; /* a lane's value in a warp exchange */
    dim3 block, dim, grid;
};

inline block_state &B() {
    static block_state b;
    return b;
}

inline void yield(int state) {
    block_state &b = B();
    b.f[b.cur].state = state;
    if (!_setjmp(b.f[b.cur].jb)) _longjmp(b.sched_jb, 1);
}

/* A fiber's life: run the block's body, report DONE, wait to be resumed for
   the next block (fibers are made once and reused: starting one costs a
   system call, switching does not). Never returns. */
inline void trampoline() {
    for (;;) {
        block_state &b = B();
        b.body();
        b.f[b.cur].state = DONE;
        if (!_setjmp(b.f[b.cur].jb)) _longjmp(b.sched_jb, 1);
    }
}

/* Runs fiber i until it waits at a barrier or ends. */
inline void resume(block_state &b, unsigned i) {
    b.cur = i;
    if (_setjmp(b.sched_jb)) return;
    if (b.f[i].started) _longjmp(b.f[i].jb, 1);
    b.f[i].started = 1;
    swapcontext(&b.sched, &b.f[i].ctx);
}

/* Runs warp w as far as it goes: its threads in lane order (reversed when
   `rev`), its warp barriers released as soon as all its live threads wait
   there, until they wait at __syncthreads or are done. So one warp runs
   ahead of the others, as on a GPU, and a read that needs a missing
   __syncthreads meets another warp's data not yet written. */
inline void run_warp(block_state &b, unsigned w, int rev) {
    const unsigned lo = w * 32, hi = lo + 32 < b.n ? lo + 32 : b.n;
    for (;;) {
        for (unsigned k = lo; k < hi; k++) {
            const unsigned i = rev ? hi - 1 - (k - lo) : k;
            if (b.f[i].state == RUN) resume(b, i);
        }
        unsigned live = 0, at_warp = 0;
        for (unsigned i = lo; i < hi; i++) live += b.f[i].state != DONE, at_warp += b.f[i].state == WAIT_WARP;
        if (!live || at_warp != live) return;
        for (unsigned i = lo; i < hi; i++) b.f[i].state = RUN;
    }
}

/* threads of a block of dim threads, x fastest (warps are runs of 32 of them) */
inline void run_block(dim3 dim, std::function<void()> body) {
    block_state &b = B();
    const unsigned n = dim.x * dim.y * dim.z;
    if (n > MAX_THREADS || n % 32) fail("block size must be a multiple of 32 up to 1024");
    b.n = n;
    b.body = std::move(body);
    for (unsigned i = 0; i < n; i++) {
        fiber &f = b.f[i];
        if (!f.stack) {
            if (!(f.stack = (char *)malloc(STACK_BYTES))) fail("out of memory for fiber stacks");
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack;
            f.ctx.uc_stack.ss_size = STACK_BYTES;
            f.ctx.uc_link = NULL;
            makecontext(&f.ctx, trampoline, 0);
            f.started = 0;
        }
        f.state = RUN;
        f.tid = dim3(i % dim.x, i / dim.x % dim.y, i / (dim.x * dim.y));
    }
    const unsigned warps = n / 32;
    for (unsigned pass = 0;; pass++) {
        /* between two __syncthreads: warps in turn, first to last on even
           passes, last to first (lanes reversed too) on odd ones */
        for (unsigned k = 0; k < warps; k++) run_warp(b, pass & 1 ? warps - 1 - k : k, pass & 1);
        unsigned live = 0, at_block = 0;
        for (unsigned i = 0; i < n; i++) live += b.f[i].state != DONE, at_block += b.f[i].state == WAIT_BLOCK;
        if (!live) return;
        if (at_block != live) fail("threads wait at different barriers (a GPU would hang)");
        for (unsigned i = 0; i < n; i++)
            if (b.f[i].state == WAIT_BLOCK) b.f[i].state = RUN;
    }
}

inline unsigned char *smem_buffer() {
    alignas(256) static unsigned char buf[SMEM_BYTES];
    return buf;
}

/* CU_LAUNCH(grid, threads, smem, kernel)(args...) */
template <class... P> struct launch {
    void (*kernel)(P...);
    dim3 grid, threads;
    size_t smem;
    void operator()(P... a) const { /* the kernel's own parameter types: NULL, narrowing as on a GPU */
        if (smem > SMEM_BYTES) fail("dynamic shared memory above the emulator's 256 KiB");
        block_state &b = B();
        b.grid = grid, b.dim = threads;
        for (unsigned z = 0; z < grid.z; z++)
            for (unsigned y = 0; y < grid.y; y++)
                for (unsigned x = 0; x < grid.x; x++) {
                    b.block = dim3(x, y, z);
                    memset(smem_buffer(), 0xff, smem); /* the dynamic shared memory asked for */
                    run_block(threads, [&] { kernel(a...); });
                }
    }
};

template <class... P> launch<P...> make_launch(dim3 grid, dim3 threads, size_t smem, void (*k)(P...)) {
    return launch<P...>{k, grid, threads, smem};
}

} // namespace emu

#define threadIdx (emu::B().f[emu::B().cur].tid)
#define blockIdx (emu::B().block)
#define blockDim (emu::B().dim)
#define gridDim (emu::B().grid)


inline void __syncthreads() { emu::yield(emu::WAIT_BLOCK); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    emu::yield(emu::WAIT_WARP);
}
/* ------------------------------------------------------------ bfloat16 */

inline float __uint_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

struct __nv_bfloat16 {
    uint16_t bits;
    operator float() const { return __uint_as_float((uint32_t)bits << 16); }
};

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    const uint32_t u = __float_as_uint(f);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) r.bits = (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    else r.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}

/* ---------------------------------------------------------------- WMMA */

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };

template <class T> struct storage { typedef T type; };
template <> struct storage<precision::tf32> { typedef float type; };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static constexpr int R = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int C = std::is_same<Use, matrix_a>::value ? K : N;
    static constexpr int num_elements = R * C;
    typename storage<T>::type x[R * C];
};

inline float __float_to_tf32(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
    return __uint_as_float(u);
}

/* what the tensor core reads of an input element (tf32: the low 13 bits
   are ignored) */
inline float tc_value(float f) { return __uint_as_float(__float_as_uint(f) & 0xffffe000u); }
inline float tc_value(__nv_bfloat16 b) { return (float)b; }

/* The warp-collective part of load/store: the whole warp meets here. */
inline void warp_meet() { emu::yield(emu::WAIT_WARP); }

inline void check_ptr(const void *p, unsigned ldm, size_t elem) {
    if ((uintptr_t)p % 32) emu::fail("wmma load/store: pointer not 256-bit aligned");
    if ((ldm * elem) % 16) emu::fail("wmma load/store: ldm not a multiple of 16 bytes");
}

template <class U, int M, int N, int K, class T, class F>
inline void fill_fragment(fragment<U, M, N, K, T, void> &f, F v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}

template <class U, int M, int N, int K, class T, class Layout, class E>
inline void load_matrix_sync(fragment<U, M, N, K, T, Layout> &f, const E *p, unsigned ldm) {
    check_ptr(p, ldm, sizeof(E));
    const bool col = std::is_same<Layout, col_major>::value;
    for (int r = 0; r < f.R; r++)
        for (int c = 0; c < f.C; c++) f.x[r * f.C + c] = col ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    warp_meet();
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l) {
    check_ptr(p, ldm, 4);
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) f.x[r * N + c] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
    warp_meet();
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l) {
    check_ptr(p, ldm, 4);
    warp_meet();
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) (l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) = f.x[r * N + c];
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; k++) s += tc_value(a.x[i * K + k]) * tc_value(b.x[k * N + j]);
            out[i * N + j] = s;
        }
    memcpy(d.x, out, sizeof out);
}

} // namespace wmma
} // namespace nvcuda

/* ------------------------------------------------ the runtime it calls */

#define __shared__ static /* one block at a time: a static is the block's */
#define CU_LAUNCH(grid, threads, smem, ...) emu::make_launch(dim3(grid), dim3(threads), smem, __VA_ARGS__)
#define CU_DYNAMIC_SMEM(name) unsigned char *name = emu::smem_buffer()

typedef int cudaError_t;
typedef int cublasStatus_t;
typedef void *cublasHandle_t;
typedef void *cudaStream_t;
typedef int cublasComputeType_t;
enum { cudaSuccess = 0, cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct cudaDeviceProp {
    char name[256];
    int multiProcessorCount, major, minor;
    size_t sharedMemPerBlockOptin, totalGlobalMem;
};
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
template <class K> inline cudaError_t cudaFuncSetAttribute(K, int, int) { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t = 0) {
    memset(p, v, n);
    return cudaSuccess;
}
/* "device" memory is host memory here: every copy is a memmove */
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    if (n) memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t = 0) {
    return cudaMemcpy(d, s, n, k);
}


struct float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }

inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : 2;
}
inline cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}

/* ------------------------------------------- warp intrinsics, atomics */

/* Every lane of the warp puts v in; each gets what f(lanes' values) says. */
template <class T, class F> inline T warp_exchange(T v, F f) {
    static_assert(sizeof(T) <= sizeof(double), "warp values up to 8 bytes");
    emu::block_state &b = emu::B();
    const unsigned me = b.cur;
    memcpy(&b.xchg[me], &v, sizeof v);
    emu::yield(emu::WAIT_WARP);
    T r = f(me);
    emu::yield(emu::WAIT_WARP);
    return r;
}
template <class T> inline T lane_value(unsigned lane) {
    T v;
    memcpy(&v, &emu::B().xchg[lane], sizeof v);
    return v;
}
template <class T> inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    return warp_exchange(v, [&](unsigned me) { return lane_value<T>(me ^ (unsigned)lane_mask); });
}
template <class T> inline T __shfl_sync(unsigned, T v, int src) {
    return warp_exchange(v, [&](unsigned me) { return lane_value<T>((me & ~31u) | ((unsigned)src & 31u)); });
}
/* the lanes of this warp (live ones) holding the same value */
template <class T> inline unsigned __match_any_sync(unsigned, T v) {
    return warp_exchange(v, [&](unsigned me) {
        emu::block_state &b = emu::B();
        const unsigned w0 = me & ~31u;
        unsigned m = 0;
        for (unsigned l = 0; l < 32 && w0 + l < b.n; l++)
            if (b.f[w0 + l].state != emu::DONE && lane_value<T>(w0 + l) == lane_value<T>(me)) m |= 1u << l;
        return m;
    });
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
/* rounded operations that the compiler may not fuse into an FMA */
inline float __fmul_rn(float a, float b) {
    volatile float r = a * b;
    return r;
}
inline float __fadd_rn(float a, float b) {
    volatile float r = a + b;
    return r;
}
/* one fiber runs at a time: every read-modify-write is atomic */
template <class T> inline T atomicAdd(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
inline unsigned atomicOr(unsigned *p, unsigned v) {
    unsigned old = *p;
    *p = old | v;
    return old;
}

/* ---------------------------------------------------------------- CUB */

namespace cub {
struct DeviceRadixSort {
    /* pairs sorted by key bits [begin_bit, end_bit), stably, as a radix sort */
    template <class K, class V>
    static cudaError_t SortPairs(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out, const V *vals_in,
                                 V *vals_out, int n, int begin_bit = 0, int end_bit = (int)sizeof(K) * 8,
                                 cudaStream_t = 0) {
        if (!temp) {
            temp_bytes = 1;
            return cudaSuccess;
        }
        const uint64_t mask = end_bit - begin_bit >= 64 ? ~0ull : (1ull << (end_bit - begin_bit)) - 1;
        std::vector<int> order((size_t)n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            return ((uint64_t)keys_in[a] >> begin_bit & mask) < ((uint64_t)keys_in[b] >> begin_bit & mask);
        });
        std::vector<K> k((size_t)n);
        std::vector<V> v((size_t)n);
        for (int i = 0; i < n; i++) k[(size_t)i] = keys_in[order[(size_t)i]], v[(size_t)i] = vals_in[order[(size_t)i]];
        std::copy(k.begin(), k.end(), keys_out);
        std::copy(v.begin(), v.end(), vals_out);
        return cudaSuccess;
    }
};
} // namespace cub

/* ------------------------------------------------------------- cuBLAS */

#define CUBLAS_VERSION 130000
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_EXECUTION_FAILED = 13 };
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum { CUBLAS_GEMM_DEFAULT = -1 };
inline const char *cublasGetStatusName(cublasStatus_t) { return "CUBLAS_STATUS_EXECUTION_FAILED"; }
inline const char *cublasGetStatusString(cublasStatus_t) { return "emulated"; }

namespace emu {
/* element i of a column-major input as the compute type reads it */
inline double blas_in(const void *p, cudaDataType_t t, int64_t i, int compute) {
    float v = t == CUDA_R_16BF ? (float)((const __nv_bfloat16 *)p)[i] : ((const float *)p)[i];
    if (t == CUDA_R_32F && compute == CUBLAS_COMPUTE_32F_FAST_TF32) v = nvcuda::wmma::tc_value(v);
    if (t == CUDA_R_32F && compute == CUBLAS_COMPUTE_32F_FAST_16BF) v = (float)__float2bfloat16_rn(v);
    return v;
}
/* op(X) of a column-major input as rows x cols doubles, row-major */
inline std::vector<double> blas_op(const void *X, cudaDataType_t t, int trans, int64_t rows, int64_t cols, int64_t ld,
                                   int compute) {
    std::vector<double> out((size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[(size_t)(r * cols + c)] = blas_in(X, t, trans ? c + r * ld : r + c * ld, compute);
    return out;
}
/* column-major C[m,n] = alpha op(A) op(B) + beta C (beta 0: C not read) */
inline void blas_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const void *A, cudaDataType_t at,
                      int64_t lda, const void *B, cudaDataType_t bt, int64_t ldb, float beta, float *C, int64_t ldc,
                      int compute) {
    const std::vector<double> a = blas_op(A, at, ta, m, k, lda, compute), bT = blas_op(B, bt, !tb, n, k, ldb, compute);
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            const double *ar = &a[(size_t)(i * k)], *br = &bT[(size_t)(j * k)];
            double s = 0;
            for (int64_t p = 0; p < k; p++) s += ar[p] * br[p];
            float *c = &C[i + j * ldc];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}
inline size_t blas_size(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }
} // namespace emu

inline cublasStatus_t cublasGemmStridedBatchedEx_64(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
                                                    int64_t m, int64_t n, int64_t k, const float *alpha, const void *A,
                                                    cudaDataType_t at, int64_t lda, int64_t sA, const void *B,
                                                    cudaDataType_t bt, int64_t ldb, int64_t sB, const float *beta,
                                                    void *C, cudaDataType_t, int64_t ldc, int64_t sC, int64_t batch,
                                                    cublasComputeType_t compute, int) {
    for (int64_t b = 0; b < batch; b++)
        emu::blas_gemm(ta, tb, m, n, k, *alpha, (const char *)A + b * sA * emu::blas_size(at), at, lda,
                       (const char *)B + b * sB * emu::blas_size(bt), bt, ldb, *beta, (float *)C + b * sC, ldc,
                       compute);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasGemmEx_64(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
                                      int64_t n, int64_t k, const float *alpha, const void *A, cudaDataType_t at,
                                      int64_t lda, const void *B, cudaDataType_t bt, int64_t ldb, const float *beta,
                                      void *C, cudaDataType_t ct, int64_t ldc, cublasComputeType_t compute, int algo) {
    return cublasGemmStridedBatchedEx_64(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0,
                                         1, compute, algo);
}
inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const float *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                                   cudaDataType_t bt, int ldb, const float *beta, void *C, cudaDataType_t ct, int ldc,
                                   cublasComputeType_t compute, int algo) {
    return cublasGemmEx_64(h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, compute, algo);
}
/* groups of one problem each, as the backend calls it */
inline cublasStatus_t cublasGemmGroupedBatchedEx(cublasHandle_t h, const cublasOperation_t *ta,
                                                 const cublasOperation_t *tb, const int *m, const int *n, const int *k,
                                                 const float *alpha, const void *const *A, cudaDataType_t at,
                                                 const int *lda, const void *const *B, cudaDataType_t bt,
                                                 const int *ldb, const float *beta, void *const *C, cudaDataType_t ct,
                                                 const int *ldc, int groups, const int *group_size,
                                                 cublasComputeType_t compute) {
    for (int g = 0; g < groups; g++) {
        if (group_size[g] != 1) return CUBLAS_STATUS_EXECUTION_FAILED;
        cublasGemmEx_64(h, ta[g], tb[g], m[g], n[g], k[g], &alpha[g], A[g], at, lda[g], B[g], bt, ldb[g], &beta[g],
                        C[g], ct, ldc[g], compute, CUBLAS_GEMM_DEFAULT);
    }
    return CUBLAS_STATUS_SUCCESS;
}

#endif
