/*
 * tests/test_cpu_topk.c — the CPU backend's top-k (fl_ops.topk) against a
 * brute-force reference, over the shapes that pick each of its algorithms
 * (insertion, rank counting, partial quicksort) and the boundaries between
 * them.
 *
 * The contract: per row of x[N,M], the k largest values descending, ties to
 * the lower index first, -0 == +0 (a tie). Rows mix many ties, +-inf, signed
 * zeros and subnormals; the result must be exactly the reference's (indices
 * equal, values bit-identical to x[idx]). A row holding a NaN has no order;
 * its result is the insertion rule's (a NaN enters only a buffer that is not
 * full yet), which the reference transcribes.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "backend.h"


/* ----------------------------------------------------------- references */

static const float *g_row;

/* value descending, then index ascending: a total order on rows without NaN */
static int cmp_desc(const void *a, const void *b) {
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (g_row[i] != g_row[j]) return g_row[i] > g_row[j] ? -1 : 1;
    return i - j;
}

/* ix[k] of x[M] without NaN: the first k of all indices sorted */
static void ref_sorted(const float *x, int64_t M, int k, int32_t *ix) {
    int32_t *order = malloc((size_t)M * sizeof *order);
    for (int64_t j = 0; j < M; j++) order[j] = (int32_t)j;
    g_row = x;
    qsort(order, (size_t)M, sizeof *order, cmp_desc);
    memcpy(ix, order, (size_t)k * sizeof *ix);
    free(order);
}

/* ix[k] of x[M] with NaN: the insertion rule, one element at a time */
static void ref_insertion(const float *x, int64_t M, int k, int32_t *ix) {
    float *v = malloc((size_t)k * sizeof *v);
    int cnt = 0;
    for (int64_t j = 0; j < M; j++) {
        if (cnt == k && !(x[j] > v[k - 1])) continue;
        int p = cnt < k ? cnt++ : k - 1;
        for (; p > 0 && v[p - 1] < x[j]; p--) v[p] = v[p - 1], ix[p] = ix[p - 1];
        v[p] = x[j], ix[p] = (int32_t)j;
    }
    free(v);
}

static int has_nan(const float *x, int64_t M) {
    for (int64_t j = 0; j < M; j++)
        if (isnan(x[j])) return 1;
    return 0;
}

/* ---------------------------------------------------------------- rows */

enum { ROW_UNIFORM, ROW_TIES, ROW_SPECIAL, ROW_ASCENDING, ROW_DESCENDING, ROW_EQUAL, ROW_KINDS };

static uint64_t g_state;
static uint32_t next_u32(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_state >> 33);
}

/* x[M] of one kind: uniform, few distinct values (many ties), ties among
   +-inf / +-0 / subnormals, sorted either way, or all equal */
static void fill_row(float *x, int64_t M, int kind) {
    static const float special[] = {-INFINITY, INFINITY, 0.0f, -0.0f, 1e-40f, -1e-40f, 1.0f, -1.0f, 2.0f};
    for (int64_t j = 0; j < M; j++) {
        const float u = (float)(next_u32() >> 8) / 16777216.0f * 2.0f - 1.0f;
        switch (kind) {
        case ROW_UNIFORM: x[j] = u; break;
        case ROW_TIES: x[j] = floorf(u * 3.0f); break;
        case ROW_SPECIAL: x[j] = special[next_u32() % (sizeof special / sizeof *special)]; break;
        case ROW_ASCENDING: x[j] = (float)j; break;
        case ROW_DESCENDING: x[j] = (float)(M - j); break;
        default: x[j] = -INFINITY; break;
        }
    }
}

/* N rows of M (row i of kind (i + kind0) % ROW_KINDS); nan_every > 0 puts a
   NaN into every nan_every-th row at a random column. */
static fl_tensor make_rows(int64_t N, int64_t M, uint64_t seed, int kind0, int nan_every) {
    fl_tensor x = f2(N, M);
    g_state = seed;
    for (int64_t i = 0; i < N; i++) {
        fill_row(F(&x) + i * M, M, (int)((i + kind0) % ROW_KINDS));
        if (nan_every > 0 && i % nan_every == 0) F(&x)[i * M + next_u32() % M] = NAN;
    }
    return x;
}

/* tf_ops->topk against the reference, every row */
static void check_topk(const fl_tensor *x, int k) {
    const int64_t N = x->shape[0], M = x->shape[1];
    fl_tensor v = f2(N, k), ix = i2(N, k);
    tf_ops->topk(x, k, &v, &ix);
    int32_t *want = malloc((size_t)k * sizeof *want);
    for (int64_t i = 0; i < N; i++) {
        const float *row = F(x) + i * M;
        if (has_nan(row, M))
            ref_insertion(row, M, k, want);
        else
            ref_sorted(row, M, k, want);
        for (int j = 0; j < k; j++) {
            const int32_t got = I(&ix)[i * k + j];
            if (got != want[j])
                fail_msg("M=%lld k=%d row %lld slot %d: index %d, want %d", (long long)M, k, (long long)i, j,
                         got, want[j]);
            if (memcmp(&F(&v)[i * k + j], &row[want[j]], sizeof(float)) != 0)
                fail_msg("M=%lld k=%d row %lld slot %d: value not x[idx] bit for bit", (long long)M, k,
                         (long long)i, j);
        }
    }
    free(want);
}

/* ---------------------------------------------------------------- tests */

/* every k of short rows: router widths, PKM sub-key rows, the rank-counting
   limit (128) and past it */
static void test_topk_every_k(void **state) {
    (void)state;
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 7, 8, 16, 31, 33, 56, 64, 100, 128, 129, 200};
    for (size_t m = 0; m < sizeof Ms / sizeof *Ms; m++) {
        const fl_tensor x = make_rows(2 * ROW_KINDS, Ms[m], 100 + m, 0, 0);
        for (int k = 1; k <= Ms[m]; k++) check_topk(&x, k);
    }
}

/* k around 32 (the old insertion limit) and at the choice boundaries of
   insertion (8 k^2 < M) on mid-size rows */
static void test_topk_boundaries(void **state) {
    (void)state;
    static const int64_t Ms[] = {64, 127, 128, 129, 500, 512, 1024, 4096};
    static const int ks[] = {1, 2, 3, 7, 8, 11, 12, 22, 23, 31, 32, 33, 42, 64};
    for (size_t m = 0; m < sizeof Ms / sizeof *Ms; m++) {
        const fl_tensor x = make_rows(3 * ROW_KINDS, Ms[m], 200 + m, (int)m, 0);
        for (size_t c = 0; c < sizeof ks / sizeof *ks; c++)
            if (ks[c] <= Ms[m]) check_topk(&x, ks[c]);
    }
}

/* vocabulary-sized rows (top-k sampling) */
static void test_topk_large_rows(void **state) {
    (void)state;
    const fl_tensor x = make_rows(ROW_KINDS, 50257, 300, 0, 0);
    static const int ks[] = {1, 40, 128, 1000};
    for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) check_topk(&x, ks[c]);
}

/* many rows, so the OpenMP loop splits them (the suite runs 2 threads) */
static void test_topk_threaded(void **state) {
    (void)state;
    const fl_tensor x = make_rows(2000, 64, 400, 0, 0);
    check_topk(&x, 32);
    check_topk(&x, 2);
    const fl_tensor y = make_rows(300, 196, 401, 0, 0);
    check_topk(&y, 14);
}

/* rows with a NaN keep the insertion rule whichever algorithm the shape picks */
static void test_topk_nan(void **state) {
    (void)state;
    static const int64_t Ms[] = {8, 64, 128, 500, 5000};
    static const int ks[] = {1, 3, 8, 32, 33, 42};
    for (size_t m = 0; m < sizeof Ms / sizeof *Ms; m++) {
        const fl_tensor x = make_rows(2 * ROW_KINDS, Ms[m], 500 + m, 0, 2);
        for (size_t c = 0; c < sizeof ks / sizeof *ks; c++)
            if (ks[c] <= Ms[m]) check_topk(&x, ks[c]);
    }
    /* a NaN first: it takes slot 0 of the empty buffer, and stays there */
    fl_tensor x = f2(1, 64), v = f2(1, 32), ix = i2(1, 32);
    for (int j = 0; j < 64; j++) F(&x)[j] = (float)j;
    F(&x)[0] = NAN;
    tf_ops->topk(&x, 32, &v, &ix);
    assert_int_equal(I(&ix)[0], 0);
    assert_true(isnan(F(&v)[0]));
    assert_int_equal(I(&ix)[1], 63);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_topk_every_k, tf_free_all),
        cmocka_unit_test_teardown(test_topk_boundaries, tf_free_all),
        cmocka_unit_test_teardown(test_topk_large_rows, tf_free_all),
        cmocka_unit_test_teardown(test_topk_threaded, tf_free_all),
        cmocka_unit_test_teardown(test_topk_nan, tf_free_all),
    };
    return cmocka_run_group_tests(tests, tf_setup_cpu, NULL);
}
