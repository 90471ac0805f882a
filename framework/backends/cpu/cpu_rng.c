/*
 * backends/cpu/cpu_rng.c — the counter-based RNG fills (normal, uniform) and
 * inverted dropout, from ffnlab/rng.h.
 *
 * A uniform fill is bit for bit what the CUDA kernel gives (round(u w) + lo,
 * written there with __fmul_rn/__fadd_rn, and checked by test_cuda_backend),
 * so this file is compiled without floating-point contraction
 * (-ffp-contract=off in framework/CMakeLists.txt): a fused u w + lo rounds
 * once and differs in the last bit. The rest of the backend contracts.
 */
#include "cpu.h"

#include <omp.h>

/* Element i gets counter offset + i, so a fill is independent of thread
   count and a sub-range fill with a matching offset reproduces a slice. */
void cpu_rng_normal(fl_tensor *x, uint64_t key, uint64_t offset, float mean, float std) {
    CPU_CHECK(x->dtype == FL_F32);
    const int64_t n = fl_numel(x);
    float *p = cpu_f32(x);
#pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) p[i] = fl_rng_normal(key, offset + (uint64_t)i) * std + mean;
}

void cpu_rng_uniform(fl_tensor *x, uint64_t key, uint64_t offset, float lo, float hi) {
    CPU_CHECK(x->dtype == FL_F32);
    const int64_t n = fl_numel(x);
    float *p = cpu_f32(x);
    const float w = hi - lo;
#pragma omp parallel for schedule(static) if (n > 4096)
    for (int64_t i = 0; i < n; i++) p[i] = fl_rng_uniform(key, offset + (uint64_t)i) * w + lo;
}

/* Inverted dropout from the counter-based RNG: the mask is recomputed,
   never stored. */
void cpu_dropout(const fl_tensor *x, float p, uint64_t key, fl_tensor *y) {
    CPU_CHECK(x->dtype == FL_F32 && y->dtype == FL_F32 && fl_numel(x) == fl_numel(y));
    CPU_CHECK(p >= 0.0f && p < 1.0f);
    const int64_t n = fl_numel(x);
    const float keep = 1.0f / (1.0f - p), *px = cpu_f32(x);
    float *py = cpu_f32(y);
#pragma omp parallel for simd schedule(static) if (parallel : n > CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) py[i] = fl_rng_uniform(key, (uint64_t)i) < p ? 0.0f : px[i] * keep;
}
