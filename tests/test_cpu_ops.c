/*
 * tests/test_cpu_ops.c — the CPU backend's fl_ops table (the ops plugins
 * use) against naive double-precision references on small random shapes
 * (odd sizes that are not multiples of the vector width, every transpose,
 * alpha/beta, empty groups), and every op with a backward against a central
 * finite difference of the scalar loss L = sum(out * w) for random w.
 *
 * FD in fp32: eps = 1e-3 on inputs of order 1; L is summed in double so the
 * only noise is the ops' own rounding. Each check prints its relative error
 * (max |analytic - FD| / max |FD|).
 *
 * The ops that may write bf16 (layernorm, activation, mul: an input that
 * only feeds GEMMs) must write exactly the f32 result rounded to nearest
 * even, bit for bit, on threaded sizes with ragged tails.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "backend.h"
#include "ffnlab/rng.h"

static const fl_backend *be;
static const fl_ops *ops;

static int setup(void **state) {
    (void)state;
    be = fl_backend_cpu();
    tf_use(be);
    ops = &be->ops;
    print_message("backend: %s\n", be->describe());
    return 0;
}

/* ------------------------------------------------------ memory, table */

static void test_alloc_and_table(void **state) {
    (void)state;
    const size_t sizes[] = {0, 1, 3, 64, 1000, 1 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        unsigned char *p = be->alloc(sizes[s]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        for (size_t i = 0; i < sizes[s]; i++) assert_int_equal(p[i], 0);
        be->free(p);
    }
    assert_string_equal(be->name, "cpu");
    assert_int_equal(ops->size, sizeof(fl_ops));
    const void *const *fp = (const void *const *)&ops->gemm;
    for (size_t i = 0; i < (sizeof(fl_ops) - offsetof(fl_ops, gemm)) / sizeof(void *); i++)
        assert_non_null(fp[i]);
    const char *d = be->describe();
    assert_non_null(strstr(d, "oneDNN"));
    assert_non_null(strstr(d, "OpenMP"));
}

/* --------------------------------------------------------------- gemm */

static void test_gemm(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{7, 13, 5}, {33, 17, 29}, {1, 1, 1}, {64, 9, 70}, {5, 40, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                tf_check_gemm(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, 1e-5);
                tf_check_gemm(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 0.7f, 0.3f, 1e-5);
            }
    /* K = 0: the product is empty, C = beta C */
    fl_tensor A = f2(3, 0), B = f2(0, 4), C = f2(3, 4);
    for (int i = 0; i < 12; i++) F(&C)[i] = (float)i;
    ops->gemm(0, 0, 1.0f, &A, &B, 0.5f, &C);
    for (int i = 0; i < 12; i++) assert_float_equal(F(&C)[i], 0.5f * i, 0);
    /* a 3-D A[B,T,C] is the matrix [B*T, C] */
    fl_tensor X = f3(2, 3, 5), W = f2(5, 4), Y = f2(6, 4);
    rnd(&X, 4, -1, 1);
    rnd(&W, 5, -1, 1);
    double ref[24];
    tf_gemm_ref(0, 0, 6, 4, 5, 1.0f, F(&X), F(&W), 0.0f, NULL, ref);
    ops->gemm(0, 0, 1.0f, &X, &W, 0.0f, &Y);
    chk(F(&Y), to_f(ref, 24), 24, 1e-5, 1e-5, "gemm 3-D A");
}

static void test_gemm_batched(void **state) {
    (void)state;
    const int64_t nb = 3, M = 6, N = 11, K = 9;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            fl_tensor A = ta ? f3(nb, K, M) : f3(nb, M, K), B = tb ? f3(nb, N, K) : f3(nb, K, N);
            fl_tensor C = f3(nb, M, N);
            rnd(&A, 10, -1, 1);
            rnd(&B, 11, -1, 1);
            rnd(&C, 12, -1, 1);
            fl_tensor C0 = clone(&C);
            double ref[3 * 6 * 11];
            for (int64_t b = 0; b < nb; b++)
                tf_gemm_ref(ta, tb, M, N, K, 0.5f, F(&A) + b * M * K, F(&B) + b * K * N, 2.0f,
                         F(&C0) + b * M * N, ref + b * M * N);
            ops->gemm_batched(ta, tb, 0.5f, &A, &B, 2.0f, &C);
            chk(F(&C), to_f(ref, nb * M * N), (size_t)(nb * M * N), 1e-5, 1e-5,
                            "gemm_batched");
        }
}

/* Five groups over 15 rows of A[15,6] (off[6]), W and dW of 9 columns:
   gemm_grouped in both layouts of W, with and without alpha and beta, and
   the weight gradient, against the reference. */
static void check_grouped(const int64_t off[6], const char *what) {
    const int G = 5;
    const int64_t N = 15, K = 6, M = 9;
    char label[96];
    for (int tw = 0; tw < 2; tw++)
        for (int b = 0; b < 2; b++) {
            const float alpha = b ? 0.8f : 1.0f, beta = b ? 0.25f : 0.0f;
            fl_tensor A = f2(N, K), W = tw ? f3(G, M, K) : f3(G, K, M), C = f2(N, M);
            rnd(&A, 20, -1, 1);
            rnd(&W, 21, -1, 1);
            rnd(&C, 22, -1, 1);
            fl_tensor C0 = clone(&C);
            double ref[15 * 9];
            for (int g = 0; g < G; g++) {
                const int64_t r0 = off[g], n = off[g + 1] - off[g];
                if (n)
                    tf_gemm_ref(0, tw, n, M, K, alpha, F(&A) + r0 * K, F(&W) + g * K * M, beta,
                             F(&C0) + r0 * M, ref + r0 * M);
            }
            ops->gemm_grouped(tw, alpha, &A, &W, off, G, beta, &C);
            snprintf(label, sizeof label, "gemm_grouped%s, %s", tw ? " transW" : "", what);
            chk(F(&C), to_f(ref, N * M), (size_t)(N * M), 1e-5, 1e-5, label);
        }
    /* wgrad: dW[g] = alpha A_gᵀ dY_g + beta dW[g]; the empty groups get beta dW */
    fl_tensor A = f2(N, K), dY = f2(N, M), dW = f3(G, K, M);
    rnd(&A, 23, -1, 1);
    rnd(&dY, 24, -1, 1);
    rnd(&dW, 25, -1, 1);
    fl_tensor dW0 = clone(&dW);
    double ref[5 * 6 * 9];
    for (int g = 0; g < G; g++)
        tf_gemm_ref(1, 0, K, M, off[g + 1] - off[g], 0.9f, F(&A) + off[g] * K, F(&dY) + off[g] * M,
                 0.5f, F(&dW0) + g * K * M, ref + g * K * M);
    ops->gemm_grouped_wgrad(0.9f, &A, &dY, off, G, 0.5f, &dW);
    snprintf(label, sizeof label, "gemm_grouped_wgrad, %s", what);
    chk(F(&dW), to_f(ref, G * K * M), (size_t)(G * K * M), 1e-5, 1e-5, label);
}

static void test_gemm_grouped(void **state) {
    (void)state;
    const int64_t even[6] = {0, 3, 3, 10, 10, 15}, lopsided[6] = {0, 2, 2, 14, 14, 15};
    check_grouped(even, "groups of 3, 0, 7, 0, 5 rows");
    /* on 2 threads the group of 12 rows runs on both first, then the others one per thread */
    check_grouped(lopsided, "groups of 2, 0, 12, 0, 1 rows");
}

/* gemm backward pair: C = A B, dA = dC Bᵀ, dB = Aᵀ dC */
static fl_tensor gA, gB, gC, gW;
static double gemm_loss(void) {
    ops->gemm(0, 0, 1.0f, &gA, &gB, 0.0f, &gC);
    return dot_d(F(&gC), F(&gW), N_(&gC));
}

static void test_gemm_grad(void **state) {
    (void)state;
    gA = f2(5, 7), gB = f2(7, 9), gC = f2(5, 9), gW = f2(5, 9);
    rnd(&gA, 30, -1, 1);
    rnd(&gB, 31, -1, 1);
    rnd(&gW, 32, -1, 1);
    fl_tensor dA = f2(5, 7), dB = f2(7, 9);
    ops->gemm(0, 1, 1.0f, &gW, &gB, 0.0f, &dA);
    ops->gemm(1, 0, 1.0f, &gA, &gW, 0.0f, &dB);
    fd_check("gemm dA = dC Bt", F(&gA), N_(&gA), F(&dA), gemm_loss);
    fd_check("gemm dB = At dC", F(&gB), N_(&gB), F(&dB), gemm_loss);
}

/* ------------------------------------------------------- elementwise */

static void test_bias_and_sum_rows(void **state) {
    (void)state;
    const int64_t N = 37, M = 19;
    fl_tensor y = f2(N, M), b = f1(M), s = f1(M);
    rnd(&y, 40, -1, 1);
    rnd(&b, 41, -1, 1);
    rnd(&s, 42, -1, 1);
    fl_tensor y0 = clone(&y), s0 = clone(&s);
    ops->add_bias(&y, &b);
    double ref[37 * 19], sr[19];
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < M; j++) ref[i * M + j] = (double)F(&y0)[i * M + j] + F(&b)[j];
    chk(F(&y), to_f(ref, N * M), (size_t)(N * M), 1e-6, 1e-6, "add_bias");
    for (int64_t j = 0; j < M; j++) {
        sr[j] = 0.5 * F(&s0)[j];
        for (int64_t i = 0; i < N; i++) sr[j] += F(&y)[i * M + j];
    }
    ops->sum_rows(&y, 0.5f, &s);
    chk(F(&s), to_f(sr, M), (size_t)M, 1e-5, 1e-5, "sum_rows beta=0.5");
    /* large enough for the threaded path */
    fl_tensor big = f2(3001, 33), bs = f1(33);
    rnd(&big, 43, -1, 1);
    double br[33] = {0};
    for (int64_t i = 0; i < 3001; i++)
        for (int j = 0; j < 33; j++) br[j] += F(&big)[i * 33 + j];
    ops->sum_rows(&big, 0.0f, &bs);
    chk(F(&bs), to_f(br, 33), 33, 1e-5, 1e-5, "sum_rows threaded");
}

static const char *act_name[] = {"identity", "gelu", "relu", "silu"};

static void test_activation(void **state) {
    (void)state;
    const int64_t n = 1001;
    for (int act = 0; act <= FL_ACT_SILU; act++) {
        fl_tensor x = f1(n), y = f1(n);
        rnd(&x, 50 + act, -6, 6);
        F(&x)[0] = -100, F(&x)[1] = 100, F(&x)[2] = 0, F(&x)[3] = -30;
        double ref[1001];
        for (int64_t i = 0; i < n; i++) ref[i] = ts_act_ref(act, F(&x)[i]);
        ops->activation(act, &x, &y);
        chk(F(&y), to_f(ref, n), (size_t)n, 2e-6, 1e-6, act_name[act]);
        ops->activation(act, &x, &x); /* in place */
        chk(F(&x), to_f(ref, n), (size_t)n, 2e-6, 1e-6, act_name[act]);
    }
}

/* GELU's exp works on x clamped to [-9, 9]; the tails must still be GELU's:
   x beyond 9 is itself, anything below -9 (to -inf) is zero to within
   2e-28, NaN stays NaN, and the gradient is 1 / 0 there and NaN at every
   non-finite x. */
static void test_gelu_tails(void **state) {
    (void)state;
    const float in[] = {8.99f, 9.0f, 9.01f, 30.0f, 1e30f, INFINITY, -8.99f, -9.0f, -9.01f, -30.0f, -1e30f,
                        -INFINITY, NAN};
    const int n = (int)(sizeof in / sizeof *in);
    fl_tensor x = f1(n), y = f1(n), one = f1(n), dx = f1(n);
    memcpy(x.data, in, sizeof in);
    ops->fill(&one, 1.0f);
    ops->activation(FL_ACT_GELU, &x, &y);
    ops->activation_backward(FL_ACT_GELU, &x, &one, &dx);
    for (int i = 0; i < n; i++) {
        const float v = in[i], g = F(&y)[i], d = F(&dx)[i];
        if (isnan(v)) {
            assert_true(isnan(g) && isnan(d));
        } else if (v > 0) {
            assert_float_equal(g, v, 0);
            if (isinf(v)) assert_true(isnan(d));
            else assert_float_equal(d, 1.0f, 1e-6);
        } else {
            assert_true(g <= 0.0f && g > -2e-28f);
            if (isinf(v)) assert_true(isnan(d));
            else assert_true(fabsf(d) < 1e-26f);
        }
    }
}

static int g_act;
static fl_tensor gX, gY, gS, gG, gMean, gRstd;
static double act_loss(void) {
    ops->activation(g_act, &gX, &gY);
    return dot_d(F(&gY), F(&gW), N_(&gY));
}

static void test_activation_backward(void **state) {
    (void)state;
    const int64_t n = 300;
    for (int act = 0; act <= FL_ACT_SILU; act++) {
        g_act = act;
        gX = f1(n), gY = f1(n), gW = f1(n);
        rnd(&gX, 60 + act, -4, 4);
        rnd(&gW, 70 + act, -1, 1);
        for (int64_t i = 0; i < n; i++) /* keep FD off ReLU's kink */
            if (fabsf(F(&gX)[i]) < 0.01f) F(&gX)[i] = 0.5f;
        fl_tensor dx = f1(n);
        ops->activation_backward(act, &gX, &gW, &dx);
        char what[64];
        snprintf(what, sizeof what, "activation_backward %s", act_name[act]);
        fd_check(what, F(&gX), n, F(&dx), act_loss);
        fl_tensor dy = clone(&gW); /* dx may alias dy */
        ops->activation_backward(act, &gX, &dy, &dy);
        chk(F(&dy), F(&dx), (size_t)n, 0, 0, "activation_backward in place");
    }
}

static void test_mul_axpby_fill_copy(void **state) {
    (void)state;
    const int64_t n = 77777; /* threaded, with a ragged tail */
    fl_tensor a = f1(n), b = f1(n), o = f1(n), y = f1(n);
    rnd(&a, 80, -2, 2);
    rnd(&b, 81, -2, 2);
    rnd(&y, 82, -2, 2);
    fl_tensor y0 = clone(&y);
    ops->mul(&a, &b, &o);
    for (int64_t i = 0; i < n; i++) assert_float_equal(F(&o)[i], F(&a)[i] * F(&b)[i], 0);
    ops->axpby(0.5f, &a, -2.0f, &y);
    for (int64_t i = 0; i < n; i++)
        assert_float_equal(F(&y)[i], 0.5f * F(&a)[i] + -2.0f * F(&y0)[i], 1e-6);
    for (int64_t i = 0; i < n; i++) F(&y)[i] = NAN;
    ops->axpby(3.0f, &a, 0.0f, &y); /* beta = 0 does not read y */
    for (int64_t i = 0; i < n; i++) assert_float_equal(F(&y)[i], 3.0f * F(&a)[i], 0);
    ops->copy(&a, &o);
    assert_memory_equal(o.data, a.data, (size_t)n * 4);
    ops->fill(&o, 2.5f);
    for (int64_t i = 0; i < n; i++) assert_float_equal(F(&o)[i], 2.5f, 0);
    fl_tensor ti = tnew(FL_I32, 1, 5, 1, 1, 1), tl = tnew(FL_I64, 1, 5, 1, 1, 1);
    fl_tensor tb = tnew(FL_BF16, 1, 5, 1, 1, 1), tu = tnew(FL_U8, 1, 5, 1, 1, 1);
    ops->fill(&ti, -7.0f);
    ops->fill(&tl, 1e10f);
    ops->fill(&tb, 1.0f);
    ops->fill(&tu, 3.0f);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(((int32_t *)ti.data)[i], -7);
        assert_int_equal(((int64_t *)tl.data)[i], 10000000000LL);
        assert_int_equal(((uint16_t *)tb.data)[i], 0x3f80);
        assert_int_equal(((uint8_t *)tu.data)[i], 3);
    }
}

/* scale_rows forward; its backward is the pair (scale_rows, row_dot) */
static double scale_loss(void) {
    ops->scale_rows(&gX, &gS, &gY);
    return dot_d(F(&gY), F(&gW), N_(&gY));
}

static void test_scale_rows_row_dot(void **state) {
    (void)state;
    const int64_t N = 9, M = 13;
    gX = f2(N, M), gS = f1(N), gY = f2(N, M), gW = f2(N, M);
    rnd(&gX, 90, -1, 1);
    rnd(&gS, 91, -2, 2);
    rnd(&gW, 92, -1, 1);
    ops->scale_rows(&gX, &gS, &gY);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < M; j++)
            assert_float_equal(F(&gY)[i * M + j], F(&gX)[i * M + j] * F(&gS)[i], 0);
    fl_tensor rd = f1(N);
    ops->row_dot(&gX, &gW, &rd);
    double ref[9];
    for (int64_t i = 0; i < N; i++) ref[i] = dot_d(F(&gX) + i * M, F(&gW) + i * M, M);
    chk(F(&rd), to_f(ref, N), (size_t)N, 1e-5, 1e-6, "row_dot");
    fl_tensor dx = f2(N, M), ds = f1(N);
    ops->scale_rows(&gW, &gS, &dx); /* dL/dx = w * s */
    ops->row_dot(&gW, &gX, &ds);    /* dL/ds = sum_j w x */
    fd_check("scale_rows dx", F(&gX), N_(&gX), F(&dx), scale_loss);
    fd_check("row_dot as scale_rows ds", F(&gS), N, F(&ds), scale_loss);
}

/* --------------------------------------------------- softmax family */

static void test_softmax_logsumexp(void **state) {
    (void)state;
    const int64_t N = 11, M = 37;
    fl_tensor x = f2(N, M), y = f2(N, M), l = f1(N);
    rnd(&x, 100, -5, 5);
    for (int64_t j = 0; j < M; j++) F(&x)[j] += 1000.0f; /* row 0: stability */
    F(&x)[M + 3] = -INFINITY;                             /* row 1: a masked entry */
    double ref[11 * 37], lref[11];
    for (int64_t i = 0; i < N; i++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < M; j++) m = fmax(m, F(&x)[i * M + j]);
        for (int64_t j = 0; j < M; j++) s += exp(F(&x)[i * M + j] - m);
        for (int64_t j = 0; j < M; j++) ref[i * M + j] = exp(F(&x)[i * M + j] - m) / s;
        lref[i] = m + log(s);
    }
    ops->softmax(&x, &y);
    chk(F(&y), to_f(ref, N * M), (size_t)(N * M), 1e-5, 1e-7, "softmax");
    assert_float_equal(F(&y)[M + 3], 0.0f, 0);
    ops->logsumexp(&x, &l);
    chk(F(&l), to_f(lref, N), (size_t)N, 1e-6, 1e-6, "logsumexp");
    ops->softmax(&x, &x); /* in place */
    chk(F(&x), to_f(ref, N * M), (size_t)(N * M), 1e-5, 1e-7, "softmax in place");
}

static double softmax_loss(void) {
    ops->softmax(&gX, &gY);
    return dot_d(F(&gY), F(&gW), N_(&gY));
}

static void test_softmax_backward(void **state) {
    (void)state;
    const int64_t N = 6, M = 23;
    gX = f2(N, M), gY = f2(N, M), gW = f2(N, M);
    rnd(&gX, 110, -3, 3);
    rnd(&gW, 111, -1, 1);
    ops->softmax(&gX, &gY);
    fl_tensor dx = f2(N, M);
    ops->softmax_backward(&gY, &gW, &dx);
    fd_check("softmax_backward", F(&gX), N * M, F(&dx), softmax_loss);
}

/* topk: tests/test_cpu_topk.c */

/* -------------------------------------------------- gather / scatter */

static void test_gather_scatter(void **state) {
    (void)state;
    const int64_t R = 10, D = 21, N = 17;
    fl_tensor src = f2(R, D), idx = i1(N), dst = f2(N, D);
    rnd(&src, 130, -1, 1);
    rnd_idx(&idx, 131, 0, (int)R);
    I(&idx)[4] = -1; /* padding: zero row */
    ops->gather_rows(&src, &idx, &dst);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < D; j++)
            assert_float_equal(F(&dst)[i * D + j],
                               I(&idx)[i] < 0 ? 0.0f : F(&src)[I(&idx)[i] * D + j], 0);
    /* scatter-add with duplicates, into a non-zero destination */
    fl_tensor acc = f2(R, D);
    rnd(&acc, 132, -1, 1);
    double ref[10 * 21];
    for (int64_t i = 0; i < R * D; i++) ref[i] = F(&acc)[i];
    for (int64_t i = 0; i < N; i++)
        if (I(&idx)[i] >= 0)
            for (int64_t j = 0; j < D; j++) ref[I(&idx)[i] * D + j] += F(&dst)[i * D + j];
    ops->scatter_add_rows(&dst, &idx, &acc);
    chk(F(&acc), to_f(ref, R * D), (size_t)(R * D), 1e-6, 1e-6, "scatter_add_rows");
    /* threaded path: the result is the same for 1 and 3 threads, bit for bit */
    fl_tensor bs = f2(4000, 40), bi = i1(4000), b1 = f2(50, 40), b3 = f2(50, 40);
    rnd(&bs, 133, -1, 1);
    rnd_idx(&bi, 134, 0, 50);
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    ops->scatter_add_rows(&bs, &bi, &b1);
    omp_set_num_threads(3);
    ops->scatter_add_rows(&bs, &bi, &b3);
    omp_set_num_threads(nt);
    assert_memory_equal(b1.data, b3.data, fl_nbytes(&b1));
}

/* ------------------------------------------------------ embedding bag */

static fl_tensor gT, gIdx;
static double bag_loss(void) {
    ops->embedding_bag(&gT, &gIdx, &gS, &gY);
    return dot_d(F(&gY), F(&gW), N_(&gY));
}

static void test_embedding_bag(void **state) {
    (void)state;
    const int64_t R = 12, D = 19, N = 7, k = 3;
    gT = f2(R, D), gIdx = i2(N, k), gS = f2(N, k), gY = f2(N, D), gW = f2(N, D);
    rnd(&gT, 140, -1, 1);
    rnd_idx(&gIdx, 141, 0, (int)R);
    I(&gIdx)[1] = I(&gIdx)[0]; /* a repeated row inside a bag */
    rnd(&gS, 142, -1, 1);
    rnd(&gW, 143, -1, 1);
    double ref[7 * 19] = {0};
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t c = 0; c < D; c++)
                ref[i * D + c] += (double)F(&gS)[i * k + j] * F(&gT)[I(&gIdx)[i * k + j] * D + c];
    ops->embedding_bag(&gT, &gIdx, &gS, &gY);
    chk(F(&gY), to_f(ref, N * D), (size_t)(N * D), 1e-5, 1e-6, "embedding_bag");
    /* w = NULL: plain sums */
    fl_tensor ones = f2(N, k), y1 = f2(N, D), y2 = f2(N, D);
    ops->fill(&ones, 1.0f);
    ops->embedding_bag(&gT, &gIdx, &ones, &y1);
    ops->embedding_bag(&gT, &gIdx, NULL, &y2);
    chk(F(&y2), F(&y1), (size_t)(N * D), 0, 0, "embedding_bag w=NULL");
    /* backward: dtable accumulates, dw = dout . table rows */
    fl_tensor dT = f2(R, D), dw = f2(N, k);
    ops->embedding_bag_backward(&gW, &gT, &gIdx, &gS, &dT, &dw);
    fd_check("embedding_bag_backward dtable", F(&gT), R * D, F(&dT), bag_loss);
    fd_check("embedding_bag_backward dw", F(&gS), N * k, F(&dw), bag_loss);
}

/* ----------------------------------------------------------- layernorm */

static fl_tensor gB2;
static double ln_loss(void) {
    ops->layernorm(&gX, &gG, &gB2, 1e-5f, &gY, &gMean, &gRstd);
    return dot_d(F(&gY), F(&gW), N_(&gY));
}

static void test_layernorm(void **state) {
    (void)state;
    const int64_t N = 9, D = 29;
    gX = f2(N, D), gG = f1(D), gB2 = f1(D), gY = f2(N, D), gW = f2(N, D);
    gMean = f1(N), gRstd = f1(N);
    rnd(&gX, 150, -2, 3);
    rnd(&gG, 151, 0.5f, 1.5f);
    rnd(&gB2, 152, -1, 1);
    rnd(&gW, 153, -1, 1);
    double ref[9 * 29], mr[9], rr[9];
    for (int64_t i = 0; i < N; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += F(&gX)[i * D + j];
        m /= D;
        for (int64_t j = 0; j < D; j++) v += (F(&gX)[i * D + j] - m) * (F(&gX)[i * D + j] - m);
        v /= D;
        mr[i] = m, rr[i] = 1 / sqrt(v + 1e-5);
        for (int64_t j = 0; j < D; j++)
            ref[i * D + j] = (F(&gX)[i * D + j] - m) * rr[i] * F(&gG)[j] + F(&gB2)[j];
    }
    ops->layernorm(&gX, &gG, &gB2, 1e-5f, &gY, &gMean, &gRstd);
    chk(F(&gY), to_f(ref, N * D), (size_t)(N * D), 1e-5, 1e-5, "layernorm y");
    chk(F(&gMean), to_f(mr, N), (size_t)N, 1e-5, 1e-6, "layernorm mean");
    chk(F(&gRstd), to_f(rr, N), (size_t)N, 1e-5, 1e-6, "layernorm rstd");
    /* no affine */
    fl_tensor y2 = f2(N, D);
    ops->layernorm(&gX, NULL, NULL, 1e-5f, &y2, NULL, NULL);
    for (int64_t i = 0; i < N * D; i++) ref[i] = (ref[i] - F(&gB2)[i % D]) / F(&gG)[i % D];
    chk(F(&y2), to_f(ref, N * D), (size_t)(N * D), 1e-4, 1e-5, "layernorm no affine");
    /* backward; dg, db accumulate onto 1.0 */
    ops->layernorm(&gX, &gG, &gB2, 1e-5f, &gY, &gMean, &gRstd);
    fl_tensor dx = f2(N, D), dg = f1(D), db = f1(D);
    ops->fill(&dg, 1.0f);
    ops->fill(&db, 1.0f);
    ops->layernorm_backward(&gX, &gG, &gMean, &gRstd, &gW, &dx, &dg, &db);
    for (int64_t j = 0; j < D; j++) F(&dg)[j] -= 1.0f, F(&db)[j] -= 1.0f;
    fd_check("layernorm_backward dx", F(&gX), N * D, F(&dx), ln_loss);
    fd_check("layernorm_backward dg", F(&gG), D, F(&dg), ln_loss);
    fd_check("layernorm_backward db", F(&gB2), D, F(&db), ln_loss);
    /* the threaded path (per-thread partial dg rows) against a double reference */
    fl_tensor X = f2(2000, 48), Y = f2(2000, 48), M = f1(2000), S = f1(2000), G = f1(48);
    fl_tensor DX = f2(2000, 48), DY = f2(2000, 48), DG = f1(48);
    rnd(&X, 154, -1, 1), rnd(&DY, 155, -1, 1), rnd(&G, 156, 0, 2);
    ops->layernorm(&X, &G, NULL, 1e-5f, &Y, &M, &S);
    ops->layernorm_backward(&X, &G, &M, &S, &DY, &DX, &DG, NULL);
    double dgr[48] = {0};
    for (int64_t i = 0; i < 2000; i++)
        for (int j = 0; j < 48; j++)
            dgr[j] += (double)F(&DY)[i * 48 + j] * (F(&X)[i * 48 + j] - F(&M)[i]) * F(&S)[i];
    chk(F(&DG), to_f(dgr, 48), 48, 1e-4, 1e-4, "layernorm_backward dg threaded");
}

/* --------------------------------------------------------- bf16 outputs */

/* out (bf16) holds exactly want (f32) rounded to nearest even. */
static void expect_rounded(const fl_tensor *out, const fl_tensor *want, const char *what) {
    assert_int_equal(out->dtype, FL_BF16);
    const uint16_t *h = out->data;
    for (int64_t i = 0; i < fl_numel(want); i++)
        if (h[i] != ts_bf16(F(want)[i]))
            fail_msg("%s[%lld]: bf16 0x%04x, want 0x%04x (f32 %.9g)", what, (long long)i, h[i], ts_bf16(F(want)[i]),
                     F(want)[i]);
    print_message("%-40s bf16 = f32 result rounded (%lld values)\n", what, (long long)fl_numel(want));
}

static void test_bf16_outputs(void **state) {
    (void)state;
    const int64_t N = 1201, D = 77; /* threaded rows, D not a multiple of the vector width */
    fl_tensor x = f2(N, D), g = f1(D), b = f1(D), y = f2(N, D), mu = f1(N), rs = f1(N), mu2 = f1(N), rs2 = f1(N);
    fl_tensor yh = tnew(FL_BF16, 2, N, D, 1, 1);
    rnd(&x, 300, -3, 3), rnd(&g, 301, 0.5f, 1.5f), rnd(&b, 302, -1, 1);
    ops->layernorm(&x, &g, &b, 1e-5f, &y, &mu, &rs);
    ops->layernorm(&x, &g, &b, 1e-5f, &yh, &mu2, &rs2);
    expect_rounded(&yh, &y, "layernorm y bf16");
    assert_memory_equal(mu.data, mu2.data, (size_t)N * 4); /* mean, rstd: f32 as ever */
    assert_memory_equal(rs.data, rs2.data, (size_t)N * 4);
    ops->layernorm(&x, NULL, NULL, 1e-5f, &y, NULL, NULL);
    ops->layernorm(&x, NULL, NULL, 1e-5f, &yh, NULL, NULL);
    expect_rounded(&yh, &y, "layernorm y bf16, no affine");
    const int64_t n = 77777; /* several chunks and a ragged tail */
    fl_tensor a = f1(n), c = f1(n), o = f1(n), oh = tnew(FL_BF16, 1, n, 1, 1, 1);
    rnd(&a, 303, -8, 8), rnd(&c, 304, -2, 2);
    /* ties (to even: down, up), just above a tie, infinities (identity passes them on) */
    F(&a)[0] = 1.0f + 0x1p-8f, F(&a)[1] = 1.0f + 3 * 0x1p-8f, F(&a)[2] = 1.0f + 0x1p-8f + 0x1p-20f;
    F(&a)[3] = INFINITY, F(&a)[4] = -INFINITY;
    for (int act = FL_ACT_IDENTITY; act <= FL_ACT_SOFTPLUS; act++) {
        char what[64];
        snprintf(what, sizeof what, "activation %d bf16", act);
        ops->activation(act, &a, &o);
        ops->activation(act, &a, &oh);
        expect_rounded(&oh, &o, what);
    }
    ops->mul(&a, &c, &o);
    ops->mul(&a, &c, &oh);
    expect_rounded(&oh, &o, "mul bf16");
}

/* bias_activation is add_bias then activation in one pass, and its backward
   activation_backward at x + b then sum_rows into db: the same bits, for
   every activation, f32 and bf16 outputs, dx in place of dy, no db; x is
   left as it was. Rows longer than the piece staged on the stack (1024),
   ragged, over several threads. */
static void test_bias_activation(void **state) {
    (void)state;
    const int64_t N = 45, M = 1100;
    fl_tensor x = f2(N, M), b = f1(M), dy = f2(N, M);
    rnd(&x, 90, -4, 4), rnd(&b, 91, -1, 1), rnd(&dy, 92, -1, 1);
    const fl_tensor x0 = clone(&x);
    fl_tensor h = clone(&x);
    ops->add_bias(&h, &b); /* the unfused pre-activation */
    for (int act = FL_ACT_IDENTITY; act <= FL_ACT_SOFTPLUS; act++) {
        fl_tensor y = f2(N, M), want = f2(N, M), yh = tnew(FL_BF16, 2, N, M, 1, 1);
        ops->bias_activation(act, &x, &b, &y);
        ops->activation(act, &h, &want);
        assert_memory_equal(y.data, want.data, (size_t)(N * M) * 4);
        assert_memory_equal(x.data, x0.data, (size_t)(N * M) * 4);
        ops->bias_activation(act, &x, &b, &yh);
        expect_rounded(&yh, &want, "bias_activation bf16");

        fl_tensor dx = f2(N, M), db = f1(M), want_dx = f2(N, M), want_db = f1(M);
        rnd(&db, 93, -1, 1);
        ops->copy(&db, &want_db);
        ops->bias_activation_backward(act, &x, &b, &dy, &dx, &db);
        ops->activation_backward(act, &h, &dy, &want_dx);
        ops->sum_rows(&want_dx, 1.0f, &want_db); /* db accumulates */
        assert_memory_equal(dx.data, want_dx.data, (size_t)(N * M) * 4);
        assert_memory_equal(db.data, want_db.data, (size_t)M * 4);
        fl_tensor d = clone(&dy); /* dx in place of dy, no db */
        ops->bias_activation_backward(act, &x, &b, &d, &d, NULL);
        assert_memory_equal(d.data, want_dx.data, (size_t)(N * M) * 4);
        print_message("bias_activation %d: = add_bias, activation; backward = activation_backward, sum_rows\n", act);
    }
}

/* The grouped ones are bias_activation and its backward on each group's
   rows with that group's bias row (and so add_bias per group, then
   activation): the same bits. Groups here are empty at the start, in the
   middle and at the end (off[G] < N: the rows past it are left alone), one
   group is a single row, rows long enough to go over threads. Backward: dx,
   db per group (accumulated; an empty group's untouched), dx in place of
   dy, no db; the identity in place is the grouped bias gradient alone. */
static void test_bias_activation_grouped(void **state) {
    (void)state;
    enum { G = 6 };
    const int64_t N = 47, M = 1100, off[G + 1] = {0, 0, 9, 10, 10, 38, 43};
    fl_tensor x = f2(N, M), b = f2(G, M), dy = f2(N, M);
    rnd(&x, 94, -4, 4), rnd(&b, 95, -1, 1), rnd(&dy, 96, -1, 1);
    const fl_tensor x0 = clone(&x);
    for (int act = FL_ACT_IDENTITY; act <= FL_ACT_SOFTPLUS; act++) {
        fl_tensor y = f2(N, M), want = f2(N, M);
        fl_tensor yh = tnew(FL_BF16, 2, N, M, 1, 1), wanth = tnew(FL_BF16, 2, N, M, 1, 1);
        ops->fill(&y, 7.0f), ops->fill(&want, 7.0f), ops->fill(&yh, 7.0f), ops->fill(&wanth, 7.0f);
        fl_tensor dx = f2(N, M), want_dx = f2(N, M), db = f2(G, M), want_db = f2(G, M);
        ops->fill(&dx, 5.0f), ops->fill(&want_dx, 5.0f);
        rnd(&db, 97, -1, 1);
        ops->copy(&db, &want_db);
        for (int g = 0; g < G; g++) {
            const int64_t r0 = off[g], n = off[g + 1] - off[g];
            if (n == 0) continue;
            fl_tensor xg = fl_rows(&x, r0, n), bg = fl_rows(&b, g, 1), wg = fl_rows(&want, r0, n);
            fl_tensor whg = fl_rows(&wanth, r0, n), dyg = fl_rows(&dy, r0, n), dxg = fl_rows(&want_dx, r0, n);
            fl_tensor dbg = fl_rows(&want_db, g, 1), hg = clone(&xg);
            ops->bias_activation(act, &xg, &bg, &wg);
            ops->bias_activation(act, &xg, &bg, &whg);
            ops->add_bias(&hg, &bg); /* and the unfused ops give it too */
            fl_tensor unfused = clone(&hg);
            ops->activation(act, &hg, &unfused);
            assert_memory_equal(unfused.data, wg.data, (size_t)(n * M) * 4);
            ops->bias_activation_backward(act, &xg, &bg, &dyg, &dxg, &dbg);
        }
        ops->bias_activation_grouped(act, &x, &b, off, G, &y);
        assert_memory_equal(y.data, want.data, (size_t)(N * M) * 4); /* rows 43.. still 7 */
        assert_memory_equal(x.data, x0.data, (size_t)(N * M) * 4);
        ops->bias_activation_grouped(act, &x, &b, off, G, &yh);
        assert_memory_equal(yh.data, wanth.data, (size_t)(N * M) * 2);
        ops->bias_activation_grouped_backward(act, &x, &b, off, G, &dy, &dx, &db);
        assert_memory_equal(dx.data, want_dx.data, (size_t)(N * M) * 4);
        assert_memory_equal(db.data, want_db.data, (size_t)(G * M) * 4); /* rows 0, 3 (empty) as drawn */
        fl_tensor d = clone(&dy); /* dx in place of dy, no db */
        ops->bias_activation_grouped_backward(act, &x, &b, off, G, &d, &d, NULL);
        assert_memory_equal(d.data, want_dx.data, (size_t)(off[G] * M) * 4);
        assert_memory_equal(F(&d) + off[G] * M, F(&dy) + off[G] * M, (size_t)((N - off[G]) * M) * 4);
        print_message("bias_activation_grouped %d: = bias_activation per group, and its backward\n", act);
    }
    /* the identity in place: a grouped add_bias, and its backward the grouped sum_rows */
    fl_tensor y = clone(&x), want = clone(&x), db = f2(G, M), want_db = f2(G, M), d = clone(&dy);
    ops->fill(&db, 0.5f), ops->fill(&want_db, 0.5f);
    for (int g = 0; g < G; g++) {
        fl_tensor rows = fl_rows(&want, off[g], off[g + 1] - off[g]), bg = fl_rows(&b, g, 1);
        fl_tensor drows = fl_rows(&dy, off[g], off[g + 1] - off[g]), dbg = fl_rows(&want_db, g, 1);
        if (off[g + 1] > off[g]) ops->add_bias(&rows, &bg), ops->sum_rows(&drows, 1.0f, &dbg);
    }
    ops->bias_activation_grouped(FL_ACT_IDENTITY, &y, &b, off, G, &y);
    assert_memory_equal(y.data, want.data, (size_t)(N * M) * 4);
    ops->bias_activation_grouped_backward(FL_ACT_IDENTITY, &d, &b, off, G, &d, &d, &db);
    assert_memory_equal(d.data, dy.data, (size_t)(N * M) * 4);
    for (int64_t i = 0; i < G * M; i++) /* sum_rows per group: the same sums, maybe another order */
        assert_true(fabsf(F(&db)[i] - F(&want_db)[i]) <= 1e-5f * (1.0f + fabsf(F(&want_db)[i])));
}

/* ----------------------------------------------------------------- rng */

static void test_rng(void **state) {
    (void)state;
    const int64_t n = 100003;
    fl_tensor a = f1(n), b = f1(n), s = f1(1000);
    ops->rng_normal(&a, 42, 7, 0.5f, 2.0f);
    ops->rng_normal(&b, 42, 7, 0.5f, 2.0f);
    assert_memory_equal(a.data, b.data, (size_t)n * 4);
    for (int64_t i = 0; i < n; i += 997)
        assert_float_equal(F(&a)[i], fl_rng_normal(42, 7 + (uint64_t)i) * 2.0f + 0.5f, 0);
    ops->rng_normal(&s, 42, 7 + 5000, 0.5f, 2.0f); /* a sub-range */
    assert_memory_equal(s.data, F(&a) + 5000, 1000 * 4);
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += F(&a)[i];
    m /= n;
    for (int64_t i = 0; i < n; i++) v += (F(&a)[i] - m) * (F(&a)[i] - m);
    v = sqrt(v / n);
    print_message("  normal(0.5, 2): mean %.4f std %.4f\n", m, v);
    assert_true(fabs(m - 0.5) < 0.03 && fabs(v - 2.0) < 0.03);
    /* thread count does not matter */
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    ops->rng_uniform(&a, 9, 0, -3.0f, 1.0f);
    omp_set_num_threads(3);
    ops->rng_uniform(&b, 9, 0, -3.0f, 1.0f);
    omp_set_num_threads(nt);
    assert_memory_equal(a.data, b.data, (size_t)n * 4);
    m = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(F(&a)[i] >= -3.0f && F(&a)[i] <= 1.0f);
        m += F(&a)[i];
    }
    m /= n;
    print_message("  uniform(-3, 1): mean %.4f\n", m);
    assert_true(fabs(m + 1.0) < 0.02);
    ops->rng_uniform(&s, 9, 5000, -3.0f, 1.0f);
    assert_memory_equal(s.data, F(&a) + 5000, 1000 * 4);
    ops->rng_uniform(&s, 10, 5000, -3.0f, 1.0f); /* another key differs */
    assert_true(memcmp(s.data, F(&a) + 5000, 1000 * 4) != 0);
}

/* --------------------------------------------------------- bucket sort */

static void test_bucket_sort(void **state) {
    (void)state;
    const int G = 6;
    const int32_t keys[] = {3, 0, 3, -1, 5, 0, 3, 2, -1, 0, 5, 3};
    const int64_t N = sizeof keys / sizeof *keys;
    fl_tensor k = i1(N), perm = i1(N);
    memcpy(k.data, keys, sizeof keys);
    int64_t off[7];
    ops->bucket_sort(&k, G, &perm, off);
    const int64_t off_want[7] = {0, 3, 3, 4, 8, 8, 10};
    const int32_t perm_want[] = {1, 5, 9, 7, 0, 2, 6, 11, 4, 10};
    for (int g = 0; g <= G; g++) assert_int_equal(off[g], off_want[g]);
    for (int i = 0; i < 10; i++) assert_int_equal(I(&perm)[i], perm_want[i]);
    /* a larger random case: perm is a stable grouping of all rows */
    fl_tensor k2 = i1(5000), p2 = i1(5000);
    rnd_idx(&k2, 160, -1, 17);
    int64_t o2[17 + 1];
    ops->bucket_sort(&k2, 17, &p2, o2);
    int64_t seen = 0;
    for (int g = 0; g < 17; g++)
        for (int64_t i = o2[g]; i < o2[g + 1]; i++) {
            assert_int_equal(I(&k2)[I(&p2)[i]], g);
            if (i > o2[g]) assert_true(I(&p2)[i] > I(&p2)[i - 1]);
            seen++;
        }
    int64_t valid = 0;
    for (int64_t i = 0; i < 5000; i++) valid += I(&k2)[i] >= 0;
    assert_int_equal(seen, valid);
    assert_int_equal(o2[17], valid);
}

/* ------------------------------------------------------------ hash_ids */

/* key = fl_rng_bits(seed, id) % buckets, -1 for a negative id: the same id
   the same key wherever it appears, another seed another map, and the keys
   spread evenly (each of 16 buckets within 15% of its share over the
   ~19800 distinct ids; a binomial's sd is 2.8%). */
static void test_hash_ids(void **state) {
    (void)state;
    const int64_t N = 40000, E = 16;
    fl_tensor ids = i1(N), keys = i1(N), keys2 = i1(N);
    for (int64_t i = 0; i < N; i++) I(&ids)[i] = i % 97 == 5 ? -1 : (int32_t)(i < N / 2 ? i : i - N / 2);
    ops->hash_ids(&ids, 42, E, &keys);
    int64_t count[16] = {0}, valid = 0;
    for (int64_t i = 0; i < N; i++) {
        const int32_t id = I(&ids)[i], k = I(&keys)[i];
        if (id < 0) {
            assert_int_equal(k, -1);
            continue;
        }
        assert_int_equal(k, (int32_t)(fl_rng_bits(42, (uint64_t)id) % (uint64_t)E));
        if (i >= N / 2 && I(&ids)[i - N / 2] == id) assert_int_equal(k, I(&keys)[i - N / 2]); /* the same id again */
        else count[k]++, valid++;
    }
    for (int e = 0; e < E; e++) {
        print_message("  bucket %2d: %lld ids (share %.3f)\n", e, (long long)count[e], (double)count[e] * E / valid);
        assert_true(fabs((double)count[e] * E / valid - 1.0) < 0.15);
    }
    ops->hash_ids(&ids, 43, E, &keys2);
    assert_true(memcmp(keys.data, keys2.data, (size_t)N * sizeof(int32_t)) != 0);
    ops->hash_ids(&ids, 42, 1, &keys2); /* one bucket: every valid id goes to 0 */
    for (int64_t i = 0; i < N; i++) assert_int_equal(I(&keys2)[i], I(&ids)[i] < 0 ? -1 : 0);
}

static void test_host_copies(void **state) {
    (void)state;
    float h[10], back[10];
    for (int i = 0; i < 10; i++) h[i] = (float)i * 1.5f;
    fl_tensor t = f1(10);
    ops->from_host(&t, h, sizeof h);
    ops->to_host(back, &t, sizeof back);
    assert_memory_equal(h, back, sizeof h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_alloc_and_table, tf_free_all),
        cmocka_unit_test_teardown(test_gemm, tf_free_all),
        cmocka_unit_test_teardown(test_gemm_batched, tf_free_all),
        cmocka_unit_test_teardown(test_gemm_grouped, tf_free_all),
        cmocka_unit_test_teardown(test_gemm_grad, tf_free_all),
        cmocka_unit_test_teardown(test_bias_and_sum_rows, tf_free_all),
        cmocka_unit_test_teardown(test_activation, tf_free_all),
        cmocka_unit_test_teardown(test_activation_backward, tf_free_all),
        cmocka_unit_test_teardown(test_gelu_tails, tf_free_all),
        cmocka_unit_test_teardown(test_mul_axpby_fill_copy, tf_free_all),
        cmocka_unit_test_teardown(test_scale_rows_row_dot, tf_free_all),
        cmocka_unit_test_teardown(test_softmax_logsumexp, tf_free_all),
        cmocka_unit_test_teardown(test_softmax_backward, tf_free_all),
        cmocka_unit_test_teardown(test_gather_scatter, tf_free_all),
        cmocka_unit_test_teardown(test_embedding_bag, tf_free_all),
        cmocka_unit_test_teardown(test_layernorm, tf_free_all),
        cmocka_unit_test_teardown(test_bf16_outputs, tf_free_all),
        cmocka_unit_test_teardown(test_bias_activation, tf_free_all),
        cmocka_unit_test_teardown(test_bias_activation_grouped, tf_free_all),
        cmocka_unit_test_teardown(test_rng, tf_free_all),
        cmocka_unit_test_teardown(test_bucket_sort, tf_free_all),
        cmocka_unit_test_teardown(test_hash_ids, tf_free_all),
        cmocka_unit_test_teardown(test_host_copies, tf_free_all),
    };
    return cmocka_run_group_tests_name("cpu_ops", tests, setup, NULL);
}
