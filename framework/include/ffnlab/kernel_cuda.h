/*
 * ffnlab/kernel_cuda.h — for a plugin's own CUDA kernels (its .cu files).
 *
 *     FL_CUDA_LAUNCH(host, grid, threads, smem, k_route)(args...);
 *     return fl_cuda_launched(host, "moe: k_route", err);
 *
 * FL_CUDA_LAUNCH queues the kernel on host->stream, after the host's ops
 * issued before it and before the ones issued after, so a plugin mixes its
 * kernels with host->ops without synchronising. fl_cuda_launched turns a
 * failed launch into the plugin's error (a bad configuration shows at once;
 * a fault while running is reported by the host at its next sync, with the
 * CUDA error's text). FL_CUDA_LOOP is a grid-stride loop, so any grid
 * covers any n. Memory: tensors from host->tensor_ensure are device memory;
 * host arrays need host->ops->from_host into a tensor first.
 *
 * Built with FFNLAB_CUDA_EMULATE (ffnlab's own tests), the same source runs
 * on the CPU through tests/support/cuda_emu.h (a block's threads as fibers),
 * which is how a plugin's kernels are tested on a machine without a GPU: use
 * the macros below rather than <<<...>>> and __shared__ arrays of dynamic
 * size, and no library calls the emulator lacks.
 *
 * This header is part of the public SDK (C++/CUDA only).
 */
#ifndef FFNLAB_KERNEL_CUDA_H
#define FFNLAB_KERNEL_CUDA_H

#include <stdint.h>

#ifdef FFNLAB_CUDA_EMULATE
#include "cuda_emu.h"
#define FL_CUDA_LAUNCH(host, grid, threads, smem, ...) CU_LAUNCH(grid, threads, smem, __VA_ARGS__)
#else
#include <cuda_runtime.h>
#define FL_CUDA_LAUNCH(host, grid, threads, smem, ...) \
    __VA_ARGS__<<<grid, threads, smem, (cudaStream_t)(host)->stream>>>
#endif

extern "C" {
#include "ffnlab/host.h"
}

/* Threads per block the helpers assume (a multiple of the warp size). */
#define FL_CUDA_THREADS 256

/* for (i = this thread's first index; i < n; i += the grid's threads) */
#define FL_CUDA_LOOP(i, n)                                                              \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n); \
         i += (int64_t)blockDim.x * gridDim.x)

/* Blocks of FL_CUDA_THREADS for n items: enough to fill a GPU, no more (the
   grid-stride loops cover the rest). */
static inline unsigned fl_cuda_blocks(int64_t n) {
    const int64_t b = (n + FL_CUDA_THREADS - 1) / FL_CUDA_THREADS;
    return (unsigned)(b < 1 ? 1 : b > 4096 ? 4096 : b);
}

/* Blocks of `per_block` rows covering n rows (a warp per row: per_block =
   FL_CUDA_THREADS / 32). */
static inline unsigned fl_cuda_row_blocks(int64_t n, int per_block) {
    const int64_t b = (n + per_block - 1) / per_block;
    return (unsigned)(b < 1 ? 1 : b);
}

/* The sum of v over the 32 lanes of a warp, on every lane (a fixed order:
   the same bits on every run). */
__device__ __forceinline__ float fl_cuda_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* FL_OK, or the last launch's error as the plugin's message ("what: the
   CUDA error's name and text"). */
static inline fl_status fl_cuda_launched(const fl_host *host, const char *what, fl_error *err) {
#ifdef FFNLAB_CUDA_EMULATE
    (void)host, (void)what, (void)err;
    return FL_OK;
#else
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return FL_OK;
    return host->error(err, FL_EINTERNAL, "%s: launch failed: %s: %s", what, cudaGetErrorName(e), cudaGetErrorString(e));
#endif
}

#endif
