/*
 * tests/test_pkm_topk.c — the pkm plugin's own product-key kernels on the CPU
 * (pkm_product_topk, pkm_product_topk_backward; plugins/ffn_pkm/pkm_topk.h)
 * against brute force.
 *
 *   - pair level: for each (token, head) the winners are the first k of all
 *     k² pairs (a, b) sorted by v1[a] + v2[b] descending, ties to the lower
 *     a*k + b (the pair met first in (a, b) order): pair and slot exactly,
 *     w = the softmax of their scores (3e-6 relative), on random lists and
 *     on lists of a few distinct values (ties everywhere);
 *   - key level: with v, ix the top-k of sub-key scores s1, s2 (the host's
 *     topk), the slots are the top-k of s1[i] + s2[j] over all n_keys²
 *     keys (distinct scores), as the memory layer relies on;
 *   - backward: g and gix against a naive accumulation (1e-6; gix exactly);
 *   - the results do not depend on the thread count (bit for bit).
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "pkm_topk.h"

#include "backend.h"
#include "ffnlab/rng.h"

/* The plugin's kernels through the CPU host; any error fails the test. */
static void product_topk(const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys, fl_tensor *w, fl_tensor *slot,
                         fl_tensor *pair) {
    fl_error err = {0};
    ts_assert_ok(pkm_product_topk(&tf_host, v, ix, H, n_keys, w, slot, pair, &err), &err);
}

static void product_topk_backward(const fl_tensor *ds, const fl_tensor *pair, const fl_tensor *ix, int H, fl_tensor *g,
                                  fl_tensor *gix) {
    fl_error err = {0};
    ts_assert_ok(pkm_product_topk_backward(&tf_host, ds, pair, ix, H, g, gix, &err), &err);
}


/* One layer call's inputs: v, ix [2H,N,k] sorted lists of sub-key scores
   and distinct sub-key indices in [0, n_keys). */
typedef struct lists {
    int64_t N, k, n_keys;
    int H;
    fl_tensor v, ix;
} lists;

static int cmp_float_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* levels > 0: values drawn from {0, 1, .., levels-1} (ties); else uniform */
static lists make_lists(int64_t N, int H, int64_t k, int64_t n_keys, int levels, uint64_t seed) {
    lists L = {N, k, n_keys, H, f3(2 * H, N, k), tnew(FL_I32, 3, 2 * H, N, k, 1)};
    rnd(&L.v, seed, -2, 2);
    int32_t *perm = malloc((size_t)n_keys * sizeof *perm);
    for (int64_t r = 0; r < 2 * H * N; r++) {
        float *row = F(&L.v) + r * k;
        if (levels > 0)
            for (int64_t a = 0; a < k; a++) row[a] = floorf((row[a] + 2.0f) * (float)levels / 4.0f);
        qsort(row, (size_t)k, sizeof *row, cmp_float_desc);
        for (int64_t i = 0; i < n_keys; i++) perm[i] = (int32_t)i; /* k distinct indices */
        for (int64_t a = 0; a < k; a++) {
            const int64_t j = a + (int64_t)(fl_rng_bits(seed + 1, (uint64_t)(r * k + a)) % (uint64_t)(n_keys - a));
            const int32_t t = perm[a];
            perm[a] = perm[j], perm[j] = t;
            I(&L.ix)[r * k + a] = perm[a];
        }
    }
    free(perm);
    return L;
}

/* The k best of the k² pairs of (n, h): bp[j] = a*k + b, best first. */
static const float *g_v1, *g_v2;
static int64_t g_k;
static int cmp_pairs(const void *pa, const void *pb) {
    const int32_t p = *(const int32_t *)pa, q = *(const int32_t *)pb;
    const float sp = g_v1[p / g_k] + g_v2[p % g_k], sq = g_v1[q / g_k] + g_v2[q % g_k];
    if (sp != sq) return sp > sq ? -1 : 1;
    return (p > q) - (p < q);
}

static void brute_pairs(const lists *L, int64_t n, int h, int32_t *order) {
    const int64_t k = L->k, o1 = ((int64_t)(2 * h) * L->N + n) * k, o2 = o1 + L->N * k;
    g_v1 = F(&L->v) + o1, g_v2 = F(&L->v) + o2, g_k = k;
    for (int64_t p = 0; p < k * k; p++) order[p] = (int32_t)p;
    qsort(order, (size_t)(k * k), sizeof *order, cmp_pairs);
}

static void check_pairs(int64_t N, int H, int64_t k, int64_t n_keys, int levels, uint64_t seed) {
    lists L = make_lists(N, H, k, n_keys, levels, seed);
    const int64_t hk = H * k;
    fl_tensor w = f2(N, hk), slot = i2(N, hk), pair = i2(N, hk);
    product_topk(&L.v, &L.ix, H, n_keys, &w, &slot, &pair);
    int32_t *order = malloc((size_t)(k * k) * sizeof *order);
    double *wref = malloc((size_t)(N * hk) * sizeof *wref);
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            brute_pairs(&L, n, h, order);
            const int64_t o = n * hk + h * k, o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k;
            double z = 0;
            for (int64_t j = 0; j < k; j++) {
                const int a = order[j] / (int)k, b = order[j] % (int)k;
                if (I(&pair)[o + j] != (a << 16 | b))
                    fail_msg("token %lld head %d rank %lld: pair (%d, %d), brute force (%d, %d)", (long long)n, h,
                             (long long)j, I(&pair)[o + j] >> 16, I(&pair)[o + j] & 0xffff, a, b);
                assert_int_equal(I(&slot)[o + j], I(&L.ix)[o1 + a] * n_keys + I(&L.ix)[o2 + b]);
                wref[o + j] = exp((double)(g_v1[a] + g_v2[b]) - (double)(g_v1[order[0] / k] + g_v2[order[0] % k]));
                z += wref[o + j];
            }
            for (int64_t j = 0; j < k; j++) wref[o + j] /= z;
        }
    char what[96];
    snprintf(what, sizeof what, "product_topk N=%lld H=%d k=%lld%s w", (long long)N, H, (long long)k,
             levels ? " (ties)" : "");
    chk(F(&w), to_f(wref, N * hk), (size_t)(N * hk), 3e-6, 1e-7, what);
    free(order);
    free(wref);
}

static void test_product_topk_pairs(void **state) {
    (void)state;
    check_pairs(7, 1, 1, 5, 0, 1);    /* k = 1 */
    check_pairs(9, 2, 5, 11, 0, 2);
    check_pairs(6, 3, 8, 8, 0, 3);    /* k = n_keys */
    check_pairs(5, 4, 32, 64, 0, 4);  /* the bench's knn */
    check_pairs(8, 2, 6, 9, 3, 5);    /* three distinct values: ties everywhere */
    check_pairs(8, 2, 13, 20, 2, 6);
    check_pairs(4, 1, 9, 9, 1, 7);    /* all equal: the first k pairs in (a, b) order */
}

/* Sub-key scores → topk → product_topk gives the top-k of all n_keys² sums. */
static void test_product_topk_is_full_topk(void **state) {
    (void)state;
    const int64_t N = 6, K = 40, k = 7;
    const int H = 2;
    fl_tensor s = f3(2 * H, N, K), v = f3(2 * H, N, k), ix = tnew(FL_I32, 3, 2 * H, N, k, 1);
    rnd(&s, 20, -1, 1);
    fl_tensor s2 = fl_view2(&s, 2 * H * N, K), v2 = fl_view2(&v, 2 * H * N, k), ix2 = fl_view2(&ix, 2 * H * N, k);
    tf_ops->topk(&s2, (int)k, &v2, &ix2);
    fl_tensor w = f2(N, H * k), slot = i2(N, H * k), pair = i2(N, H * k);
    product_topk(&v, &ix, H, K, &w, &slot, &pair);
    float *sum = malloc((size_t)(K * K) * sizeof *sum);
    int checked = 0;
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            const float *r1 = F(&s) + ((int64_t)(2 * h) * N + n) * K, *r2 = r1 + N * K;
            for (int64_t i = 0; i < K * K; i++) sum[i] = r1[i / K] + r2[i % K];
            qsort(sum, (size_t)(K * K), sizeof *sum, cmp_float_desc);
            for (int64_t j = 0; j < k; j++) {
                const int32_t sl = I(&slot)[n * H * k + h * k + j];
                assert_float_equal(r1[sl / K] + r2[sl % K], sum[j], 0);
                checked++;
            }
        }
    print_message("  %d slots equal the top-%lld of all %lld keys\n", checked, (long long)k, (long long)(K * K));
    free(sum);
}

static void test_product_topk_backward(void **state) {
    (void)state;
    const int64_t N = 11, k = 6, n_keys = 10;
    const int H = 3;
    const int64_t hk = H * k;
    lists L = make_lists(N, H, k, n_keys, 2, 30); /* ties: winners share positions */
    fl_tensor w = f2(N, hk), slot = i2(N, hk), pair = i2(N, hk), ds = f2(N, hk);
    product_topk(&L.v, &L.ix, H, n_keys, &w, &slot, &pair);
    rnd(&ds, 31, -1, 1);
    fl_tensor g = f3(2 * H, N, k), gix = tnew(FL_I32, 3, 2 * H, N, k, 1);
    tf_ops->fill(&g, NAN); /* fully overwritten */
    product_topk_backward(&ds, &pair, &L.ix, H, &g, &gix);
    double *gref = calloc((size_t)(2 * H * N * k), sizeof *gref);
    int32_t *iref = malloc((size_t)(2 * H * N * k) * sizeof *iref);
    for (int64_t i = 0; i < 2 * H * N * k; i++) iref[i] = -1;
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int64_t j = 0; j < k; j++) {
                const int32_t p = I(&pair)[n * hk + h * k + j];
                const int64_t o1 = ((int64_t)(2 * h) * N + n) * k + (p >> 16), o2 = ((int64_t)(2 * h + 1) * N + n) * k + (p & 0xffff);
                gref[o1] += F(&ds)[n * hk + h * k + j];
                gref[o2] += F(&ds)[n * hk + h * k + j];
                iref[o1] = I(&L.ix)[o1];
                iref[o2] = I(&L.ix)[o2];
            }
    chk(F(&g), to_f(gref, 2 * H * N * k), (size_t)(2 * H * N * k), 1e-6, 1e-7, "product_topk_backward g");
    assert_memory_equal(I(&gix), iref, (size_t)(2 * H * N * k) * sizeof *iref);
    int unused = 0;
    for (int64_t i = 0; i < 2 * H * N * k; i++) unused += iref[i] < 0;
    print_message("  gix exact (%d of %lld positions unused: -1)\n", unused, (long long)(2 * H * N * k));
    assert_true(unused > 0);
    free(gref);
    free(iref);
}

/* Large enough to go parallel: 1 and 3 threads give the same bits. */
static void test_threads_do_not_change_results(void **state) {
    (void)state;
    const int64_t N = 3000, k = 16, n_keys = 50;
    const int H = 4;
    const int64_t hk = H * k;
    lists L = make_lists(N, H, k, n_keys, 0, 40);
    fl_tensor w[2], slot[2], pair[2], g[2], gix[2], ds = f2(N, hk);
    rnd(&ds, 41, -1, 1);
    const int nt = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        w[r] = f2(N, hk), slot[r] = i2(N, hk), pair[r] = i2(N, hk);
        g[r] = f3(2 * H, N, k), gix[r] = tnew(FL_I32, 3, 2 * H, N, k, 1);
        omp_set_num_threads(r ? 3 : 1);
        product_topk(&L.v, &L.ix, H, n_keys, &w[r], &slot[r], &pair[r]);
        product_topk_backward(&ds, &pair[r], &L.ix, H, &g[r], &gix[r]);
    }
    omp_set_num_threads(nt);
    assert_memory_equal(w[0].data, w[1].data, fl_nbytes(&w[0]));
    assert_memory_equal(slot[0].data, slot[1].data, fl_nbytes(&slot[0]));
    assert_memory_equal(pair[0].data, pair[1].data, fl_nbytes(&pair[0]));
    assert_memory_equal(g[0].data, g[1].data, fl_nbytes(&g[0]));
    assert_memory_equal(gix[0].data, gix[1].data, fl_nbytes(&gix[0]));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_product_topk_pairs, tf_free_all),
        cmocka_unit_test_teardown(test_product_topk_is_full_topk, tf_free_all),
        cmocka_unit_test_teardown(test_product_topk_backward, tf_free_all),
        cmocka_unit_test_teardown(test_threads_do_not_change_results, tf_free_all),
    };
    return cmocka_run_group_tests(tests, tf_setup_cpu, NULL);
}
