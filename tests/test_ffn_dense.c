/*
 * tests/test_ffn_dense.c — the dense FFN plugin (plugins/ffn_dense) on the CPU.
 *
 * The layer is built the way training builds it (fl_ffn_layer_create, through
 * tests/support/ffn_fixture: loaded by name, options parsed by the host's
 * parser) with d = 8, d_ff = 16 for every activation, plain and gated, and plain
 * once more on a host from before bias_activation (the unfused path). For each:
 *   - parameter names, shapes and flags follow GPT-2 (transformer.h.0.mlp.*);
 *   - forward equals a naive double-precision reference;
 *   - backward matches double-sided finite differences (eps 1e-2) of
 *     loss = sum(y * R) for dx and for every parameter, relative error < 1e-2;
 *   - parameter gradients accumulate over backward calls (weights and biases).
 * Weights are re-drawn larger than GPT-2's init (std 0.5) so the activations
 * work in their nonlinear range, where a wrong derivative would show.
 * For relu, finite differences that straddle the kink are skipped (they are
 * not derivatives); the reference forward says which ones do.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>    /* tanh, exp, fabs */
#include <stdio.h>   /* snprintf */
#include <stdlib.h>  /* calloc, free */
#include <string.h>  /* strcmp, strstr */

#include "ffn_fixture.h"

enum { D = 8, DFF = 16, B = 2, T = 3, N = B * T };

/* One dense layer (t: built by fl_ffn_layer_create) and what the checks need. */
typedef struct fx {
    ts_ffn t;
    int act; /* FL_ACT_* */
    int glu;
    fl_param *fc_w, *fc_b, *gate_w, *gate_b, *proj_w, *proj_b;
} fx;

static float *vals(fl_param *p) { return (float *)p->value.data; }
static float *grads(fl_param *p) { return (float *)p->grad.data; }

/* Creates the layer from option text; returns the status (layer NULL on failure). */
static fl_status make_layer(fx *f, const char *opts, int d_model, fl_error *err) {
    memset(f, 0, sizeof *f);
    return ts_ffn_create(&f->t, "dense", opts, d_model, err);
}

/* Whether the layers are made on a host whose ops end before bias_activation. */
static int g_older_host;

/* Re-draws every parameter: matrices std 0.5, biases std 0.3. */
static void redraw_params(fx *f) {
    for (int i = 0; i < f->t.list.n; i++) {
        fl_param *p = &f->t.list.items[i]->pub;
        float std = p->value.ndim == 2 ? 0.5f : 0.3f;
        f->t.be->ops.rng_normal(&p->value, fl_rng_key(99, p->name), 0, 0.0f, std);
    }
}

/* ------------------------------------------------------------------------ */
/* Naive reference                                                            */
/* ------------------------------------------------------------------------ */

/* y[N,D] in double; pre[N,DFF] gets the activation's input (h, or g with glu). */
static void forward_ref(fx *f, const float *x, double *y, double *pre) {
    const float *wf = vals(f->fc_w), *bf = vals(f->fc_b), *wp = vals(f->proj_w), *bp = vals(f->proj_b);
    for (int n = 0; n < N; n++) {
        double a[DFF];
        for (int j = 0; j < DFF; j++) {
            double h = bf[j], g = 0;
            for (int i = 0; i < D; i++) h += (double)x[n * D + i] * wf[i * DFF + j];
            if (f->glu) {
                g = vals(f->gate_b)[j];
                for (int i = 0; i < D; i++) g += (double)x[n * D + i] * vals(f->gate_w)[i * DFF + j];
                a[j] = ts_act_ref(f->act, g) * h;
            } else {
                a[j] = ts_act_ref(f->act, h);
            }
            if (pre) pre[n * DFF + j] = f->glu ? g : h;
        }
        for (int k = 0; k < D; k++) {
            double s = bp[k];
            for (int j = 0; j < DFF; j++) s += a[j] * wp[j * D + k];
            y[n * D + k] = s;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Plugin forward and loss                                                    */
/* ------------------------------------------------------------------------ */

static const fl_ffn_ctx CTX = {.train = 1, .step = 0, .rng_key = 7, .B = B, .T = T};

static fl_tensor wrap3(fx *f, float *data) {
    int64_t shape[3] = {B, T, D};
    return fl_wrap(data, FL_F32, f->t.be->device, 3, shape);
}

static void plugin_forward(fx *f, float *x, float *y) {
    fl_tensor tx = wrap3(f, x), ty = wrap3(f, y);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->forward(f->t.L.layer, &CTX, &tx, &ty, &err), &err);
}

static double loss_of(fx *f, float *x, const float *R) {
    float y[N * D];
    plugin_forward(f, x, y);
    double s = 0;
    for (int i = 0; i < N * D; i++) s += (double)y[i] * R[i];
    return s;
}

/* 1 if some relu input changes sign between the reference forwards at
   pre_plus and at the current values: then the difference is not a derivative. */
static int crosses_kink(fx *f, const float *x, const double *pre_plus) {
    double y[N * D], pre[N * DFF];
    forward_ref(f, x, y, pre);
    for (int k = 0; k < N * DFF; k++)
        if ((pre_plus[k] > 0) != (pre[k] > 0)) return 1;
    return 0;
}

/* Numerical d loss / d v[i] for each of n values (of x or a parameter) into
   num; where a relu kink is straddled, num[i] = ana[i] (nothing compared).
   Returns how many were skipped that way. */
static int numeric_grad(fx *f, float *v, int n, float *x, const float *R, float *num,
                        const float *ana, float eps) {
    int skipped = 0, relu = f->act == FL_ACT_RELU;
    for (int i = 0; i < n; i++) {
        double y[N * D], pre_plus[N * DFF];
        float keep = v[i];
        v[i] = keep + eps;
        double lp = loss_of(f, x, R);
        if (relu) forward_ref(f, x, y, pre_plus);
        v[i] = keep - eps;
        double lm = loss_of(f, x, R);
        int kink = relu && crosses_kink(f, x, pre_plus);
        v[i] = keep;
        num[i] = kink ? ana[i] : (float)((lp - lm) / (2.0 * eps));
        skipped += kink;
    }
    return skipped;
}

/* ------------------------------------------------------------------------ */
/* One configuration, checked end to end                                      */
/* ------------------------------------------------------------------------ */

static void check_params(fx *f) {
    int want = f->glu ? 6 : 4;
    assert_int_equal(f->t.list.n, want);
    f->fc_w = ts_ffn_param(&f->t, "c_fc.weight");
    f->fc_b = ts_ffn_param(&f->t, "c_fc.bias");
    f->proj_w = ts_ffn_param(&f->t, "c_proj.weight");
    f->proj_b = ts_ffn_param(&f->t, "c_proj.bias");
    assert_non_null(f->fc_w);
    assert_non_null(f->fc_b);
    assert_non_null(f->proj_w);
    assert_non_null(f->proj_b);
    assert_int_equal(f->fc_w->value.ndim, 2);
    assert_int_equal(f->fc_w->value.shape[0], D);
    assert_int_equal(f->fc_w->value.shape[1], DFF);
    assert_int_equal(f->fc_b->value.shape[0], DFF);
    assert_int_equal(f->proj_w->value.shape[0], DFF);
    assert_int_equal(f->proj_w->value.shape[1], D);
    assert_int_equal(f->proj_b->value.shape[0], D);
    assert_int_equal(f->fc_w->flags, FL_PARAM_DECAY);
    assert_int_equal(f->proj_w->flags, FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT);
    assert_int_equal(f->fc_b->flags, 0);
    if (f->glu) {
        f->gate_w = ts_ffn_param(&f->t, "c_gate.weight");
        f->gate_b = ts_ffn_param(&f->t, "c_gate.bias");
        assert_non_null(f->gate_w);
        assert_non_null(f->gate_b);
        assert_int_equal(f->gate_w->value.shape[0], D);
        assert_int_equal(f->gate_w->value.shape[1], DFF);
        assert_int_equal(f->gate_w->flags, FL_PARAM_DECAY);
    } else {
        assert_null(ts_ffn_param(&f->t, "c_gate.weight"));
    }
}

static void check_stats(fx *f) {
    fl_stat st[8];
    int n = f->t.L.ffn->stats(f->t.L.layer, st, 8);
    assert_int_equal(n, 3);
    double params = 2.0 * D * DFF + DFF + D + (f->glu ? D * DFF + DFF : 0);
    double flops = 2.0 * D * DFF * (f->glu ? 3 : 2);
    for (int i = 0; i < n; i++) {
        if (!strcmp(st[i].name, "active_params")) assert_true(st[i].value == params);
        else if (!strcmp(st[i].name, "flops_per_token")) assert_true(st[i].value == flops);
        else if (!strcmp(st[i].name, "d_ff")) assert_true(st[i].value == DFF);
        else fail_msg("unexpected stat %s", st[i].name);
    }
    assert_int_equal(f->t.L.ffn->stats(f->t.L.layer, st, 1), 3); /* reports how many it has */
}

static void check_forward(fx *f, float *x) {
    float y[N * D], yr[N * D];
    double yd[N * D];
    plugin_forward(f, x, y);
    forward_ref(f, x, yd, NULL);
    for (int i = 0; i < N * D; i++) yr[i] = (float)yd[i];
    ts_assert_close(y, yr, N * D, 1e-4, 1e-5, "forward y");
}

/* Analytic gradients (backward once) against finite differences. */
static void check_gradients(fx *f, float *x, const float *R, const char *label) {
    float dx[N * D];
    for (int i = 0; i < N * D; i++) dx[i] = NAN; /* backward must overwrite */
    ts_ffn_zero_grads(&f->t);
    float y[N * D];
    plugin_forward(f, x, y);
    fl_tensor tdy = wrap3(f, (float *)R), tdx = wrap3(f, dx);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->backward(f->t.L.layer, &CTX, &tdy, &tdx, &err), &err);

    const float eps = 1e-2f;
    float num[DFF * D];
    int skipped = numeric_grad(f, x, N * D, x, R, num, dx, eps);
    double e = ts_rel_error(dx, num, N * D), worst = e;
    print_message("  %-30s %-14s rel error %.2e\n", label, "dx", e);
    if (!(e < 1e-2)) fail_msg("%s dx: relative error %.3g >= 1e-2", label, e);
    for (int p = 0; p < f->t.list.n; p++) {
        fl_param *prm = &f->t.list.items[p]->pub;
        int n = (int)fl_numel(&prm->value);
        skipped += numeric_grad(f, vals(prm), n, x, R, num, grads(prm), eps);
        e = ts_rel_error(grads(prm), num, (size_t)n);
        print_message("  %-30s %-14s rel error %.2e\n", label, prm->name + strlen(TS_FFN_PREFIX), e);
        if (!(e < 1e-2)) fail_msg("%s %s: relative error %.3g >= 1e-2", label, prm->name, e);
        if (e > worst) worst = e;
    }
    print_message("  %-30s worst relative error %.2e (%d kink-straddling differences skipped)\n",
                  label, worst, skipped);
}

/* Parameter gradients accumulate: a second backward doubles them. */
static void check_accumulation(fx *f, float *x, const float *R) {
    float y[N * D], dx[N * D];
    fl_tensor tdy = wrap3(f, (float *)R), tdx = wrap3(f, dx);
    fl_error err = {0};
    ts_ffn_zero_grads(&f->t);
    plugin_forward(f, x, y);
    ts_assert_ok(f->t.L.ffn->backward(f->t.L.layer, &CTX, &tdy, &tdx, &err), &err);
    float once[DFF * D], bias_once[DFF];
    memcpy(once, grads(f->fc_w), sizeof once);
    memcpy(bias_once, grads(f->fc_b), sizeof bias_once);
    ts_assert_ok(f->t.L.ffn->backward(f->t.L.layer, &CTX, &tdy, &tdx, &err), &err);
    for (int i = 0; i < DFF * D; i++) once[i] *= 2;
    for (int i = 0; i < DFF; i++) bias_once[i] *= 2;
    ts_assert_close(grads(f->fc_w), once, DFF * D, 1e-5, 1e-7, "accumulated c_fc.weight grad");
    ts_assert_close(grads(f->fc_b), bias_once, DFF, 1e-5, 1e-7, "accumulated c_fc.bias grad");
}

static void run_config(const char *opts, int act, int glu) {
    fx f;
    fl_error err = {0};
    if (g_older_host) {
        memset(&f, 0, sizeof f);
        ts_assert_ok(ts_ffn_create_older_host(&f.t, "dense", opts, D, offsetof(fl_ops, bias_activation), &err), &err);
    } else {
        ts_assert_ok(make_layer(&f, opts, D, &err), &err);
    }
    f.act = act;
    f.glu = glu;
    check_params(&f);
    check_stats(&f);
    redraw_params(&f);
    float x[N * D], R[N * D];
    for (int i = 0; i < N * D; i++) {
        x[i] = fl_rng_normal(11, (uint64_t)i);
        R[i] = fl_rng_normal(12, (uint64_t)i);
    }
    check_forward(&f, x);
    check_gradients(&f, x, R, opts);
    check_accumulation(&f, x, R);
    ts_ffn_free(&f.t);
}

static void test_gelu(void **s) { (void)s; run_config("d_ff=16", FL_ACT_GELU, 0); }
static void test_relu(void **s) { (void)s; run_config("d_ff=16,activation=relu", FL_ACT_RELU, 0); }
static void test_silu(void **s) { (void)s; run_config("d_ff=16,activation=silu", FL_ACT_SILU, 0); }
static void test_glu_gelu(void **s) { (void)s; run_config("d_ff=16,glu=true", FL_ACT_GELU, 1); }
static void test_glu_relu(void **s) { (void)s; run_config("d_ff=16,glu=1,activation=relu", FL_ACT_RELU, 1); }
static void test_glu_silu(void **s) { (void)s; run_config("d_ff=16,glu=yes,activation=silu", FL_ACT_SILU, 1); }

/* Without the gate, on a host whose ops lack bias_activation: add_bias and
   activation as two ops, and the same results. */
static void test_older_host(void **s) {
    (void)s;
    g_older_host = 1;
    run_config("d_ff=16", FL_ACT_GELU, 0);
    run_config("d_ff=16,activation=relu", FL_ACT_RELU, 0);
    g_older_host = 0;
}

/* ------------------------------------------------------------------------ */
/* Defaults and errors                                                        */
/* ------------------------------------------------------------------------ */

static void test_default_d_ff(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, NULL, D, &err), &err);
    fl_param *w = ts_ffn_param(&f.t, "c_fc.weight");
    assert_non_null(w);
    assert_int_equal(w->value.shape[1], 4 * D); /* GPT-2: 4 * d_model */
    fl_stat st[3];
    f.t.L.ffn->stats(f.t.L.layer, st, 3);
    assert_true(st[2].value == 4 * D);
    /* GPT-2 init: std 0.02 (not all zero), biases zero. */
    double ss = 0;
    for (int i = 0; i < D * 4 * D; i++) ss += (double)vals(w)[i] * vals(w)[i];
    double std = sqrt(ss / (D * 4 * D));
    assert_true(std > 0.01 && std < 0.03);
    fl_param *b = ts_ffn_param(&f.t, "c_fc.bias");
    for (int i = 0; i < 4 * D; i++) assert_true(vals(b)[i] == 0.0f);
    ts_ffn_free(&f.t);
}

static void expect_option_error(const char *opts, const char *sub) {
    ts_ffn_expect_option_error("dense", opts, D, sub);
}

static void test_option_errors(void **state) {
    (void)state;
    expect_option_error("d_ff=0", "d_ff");
    expect_option_error("activation=tanh", "gelu|relu|silu");
    expect_option_error("width=3", "unknown option 'width'");
    expect_option_error("glu=maybe", "glu");
}

/* create itself refuses values a careless host let through. create is called
   directly: fl_ffn_layer_create only passes values its parser accepted. */
static void test_create_checks(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=16", D, &err), &err);
    fl_value bad[3];
    memcpy(bad, f.t.L.opts.values, sizeof bad);
    bad[0].i = 0;
    fl_param_scope scope = ts_ffn_scope(&f.t);
    fl_ffn_config cfg = {.d_model = D, .n_layers = 2, .values = bad, .scope = &scope};
    void *layer = (void *)1;
    assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfg, &layer, &err), FL_EINVAL);
    assert_null(layer);
    assert_non_null(strstr(err.msg, "d_ff"));
    cfg.values = f.t.L.opts.values;
    cfg.d_model = 0;
    assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfg, &layer, &err), FL_EINVAL);
    ts_ffn_free(&f.t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gelu),          cmocka_unit_test(test_relu),
        cmocka_unit_test(test_silu),          cmocka_unit_test(test_glu_gelu),
        cmocka_unit_test(test_glu_relu),      cmocka_unit_test(test_glu_silu),
        cmocka_unit_test(test_default_d_ff),  cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_create_checks), cmocka_unit_test(test_older_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
