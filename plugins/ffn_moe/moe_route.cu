/*
 * plugins/ffn_moe/moe_route.cu — the routing steps on a GPU (see
 * moe_route.h; shapes are checked by moe_route.c), giving what the CPU
 * gives: the same integers (keys, counts, indices) and the same gates; the
 * router gradient up to the order of one row's sum.
 *
 * moe_route's capacity rule is sequential — assignment a (row-major over
 * [N,k]) keeps its expert e iff fewer than cap earlier assignments chose e —
 * so it is computed as a rank: rank(a) = #{a' < a : topi[a'] = e}, the
 * exclusive prefix count of e:
 *   1. count: assignments in tiles of TILE; counts[tile][e] by integer
 *      atomics (order-free, so exact);
 *   2. scan: one thread per expert turns its column into each tile's start
 *      (an exclusive scan over tiles) and writes count[e], the total;
 *   3. place: one warp per tile walks its assignments 32 at a time in
 *      order; lanes with the same expert find each other with
 *      __match_any_sync and take their rank among them; the lowest of them
 *      advances the tile's counter. rank < cap keeps the assignment.
 *
 * moe_index inverts a permutation (disjoint writes), and the router
 * gradient is one warp per token: the chosen experts' terms are added by
 * lane 0 in j order (as the CPU does), then a warp sum for the softmax
 * backward. No float atomics anywhere. Every launch goes on host->stream.
 */
#include "ffnlab/kernel_cuda.h"

#include "moe_route.h"

#define TILE 1024

static float *f32(const fl_tensor *t) { return (float *)t->data; }
static int32_t *i32(const fl_tensor *t) { return (int32_t *)t->data; }

/* ---------------------------------------------------------------- route */

/* gates[n,:] = topv[n,:] / Σ topv[n,:] (renorm and that sum > 0), else topv;
   the CPU's operations in the CPU's order */
static __global__ void k_route_gates(const float *topv, int64_t N, int k, int renorm, float *gates) {
    FL_CUDA_LOOP(n, N) {
        const float *v = topv + n * k;
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += v[j];
        const float inv = renorm && s > 0.0f ? 1.0f / s : 1.0f;
        for (int j = 0; j < k; j++) gates[n * k + j] = __fmul_rn(v[j], inv);
    }
}

/* counts[tile][e] += 1 per assignment of e in the tile */
static __global__ void k_route_count(const int32_t *topi, int64_t NK, int E, int *counts) {
    FL_CUDA_LOOP(a, NK) {
        const int32_t e = topi[a];
        if (e >= 0 && e < E) atomicAdd(&counts[(a / TILE) * E + e], 1);
    }
}

/* per expert: counts[t][e] → assignments of e before tile t; count[e] = all */
static __global__ void k_route_scan(int *counts, int64_t tiles, int E, int32_t *count) {
    FL_CUDA_LOOP(e, E) {
        int run = 0;
        for (int64_t t = 0; t < tiles; t++) {
            const int c = counts[t * E + e];
            counts[t * E + e] = run;
            run += c;
        }
        count[e] = run;
    }
}

/* a warp per tile; base[tile][e] = the assignments of e before this tile,
   advanced as the warp walks its tile in order */
static __global__ void k_route_place(const int32_t *topi, int64_t NK, int E, int64_t cap, int *base, int64_t tiles,
                                     int32_t *keys) {
    const int64_t tile = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (tile >= tiles) return;
    int *cnt = base + tile * E;
    const int64_t a1 = (tile + 1) * TILE < NK ? (tile + 1) * TILE : NK;
    for (int64_t a0 = tile * TILE; a0 < a1; a0 += 32) {
        const int64_t a = a0 + lane;
        const int32_t e = a < a1 ? topi[a] : -1;
        const bool valid = e >= 0 && e < E;
        const unsigned same = __match_any_sync(0xffffffffu, valid ? e : -1);
        const int rank = __popc(same & ((1u << lane) - 1u));
        if (a < a1) keys[a] = valid && (cap < 0 || (int64_t)cnt[e] + rank < cap) ? e : -1;
        __syncwarp();
        if (valid && rank == 0) cnt[e] += __popc(same);
        __syncwarp();
    }
}

fl_status moe_route_cuda(const fl_host *h, const fl_tensor *topv, const fl_tensor *topi, int E, int renorm,
                         int64_t cap, fl_tensor *gates, fl_tensor *keys, fl_tensor *count, fl_tensor *scratch,
                         fl_error *err) {
    const int64_t k = topv->shape[topv->ndim - 1], NK = fl_numel(topv), N = k ? NK / k : 0;
    if (NK == 0) {
        h->ops->fill(count, 0.0f);
        return FL_OK;
    }
    const int64_t tiles = (NK + TILE - 1) / TILE, cells = tiles * E;
    fl_status st = h->tensor_ensure(h, scratch, FL_I32, 1, &cells, err);
    if (st) return st;
    h->ops->fill(scratch, 0.0f);
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(N), FL_CUDA_THREADS, 0, k_route_gates)(f32(topv), N, (int)k, renorm, f32(gates));
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(NK), FL_CUDA_THREADS, 0, k_route_count)(i32(topi), NK, E, i32(scratch));
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(E), FL_CUDA_THREADS, 0, k_route_scan)(i32(scratch), tiles, E, i32(count));
    FL_CUDA_LAUNCH(h, fl_cuda_row_blocks(tiles, FL_CUDA_THREADS / 32), FL_CUDA_THREADS, 0, k_route_place)(
        i32(topi), NK, E, cap, i32(scratch), tiles, i32(keys));
    return fl_cuda_launched(h, "moe: route", err);
}

/* ---------------------------------------------------------------- index */

/* pos[] is -1 already; each listed assignment a = perm[m] gets pos[a] = m */
static __global__ void k_index(const int32_t *perm, int64_t M, int64_t NK, int k, const float *gates, int32_t *tok,
                               float *gs, int32_t *pos) {
    FL_CUDA_LOOP(m, M) {
        const int32_t a = perm[m];
        if (a < 0 || a >= NK) { /* not an assignment: an empty row */
            tok[m] = 0, gs[m] = 0.0f;
            continue;
        }
        tok[m] = a / k;
        gs[m] = gates[a];
        pos[a] = (int32_t)m;
    }
}

fl_status moe_index_cuda(const fl_host *h, const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok,
                         fl_tensor *gs, fl_tensor *pos, fl_error *err) {
    const int64_t M = fl_numel(perm), NK = fl_numel(gates);
    if (NK == 0) return FL_OK;
    h->ops->fill(pos, -1.0f);
    if (M == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(M), FL_CUDA_THREADS, 0, k_index)(i32(perm), M, NK, k, f32(gates), i32(tok),
                                                                      f32(gs), i32(pos));
    return fl_cuda_launched(h, "moe: index", err);
}

/* ------------------------------------------------------- router backward */

/* A warp per token n; dr = dlogits[n,:] (E values). */
static __global__ void k_router_backward(const float *probs, const float *lse, const float *topv, const int32_t *topi,
                                         const float *gates, const float *dgate, const float *dbal, int renorm,
                                         float zc, int64_t N, int64_t E, int k, float *dlogits) {
    const int64_t n = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (n >= N) return; /* the whole warp: n is per warp */
    const float *p = probs + n * E;
    float *dr = dlogits + n * E;
    for (int64_t i = lane; i < E; i += 32) dr[i] = dbal[i];
    __syncwarp(); /* orders the writes above before lane 0's adds */
    if (lane == 0) {
        /* through g_j = v_j / S: dv_j = (dg_j − Σ_i dg_i g_i) / S; in j order */
        const float *v = topv + n * k, *g = gates + n * k, *dg = dgate + n * k;
        const int32_t *e = topi + n * k;
        float s = 0.0f, gdg = 0.0f;
        for (int j = 0; j < k; j++) {
            s += v[j];
            gdg = __fadd_rn(gdg, __fmul_rn(g[j], dg[j]));
        }
        for (int j = 0; j < k; j++)
            if (e[j] >= 0 && e[j] < E) dr[e[j]] += renorm ? (s > 0.0f ? (dg[j] - gdg) / s : 0.0f) : dg[j];
    }
    __syncwarp();
    float part = 0.0f;
    for (int64_t i = lane; i < E; i += 32) part += dr[i] * p[i];
    const float dot = fl_cuda_warp_sum(part);
    const float zt = zc * lse[n];
    /* softmax backward, plus the z-loss term zc · lse · p */
    for (int64_t i = lane; i < E; i += 32) dr[i] = p[i] * (dr[i] - dot + zt);
}

fl_status moe_router_backward_cuda(const fl_host *h, const fl_tensor *probs, const fl_tensor *lse,
                                   const fl_tensor *topv, const fl_tensor *topi, const fl_tensor *gates,
                                   const fl_tensor *dgate, const fl_tensor *dbal, int renorm, float zc,
                                   fl_tensor *dlogits, fl_error *err) {
    const int64_t E = probs->shape[probs->ndim - 1], N = fl_numel(probs) / E, k = N ? fl_numel(topv) / N : 1;
    if (N == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_row_blocks(N, FL_CUDA_THREADS / 32), FL_CUDA_THREADS, 0, k_router_backward)(
        f32(probs), f32(lse), f32(topv), i32(topi), f32(gates), f32(dgate), f32(dbal), renorm, zc, N, E, (int)k,
        f32(dlogits));
    return fl_cuda_launched(h, "moe: router backward", err);
}
