/*
 * backends/cpu/cpu_gemm_bf16.h — the CPU backend's GEMM precision mode and
 * its bf16 product (cpu_gemm_bf16.c), used by cpu_gemm.c.
 *
 * "fp32" (default): oneDNN sgemm. "bf16": both inputs rounded to bf16
 * (round to nearest even), products accumulated and written in f32: about
 * 1e-2 relative per GEMM, like the CUDA backend's bf16 math. Natively on
 * oneDNN's bf16 matmul where the CPU has one (AMX, AVX-512), else the same
 * rounded inputs multiplied by sgemm ("bf16 inputs, fp32 arithmetic");
 * FFNLAB_CPU_BF16=auto|native|emulated picks the path, read when the mode
 * is set. The mode is process-wide; it is set once before work starts
 * (fl_cpu_set_precision in backend.h), not while ops run.
 *
 * Either input may already be bf16 (an activation stored in bf16, see
 * fl_host.act_dtype): the bf16 mode uses it as it is, the fp32 mode widens
 * it to f32 (exact) and runs sgemm.
 */
#ifndef FFNLAB_CPU_GEMM_BF16_H
#define FFNLAB_CPU_GEMM_BF16_H

#include <stdint.h>

/* One input of a product: row-major values with row stride ld (elements),
   FL_F32 or FL_BF16. */
typedef struct cpu_operand {
    const void *p;
    int64_t ld;
    int32_t dtype;
} cpu_operand;

/* 1 when the gemm ops run in bf16. */
int cpu_gemm_is_bf16(void);

/* C[M,N] = alpha op(A) op(B) + beta C with bf16 A and B (f32 inputs
   rounded, bf16 ones as they are), f32 accumulation; the arguments of
   cpu_sgemm (row-major; op(A) [M,K] from A [M,K] or, transA, [K,M]).
   Safe to call from several threads at once (each uses its own buffers
   and primitives). */
void cpu_bf16gemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, cpu_operand A,
                  cpu_operand B, float beta, float *C, int64_t ldc);

/* The same product in fp32: bf16 inputs widened to f32 (exact) in the
   thread's buffers, then cpu_sgemm. */
void cpu_sgemm_widened(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, cpu_operand A,
                       cpu_operand B, float beta, float *C, int64_t ldc);

/* 1 when the bf16 mode runs oneDNN's bf16 matmul, 0 on the emulated path. */
int cpu_bf16_is_native(void);

/* What the bf16 mode runs on this CPU: "native bf16, f32 accumulate
   (matmul brg:avx512_core_amx)" (the implementation oneDNN picks for a
   model-sized product) or "bf16 inputs, fp32 arithmetic (sgemm)". */
const char *cpu_bf16_impl(void);

#endif
