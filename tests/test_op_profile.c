/*
 * tests/test_op_profile.c — the timed host ops table (core/op_profile.c)
 * over the CPU backend:
 *  - every op the backend has is wrapped, and an op it lacks stays NULL;
 *  - a wrapped op computes exactly what the backend's does, attached or not;
 *  - attaching measures the wait for an idle device (next to nothing on the
 *    CPU); detached, nothing is counted; attached, each call counts once, with its
 *    wall time, and the GEMM ops their FLOPs (2·M·N·K: plain in every
 *    transpose, batched, grouped over the rows the offsets cover, grouped
 *    weight gradients); other ops count no FLOPs;
 *  - ops have names.
 */
#include <string.h>

#include "tensor_fixture.h"

#include "op_profile.h"

static fl_ops timed;

static int setup(void **state) {
    tf_setup_cpu(state);
    fl_op_profile_table(tf_be, &timed);
    return 0;
}

static void test_every_op_is_wrapped(void **state) {
    (void)state;
#define CHECK_WRAPPED(name)                                                \
    assert_true((timed.name != NULL) == (tf_be->ops.name != NULL));        \
    if (timed.name) assert_ptr_not_equal((void *)timed.name, (void *)tf_be->ops.name);
    FL_OP_NAMES(CHECK_WRAPPED)
#undef CHECK_WRAPPED
    assert_int_equal(timed.size, tf_be->ops.size);

    fl_backend lacking = *tf_be; /* a backend without hash_ids */
    lacking.ops.hash_ids = NULL;
    fl_ops t;
    fl_op_profile_table(&lacking, &t);
    assert_null(t.hash_ids);
    assert_non_null(t.gemm);
    fl_op_profile_table(tf_be, &timed);
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(fl_op_name(FL_OP_gemm), "gemm");
    assert_string_equal(fl_op_name(FL_OP_gemm_grouped_wgrad), "gemm_grouped_wgrad");
    assert_string_equal(fl_op_name(FL_OP_hash_ids), "hash_ids");
    assert_string_equal(fl_op_name(FL_OP_COUNT), "?");
    assert_string_equal(fl_op_name(-1), "?");
}

/* C = op(A) op(B) through the timed table and the backend's: the same bits. */
static void gemm_both_ways(int ta, int tb, int64_t M, int64_t N, int64_t K) {
    fl_tensor A, B, C, C0;
    tf_gemm_inputs(ta, tb, M, N, K, 0.5f, &A, &B, &C, &C0);
    fl_tensor D = clone(&C0);
    timed.gemm(ta, tb, 1.0f, &A, &B, 0.5f, &C);
    tf_be->ops.gemm(ta, tb, 1.0f, &A, &B, 0.5f, &D);
    assert_memory_equal(C.data, D.data, (size_t)(M * N) * sizeof(float));
}

static void test_detached_forwards_and_counts_nothing(void **state) {
    (void)state;
    fl_op_profile p = {0}, zero = {0};
    fl_op_profile_attach(&p);
    fl_op_profile_attach(NULL);
    assert_true(p.wait_s >= 0 && p.wait_s < 1e-3); /* measured at attach: no device to wait for */
    p.wait_s = 0;
    gemm_both_ways(0, 1, 7, 9, 5);
    fl_tensor x = f2(3, 4);
    timed.fill(&x, 2.5f);
    for (int i = 0; i < 12; i++) assert_true(F(&x)[i] == 2.5f);
    assert_memory_equal(&p, &zero, sizeof p);
}

static void test_gemm_flops_in_every_transpose(void **state) {
    (void)state;
    fl_op_profile p = {0};
    fl_op_profile_attach(&p);
    const int64_t M = 33, N = 17, K = 65;
    double want = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_both_ways(ta, tb, M, N, K);
            want += 2.0 * M * N * K;
        }
    fl_op_profile_attach(NULL);
    assert_int_equal(p.calls[FL_OP_gemm], 4);
    assert_true(p.flops[FL_OP_gemm] == want);
    assert_true(p.seconds[FL_OP_gemm] > 0);
    for (int op = 0; op < FL_OP_COUNT; op++)
        if (op != FL_OP_gemm) assert_int_equal(p.calls[op], 0);
}

static void test_batched_and_grouped_flops(void **state) {
    (void)state;
    fl_op_profile p = {0};
    fl_op_profile_attach(&p);
    /* batched: 3 products of [5,6]·[6,4], then again with A stored transposed */
    fl_tensor A = f3(3, 5, 6), B = f3(3, 6, 4), C = f3(3, 5, 4), At = f3(3, 6, 5);
    rnd(&A, 1, -1, 1), rnd(&B, 2, -1, 1), rnd(&At, 3, -1, 1);
    timed.gemm_batched(0, 0, 1.0f, &A, &B, 0.0f, &C);
    timed.gemm_batched(1, 0, 1.0f, &At, &B, 0.0f, &C);
    assert_int_equal(p.calls[FL_OP_gemm_batched], 2);
    assert_true(p.flops[FL_OP_gemm_batched] == 2 * (2.0 * 3 * 5 * 4 * 6));

    /* grouped: 10 rows of X[10,6], groups of 4, 0 and 5 rows (one row left
       out), W[3,6,8]: 9 rows of 6·8 products; W transposed the same */
    const int64_t off[4] = {0, 4, 4, 9};
    fl_tensor X = f2(10, 6), W = f3(3, 6, 8), Wt = f3(3, 8, 6), Y = f2(10, 8), dW = f3(3, 6, 8);
    rnd(&X, 4, -1, 1), rnd(&W, 5, -1, 1), rnd(&Wt, 6, -1, 1);
    timed.gemm_grouped(0, 1.0f, &X, &W, off, 3, 0.0f, &Y);
    timed.gemm_grouped(1, 1.0f, &X, &Wt, off, 3, 0.0f, &Y);
    assert_int_equal(p.calls[FL_OP_gemm_grouped], 2);
    assert_true(p.flops[FL_OP_gemm_grouped] == 2 * (2.0 * 9 * 6 * 8));
    timed.gemm_grouped_wgrad(1.0f, &X, &Y, off, 3, 0.0f, &dW);
    assert_int_equal(p.calls[FL_OP_gemm_grouped_wgrad], 1);
    assert_true(p.flops[FL_OP_gemm_grouped_wgrad] == 2.0 * 9 * 6 * 8);

    timed.activation(FL_ACT_GELU, &Y, &Y); /* not a GEMM: a call, no FLOPs */
    fl_op_profile_attach(NULL);
    assert_int_equal(p.calls[FL_OP_activation], 1);
    assert_true(p.flops[FL_OP_activation] == 0);
    assert_true(p.seconds[FL_OP_activation] >= 0);
}

/* The grouped product through the timed table equals the backend's. */
static void test_grouped_result_unchanged(void **state) {
    (void)state;
    fl_op_profile p = {0};
    const int64_t off[3] = {0, 7, 12};
    fl_tensor X = f2(12, 9), W = f3(2, 9, 5), Y = f2(12, 5), Z = f2(12, 5);
    rnd(&X, 7, -1, 1), rnd(&W, 8, -1, 1);
    fl_op_profile_attach(&p);
    timed.gemm_grouped(0, 1.0f, &X, &W, off, 2, 0.0f, &Y);
    fl_op_profile_attach(NULL);
    tf_be->ops.gemm_grouped(0, 1.0f, &X, &W, off, 2, 0.0f, &Z);
    assert_memory_equal(Y.data, Z.data, sizeof(float) * 12 * 5);
    assert_int_equal(p.calls[FL_OP_gemm_grouped], 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_is_wrapped),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_detached_forwards_and_counts_nothing),
        cmocka_unit_test(test_gemm_flops_in_every_transpose),
        cmocka_unit_test(test_batched_and_grouped_flops),
        cmocka_unit_test(test_grouped_result_unchanged),
    };
    return cmocka_run_group_tests_name("op_profile", tests, setup, tf_free_all);
}
