/*
 * tests/test_cpu_blas.c — the CPU backend's other GEMM libraries
 * (backends/cpu/cpu_blas.c): weight gradients C = alpha Aᵀ·B + beta C on
 * OpenBLAS's OpenMP build (FFNLAB_CPU_GEMM_TN = auto | onednn | openblas) and
 * narrow products, A not transposed, on BLIS's OpenMP build
 * (FFNLAB_CPU_GEMM_NARROW = auto | onednn | blis), instead of oneDNN.
 *
 * - A bad value, a library that cannot be loaded and a library that is not
 *   the one asked for are refused when the backend is set up, each with one
 *   line naming the variable and the cause.
 * - Forced onto each library (its tests skip when its OpenMP build is not
 *   installed), the backend names it, and its products match a double
 *   reference on odd small shapes and at a training step's shape, inside an
 *   OpenMP parallel region (attention's per-head products), and give the
 *   same bits on every run.
 * - Forced onto the transposed route (registered again as
 *   test_cpu_blas_transposed, FFNLAB_TEST_BLAS_GROUP=transposed: every
 *   Aᵀ·B computed as (Bᵀ·A)ᵀ on oneDNN), the backend names it, and its
 *   products match the reference on odd shapes and a tall weight gradient,
 *   with beta 0 over NaN, inside a parallel region, with the same bits on
 *   every run.
 * - Forced into panels (test_cpu_blas_panels, FFNLAB_TEST_BLAS_GROUP=panels:
 *   every product left to oneDNN cut into panels of C, one per thread, of
 *   rows or, A transposed, of columns), the backend names it, and products
 *   of every transpose match the reference on odd shapes and at a training
 *   step's, with beta 0 over NaN, inside a parallel region, with the same
 *   bits on every run.
 * - Left to itself with oneDNN held below AVX-512 (test_cpu_blas_auto,
 *   FFNLAB_TEST_BLAS_GROUP=avx2), the backend takes each installed library for
 *   its kind, except BLIS in a sanitizer build that did not preload it
 *   (LeakSanitizer's crash at exit), and never the transposed route or panels.
 * - Left to itself on this CPU (test_cpu_blas_native, FFNLAB_TEST_BLAS_GROUP=
 *   native): where oneDNN runs AVX-512 kernels, tall weight gradients take
 *   the transposed route, narrow A·Bᵀ and Aᵀ·B of 192-384 rows run in panels
 *   (with two threads or more), and no library is loaded; elsewhere as above.
 *
 * The order matters: the refusals come first, then both libraries are forced
 * once, and that holds for the rest of the process (so each automatic choice
 * and each forced route need a process of their own).
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "backend.h"

/* fl_cpu_set_precision is where a backend selection checks the choices. */
static void expect_refused(const char *var, const char *value, const char *lib_var, const char *lib,
                           fl_status code, const char *text) {
    unsetenv("FFNLAB_CPU_GEMM_TN");
    unsetenv("FFNLAB_CPU_GEMM_NARROW");
    unsetenv("FFNLAB_CPU_GEMM_PANELS");
    setenv(var, value, 1);
    if (lib) setenv(lib_var, lib, 1);
    fl_error err = {0};
    assert_int_equal(fl_cpu_set_precision("fp32", &err), code);
    print_message("%s=%s%s%s%s%s: %s\n", var, value, lib ? " " : "", lib ? lib_var : "", lib ? "=" : "", lib ? lib : "",
                  err.msg);
    assert_non_null(strstr(err.msg, text));
    unsetenv(var);
    if (lib) unsetenv(lib_var);
}

static void test_bad_choices_are_refused(void **state) {
    (void)state;
    const char *tn = "FFNLAB_CPU_GEMM_TN", *narrow = "FFNLAB_CPU_GEMM_NARROW";
    expect_refused(tn, "fast", NULL, NULL, FL_EINVAL,
                   "FFNLAB_CPU_GEMM_TN=fast: expected auto, onednn, openblas or transposed");
    expect_refused(tn, "openblas", "FFNLAB_OPENBLAS", "/nonexistent/libopenblas.so.0", FL_EUNSUPPORTED,
                   "FFNLAB_CPU_GEMM_TN=openblas: cannot load /nonexistent/libopenblas.so.0");
    expect_refused(tn, "openblas", "FFNLAB_OPENBLAS", "libm.so.6", FL_EUNSUPPORTED,
                   "FFNLAB_CPU_GEMM_TN=openblas: libm.so.6 is not OpenBLAS");
    expect_refused(narrow, "blas", NULL, NULL, FL_EINVAL, "FFNLAB_CPU_GEMM_NARROW=blas: expected auto, onednn or blis");
    expect_refused(narrow, "blis", "FFNLAB_BLIS", "/nonexistent/libblis.so.4", FL_EUNSUPPORTED,
                   "FFNLAB_CPU_GEMM_NARROW=blis: cannot load /nonexistent/libblis.so.4");
    expect_refused(narrow, "blis", "FFNLAB_BLIS", "libm.so.6", FL_EUNSUPPORTED,
                   "FFNLAB_CPU_GEMM_NARROW=blis: libm.so.6 is not BLIS with its CBLAS interface");
    expect_refused("FFNLAB_CPU_GEMM_PANELS", "rows", NULL, NULL, FL_EINVAL,
                   "FFNLAB_CPU_GEMM_PANELS=rows: expected auto, off or on");
}

/* fp32 sums of K terms of order 1: rounding grows like sqrt(K) */
static void check_product(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    tf_check_gemm(ta, tb, M, N, K, alpha, beta, 1e-6 * sqrt((double)K));
}

/* Which libraries the process runs on from here: both forced when both are
   installed, else the one that is (the other then stays on oneDNN). */
static int g_forced, g_openblas, g_blis;

static void force_libraries(void) {
    if (g_forced) return;
    g_forced = 1;
    const char *tries[][2] = {{"openblas", "blis"}, {"openblas", "onednn"}, {"onednn", "blis"}};
    for (size_t t = 0; t < sizeof tries / sizeof *tries; t++) {
        setenv("FFNLAB_CPU_GEMM_TN", tries[t][0], 1);
        setenv("FFNLAB_CPU_GEMM_NARROW", tries[t][1], 1);
        fl_error err = {0};
        if (fl_cpu_set_precision("fp32", &err) == FL_OK) {
            g_openblas = !strcmp(tries[t][0], "openblas");
            g_blis = !strcmp(tries[t][1], "blis");
            return;
        }
        print_message("FFNLAB_CPU_GEMM_TN=%s FFNLAB_CPU_GEMM_NARROW=%s: %s\n", tries[t][0], tries[t][1], err.msg);
    }
}

static void use_openblas(void) {
    force_libraries();
    if (!g_openblas) {
        print_message("skipped: OpenBLAS's OpenMP build is not installed\n");
        skip();
    }
}

static void use_blis(void) {
    force_libraries();
    if (!g_blis) {
        print_message("skipped: BLIS's OpenMP build is not installed\n");
        skip();
    }
}

static void test_libraries_are_named(void **state) {
    (void)state;
    force_libraries();
    print_message("backend: %s\n", tf_be->describe());
    const char *desc = tf_be->describe();
    assert_int_equal(strstr(desc, ", weight gradients (Aᵀ·B) on OpenBLAS ") != NULL, g_openblas);
    assert_int_equal(strstr(desc, ", narrow products (N 224-256) on BLIS ") != NULL, g_blis);
}

static const int64_t g_odd_shapes[][3] = {{7, 13, 5}, {33, 17, 29}, {1, 1, 1}, {64, 9, 70}, {5, 40, 1}, {130, 66, 300}};

static void check_odd_shapes(int ta, int tb) {
    for (size_t s = 0; s < sizeof g_odd_shapes / sizeof *g_odd_shapes; s++) {
        check_product(ta, tb, g_odd_shapes[s][0], g_odd_shapes[s][1], g_odd_shapes[s][2], 1.0f, 0.0f);
        check_product(ta, tb, g_odd_shapes[s][0], g_odd_shapes[s][1], g_odd_shapes[s][2], 0.7f, 0.3f);
    }
}

static void test_openblas_products_match_reference(void **state) {
    (void)state;
    use_openblas();
    check_odd_shapes(1, 0);
    /* an FFN's dW at a training step's shape: [d_ff, d] += dYᵀ[tokens, d_ff]ᵀ X[tokens, d] */
    check_product(1, 0, 512, 128, 2048, 1.0f, 1.0f);
}

static void test_blis_products_match_reference(void **state) {
    (void)state;
    use_blis();
    check_odd_shapes(0, 0);
    check_odd_shapes(0, 1);
    /* an input gradient into a d_model of 256: dx[tokens, 256] = dy[tokens, d_ff] W[d_ff, 256] */
    check_product(0, 0, 300, 256, 1100, 1.0f, 0.0f);
    check_product(0, 1, 300, 256, 1100, 0.5f, 1.0f);
}

/* Attention runs one product per head inside a parallel region: an OpenMP
   build must run each on its own thread, not start a team of its own. */
static void check_in_parallel_region(int ta, int tb, const char *what) {
    enum { HEADS = 4, M = 24, N = 16, K = 40 };
    fl_tensor A[HEADS], B[HEADS], C[HEADS], C0[HEADS];
    for (int h = 0; h < HEADS; h++) tf_gemm_inputs(ta, tb, M, N, K, 1.0f, &A[h], &B[h], &C[h], &C0[h]);
#pragma omp parallel for num_threads(2)
    for (int h = 0; h < HEADS; h++) tf_ops->gemm(ta, tb, 1.0f, &A[h], &B[h], 1.0f, &C[h]);
    double ref[M * N];
    for (int h = 0; h < HEADS; h++) {
        tf_gemm_ref(ta, tb, M, N, K, 1.0f, F(&A[h]), F(&B[h]), 1.0f, F(&C0[h]), ref);
        chk(F(&C[h]), to_f(ref, M * N), M * N, 1e-5, 1e-5, what);
    }
}

static void test_openblas_inside_a_parallel_region(void **state) {
    (void)state;
    use_openblas();
    check_in_parallel_region(1, 0, "Aᵀ·B per head in a parallel region");
}

static void test_blis_inside_a_parallel_region(void **state) {
    (void)state;
    use_blis();
    check_in_parallel_region(0, 1, "A·Bᵀ per head in a parallel region");
}

static void check_deterministic(int ta, int tb, int64_t M, int64_t N, int64_t K) {
    fl_tensor A, B, C, C0;
    tf_gemm_inputs(ta, tb, M, N, K, 0.0f, &A, &B, &C, &C0);
    fl_tensor first = f2(M, N);
    tf_ops->gemm(ta, tb, 1.0f, &A, &B, 0.0f, &first);
    for (int run = 0; run < 3; run++) {
        tf_ops->gemm(ta, tb, 1.0f, &A, &B, 0.0f, &C);
        assert_memory_equal(F(&C), F(&first), (size_t)(M * N) * sizeof(float));
    }
}

static void test_openblas_is_deterministic(void **state) {
    (void)state;
    use_openblas();
    check_deterministic(1, 0, 256, 96, 1500);
}

static void test_blis_is_deterministic(void **state) {
    (void)state;
    use_blis();
    check_deterministic(0, 0, 300, 256, 1500);
}

/* ---- the transposed route (test_cpu_blas_transposed) ---- */

/* The backend set up with FFNLAB_CPU_GEMM_TN, _NARROW and _PANELS as given
   (NULL: unset, the automatic choice). */
static void choose_routes(const char *tn, const char *narrow, const char *panels) {
    const char *vars[] = {"FFNLAB_CPU_GEMM_TN", "FFNLAB_CPU_GEMM_NARROW", "FFNLAB_CPU_GEMM_PANELS"};
    const char *values[] = {tn, narrow, panels};
    for (int i = 0; i < 3; i++) {
        if (values[i]) setenv(vars[i], values[i], 1);
        else unsetenv(vars[i]);
    }
    fl_error err = {0};
    assert_int_equal(fl_cpu_set_precision("fp32", &err), FL_OK);
}

static void use_transposed(void) { choose_routes("transposed", "onednn", NULL); }

static void test_transposed_is_named(void **state) {
    (void)state;
    use_transposed();
    const char *desc = tf_be->describe();
    print_message("backend: %s\n", desc);
    assert_non_null(strstr(desc, ", weight gradients (Aᵀ·B) as (Bᵀ·A)ᵀ"));
    assert_null(strstr(desc, " on OpenBLAS "));
}

static void test_transposed_products_match_reference(void **state) {
    (void)state;
    use_transposed();
    check_odd_shapes(1, 0);
    /* an FFN's first layer's dW: [d_ff, d] (+)= dYᵀ[tokens, d_ff]ᵀ X[tokens, d] */
    check_product(1, 0, 1100, 130, 1030, 1.0f, 0.0f);
    check_product(1, 0, 1100, 130, 1030, 0.7f, 0.3f);
}

static void test_transposed_inside_a_parallel_region(void **state) {
    (void)state;
    use_transposed();
    check_in_parallel_region(1, 0, "Aᵀ·B as (Bᵀ·A)ᵀ per head in a parallel region");
}

static void test_transposed_is_deterministic(void **state) {
    (void)state;
    use_transposed();
    check_deterministic(1, 0, 1100, 130, 1500);
}

/* ---- panels, one per thread (test_cpu_blas_panels) ---- */

static void use_panels(void) { choose_routes("onednn", "onednn", "on"); }

static void test_panels_are_named(void **state) {
    (void)state;
    use_panels();
    const char *desc = tf_be->describe();
    print_message("backend: %s\n", desc);
    assert_non_null(strstr(desc, ", products in panels, one per thread"));
    assert_null(strstr(desc, " as (Bᵀ·A)ᵀ"));
}

static void test_panel_products_match_reference(void **state) {
    (void)state;
    use_panels();
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) check_odd_shapes(ta, tb);
    /* an input gradient into d_model: dx[tokens, 256] = dy[tokens, d_ff] W[256, d_ff]ᵀ (rows) */
    check_product(0, 1, 1100, 200, 700, 1.0f, 0.0f);
    check_product(0, 1, 1100, 200, 700, 0.7f, 0.3f);
    /* a weight gradient of d_model rows: dW[256, d_ff] += X[tokens, 256]ᵀ dY[tokens, d_ff] (columns) */
    check_product(1, 0, 250, 1100, 1030, 1.0f, 0.0f);
    check_product(1, 0, 250, 1100, 1030, 0.5f, 1.0f);
}

static void test_panels_inside_a_parallel_region(void **state) {
    (void)state;
    use_panels();
    check_in_parallel_region(0, 1, "A·Bᵀ in panels per head in a parallel region");
    check_in_parallel_region(1, 0, "Aᵀ·B in panels per head in a parallel region");
}

static void test_panels_are_deterministic(void **state) {
    (void)state;
    use_panels();
    check_deterministic(0, 1, 1100, 200, 700);
    check_deterministic(1, 0, 250, 1100, 1030);
}

/* ---- the automatic choice (test_cpu_blas_auto, test_cpu_blas_native) ---- */

/* Whether FFNLAB_TEST_INSTALLED, the libraries the build found, names lib. */
static int installed(const char *lib) {
    const char *s = getenv("FFNLAB_TEST_INSTALLED");
    return s && strstr(s, lib) != NULL;
}

/* The backend's description once it chose with nothing forced. */
static const char *choose_automatically(void) {
    choose_routes(NULL, NULL, NULL);
    const char *desc = tf_be->describe();
    print_message("backend: %s\n", desc);
    return desc;
}

/* Nothing forced, and oneDNN held to AVX2 kernels on every CPU
   (DNNL_MAX_CPU_ISA=AVX2_VNNI: AVX2-VNNI where the CPU has it, an ISA whose
   value reads above AVX-512's): each installed library takes its kind, BLIS
   in a sanitizer build only preloaded; products of the shapes the routes
   take come out right. */
static void test_auto_takes_installed_libraries(void **state) {
    (void)state;
    const char *desc = choose_automatically();
    assert_true(strstr(desc, ", ISA avx2,") || strstr(desc, ", ISA avx2_vnni,"));
    int blis = installed("blis");
#ifdef FFNLAB_TEST_SANITIZED
    const char *preload = getenv("LD_PRELOAD");
    blis = blis && preload && strstr(preload, "blis");
#endif
    assert_int_equal(strstr(desc, ", weight gradients (Aᵀ·B) on OpenBLAS ") != NULL, installed("openblas"));
    assert_int_equal(strstr(desc, ", narrow products (N 224-256) on BLIS ") != NULL, blis);
    assert_null(strstr(desc, "as (Bᵀ·A)ᵀ"));
    assert_null(strstr(desc, "in panels"));
    /* an FFN's dW; an input gradient into a d_model of 256 */
    check_product(1, 0, 512, 128, 2048, 1.0f, 1.0f);
    check_product(0, 0, 2048, 256, 512, 1.0f, 0.0f);
}

/* Nothing forced, oneDNN free: on AVX-512 kernels the tall weight gradients
   (M >= 1024 and >= 2N, N <= 512, K >= 1024) run transposed, narrow A·Bᵀ
   (N 128-512, 512 rows a thread) and Aᵀ·B of 192-384 rows (512 columns a
   thread, K >= 1024) in panels where there are two threads or more, and no
   library is loaded; on AVX2 ones, none of those. Products on either side
   of the rules come out right. */
static void test_native_choice(void **state) {
    (void)state;
    const char *desc = choose_automatically();
    const int avx512 = strstr(desc, ", ISA avx512") != NULL, threads = omp_get_max_threads();
    assert_int_equal(strstr(desc, ", tall weight gradients (Aᵀ·B, M >= 1024) as (Bᵀ·A)ᵀ") != NULL, avx512);
    assert_int_equal(strstr(desc, ", A·Bᵀ (N 128-512) and Aᵀ·B (M 192-384) in panels, one per thread") != NULL,
                     avx512 && threads > 1);
    if (avx512) assert_null(strstr(desc, " on OpenBLAS "));
    check_product(1, 0, 1024, 256, 1024, 1.0f, 0.0f); /* tall: an FFN fc's dW over 1024 tokens */
    check_product(1, 0, 1024, 256, 1024, 0.5f, 1.0f); /* ... its inner product in column panels */
    check_product(1, 0, 1023, 256, 1024, 1.0f, 1.0f); /* a row short of tall: an expert's dW */
    check_product(0, 1, 512 * threads, 256, 300, 1.0f, 0.0f); /* row panels: dx into d_model */
    check_product(0, 1, 512 * threads, 600, 300, 1.0f, 1.0f); /* too wide for them */
}

int main(void) {
    const char *group = getenv("FFNLAB_TEST_BLAS_GROUP"); /* unset: the forced libraries */
    if (group && !strcmp(group, "avx2")) {
        const struct CMUnitTest auto_tests[] = {
            cmocka_unit_test_teardown(test_auto_takes_installed_libraries, tf_free_all),
        };
        return cmocka_run_group_tests_name("cpu_blas_auto", auto_tests, tf_setup_cpu, NULL);
    }
    if (group && !strcmp(group, "native")) {
        const struct CMUnitTest native_tests[] = {
            cmocka_unit_test_teardown(test_native_choice, tf_free_all),
        };
        return cmocka_run_group_tests_name("cpu_blas_native", native_tests, tf_setup_cpu, NULL);
    }
    if (group && !strcmp(group, "transposed")) {
        const struct CMUnitTest transposed_tests[] = {
            cmocka_unit_test_teardown(test_transposed_is_named, tf_free_all),
            cmocka_unit_test_teardown(test_transposed_products_match_reference, tf_free_all),
            cmocka_unit_test_teardown(test_transposed_inside_a_parallel_region, tf_free_all),
            cmocka_unit_test_teardown(test_transposed_is_deterministic, tf_free_all),
        };
        return cmocka_run_group_tests_name("cpu_blas_transposed", transposed_tests, tf_setup_cpu, NULL);
    }
    if (group && !strcmp(group, "panels")) {
        const struct CMUnitTest panel_tests[] = {
            cmocka_unit_test_teardown(test_panels_are_named, tf_free_all),
            cmocka_unit_test_teardown(test_panel_products_match_reference, tf_free_all),
            cmocka_unit_test_teardown(test_panels_inside_a_parallel_region, tf_free_all),
            cmocka_unit_test_teardown(test_panels_are_deterministic, tf_free_all),
        };
        return cmocka_run_group_tests_name("cpu_blas_panels", panel_tests, tf_setup_cpu, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bad_choices_are_refused, tf_free_all),
        cmocka_unit_test_teardown(test_libraries_are_named, tf_free_all),
        cmocka_unit_test_teardown(test_openblas_products_match_reference, tf_free_all),
        cmocka_unit_test_teardown(test_blis_products_match_reference, tf_free_all),
        cmocka_unit_test_teardown(test_openblas_inside_a_parallel_region, tf_free_all),
        cmocka_unit_test_teardown(test_blis_inside_a_parallel_region, tf_free_all),
        cmocka_unit_test_teardown(test_openblas_is_deterministic, tf_free_all),
        cmocka_unit_test_teardown(test_blis_is_deterministic, tf_free_all),
    };
    return cmocka_run_group_tests_name("cpu_blas", tests, tf_setup_cpu, NULL);
}
