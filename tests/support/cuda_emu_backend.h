/*
 * tests/support/cuda_emu_backend.h — the CUDA backend's own kernels, run on
 * the CPU, standing in for a GPU in the GPU-vs-CPU suites on machines
 * without one (test_cuda_backend_emu, test_cuda_model_emu).
 *
 * It is the CPU backend with every op and model kernel replaced by the
 * CUDA backend's own code (framework/backends/cuda/cu_*.cu), compiled for
 * the CPU through tests/support/cuda_emu.h (a block's threads as fibers;
 * barriers, warp intrinsics and WMMA emulated; cuBLAS's GEMMs and CUB's
 * sort as reference loops); only alloc/free, describe and sync stay the
 * CPU's. What it cannot check: cuBLAS's and CUB's own code, timing, the
 * memory model between blocks.
 */
#ifndef FFNLAB_TEST_CUDA_EMU_BACKEND_H
#define FFNLAB_TEST_CUDA_EMU_BACKEND_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

const fl_backend *ts_cuda_emu_backend(void);
/* the emulated backend's math mode: "tf32" (the default), "fp32", "bf16" */
void ts_cuda_emu_set_math(const char *mode);

#ifdef __cplusplus
}
#endif

#endif
