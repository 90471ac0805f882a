/*
 * tests/test_cpu_gemm_bf16.c — the CPU backend's bf16 GEMM mode and the
 * --precision option that selects it.
 *
 * Two references in double for every product:
 *   - exact inputs: bf16 rounds each input to 8 significant bits (relative
 *     error <= 2^-8, the unit roundoff), so a product term is off by at most
 *     ~2^-7 of its size and C by at most 2^-7 * |alpha| * sum_k |a_ik b_kj|
 *     per element. The stated tolerance: that bound, and a relative error
 *     (max |got - ref| / max |ref|) below 1e-2;
 *   - inputs rounded to bf16 here (round to nearest even): what is left is
 *     the f32 accumulation, ~1e-5 of sum_k |a_ik b_kj|. This one fails if the
 *     backend rounds differently (truncates) or loses more than rounding.
 * Shapes are odd (not multiples of the vector or tile width), every
 * transpose, alpha/beta, 3-D batches and expert groups (one product per
 * thread inside an OpenMP loop, as the ops run them).
 *
 * bf16 inputs (FL_BF16 tensors, fl_host.act_dtype), in both modes: every
 * GEMM op with A, B or both in bf16 against the double reference on the
 * values the bf16 tensors hold (bf16 mode: the f32 inputs rounded too;
 * fp32 mode: not rounded, so a rounded f32 input fails the 1e-5 bound),
 * and bit-identical to the all-f32 call on the same values (a bf16 input
 * is used as is, or widened exactly). Then the model: a short training run
 * in the bf16 mode with bf16 activations (ln1, the dense FFN's c_proj
 * input) gives the very same losses as the bf16 mode with f32 activations
 * (the GEMMs round them to the same bf16 values), and tracks the fp32 run
 * within a stated tolerance. The two bf16 paths (native, and rounded
 * inputs in fp32 arithmetic on CPUs without bf16) train alike; ctest runs
 * this whole suite a second time with the emulated path forced.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h> /* the CPU's ISA, as oneDNN sees it */

#include "tensor_fixture.h"

#include "backend.h"
#include "ffnlab/rng.h" /* fl_rng_bits: model tokens */
#include "model.h"
#include "optim.h"

static int use_bf16(void **state) {
    (void)state;
    fl_error err = {0};
    ts_assert_ok(fl_cpu_set_precision("bf16", &err), &err);
    return 0;
}

static int use_fp32(void **state) {
    fl_error err = {0};
    ts_assert_ok(fl_cpu_set_precision("fp32", &err), &err);
    return tf_free_all(state);
}

/* ---------------------------------------------------------- references */

/* x rounded to bf16 (nearest, ties to even), as a float */
static float bf16(float x) { return ts_bf16_round(x); }

typedef struct ref_out {
    double *c;                 /* alpha op(A) op(B) + beta C0 */
    double *mag;               /* |alpha| sum_k |a b| (+ |beta c0|): the error scale */
} ref_out;

/* The product in double, from the inputs as given or rounded to bf16. */
static void gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     const float *B, float beta, const float *C0, int round, ref_out *o) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0, m = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = ta ? A[k * M + i] : A[i * K + k], b = tb ? B[j * K + k] : B[k * N + j];
                if (round) a = bf16(a), b = bf16(b);
                s += (double)a * b;
                m += fabs((double)a * b);
            }
            const double c0 = beta == 0.0f ? 0.0 : (double)beta * C0[i * N + j];
            o->c[i * N + j] = alpha * s + c0;
            o->mag[i * N + j] = fabs(alpha) * m + fabs(c0);
        }
}

/* Fails unless |got - ref| <= rel * mag + 1e-6 everywhere; prints the
   largest error relative to max |ref|. Returns that relative error. */
static double check(const float *got, const ref_out *r, int64_t n, double rel, const char *what) {
    double worst = 0, ref_max = 1e-30, err_max = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - r->c[i]);
        if (e > rel * r->mag[i] + 1e-6 && bad < 0) bad = i;
        worst = e / (rel * r->mag[i] + 1e-6) > worst ? e / (rel * r->mag[i] + 1e-6) : worst;
        err_max = e > err_max ? e : err_max;
        ref_max = fabs(r->c[i]) > ref_max ? fabs(r->c[i]) : ref_max;
    }
    print_message("%-44s rel error %.2e (%.0f%% of the bound)\n", what, err_max / ref_max, 100 * worst);
    if (bad >= 0)
        fail_msg("%s: element %lld is %.9g, want %.9g (bound %.3g)", what, (long long)bad, got[bad], r->c[bad],
                 rel * r->mag[bad] + 1e-6);
    return err_max / ref_max;
}

#define ROUND_BOUND 0.00785 /* 2^-7 (1 + 2^-9): two inputs each off by <= 2^-8 */
#define ACCUM_BOUND 1e-5    /* f32 accumulation of bf16 products */

/* Checks got against both references; returns the error against exact inputs. */
static double check_both(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         const float *B, float beta, const float *C0, const float *got, const char *what) {
    ref_out r = {malloc((size_t)(M * N) * sizeof(double)), malloc((size_t)(M * N) * sizeof(double))};
    char name[128];
    gemm_ref(ta, tb, M, N, K, alpha, A, B, beta, C0, 1, &r);
    snprintf(name, sizeof name, "%s (bf16 inputs)", what);
    check(got, &r, M * N, ACCUM_BOUND, name);
    gemm_ref(ta, tb, M, N, K, alpha, A, B, beta, C0, 0, &r);
    snprintf(name, sizeof name, "%s (exact inputs)", what);
    double e = check(got, &r, M * N, ROUND_BOUND + ACCUM_BOUND, name);
    assert_true(e < 1e-2);
    free(r.c), free(r.mag);
    return e;
}

/* ---------------------------------------------------------------- gemm */

static double one_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    fl_tensor A, B, C, C0;
    tf_gemm_inputs(ta, tb, M, N, K, beta, &A, &B, &C, &C0);
    tf_ops->gemm(ta, tb, alpha, &A, &B, beta, &C);
    char what[96];
    snprintf(what, sizeof what, "gemm t%d%d %lldx%lldx%lld a=%g b=%g", ta, tb, (long long)M, (long long)N,
             (long long)K, alpha, beta);
    return check_both(ta, tb, M, N, K, alpha, F(&A), F(&B), beta, F(&C0), F(&C), what);
}

static void test_gemm_shapes(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{7, 13, 5}, {33, 17, 29}, {1, 1, 1}, {64, 9, 70}, {5, 40, 1}, {131, 257, 300}};
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                double e1 = one_gemm(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
                double e2 = one_gemm(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 0.7f, 0.3f);
                worst = fmax(worst, fmax(e1, e2));
            }
    /* the mode is really on: fp32 would be ~1e-7 off the exact product */
    assert_true(worst > 1e-4);
}

/* A 3-D A[B,T,C] is the matrix [B*T, C]; K = 0 leaves C = beta C exactly. */
static void test_gemm_3d_and_empty(void **state) {
    (void)state;
    fl_tensor X = f3(2, 3, 5), W = f2(5, 4), Y = f2(6, 4);
    rnd(&X, 4, -1, 1);
    rnd(&W, 5, -1, 1);
    tf_ops->gemm(0, 0, 1.0f, &X, &W, 0.0f, &Y);
    check_both(0, 0, 6, 4, 5, 1.0f, F(&X), F(&W), 0.0f, NULL, F(&Y), "gemm 3-D A");
    /* K = 0: C = beta C, exactly */
    fl_tensor A = f2(3, 0), B = f2(0, 4), C = f2(3, 4);
    for (int i = 0; i < 12; i++) F(&C)[i] = (float)i;
    tf_ops->gemm(0, 0, 1.0f, &A, &B, 0.5f, &C);
    for (int i = 0; i < 12; i++) assert_float_equal(F(&C)[i], 0.5f * i, 0);
}

/* Rounding itself, through 1x1x1 products with B = 1: ties go to even, NaN
   and infinities survive. */
static void test_rounding(void **state) {
    (void)state;
    const float in[] = {1.0f + 0x1p-8f,             /* tie between 1 and 1 + 2^-7 → 1 */
                        1.0f + 3 * 0x1p-8f,         /* tie → 1 + 2^-6 (even) */
                        1.0f + 0x1p-8f + 0x1p-20f,  /* above the tie → 1 + 2^-7 */
                        -3.0f - 0x1p-7f + 0x1p-22f, /* below the tie → -3 */
                        INFINITY, -INFINITY, 1e-3f};
    const float want[] = {1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -3.0f, INFINITY, -INFINITY, bf16(1e-3f)};
    fl_tensor A = f2(1, 1), B = f2(1, 1), C = f2(1, 1);
    F(&B)[0] = 1.0f;
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        F(&A)[0] = in[i];
        tf_ops->gemm(0, 0, 1.0f, &A, &B, 0.0f, &C);
        assert_float_equal(F(&C)[0], want[i], 0);
    }
    F(&A)[0] = NAN;
    tf_ops->gemm(0, 0, 1.0f, &A, &B, 0.0f, &C);
    assert_true(isnan(F(&C)[0]));
}

/* Many small products, one per thread (cpu_gemm.c), and a batch of large
   ones on all threads: a primitive built inside a parallel region must
   still compute its whole product. */
static void test_gemm_batched(void **state) {
    (void)state;
    const int64_t dims[][4] = {{5, 6, 11, 9}, {3, 70, 130, 96}};
    for (int d = 0; d < 2; d++) {
        const int64_t nb = dims[d][0], M = dims[d][1], N = dims[d][2], K = dims[d][3];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                fl_tensor A = ta ? f3(nb, K, M) : f3(nb, M, K), B = tb ? f3(nb, N, K) : f3(nb, K, N);
                fl_tensor C = f3(nb, M, N);
                rnd(&A, 10, -1, 1);
                rnd(&B, 11, -1, 1);
                rnd(&C, 12, -1, 1);
                fl_tensor C0 = clone(&C);
                tf_ops->gemm_batched(ta, tb, 0.5f, &A, &B, 2.0f, &C);
                for (int64_t b = 0; b < nb; b++) {
                    char what[96];
                    snprintf(what, sizeof what, "gemm_batched %lldx%lldx%lld t%d%d [%lld]", (long long)M,
                             (long long)N, (long long)K, ta, tb, (long long)b);
                    check_both(ta, tb, M, N, K, 0.5f, F(&A) + b * M * K, F(&B) + b * K * N, 2.0f,
                               F(&C0) + b * M * N, F(&C) + b * M * N, what);
                }
            }
    }
}

static void test_gemm_grouped(void **state) {
    (void)state;
    /* groups of 3, 0, 7, 0, 5 rows: two empty */
    const int G = 5;
    const int64_t off[6] = {0, 3, 3, 10, 10, 15}, N = 15, K = 6, M = 9;
    for (int tw = 0; tw < 2; tw++) {
        fl_tensor A = f2(N, K), W = tw ? f3(G, M, K) : f3(G, K, M), C = f2(N, M);
        rnd(&A, 20, -1, 1);
        rnd(&W, 21, -1, 1);
        rnd(&C, 22, -1, 1);
        fl_tensor C0 = clone(&C);
        tf_ops->gemm_grouped(tw, 0.8f, &A, &W, off, G, 0.25f, &C);
        for (int g = 0; g < G; g++) {
            const int64_t r0 = off[g], n = off[g + 1] - off[g];
            if (n)
                check_both(0, tw, n, M, K, 0.8f, F(&A) + r0 * K, F(&W) + g * K * M, 0.25f, F(&C0) + r0 * M,
                           F(&C) + r0 * M, tw ? "gemm_grouped transW" : "gemm_grouped");
        }
    }
    /* wgrad: dW[g] = alpha A_gᵀ dY_g + beta dW[g]; an empty group gets beta dW exactly */
    fl_tensor A = f2(N, K), dY = f2(N, M), dW = f3(G, K, M);
    rnd(&A, 23, -1, 1);
    rnd(&dY, 24, -1, 1);
    rnd(&dW, 25, -1, 1);
    fl_tensor dW0 = clone(&dW);
    tf_ops->gemm_grouped_wgrad(0.9f, &A, &dY, off, G, 0.5f, &dW);
    for (int g = 0; g < G; g++) {
        const int64_t n = off[g + 1] - off[g];
        if (!n) {
            for (int64_t i = 0; i < K * M; i++) assert_float_equal(F(&dW)[g * K * M + i], 0.5f * F(&dW0)[g * K * M + i], 0);
            continue;
        }
        check_both(1, 0, K, M, n, 0.9f, F(&A) + off[g] * K, F(&dY) + off[g] * M, 0.5f, F(&dW0) + g * K * M,
                   F(&dW) + g * K * M, "gemm_grouped_wgrad");
    }
}

/* The same primitive shape reused (the per-thread cache) and the cache's
   eviction: more distinct shapes than it holds, then the first again. */
static void test_primitive_cache(void **state) {
    (void)state;
    for (int64_t m = 1; m <= 60; m++) one_gemm(0, 1, m, 24, 40, 1.0f, 0.0f);
    for (int rep = 0; rep < 2; rep++) one_gemm(0, 1, 1, 24, 40, 1.0f, 1.0f);
}

/* ------------------------------------------------------ bf16 inputs */

static void set_mode(const char *mode) {
    fl_error err = {0};
    ts_assert_ok(fl_cpu_set_precision(mode, &err), &err);
}

/* A bf16 tensor of t's shape holding t's values rounded; t gets those
   values too, so references (and the all-f32 call) see what it holds. */
static fl_tensor as_bf16(fl_tensor *t) {
    fl_tensor h = tnew(FL_BF16, t->ndim, t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
    for (int64_t i = 0; i < fl_numel(t); i++) {
        ((uint16_t *)h.data)[i] = ts_bf16(F(t)[i]);
        F(t)[i] = ts_bf16_float(((uint16_t *)h.data)[i]);
    }
    return h;
}

/* got against the reference on the values A and B hold, rounded to bf16
   in the bf16 mode only: f32 accumulation error alone in either mode. */
static void check_mode(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
                       float beta, const float *C0, const float *got, const char *what) {
    ref_out r = {malloc((size_t)(M * N) * sizeof(double)), malloc((size_t)(M * N) * sizeof(double))};
    gemm_ref(ta, tb, M, N, K, alpha, A, B, beta, C0, !strcmp(fl_cpu_precision(), "bf16"), &r);
    check(got, &r, M * N, ACCUM_BOUND, what);
    free(r.c), free(r.mag);
}

/* which: bit 0 = A in bf16, bit 1 = B in bf16 */
static const char *which_name(int which) { return which == 1 ? "A bf16" : which == 2 ? "B bf16" : "A,B bf16"; }

static void bf16_gemm_case(int ta, int tb, int64_t M, int64_t N, int64_t K, int which) {
    fl_tensor A = ta ? f2(K, M) : f2(M, K), B = tb ? f2(N, K) : f2(K, N), C = f2(M, N);
    rnd(&A, 41, -1, 1), rnd(&B, 42, -1, 1), rnd(&C, 43, -1, 1);
    fl_tensor Ah = which & 1 ? as_bf16(&A) : A, Bh = which & 2 ? as_bf16(&B) : B;
    fl_tensor C0 = clone(&C), Cf = clone(&C);
    tf_ops->gemm(ta, tb, 0.75f, &Ah, &Bh, 0.5f, &C);
    char what[96];
    snprintf(what, sizeof what, "%s gemm t%d%d %lldx%lldx%lld %s", fl_cpu_precision(), ta, tb, (long long)M,
             (long long)N, (long long)K, which_name(which));
    check_mode(ta, tb, M, N, K, 0.75f, F(&A), F(&B), 0.5f, F(&C0), F(&C), what);
    tf_ops->gemm(ta, tb, 0.75f, &A, &B, 0.5f, &Cf); /* the same values in f32 */
    assert_memory_equal(C.data, Cf.data, fl_nbytes(&C));
}

static void test_bf16_inputs_gemm(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{33, 17, 29}, {131, 257, 300}, {1, 5, 1}};
    for (int mode = 0; mode < 2; mode++) {
        set_mode(mode ? "bf16" : "fp32");
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int which = 1; which <= 3; which++)
                for (int ta = 0; ta < 2; ta++)
                    for (int tb = 0; tb < 2; tb++) bf16_gemm_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], which);
    }
}

static void test_bf16_inputs_batched(void **state) {
    (void)state;
    const int64_t nb = 3, M = 19, N = 35, K = 44;
    for (int mode = 0; mode < 2; mode++) {
        set_mode(mode ? "bf16" : "fp32");
        for (int which = 1; which <= 3; which++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    fl_tensor A = ta ? f3(nb, K, M) : f3(nb, M, K), B = tb ? f3(nb, N, K) : f3(nb, K, N);
                    fl_tensor C = f3(nb, M, N);
                    rnd(&A, 44, -1, 1), rnd(&B, 45, -1, 1), rnd(&C, 46, -1, 1);
                    fl_tensor Ah = which & 1 ? as_bf16(&A) : A, Bh = which & 2 ? as_bf16(&B) : B;
                    fl_tensor C0 = clone(&C), Cf = clone(&C);
                    tf_ops->gemm_batched(ta, tb, 1.5f, &Ah, &Bh, 0.5f, &C);
                    for (int64_t b = 0; b < nb; b++) {
                        char what[96];
                        snprintf(what, sizeof what, "%s gemm_batched t%d%d %s [%lld]", fl_cpu_precision(), ta, tb,
                                 which_name(which), (long long)b);
                        check_mode(ta, tb, M, N, K, 1.5f, F(&A) + b * M * K, F(&B) + b * K * N, 0.5f,
                                   F(&C0) + b * M * N, F(&C) + b * M * N, what);
                    }
                    tf_ops->gemm_batched(ta, tb, 1.5f, &A, &B, 0.5f, &Cf);
                    assert_memory_equal(C.data, Cf.data, fl_nbytes(&C));
                }
    }
}

/* groups of 3, 0, 7, 0, 5 rows, as test_gemm_grouped */
static void bf16_grouped_case(int transW, int which) {
    const int G = 5;
    const int64_t off[6] = {0, 3, 3, 10, 10, 15}, N = 15, K = 6, M = 9;
    fl_tensor A = f2(N, K), W = transW ? f3(G, M, K) : f3(G, K, M), C = f2(N, M);
    rnd(&A, 47, -1, 1), rnd(&W, 48, -1, 1), rnd(&C, 49, -1, 1);
    fl_tensor Ah = which & 1 ? as_bf16(&A) : A, Wh = which & 2 ? as_bf16(&W) : W;
    fl_tensor C0 = clone(&C);
    tf_ops->gemm_grouped(transW, 0.8f, &Ah, &Wh, off, G, 0.25f, &C);
    char what[96];
    snprintf(what, sizeof what, "%s gemm_grouped transW=%d %s", fl_cpu_precision(), transW, which_name(which));
    for (int g = 0; g < G; g++) {
        const int64_t r0 = off[g], n = off[g + 1] - off[g];
        if (n)
            check_mode(0, transW, n, M, K, 0.8f, F(&A) + r0 * K, F(&W) + g * K * M, 0.25f, F(&C0) + r0 * M,
                       F(&C) + r0 * M, what);
    }
    /* wgrad: dW[g] = alpha A_gᵀ dY_g + beta dW[g], with A and dY as A and W above */
    fl_tensor dY = f2(N, M), dW = f3(G, K, M);
    rnd(&dY, 50, -1, 1), rnd(&dW, 51, -1, 1);
    fl_tensor dYh = which & 2 ? as_bf16(&dY) : dY, dW0 = clone(&dW);
    tf_ops->gemm_grouped_wgrad(0.9f, &Ah, &dYh, off, G, 0.5f, &dW);
    snprintf(what, sizeof what, "%s gemm_grouped_wgrad %s", fl_cpu_precision(), which == 2 ? "dY bf16" : which_name(which));
    for (int g = 0; g < G; g++) {
        const int64_t n = off[g + 1] - off[g];
        check_mode(1, 0, K, M, n, 0.9f, F(&A) + off[g] * K, F(&dY) + off[g] * M, 0.5f, F(&dW0) + g * K * M,
                   F(&dW) + g * K * M, what);
    }
}

static void test_bf16_inputs_grouped(void **state) {
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        set_mode(mode ? "bf16" : "fp32");
        for (int which = 1; which <= 3; which++)
            for (int tw = 0; tw < 2; tw++) bf16_grouped_case(tw, which);
    }
}

/* ----------------------------------------------------------- the model */

enum { MT_V = 97, MT_T = 16, MT_B = 4, MT_STEPS = 30 };

/* A d=32, 2-layer, 2-head dense model in the current mode (its host's
   act_dtype is fixed now). */
static fl_model *model_now(void) {
    const char *specs[2] = {"dense", "dense:glu=true,activation=silu"};
    fl_model_config mc = {.vocab_size = MT_V, .context = MT_T, .d_model = 32, .n_layers = 2, .n_heads = 2,
                          .ffn_specs = specs, .seed = 11};
    fl_model *m = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, tf_be, &m, &err), &err);
    return m;
}

/* MT_STEPS AdamW steps on 4 fixed batches (in whatever mode is set now);
   losses[step]. */
static void train_model(fl_model *m, double *losses) {
    fl_error err = {0};
    int32_t x[MT_B * MT_T], y[MT_B * MT_T];
    const fl_adamw opt = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    for (int s = 0; s < MT_STEPS; s++) {
        for (int i = 0; i < MT_B * MT_T; i++) { /* a learnable rule: next = 3 * token + 1 */
            x[i] = (int32_t)(fl_rng_bits(200 + (uint64_t)(s % 4), (uint64_t)i) % MT_V);
            y[i] = (x[i] * 3 + 1) % MT_V;
        }
        fl_model_zero_grad(m);
        ts_assert_ok(fl_model_forward(m, x, y, MT_B, MT_T, 1, s, &losses[s], &err), &err);
        ts_assert_ok(fl_model_backward(m, &err), &err);
        ts_assert_ok(fl_adamw_step(tf_be, fl_model_params(m), &opt, 3e-3, 1.0f, s + 1, &err), &err);
    }
}

#define MODEL_TOL 5e-3 /* per-step relative loss difference, bf16 against fp32 */

static void test_model_bf16_activations(void **state) {
    (void)state;
    double l32[MT_STEPS], l16[MT_STEPS], lmix[MT_STEPS];
    set_mode("fp32");
    fl_model *m32 = model_now(), *mmix = model_now(); /* both with f32 activations */
    assert_int_equal(fl_model_host(m32)->act_dtype, FL_F32);
    train_model(m32, l32);
    set_mode("bf16");
    fl_model *m16 = model_now();
    assert_int_equal(fl_model_host(m16)->act_dtype, FL_BF16);
    train_model(m16, l16);
    train_model(mmix, lmix); /* bf16 GEMMs, f32 activations */
    double worst = 0;
    for (int s = 0; s < MT_STEPS; s++) {
        const double r = fabs(l16[s] - l32[s]) / l32[s];
        worst = r > worst ? r : worst;
        if (s % 10 == 0 || s == MT_STEPS - 1)
            print_message("step %2d: loss fp32 %.6f  bf16 %.6f (rel %.1e)\n", s + 1, l32[s], l16[s], r);
    }
    print_message("largest per-step relative difference bf16 vs fp32 %.2e (tol %.0e)\n", worst, MODEL_TOL);
    assert_true(worst <= MODEL_TOL);
    assert_true(l16[MT_STEPS - 1] < l16[0] - 0.5); /* it learns in bf16 too */
    /* bf16 storage changes no bit: the GEMMs round f32 activations to the
       values bf16 activations hold */
    assert_memory_equal(l16, lmix, sizeof l16);
    fl_model_free(m32), fl_model_free(m16), fl_model_free(mmix);
}

/* The two bf16 paths: oneDNN's native bf16 matmul where the CPU has one,
   else bf16-rounded inputs in fp32 arithmetic (FFNLAB_CPU_BF16 forces one).
   A bf16 x bf16 product is exact in f32, so the paths differ only in the
   order of f32 sums: their training losses agree to f32 round-off, far
   inside the bf16-vs-fp32 difference (MODEL_TOL). */
#define PATHS_TOL 1e-4

static void test_bf16_paths(void **state) {
    (void)state;
    fl_error err = {0};
    const char *was = getenv("FFNLAB_CPU_BF16");
    char *saved = was ? strdup(was) : NULL;
    setenv("FFNLAB_CPU_BF16", "fast", 1);
    assert_int_equal(fl_cpu_set_precision("bf16", &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "FFNLAB_CPU_BF16=fast: expected auto, native or emulated"));

    double emu[MT_STEPS], nat[MT_STEPS];
    setenv("FFNLAB_CPU_BF16", "emulated", 1);
    set_mode("bf16");
    assert_non_null(strstr(tf_be->describe(), "bf16 inputs, fp32 arithmetic"));
    fl_model *m = model_now();
    train_model(m, emu);
    fl_model_free(m);
    assert_true(emu[MT_STEPS - 1] < emu[0] - 0.5);

    /* auto: native only where oneDNN's kernels have bf16 dot products
       (AVX-512 BF16, AMX); elsewhere its bf16 matmul emulates them, slower
       than sgemm on the rounded inputs */
    unsetenv("FFNLAB_CPU_BF16");
    set_mode("bf16");
    print_message("auto on this CPU: %s\n", tf_be->describe());
    const int dots = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
    assert_non_null(strstr(tf_be->describe(), dots ? "native bf16" : "bf16 inputs, fp32 arithmetic"));

    setenv("FFNLAB_CPU_BF16", "native", 1);
    if (fl_cpu_set_precision("bf16", &err) == FL_OK) {
        assert_non_null(strstr(tf_be->describe(), "native bf16"));
        m = model_now();
        train_model(m, nat);
        fl_model_free(m);
        double worst = 0;
        for (int s = 0; s < MT_STEPS; s++) worst = fmax(worst, fabs(nat[s] - emu[s]) / emu[s]);
        print_message("native vs emulated bf16: largest per-step relative loss difference %.2e (tol %.0e)\n",
                      worst, PATHS_TOL);
        assert_true(worst <= PATHS_TOL);
    } else {
        print_message("this CPU has no native bf16 matmul: %s\n", err.msg);
        assert_int_equal(err.code, FL_EUNSUPPORTED);
        assert_non_null(strstr(err.msg, "no bf16 matmul on this CPU"));
    }
    if (saved) setenv("FFNLAB_CPU_BF16", saved, 1);
    else unsetenv("FFNLAB_CPU_BF16");
    free(saved);
}

/* ----------------------------------------------------------- the mode */

static void test_mode_and_describe(void **state) {
    (void)state;
    fl_error err = {0};
    assert_string_equal(fl_cpu_precision(), "bf16");
    assert_non_null(strstr(tf_be->describe(), "bf16"));
    print_message("backend: %s\n", tf_be->describe());
    ts_assert_ok(fl_cpu_set_precision("fp32", &err), &err);
    assert_non_null(strstr(tf_be->describe(), "sgemm"));
    /* fp32 again: the exact path, to fp32 rounding */
    fl_tensor A = f2(33, 29), B = f2(29, 17), C = f2(33, 17);
    rnd(&A, 1, -1, 1);
    rnd(&B, 2, -1, 1);
    tf_ops->gemm(0, 0, 1.0f, &A, &B, 0.0f, &C);
    ref_out r = {malloc(33 * 17 * sizeof(double)), malloc(33 * 17 * sizeof(double))};
    gemm_ref(0, 0, 33, 17, 29, 1.0f, F(&A), F(&B), 0.0f, NULL, 0, &r);
    assert_true(check(F(&C), &r, 33 * 17, 1e-6, "fp32 mode") < 1e-6);
    free(r.c), free(r.mag);
    assert_int_equal(fl_cpu_set_precision("fp16", &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "fp32 or bf16"));
    assert_string_equal(fl_cpu_precision(), "fp32");
    ts_assert_ok(fl_cpu_set_precision("bf16", &err), &err);
}

/* fl_backend_request_precision + fl_backend_select, and FFNLAB_PRECISION. */
static void test_request_precision(void **state) {
    (void)state;
    fl_error err = {0};
    const fl_backend *b = NULL;
    unsetenv("FFNLAB_PRECISION");
    assert_int_equal(fl_backend_request_precision("fp16", &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "--precision fp16: expected auto, fp32, bf16 or tf32"));
    ts_assert_ok(fl_backend_request_precision("bf16", &err), &err);
    ts_assert_ok(fl_backend_select("cpu", &b, &err), &err);
    assert_ptr_equal(b, tf_be);
    assert_string_equal(fl_cpu_precision(), "bf16");
    ts_assert_ok(fl_backend_request_precision("auto", &err), &err); /* the CPU's default */
    ts_assert_ok(fl_backend_select("cpu", &b, &err), &err);
    assert_string_equal(fl_cpu_precision(), "fp32");
    ts_assert_ok(fl_backend_request_precision("tf32", &err), &err); /* valid somewhere... */
    assert_int_equal(fl_backend_select("cpu", &b, &err), FL_EINVAL); /* ...not here */
    assert_null(b);
    print_message("tf32 on the CPU: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "tf32"));
    /* auto: FFNLAB_PRECISION decides, and a bad value there is an error too */
    ts_assert_ok(fl_backend_request_precision("auto", &err), &err);
    setenv("FFNLAB_PRECISION", "bf16", 1);
    ts_assert_ok(fl_backend_select("cpu", &b, &err), &err);
    assert_string_equal(fl_cpu_precision(), "bf16");
    setenv("FFNLAB_PRECISION", "half", 1);
    assert_int_equal(fl_backend_select("cpu", &b, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "FFNLAB_PRECISION=half"));
    ts_assert_ok(fl_backend_request_precision("fp32", &err), &err); /* the option wins */
    ts_assert_ok(fl_backend_select("cpu", &b, &err), &err);
    assert_string_equal(fl_cpu_precision(), "fp32");
    unsetenv("FFNLAB_PRECISION");
    ts_assert_ok(fl_backend_request_precision("auto", &err), &err);
}

/* The commands: a bad value is one line naming the option, exit non-zero,
   before any work. */
static void test_cli_errors(void **state) {
    (void)state;
    const char *cmds[][2] = {
        {"eval --run /nonexistent --task blimp --precision fp16", "--precision fp16"},
        {"bench --blimp --precision 16", "--precision 16"},
        {"bench --precision bf32 --steps 1", "--precision bf32"},
        {"train --precision fp8 --steps 1 --run-dir /nonexistent/x", "--precision"},
        {"bench --device cpu --precision tf32 --steps 1 --d-model 8 --layers 1 --heads 1 --vocab 300", "tf32"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char cmd[512], *out = NULL;
        snprintf(cmd, sizeof cmd, "FFNLAB_PRECISION= %s %s", ts_ffnlab_bin(), cmds[i][0]);
        int rc = ts_run(cmd, &out);
        print_message("%s -> %d: %s", cmds[i][0], rc, out ? out : "");
        assert_int_not_equal(rc, 0);
        assert_non_null(out);
        assert_non_null(strstr(out, cmds[i][1]));
        int lines = 0;
        for (const char *p = out; *p; p++) lines += *p == '\n';
        assert_int_equal(lines, 1);
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gemm_shapes, use_bf16, use_fp32),
        cmocka_unit_test_setup_teardown(test_gemm_3d_and_empty, use_bf16, use_fp32),
        cmocka_unit_test_setup_teardown(test_rounding, use_bf16, use_fp32),
        cmocka_unit_test_setup_teardown(test_gemm_batched, use_bf16, use_fp32),
        cmocka_unit_test_setup_teardown(test_gemm_grouped, use_bf16, use_fp32),
        cmocka_unit_test_setup_teardown(test_primitive_cache, use_bf16, use_fp32),
        cmocka_unit_test_teardown(test_bf16_inputs_gemm, use_fp32),
        cmocka_unit_test_teardown(test_bf16_inputs_batched, use_fp32),
        cmocka_unit_test_teardown(test_bf16_inputs_grouped, use_fp32),
        cmocka_unit_test_teardown(test_model_bf16_activations, use_fp32),
        cmocka_unit_test_teardown(test_bf16_paths, use_fp32),
        cmocka_unit_test_setup_teardown(test_mode_and_describe, use_bf16, use_fp32),
        cmocka_unit_test_teardown(test_request_precision, use_fp32),
        cmocka_unit_test(test_cli_errors),
    };
    return cmocka_run_group_tests(tests, tf_setup_cpu, NULL);
}
