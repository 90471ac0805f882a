/*
 * tests/test_cuda_backend.c — the CUDA backend against the CPU backend, op by
 * op: every fl_ops entry and every model kernel of fl_backend, on the same
 * random inputs, including the edge cases the contract spells out (empty
 * groups, sizes that are not multiples of 32, ties in top-k, padding
 * indices, -inf rows and masked (-inf) logits, beta = 0 over NaN, aliasing
 * outputs, in-place cross-entropy).
 *
 * Tolerances (stated per check, printed with the error measured):
 *   - GEMMs in TF32 (the default): normwise ‖gpu − cpu‖ / ‖cpu‖ ≤ 1e-2
 *     (TF32 keeps 10 mantissa bits: ~5e-4 per product, more over long sums);
 *     in FP32 mode ≤ 1e-5; in BF16 mode ≤ 3e-2 (8 mantissa bits). Attention
 *     the same (its flash kernels run on tensor cores in tf32 and bf16);
 *     the flash path's saved log-sum-exps to the same figure, absolute;
 *   - elementwise and row ops: |gpu − cpu| ≤ 1e-5 |cpu| + 1e-6, looser where
 *     a long sum's order differs (stated where used);
 *   - decode attention (one query over a KV cache): normwise 1e-5 in every
 *     mode, since both sides compute its dot products in fp32 FMAs (no
 *     GEMM, no tensor cores); the cache append: bit-identical;
 *   - RNG uniform, top-k, gather, bucket sort, hash_ids, fill, copy:
 *     bit-identical.
 *
 * Without a GPU (or in a build without CUDA) the program prints why and exits
 * with 77, which ctest reports as "skipped" (SKIP_RETURN_CODE). Setting
 * FFNLAB_TEST_GPU_AS_CPU=1 runs every comparison with the CPU backend in the
 * GPU's place: that checks this file's own logic on a machine without a GPU.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "device_pair.h"
#include "ffnlab/rng.h"
#include "support.h"
#ifdef FFNLAB_TEST_CUDA_EMU
#include "cuda_emu_backend.h"
#endif
#ifdef FFNLAB_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

static int g_cuda; /* GPU is the real CUDA backend (not the CPU stand-in) */

/* The GEMM precision of the GPU ("tf32", "fp32" or "bf16"); a no-op for the CPU. */
static void set_math(const char *mode) {
#ifdef FFNLAB_TEST_CUDA_EMU
    ts_cuda_emu_set_math(mode);
#endif
#ifdef FFNLAB_HAVE_CUDA
    fl_error err = {0};
    if (g_cuda) ts_assert_ok(fl_cuda_set_math(mode, &err), &err);
#else
    (void)mode;
#endif
}

/* tolerance for GEMM-based results in the current mode */
static double g_gemm_tol = 1e-2;

static void math_tf32(void) { set_math("tf32"), g_gemm_tol = 1e-2; }
static void math_fp32(void) { set_math("fp32"), g_gemm_tol = g_cuda ? 1e-5 : 1e-6; }
/* bf16 keeps 8 mantissa bits: ~4e-3 per rounding */
static void math_bf16(void) { set_math("bf16"), g_gemm_tol = 3e-2; }

/* ------------------------------------------------------------------------ */
/* Memory                                                                     */
/* ------------------------------------------------------------------------ */

static void test_memory(void **state) {
    (void)state;
    pair p = MK2(37, 41);
    float *c, *g;
    pget(&p, (void **)&c, (void **)&g);
    for (size_t i = 0; i < p.n; i++) assert_true(g[i] == 0.0f); /* alloc zeroes */
    free(c), free(g);
    prandn(&p, 1, 1.0f);
    cmp_exact(&p, "from_host / to_host round trip");
    /* to_host of a prefix */
    float part[5] = {0};
    GPU->ops.to_host(part, &p.g, sizeof part);
    for (int i = 0; i < 5; i++) assert_true(part[i] == fl_rng_normal(1, (uint64_t)i));
    pfree(&p);
    if (g_cuda) { /* an impossible allocation fails cleanly and leaves no error behind */
        void *huge = GPU->alloc((size_t)1 << 52);
        assert_null(huge);
        gpu_ok();
    }
    print_message("  %s\n", GPU->describe());
}

/* ------------------------------------------------------------------------ */
/* GEMMs                                                                      */
/* ------------------------------------------------------------------------ */

static void gemm_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, int nan_c) {
    pair A = ta ? MK2(K, M) : MK2(M, K), B = tb ? MK2(N, K) : MK2(K, N), C = MK2(M, N);
    prandn(&A, 11, 1.0f), prandn(&B, 12, 1.0f);
    if (nan_c) pfill(&C, NAN);
    else prandn(&C, 13, 1.0f);
    CPU->ops.gemm(ta, tb, alpha, &A.c, &B.c, beta, &C.c);
    GPU->ops.gemm(ta, tb, alpha, &A.g, &B.g, beta, &C.g);
    char what[96];
    snprintf(what, sizeof what, "gemm %c%c %lldx%lldx%lld a=%g b=%g%s", ta ? 'T' : 'N', tb ? 'T' : 'N',
             (long long)M, (long long)N, (long long)K, alpha, beta, nan_c ? " (C=NaN)" : "");
    cmp_norm(&C, K == 0 || alpha == 0 ? 1e-6 : g_gemm_tol, what);
    pfree(&A), pfree(&B), pfree(&C);
}

static void gemm_all(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 67, 45, 33, 1.0f, 0.0f, 1);
            gemm_case(ta, tb, 129, 70, 300, 0.5f, 0.75f, 0);
        }
    gemm_case(0, 0, 1, 1, 1, 2.0f, 1.0f, 0);
    gemm_case(0, 1, 31, 17, 0, 1.0f, 0.5f, 0);  /* K = 0: C = beta C */
    gemm_case(0, 0, 31, 17, 5, 0.0f, 0.0f, 1);  /* alpha = 0, beta = 0 over NaN: zeros */
    gemm_case(0, 0, 0, 17, 5, 1.0f, 0.0f, 0);   /* M = 0: nothing */
}

static void test_gemm_tf32(void **state) {
    (void)state;
    math_tf32();
    gemm_all();
}

static void test_gemm_fp32(void **state) {
    (void)state;
    math_fp32();
    gemm_all();
    math_tf32();
}

static void test_gemm_batched(void **state) {
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        mode ? math_fp32() : math_tf32();
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int64_t nb = 5, M = 19, N = 35, K = 44;
                pair A = ta ? MK3(nb, K, M) : MK3(nb, M, K), B = tb ? MK3(nb, N, K) : MK3(nb, K, N);
                pair C = MK3(nb, M, N);
                prandn(&A, 21, 1.0f), prandn(&B, 22, 1.0f), prandn(&C, 23, 1.0f);
                CPU->ops.gemm_batched(ta, tb, 1.5f, &A.c, &B.c, 0.5f, &C.c);
                GPU->ops.gemm_batched(ta, tb, 1.5f, &A.g, &B.g, 0.5f, &C.g);
                char what[64];
                snprintf(what, sizeof what, "gemm_batched %c%c %s", ta ? 'T' : 'N', tb ? 'T' : 'N', mode ? "fp32" : "tf32");
                cmp_norm(&C, g_gemm_tol, what);
                pfree(&A), pfree(&B), pfree(&C);
            }
    }
    math_tf32();
}

/* groups with empty first, middle and last groups; rows past off[G] exist */
static void grouped_case(int transW, int loop) {
#ifdef FFNLAB_HAVE_CUDA
    if (g_cuda) fl_cuda_set_grouped_loop(loop);
#endif
    enum { G = 6 };
    const int64_t off[G + 1] = {0, 0, 37, 37, 90, 161, 161}; /* sizes 0 37 0 53 71 0 */
    const int64_t N = 170, K = 48, M = 29;
    pair A = MK2(N, K), W = transW ? MK3(G, M, K) : MK3(G, K, M), C = MK2(N, M);
    prandn(&A, 31, 1.0f), prandn(&W, 32, 0.3f), prandn(&C, 33, 1.0f);
    CPU->ops.gemm_grouped(transW, 0.7f, &A.c, &W.c, off, G, 0.5f, &C.c);
    GPU->ops.gemm_grouped(transW, 0.7f, &A.g, &W.g, off, G, 0.5f, &C.g);
    char what[96];
    snprintf(what, sizeof what, "gemm_grouped transW=%d %s (rows 161.. untouched)", transW, loop ? "loop" : "grouped call");
    cmp_norm(&C, g_gemm_tol, what);
    /* weight gradient: dW[g] = A_gᵀ dY_g + beta dW[g]; empty groups get beta dW[g] */
    pair dY = MK2(N, M), dW = MK3(G, K, M);
    prandn(&dY, 34, 1.0f), prandn(&dW, 35, 1.0f);
    CPU->ops.gemm_grouped_wgrad(1.0f, &A.c, &dY.c, off, G, 0.25f, &dW.c);
    GPU->ops.gemm_grouped_wgrad(1.0f, &A.g, &dY.g, off, G, 0.25f, &dW.g);
    snprintf(what, sizeof what, "gemm_grouped_wgrad beta=0.25 %s", loop ? "loop" : "grouped call");
    cmp_norm(&dW, g_gemm_tol, what);
    pfill(&dW, NAN);
    CPU->ops.gemm_grouped_wgrad(1.0f, &A.c, &dY.c, off, G, 0.0f, &dW.c);
    GPU->ops.gemm_grouped_wgrad(1.0f, &A.g, &dY.g, off, G, 0.0f, &dW.g);
    snprintf(what, sizeof what, "gemm_grouped_wgrad beta=0 over NaN %s", loop ? "loop" : "grouped call");
    cmp_norm(&dW, g_gemm_tol, what);
    pfree(&A), pfree(&W), pfree(&C), pfree(&dY), pfree(&dW);
#ifdef FFNLAB_HAVE_CUDA
    if (g_cuda) fl_cuda_set_grouped_loop(0);
#endif
}

static void test_gemm_grouped(void **state) {
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        mode ? math_fp32() : math_tf32();
        for (int transW = 0; transW < 2; transW++)
            for (int loop = 0; loop < 2; loop++) grouped_case(transW, loop);
    }
    /* a single non-empty group, and all groups empty */
    const int64_t one[4] = {0, 0, 20, 20}, none[4] = {0, 0, 0, 0};
    pair A = MK2(20, 8), W = MK3(3, 8, 5), C = MK2(20, 5);
    prandn(&A, 36, 1.0f), prandn(&W, 37, 1.0f), prandn(&C, 38, 1.0f);
    CPU->ops.gemm_grouped(0, 1.0f, &A.c, &W.c, one, 3, 0.0f, &C.c);
    GPU->ops.gemm_grouped(0, 1.0f, &A.g, &W.g, one, 3, 0.0f, &C.g);
    cmp_norm(&C, g_gemm_tol, "gemm_grouped one busy group");
    prandn(&C, 39, 1.0f); /* the same start on both sides: "untouched" is exact */
    CPU->ops.gemm_grouped(0, 1.0f, &A.c, &W.c, none, 3, 0.0f, &C.c);
    GPU->ops.gemm_grouped(0, 1.0f, &A.g, &W.g, none, 3, 0.0f, &C.g);
    cmp_norm(&C, 0, "gemm_grouped all groups empty (C untouched)");
    pfree(&A), pfree(&W), pfree(&C);
    math_tf32();
}

/* bias_activation_grouped and its backward: a bias row per group of rows
   (empty groups first, between and last; off[G] < N, so the last rows are
   in no group and stay as they were on both sides), columns not a multiple
   of 32, a group long enough for several chunks of the column sum; then
   130 groups of one to three rows. */
static void grouped_bias_case(const int64_t *off, int G, int64_t N, int64_t M, const char *label) {
    static const char *names[] = {"identity", "gelu", "relu", "silu"};
    pair x = MK2(N, M), b = MK2(G, M), dy = MK2(N, M);
    prandn(&x, 60, 2.0f), prandn(&b, 61, 1.0f), prandn(&dy, 62, 1.0f);
    for (int act = FL_ACT_IDENTITY; act <= FL_ACT_SILU; act++) {
        char what[96];
        pair y = MK2(N, M), dx = MK2(N, M), db = MK2(G, M);
        pfill(&y, 3.0f), pfill(&dx, 4.0f), prandn(&db, 63, 1.0f);
        CPU->ops.bias_activation_grouped(act, &x.c, &b.c, off, G, &y.c);
        GPU->ops.bias_activation_grouped(act, &x.g, &b.g, off, G, &y.g);
        snprintf(what, sizeof what, "bias_activation_grouped %s, %s", names[act], label);
        cmp_close(&y, 1e-5, 1e-6, what);
        CPU->ops.bias_activation_grouped_backward(act, &x.c, &b.c, off, G, &dy.c, &dx.c, &db.c);
        GPU->ops.bias_activation_grouped_backward(act, &x.g, &b.g, off, G, &dy.g, &dx.g, &db.g);
        snprintf(what, sizeof what, "bias_activation_grouped_backward %s dx, %s", names[act], label);
        cmp_close(&dx, 1e-5, 1e-6, what);
        snprintf(what, sizeof what, "bias_activation_grouped_backward %s db, %s", names[act], label);
        cmp_close(&db, 1e-5, 1e-5, what);
        pfree(&y), pfree(&dx), pfree(&db);
    }
    /* the identity in place: grouped add_bias; its backward the grouped bias gradient */
    pair y = MK2(N, M), d = MK2(N, M), db = MK2(G, M);
    CPU->ops.copy(&x.c, &y.c), GPU->ops.copy(&x.g, &y.g);
    CPU->ops.copy(&dy.c, &d.c), GPU->ops.copy(&dy.g, &d.g);
    pfill(&db, 0.5f);
    CPU->ops.bias_activation_grouped(FL_ACT_IDENTITY, &y.c, &b.c, off, G, &y.c);
    GPU->ops.bias_activation_grouped(FL_ACT_IDENTITY, &y.g, &b.g, off, G, &y.g);
    cmp_close(&y, 1e-6, 1e-7, "grouped add_bias (identity in place)");
    CPU->ops.bias_activation_grouped_backward(FL_ACT_IDENTITY, &d.c, &b.c, off, G, &d.c, &d.c, &db.c);
    GPU->ops.bias_activation_grouped_backward(FL_ACT_IDENTITY, &d.g, &b.g, off, G, &d.g, &d.g, &db.g);
    cmp_norm(&d, 0, "grouped bias gradient: d unchanged");
    cmp_close(&db, 1e-5, 1e-5, "grouped bias gradient: db");
    pfree(&y), pfree(&d), pfree(&db), pfree(&x), pfree(&b), pfree(&dy);
}

static void test_bias_activation_grouped(void **state) {
    (void)state;
    const int64_t off[8] = {0, 0, 5, 205, 205, 206, 290, 290};
    grouped_bias_case(off, 7, 300, 37, "7 groups");
    enum { MANY = 130 };
    int64_t many[MANY + 1];
    many[0] = 0;
    for (int g = 0; g < MANY; g++) many[g + 1] = many[g] + 1 + g % 3;
    grouped_bias_case(many, MANY, many[MANY], 33, "130 groups");
}

/* ------------------------------------------------------------------------ */
/* Elementwise                                                                */
/* ------------------------------------------------------------------------ */

static void test_elementwise(void **state) {
    (void)state;
    const int64_t N = 77, M = 133;
    pair x = MK2(N, M), y = MK2(N, M), b = MK1(M), s = MK1(N), o = MK1(M), r = MK1(N);
    prandn(&x, 41, 2.0f), prandn(&y, 42, 1.0f), prandn(&b, 43, 1.0f), prandn(&s, 44, 1.0f);

    CPU->ops.add_bias(&y.c, &b.c), GPU->ops.add_bias(&y.g, &b.g);
    cmp_close(&y, 1e-6, 1e-6, "add_bias");

    pfill(&o, NAN);
    CPU->ops.sum_rows(&x.c, 0.0f, &o.c), GPU->ops.sum_rows(&x.g, 0.0f, &o.g);
    cmp_close(&o, 1e-5, 1e-5, "sum_rows beta=0 over NaN");
    CPU->ops.sum_rows(&x.c, 1.0f, &o.c), GPU->ops.sum_rows(&x.g, 1.0f, &o.g);
    cmp_close(&o, 1e-5, 1e-5, "sum_rows beta=1");
    pair big = MK2(5000, 3);
    prandn(&big, 45, 1.0f);
    pair o3 = MK1(3);
    prandn(&o3, 46, 1.0f);
    CPU->ops.sum_rows(&big.c, 0.5f, &o3.c), GPU->ops.sum_rows(&big.g, 0.5f, &o3.g);
    cmp_close(&o3, 1e-5, 1e-4, "sum_rows 5000 rows, beta=0.5");
    pfree(&big), pfree(&o3);

    static const char *names[] = {"identity", "gelu", "relu", "silu"};
    for (int act = FL_ACT_IDENTITY; act <= FL_ACT_SILU; act++) {
        char what[64];
        pair a = MK2(N, M), d = MK2(N, M), dx = MK2(N, M);
        CPU->ops.activation(act, &x.c, &a.c), GPU->ops.activation(act, &x.g, &a.g);
        snprintf(what, sizeof what, "activation %s", names[act]);
        cmp_close(&a, 1e-5, 1e-6, what);
        prandn(&d, 47, 1.0f);
        CPU->ops.activation_backward(act, &x.c, &d.c, &dx.c), GPU->ops.activation_backward(act, &x.g, &d.g, &dx.g);
        snprintf(what, sizeof what, "activation_backward %s", names[act]);
        cmp_close(&dx, 1e-5, 1e-6, what);
        /* aliasing: y = act(y), dx = dy in place */
        CPU->ops.copy(&x.c, &a.c), GPU->ops.copy(&x.g, &a.g);
        CPU->ops.activation(act, &a.c, &a.c), GPU->ops.activation(act, &a.g, &a.g);
        snprintf(what, sizeof what, "activation %s in place", names[act]);
        cmp_close(&a, 1e-5, 1e-6, what);
        CPU->ops.activation_backward(act, &x.c, &d.c, &d.c), GPU->ops.activation_backward(act, &x.g, &d.g, &d.g);
        snprintf(what, sizeof what, "activation_backward %s in place", names[act]);
        cmp_close(&d, 1e-5, 1e-6, what);
        /* bias and activation in one pass, and its backward with db (+=) */
        CPU->ops.bias_activation(act, &x.c, &b.c, &a.c), GPU->ops.bias_activation(act, &x.g, &b.g, &a.g);
        snprintf(what, sizeof what, "bias_activation %s", names[act]);
        cmp_close(&a, 1e-5, 1e-6, what);
        pair db = MK1(M);
        prandn(&db, 48, 1.0f);
        CPU->ops.bias_activation_backward(act, &x.c, &b.c, &d.c, &dx.c, &db.c);
        GPU->ops.bias_activation_backward(act, &x.g, &b.g, &d.g, &dx.g, &db.g);
        snprintf(what, sizeof what, "bias_activation_backward %s dx", names[act]);
        cmp_close(&dx, 1e-5, 1e-6, what);
        snprintf(what, sizeof what, "bias_activation_backward %s db", names[act]);
        cmp_close(&db, 1e-5, 1e-5, what);
        CPU->ops.bias_activation_backward(act, &x.c, &b.c, &d.c, &d.c, NULL);
        GPU->ops.bias_activation_backward(act, &x.g, &b.g, &d.g, &d.g, NULL);
        snprintf(what, sizeof what, "bias_activation_backward %s in place, no db", names[act]);
        cmp_close(&d, 1e-5, 1e-6, what);
        pfree(&a), pfree(&d), pfree(&dx), pfree(&db);
    }
    /* GELU's tails: beyond +-9, +-inf and NaN, the same on both */
    const float tails[] = {8.99f, 9.01f, 30.0f, 1e30f, INFINITY, -8.99f, -9.01f, -30.0f, -1e30f, -INFINITY, NAN};
    const int n_tails = (int)(sizeof tails / sizeof *tails);
    pair t = MK1(n_tails), tg = MK1(n_tails), td = MK1(n_tails);
    pset(&t, tails);
    pfill(&td, 1.0f);
    CPU->ops.activation(FL_ACT_GELU, &t.c, &tg.c), GPU->ops.activation(FL_ACT_GELU, &t.g, &tg.g);
    cmp_close(&tg, 1e-5, 1e-6, "activation gelu tails");
    CPU->ops.activation_backward(FL_ACT_GELU, &t.c, &td.c, &td.c), GPU->ops.activation_backward(FL_ACT_GELU, &t.g, &td.g, &td.g);
    cmp_close(&td, 1e-5, 1e-6, "activation_backward gelu tails");
    pfree(&t), pfree(&tg), pfree(&td);

    CPU->ops.mul(&x.c, &y.c, &y.c), GPU->ops.mul(&x.g, &y.g, &y.g);
    cmp_close(&y, 1e-6, 0, "mul (out aliases b)");
    pair z = MK2(N, M);
    pfill(&z, NAN);
    CPU->ops.axpby(2.5f, &x.c, 0.0f, &z.c), GPU->ops.axpby(2.5f, &x.g, 0.0f, &z.g);
    cmp_close(&z, 1e-6, 0, "axpby beta=0 over NaN");
    CPU->ops.axpby(-0.5f, &y.c, 0.75f, &z.c), GPU->ops.axpby(-0.5f, &y.g, 0.75f, &z.g);
    cmp_close(&z, 1e-6, 1e-6, "axpby");
    CPU->ops.scale_rows(&x.c, &s.c, &z.c), GPU->ops.scale_rows(&x.g, &s.g, &z.g);
    cmp_close(&z, 1e-6, 0, "scale_rows");
    CPU->ops.scale_rows(&z.c, &s.c, &z.c), GPU->ops.scale_rows(&z.g, &s.g, &z.g);
    cmp_close(&z, 1e-6, 0, "scale_rows in place");
    CPU->ops.row_dot(&x.c, &y.c, &r.c), GPU->ops.row_dot(&x.g, &y.g, &r.g);
    cmp_norm(&r, 1e-5, "row_dot (133 columns)");
    CPU->ops.copy(&x.c, &z.c), GPU->ops.copy(&x.g, &z.g);
    cmp_exact(&z, "copy");

    /* fill, every dtype */
    static const int dtypes[] = {FL_F32, FL_BF16, FL_I32, FL_I64, FL_U8};
    for (size_t i = 0; i < 5; i++) {
        pair f = mk(dtypes[i], 2, 13, 7, 1, 1);
        pfill(&f, 3.0f);
        char what[32];
        snprintf(what, sizeof what, "fill dtype %d", dtypes[i]);
        cmp_exact(&f, what);
        pfree(&f);
    }
    pfree(&x), pfree(&y), pfree(&b), pfree(&s), pfree(&o), pfree(&r), pfree(&z);
}

static void test_rng(void **state) {
    (void)state;
    pair u = MK1(100003), n = MK1(100003);
    CPU->ops.rng_uniform(&u.c, 77, 12345, -0.5f, 2.0f), GPU->ops.rng_uniform(&u.g, 77, 12345, -0.5f, 2.0f);
    cmp_exact(&u, "rng_uniform (bit-identical)");
    CPU->ops.rng_normal(&n.c, 78, 99, 0.25f, 0.02f), GPU->ops.rng_normal(&n.g, 78, 99, 0.25f, 0.02f);
    cmp_close(&n, 1e-5, 1e-7, "rng_normal (libm vs CUDA logf/cosf)");
    pfree(&u), pfree(&n);
}

/* hash_ids: integer keys, bit-identical (padding ids -1 included) */
static void test_hash_ids(void **state) {
    (void)state;
    int32_t *h = malloc(70001 * sizeof *h);
    for (int i = 0; i < 70001; i++) h[i] = i % 13 == 7 ? -1 : (int32_t)(fl_rng_bits(79, (uint64_t)i) % 50257);
    pair ids = mk_i32(h, 1, 70001, 1), keys = mk(FL_I32, 1, 70001, 1, 1, 1);
    CPU->ops.hash_ids(&ids.c, 5, 61, &keys.c), GPU->ops.hash_ids(&ids.g, 5, 61, &keys.g);
    cmp_exact(&keys, "hash_ids");
    pfree(&ids), pfree(&keys);
    free(h);
}

/* ------------------------------------------------------------------------ */
/* Row ops                                                                    */
/* ------------------------------------------------------------------------ */

static void softmax_case(int64_t N, int64_t M) {
    pair x = MK2(N, M), y = MK2(N, M), dy = MK2(N, M), dx = MK2(N, M), l = MK1(N);
    prandn(&x, 51, 3.0f), prandn(&dy, 52, 1.0f);
    /* row 1 all -inf, row 2 partly -inf */
    float *h = malloc(x.bytes);
    CPU->ops.to_host(h, &x.c, x.bytes);
    for (int64_t j = 0; j < M && N > 2; j++) h[M + j] = -INFINITY;
    for (int64_t j = 0; j < M && N > 2; j += 2) h[2 * M + j] = -INFINITY;
    pset(&x, h);
    free(h);
    char what[80];
    CPU->ops.softmax(&x.c, &y.c), GPU->ops.softmax(&x.g, &y.g);
    snprintf(what, sizeof what, "softmax %lldx%lld (-inf rows)", (long long)N, (long long)M);
    cmp_close(&y, 1e-5, 1e-7, what);
    CPU->ops.softmax_backward(&y.c, &dy.c, &dx.c), GPU->ops.softmax_backward(&y.g, &dy.g, &dx.g);
    snprintf(what, sizeof what, "softmax_backward %lldx%lld", (long long)N, (long long)M);
    cmp_close(&dx, 1e-4, 1e-6, what);
    CPU->ops.softmax_backward(&y.c, &dy.c, &dy.c), GPU->ops.softmax_backward(&y.g, &dy.g, &dy.g);
    snprintf(what, sizeof what, "softmax_backward in place %lldx%lld", (long long)N, (long long)M);
    cmp_close(&dy, 1e-4, 1e-6, what);
    CPU->ops.logsumexp(&x.c, &l.c), GPU->ops.logsumexp(&x.g, &l.g);
    snprintf(what, sizeof what, "logsumexp %lldx%lld (-inf row: -inf)", (long long)N, (long long)M);
    cmp_close(&l, 1e-6, 1e-6, what);
    CPU->ops.softmax(&x.c, &x.c), GPU->ops.softmax(&x.g, &x.g);
    snprintf(what, sizeof what, "softmax in place %lldx%lld", (long long)N, (long long)M);
    cmp_close(&x, 1e-5, 1e-7, what);
    pfree(&x), pfree(&y), pfree(&dy), pfree(&dx), pfree(&l);
}

static void test_softmax(void **state) {
    (void)state;
    softmax_case(300, 8);     /* MoE gates: many short rows */
    softmax_case(37, 1000);   /* a warp per row, 32 columns per lane */
    softmax_case(9, 5003);    /* a block per row */
}

static void topk_case(int64_t N, int64_t M, int k, int ties) {
    pair x = MK2(N, M), v = MK2(N, k), ix = mk(FL_I32, 2, N, k, 1, 1);
    float *h = malloc(x.bytes);
    for (size_t i = 0; i < x.n; i++)
        h[i] = ties ? (float)(fl_rng_bits(61, i) % 5) : fl_rng_normal(62, i); /* values 0..4: ties everywhere */
    if (N > 1) h[M] = -INFINITY, h[M + 1] = INFINITY;
    pset(&x, h);
    free(h);
    CPU->ops.topk(&x.c, k, &v.c, &ix.c), GPU->ops.topk(&x.g, k, &v.g, &ix.g);
    char what[80];
    snprintf(what, sizeof what, "topk %lldx%lld k=%d%s values", (long long)N, (long long)M, k, ties ? " ties" : "");
    cmp_exact(&v, what);
    snprintf(what, sizeof what, "topk %lldx%lld k=%d%s indices", (long long)N, (long long)M, k, ties ? " ties" : "");
    cmp_exact(&ix, what);
    pfree(&x), pfree(&v), pfree(&ix);
}

static void test_topk(void **state) {
    (void)state;
    topk_case(1000, 8, 2, 1);
    topk_case(1000, 8, 1, 0);
    topk_case(50, 37, 37, 1); /* k = M */
    topk_case(20, 300, 40, 1);
    topk_case(20, 300, 5, 0);
}

static void test_gather_scatter(void **state) {
    (void)state;
    const int64_t R = 23, D = 37, N = 64;
    int32_t idx[64];
    for (int i = 0; i < N; i++) idx[i] = i % 7 == 3 ? -1 : (int32_t)(fl_rng_bits(71, (uint64_t)i) % R);
    idx[5] = idx[6] = idx[7] = 4; /* duplicates accumulate */
    pair ix = mk_i32(idx, 1, N, 1);
    pair src = MK2(R, D), dst = MK2(N, D);
    prandn(&src, 72, 1.0f);
    pfill(&dst, NAN);
    CPU->ops.gather_rows(&src.c, &ix.c, &dst.c), GPU->ops.gather_rows(&src.g, &ix.g, &dst.g);
    cmp_exact(&dst, "gather_rows f32 (padding rows zero)");
    /* other dtypes: whole rows of any element size, odd row bytes */
    pair si = mk(FL_I32, 2, R, 5, 1, 1), di = mk(FL_I32, 2, N, 5, 1, 1);
    pair su = mk(FL_U8, 2, R, 3, 1, 1), du = mk(FL_U8, 2, N, 3, 1, 1);
    {
        int32_t hi[23 * 5];
        uint8_t hu[23 * 3];
        for (int i = 0; i < 23 * 5; i++) hi[i] = i * 7 - 3;
        for (int i = 0; i < 23 * 3; i++) hu[i] = (uint8_t)(i * 11 + 1);
        pset(&si, hi), pset(&su, hu);
    }
    CPU->ops.gather_rows(&si.c, &ix.c, &di.c), GPU->ops.gather_rows(&si.g, &ix.g, &di.g);
    cmp_exact(&di, "gather_rows i32");
    CPU->ops.gather_rows(&su.c, &ix.c, &du.c), GPU->ops.gather_rows(&su.g, &ix.g, &du.g);
    cmp_exact(&du, "gather_rows u8 (3-byte rows)");
    pair g = MK2(N, D), acc = MK2(R, D);
    prandn(&g, 73, 1.0f), prandn(&acc, 74, 1.0f);
    CPU->ops.scatter_add_rows(&g.c, &ix.c, &acc.c), GPU->ops.scatter_add_rows(&g.g, &ix.g, &acc.g);
    cmp_close(&acc, 1e-6, 1e-6, "scatter_add_rows (duplicates, padding)");
    /* determinism: the same again gives the same bits */
    float *first = malloc(acc.bytes), *second = malloc(acc.bytes);
    GPU->ops.fill(&acc.g, 0.0f), GPU->ops.scatter_add_rows(&g.g, &ix.g, &acc.g), GPU->ops.to_host(first, &acc.g, acc.bytes);
    GPU->ops.fill(&acc.g, 0.0f), GPU->ops.scatter_add_rows(&g.g, &ix.g, &acc.g), GPU->ops.to_host(second, &acc.g, acc.bytes);
    assert_memory_equal(first, second, acc.bytes);
    free(first), free(second);
    /* many duplicates: 4096 rows into 3 */
    int32_t *many = malloc(4096 * sizeof *many);
    for (int i = 0; i < 4096; i++) many[i] = i % 3;
    pair im = mk_i32(many, 1, 4096, 1), gm = MK2(4096, 130), am = MK2(3, 130);
    free(many);
    prandn(&gm, 75, 1.0f);
    CPU->ops.scatter_add_rows(&gm.c, &im.c, &am.c), GPU->ops.scatter_add_rows(&gm.g, &im.g, &am.g);
    cmp_close(&am, 1e-5, 1e-5, "scatter_add_rows 4096 rows into 3");
    pfree(&ix), pfree(&src), pfree(&dst), pfree(&si), pfree(&di), pfree(&su), pfree(&du), pfree(&g), pfree(&acc);
    pfree(&im), pfree(&gm), pfree(&am);
}

static void test_embedding_bag(void **state) {
    (void)state;
    const int64_t R = 50, D = 45, N = 33, k = 4;
    int32_t idx[33 * 4];
    for (int i = 0; i < N * k; i++) idx[i] = i % 9 == 2 ? -1 : (int32_t)(fl_rng_bits(81, (uint64_t)i) % R);
    idx[0] = idx[1] = idx[4] = 7;
    pair ix = mk_i32(idx, 2, N, k), t = MK2(R, D), w = MK2(N, k), out = MK2(N, D);
    prandn(&t, 82, 1.0f), prandn(&w, 83, 1.0f);
    for (int uw = 0; uw < 2; uw++) {
        const fl_tensor *wc = uw ? &w.c : NULL, *wg = uw ? &w.g : NULL;
        CPU->ops.embedding_bag(&t.c, &ix.c, wc, &out.c), GPU->ops.embedding_bag(&t.g, &ix.g, wg, &out.g);
        cmp_close(&out, 1e-5, 1e-6, uw ? "embedding_bag weighted" : "embedding_bag w=NULL");
        pair dout = MK2(N, D), dt = MK2(R, D), dw = MK2(N, k);
        prandn(&dout, 84, 1.0f), prandn(&dt, 85, 0.1f);
        CPU->ops.embedding_bag_backward(&dout.c, &t.c, &ix.c, wc, &dt.c, &dw.c);
        GPU->ops.embedding_bag_backward(&dout.g, &t.g, &ix.g, wg, &dt.g, &dw.g);
        cmp_close(&dt, 1e-5, 1e-5, uw ? "embedding_bag_backward dtable weighted" : "embedding_bag_backward dtable");
        cmp_norm(&dw, 1e-5, "embedding_bag_backward dw (45-term dots)");
        CPU->ops.embedding_bag_backward(&dout.c, &t.c, &ix.c, wc, NULL, &dw.c);
        GPU->ops.embedding_bag_backward(&dout.g, &t.g, &ix.g, wg, NULL, &dw.g);
        cmp_norm(&dw, 1e-5, "embedding_bag_backward dtable=NULL");
        pfree(&dout), pfree(&dt), pfree(&dw);
    }
    pfree(&ix), pfree(&t), pfree(&w), pfree(&out);
}

static void layernorm_case(int64_t N, int64_t D, int affine) {
    pair x = MK2(N, D), g = MK1(D), b = MK1(D), y = MK2(N, D), mu = MK1(N), rs = MK1(N);
    prandn(&x, 91, 2.0f), prandn(&g, 92, 1.0f), prandn(&b, 93, 1.0f);
    const fl_tensor *gc = affine ? &g.c : NULL, *gg = affine ? &g.g : NULL;
    const fl_tensor *bc = affine ? &b.c : NULL, *bg = affine ? &b.g : NULL;
    char what[96];
    CPU->ops.layernorm(&x.c, gc, bc, 1e-5f, &y.c, &mu.c, &rs.c);
    GPU->ops.layernorm(&x.g, gg, bg, 1e-5f, &y.g, &mu.g, &rs.g);
    snprintf(what, sizeof what, "layernorm %lldx%lld%s", (long long)N, (long long)D, affine ? "" : " no affine");
    cmp_close(&y, 1e-4, 1e-5, what);
    cmp_close(&mu, 1e-5, 1e-6, "layernorm mean");
    cmp_close(&rs, 1e-5, 1e-6, "layernorm rstd");
    pair dy = MK2(N, D), dx = MK2(N, D), dg = MK1(D), db = MK1(D);
    prandn(&dy, 94, 1.0f), prandn(&dg, 95, 1.0f), prandn(&db, 96, 1.0f);
    CPU->ops.layernorm_backward(&x.c, gc, &mu.c, &rs.c, &dy.c, &dx.c, &dg.c, &db.c);
    GPU->ops.layernorm_backward(&x.g, gg, &mu.g, &rs.g, &dy.g, &dx.g, &dg.g, &db.g);
    snprintf(what, sizeof what, "layernorm_backward dx %lldx%lld", (long long)N, (long long)D);
    cmp_norm(&dx, 1e-5, what);
    cmp_close(&dg, 1e-4, 1e-4, "layernorm_backward dg (+=)");
    cmp_close(&db, 1e-4, 1e-4, "layernorm_backward db (+=)");
    /* dx aliasing dy, no parameter gradients */
    CPU->ops.layernorm_backward(&x.c, gc, &mu.c, &rs.c, &dy.c, &dy.c, NULL, NULL);
    GPU->ops.layernorm_backward(&x.g, gg, &mu.g, &rs.g, &dy.g, &dy.g, NULL, NULL);
    cmp_norm(&dy, 1e-5, "layernorm_backward dx in place of dy");
    /* mean/rstd not requested */
    CPU->ops.layernorm(&x.c, gc, bc, 1e-5f, &y.c, NULL, NULL), GPU->ops.layernorm(&x.g, gg, bg, 1e-5f, &y.g, NULL, NULL);
    cmp_close(&y, 1e-4, 1e-5, "layernorm without mean/rstd");
    pfree(&x), pfree(&g), pfree(&b), pfree(&y), pfree(&mu), pfree(&rs), pfree(&dy), pfree(&dx), pfree(&dg), pfree(&db);
}

static void test_layernorm(void **state) {
    (void)state;
    layernorm_case(67, 37, 1);
    layernorm_case(300, 768, 1);
    layernorm_case(5, 3000, 1); /* a block per row */
    layernorm_case(20, 50, 0);
}

static void test_bucket_sort(void **state) {
    (void)state;
    const int64_t sizes[] = {0, 1, 31, 5000};
    const int Gs[] = {7, 1, 3, 64};
    for (int c = 0; c < 4; c++) {
        const int64_t N = sizes[c];
        const int G = Gs[c];
        int32_t *keys = calloc((size_t)N + 1, sizeof *keys);
        for (int64_t i = 0; i < N; i++) {
            uint64_t r = fl_rng_bits(101, (uint64_t)i);
            keys[i] = r % 11 == 0 ? -1 : (int32_t)(r % (uint64_t)(G > 4 ? G - 2 : G)); /* some buckets empty */
        }
        pair k = mk_i32(keys, 1, N ? N : 1, 1);
        k.c.shape[0] = k.g.shape[0] = N; /* N may be 0 */
        pair p = mk(FL_I32, 1, N ? N : 1, 1, 1, 1);
        pfill(&p, 12345.0f);
        int64_t offc[65], offg[65];
        memset(offc, 0x55, sizeof offc), memset(offg, 0x33, sizeof offg);
        CPU->ops.bucket_sort(&k.c, G, &p.c, offc), GPU->ops.bucket_sort(&k.g, G, &p.g, offg);
        gpu_ok();
        assert_memory_equal(offc, offg, (size_t)(G + 1) * sizeof *offc);
        char what[64];
        snprintf(what, sizeof what, "bucket_sort N=%lld G=%d perm", (long long)N, G);
        cmp_exact(&p, what);
        pfree(&k), pfree(&p);
        free(keys);
    }
}

/* ------------------------------------------------------------------------ */
/* Model kernels                                                              */
/* ------------------------------------------------------------------------ */

static void test_embed(void **state) {
    (void)state;
    const int64_t B = 3, T = 37, C = 40, V = 29;
    int32_t tok[3 * 37];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(fl_rng_bits(111, (uint64_t)i) % 5); /* many repeats */
    pair t = mk_i32(tok, 2, B, T), wte = MK2(V, C), wpe = MK2(T + 3, C), x = MK2(B * T, C);
    prandn(&wte, 112, 1.0f), prandn(&wpe, 113, 1.0f);
    fl_tensor wpec = fl_rows(&wpe.c, 0, T), wpeg = fl_rows(&wpe.g, 0, T);
    CPU->embed(&wte.c, &wpec, &t.c, &x.c), GPU->embed(&wte.g, &wpeg, &t.g, &x.g);
    cmp_exact(&x, "embed");
    pair dx = MK2(B * T, C);
    prandn(&dx, 114, 1.0f), prandn(&wte, 115, 0.1f), prandn(&wpe, 116, 0.1f);
    CPU->embed_backward(&dx.c, &t.c, &wte.c, &wpec), GPU->embed_backward(&dx.g, &t.g, &wte.g, &wpeg);
    cmp_close(&wte, 1e-6, 1e-6, "embed_backward dwte (repeated tokens)");
    cmp_close(&wpe, 1e-6, 1e-6, "embed_backward dwpe (rows past T untouched)");
    pfree(&t), pfree(&wte), pfree(&wpe), pfree(&x), pfree(&dx);
}

/* scale q_i . k_j, double, for head h of sequence b */
static double ref_score(const float *qkv, int64_t T, int64_t C, int64_t hs, int64_t b, int64_t h, int64_t i,
                        int64_t j) {
    const float *q = qkv + (b * T + i) * 3 * C + h * hs, *k = qkv + (b * T + j) * 3 * C + C + h * hs;
    double s = 0;
    for (int64_t c = 0; c < hs; c++) s += (double)q[c] * k[c];
    return s / sqrt((double)hs);
}

/* An attention mask case: backend.h's rules, lengths on the host. */
typedef struct amask {
    int causal;
    int64_t window;
    const int32_t *len; /* [B] or NULL */
} amask;

static int sees(const amask *am, int64_t b, int64_t i, int64_t j) {
    if (am->len && j >= am->len[b]) return 0;
    if (am->causal && j > i) return 0;
    return !(am->window > 0 && llabs(i - j) >= am->window);
}

/* The flash path's saved row log-sum-exps [B,H,T] against double sums
   (+inf for a row that sees no key). */
static void check_lse(const pair *qkv, const fl_tensor *saved, int64_t B, int64_t T, int64_t C, int H,
                      const amask *am, double tol) {
    float *q = malloc(qkv->bytes), *lse = malloc((size_t)(B * H * T) * sizeof *lse);
    CPU->ops.to_host(q, &qkv->c, qkv->bytes);
    GPU->ops.to_host(lse, saved, (size_t)(B * H * T) * sizeof *lse);
    gpu_ok();
    double worst = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double m = -INFINITY, s = 0;
                for (int64_t j = 0; j < T; j++)
                    if (sees(am, b, i, j)) m = fmax(m, ref_score(q, T, C, C / H, b, h, i, j));
                for (int64_t j = 0; j < T; j++)
                    if (sees(am, b, i, j)) s += exp(ref_score(q, T, C, C / H, b, h, i, j) - m);
                const float got = lse[(b * H + h) * T + i];
                const double d = s > 0 ? fabs(got - (m + log(s))) : got == INFINITY ? 0 : INFINITY;
                if (!(d <= worst)) worst = d;
            }
    print_message("  %-44s max|d| %.2e  (tol %.0e)\n", "attention saved log-sum-exp", worst, tol);
    assert_true(worst <= tol);
    free(q), free(lse);
}

/* Each backend keeps its own saved state (the CPU: probabilities [B,H,T,T];
   the GPU: the same on its cuBLAS path, row log-sum-exps [B,H,T] on the
   flash path), so those are compared when the layouts agree and the flash
   one against double sums; outputs and gradients always. */
static void attention_case(int64_t B, int64_t T, int64_t C, int H, const amask *am) {
    pair qkv = MK3(B, T, 3 * C), out = MK3(B, T, C), lens = {0};
    prandn(&qkv, 121, 1.0f);
    fl_attn_mask mc = {.causal = am->causal, .window = am->window}, mg = mc;
    if (am->len) lens = mk_i32(am->len, 1, B, 1), mc.lengths = &lens.c, mg.lengths = &lens.g;
    const int64_t nc = CPU->attention_saved_numel(B, T, C, H), ng = GPU->attention_saved_numel(B, T, C, H);
    /* the layouts differ in size from T = 2 on (at T = 1 both hold one value) */
    const int same = GPU->attention_saved_numel(1, 2, C, H) == CPU->attention_saved_numel(1, 2, C, H);
    pair att = mk(FL_F32, 1, nc, 1, 1, 1);
    fl_tensor saved = same ? att.g : talloc(GPU, FL_F32, 1, &ng);
    pfill(&att, NAN); /* every entry must be written, hidden ones too */
    GPU->ops.fill(&saved, NAN);
    CPU->attention(&qkv.c, H, &mc, &out.c, &att.c), GPU->attention(&qkv.g, H, &mg, &out.g, &saved);
    char what[128];
    snprintf(what, sizeof what, "attention B=%lld T=%lld C=%lld H=%d %s%s%s w%lld %s", (long long)B, (long long)T,
             (long long)C, H, am->causal ? "causal" : "bidi", am->len ? " padded" : "", am->window ? " local" : "",
             (long long)am->window, same ? "saves P" : "flash");
    cmp_norm(&out, g_gemm_tol, what);
    if (same) cmp_norm(&att, g_gemm_tol, "attention att (probabilities)");
    else check_lse(&qkv, &saved, B, T, C, H, am, g_gemm_tol); /* absolute, in nats */
    pair dout = MK3(B, T, C), dqkv = MK3(B, T, 3 * C);
    prandn(&dout, 122, 1.0f);
    pfill(&dqkv, NAN); /* overwritten */
    CPU->attention_backward(&qkv.c, &out.c, &att.c, H, &mc, &dout.c, &dqkv.c);
    GPU->attention_backward(&qkv.g, &out.g, &saved, H, &mg, &dout.g, &dqkv.g);
    cmp_norm(&dqkv, 2 * g_gemm_tol, "attention_backward dqkv");
    /* the same inputs again: the same bits (no atomics on either path) */
    float *first = malloc(dqkv.bytes), *again = malloc(dqkv.bytes);
    GPU->ops.to_host(first, &dqkv.g, dqkv.bytes);
    GPU->attention(&qkv.g, H, &mg, &out.g, &saved);
    GPU->attention_backward(&qkv.g, &out.g, &saved, H, &mg, &dout.g, &dqkv.g);
    GPU->ops.to_host(again, &dqkv.g, dqkv.bytes);
    gpu_ok();
    assert_memory_equal(first, again, dqkv.bytes);
    free(first), free(again);
    if (!same) GPU->free(saved.data);
    if (am->len) pfree(&lens);
    pfree(&qkv), pfree(&out), pfree(&att), pfree(&dout), pfree(&dqkv);
}

/* Head sizes 12 and 8 take the cuBLAS path in every mode; 32, 64 and 128
   the flash kernels in tf32 and bf16 (where the GPU has the shared memory),
   with T below, at and past one 64-row tile and at GPT-2's context. */
static const amask CAUSAL = {1, 0, NULL};

typedef struct acase {
    int64_t B, T, C;
    int H;
    const amask *mask;
} acase;

/* Every case in each math mode (tf32, fp32, bf16). */
static void attention_cases(const acase *cs, size_t n) {
    for (int mode = 0; mode < 3; mode++) {
        mode == 0 ? math_tf32() : mode == 1 ? math_fp32() : math_bf16();
        for (size_t i = 0; i < n; i++) attention_case(cs[i].B, cs[i].T, cs[i].C, cs[i].H, cs[i].mask);
    }
    math_tf32();
}

static void test_attention(void **state) {
    (void)state;
    const acase cs[] = {{2, 37, 48, 4, &CAUSAL},  {1, 130, 64, 2, &CAUSAL},  {3, 1, 8, 1, &CAUSAL},
                        {1, 1, 64, 1, &CAUSAL},   {2, 64, 128, 2, &CAUSAL},  {2, 200, 256, 4, &CAUSAL},
                        {1, 77, 256, 2, &CAUSAL}, {1, 1024, 128, 2, &CAUSAL}};
    attention_cases(cs, sizeof cs / sizeof cs[0]);
}

/* The encoder's and GPT-Neo's masks on both paths (head sizes 12 and 32/64):
   bidirectional; padded, with a sequence of one token and a padded tile
   past a length that is not a multiple of 64; local windows narrower than
   a tile, crossing tiles, and wider than T; bidirectional local with
   padding, where padded queries far past the length see no key at all. */
static void test_attention_masks(void **state) {
    (void)state;
    static const int32_t len2[2] = {37, 1}, len3[3] = {200, 71, 130};
    const amask bidi = {0, 0, NULL}, pad = {0, 0, len2}, pad3 = {0, 0, len3};
    const amask local = {1, 20, NULL}, local_wide = {1, 100, NULL}, local_all = {1, 300, NULL};
    const amask bidi_local_pad = {0, 30, len3};
    const acase cs[] = {{2, 37, 48, 4, &bidi},         {2, 130, 64, 2, &bidi},        {2, 37, 48, 4, &pad},
                        {3, 200, 128, 2, &pad3},       {2, 37, 48, 4, &local},        {1, 200, 128, 2, &local},
                        {2, 200, 256, 4, &local_wide}, {1, 200, 128, 2, &local_all}, {3, 200, 128, 4, &bidi_local_pad}};
    attention_cases(cs, sizeof cs / sizeof cs[0]);
}

/* The KV cache filled from qkv[B,T,3C] in two appends (positions 0..T-2,
   then T-1 from the last rows, as a prefill and a decoding step do), and
   the last position's attention over the t = T cached positions. Cache
   rows past T hold NaN on both sides: never read, never written. */
static void attention_decode_case(int64_t B, int64_t T, int64_t C, int H, int64_t window) {
    const int64_t hs = C / H, S = T + 5;
    pair first = MK3(B, T - 1 > 0 ? T - 1 : 1, 3 * C), last = MK3(B, 1, 3 * C), out = MK2(B, C);
    pair k = mk(FL_F32, 4, B, H, S, hs), v = mk(FL_F32, 4, B, H, S, hs);
    prandn(&first, 141 + (uint64_t)T, 1.0f), prandn(&last, 142 + (uint64_t)T, 1.0f);
    pfill(&k, NAN), pfill(&v, NAN), pfill(&out, NAN);
    if (T > 1) CPU->kv_append(&first.c, 0, &k.c, &v.c), GPU->kv_append(&first.g, 0, &k.g, &v.g);
    CPU->kv_append(&last.c, T - 1, &k.c, &v.c), GPU->kv_append(&last.g, T - 1, &k.g, &v.g);
    cmp_exact(&k, "kv_append k_cache");
    cmp_exact(&v, "kv_append v_cache");
    CPU->attention_decode(&last.c, &k.c, &v.c, T, window, &out.c);
    GPU->attention_decode(&last.g, &k.g, &v.g, T, window, &out.g);
    char what[96];
    snprintf(what, sizeof what, "attention_decode B=%lld t=%lld C=%lld H=%d window %lld", (long long)B, (long long)T,
             (long long)C, H, (long long)window);
    cmp_norm(&out, 1e-5, what);
    /* the same inputs again: the same bits (fixed order, no atomics) */
    float *once = malloc(out.bytes), *again = malloc(out.bytes);
    GPU->ops.to_host(once, &out.g, out.bytes);
    GPU->attention_decode(&last.g, &k.g, &v.g, T, window, &out.g);
    GPU->ops.to_host(again, &out.g, out.bytes);
    gpu_ok();
    assert_memory_equal(once, again, out.bytes);
    free(once), free(again);
    pfree(&first), pfree(&last), pfree(&out), pfree(&k), pfree(&v);
}

/* Head sizes below, at and above a warp's 32 lanes (and not a multiple of
   it), fewer keys than the block's 8 warps, one key, and GPT-2's context;
   local windows shorter and longer than the text. One math mode: nothing
   here is a GEMM. */
static void test_attention_decode(void **state) {
    (void)state;
    attention_decode_case(2, 37, 48, 4, 0);
    attention_decode_case(3, 1, 8, 1, 0);
    attention_decode_case(1, 5, 64, 2, 0);
    attention_decode_case(2, 300, 256, 4, 0);
    attention_decode_case(1, 1024, 200, 2, 0);
    attention_decode_case(2, 300, 256, 4, 256); /* a local layer: the last 256 of 300 */
    attention_decode_case(2, 37, 48, 4, 5);
    attention_decode_case(1, 5, 64, 2, 8);      /* a window longer than the text */
}

/* logits[N,W] whose first V columns are the classes (W > V: an LM head
   padded to an aligned width; the padding holds values that must not be read) */
static void ce_case(int64_t N, int64_t V, int64_t W, int in_place) {
    pair x = MK2(N, W), dl = MK2(N, W);
    prandn(&x, 131, 3.0f);
    int32_t *tg = malloc((size_t)N * sizeof *tg);
    for (int64_t i = 0; i < N; i++) tg[i] = i % 5 == 4 ? -1 : (int32_t)(fl_rng_bits(132, (uint64_t)i) % (uint64_t)V);
    pair t = mk_i32(tg, 1, N, 1);
    /* masked logits: column 0 (the first each thread sees) is -inf unless it is the target */
    float *h = malloc(x.bytes);
    CPU->ops.to_host(h, &x.c, x.bytes);
    for (int64_t i = 0; i < N; i++) {
        if (tg[i] != 0) h[i * W] = -INFINITY;
        for (int64_t j = V; j < W; j++) h[i * W + j] = j % 2 ? NAN : 1e30f;
    }
    pset(&x, h);
    free(h);
    free(tg);
    int64_t cc = -1, cg = -2;
    const float scale = 1.0f / 7.0f;
    double lc = CPU->cross_entropy(&x.c, V, &t.c, in_place ? &x.c : &dl.c, scale, &cc);
    double lg = GPU->cross_entropy(&x.g, V, &t.g, in_place ? &x.g : &dl.g, scale, &cg);
    gpu_ok();
    print_message("  cross_entropy %lldx%lld (of %lld)%s: loss cpu %.9f gpu %.9f (rel %.1e, tol 1e-6), rows %lld\n",
                  (long long)N, (long long)V, (long long)W, in_place ? " in place" : "", lc, lg, fabs(lg - lc) / fabs(lc),
                  (long long)cc);
    assert_int_equal(cc, cg);
    assert_true(fabs(lg - lc) <= 1e-6 * fabs(lc));
    cmp_close(in_place ? &x : &dl, 1e-5, 1e-8, in_place ? "cross_entropy dlogits in place" : "cross_entropy dlogits");
    /* loss only */
    lc = CPU->cross_entropy(&x.c, V, &t.c, NULL, scale, &cc), lg = GPU->cross_entropy(&x.g, V, &t.g, NULL, scale, &cg);
    gpu_ok();
    assert_int_equal(cc, cg);
    assert_true(fabs(lg - lc) <= 1e-6 * fabs(lc) + 1e-9);
    pfree(&x), pfree(&dl), pfree(&t);
}

static void test_cross_entropy(void **state) {
    (void)state;
    ce_case(37, 1000, 1000, 0);
    ce_case(37, 1000, 1000, 1);
    ce_case(8, 50257, 50257, 0);
    ce_case(130, 7, 7, 1);
    ce_case(8, 50257, 50304, 0); /* GPT-2's vocabulary, padded to a multiple of 64 */
    ce_case(9, 1000, 1024, 1);
}

static void test_adamw(void **state) {
    (void)state;
    const int64_t R = 41, D = 33;
    pair p = MK2(R, D), g = MK2(R, D), m = MK2(R, D), v = MK2(R, D);
    prandn(&p, 141, 1.0f), prandn(&g, 142, 0.1f), prandn(&m, 143, 0.01f), prandn(&v, 144, 0.01f);
    /* v must be >= 0 */
    CPU->ops.mul(&v.c, &v.c, &v.c), GPU->ops.mul(&v.g, &v.g, &v.g);
    for (int64_t t = 1; t <= 3; t++) {
        CPU->adamw(&p.c, &g.c, &m.c, &v.c, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
        GPU->adamw(&p.g, &g.g, &m.g, &v.g, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
    }
    cmp_close(&p, 1e-5, 1e-6, "adamw param (3 steps, grad_scale 0.5)");
    cmp_close(&m, 1e-5, 1e-8, "adamw m");
    cmp_close(&v, 1e-5, 1e-10, "adamw v");
    const int32_t rows[] = {0, 5, 40, 17, 3};
    CPU->adamw_rows(&p.c, &g.c, &m.c, &v.c, rows, 5, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 4);
    GPU->adamw_rows(&p.g, &g.g, &m.g, &v.g, rows, 5, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 4);
    cmp_close(&p, 1e-5, 1e-6, "adamw_rows param (other rows untouched)");
    cmp_close(&v, 1e-5, 1e-10, "adamw_rows v");
    pfree(&p), pfree(&g), pfree(&m), pfree(&v);
}

static void test_norms(void **state) {
    (void)state;
    pair x = MK2(1000, 131);
    prandn(&x, 151, 1.0f);
    double sc = CPU->sumsq(&x.c), sg = GPU->sumsq(&x.g);
    print_message("  sumsq cpu %.12g gpu %.12g (rel %.1e, tol 1e-10)\n", sc, sg, fabs(sg - sc) / sc);
    assert_true(fabs(sg - sc) <= 1e-10 * sc);
    const int32_t rows[] = {3, 999, 0, 500, -1, 1000};
    sc = CPU->sumsq_rows(&x.c, rows, 6), sg = GPU->sumsq_rows(&x.g, rows, 6);
    print_message("  sumsq_rows cpu %.12g gpu %.12g\n", sc, sg);
    assert_true(fabs(sg - sc) <= 1e-10 * sc);
    assert_true(GPU->sumsq_rows(&x.g, rows, 0) == 0.0);
    /* a list: one device round trip; the same partials as one by one */
    pair y = MK1(70001), e = MK1(0);
    prandn(&y, 152, 2.0f);
    const fl_tensor *lc[] = {&x.c, &e.c, &y.c}, *lg[] = {&x.g, &e.g, &y.g};
    sc = CPU->sumsq_many(lc, 3), sg = GPU->sumsq_many(lg, 3);
    print_message("  sumsq_many cpu %.12g gpu %.12g\n", sc, sg);
    assert_true(fabs(sg - sc) <= 1e-10 * sc);
    assert_true(fabs(sg - (GPU->sumsq(&x.g) + GPU->sumsq(&y.g))) <= 1e-12 * sg);
    assert_true(GPU->sumsq_many(lg, 0) == 0.0);
    pfree(&y), pfree(&e);
    assert_int_equal(CPU->nonfinite(&x.c), 0);
    assert_int_equal(GPU->nonfinite(&x.g), 0);
    CPU->zero_rows(&x.c, rows, 4), GPU->zero_rows(&x.g, rows, 4);
    cmp_exact(&x, "zero_rows");
    float bad[2] = {INFINITY, NAN};
    for (int i = 0; i < 2; i++) {
        fl_tensor one = fl_rows(&x.g, 777, 1);
        GPU->ops.from_host(&one, &bad[i], sizeof bad[i]);
        assert_int_equal(GPU->nonfinite(&x.g), 1);
        float zero = 0.0f;
        GPU->ops.from_host(&one, &zero, sizeof zero);
        assert_int_equal(GPU->nonfinite(&x.g), 0);
    }
    gpu_ok();
    pfree(&x);
}

/* ------------------------------------------------------------------------ */
/* norm_groups family (batchnorm, layernorm_groups, their backwards): y,     */
/* statistics 1e-5 (+1e-5 / 1e-6 absolute; the GPU sums in double, the CPU  */
/* in float chunks), dx normwise 1e-5, dg and db 1e-4 (long column sums, as */
/* LayerNorm's).                                                             */
/* ------------------------------------------------------------------------ */

static void batchnorm_case(int64_t N, int64_t F) {
    pair x = MK2(N, F), g = MK1(F), b = MK1(F), y = MK2(N, F), mu = MK1(F), rs = MK1(F);
    pair rm = MK1(F), rv = MK1(F), dy = MK2(N, F), dx = MK2(N, F), dg = MK1(F), db = MK1(F);
    prandn(&x, 411, 2.0f), prandn(&g, 412, 1.0f), prandn(&b, 413, 1.0f), prandn(&rm, 414, 0.5f);
    prandn(&dy, 415, 1.0f), prandn(&dg, 416, 1.0f), prandn(&db, 417, 1.0f);
    pfill(&rv, 1.5f);
    char what[96];
    for (int train = 1; train >= 0; train--) {
        CPU->ops.batchnorm(&x.c, &g.c, &b.c, 1e-5f, 0.1f, train, &y.c, &mu.c, &rs.c, &rm.c, &rv.c);
        GPU->ops.batchnorm(&x.g, &g.g, &b.g, 1e-5f, 0.1f, train, &y.g, &mu.g, &rs.g, &rm.g, &rv.g);
        snprintf(what, sizeof what, "batchnorm %s %lldx%lld y", train ? "train" : "eval", (long long)N, (long long)F);
        cmp_close(&y, 1e-5, 1e-5, what);
        cmp_close(&mu, 1e-5, 1e-6, "batchnorm mean");
        cmp_close(&rs, 1e-5, 1e-6, "batchnorm rstd");
        cmp_close(&rm, 1e-5, 1e-6, "batchnorm running_mean");
        cmp_close(&rv, 1e-5, 1e-6, "batchnorm running_var");
        CPU->ops.batchnorm_backward(&x.c, &g.c, &mu.c, &rs.c, &dy.c, train, &dx.c, &dg.c, &db.c);
        GPU->ops.batchnorm_backward(&x.g, &g.g, &mu.g, &rs.g, &dy.g, train, &dx.g, &dg.g, &db.g);
        snprintf(what, sizeof what, "batchnorm_backward batch=%d dx", train);
        cmp_norm(&dx, 1e-5, what);
        cmp_close(&dg, 1e-4, 1e-4, "batchnorm_backward dg (+=)");
        cmp_close(&db, 1e-4, 1e-4, "batchnorm_backward db (+=)");
    }
    /* no running statistics in train mode */
    CPU->ops.batchnorm(&x.c, &g.c, &b.c, 1e-5f, 0.1f, 1, &y.c, &mu.c, &rs.c, NULL, NULL);
    GPU->ops.batchnorm(&x.g, &g.g, &b.g, 1e-5f, 0.1f, 1, &y.g, &mu.g, &rs.g, NULL, NULL);
    cmp_close(&y, 1e-5, 1e-5, "batchnorm train, no running statistics");
    pair *all[] = {&x, &g, &b, &y, &mu, &rs, &rm, &rv, &dy, &dx, &dg, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pfree(all[i]);
}

static void test_batchnorm(void **state) {
    (void)state;
    batchnorm_case(37, 19);
    batchnorm_case(4096, 1024); /* the PKM query: N tokens x heads*k_dim */
    batchnorm_case(2, 300);
}

static void layernorm_groups_case(int64_t N, int G, int64_t c) {
    const int64_t F = G * c;
    pair x = MK2(N, F), g = MK1(F), b = MK1(F), y = MK2(N, F), mu = MK1(N * G), rs = MK1(N * G);
    pair dy = MK2(N, F), dx = MK2(N, F), dg = MK1(F), db = MK1(F);
    prandn(&x, 421, 2.0f), prandn(&g, 422, 1.0f), prandn(&b, 423, 1.0f);
    prandn(&dy, 424, 1.0f), prandn(&dg, 425, 1.0f), prandn(&db, 426, 1.0f);
    char what[96];
    CPU->ops.layernorm_groups(&x.c, G, &g.c, &b.c, 1e-5f, &y.c, &mu.c, &rs.c);
    GPU->ops.layernorm_groups(&x.g, G, &g.g, &b.g, 1e-5f, &y.g, &mu.g, &rs.g);
    snprintf(what, sizeof what, "layernorm_groups %lldx%dx%lld y", (long long)N, G, (long long)c);
    cmp_close(&y, 1e-4, 1e-5, what);
    cmp_close(&mu, 1e-5, 1e-6, "layernorm_groups mean");
    cmp_close(&rs, 1e-5, 1e-6, "layernorm_groups rstd");
    CPU->ops.layernorm_groups_backward(&x.c, G, &g.c, &mu.c, &rs.c, &dy.c, &dx.c, &dg.c, &db.c);
    GPU->ops.layernorm_groups_backward(&x.g, G, &g.g, &mu.g, &rs.g, &dy.g, &dx.g, &dg.g, &db.g);
    snprintf(what, sizeof what, "layernorm_groups_backward %lldx%dx%lld dx", (long long)N, G, (long long)c);
    cmp_norm(&dx, 1e-5, what);
    cmp_close(&dg, 1e-4, 1e-4, "layernorm_groups_backward dg (+=)");
    cmp_close(&db, 1e-4, 1e-4, "layernorm_groups_backward db (+=)");
    CPU->ops.layernorm_groups_backward(&x.c, G, &g.c, &mu.c, &rs.c, &dy.c, &dx.c, NULL, NULL);
    GPU->ops.layernorm_groups_backward(&x.g, G, &g.g, &mu.g, &rs.g, &dy.g, &dx.g, NULL, NULL);
    cmp_norm(&dx, 1e-5, "layernorm_groups_backward dx alone");
    pair *all[] = {&x, &g, &b, &y, &mu, &rs, &dy, &dx, &dg, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pfree(all[i]);
}

static void test_layernorm_groups(void **state) {
    (void)state;
    layernorm_groups_case(67, 4, 37);
    layernorm_groups_case(2048, 4, 256); /* the PKM query */
    layernorm_groups_case(5, 2, 3000);   /* a block per group */
    layernorm_groups_case(30, 1, 50);    /* one group */
}

/* An index past the table is padding on the GPU and reported at sync(),
   which still succeeds (the CPU only logs it too). */
static void test_bad_index_is_reported(void **state) {
    (void)state;
    if (!g_cuda) skip();
    pair src = MK2(4, 3), dst = MK2(2, 3);
    const int32_t idx[2] = {1, 9};
    pair ix = mk_i32(idx, 1, 2, 1);
    prandn(&src, 161, 1.0f);
    GPU->ops.gather_rows(&src.g, &ix.g, &dst.g);
    fl_error err = {0};
    print_message("  (an \"index >= the source's rows\" error line is expected next)\n");
    ts_assert_ok(GPU->sync(&err), &err);
    float h[6];
    GPU->ops.to_host(h, &dst.g, sizeof h);
    for (int j = 0; j < 3; j++) assert_true(h[3 + j] == 0.0f);
    pfree(&src), pfree(&dst), pfree(&ix);
}

/* Last: a kernel that faults poisons the CUDA context for good. sync()
   must then fail with file:line and the runtime's message. */
static void test_device_fault_is_sticky(void **state) {
    (void)state;
    if (!g_cuda) skip();
    int64_t shape[1] = {1 << 20};
    fl_tensor bogus = fl_wrap((void *)(uintptr_t)0x10, FL_F32, GPU->device, 1, shape);
    print_message("  (a deliberate illegal address: error lines are expected next)\n");
    GPU->ops.fill(&bogus, 1.0f);
    fl_error err = {0};
    fl_status st = GPU->sync(&err);
    print_message("  sync: %s\n", err.msg);
    assert_int_not_equal(st, FL_OK);
    assert_non_null(strstr(err.msg, ".cu:"));
    assert_non_null(strstr(err.msg, "cuda"));
    fl_error again = {0};
    assert_int_not_equal(GPU->sync(&again), FL_OK); /* sticky */
}

/* ------------------------------------------------------------------------ */
/* bf16 inputs and outputs (fl_host.act_dtype)                                */
/*                                                                            */
/* GEMMs with A, B or both in bf16 against the CPU in the same mode: fp32     */
/* (normwise <= 1e-5; the bf16 inputs are widened exactly on both), tf32      */
/* (<= 1e-2) and bf16 (<= 1e-4: both sides round the f32 input to the same    */
/* bf16 values, so only the f32 accumulation order differs; a GPU that        */
/* rounded differently, e.g. truncating, would be ~2e-3 off). The ops that    */
/* may write bf16 (layernorm, activation, mul): the GPU's bf16 output is its  */
/* own f32 result rounded, bit for bit, and within one bf16 step (at most     */
/* 2^-7 relative) of the CPU's.                                               */
/* ------------------------------------------------------------------------ */

/* Both backends in one GEMM precision: the GPU's mode, the CPU in bf16 when
   the GPU is, else fp32. */
static void math_both(const char *mode) {
    fl_error err = {0};
    set_math(mode);
    ts_assert_ok(fl_cpu_set_precision(strcmp(mode, "bf16") ? "fp32" : "bf16", &err), &err);
    g_gemm_tol = !strcmp(mode, "tf32") ? 1e-2 : !strcmp(mode, "bf16") ? 1e-4 : g_cuda ? 1e-5 : 1e-6;
}

/* A bf16 pair holding f's values rounded; f gets the rounded values too. */
static pair bf16_of(pair *f) {
    pair h = mk(FL_BF16, f->c.ndim, f->c.shape[0], f->c.shape[1], f->c.shape[2], f->c.shape[3]);
    float *v = malloc(f->bytes + 4);
    uint16_t *b = malloc(h.bytes + 4);
    CPU->ops.to_host(v, &f->c, f->bytes);
    for (size_t i = 0; i < f->n; i++) b[i] = ts_bf16(v[i]), v[i] = ts_bf16_float(b[i]);
    pset(&h, b);
    pset(f, v);
    free(v), free(b);
    return h;
}

/* which: bit 0 = the first input in bf16, bit 1 = the second */
static const char *bf16_which(int which) { return which == 1 ? "A bf16" : which == 2 ? "B bf16" : "A,B bf16"; }

static void bf16_gemm_case(const char *mode, int which, int ta, int tb, int64_t M, int64_t N, int64_t K) {
    pair A = ta ? MK2(K, M) : MK2(M, K), B = tb ? MK2(N, K) : MK2(K, N), C = MK2(M, N);
    prandn(&A, 171, 1.0f), prandn(&B, 172, 1.0f), prandn(&C, 173, 1.0f);
    pair Ah = which & 1 ? bf16_of(&A) : A, Bh = which & 2 ? bf16_of(&B) : B;
    CPU->ops.gemm(ta, tb, 0.5f, &Ah.c, &Bh.c, 0.75f, &C.c);
    GPU->ops.gemm(ta, tb, 0.5f, &Ah.g, &Bh.g, 0.75f, &C.g);
    char what[96];
    snprintf(what, sizeof what, "%s gemm %c%c %lldx%lldx%lld %s", mode, ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)M,
             (long long)N, (long long)K, bf16_which(which));
    cmp_norm(&C, g_gemm_tol, what);
    if (which & 1) pfree(&Ah);
    if (which & 2) pfree(&Bh);
    pfree(&A), pfree(&B), pfree(&C);
}

static void bf16_batched_case(const char *mode, int which, int ta, int tb) {
    const int64_t nb = 5, M = 19, N = 35, K = 44;
    pair A = ta ? MK3(nb, K, M) : MK3(nb, M, K), B = tb ? MK3(nb, N, K) : MK3(nb, K, N), C = MK3(nb, M, N);
    prandn(&A, 174, 1.0f), prandn(&B, 175, 1.0f), prandn(&C, 176, 1.0f);
    pair Ah = which & 1 ? bf16_of(&A) : A, Bh = which & 2 ? bf16_of(&B) : B;
    CPU->ops.gemm_batched(ta, tb, 1.5f, &Ah.c, &Bh.c, 0.5f, &C.c);
    GPU->ops.gemm_batched(ta, tb, 1.5f, &Ah.g, &Bh.g, 0.5f, &C.g);
    char what[96];
    snprintf(what, sizeof what, "%s gemm_batched %c%c %s", mode, ta ? 'T' : 'N', tb ? 'T' : 'N', bf16_which(which));
    cmp_norm(&C, g_gemm_tol, what);
    if (which & 1) pfree(&Ah);
    if (which & 2) pfree(&Bh);
    pfree(&A), pfree(&B), pfree(&C);
}

/* grouped_case's groups (empty first, middle and last), A and W / dY in bf16 as `which` says */
static void bf16_grouped_case(const char *mode, int which, int transW, int loop) {
#ifdef FFNLAB_HAVE_CUDA
    if (g_cuda) fl_cuda_set_grouped_loop(loop);
#endif
    enum { G = 6 };
    const int64_t off[G + 1] = {0, 0, 37, 37, 90, 161, 161};
    const int64_t N = 170, K = 48, M = 29;
    pair A = MK2(N, K), W = transW ? MK3(G, M, K) : MK3(G, K, M), C = MK2(N, M), dY = MK2(N, M), dW = MK3(G, K, M);
    prandn(&A, 177, 1.0f), prandn(&W, 178, 0.3f), prandn(&C, 179, 1.0f), prandn(&dY, 180, 1.0f), prandn(&dW, 181, 1.0f);
    pair Ah = which & 1 ? bf16_of(&A) : A, Wh = which & 2 ? bf16_of(&W) : W, dYh = which & 2 ? bf16_of(&dY) : dY;
    CPU->ops.gemm_grouped(transW, 0.7f, &Ah.c, &Wh.c, off, G, 0.5f, &C.c);
    GPU->ops.gemm_grouped(transW, 0.7f, &Ah.g, &Wh.g, off, G, 0.5f, &C.g);
    char what[112];
    snprintf(what, sizeof what, "%s gemm_grouped transW=%d %s %s", mode, transW, bf16_which(which),
             loop ? "loop" : "grouped call");
    cmp_norm(&C, g_gemm_tol, what);
    CPU->ops.gemm_grouped_wgrad(1.0f, &Ah.c, &dYh.c, off, G, 0.25f, &dW.c);
    GPU->ops.gemm_grouped_wgrad(1.0f, &Ah.g, &dYh.g, off, G, 0.25f, &dW.g);
    snprintf(what, sizeof what, "%s gemm_grouped_wgrad %s %s", mode, which == 2 ? "dY bf16" : bf16_which(which),
             loop ? "loop" : "grouped call");
    cmp_norm(&dW, g_gemm_tol, what);
    if (which & 1) pfree(&Ah);
    if (which & 2) pfree(&Wh), pfree(&dYh);
    pfree(&A), pfree(&W), pfree(&C), pfree(&dY), pfree(&dW);
#ifdef FFNLAB_HAVE_CUDA
    if (g_cuda) fl_cuda_set_grouped_loop(0);
#endif
}

static void test_gemm_bf16_inputs(void **state) {
    (void)state;
    const char *modes[] = {"fp32", "tf32", "bf16"};
    for (int md = 0; md < 3; md++) {
        if (!g_cuda && md == 1) continue; /* the CPU has no tf32 */
        math_both(modes[md]);
        for (int which = 1; which <= 3; which++) {
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    bf16_gemm_case(modes[md], which, ta, tb, 67, 45, 33);
                    bf16_gemm_case(modes[md], which, ta, tb, 129, 70, 300);
                    bf16_batched_case(modes[md], which, ta, tb);
                }
            for (int transW = 0; transW < 2; transW++)
                for (int loop = 0; loop < 2; loop++) bf16_grouped_case(modes[md], which, transW, loop);
        }
    }
    math_both("fp32");
    math_tf32();
}

/* f32 and bf16 outputs of one op on both sides: the GPU's bf16 is its f32
   rounded (exactly), and within one bf16 step of the CPU's. */
static void cmp_bf16_output(const pair *f, const pair *h, const char *what) {
    float *fc, *fg;
    uint16_t *hc, *hg;
    pget(f, (void **)&fc, (void **)&fg);
    pget(h, (void **)&hc, (void **)&hg);
    size_t bad = 0, far = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (hg[i] != ts_bf16(fg[i]) && bad++ < 5)
            print_message("%s[%zu]: gpu bf16 0x%04x, its f32 %.9g rounds to 0x%04x\n", what, i, hg[i], fg[i],
                          ts_bf16(fg[i]));
        const float c = ts_bf16_float(hc[i]), g = ts_bf16_float(hg[i]);
        if (!(fabsf(g - c) <= 0x1p-7f * fabsf(c) + 1e-6f) && !(isnan(c) && isnan(g)) && far++ < 5)
            print_message("%s[%zu]: gpu %.9g, cpu %.9g\n", what, i, g, c);
    }
    print_message("  %-44s bf16 = own f32 rounded; within 2^-7 of the cpu\n", what);
    free(fc), free(fg), free(hc), free(hg);
    if (bad) fail_msg("%s: %zu bf16 values are not the GPU's f32 result rounded", what, bad);
    if (far) fail_msg("%s: %zu bf16 values more than one bf16 step from the CPU's", what, far);
}

static void bf16_layernorm_case(int64_t N, int64_t D) {
    pair x = MK2(N, D), g = MK1(D), b = MK1(D), y = MK2(N, D), mu = MK1(N), rs = MK1(N);
    pair yh = mk(FL_BF16, 2, N, D, 1, 1);
    prandn(&x, 182, 2.0f), prandn(&g, 183, 0.5f), prandn(&b, 184, 0.5f);
    CPU->ops.layernorm(&x.c, &g.c, &b.c, 1e-5f, &y.c, NULL, NULL);
    GPU->ops.layernorm(&x.g, &g.g, &b.g, 1e-5f, &y.g, NULL, NULL);
    CPU->ops.layernorm(&x.c, &g.c, &b.c, 1e-5f, &yh.c, &mu.c, &rs.c);
    GPU->ops.layernorm(&x.g, &g.g, &b.g, 1e-5f, &yh.g, &mu.g, &rs.g);
    char what[64];
    snprintf(what, sizeof what, "layernorm y bf16 %lldx%lld", (long long)N, (long long)D);
    cmp_bf16_output(&y, &yh, what);
    cmp_close(&rs, 1e-5, 1e-6, "layernorm rstd (bf16 y)");
    pfree(&x), pfree(&g), pfree(&b), pfree(&y), pfree(&mu), pfree(&rs), pfree(&yh);
}

static void test_bf16_outputs(void **state) {
    (void)state;
    bf16_layernorm_case(67, 77);
    bf16_layernorm_case(5, 3000); /* a block per row */
    const int64_t n = 10007;
    pair a = MK1(n), c = MK1(n), o = MK1(n), oh = mk(FL_BF16, 1, n, 1, 1, 1);
    prandn(&a, 185, 3.0f), prandn(&c, 186, 1.0f);
    for (int act = FL_ACT_IDENTITY; act <= FL_ACT_SOFTPLUS; act++) {
        CPU->ops.activation(act, &a.c, &o.c), GPU->ops.activation(act, &a.g, &o.g);
        CPU->ops.activation(act, &a.c, &oh.c), GPU->ops.activation(act, &a.g, &oh.g);
        char what[64];
        snprintf(what, sizeof what, "activation %d bf16", act);
        cmp_bf16_output(&o, &oh, what);
    }
    pair x2 = MK2(91, 110), b2 = MK1(110), o2 = MK2(91, 110), oh2 = mk(FL_BF16, 2, 91, 110, 1, 1);
    prandn(&x2, 187, 3.0f), prandn(&b2, 188, 1.0f);
    CPU->ops.bias_activation(FL_ACT_GELU, &x2.c, &b2.c, &o2.c), GPU->ops.bias_activation(FL_ACT_GELU, &x2.g, &b2.g, &o2.g);
    CPU->ops.bias_activation(FL_ACT_GELU, &x2.c, &b2.c, &oh2.c);
    GPU->ops.bias_activation(FL_ACT_GELU, &x2.g, &b2.g, &oh2.g);
    cmp_bf16_output(&o2, &oh2, "bias_activation gelu bf16");
    pfree(&x2), pfree(&b2), pfree(&o2), pfree(&oh2);
    CPU->ops.mul(&a.c, &c.c, &o.c), GPU->ops.mul(&a.g, &c.g, &o.g);
    CPU->ops.mul(&a.c, &c.c, &oh.c), GPU->ops.mul(&a.g, &c.g, &oh.g);
    cmp_bf16_output(&o, &oh, "mul bf16");
    pfree(&a), pfree(&c), pfree(&o), pfree(&oh);
}

int main(void) {
    CPU = fl_backend_cpu();
#ifdef FFNLAB_TEST_CUDA_EMU
    g_cuda = ts_gpu_under_test("test_cuda_backend_emu", ts_cuda_emu_backend, &GPU);
#else
    g_cuda = ts_gpu_under_test("test_cuda_backend", NULL, &GPU);
#endif
    if (g_cuda == 77) return 77; /* ctest: SKIP_RETURN_CODE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_gemm_tf32),
        cmocka_unit_test(test_gemm_fp32),
        cmocka_unit_test(test_gemm_batched),
        cmocka_unit_test(test_gemm_grouped),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_bias_activation_grouped),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_hash_ids),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_gather_scatter),
        cmocka_unit_test(test_embedding_bag),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_bucket_sort),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_masks),
        cmocka_unit_test(test_attention_decode),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_layernorm_groups),
        cmocka_unit_test(test_gemm_bf16_inputs),
        cmocka_unit_test(test_bf16_outputs),
        cmocka_unit_test(test_bad_index_is_reported),
        cmocka_unit_test(test_device_fault_is_sticky), /* must stay last */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
