/*
 * tests/test_model_grad.c — whole-model finite-difference gradient check (dense plugin).
 *
 * A tiny GPT-2 (vocab 32, context 6, d_model 8, 2 layers, 2 heads, batch 2) on the CPU
 * backend gets large random weights (std 0.2-0.3, LayerNorm weights 1 + noise, non-zero
 * biases; the default 0.02 init would make the loss nearly flat). For a sample of
 * coordinates of every parameter (all of them for tensors of up to SAMPLE values) the
 * analytic gradient from fl_model_backward is compared with the central difference
 * (L(p+e) - L(p-e)) / 2e of the loss fl_model_forward returns. The sample of the tied
 * embedding wte always includes a whole row of a token that is also an input, so the sum of
 * its two uses (input embedding and LM head) is checked. A second test checks that
 * fl_model_zero_grad zeroes every gradient after a backward.
 *
 * Four models: the decoder; an encoder (arch bert: bidirectional attention, the second
 * sequence right-padded with two <pad> tokens whose keys are masked, targets only at some
 * positions, as the masked-LM objective sets them, and a loss weight); a decoder whose
 * second layer attends locally (window 3 of the 6 positions); and the decoder with its LM
 * head padded from 32 to 48 columns (FFNLAB_PAD_VOCAB=24, as a GPU pads GPT-2's 50,257 to
 * 50,304), which must change neither the loss nor any gradient.
 *
 * The model is float32, so e is large (1e-2) and the tolerance is |analytic - fd| <=
 * FD_ATOL + FD_RTOL |fd|; the largest errors are printed per parameter.
 */
#include <math.h>     /* fabs */
#include <stdio.h>    /* snprintf */
#include <stdlib.h>   /* malloc */
#include <string.h>   /* strstr */

#include "support.h"  /* CMocka, ts_assert_ok */

#include "backend.h"  /* fl_backend_cpu */
#include "ffnlab/rng.h"  /* fl_rng_normal, fl_rng_bits: weights, tokens, the sample */
#include "model.h"    /* fl_model_* */

enum { V = 32, T = 6, C = 8, L = 2, H = 2, B = 2, SAMPLE = 20 };
#define FD_EPS 1e-2
#define FD_RTOL 2e-2
#define FD_ATOL 1e-4

typedef struct grad_fixture {
    const fl_backend *be;
    fl_model *m;
    int32_t tokens[B * T], targets[B * T];
} grad_fixture;

/* Large random weights so every term of the gradient matters. */
static void randomise(grad_fixture *g) {
    for (int i = 0; i < fl_model_n_params(g->m); i++) {
        fl_param *p = fl_model_param(g->m, i);
        size_t n = (size_t)fl_numel(&p->value);
        float *v = malloc(n * sizeof *v);
        assert_non_null(v);
        uint64_t key = fl_rng_key(99, p->name);
        int is_ln = strstr(p->name, ".ln_") != NULL;
        int is_bias = strstr(p->name, ".bias") != NULL;
        int is_emb = strstr(p->name, "wte") || strstr(p->name, "wpe");
        for (size_t j = 0; j < n; j++) {
            float r = fl_rng_normal(key, j);
            v[j] = is_ln && !is_bias ? 1.0f + 0.1f * r : is_bias ? 0.1f * r : is_emb ? 0.3f * r : 0.2f * r;
        }
        g->be->ops.from_host(&p->value, v, n * sizeof *v);
        free(v);
    }
}

enum { PAD = V - 1 }; /* the encoder's padding token */

static int setup_model(void **state, int arch, uint64_t local_layers) {
    grad_fixture *g = calloc(1, sizeof *g);
    if (!g) return -1;
    g->be = fl_backend_cpu();
    const char *specs[L] = {"dense", "dense"};
    fl_model_config mc = {.vocab_size = V, .context = T, .d_model = C, .n_layers = L,
                          .n_heads = H, .ffn_specs = specs, .seed = 7, .arch = arch, .pad_token = PAD,
                          .local_layers = local_layers, .window = 3};
    fl_error err = {0};
    if (fl_model_create(&mc, g->be, &g->m, &err) != FL_OK) {
        print_error("fl_model_create: %s\n", err.msg);
        free(g);
        return -1;
    }
    randomise(g);
    for (int i = 0; i < B * T; i++) {
        g->tokens[i] = (int32_t)(fl_rng_bits(1, (uint64_t)i) % (V - 1));
        g->targets[i] = (int32_t)(fl_rng_bits(2, (uint64_t)i) % V);
    }
    if (arch == FL_ARCH_BERT) { /* the second row padded; targets at some real positions only */
        g->tokens[2 * T - 1] = g->tokens[2 * T - 2] = PAD;
        for (int i = 0; i < B * T; i++)
            if (i % 3 == 1 || g->tokens[i] == PAD) g->targets[i] = -1;
        fl_model_set_loss_weight(g->m, 1.7);
    }
    *state = g;
    return 0;
}

static int setup(void **state) { return setup_model(state, FL_ARCH_GPT, 0); }
static int setup_padded(void **state) {
    setenv("FFNLAB_PAD_VOCAB", "24", 1); /* read when the model is created */
    const int rc = setup_model(state, FL_ARCH_GPT, 0);
    unsetenv("FFNLAB_PAD_VOCAB");
    return rc;
}
static int setup_encoder(void **state) { return setup_model(state, FL_ARCH_BERT, 0); }
static int setup_local(void **state) { return setup_model(state, FL_ARCH_GPT, 2); }

static int teardown(void **state) {
    grad_fixture *g = *state;
    fl_model_free(g->m);
    free(g);
    return 0;
}

static double loss_of(grad_fixture *g) {
    fl_error err = {0};
    double loss = 0;
    ts_assert_ok(fl_model_forward(g->m, g->tokens, g->targets, B, T, 1, 0, &loss, &err), &err);
    return loss;
}

/* Analytic gradients of the current weights, into g's params. */
static void analytic(grad_fixture *g) {
    fl_error err = {0};
    fl_model_zero_grad(g->m);
    loss_of(g);
    ts_assert_ok(fl_model_backward(g->m, &err), &err);
}

/* The coordinates of p to check: all if small, else SAMPLE spread pseudo-randomly; for
   wte also the whole row of the first input token. Returns the count. */
static size_t pick(const grad_fixture *g, const fl_param *p, size_t n, size_t *idx) {
    size_t k = 0;
    if (n <= SAMPLE) {
        for (size_t j = 0; j < n; j++) idx[k++] = j;
        return k;
    }
    if (strstr(p->name, "wte")) {
        size_t row = (size_t)g->tokens[0];
        for (size_t c = 0; c < C; c++) idx[k++] = row * C + c;
    }
    uint64_t key = fl_rng_key(3, p->name);
    for (uint64_t t = 0; k < (strstr(p->name, "wte") ? C + SAMPLE : SAMPLE); t++) {
        size_t j = (size_t)(fl_rng_bits(key, t) % n), dup = 0;
        for (size_t q = 0; q < k; q++) dup |= idx[q] == j;
        if (!dup) idx[k++] = j;
    }
    return k;
}

static void test_finite_differences_match_backward(void **state) {
    grad_fixture *g = *state;
    const fl_backend *be = g->be;
    analytic(g);

    int n_params = fl_model_n_params(g->m), failed = 0, checked = 0;
    /* Snapshot the analytic gradients: FD forwards below must not disturb them, but
       copying makes the check independent of what forward does to grad buffers. */
    float **grads = calloc((size_t)n_params, sizeof *grads);
    assert_non_null(grads);
    for (int i = 0; i < n_params; i++) {
        fl_param *p = fl_model_param(g->m, i);
        size_t n = (size_t)fl_numel(&p->grad);
        grads[i] = malloc(n * sizeof *grads[i]);
        assert_non_null(grads[i]);
        be->ops.to_host(grads[i], &p->grad, n * sizeof *grads[i]);
    }

    print_message("finite differences (eps %g), per parameter: checked, max |a-fd|, max rel\n",
                  FD_EPS);
    for (int i = 0; i < n_params; i++) {
        fl_param *p = fl_model_param(g->m, i);
        size_t n = (size_t)fl_numel(&p->value);
        float *v = malloc(n * sizeof *v);
        size_t idx[C + SAMPLE];
        assert_non_null(v);
        be->ops.to_host(v, &p->value, n * sizeof *v);
        size_t k = pick(g, p, n, idx);
        double max_abs = 0, max_rel = 0;
        for (size_t q = 0; q < k; q++) {
            size_t j = idx[q];
            float orig = v[j];
            v[j] = orig + (float)FD_EPS;
            be->ops.from_host(&p->value, v, n * sizeof *v);
            double lp = loss_of(g);
            v[j] = orig - (float)FD_EPS;
            be->ops.from_host(&p->value, v, n * sizeof *v);
            double lm = loss_of(g);
            v[j] = orig;
            be->ops.from_host(&p->value, v, n * sizeof *v);
            /* the actual step, as the float32 weights hold it */
            double h = (double)(orig + (float)FD_EPS) - (double)(orig - (float)FD_EPS);
            double fd = (lp - lm) / h, a = grads[i][j], d = fabs(a - fd);
            double rel = d / fmax(fabs(fd), FD_ATOL / FD_RTOL);
            if (d > max_abs) max_abs = d;
            if (rel > max_rel) max_rel = rel;
            if (!(d <= FD_ATOL + FD_RTOL * fabs(fd))) {
                if (failed < 10)
                    print_message("  MISMATCH %s[%zu]: analytic %.6g, finite difference %.6g\n",
                                  p->name, j, a, fd);
                failed++;
            }
            checked++;
        }
        print_message("  %-38s %3zu  %.2e  %.2e\n", p->name, k, max_abs, max_rel);
        free(v);
    }
    for (int i = 0; i < n_params; i++) free(grads[i]);
    free(grads);
    if (failed) fail_msg("%d of %d gradient coordinates disagree with finite differences", failed,
                         checked);
}

static void test_zero_grad_zeroes(void **state) {
    grad_fixture *g = *state;
    analytic(g);
    int nonzero_before = 0;
    for (int i = 0; i < fl_model_n_params(g->m); i++) {
        fl_param *p = fl_model_param(g->m, i);
        nonzero_before += g->be->sumsq(&p->grad) > 0;
    }
    /* every parameter of this model influences the loss */
    assert_int_equal(nonzero_before, fl_model_n_params(g->m));
    fl_model_zero_grad(g->m);
    for (int i = 0; i < fl_model_n_params(g->m); i++) {
        fl_param *p = fl_model_param(g->m, i);
        if (g->be->sumsq(&p->grad) != 0) fail_msg("%s: grad not zero after zero_grad", p->name);
    }
}

/* The padded head (this group's model) against the same weights unpadded:
   the same loss and gradients, to f32 summation order (the padding adds
   zero products); and a bad FFNLAB_PAD_VOCAB is refused in one line. */
static void test_padded_head_changes_nothing(void **state) {
    grad_fixture *g = *state, *ref = NULL;
    assert_int_equal(setup((void **)&ref), 0);
    assert_int_equal(fl_model_head_width(g->m), 48);
    assert_int_equal(fl_model_head_width(ref->m), V); /* the CPU pads nothing by itself */
    analytic(g), analytic(ref);
    assert_int_equal(fl_numel(fl_model_logits(g->m)), B * T * 48);
    const double lp = loss_of(g), lr = loss_of(ref);
    print_message("  loss padded %.9f, unpadded %.9f\n", lp, lr);
    assert_true(fabs(lp - lr) <= 1e-6 * fabs(lr));
    double worst = 0;
    for (int i = 0; i < fl_model_n_params(g->m); i++) {
        const fl_tensor *a = &fl_model_param(g->m, i)->grad, *b = &fl_model_param(ref->m, i)->grad;
        assert_int_equal(fl_numel(a), fl_numel(b));
        for (int64_t j = 0; j < fl_numel(a); j++) {
            const double x = ((const float *)a->data)[j], y = ((const float *)b->data)[j];
            worst = fmax(worst, fabs(x - y) / (fabs(y) + 1e-6));
        }
    }
    print_message("  largest relative gradient difference %.2e\n", worst);
    assert_true(worst <= 1e-4);
    teardown((void **)&ref);

    const char *bad[] = {"0", "x", "4097", "64k"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("FFNLAB_PAD_VOCAB", bad[i], 1);
        fl_model *m = NULL;
        fl_error err = {0};
        const char *specs[L] = {"dense", "dense"};
        fl_model_config mc = {.vocab_size = V, .context = T, .d_model = C, .n_layers = L, .n_heads = H,
                              .ffn_specs = specs, .seed = 7};
        assert_int_equal(fl_model_create(&mc, g->be, &m, &err), FL_EINVAL);
        assert_null(m);
        assert_non_null(strstr(err.msg, "FFNLAB_PAD_VOCAB="));
        assert_non_null(strstr(err.msg, "expected auto, off or a multiple from 1 to 4096"));
    }
    unsetenv("FFNLAB_PAD_VOCAB");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finite_differences_match_backward),
        cmocka_unit_test(test_zero_grad_zeroes),
    };
    const struct CMUnitTest fd_only[] = {
        cmocka_unit_test(test_finite_differences_match_backward),
    };
    int failed = cmocka_run_group_tests_name("decoder", tests, setup, teardown);
    failed += cmocka_run_group_tests_name("encoder (bidirectional, padded, masked targets)", fd_only, setup_encoder,
                                          teardown);
    failed += cmocka_run_group_tests_name("decoder with a local layer", fd_only, setup_local, teardown);
    const struct CMUnitTest padded[] = {
        cmocka_unit_test(test_finite_differences_match_backward),
        cmocka_unit_test(test_padded_head_changes_nothing),
    };
    failed += cmocka_run_group_tests_name("decoder with its LM head padded to 48 columns", padded, setup_padded,
                                          teardown);
    return failed;
}
