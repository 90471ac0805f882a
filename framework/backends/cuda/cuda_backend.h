/*
 * backends/cuda/cuda_backend.h — knobs of the CUDA backend beyond the
 * fl_backend table, for tests and tools. Exists only in builds with
 * FFNLAB_HAVE_CUDA; fl_backend_cuda() itself is declared in backend.h.
 *
 * GEMM precision ("math"): fp32 storage and accumulation always; the mode
 * says what cuBLAS may round the inputs to on the tensor cores:
 *   "tf32" (default)  TF32 (10-bit mantissa): about 1e-3 relative per GEMM
 *   "fp32"            no rounding: plain FP32 FMA units (about 1/8 the speed)
 *   "bf16"            bf16 (8-bit mantissa) inputs: about 1e-2 relative
 * The environment variable FFNLAB_CUDA_MATH sets it when the backend starts.
 */
#ifndef FFNLAB_CUDA_BACKEND_H
#define FFNLAB_CUDA_BACKEND_H

#include <stddef.h>

#include "ffnlab/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fl_backend.gemm_align: cuBLAS's tensor-core kernels read rows in 16-byte
   vectors, so a row of an odd length (GPT-2's 50,257 logits) leaves them
   for slower ones; 64 elements keeps bf16 and f32 rows aligned and whole
   tiles (llm.c pads that vocabulary to 50,304 the same way). */
#define FL_CUDA_GEMM_ALIGN 64

/* Sets the GEMM precision: "tf32", "fp32" or "bf16". */
fl_status fl_cuda_set_math(const char *mode, fl_error *err);
/* The current mode's name. */
const char *fl_cuda_math(void);

/* 1: MoE grouped GEMMs loop over the groups (one cuBLAS call each) instead of
   one cublasGemmGroupedBatchedEx call; for comparing the two paths. */
void fl_cuda_set_grouped_loop(int on);

#ifdef __cplusplus
}
#endif
#endif
