/*
 * backends/cuda/cu_routing.cu — the routing steps of a mixture of experts
 * (ops moe_route, moe_index, moe_router_backward; contracts in host.h),
 * giving what the CPU gives: the same integers (keys, counts, indices) and
 * the same gates; the router gradient up to the order of one row's sum.
 *
 * moe_route's capacity rule is sequential — assignment a (row-major over
 * [N,k]) keeps its expert e iff fewer than cap earlier assignments chose e —
 * so it is computed as a rank: rank(a) = #{a' < a : topi[a'] = e}, the
 * exclusive prefix count of e. As in cu_bucket_sort.cu:
 *   1. count: assignments in tiles of TILE; counts[tile][e] by integer
 *      atomics (order-free, so exact);
 *   2. scan: one thread per expert turns its column into each tile's start
 *      (an exclusive scan over tiles) and writes count[e], the total;
 *   3. place: one warp per tile walks its assignments 32 at a time in
 *      order; lanes with the same expert find each other with
 *      __match_any_sync and take their rank among them; the lowest of them
 *      advances the tile's counter. rank < cap keeps the assignment.
 * An expert outside [0, E) in topi (the contract excludes it) gets key -1
 * and no count here; the CPU backend also logs it.
 *
 * moe_index inverts a permutation (disjoint writes), and the router
 * gradient is one warp per token: the chosen experts' terms are added by
 * lane 0 in j order (as the CPU does), then a warp sum for the softmax
 * backward. No float atomics anywhere.
 */
#include "cu_ops.h"

#define TILE 1024

/* ---------------------------------------------------------------- route */

/* gates[n,:] = topv[n,:] / Σ topv[n,:] (renorm and that sum > 0), else topv;
   the CPU's operations in the CPU's order */
static __global__ void k_route_gates(const float *topv, int64_t N, int k, int renorm, float *gates) {
    CU_LOOP(n, N) {
        const float *v = topv + n * k;
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += v[j];
        const float inv = renorm && s > 0.0f ? 1.0f / s : 1.0f;
        for (int j = 0; j < k; j++) gates[n * k + j] = __fmul_rn(v[j], inv);
    }
}

/* counts[tile][e] += 1 per assignment of e in the tile */
static __global__ void k_route_count(const int32_t *topi, int64_t NK, int E, int *counts) {
    CU_LOOP(a, NK) {
        const int32_t e = topi[a];
        if (e >= 0 && e < E) atomicAdd(&counts[(a / TILE) * E + e], 1);
    }
}

/* per expert: counts[t][e] → assignments of e before tile t; count[e] = all */
static __global__ void k_route_scan(int *counts, int64_t tiles, int E, int32_t *count) {
    CU_LOOP(e, E) {
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
static __global__ void k_route_place(const int32_t *topi, int64_t NK, int E, int64_t cap, int *base,
                                     int64_t tiles, int32_t *keys) {
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

/* topv, topi [N,k] → gates [N,k], keys [N·k] i32, count [E] i32 */
void cu_moe_route(const fl_tensor *topv, const fl_tensor *topi, int E, int renorm, int64_t cap,
                  fl_tensor *gates, fl_tensor *keys, fl_tensor *count) {
    const int64_t N = cu_rows(topv), k = cu_cols(topv), NK = N * k;
    CU_CHECK(topv->dtype == FL_F32 && topi->dtype == FL_I32 && fl_numel(topi) == NK);
    CU_CHECK(gates->dtype == FL_F32 && fl_numel(gates) == NK);
    CU_CHECK(keys->dtype == FL_I32 && fl_numel(keys) == NK);
    CU_CHECK(E >= 1 && count->dtype == FL_I32 && fl_numel(count) == E);
    CU_CHECK(NK < INT32_MAX && k < INT32_MAX);
    int32_t *cnt = cu_i32(count);
    if (NK == 0) {
        CU_OK(cudaMemsetAsync(cnt, 0, (size_t)E * sizeof *cnt, g_cu.stream));
        return;
    }
    CU_LAUNCH(cu_grid(N), CU_THREADS, 0, k_route_gates)(cu_f32(topv), N, (int)k, renorm, cu_f32(gates));
    if (!CU_LAUNCHED("k_route_gates")) return;
    const int64_t tiles = (NK + TILE - 1) / TILE;
    const size_t cells = (size_t)tiles * (size_t)E;
    /* the bucket sort's slot: it runs after this op, never inside it */
    int *counts = (int *)cu_scratch(CU_SLOT_BUCKET, cells * sizeof(int));
    if (!counts || !CU_OK(cudaMemsetAsync(counts, 0, cells * sizeof(int), g_cu.stream))) return;
    const int32_t *ti = cu_i32(topi);
    CU_LAUNCH(cu_grid(NK), CU_THREADS, 0, k_route_count)(ti, NK, E, counts);
    if (!CU_LAUNCHED("k_route_count")) return;
    CU_LAUNCH(cu_grid(E), CU_THREADS, 0, k_route_scan)(counts, tiles, E, cnt);
    if (!CU_LAUNCHED("k_route_scan")) return;
    CU_LAUNCH(cu_row_blocks(tiles, CU_THREADS / 32), CU_THREADS, 0, k_route_place)(ti, NK, E, cap, counts,
                                                                                       tiles, cu_i32(keys));
    CU_LAUNCHED("k_route_place");
}

/* ---------------------------------------------------------------- index */

/* pos[] is -1 already; each listed assignment a = perm[m] gets pos[a] = m */
static __global__ void k_index(const int32_t *perm, int64_t M, int64_t NK, int k, const float *gates,
                               int32_t *tok, float *gs, int32_t *pos) {
    CU_LOOP(m, M) {
        const int32_t a = perm[m];
        if (a < 0 || a >= NK) { /* not an assignment (the CPU logs it): an empty row */
            tok[m] = 0, gs[m] = 0.0f;
            continue;
        }
        tok[m] = a / k;
        gs[m] = gates[a];
        pos[a] = (int32_t)m;
    }
}

/* perm[M] i32, gates[N,k] → tok[M] i32, gs[M], pos[N,k] i32 */
void cu_moe_index(const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok, fl_tensor *gs,
                  fl_tensor *pos) {
    const int64_t M = fl_numel(perm), NK = fl_numel(gates);
    CU_CHECK(perm->dtype == FL_I32 && gates->dtype == FL_F32 && k >= 1 && cu_cols(gates) == k);
    CU_CHECK(tok->dtype == FL_I32 && fl_numel(tok) == M && gs->dtype == FL_F32 && fl_numel(gs) == M);
    CU_CHECK(pos->dtype == FL_I32 && fl_numel(pos) == NK && M <= NK && NK < INT32_MAX);
    if (NK == 0) return;
    /* all bytes 0xff: every i32 is -1 */
    if (!CU_OK(cudaMemsetAsync(pos->data, 0xff, (size_t)NK * sizeof(int32_t), g_cu.stream))) return;
    if (M == 0) return;
    CU_LAUNCH(cu_grid(M), CU_THREADS, 0, k_index)(cu_i32(perm), M, NK, k, cu_f32(gates), cu_i32(tok),
                                                        cu_f32(gs), cu_i32(pos));
    CU_LAUNCHED("k_index");
}

/* ------------------------------------------------------- router backward */

/* A warp per token n; dr = dlogits[n,:] (E values). */
static __global__ void k_router_backward(const float *probs, const float *lse, const float *topv,
                                         const int32_t *topi, const float *gates, const float *dgate,
                                         const float *dbal, int renorm, float zc, int64_t N, int64_t E,
                                         int k, float *dlogits) {
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
            if (e[j] >= 0 && e[j] < E)
                dr[e[j]] += renorm ? (s > 0.0f ? (dg[j] - gdg) / s : 0.0f) : dg[j];
    }
    __syncwarp();
    float part = 0.0f;
    for (int64_t i = lane; i < E; i += 32) part += dr[i] * p[i];
    const float dot = cu_warp_sum(part);
    const float zt = zc * lse[n];
    /* softmax backward, plus the z-loss term zc · lse · p */
    for (int64_t i = lane; i < E; i += 32) dr[i] = p[i] * (dr[i] - dot + zt);
}

/* probs, dlogits [N,E]; lse [N]; topv, topi, gates, dgate [N,k]; dbal [E] */
void cu_moe_router_backward(const fl_tensor *probs, const fl_tensor *lse, const fl_tensor *topv,
                            const fl_tensor *topi, const fl_tensor *gates, const fl_tensor *dgate,
                            const fl_tensor *dbal, int renorm, float zc, fl_tensor *dlogits) {
    const int64_t N = cu_rows(probs), E = cu_cols(probs), k = cu_cols(topv), NK = N * k;
    CU_CHECK(probs->dtype == FL_F32 && dlogits->dtype == FL_F32 && fl_numel(dlogits) == N * E);
    CU_CHECK(lse->dtype == FL_F32 && fl_numel(lse) == N && dbal->dtype == FL_F32 && fl_numel(dbal) == E);
    CU_CHECK(topv->dtype == FL_F32 && fl_numel(topv) == NK && topi->dtype == FL_I32 && fl_numel(topi) == NK);
    CU_CHECK(gates->dtype == FL_F32 && fl_numel(gates) == NK && dgate->dtype == FL_F32 &&
             fl_numel(dgate) == NK);
    CU_CHECK(k < INT32_MAX);
    if (N == 0) return;
    CU_LAUNCH(cu_row_blocks(N, CU_THREADS / 32), CU_THREADS, 0, k_router_backward)(
        cu_f32(probs), cu_f32(lse), cu_f32(topv), cu_i32(topi), cu_f32(gates), cu_f32(dgate), cu_f32(dbal),
        renorm, zc, N, E, (int)k, cu_f32(dlogits));
    CU_LAUNCHED("k_router_backward");
}
