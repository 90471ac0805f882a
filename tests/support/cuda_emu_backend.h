/*
 * tests/support/cuda_emu_backend.h — the CUDA backend's own kernels, run on
 * the CPU, standing in for a GPU in the GPU-vs-CPU suites on machines
 * without one (test_cuda_backend_emu, test_cuda_model_emu).
 *
 * It is the CPU backend with these entries replaced by the CUDA backend's
 * code, compiled for the CPU through tests/support/cuda_emu.h (a block's
 * threads as fibers, barriers, warp intrinsics and WMMA emulated): attention
 * (the flash kernels, or the cuBLAS path's softmax kernels around CPU
 * products), sum_rows and row_dot, the MoE routing ops, the CNT block
 * selection ops, the PKM product-key top-k and the batch/group norms. What
 * it cannot check: cuBLAS, timing, the memory model between blocks.
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
