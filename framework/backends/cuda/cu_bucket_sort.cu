/*
 * backends/cuda/cu_bucket_sort.cu — the stable bucket sort that groups
 * tokens by expert: keys[N] in [0, G) → perm[N] (the rows of bucket 0, then
 * bucket 1, ..., each in original order) and the host array off[G+1].
 *
 * The offsets must reach the host anyway (the grouped GEMMs take host
 * offsets), so the scan runs there on per-tile counts:
 *   1. count: keys in tiles of TILE; counts[tile][g] by integer atomics
 *      (order-free, so exact);
 *   2. host: off[g] and each tile's start in each bucket,
 *      base[tile][g] = off[g] + counts of earlier tiles in bucket g;
 *   3. place: one warp per tile walks its keys 32 at a time in order; lanes
 *      with the same key find each other with __match_any_sync, take their
 *      rank among them, and the lowest of them advances the tile's counter:
 *      positions follow the original order, so the sort is stable.
 * Keys < 0 are left out (off[G] < N) and perm[off[G]..N) is -1; keys >= G
 * are left out too and flagged (the CPU reports them).
 */
#include "cu_ops.h"

#include <stdlib.h>

#define TILE 1024

static __global__ void k_bucket_count(const int32_t *keys, int64_t N, int G, int *counts, unsigned *flags) {
    CU_LOOP(i, N) {
        const int32_t k = keys[i];
        if (k >= G) atomicOr(flags, CU_FLAG_BUCKET);
        if (k >= 0 && k < G) atomicAdd(&counts[(i / TILE) * G + k], 1);
    }
}

/* a warp per tile; counter[tile][g] starts at base[tile][g] */
static __global__ void k_bucket_place(const int32_t *keys, int64_t N, int G, int64_t *counter, int32_t *perm,
                                      int64_t tiles) {
    const int64_t tile = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (tile >= tiles) return;
    int64_t *cnt = counter + tile * G;
    const int64_t i1 = (tile + 1) * TILE < N ? (tile + 1) * TILE : N;
    for (int64_t i0 = tile * TILE; i0 < i1; i0 += 32) {
        const int64_t i = i0 + lane;
        const int32_t k = i < i1 ? keys[i] : -1;
        const bool valid = k >= 0 && k < G;
        const unsigned same = __match_any_sync(0xffffffffu, valid ? k : -1);
        const int rank = __popc(same & ((1u << lane) - 1u));
        if (valid) perm[cnt[k] + rank] = (int32_t)i;
        __syncwarp();
        if (valid && rank == 0) cnt[k] += __popc(same);
        __syncwarp();
    }
}

static __global__ void k_fill_i32(int32_t *p, int64_t n, int32_t v) {
    CU_LOOP(i, n) p[i] = v;
}

void cu_bucket_sort(const fl_tensor *keys, int G, fl_tensor *perm, int64_t *off) {
    const int64_t N = fl_numel(keys);
    CU_CHECK(keys->dtype == FL_I32 && perm->dtype == FL_I32 && fl_numel(perm) >= N);
    CU_CHECK(G >= 0 && off != NULL);
    CU_CHECK(N < INT32_MAX);
    for (int g = 0; g <= G; g++) off[g] = 0;
    if (N == 0) return;
    const int32_t *k = cu_i32(keys);
    int32_t *p = cu_i32(perm);
    const int64_t tiles = (N + TILE - 1) / TILE;
    if (G == 0) { /* every key is out of range: nothing is placed */
        CU_LAUNCH(cu_grid(N), CU_THREADS, 0, k_bucket_count)(k, N, 0, NULL, g_cu.flags);
        if (!CU_LAUNCHED("k_bucket_count")) return;
        CU_LAUNCH(cu_grid(N), CU_THREADS, 0, k_fill_i32)(p, N, -1);
        CU_LAUNCHED("k_fill_i32");
        return;
    }
    const size_t cells = (size_t)tiles * (size_t)G;
    /* [cells] int counts, then [cells] int64 counters */
    const size_t counts_bytes = (cells * sizeof(int) + 255) / 256 * 256;
    char *scratch = (char *)cu_scratch(CU_SLOT_BUCKET, counts_bytes + cells * sizeof(int64_t));
    int *host_counts = (int *)malloc(cells * sizeof(int));
    int64_t *host_base = (int64_t *)malloc(cells * sizeof(int64_t));
    if (!scratch || !host_counts || !host_base) {
        if (scratch) cu_shape_error(__func__, "out of host memory");
        free(host_counts), free(host_base);
        return;
    }
    int *counts = (int *)scratch;
    int64_t *counter = (int64_t *)(scratch + counts_bytes);
    int ok = CU_OK(cudaMemsetAsync(counts, 0, cells * sizeof(int), g_cu.stream));
    if (ok) {
        CU_LAUNCH(cu_grid(N), CU_THREADS, 0, k_bucket_count)(k, N, G, counts, g_cu.flags);
        ok = CU_LAUNCHED("k_bucket_count") && cu_download(host_counts, counts, cells * sizeof(int));
    }
    if (ok) {
        /* off[g+1] = off[g] + bucket g's size; base: each tile's start in g */
        for (int g = 0; g < G; g++) {
            int64_t run = off[g];
            for (int64_t t = 0; t < tiles; t++) {
                host_base[t * G + g] = run;
                run += host_counts[t * G + g];
            }
            off[g + 1] = run;
        }
        ok = CU_OK(cudaMemcpy(counter, host_base, cells * sizeof(int64_t), cudaMemcpyHostToDevice));
    }
    free(host_counts), free(host_base);
    if (!ok) {
        for (int g = 0; g <= G; g++) off[g] = 0;
        return;
    }
    CU_LAUNCH(cu_row_blocks(tiles, CU_THREADS / 32), CU_THREADS, 0, k_bucket_place)(k, N, G, counter, p, tiles);
    if (!CU_LAUNCHED("k_bucket_place")) return;
    if (off[G] < N) {
        CU_LAUNCH(cu_grid(N - off[G]), CU_THREADS, 0, k_fill_i32)(p + off[G], N - off[G], -1);
        CU_LAUNCHED("k_fill_i32");
    }
}
