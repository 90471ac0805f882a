/*
 * plugins/ffn_moe/moe_route_cpu.c — the routing steps on the CPU (see
 * moe_route.h; shapes are checked by moe_route.c).
 *
 * moe_route's capacity is first come, first served in row-major order, a
 * sequential rule: one serial pass (O(N·k), microseconds). moe_index writes
 * disjoint elements and the router gradient is independent per token, so
 * both split over threads without changing a bit of the result (each row is
 * still summed in the same order).
 */
#include "moe_route.h"

/* Below this many elements a step stays on one thread. */
#define PAR_MIN 32768

static float *f32(const fl_tensor *t) { return (float *)t->data; }
static int32_t *i32(const fl_tensor *t) { return (int32_t *)t->data; }

/* ---------------------------------------------------------------- route */

/* gates[n,:] = topv[n,:] / Σ topv[n,:] (renorm and that sum > 0), else topv */
static void route_gates(const float *topv, int64_t N, int64_t k, int renorm, float *gates) {
    for (int64_t n = 0; n < N; n++) {
        const float *v = topv + n * k;
        float s = 0.0f;
        for (int64_t j = 0; j < k; j++) s += v[j];
        const float inv = renorm && s > 0.0f ? 1.0f / s : 1.0f;
        for (int64_t j = 0; j < k; j++) gates[n * k + j] = v[j] * inv;
    }
}

/* keys[a] = topi[a], or -1 once its expert holds cap earlier assignments
   (cap < 0: no limit); count[e] = assignments of e before dropping. Returns
   how many topi were outside [0, E). */
static int64_t route_keys(const int32_t *topi, int64_t NK, int E, int64_t cap, int32_t *keys, int32_t *count) {
    int64_t bad = 0;
    for (int e = 0; e < E; e++) count[e] = 0;
    for (int64_t a = 0; a < NK; a++) {
        const int32_t e = topi[a];
        if (e < 0 || e >= E) {
            keys[a] = -1;
            bad++;
            continue;
        }
        /* count[e] so far = the earlier assignments of e, kept or not */
        keys[a] = cap >= 0 && count[e] >= cap ? -1 : e;
        count[e]++;
    }
    return bad;
}

fl_status moe_route_cpu(const fl_host *h, const fl_tensor *topv, const fl_tensor *topi, int E, int renorm,
                        int64_t cap, fl_tensor *gates, fl_tensor *keys, fl_tensor *count, fl_error *err) {
    const int64_t k = topv->ndim ? topv->shape[topv->ndim - 1] : 1, N = k ? fl_numel(topv) / k : 0;
    route_gates(f32(topv), N, k, renorm, f32(gates));
    if (route_keys(i32(topi), N * k, E, cap, i32(keys), i32(count)))
        return h->error(err, FL_EINTERNAL, "moe: route: an expert index outside [0, %d)", E);
    return FL_OK;
}

/* ---------------------------------------------------------------- index */

fl_status moe_index_cpu(const fl_host *h, const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok,
                        fl_tensor *gs, fl_tensor *pos, fl_error *err) {
    const int64_t M = fl_numel(perm), NK = fl_numel(gates);
    const int32_t *p = i32(perm);
    const float *g = f32(gates);
    int32_t *t = i32(tok), *ps = i32(pos);
    float *o = f32(gs);
    int64_t bad = 0;
#pragma omp parallel if (NK > PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int64_t a = 0; a < NK; a++) ps[a] = -1;
        /* perm lists each assignment at most once: the writes are disjoint */
#pragma omp for schedule(static) reduction(+ : bad)
        for (int64_t m = 0; m < M; m++) {
            const int32_t a = p[m];
            if (a < 0 || a >= NK) { /* not an assignment: an empty row */
                t[m] = 0, o[m] = 0.0f, bad++;
                continue;
            }
            t[m] = (int32_t)(a / k);
            o[m] = g[a];
            ps[a] = (int32_t)m;
        }
    }
    if (bad) return h->error(err, FL_EINTERNAL, "moe: index: %lld rows of the permutation are not assignments",
                             (long long)bad);
    return FL_OK;
}

/* ------------------------------------------------------- router backward */

/* One token's router gradient (E experts, k chosen): dr[E] = dH of
   p[E], lse, the chosen v[k], e[k], gates g[k], their gradient dg[k]. */
static void router_backward_row(const float *p, float lse, const float *v, const int32_t *e, const float *g,
                                const float *dg, const float *dbal, int renorm, float zc, int64_t E, int64_t k,
                                float *dr) {
    for (int64_t i = 0; i < E; i++) dr[i] = dbal[i];
    /* through g_j = v_j / S: dv_j = (dg_j − Σ_i dg_i g_i) / S */
    float s = 0.0f, gdg = 0.0f;
    for (int64_t j = 0; j < k; j++) {
        s += v[j];
        gdg += g[j] * dg[j];
    }
    for (int64_t j = 0; j < k; j++) dr[e[j]] += renorm ? (s > 0.0f ? (dg[j] - gdg) / s : 0.0f) : dg[j];
    /* softmax backward, plus the z-loss term zc · lse · p */
    float dot = 0.0f;
    for (int64_t i = 0; i < E; i++) dot += dr[i] * p[i];
    const float zt = zc * lse;
    for (int64_t i = 0; i < E; i++) dr[i] = p[i] * (dr[i] - dot + zt);
}

fl_status moe_router_backward_cpu(const fl_host *h, const fl_tensor *probs, const fl_tensor *lse,
                                  const fl_tensor *topv, const fl_tensor *topi, const fl_tensor *gates,
                                  const fl_tensor *dgate, const fl_tensor *dbal, int renorm, float zc,
                                  fl_tensor *dlogits, fl_error *err) {
    const int64_t E = probs->shape[probs->ndim - 1], N = fl_numel(probs) / E, NK = fl_numel(topv), k = N ? NK / N : 1;
    const float *p = f32(probs), *l = f32(lse), *v = f32(topv), *g = f32(gates), *dg = f32(dgate), *db = f32(dbal);
    const int32_t *e = i32(topi);
    float *d = f32(dlogits);
    /* a topi outside [0, E) would write outside the row: checked up front */
    for (int64_t a = 0; a < NK; a++)
        if (e[a] < 0 || e[a] >= E)
            return h->error(err, FL_EINTERNAL, "moe: router backward: an expert index outside [0, %lld)", (long long)E);
#pragma omp parallel for schedule(static) if (N * E > PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        router_backward_row(p + n * E, l[n], v + n * k, e + n * k, g + n * k, dg + n * k, db, renorm, zc, E, k,
                            d + n * E);
    return FL_OK;
}
