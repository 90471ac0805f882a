/*
 * tests/test_moe_route.c — the moe plugin's own routing kernels on the CPU
 * (moe_route, moe_index, moe_router_backward; plugins/ffn_moe/moe_route.h) against
 * naive references written straight from the contract:
 *   - moe_route: the capacity rule as a rank (an assignment is kept iff
 *     fewer than cap earlier assignments, row-major, chose its expert),
 *     counted the slow way; a hand-made routing; cap -1, 0, 1, small, huge;
 *     k = 1..3; renorm with rows whose chosen values sum to 0; N = 0;
 *   - moe_index: after bucket_sort of moe_route's keys, every listed
 *     assignment found by search, the unlisted ones -1; all dropped; N = 0;
 *   - moe_router_backward: the contract's formula in double, and the true
 *     gradient by central differences (in double) of
 *       f(H) = Σ_j dgate_j g_j(p(H)) + Σ_i dbal_i p_i(H) + zc/2 · lse(H)²
 *     with the choice topi held fixed; bit-identical for 1 and 2 threads.
 * Integer outputs must match exactly; floats to 1e-6 relative (the formula)
 * or 1e-4 (finite differences).
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "moe_route.h"

#include "backend.h"


/* The plugin's kernels through the CPU host; any error fails the test. */
static void route(const fl_tensor *topv, const fl_tensor *topi, int E, int renorm, int64_t cap, fl_tensor *gates,
                  fl_tensor *keys, fl_tensor *count) {
    fl_error err = {0};
    fl_tensor scratch = {0};
    ts_assert_ok(moe_route(&tf_host, topv, topi, E, renorm, cap, gates, keys, count, &scratch, &err), &err);
    tf_host.tensor_release(&tf_host, &scratch);
}

static void index_of(const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok, fl_tensor *gs, fl_tensor *pos) {
    fl_error err = {0};
    ts_assert_ok(moe_index(&tf_host, perm, k, gates, tok, gs, pos, &err), &err);
}

static void router_backward(const fl_tensor *probs, const fl_tensor *lse, const fl_tensor *topv, const fl_tensor *topi,
                            const fl_tensor *gates, const fl_tensor *dgate, const fl_tensor *dbal, int renorm, float zc,
                            fl_tensor *dlogits) {
    fl_error err = {0};
    ts_assert_ok(moe_router_backward(&tf_host, probs, lse, topv, topi, gates, dgate, dbal, renorm, zc, dlogits, &err),
                 &err);
}

/* ---------------------------------------------------------------- route */

/* The contract, the slow way: keys, count and gates for topv, topi [N,k]. */
static void route_ref(const float *topv, const int32_t *topi, int64_t N, int k, int E, int renorm,
                      int64_t cap, double *gates, int32_t *keys, int32_t *count) {
    for (int e = 0; e < E; e++) count[e] = 0;
    for (int64_t a = 0; a < N * k; a++) {
        int64_t earlier = 0;
        for (int64_t b = 0; b < a; b++) earlier += topi[b] == topi[a];
        keys[a] = cap < 0 || earlier < cap ? topi[a] : -1;
        count[topi[a]]++;
    }
    for (int64_t n = 0; n < N; n++) {
        double s = 0;
        for (int j = 0; j < k; j++) s += topv[n * k + j];
        for (int j = 0; j < k; j++) gates[n * k + j] = renorm && s > 0 ? topv[n * k + j] / s : topv[n * k + j];
    }
}

/* Random topv in [0, 1) (every third row all zero), topi distinct per row. */
static void random_choice(fl_tensor *topv, fl_tensor *topi, int64_t N, int k, int E, uint64_t key) {
    rnd(topv, key, 0.0f, 1.0f);
    for (int64_t n = 0; n < N; n++) {
        if (n % 3 == 2)
            for (int j = 0; j < k; j++) F(topv)[n * k + j] = 0.0f;
        const int first = (int)(fl_rng_uniform(key + 1, (uint64_t)n) * (float)E);
        const int step = 1 + (int)(fl_rng_uniform(key + 2, (uint64_t)n) * (float)(E - 1));
        for (int j = 0; j < k; j++) I(topi)[n * k + j] = (first + j * step) % E; /* distinct when E prime */
    }
}

static void check_route(int64_t N, int k, int E, int renorm, int64_t cap) {
    fl_tensor topv = f2(N, k), topi = i2(N, k), gates = f2(N, k), keys = i1(N * k), count = i1(E);
    random_choice(&topv, &topi, N, k, E, (uint64_t)(N * 100 + k * 10 + E));
    for (int64_t a = 0; a < N * k; a++) I(&keys)[a] = 777, F(&gates)[a] = NAN;
    route(&topv, &topi, E, renorm, cap, &gates, &keys, &count);
    double *g = malloc((size_t)(N * k + 1) * sizeof *g);
    int32_t *kw = malloc((size_t)(N * k + 1) * sizeof *kw), cw[64];
    route_ref(F(&topv), I(&topi), N, k, E, renorm, cap, g, kw, cw);
    char what[96];
    snprintf(what, sizeof what, "moe_route N=%lld k=%d E=%d renorm=%d cap=%lld gates", (long long)N, k, E,
             renorm, (long long)cap);
    chk(F(&gates), to_f(g, N * k), (size_t)(N * k), 1e-6, 1e-7, what);
    assert_memory_equal(I(&keys), kw, (size_t)(N * k) * sizeof *kw);
    assert_memory_equal(I(&count), cw, (size_t)E * sizeof *cw);
    int64_t kept = 0;
    for (int64_t a = 0; a < N * k; a++) kept += I(&keys)[a] >= 0;
    print_message("    kept %lld of %lld\n", (long long)kept, (long long)(N * k));
    free(g), free(kw);
}

static void test_route_reference(void **state) {
    (void)state;
    const int64_t caps[] = {-1, 0, 1, 5, 1 << 20};
    for (int k = 1; k <= 3; k++)
        for (int renorm = 0; renorm < 2; renorm++)
            for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) check_route(97, k, 7, renorm, caps[c]);
    check_route(1, 3, 3, 1, 1);
    check_route(300, 2, 61, 1, 11); /* more experts than a vector */
}

/* A routing worked by hand: E = 3, k = 2, cap 2. */
static void test_route_by_hand(void **state) {
    (void)state;
    const int32_t e[] = {0, 1, 0, 2, 1, 0, 0, 1, 2, 0};
    const float v[] = {0.5f, 0.25f, 0.0f, 0.0f, 0.6f, 0.2f, 0.3f, 0.3f, 1.0f, 3.0f};
    fl_tensor topv = f2(5, 2), topi = i2(5, 2), gates = f2(5, 2), keys = i1(10), count = i1(3);
    memcpy(topv.data, v, sizeof v), memcpy(topi.data, e, sizeof e);
    route(&topv, &topi, 3, 1, 2, &gates, &keys, &count);
    /* expert 0 is taken by assignments 0 and 2; 5, 6 and 9 come too late;
       expert 1 by 1 and 4, not 7; expert 2 by 3 and 8 */
    const int32_t kw[] = {0, 1, 0, 2, 1, -1, -1, -1, 2, -1}, cw[] = {5, 3, 2};
    const float gw[] = {2.0f / 3, 1.0f / 3, 0.0f, 0.0f, 0.75f, 0.25f, 0.5f, 0.5f, 0.25f, 0.75f};
    assert_memory_equal(I(&keys), kw, sizeof kw);
    assert_memory_equal(I(&count), cw, sizeof cw);
    chk(F(&gates), gw, 10, 1e-6, 0, "moe_route by hand: gates (a zero row stays 0)");
    /* without renorm the gates are topv, bit for bit */
    route(&topv, &topi, 3, 0, -1, &gates, &keys, &count);
    assert_memory_equal(gates.data, v, sizeof v);
    assert_memory_equal(I(&keys), e, sizeof e);
}

/* N = 0: nothing to write but count, which is all 0. */
static void test_route_empty(void **state) {
    (void)state;
    fl_tensor topv = f2(0, 2), topi = i2(0, 2), gates = f2(0, 2), keys = i1(0), count = i1(4);
    for (int e = 0; e < 4; e++) I(&count)[e] = 9;
    route(&topv, &topi, 4, 1, 3, &gates, &keys, &count);
    for (int e = 0; e < 4; e++) assert_int_equal(I(&count)[e], 0);
}

/* ---------------------------------------------------------------- index */

/* route, bucket_sort, moe_index; then everything checked by search */
static void check_index(int64_t N, int k, int E, int64_t cap) {
    const int64_t NK = N * k;
    fl_tensor topv = f2(N, k), topi = i2(N, k), gates = f2(N, k), keys = i1(NK), count = i1(E);
    fl_tensor perm = i1(NK), pos = i2(N, k);
    random_choice(&topv, &topi, N, k, E, (uint64_t)(7 * N + k));
    route(&topv, &topi, E, 1, cap, &gates, &keys, &count);
    int64_t off[64];
    tf_ops->bucket_sort(&keys, E, &perm, off);
    const int64_t M = off[E];
    fl_tensor kept = perm, tok = i1(M ? M : 1), gs = f1(M ? M : 1);
    kept.shape[0] = tok.shape[0] = gs.shape[0] = M;
    for (int64_t a = 0; a < NK; a++) I(&pos)[a] = 555;
    index_of(&kept, k, &gates, &tok, &gs, &pos);
    for (int64_t m = 0; m < M; m++) {
        const int32_t a = I(&perm)[m];
        assert_int_equal(I(&tok)[m], a / k);
        assert_true(F(&gs)[m] == F(&gates)[a]);
    }
    for (int64_t a = 0; a < NK; a++) {
        int64_t want = -1;
        for (int64_t m = 0; m < M; m++)
            if (I(&perm)[m] == a) want = m;
        assert_int_equal(I(&pos)[a], want);
        assert_int_equal(I(&pos)[a] < 0, I(&keys)[a] < 0); /* dropped = not listed */
    }
    print_message("  moe_index N=%lld k=%d E=%d cap=%lld: %lld rows listed\n", (long long)N, k, E,
                  (long long)cap, (long long)M);
}

static void test_index(void **state) {
    (void)state;
    for (int k = 1; k <= 3; k++) {
        check_index(53, k, 5, -1);
        check_index(53, k, 5, 4);
        check_index(53, k, 5, 0); /* all dropped: M = 0, pos all -1 */
    }
    check_index(0, 2, 5, -1);
}

/* ------------------------------------------------------- router backward */

typedef struct rb_case {
    int64_t N;
    int E, k, renorm;
    float zc;
    fl_tensor H, probs, lse, topv, topi, gates, dgate, dbal, dlogits;
} rb_case;

/* Logits, their softmax, lse and top-k (so topv = probs[topi]), gates by
   moe_route, random dgate and dbal. */
static void rb_make(rb_case *c, int64_t N, int E, int k, int renorm, float zc, uint64_t key) {
    c->N = N, c->E = E, c->k = k, c->renorm = renorm, c->zc = zc;
    c->H = f2(N, E), c->probs = f2(N, E), c->lse = f1(N), c->topv = f2(N, k), c->topi = i2(N, k);
    c->gates = f2(N, k), c->dgate = f2(N, k), c->dbal = f1(E), c->dlogits = f2(N, E);
    rnd(&c->H, key, -2.0f, 2.0f);
    rnd(&c->dgate, key + 1, -1.0f, 1.0f);
    rnd(&c->dbal, key + 2, -0.5f, 0.5f);
    tf_ops->softmax(&c->H, &c->probs);
    tf_ops->logsumexp(&c->H, &c->lse);
    tf_ops->topk(&c->probs, k, &c->topv, &c->topi);
    fl_tensor keys = i1(N * k), count = i1(E);
    route(&c->topv, &c->topi, E, renorm, -1, &c->gates, &keys, &count);
    for (int64_t i = 0; i < N * E; i++) F(&c->dlogits)[i] = NAN; /* must be overwritten */
}

static void rb_run(rb_case *c) {
    router_backward(&c->probs, &c->lse, &c->topv, &c->topi, &c->gates, &c->dgate, &c->dbal, c->renorm,
                             c->zc, &c->dlogits);
}

/* The contract's formula in double, one token. */
static void rb_formula(const rb_case *c, int64_t n, double *out) {
    const int E = c->E, k = c->k;
    const float *p = F(&c->probs) + n * E, *v = F(&c->topv) + n * k, *g = F(&c->gates) + n * k;
    const float *dg = F(&c->dgate) + n * k;
    double s = 0, gdg = 0, dp[64], dot = 0;
    for (int j = 0; j < k; j++) s += v[j], gdg += (double)g[j] * dg[j];
    for (int i = 0; i < E; i++) dp[i] = F(&c->dbal)[i];
    for (int j = 0; j < k; j++)
        dp[I(&c->topi)[n * k + j]] += c->renorm ? (s > 0 ? (dg[j] - gdg) / s : 0) : dg[j];
    for (int i = 0; i < E; i++) dot += dp[i] * p[i];
    for (int i = 0; i < E; i++) out[i] = p[i] * (dp[i] - dot + c->zc * (double)F(&c->lse)[n]);
}

/* f(H) of the header comment for one token's logits h[E], in double. */
static double rb_objective(const rb_case *c, int64_t n, const double *h) {
    const int E = c->E, k = c->k;
    double m = -INFINITY, s = 0, p[64], vs = 0, f = 0;
    for (int i = 0; i < E; i++) m = h[i] > m ? h[i] : m;
    for (int i = 0; i < E; i++) s += exp(h[i] - m);
    const double lse = m + log(s);
    for (int i = 0; i < E; i++) p[i] = exp(h[i] - lse), f += F(&c->dbal)[i] * p[i];
    for (int j = 0; j < k; j++) vs += p[I(&c->topi)[n * k + j]];
    for (int j = 0; j < k; j++) {
        const double v = p[I(&c->topi)[n * k + j]];
        f += F(&c->dgate)[n * k + j] * (c->renorm && vs > 0 ? v / vs : v);
    }
    return f + 0.5 * c->zc * lse * lse;
}

/* Central differences of rb_objective, one token. */
static void rb_numeric(const rb_case *c, int64_t n, double *out) {
    double h[64];
    const double eps = 1e-6;
    for (int i = 0; i < c->E; i++) h[i] = F(&c->H)[n * c->E + i];
    for (int i = 0; i < c->E; i++) {
        const double h0 = h[i];
        h[i] = h0 + eps;
        const double fp = rb_objective(c, n, h);
        h[i] = h0 - eps;
        const double fm = rb_objective(c, n, h);
        h[i] = h0;
        out[i] = (fp - fm) / (2 * eps);
    }
}

static void check_router_backward(int64_t N, int E, int k, int renorm, float zc) {
    rb_case c;
    rb_make(&c, N, E, k, renorm, zc, (uint64_t)(N + 31 * E + k));
    rb_run(&c);
    double *formula = malloc((size_t)(N * E) * sizeof *formula), *num = malloc((size_t)(N * E) * sizeof *num);
    for (int64_t n = 0; n < N; n++) {
        rb_formula(&c, n, formula + n * E);
        rb_numeric(&c, n, num + n * E);
    }
    char what[96];
    snprintf(what, sizeof what, "router_backward E=%d k=%d renorm=%d zc=%g formula", E, k, renorm, zc);
    chk(F(&c.dlogits), to_f(formula, N * E), (size_t)(N * E), 1e-5, 1e-6, what);
    snprintf(what, sizeof what, "router_backward E=%d k=%d renorm=%d zc=%g FD", E, k, renorm, zc);
    chk(F(&c.dlogits), to_f(num, N * E), (size_t)(N * E), 1e-4, 1e-5, what);
    free(formula), free(num);
}

static void test_router_backward(void **state) {
    (void)state;
    for (int k = 1; k <= 3; k++)
        for (int renorm = 0; renorm < 2; renorm++) check_router_backward(23, 6, k, renorm, k == 2 ? 0.0f : 0.05f);
    check_router_backward(9, 40, 2, 1, 0.01f);
}

/* renorm with chosen probabilities that sum to 0: dv = 0, only dbal and
   the z term remain. */
static void test_router_backward_zero_sum(void **state) {
    (void)state;
    rb_case c;
    rb_make(&c, 4, 5, 2, 1, 0.1f, 77);
    for (int a = 0; a < 8; a++) F(&c.topv)[a] = 0.0f;
    rb_run(&c);
    double want[5];
    for (int64_t n = 0; n < 4; n++) {
        rb_formula(&c, n, want);
        chk(F(&c.dlogits) + n * 5, to_f(want, 5), 5, 1e-5, 1e-7, "router_backward, chosen sum 0");
    }
    /* no dgate at all reaches dlogits: changing it changes nothing */
    fl_tensor before = clone(&c.dlogits);
    rnd(&c.dgate, 5, -9.0f, 9.0f);
    rb_run(&c);
    assert_memory_equal(before.data, c.dlogits.data, fl_nbytes(&before));
}

/* Rows split over threads: the same bits for 1 and 2 threads; N = 0 is
   a no-op. */
static void test_router_backward_threads(void **state) {
    (void)state;
    rb_case c;
    rb_make(&c, 3000, 32, 2, 1, 0.02f, 91); /* N·E above the parallel threshold */
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    rb_run(&c);
    fl_tensor one = clone(&c.dlogits);
    omp_set_num_threads(2);
    rb_run(&c);
    omp_set_num_threads(nt);
    assert_memory_equal(one.data, c.dlogits.data, fl_nbytes(&one));
    rb_case e;
    rb_make(&e, 0, 4, 2, 1, 0.1f, 3);
    rb_run(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_route_reference, tf_free_all),
        cmocka_unit_test_teardown(test_route_by_hand, tf_free_all),
        cmocka_unit_test_teardown(test_route_empty, tf_free_all),
        cmocka_unit_test_teardown(test_index, tf_free_all),
        cmocka_unit_test_teardown(test_router_backward, tf_free_all),
        cmocka_unit_test_teardown(test_router_backward_zero_sum, tf_free_all),
        cmocka_unit_test_teardown(test_router_backward_threads, tf_free_all),
    };
    return cmocka_run_group_tests(tests, tf_setup_cpu, NULL);
}
