/*
 * backends/cuda/cu_bf16.cuh — private to the CUDA backend: bf16 as raw
 * uint16_t bits, rounded exactly as the CPU backend rounds (cpu_bf16 in
 * backends/cpu/cpu.h: nearest even, NaN kept quiet with its sign), so a
 * bf16 output or GEMM input holds the same bits on both backends.
 *
 * Used by the ops that may write bf16 (layer norm, activation, mul, fill)
 * and by the GEMMs' input conversions (cu_gemm.cu).
 */
#ifndef FFNLAB_CU_BF16_CUH
#define FFNLAB_CU_BF16_CUH

#include <stdint.h>
#include <string.h>

/* f32 -> bf16 bits, round to nearest even; NaN stays NaN, inf stays inf */
__host__ __device__ __forceinline__ uint16_t cu_bf16(float f) {
#ifdef __CUDA_ARCH__
    const uint32_t u = __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
#endif
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* bf16 bits -> f32 (exact) */
__device__ __forceinline__ float cu_bf16_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

/* Stores an f32 result into an f32 or a bf16 (rounded) output; kernels
   templated on the output type call it. */
__device__ __forceinline__ void cu_store(float *p, float v) { *p = v; }
__device__ __forceinline__ void cu_store(uint16_t *p, float v) { *p = cu_bf16(v); }

#endif
