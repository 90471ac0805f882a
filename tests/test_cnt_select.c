/*
 * tests/test_cnt_select.c — the cnt plugin's own block selection kernels on
 * the CPU (cnt_block_select, its backward, cnt_block_argmax;
 * plugins/ffn_cnt/cnt_select.h) against naive double-precision references:
 *   - selection: idx equal to the reference's argmax of z = (l + noise g) *
 *     inv_tau with g = -log(-log(fl_rng_uniform(key, n*U + j))), exactly;
 *     ties (noise 0, integer logits) go to the lower index;
 *   - s = softmax_block(z), p = softmax_block(l) (≤ 1e-5 relative);
 *   - hm = a * mask * (p or 1), mask soft (s) or hard (one-hot: the other
 *     units exactly 0);
 *   - backward: the straight-through estimator from its definition (the
 *     Jacobians of s and p applied as full B x B products in double, mask
 *     derivative = that of s), and for the soft mask also against central
 *     finite differences of the forward op itself;
 *   - argmax with bias, ties, pmax = the winner's block softmax probability.
 * Shapes include one block, blocks of one unit, and a size past the
 * threading threshold.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "cnt_select.h"

#include "backend.h"
#include "ffnlab/rng.h"


/* The plugin's kernels through the CPU host; any error fails the test. */
static void block_select(const fl_tensor *l, const fl_tensor *a, int B, float noise, float inv_tau, uint64_t key,
                         int soft, fl_tensor *s, fl_tensor *p, fl_tensor *idx, fl_tensor *hm) {
    fl_error err = {0};
    ts_assert_ok(cnt_block_select(&tf_host, l, a, B, noise, inv_tau, key, soft, s, p, idx, hm, &err), &err);
}

static void block_select_backward(const fl_tensor *a, const fl_tensor *s, const fl_tensor *p, const fl_tensor *idx,
                                  int B, float inv_tau, int soft, fl_tensor *dhm, fl_tensor *dl) {
    fl_error err = {0};
    ts_assert_ok(cnt_block_select_backward(&tf_host, a, s, p, idx, B, inv_tau, soft, dhm, dl, &err), &err);
}

static void block_argmax(const fl_tensor *l, const fl_tensor *bias, int B, fl_tensor *idx, fl_tensor *pmax) {
    fl_error err = {0};
    ts_assert_ok(cnt_block_argmax(&tf_host, l, bias, B, idx, pmax, &err), &err);
}

/* ---------------------------------------------------------- reference */

/* softmax of v[B] into out (double); returns the first maximum's index */
static int softmax_d(const double *v, int B, double *out) {
    int k = 0;
    for (int i = 1; i < B; i++)
        if (v[i] > v[k]) k = i;
    double sum = 0;
    for (int i = 0; i < B; i++) sum += out[i] = exp(v[i] - v[k]);
    for (int i = 0; i < B; i++) out[i] /= sum;
    return k;
}

/* The selection in double: s, p [N,U], idx [N,nb] (unit indices), hm [N,U]. */
typedef struct sel_ref {
    double *s, *p, *hm;
    int32_t *idx;
} sel_ref;

static sel_ref select_ref(const float *l, const float *a, int64_t N, int64_t U, int B, double noise,
                          double inv_tau, uint64_t key, int soft, int with_p) {
    const int64_t nb = U / B;
    sel_ref r = {calloc((size_t)(N * U), sizeof(double)), calloc((size_t)(N * U), sizeof(double)),
                 calloc((size_t)(N * U), sizeof(double)), calloc((size_t)(N * nb), sizeof(int32_t))};
    double *z = calloc((size_t)B, sizeof *z), *lv = calloc((size_t)B, sizeof *lv);
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t o = n * U + b * B;
            for (int i = 0; i < B; i++) {
                const uint64_t counter = (uint64_t)(n * U + b * B + i);
                const double g = noise != 0 ? -log(-log((double)fl_rng_uniform(key, counter))) : 0.0;
                z[i] = ((double)l[o + i] + noise * g) * inv_tau;
                lv[i] = l[o + i];
            }
            const int k = softmax_d(z, B, r.s + o);
            r.idx[n * nb + b] = (int32_t)(b * B + k);
            softmax_d(lv, B, r.p + o);
            for (int i = 0; i < B; i++) {
                const double mask = soft ? r.s[o + i] : (double)(i == k);
                r.hm[o + i] = a[o + i] * mask * (with_p ? r.p[o + i] : 1.0);
            }
        }
    free(z), free(lv);
    return r;
}

static void free_ref(sel_ref *r) { free(r->s), free(r->p), free(r->hm), free(r->idx); }

/* ---------------------------------------------------------- forward */

typedef struct select_case {
    int64_t N, U;
    int B;
    float noise, inv_tau;
    int soft, with_p;
} select_case;

static void check_select(select_case c, uint64_t key) {
    const int64_t N = c.N, U = c.U, nb = U / c.B;
    fl_tensor l = f2(N, U), a = f2(N, U), s = f2(N, U), p = f2(N, U), hm = f2(N, U), idx = i2(N, nb);
    rnd(&l, key + 1, -2, 2);
    rnd(&a, key + 2, -1, 1);
    for (int64_t i = 0; i < N * U; i++) F(&hm)[i] = F(&s)[i] = NAN; /* outputs: written, not read */
    block_select(&l, &a, c.B, c.noise, c.inv_tau, key, c.soft, &s, c.with_p ? &p : NULL, &idx, &hm);
    sel_ref r = select_ref(F(&l), F(&a), N, U, c.B, c.noise, c.inv_tau, key, c.soft, c.with_p);
    char what[96];
    snprintf(what, sizeof what, "select %lldx%lld B=%d%s%s", (long long)N, (long long)U, c.B,
             c.soft ? " soft" : " hard", c.with_p ? " p" : "");
    assert_memory_equal(I(&idx), r.idx, (size_t)(N * nb) * sizeof(int32_t)); /* the selection, exactly */
    char w2[128];
    snprintf(w2, sizeof w2, "%s s", what);
    chk(F(&s), to_f(r.s, N * U), (size_t)(N * U), 1e-5, 1e-7, w2);
    if (c.with_p) {
        snprintf(w2, sizeof w2, "%s p", what);
        chk(F(&p), to_f(r.p, N * U), (size_t)(N * U), 1e-5, 1e-7, w2);
    }
    snprintf(w2, sizeof w2, "%s hm", what);
    chk(F(&hm), to_f(r.hm, N * U), (size_t)(N * U), 1e-5, 1e-7, w2);
    if (!c.soft) /* hard: one unit per block, the rest exactly zero */
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < U; j++)
                if (I(&idx)[n * nb + j / c.B] != j) assert_true(F(&hm)[n * U + j] == 0.0f);
    free_ref(&r);
}

static void test_select_forward(void **state) {
    (void)state;
    check_select((select_case){7, 40, 8, 0.7f, 2.0f, 0, 0}, 100);
    check_select((select_case){7, 40, 8, 0.7f, 2.0f, 0, 1}, 110);  /* multiply_by_controller */
    check_select((select_case){7, 40, 8, 1.0f, 0.5f, 1, 0}, 120);  /* soft mask */
    check_select((select_case){7, 40, 8, 0.1f, 10.0f, 1, 1}, 130); /* soft, p; the defaults' tau */
    check_select((select_case){5, 36, 36, 1.0f, 1.0f, 0, 1}, 140); /* one block */
    check_select((select_case){5, 12, 1, 1.0f, 1.0f, 0, 1}, 150);  /* blocks of one: every unit */
    check_select((select_case){3, 15, 5, 0.0f, 3.0f, 0, 0}, 160);  /* no noise: argmax of l */
    check_select((select_case){300, 128, 16, 0.1f, 10.0f, 0, 1}, 170); /* threaded */
}

/* noise 0 and integer logits: ties everywhere, the lower index wins; the
   selection is the argmax of l itself whatever the temperature. */
static void test_select_ties(void **state) {
    (void)state;
    const int64_t N = 9, U = 24, B = 6, nb = 4;
    fl_tensor l = f2(N, U), a = f2(N, U), s = f2(N, U), hm = f2(N, U), idx = i2(N, nb);
    rnd(&l, 200, -1, 2);
    for (int64_t i = 0; i < N * U; i++) F(&l)[i] = floorf(F(&l)[i]); /* -1, 0, 1 */
    rnd(&a, 201, -1, 1);
    block_select(&l, &a, (int)B, 0.0f, 7.0f, 1, 0, &s, NULL, &idx, &hm);
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            int64_t k = 0;
            for (int64_t i = 1; i < B; i++)
                if (F(&l)[n * U + b * B + i] > F(&l)[n * U + b * B + k]) k = i;
            assert_int_equal(I(&idx)[n * nb + b], b * B + k);
        }
}

/* ---------------------------------------------------------- backward */

/* The straight-through gradient by its definition, in double: per block,
   with dme = dhm * a (the gradient of the mask-times-p product),
     dl_j = Σ_i dme_i [ p_i ds_i/dl_j + mask_i dp_i/dl_j ]
   where ds_i/dl_j = inv_tau s_i (δij - s_j), dp_i/dl_j = p_i (δij - p_j)
   (p ≡ 1, dp = 0 without multiply_by_controller), and da = dhm mask p. */
static void select_backward_ref(const float *a, const float *s, const float *p, const int32_t *idx,
                                const float *dhm, int64_t N, int64_t U, int B, double inv_tau, int soft,
                                double *da, double *dl) {
    const int64_t nb = U / B;
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t o = n * U + b * B, k = idx[n * nb + b] - b * B;
            for (int j = 0; j < B; j++) {
                double g = 0;
                for (int i = 0; i < B; i++) {
                    const double dme = (double)dhm[o + i] * a[o + i];
                    const double pi = p ? p[o + i] : 1.0, mask = soft ? s[o + i] : (double)(i == k);
                    const double ds = inv_tau * s[o + i] * ((i == j) - (double)s[o + j]);
                    const double dp = p ? pi * ((i == j) - (double)p[o + j]) : 0.0;
                    g += dme * (pi * ds + mask * dp);
                }
                dl[o + j] = g;
                const double mask = soft ? s[o + j] : (double)(j == k);
                da[o + j] = dhm[o + j] * mask * (p ? p[o + j] : 1.0);
            }
        }
}

static void check_backward(select_case c, uint64_t key) {
    const int64_t N = c.N, U = c.U, nb = U / c.B;
    fl_tensor l = f2(N, U), a = f2(N, U), s = f2(N, U), p = f2(N, U), hm = f2(N, U), idx = i2(N, nb);
    fl_tensor dhm = f2(N, U), dl = f2(N, U);
    rnd(&l, key + 1, -2, 2);
    rnd(&a, key + 2, -1, 1);
    rnd(&dhm, key + 3, -1, 1);
    fl_tensor *pp = c.with_p ? &p : NULL;
    block_select(&l, &a, c.B, c.noise, c.inv_tau, key, c.soft, &s, pp, &idx, &hm);
    double *da_ref = calloc((size_t)(N * U), sizeof *da_ref), *dl_ref = calloc((size_t)(N * U), sizeof *dl_ref);
    select_backward_ref(F(&a), F(&s), pp ? F(pp) : NULL, I(&idx), F(&dhm), N, U, c.B, c.inv_tau, c.soft,
                        da_ref, dl_ref);
    for (int64_t i = 0; i < N * U; i++) F(&dl)[i] = NAN; /* overwritten, not accumulated */
    block_select_backward(&a, &s, pp, &idx, c.B, c.inv_tau, c.soft, &dhm, &dl);
    char what[128];
    snprintf(what, sizeof what, "backward %lldx%lld B=%d%s%s dl", (long long)N, (long long)U, c.B,
             c.soft ? " soft" : " hard", c.with_p ? " p" : "");
    chk(F(&dl), to_f(dl_ref, N * U), (size_t)(N * U), 1e-4, 1e-6, what);
    snprintf(what, sizeof what, "backward %lldx%lld B=%d%s%s da", (long long)N, (long long)U, c.B,
             c.soft ? " soft" : " hard", c.with_p ? " p" : "");
    chk(F(&dhm), to_f(da_ref, N * U), (size_t)(N * U), 1e-5, 1e-7, what);
    free(da_ref), free(dl_ref);
}

static void test_select_backward(void **state) {
    (void)state;
    check_backward((select_case){6, 40, 8, 0.7f, 2.0f, 0, 0}, 300);
    check_backward((select_case){6, 40, 8, 0.7f, 2.0f, 0, 1}, 310);
    check_backward((select_case){6, 40, 8, 1.0f, 0.5f, 1, 0}, 320);
    check_backward((select_case){6, 40, 8, 0.1f, 10.0f, 1, 1}, 330);
    check_backward((select_case){4, 30, 30, 1.0f, 1.0f, 0, 1}, 340); /* one block */
    check_backward((select_case){4, 12, 1, 1.0f, 1.0f, 1, 1}, 350);  /* blocks of one: dl = 0 */
    check_backward((select_case){300, 128, 16, 0.1f, 10.0f, 0, 1}, 360); /* threaded */
}

/* With the soft mask the forward is smooth in l and a, so the backward is
   its exact gradient: central differences of L = Σ hm * w. */
static fl_tensor gL, gA, gS, gP, gH, gI, gW;
static int g_with_p;
static const float G_TAU = 1.5f;

static double soft_loss(void) {
    block_select(&gL, &gA, 5, 0.5f, G_TAU, 77, 1, &gS, g_with_p ? &gP : NULL, &gI, &gH);
    return dot_d(F(&gH), F(&gW), N_(&gH));
}

static void test_select_backward_fd(void **state) {
    (void)state;
    for (g_with_p = 0; g_with_p < 2; g_with_p++) {
        const int64_t N = 3, U = 20;
        gL = f2(N, U), gA = f2(N, U), gS = f2(N, U), gP = f2(N, U), gH = f2(N, U), gI = i2(N, 4), gW = f2(N, U);
        rnd(&gL, 400, -1, 1);
        rnd(&gA, 401, -1, 1);
        rnd(&gW, 402, -1, 1);
        soft_loss();
        fl_tensor dhm = clone(&gW), dl = f2(N, U);
        block_select_backward(&gA, &gS, g_with_p ? &gP : NULL, &gI, 5, G_TAU, 1, &dhm, &dl);
        fd_check(g_with_p ? "soft backward dl (p)" : "soft backward dl", F(&gL), N * U, F(&dl), soft_loss);
        fd_check(g_with_p ? "soft backward da (p)" : "soft backward da", F(&gA), N * U, F(&dhm), soft_loss);
    }
}

/* ---------------------------------------------------------- argmax */

static void check_argmax(int64_t N, int64_t U, int B, int ties, int with_pmax, uint64_t key) {
    const int64_t nb = U / B;
    fl_tensor l = f2(N, U), bias = f1(U), idx = i2(N, nb), pmax = f2(N, nb);
    rnd(&l, key, -3, 3);
    rnd(&bias, key + 1, -1, 1);
    if (ties)
        for (int64_t i = 0; i < N * U; i++) F(&l)[i] = floorf(F(&l)[i]);
    if (ties)
        for (int64_t j = 0; j < U; j++) F(&bias)[j] = (float)(j % 2);
    block_argmax(&l, &bias, B, &idx, with_pmax ? &pmax : NULL);
    double *t = calloc((size_t)B, sizeof *t), *pr = calloc((size_t)B, sizeof *pr);
    double *pref = calloc((size_t)(N * nb), sizeof *pref);
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            for (int i = 0; i < B; i++) t[i] = (double)(F(&l)[n * U + b * B + i] + F(&bias)[b * B + i]);
            const int k = softmax_d(t, B, pr);
            assert_int_equal(I(&idx)[n * nb + b], b * B + k);
            pref[n * nb + b] = pr[k];
        }
    char what[96];
    snprintf(what, sizeof what, "argmax %lldx%lld B=%d%s pmax", (long long)N, (long long)U, B, ties ? " ties" : "");
    if (with_pmax) chk(F(&pmax), to_f(pref, N * nb), (size_t)(N * nb), 1e-5, 1e-7, what);
    print_message("  argmax %lldx%lld B=%d%s: selection identical\n", (long long)N, (long long)U, B,
                  ties ? " ties" : "");
    free(t), free(pr), free(pref);
}

static void test_block_argmax(void **state) {
    (void)state;
    check_argmax(11, 48, 8, 0, 1, 500);
    check_argmax(11, 48, 8, 1, 1, 510); /* ties: the lower index */
    check_argmax(11, 48, 8, 0, 0, 520); /* no pmax */
    check_argmax(4, 33, 33, 0, 1, 530); /* one block */
    check_argmax(4, 10, 1, 0, 1, 540);  /* blocks of one: pmax = 1 */
    check_argmax(400, 96, 3, 0, 1, 550); /* threaded */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_select_forward, tf_free_all),
        cmocka_unit_test_teardown(test_select_ties, tf_free_all),
        cmocka_unit_test_teardown(test_select_backward, tf_free_all),
        cmocka_unit_test_teardown(test_select_backward_fd, tf_free_all),
        cmocka_unit_test_teardown(test_block_argmax, tf_free_all),
    };
    return cmocka_run_group_tests(tests, tf_setup_cpu, NULL);
}
