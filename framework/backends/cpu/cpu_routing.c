/*
 * backends/cpu/cpu_routing.c — the routing steps of a mixture of experts
 * (ops moe_route, moe_index, moe_router_backward; contracts in host.h).
 *
 * These were plugins/ffn_moe's own loops; they are the same loops, so the
 * plugin's figures did not move when they became host ops. moe_route's
 * capacity is first come, first served in row-major order, a sequential
 * rule: it stays one serial pass (O(N·k), microseconds). moe_index writes
 * disjoint elements and the router gradient is independent per token, so
 * both split over threads without changing a bit of the result (each row is
 * still summed in the same order).
 */
#include "cpu.h"

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
   how many topi were outside [0, E) (those get key -1 and no count). */
static int64_t route_keys(const int32_t *topi, int64_t NK, int E, int64_t cap, int32_t *keys,
                          int32_t *count) {
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

/* topv, topi [N,k] → gates [N,k], keys [N·k] i32, count [E] i32 */
void cpu_moe_route(const fl_tensor *topv, const fl_tensor *topi, int E, int renorm, int64_t cap,
                   fl_tensor *gates, fl_tensor *keys, fl_tensor *count) {
    const int64_t N = cpu_rows(topv), k = cpu_cols(topv), NK = N * k;
    CPU_CHECK(topv->dtype == FL_F32 && topi->dtype == FL_I32 && fl_numel(topi) == NK);
    CPU_CHECK(gates->dtype == FL_F32 && fl_numel(gates) == NK);
    CPU_CHECK(keys->dtype == FL_I32 && fl_numel(keys) == NK);
    CPU_CHECK(E >= 1 && count->dtype == FL_I32 && fl_numel(count) == E);
    route_gates(cpu_f32(topv), N, k, renorm, cpu_f32(gates));
    if (route_keys(cpu_i32(topi), NK, E, cap, cpu_i32(keys), cpu_i32(count)))
        cpu_shape_error(__func__, "topi in [0, E)");
}

/* ---------------------------------------------------------------- index */

/* perm[M] i32 (assignments a = n·k + j, expert order), gates[N,k] →
   tok[M] i32 = a / k, gs[M] = gates[a], pos[N,k] i32 = m where perm[m] = a
   (-1 for an assignment perm does not list) */
void cpu_moe_index(const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok,
                   fl_tensor *gs, fl_tensor *pos) {
    const int64_t M = fl_numel(perm), NK = fl_numel(gates);
    CPU_CHECK(perm->dtype == FL_I32 && gates->dtype == FL_F32 && k >= 1 && cpu_cols(gates) == k);
    CPU_CHECK(tok->dtype == FL_I32 && fl_numel(tok) == M && gs->dtype == FL_F32 && fl_numel(gs) == M);
    CPU_CHECK(pos->dtype == FL_I32 && fl_numel(pos) == NK && M <= NK);
    const int32_t *p = cpu_i32(perm);
    const float *g = cpu_f32(gates);
    int32_t *t = cpu_i32(tok), *ps = cpu_i32(pos);
    float *o = cpu_f32(gs);
    int64_t bad = 0;
#pragma omp parallel if (NK > CPU_PAR_MIN)
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
    if (bad) cpu_shape_error(__func__, "perm in [0, N*k)");
}

/* ------------------------------------------------------- router backward */

/* One token's router gradient (E experts, k chosen): dr[E] = dH of
   p[E], lse, the chosen v[k], e[k], gates g[k], their gradient dg[k]. */
static void router_backward_row(const float *p, float lse, const float *v, const int32_t *e,
                                const float *g, const float *dg, const float *dbal, int renorm,
                                float zc, int64_t E, int64_t k, float *dr) {
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

/* probs, dlogits [N,E]; lse [N]; topv, topi, gates, dgate [N,k]; dbal [E] */
void cpu_moe_router_backward(const fl_tensor *probs, const fl_tensor *lse, const fl_tensor *topv,
                             const fl_tensor *topi, const fl_tensor *gates, const fl_tensor *dgate,
                             const fl_tensor *dbal, int renorm, float zc, fl_tensor *dlogits) {
    const int64_t N = cpu_rows(probs), E = cpu_cols(probs), k = cpu_cols(topv), NK = N * k;
    CPU_CHECK(probs->dtype == FL_F32 && dlogits->dtype == FL_F32 && fl_numel(dlogits) == N * E);
    CPU_CHECK(lse->dtype == FL_F32 && fl_numel(lse) == N && dbal->dtype == FL_F32 && fl_numel(dbal) == E);
    CPU_CHECK(topv->dtype == FL_F32 && fl_numel(topv) == NK && topi->dtype == FL_I32 && fl_numel(topi) == NK);
    CPU_CHECK(gates->dtype == FL_F32 && fl_numel(gates) == NK && dgate->dtype == FL_F32 && fl_numel(dgate) == NK);
    const float *p = cpu_f32(probs), *l = cpu_f32(lse), *v = cpu_f32(topv), *g = cpu_f32(gates);
    const float *dg = cpu_f32(dgate), *db = cpu_f32(dbal);
    const int32_t *e = cpu_i32(topi);
    float *d = cpu_f32(dlogits);
    int64_t bad = 0;
    /* a topi outside [0, E) would write outside the row: checked up front */
    for (int64_t a = 0; a < NK; a++) bad += e[a] < 0 || e[a] >= E;
    if (bad) {
        cpu_shape_error(__func__, "topi in [0, E)");
        return;
    }
#pragma omp parallel for schedule(static) if (N * E > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        router_backward_row(p + n * E, l[n], v + n * k, e + n * k, g + n * k, dg + n * k, db, renorm,
                            zc, E, k, d + n * E);
}
