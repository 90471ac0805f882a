/*
 * tests/test_cpu_gemm_tn.c — the CPU backend's second path for weight
 * gradients: products C = alpha Aᵀ·B + beta C (transposed first operand)
 * on OpenBLAS's OpenMP build instead of oneDNN (backends/cpu/cpu_blas.c),
 * chosen by FFNLAB_CPU_GEMM_TN = auto | onednn | openblas.
 *
 * - A bad value, a library that cannot be loaded and a library that is not
 *   OpenBLAS are refused when the backend is set up, each with one line
 *   naming the variable and the cause.
 * - Forced onto OpenBLAS (skipped when libopenblas0-openmp is missing), the
 *   backend names it, and its Aᵀ·B products match a double reference on odd
 *   small shapes, at a training step's weight-gradient shape, inside an
 *   OpenMP parallel region (attention's per-head products), and give the
 *   same bits on every run.
 *
 * The order matters: a refused choice leaves the path unchosen, the forced
 * choice then holds for the rest of the process.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "backend.h"

/* fl_cpu_set_precision is where a backend selection checks the choice. */
static void expect_refused(const char *tn, const char *lib, fl_status code, const char *text) {
    setenv("FFNLAB_CPU_GEMM_TN", tn, 1);
    if (lib) setenv("FFNLAB_OPENBLAS", lib, 1);
    else unsetenv("FFNLAB_OPENBLAS");
    fl_error err = {0};
    assert_int_equal(fl_cpu_set_precision("fp32", &err), code);
    print_message("FFNLAB_CPU_GEMM_TN=%s%s%s: %s\n", tn, lib ? " FFNLAB_OPENBLAS=" : "", lib ? lib : "", err.msg);
    assert_non_null(strstr(err.msg, text));
}

static void test_bad_choices_are_refused(void **state) {
    (void)state;
    expect_refused("fast", NULL, FL_EINVAL, "FFNLAB_CPU_GEMM_TN=fast: expected auto, onednn or openblas");
    expect_refused("openblas", "/nonexistent/libopenblas.so.0", FL_EUNSUPPORTED,
                   "FFNLAB_CPU_GEMM_TN=openblas: cannot load /nonexistent/libopenblas.so.0");
    expect_refused("openblas", "libm.so.6", FL_EUNSUPPORTED, "FFNLAB_CPU_GEMM_TN=openblas: libm.so.6 is not OpenBLAS");
    unsetenv("FFNLAB_OPENBLAS");
}

/* C[M,N] = alpha Aᵀ B + beta C0 in double, A [K,M], B [K,N] */
static void tn_ref(int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B, float beta,
                   const float *C0, double *out) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)A[k * M + i] * B[k * N + j];
            out[i * N + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C0[i * N + j]);
        }
}

static void check_tn(int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    fl_tensor A, B, C, C0;
    tf_gemm_inputs(1, 0, M, N, K, beta, &A, &B, &C, &C0);
    double *ref = malloc((size_t)(M * N) * sizeof *ref);
    tn_ref(M, N, K, alpha, F(&A), F(&B), beta, F(&C0), ref);
    tf_ops->gemm(1, 0, alpha, &A, &B, beta, &C);
    char what[96];
    snprintf(what, sizeof what, "Aᵀ·B %lldx%lldx%lld a=%g b=%g", (long long)M, (long long)N, (long long)K, alpha,
             beta);
    /* fp32 sums of K terms of order 1: rounding grows like sqrt(K) */
    chk(F(&C), to_f(ref, M * N), (size_t)(M * N), 1e-5, 1e-6 * sqrt((double)K), what);
    free(ref);
}

/* Forces OpenBLAS; skips the test when its OpenMP build is not installed. */
static void use_openblas(void) {
    setenv("FFNLAB_CPU_GEMM_TN", "openblas", 1);
    fl_error err = {0};
    if (fl_cpu_set_precision("fp32", &err) != FL_OK) {
        print_message("skipped: %s\n", err.msg);
        skip();
    }
}

static void test_openblas_is_named(void **state) {
    (void)state;
    use_openblas();
    print_message("backend: %s\n", tf_be->describe());
    assert_non_null(strstr(tf_be->describe(), ", weight gradients (Aᵀ·B) on OpenBLAS "));
}

static void test_openblas_products_match_reference(void **state) {
    (void)state;
    use_openblas();
    const int64_t shapes[][3] = {{7, 13, 5}, {33, 17, 29}, {1, 1, 1}, {64, 9, 70}, {5, 40, 1}, {130, 66, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        check_tn(shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
        check_tn(shapes[s][0], shapes[s][1], shapes[s][2], 0.7f, 0.3f);
    }
    /* an FFN's dW at a training step's shape: [d_ff, d] += dYᵀ[tokens, d_ff]ᵀ X[tokens, d] */
    check_tn(512, 128, 2048, 1.0f, 1.0f);
}

/* Attention runs one product per head inside a parallel region: the OpenMP
   build must run each on its own thread, not start a team of its own. */
static void test_openblas_inside_a_parallel_region(void **state) {
    (void)state;
    use_openblas();
    enum { HEADS = 4, M = 24, N = 16, K = 40 };
    fl_tensor A[HEADS], B[HEADS], C[HEADS], C0[HEADS];
    for (int h = 0; h < HEADS; h++) tf_gemm_inputs(1, 0, M, N, K, 1.0f, &A[h], &B[h], &C[h], &C0[h]);
#pragma omp parallel for num_threads(2)
    for (int h = 0; h < HEADS; h++) tf_ops->gemm(1, 0, 1.0f, &A[h], &B[h], 1.0f, &C[h]);
    double ref[M * N];
    for (int h = 0; h < HEADS; h++) {
        tn_ref(M, N, K, 1.0f, F(&A[h]), F(&B[h]), 1.0f, F(&C0[h]), ref);
        chk(F(&C[h]), to_f(ref, M * N), M * N, 1e-5, 1e-5, "Aᵀ·B per head in a parallel region");
    }
}

static void test_openblas_is_deterministic(void **state) {
    (void)state;
    use_openblas();
    const int64_t M = 256, N = 96, K = 1500;
    fl_tensor A, B, C, C0;
    tf_gemm_inputs(1, 0, M, N, K, 0.0f, &A, &B, &C, &C0);
    fl_tensor first = f2(M, N);
    tf_ops->gemm(1, 0, 1.0f, &A, &B, 0.0f, &first);
    for (int run = 0; run < 3; run++) {
        tf_ops->gemm(1, 0, 1.0f, &A, &B, 0.0f, &C);
        assert_memory_equal(F(&C), F(&first), (size_t)(M * N) * sizeof(float));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bad_choices_are_refused, tf_free_all),
        cmocka_unit_test_teardown(test_openblas_is_named, tf_free_all),
        cmocka_unit_test_teardown(test_openblas_products_match_reference, tf_free_all),
        cmocka_unit_test_teardown(test_openblas_inside_a_parallel_region, tf_free_all),
        cmocka_unit_test_teardown(test_openblas_is_deterministic, tf_free_all),
    };
    return cmocka_run_group_tests_name("cpu_gemm_tn", tests, tf_setup_cpu, NULL);
}
