/*
 * backends/cuda/cu_scatter.cu — deterministic scatter-add of rows:
 *
 *     dst[idx[e], :] += w[e] * src[e / k, :]      for e < n
 *
 * the one primitive behind scatter_add_rows, the embedding-bag gradient and
 * the token-embedding gradient. Atomics would make the sums depend on thread
 * scheduling (different bits every run, so no bit-identical resume), so:
 *
 *   1. keys[e] = idx[e] (invalid → R, which sorts last), vals[e] = e;
 *   2. CUB's radix sort orders (key, e) by key, stably: each destination row's
 *      entries end up together, in their original order;
 *   3. a warp per sorted position: the first position of each row's run adds
 *      the run's rows into dst in order, 128 columns at a time (4 per lane).
 *
 * The sum order per destination is the CPU's (e ascending), so results match
 * it up to FMA rounding. Cost: a radix sort of n keys (a few microseconds for
 * a batch of tokens) and one pass over the source rows.
 */
#include "cu_ops.h"

#ifndef FFNLAB_CUDA_EMULATE /* the emulation has its own sort */
#include <cub/device/device_radix_sort.cuh>
#endif

static __global__ void k_scatter_keys(const int32_t *idx, int64_t n, int64_t R, uint32_t *keys, int32_t *vals,
                                      unsigned *flags, unsigned flag) {
    CU_LOOP(e, n) {
        const int32_t r = idx[e];
        if (r >= R) atomicOr(flags, flag);
        keys[e] = r >= 0 && r < R ? (uint32_t)r : (uint32_t)R;
        vals[e] = (int32_t)e;
    }
}

/* A warp per sorted position i; only the first position of a run works. */
static __global__ void k_scatter_runs(const uint32_t *keys, const int32_t *vals, int64_t n, const float *src,
                                      int64_t k, const float *w, float *dst, int64_t R, int64_t D) {
    const int64_t i = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (i >= n) return;
    const uint32_t r = keys[i];
    if ((int64_t)r >= R || (i > 0 && keys[i - 1] == r)) return;
    int64_t end = i + 1;
    while (end < n && keys[end] == r) end++;
    float *d = dst + (int64_t)r * D;
    for (int64_t c0 = 0; c0 < D; c0 += 128) {
        float acc[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int64_t c = c0 + u * 32 + lane;
            acc[u] = c < D ? d[c] : 0.0f;
        }
        for (int64_t j = i; j < end; j++) {
            const int32_t e = vals[j];
            const float we = w ? w[e] : 1.0f;
            const float *s = src + (e / k) * D;
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int64_t c = c0 + u * 32 + lane;
                if (c < D) acc[u] += we * s[c];
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int64_t c = c0 + u * 32 + lane;
            if (c < D) d[c] = acc[u];
        }
    }
}

void cu_scatter_add(const float *src, int64_t k, const int32_t *idx, const float *w, int64_t n, float *dst,
                    int64_t R, int64_t D, unsigned flag) {
    if (n <= 0 || D <= 0) return;
    if (n >= INT32_MAX || R >= (int64_t)UINT32_MAX) {
        cu_shape_error(__func__, "more than 2^31 entries or rows");
        return;
    }
    int end_bit = 1;
    while (end_bit < 32 && ((uint64_t)1 << end_bit) <= (uint64_t)R) end_bit++; /* keys go up to R */
    size_t temp = 0;
    if (!CU_OK(cub::DeviceRadixSort::SortPairs(nullptr, temp, (const uint32_t *)nullptr, (uint32_t *)nullptr,
                                               (const int32_t *)nullptr, (int32_t *)nullptr, (int)n, 0, end_bit,
                                               g_cu.stream)))
        return;
    /* one scratch block: keys in/out, vals in/out, CUB's temp */
    const size_t kv = ((size_t)n * 4 + 255) / 256 * 256;
    char *base = (char *)cu_scratch(CU_SLOT_SCATTER, 4 * kv + temp);
    if (!base) return;
    uint32_t *keys_in = (uint32_t *)base, *keys_out = (uint32_t *)(base + kv);
    int32_t *vals_in = (int32_t *)(base + 2 * kv), *vals_out = (int32_t *)(base + 3 * kv);
    void *tmp = base + 4 * kv;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_scatter_keys)(idx, n, R, keys_in, vals_in, g_cu.flags, flag);
    if (!CU_LAUNCHED("k_scatter_keys")) return;
    if (!CU_OK(cub::DeviceRadixSort::SortPairs(tmp, temp, keys_in, keys_out, vals_in, vals_out, (int)n, 0, end_bit,
                                               g_cu.stream)))
        return;
    CU_LAUNCH(cu_row_blocks(n, CU_THREADS / 32), CU_THREADS, 0, k_scatter_runs)(keys_out, vals_out, n, src, k,
                                                                                      w, dst, R, D);
    CU_LAUNCHED("k_scatter_runs");
}
