/*
 * tests/test_ffn_cnt.c — the controller-sparse FFN plugin (plugins/ffn_cnt).
 *
 * Layers are built on the CPU host as training builds them
 * (fl_ffn_layer_create, through tests/support/ffn_fixture: loaded by name,
 * options parsed by the host's parser). A double-precision reference here
 * rebuilds the whole layer from the parameters and the documented noise
 * (Gumbel noise of logit (n, j) is -log(-log(fl_rng_uniform(key, n * d_ff +
 * j)))), and the tests check:
 *   - options: bad combinations and values fail with FL_EINVAL naming the option;
 *   - parameters: GPT-2-like names, shapes, flags;
 *   - inference equals the dense hidden layer masked to each block's argmax
 *     unit (≤ 1e-5 relative), on shapes that exercise the kernels' tiles and
 *     partial block groups; the argmax unit, and only it, is what is used;
 *     the packed weight copies follow training, reloads and one-value edits;
 *   - kernels=host (the portable inference path of host ops that other
 *     devices use) gives the auto path's output (≤ 1e-6 relative) and
 *     follows weight changes;
 *   - training gradients: dx and every unit parameter against finite
 *     differences of the plugin's own forward (hard mask, fixed key: the mask
 *     is piecewise constant, and x's controller path is switched off by
 *     C1 = 0 there); with soft_mix = 1 (always the soft mask) every gradient
 *     against finite differences, as the forward is then smooth;
 *   - the straight-through estimator against its definition: every gradient
 *     (controller included) equals that of the surrogate loss in which the
 *     mask is hard0 + s(θ) - s(θ0), s the Gumbel-softmax probabilities — the
 *     forward value of the hard mask with the soft mask's derivative;
 *   - determinism under a key, stats formulas, backward misuse, accumulation;
 *   - on a host whose ops table ends before bias_activation (an older host:
 *     the plugin then adds c_fc's bias and applies the activation as two
 *     ops), the same gradients;
 *   - `ffnlab train --ffn cnt:block=16` learns (end to end).
 * Weights are re-drawn larger than the init (std 0.5) so activations and
 * controller softmaxes work in their nonlinear range.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>    /* tanh, exp, log, fabs */
#include <stdio.h>   /* snprintf, sscanf */
#include <stdlib.h>  /* calloc, free */
#include <string.h>  /* strcmp, strstr, memcmp */

#include "ffn_fixture.h"

#define KEY 0x5eedULL

/* One layer (t: built by fl_ffn_layer_create), its shape and parameters. */
typedef struct fx {
    ts_ffn t;
    int D, F, BL, NB, R, B, T, N; /* d_model, d_ff, block, n_blocks, rank, batch */
    fl_param *fc_w, *fc_b, *proj_w, *proj_b, *c1, *c2, *c2_b;
} fx;

/* How the reference computes the layer (mirrors the options). */
typedef struct ref {
    int act;          /* FL_ACT_* */
    double tau, noise;
    int mbc;
    int train, soft;  /* train: Gumbel noise and mask; soft: mask = s */
    uint64_t key;
    const int *hard0; /* surrogate: the hard selection at θ0 [N*NB] ... */
    const double *s0; /* ... and s at θ0 [N*F]; NULL: the real forward */
} ref;

static float *vals(fl_param *p) { return (float *)p->value.data; }
static float *grads(fl_param *p) { return (float *)p->grad.data; }

/* Layers are made on a host without bias_activation while set (test_older_host). */
static int g_older_host;

/* Creates the layer from option text; returns the status (layer NULL on failure). */
static fl_status make_layer(fx *f, const char *opts, int d_model, fl_error *err) {
    memset(f, 0, sizeof *f);
    if (g_older_host)
        return ts_ffn_create_older_host(&f->t, "cnt", opts, d_model, offsetof(fl_ops, bias_activation), err);
    return ts_ffn_create(&f->t, "cnt", opts, d_model, err);
}

/* Finds the parameters and reads the shape off them. */
static void bind(fx *f, int B, int T) {
    f->fc_w = ts_ffn_param(&f->t, "c_fc.weight");
    f->fc_b = ts_ffn_param(&f->t, "c_fc.bias");
    f->proj_w = ts_ffn_param(&f->t, "c_proj.weight");
    f->proj_b = ts_ffn_param(&f->t, "c_proj.bias");
    f->c1 = ts_ffn_param(&f->t, "controller.c1.weight");
    f->c2 = ts_ffn_param(&f->t, "controller.c2.weight");
    f->c2_b = ts_ffn_param(&f->t, "controller.c2.bias");
    assert_non_null(f->fc_w);
    assert_non_null(f->c2_b);
    f->D = (int)f->fc_w->value.shape[0];
    f->F = (int)f->fc_w->value.shape[1];
    f->R = (int)f->c1->value.shape[1];
    fl_stat st[8];
    int n = f->t.L.ffn->stats(f->t.L.layer, st, 8);
    for (int i = 0; i < n; i++)
        if (!strcmp(st[i].name, "blocks")) f->NB = (int)st[i].value;
    f->BL = f->F / f->NB;
    f->B = B, f->T = T, f->N = B * T;
}

/* Re-draws every parameter: matrices std 0.5, biases std 0.3. */
static void redraw_params(fx *f) {
    for (int i = 0; i < f->t.list.n; i++) {
        fl_param *p = &f->t.list.items[i]->pub;
        float std = p->value.ndim == 2 ? 0.5f : 0.3f;
        f->t.be->ops.rng_normal(&p->value, fl_rng_key(99, p->name), 0, 0.0f, std);
    }
}

/* ------------------------------------------------------------------------ */
/* Double-precision reference                                                 */
/* ------------------------------------------------------------------------ */

static double gumbel_ref(uint64_t key, int64_t counter) {
    return -log(-log((double)fl_rng_uniform(key, (uint64_t)counter)));
}

/* softmax of v[n] into out; returns the argmax (lower index on ties) */
static int softmax_ref(const double *v, int n, double *out) {
    int k = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[k]) k = i;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += out[i] = exp(v[i] - v[k]);
    for (int i = 0; i < n; i++) out[i] /= sum;
    return k;
}

/* y[N,D]; optionally sel[N*NB] (selected unit of each block), s[N*F]
   (Gumbel-softmax probabilities, train) and pre[N*F] (x·W1 + b1). */
static void forward_ref(fx *f, const float *x, const ref *o, double *y, int *sel, double *s_out,
                        double *pre_out) {
    const int D = f->D, F = f->F, BL = f->BL, NB = f->NB, R = f->R;
    const float *w1 = vals(f->fc_w), *b1 = vals(f->fc_b), *w2 = vals(f->proj_w), *b2 = vals(f->proj_b);
    const float *c1 = vals(f->c1), *c2 = vals(f->c2), *cb = vals(f->c2_b);
    double *c = calloc((size_t)R, sizeof *c), *l = calloc((size_t)F, sizeof *l);
    double *z = calloc((size_t)F, sizeof *z), *s = calloc((size_t)F, sizeof *s), *p = calloc((size_t)F, sizeof *p);
    for (int n = 0; n < f->N; n++) {
        const float *xr = x + n * D;
        for (int r = 0; r < R; r++) {
            c[r] = 0;
            for (int i = 0; i < D; i++) c[r] += (double)xr[i] * c1[i * R + r];
        }
        for (int j = 0; j < F; j++) {
            l[j] = cb[j];
            for (int r = 0; r < R; r++) l[j] += c[r] * c2[r * F + j];
            double g = o->train ? o->noise * gumbel_ref(o->key, (int64_t)n * F + j) : 0.0;
            z[j] = (l[j] + g) / (o->train ? o->tau : 1.0);
        }
        for (int b = 0; b < NB; b++) {
            int k = softmax_ref(z + b * BL, BL, s + b * BL);
            softmax_ref(l + b * BL, BL, p + b * BL);
            if (sel) sel[n * NB + b] = b * BL + k;
            for (int i = 0; i < BL; i++) {
                int j = b * BL + i;
                double mask;
                if (o->train && o->soft) mask = s[j];
                else if (o->hard0) mask = (o->hard0[n * NB + b] == j) + s[j] - o->s0[n * F + j];
                else mask = i == k;
                z[j] = mask * (o->mbc ? p[j] : 1.0); /* z now holds the effective mask */
            }
        }
        if (s_out) memcpy(s_out + (size_t)n * F, s, (size_t)F * sizeof *s);
        for (int k = 0; k < D; k++) y[n * D + k] = b2[k];
        for (int j = 0; j < F; j++) {
            double h = b1[j];
            for (int i = 0; i < D; i++) h += (double)xr[i] * w1[i * F + j];
            if (pre_out) pre_out[(size_t)n * F + j] = h;
            double a = ts_act_ref(o->act, h) * z[j];
            if (a == 0.0) continue;
            for (int k = 0; k < D; k++) y[n * D + k] += a * w2[j * D + k];
        }
    }
    free(c), free(l), free(z), free(s), free(p);
}

/* ------------------------------------------------------------------------ */
/* Plugin forward, backward and losses                                        */
/* ------------------------------------------------------------------------ */

static fl_ffn_ctx ctx_of(fx *f, int train, uint64_t key) {
    fl_ffn_ctx c = {.train = train, .step = 0, .rng_key = key, .B = f->B, .T = f->T};
    return c;
}

static fl_tensor wrap3(fx *f, float *data) {
    int64_t shape[3] = {f->B, f->T, f->D};
    return fl_wrap(data, FL_F32, f->t.be->device, 3, shape);
}

static void plugin_forward(fx *f, int train, uint64_t key, float *x, float *y) {
    fl_tensor tx = wrap3(f, x), ty = wrap3(f, y);
    fl_ffn_ctx c = ctx_of(f, train, key);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->forward(f->t.L.layer, &c, &tx, &ty, &err), &err);
}

static void plugin_backward(fx *f, uint64_t key, const float *R, float *dx) {
    fl_tensor tdy = wrap3(f, (float *)R), tdx = wrap3(f, dx);
    fl_ffn_ctx c = ctx_of(f, 1, key);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->backward(f->t.L.layer, &c, &tdy, &tdx, &err), &err);
}

/* loss = Σ y · R through the plugin (training forward under KEY) or the reference */
static double loss_plugin(fx *f, float *x, const float *R) {
    float *y = calloc((size_t)f->N * f->D, sizeof *y);
    plugin_forward(f, 1, KEY, x, y);
    double s = 0;
    for (int i = 0; i < f->N * f->D; i++) s += (double)y[i] * R[i];
    free(y);
    return s;
}

static double loss_ref(fx *f, float *x, const float *R, const ref *o) {
    double *y = calloc((size_t)f->N * f->D, sizeof *y);
    forward_ref(f, x, o, y, NULL, NULL, NULL);
    double s = 0;
    for (int i = 0; i < f->N * f->D; i++) s += y[i] * R[i];
    free(y);
    return s;
}

/* 1 if, between the reference states at +eps and -eps, a relu input changes
   sign or a selected unit changes: then the difference is not a derivative. */
static int straddles(fx *f, float *x, const ref *o, float *v, int i, float eps) {
    const size_t nf = (size_t)f->N * f->F;
    double *y = calloc((size_t)f->N * f->D, sizeof *y), *pp = calloc(nf, sizeof *pp), *pm = calloc(nf, sizeof *pm);
    int *sp = calloc((size_t)f->N * f->NB, sizeof *sp), *sm = calloc((size_t)f->N * f->NB, sizeof *sm);
    float keep = v[i];
    v[i] = keep + eps;
    forward_ref(f, x, o, y, sp, NULL, pp);
    v[i] = keep - eps;
    forward_ref(f, x, o, y, sm, NULL, pm);
    v[i] = keep;
    int bad = memcmp(sp, sm, (size_t)f->N * f->NB * sizeof *sp) != 0;
    for (size_t k = 0; !bad && o->act == FL_ACT_RELU && k < nf; k++) bad = (pp[k] > 0) != (pm[k] > 0);
    free(y), free(pp), free(pm), free(sp), free(sm);
    return bad;
}

/* Numerical d loss / d v[i] into num (of the plugin's forward when o is
   NULL, else of the reference o); straddling differences copy ana and count. */
static int numeric_grad(fx *f, float *v, int n, float *x, const float *R, const ref *o,
                        const ref *kinks, float *num, const float *ana, float eps) {
    int skipped = 0;
    for (int i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + eps;
        double lp = o ? loss_ref(f, x, R, o) : loss_plugin(f, x, R);
        v[i] = keep - eps;
        double lm = o ? loss_ref(f, x, R, o) : loss_plugin(f, x, R);
        v[i] = keep;
        int bad = kinks && straddles(f, x, kinks, v, i, eps);
        num[i] = bad ? ana[i] : (float)((lp - lm) / (2.0 * eps));
        skipped += bad;
    }
    return skipped;
}

/* Compares one analytic gradient with its finite differences. */
static double check_one(const char *label, const char *what, const float *ana, const float *num,
                        int n, double tol) {
    double e = ts_rel_error(ana, num, (size_t)n);
    print_message("  %-44s %-22s rel error %.2e\n", label, what, e);
    if (!(e < tol)) {
        for (int i = 0; i < n && i < 64; i++)
            if (fabs(ana[i] - num[i]) > tol * 0.1 * (fabs(num[i]) + 1e-3))
                print_message("    [%d] analytic %.6g numeric %.6g\n", i, ana[i], num[i]);
        fail_msg("%s %s: relative error %.3g >= %g", label, what, e, tol);
    }
    return e;
}

static void fill_inputs(fx *f, float *x, float *R) {
    for (int i = 0; i < f->N * f->D; i++) {
        x[i] = fl_rng_normal(11, (uint64_t)i);
        R[i] = fl_rng_normal(12, (uint64_t)i);
    }
}

static ref ref_of(int act, double tau, double noise, int mbc) {
    ref o = {.act = act, .tau = tau, .noise = noise, .mbc = mbc, .train = 1, .key = KEY};
    return o;
}

/* ------------------------------------------------------------------------ */
/* Parameters, options, stats                                                 */
/* ------------------------------------------------------------------------ */

static void test_params(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=32,block=4", 8, &err), &err);
    assert_int_equal(f.t.list.n, 7);
    struct { const char *name; int64_t d0, d1; int ndim; uint32_t flags; } want[] = {
        {"c_fc.weight", 8, 32, 2, FL_PARAM_DECAY},
        {"c_fc.bias", 32, 1, 1, 0},
        {"c_proj.weight", 32, 8, 2, FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT},
        {"c_proj.bias", 8, 1, 1, 0},
        {"controller.c1.weight", 8, 2, 2, 0}, /* rank = d / block = 2 */
        {"controller.c2.weight", 2, 32, 2, 0},
        {"controller.c2.bias", 32, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        fl_param *p = ts_ffn_param(&f.t, want[i].name);
        if (!p) fail_msg("no parameter %s", want[i].name);
        assert_int_equal(p->value.ndim, want[i].ndim);
        assert_int_equal(p->value.shape[0], want[i].d0);
        if (want[i].ndim == 2) assert_int_equal(p->value.shape[1], want[i].d1);
        assert_int_equal(p->flags, want[i].flags);
    }
    /* init: matrices normal(0, 0.02) (c_proj scaled down as a residual output), biases zero */
    fl_param *w = ts_ffn_param(&f.t, "controller.c2.weight"), *b = ts_ffn_param(&f.t, "controller.c2.bias");
    double ss = 0;
    for (int i = 0; i < 64; i++) ss += (double)vals(w)[i] * vals(w)[i];
    assert_true(sqrt(ss / 64) > 0.01 && sqrt(ss / 64) < 0.03);
    for (int i = 0; i < 32; i++) assert_true(vals(b)[i] == 0.0f);
    ts_ffn_free(&f.t);

    /* defaults: d_ff = 4 d, block 32, rank = max(1, d / block) */
    ts_assert_ok(make_layer(&f, NULL, 64, &err), &err);
    assert_int_equal(ts_ffn_param(&f.t, "c_fc.weight")->value.shape[1], 256);
    assert_int_equal(ts_ffn_param(&f.t, "controller.c1.weight")->value.shape[1], 2);
    ts_ffn_free(&f.t);
    ts_assert_ok(make_layer(&f, "block=128,d_ff=256", 64, &err), &err);
    assert_int_equal(ts_ffn_param(&f.t, "controller.c1.weight")->value.shape[1], 1);
    ts_ffn_free(&f.t);
}

static void expect_option_error(const char *opts, int d_model, const char *sub) {
    ts_ffn_expect_option_error("cnt", opts, d_model, sub);
}

static void test_option_errors(void **state) {
    (void)state;
    expect_option_error("d_ff=30,block=4", 8, "not a multiple of block");
    expect_option_error("d_ff=30,block=4", 8, "d_ff = 30");
    expect_option_error(NULL, 4, "block = 32"); /* default d_ff 16 < block 32 */
    expect_option_error("temperature=0", 8, "temperature");
    expect_option_error("temperature=-0.5", 8, "temperature");
    expect_option_error("width=3", 8, "unknown option 'width'");
    expect_option_error("soft_mix=1.5", 8, "soft_mix");
    expect_option_error("noise=-1", 8, "noise");
    expect_option_error("block=0", 8, "block");
    expect_option_error("rank=0", 8, "rank");
    expect_option_error("activation=tanh", 8, "gelu|relu|silu");
    expect_option_error("multiply_by_controller=maybe", 8, "multiply_by_controller");
}

/* create itself refuses values a careless host let through. create is called
   directly: fl_ffn_layer_create only passes values its parser accepted. */
static void test_create_checks(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=32,block=4", 8, &err), &err);
    fl_param_scope scope = ts_ffn_scope(&f.t);
    fl_value bad[16];
    int n = f.t.L.plugin.header->n_options;
    assert_true(n <= 16);
    const struct { const char *opt; double f; int64_t i; const char *sub; } cases[] = {
        {"block", 0, 5, "multiple of block"},
        {"block", 0, 0, "block"},
        {"temperature", 0.0, 0, "temperature"},
        {"temperature", NAN, 0, "temperature"},
        {"soft_mix", 2.0, 0, "soft_mix"},
        {"noise", -1.0, 0, "noise"},
        {"activation", 0, 7, "activation"},
        {"rank", 0, 0, "rank"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(bad, f.t.L.opts.values, (size_t)n * sizeof *bad);
        int k = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(f.t.L.plugin.header->options[i].name, cases[c].opt)) k = i;
        assert_true(k >= 0);
        bad[k].present = 1;
        bad[k].f = cases[c].f;
        bad[k].i = cases[c].i;
        fl_ffn_config cfg = {.d_model = 8, .n_layers = 2, .values = bad, .scope = &scope};
        void *layer = (void *)1;
        assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfg, &layer, &err), FL_EINVAL);
        assert_null(layer);
        if (!strstr(err.msg, cases[c].sub)) fail_msg("'%s' does not mention '%s'", err.msg, cases[c].sub);
    }
    fl_ffn_config cfg = {.d_model = 0, .n_layers = 2, .values = f.t.L.opts.values, .scope = &scope};
    void *layer = NULL;
    assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfg, &layer, &err), FL_EINVAL);
    ts_ffn_free(&f.t);
}

/* A named stat of the layer, which has exactly 5. */
static double stat_of(fx *f, const char *name) {
    fl_stat st[8];
    assert_int_equal(f->t.L.ffn->stats(f->t.L.layer, st, 8), 5);
    return ts_ffn_stat(&f->t, name);
}

static void test_stats(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=48,block=6,rank=3", 8, &err), &err);
    bind(&f, 2, 3);
    const double d = 8, F = 48, nb = 8, r = 3, ctrl = d * r + r * F + F;
    float x[6 * 8], y[6 * 8], R[6 * 8];
    fill_inputs(&f, x, R);
    /* before any forward and after a training one: all d_ff units */
    for (int pass = 0; pass < 2; pass++) {
        assert_true(stat_of(&f, "active_params") == F * (2 * d + 1) + d + ctrl);
        assert_true(stat_of(&f, "flops_per_token") == 4 * d * F + 2 * d * r + 2 * r * F);
        assert_true(stat_of(&f, "active_units") == F);
        assert_true(stat_of(&f, "d_ff") == F);
        assert_true(stat_of(&f, "blocks") == nb);
        plugin_forward(&f, 1, KEY, x, y);
    }
    /* inference: n_blocks units */
    plugin_forward(&f, 0, KEY, x, y);
    assert_true(stat_of(&f, "active_params") == nb * (2 * d + 1) + d + ctrl);
    assert_true(stat_of(&f, "flops_per_token") == 4 * d * nb + 2 * d * r + 2 * r * F);
    assert_true(stat_of(&f, "active_units") == nb);
    fl_stat one[1];
    assert_int_equal(f.t.L.ffn->stats(f.t.L.layer, one, 1), 5); /* reports how many it has */
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Inference                                                                  */
/* ------------------------------------------------------------------------ */

/* Inference output against the reference: dense hidden layer masked to each
   block's argmax unit. */
static void check_eval(fx *f, int act, int mbc, float *x, const char *label) {
    size_t ny = (size_t)f->N * f->D;
    float *y = calloc(ny, sizeof *y), *yr = calloc(ny, sizeof *yr);
    double *yd = calloc(ny, sizeof *yd);
    plugin_forward(f, 0, KEY, x, y);
    ref o = {.act = act, .mbc = mbc, .train = 0};
    forward_ref(f, x, &o, yd, NULL, NULL, NULL);
    for (size_t i = 0; i < ny; i++) yr[i] = (float)yd[i];
    double e = ts_rel_error(y, yr, ny);
    print_message("  %-40s inference vs masked dense: rel error %.2e\n", label, e);
    if (!(e <= 1e-5)) {
        int shown = 0;
        for (size_t i = 0; i < ny && shown < 10; i++)
            if (fabs(y[i] - yr[i]) > 1e-4) { print_message("   [%zu] row %zu: %g vs %g\n", i, i / f->D, y[i], yr[i]); shown++; }
        fail_msg("%s: inference differs from the masked dense layer (%.3g)", label, e);
    }
    free(y), free(yr), free(yd);
}

static void eval_config(const char *opts, int d_model, int B, int T, int act, int mbc) {
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, opts, d_model, &err), &err);
    bind(&f, B, T);
    redraw_params(&f);
    float *x = calloc((size_t)f.N * f.D, sizeof *x);
    for (int i = 0; i < f.N * f.D; i++) x[i] = fl_rng_normal(21, (uint64_t)i);
    check_eval(&f, act, mbc, x, opts);
    free(x);
    ts_ffn_free(&f.t);
}

static void test_eval_matches_masked_dense(void **state) {
    (void)state;
    eval_config("d_ff=32,block=4", 8, 2, 3, FL_ACT_RELU, 0);
    eval_config("d_ff=32,block=4,activation=gelu", 8, 2, 3, FL_ACT_GELU, 0);
    eval_config("d_ff=32,block=4,activation=silu,multiply_by_controller=true", 8, 2, 3, FL_ACT_SILU, 1);
    /* tiles of 128 tokens, groups of 8 blocks, chunks of 64 columns, with
       remainders; d not a multiple of 8 */
    eval_config("d_ff=33,block=3", 24, 2, 150, FL_ACT_RELU, 0);
    eval_config("d_ff=66,block=3,rank=5", 21, 1, 7, FL_ACT_RELU, 0);
    eval_config("d_ff=66,block=3,rank=5,activation=gelu,multiply_by_controller=1", 21, 3, 97, FL_ACT_GELU, 1);
    eval_config("d_ff=512,block=8", 40, 1, 300, FL_ACT_RELU, 0);
    /* full 64-column chunks plus a partial one, groups of 8 and 32 blocks plus
       remainders, a partial token tile */
    eval_config("d_ff=300,block=4", 72, 2, 70, FL_ACT_RELU, 0);
    eval_config("d_ff=1024,block=8,activation=gelu", 128, 3, 100, FL_ACT_GELU, 0);
    eval_config("d_ff=64,block=64", 16, 2, 5, FL_ACT_RELU, 0); /* one block */
    eval_config("d_ff=16,block=1", 8, 2, 3, FL_ACT_RELU, 0);   /* every unit kept: dense */
}

/* The argmax unit of each block — and only it — reaches y. The controller
   input weight is zeroed so the logits are the bias, which picks known units. */
static void test_eval_uses_argmax_units(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=32,block=4", 8, &err), &err);
    bind(&f, 2, 3);
    redraw_params(&f);
    for (int i = 0; i < f.D * f.R; i++) vals(f.c1)[i] = 0.0f;
    int chosen[8];
    for (int b = 0; b < f.NB; b++) {
        chosen[b] = b * f.BL + (int)(fl_rng_bits(5, (uint64_t)b) % (uint64_t)f.BL);
        vals(f.c2_b)[chosen[b]] += 10.0f;
    }
    float x[6 * 8], y0[6 * 8], y1[6 * 8], R[6 * 8];
    fill_inputs(&f, x, R);
    plugin_forward(&f, 0, KEY, x, y0);
    /* expected: b2 + Σ_b relu(x·W1[:,u_b] + b1[u_b]) W2[u_b,:] */
    for (int n = 0; n < f.N; n++)
        for (int k = 0; k < f.D; k++) {
            double s = vals(f.proj_b)[k];
            for (int b = 0; b < f.NB; b++) {
                int u = chosen[b];
                double h = vals(f.fc_b)[u];
                for (int i = 0; i < f.D; i++) h += (double)x[n * f.D + i] * vals(f.fc_w)[i * f.F + u];
                s += (h > 0 ? h : 0) * vals(f.proj_w)[u * f.D + k];
            }
            R[n * f.D + k] = (float)s;
        }
    ts_assert_close(y0, R, 48, 1e-5, 1e-6, "y of the chosen units");
    /* changing units that are not chosen changes nothing (bitwise) ... */
    for (int j = 0; j < f.F; j++) {
        int is_chosen = 0;
        for (int b = 0; b < f.NB; b++) is_chosen |= chosen[b] == j;
        if (is_chosen) continue;
        vals(f.fc_b)[j] += 1.0f;
        for (int k = 0; k < f.D; k++) vals(f.proj_w)[j * f.D + k] *= -3.0f;
    }
    plugin_forward(&f, 0, KEY, x, y1);
    assert_memory_equal(y0, y1, sizeof y0);
    /* ... while a chosen one does */
    for (int k = 0; k < f.D; k++) vals(f.proj_w)[chosen[3] * f.D + k] += 1.0f;
    plugin_forward(&f, 0, KEY, x, y1);
    assert_memory_not_equal(y0, y1, sizeof y0);
    /* and inference is independent of the key (no noise) */
    plugin_forward(&f, 0, KEY + 1, x, y0);
    assert_memory_equal(y0, y1, sizeof y0);
    ts_ffn_free(&f.t);
}

/* The packed copies of the weights that inference reads follow the
   parameters: after a training step changed them, after a wholesale rewrite
   (a checkpoint load), and after one changed value (weight surgery), with no
   training in between. */
static void test_eval_follows_weight_changes(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=32,block=4,activation=gelu", 8, &err), &err);
    bind(&f, 2, 3);
    redraw_params(&f);
    float x[48], y[48], R[48], dx[48];
    fill_inputs(&f, x, R);
    check_eval(&f, FL_ACT_GELU, 0, x, "fresh");
    /* a training step: forward, backward, an SGD update of every parameter */
    plugin_forward(&f, 1, KEY, x, y);
    ts_ffn_zero_grads(&f.t);
    plugin_backward(&f, KEY, R, dx);
    for (int i = 0; i < f.t.list.n; i++) {
        fl_param *p = &f.t.list.items[i]->pub;
        f.t.be->ops.axpby(-0.05f, &p->grad, 1.0f, &p->value);
    }
    check_eval(&f, FL_ACT_GELU, 0, x, "after a training step");
    /* a checkpoint-like rewrite of c_fc.weight between two inference forwards */
    f.t.be->ops.rng_normal(&f.fc_w->value, 4242, 0, 0.0f, 0.5f);
    check_eval(&f, FL_ACT_GELU, 0, x, "after rewriting c_fc.weight");
    ts_ffn_free(&f.t);

    /* one value of a large layer (2 x 32768 weights), in a unit that is in
       use, changed between inference forwards and changed back */
    ts_assert_ok(make_layer(&f, "d_ff=2048,block=8,activation=gelu", 16, &err), &err);
    bind(&f, 2, 3);
    redraw_params(&f);
    float x16[96], y0[96], y1[96];
    for (int i = 0; i < 96; i++) x16[i] = fl_rng_normal(41, (uint64_t)i);
    int *sel = calloc((size_t)f.N * f.NB, sizeof *sel);
    double yd[96];
    ref o = {.act = FL_ACT_GELU};
    forward_ref(&f, x16, &o, yd, sel, NULL, NULL);
    const int u = sel[5 * f.NB + 200]; /* token 5's unit in block 200 */
    float *targets[] = {&vals(f.fc_w)[7 * f.F + u], &vals(f.proj_w)[u * f.D + 3]};
    const char *names[] = {"after changing one value of c_fc.weight", "after changing one value of c_proj.weight"};
    for (int t = 0; t < 2; t++) {
        plugin_forward(&f, 0, KEY, x16, y0);
        float keep = *targets[t];
        *targets[t] = keep + 0.5f;
        check_eval(&f, FL_ACT_GELU, 0, x16, names[t]);
        *targets[t] = keep;
        plugin_forward(&f, 0, KEY, x16, y1);
        assert_memory_equal(y0, y1, sizeof y0); /* and back */
    }
    free(sel);
    ts_ffn_free(&f.t);
}

/* kernels=host against kernels=auto (the packed CPU kernels) on the same
   parameters and input: the same selection, the sparse pair summed in
   another order (≤ 1e-6 normwise relative); both against the reference. */
static void host_path_config(const char *opts, int d_model, int B, int T, int act, int mbc) {
    fx f, g;
    fl_error err = {0};
    char host_opts[256];
    snprintf(host_opts, sizeof host_opts, "%s,kernels=host", opts);
    ts_assert_ok(make_layer(&f, opts, d_model, &err), &err);
    ts_assert_ok(make_layer(&g, host_opts, d_model, &err), &err);
    bind(&f, B, T), bind(&g, B, T);
    redraw_params(&f), redraw_params(&g); /* the same values: names and seed agree */
    const size_t ny = (size_t)f.N * f.D;
    float *x = calloc(ny, sizeof *x), *ya = calloc(ny, sizeof *ya), *yh = calloc(ny, sizeof *yh);
    for (size_t i = 0; i < ny; i++) x[i] = fl_rng_normal(51, i);
    plugin_forward(&f, 0, KEY, x, ya);
    plugin_forward(&g, 0, KEY, x, yh);
    double e = ts_rel_error(yh, ya, ny);
    print_message("  %-56s host ops vs CPU kernels: rel error %.2e\n", opts, e);
    if (!(e <= 1e-6)) fail_msg("%s: kernels=host differs from kernels=auto (%.3g)", opts, e);
    check_eval(&g, act, mbc, x, host_opts);
    /* the host path re-reads the weights every forward: one changed value of
       c_fc.weight (every unit's column has row 0) reaches y in both */
    for (int k = 0; k < f.F; k++) vals(f.fc_w)[k] += 0.25f, vals(g.fc_w)[k] += 0.25f;
    plugin_forward(&g, 0, KEY, x, ya);
    assert_memory_not_equal(ya, yh, ny * sizeof *ya);
    check_eval(&g, act, mbc, x, "kernels=host after changing c_fc.weight");
    free(x), free(ya), free(yh);
    ts_ffn_free(&f.t), ts_ffn_free(&g.t);
}

static void test_host_kernels_match(void **state) {
    (void)state;
    host_path_config("d_ff=32,block=4", 8, 2, 3, FL_ACT_RELU, 0);
    host_path_config("d_ff=66,block=3,rank=5,activation=gelu,multiply_by_controller=1", 21, 3, 97, FL_ACT_GELU, 1);
    host_path_config("d_ff=300,block=4,activation=silu", 72, 2, 70, FL_ACT_SILU, 0);
    host_path_config("d_ff=1024,block=8,activation=gelu", 128, 3, 100, FL_ACT_GELU, 0);
    host_path_config("d_ff=64,block=64", 16, 2, 5, FL_ACT_RELU, 0);
    host_path_config("d_ff=16,block=1", 8, 2, 3, FL_ACT_RELU, 0);
}

/* ------------------------------------------------------------------------ */
/* Training gradients                                                         */
/* ------------------------------------------------------------------------ */

/* Hard mask, fixed key: dx and the unit parameters (c_fc, c_proj) against
   finite differences of the plugin's own forward. C1 = 0 makes the logits
   independent of x, so x has no straight-through path and FD through the
   piecewise-constant mask is exact. */
static void grad_units_config(const char *opts, int act, int mbc) {
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, opts, 8, &err), &err);
    bind(&f, 2, 3);
    redraw_params(&f);
    for (int i = 0; i < f.D * f.R; i++) vals(f.c1)[i] = 0.0f;
    float x[48], R[48], y[48], dx[48];
    fill_inputs(&f, x, R);
    ts_ffn_zero_grads(&f.t);
    plugin_forward(&f, 1, KEY, x, y);
    for (int i = 0; i < 48; i++) dx[i] = NAN; /* backward must overwrite */
    plugin_backward(&f, KEY, R, dx);

    ref kinks = ref_of(act, 0.1, 0.1, mbc);
    const float eps = 1e-2f;
    float *num = calloc((size_t)f.F * f.D, sizeof *num);
    int skipped = numeric_grad(&f, x, 48, x, R, NULL, &kinks, num, dx, eps);
    check_one(opts, "dx", dx, num, 48, 1e-2);
    fl_param *unit[] = {f.fc_w, f.fc_b, f.proj_w, f.proj_b};
    for (size_t p = 0; p < 4; p++) {
        int n = (int)fl_numel(&unit[p]->value);
        skipped += numeric_grad(&f, vals(unit[p]), n, x, R, NULL, &kinks, num, grads(unit[p]), eps);
        check_one(opts, unit[p]->name + strlen(TS_FFN_PREFIX), grads(unit[p]), num, n, 1e-2);
    }
    print_message("  %-44s (%d straddling differences skipped)\n", opts, skipped);
    free(num);
    ts_ffn_free(&f.t);
}

static void test_train_grad_units(void **state) {
    (void)state;
    grad_units_config("d_ff=32,block=4,activation=gelu", FL_ACT_GELU, 0);
    grad_units_config("d_ff=32,block=4,activation=silu", FL_ACT_SILU, 0);
    grad_units_config("d_ff=32,block=4", FL_ACT_RELU, 0);
    grad_units_config("d_ff=32,block=4,activation=gelu,multiply_by_controller=true", FL_ACT_GELU, 1);
}

/* Every gradient (x, units, controller) against finite differences of a
   reference loss: the plugin's own forward where that is smooth (soft mask),
   else the surrogate that defines the straight-through estimator. */
static void grad_all(fx *f, const char *opts, float *x, const float *R, const ref *o,
                     const ref *kinks, float eps, double tol) {
    float y[48], dx[48];
    ts_ffn_zero_grads(&f->t);
    plugin_forward(f, 1, KEY, x, y);
    plugin_backward(f, KEY, R, dx);
    float *num = calloc((size_t)f->F * f->D, sizeof *num);
    int skipped = numeric_grad(f, x, 48, x, R, o, kinks, num, dx, eps);
    double worst = check_one(opts, "dx", dx, num, 48, tol);
    for (int p = 0; p < f->t.list.n; p++) {
        fl_param *prm = &f->t.list.items[p]->pub;
        int n = (int)fl_numel(&prm->value);
        skipped += numeric_grad(f, vals(prm), n, x, R, o, kinks, num, grads(prm), eps);
        double e = check_one(opts, prm->name + strlen(TS_FFN_PREFIX), grads(prm), num, n, tol);
        if (e > worst) worst = e;
    }
    print_message("  %-44s worst %.2e (%d straddling differences skipped)\n", opts, worst, skipped);
    free(num);
}

/* soft_mix = 1: every batch uses the soft mask, the forward is smooth, and
   backward must be its exact gradient, controller included. */
static void grad_soft_config(const char *opts, int act, double tau, double noise, int mbc) {
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, opts, 8, &err), &err);
    bind(&f, 2, 3);
    redraw_params(&f);
    float x[48], R[48];
    fill_inputs(&f, x, R);
    ref kinks = ref_of(act, tau, noise, mbc);
    kinks.soft = 1;
    grad_all(&f, opts, x, R, NULL, act == FL_ACT_RELU ? &kinks : NULL, 1e-2f, 1e-2);
    ts_ffn_free(&f.t);
}

static void test_train_grad_soft(void **state) {
    (void)state;
    grad_soft_config("d_ff=32,block=4,soft_mix=1,activation=gelu,temperature=1", FL_ACT_GELU, 1, 0.1, 0);
    grad_soft_config("d_ff=32,block=4,soft_mix=1,activation=silu,temperature=0.5,noise=1", FL_ACT_SILU, 0.5, 1, 0);
    grad_soft_config("d_ff=32,block=4,soft_mix=1,activation=gelu,temperature=1,multiply_by_controller=1",
                     FL_ACT_GELU, 1, 0.1, 1);
    grad_soft_config("d_ff=32,block=4,soft_mix=1,temperature=2", FL_ACT_RELU, 2, 0.1, 0);
}

/* The straight-through estimator against its definition. With the key fixed,
   hard0 and s0 are the forward's selection and Gumbel-softmax probabilities;
   the surrogate mask hard0 + s(θ) - s0 has the hard mask's value and the soft
   mask's derivative, so its loss's finite differences are what backward
   must return for x and every parameter, the controller's included. (For a
   loss linear in y and no multiply_by_controller, that is also the gradient
   of the loss with the mask replaced by s.) */
static void grad_st_config(const char *opts, int act, double tau, double noise, int mbc) {
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, opts, 8, &err), &err);
    bind(&f, 2, 3);
    redraw_params(&f);
    float x[48], R[48];
    fill_inputs(&f, x, R);
    ref o = ref_of(act, tau, noise, mbc);
    int *hard0 = calloc((size_t)f.N * f.NB, sizeof *hard0);
    double *s0 = calloc((size_t)f.N * f.F, sizeof *s0), *yd = calloc(48, sizeof *yd);
    forward_ref(&f, x, &o, yd, hard0, s0, NULL);
    /* the plugin's forward is the hard one: check it on the way */
    float y[48], yr[48];
    plugin_forward(&f, 1, KEY, x, y);
    for (int i = 0; i < 48; i++) yr[i] = (float)yd[i];
    ts_assert_close(y, yr, 48, 1e-4, 1e-5, "training forward (hard mask)");
    ref sur = o;
    sur.hard0 = hard0;
    sur.s0 = s0;
    /* relu kinks of the units only: the surrogate is smooth in the controller */
    ref kinks = sur;
    grad_all(&f, opts, x, R, &sur, act == FL_ACT_RELU ? &kinks : NULL, tau < 0.5 ? 1e-3f : 1e-2f, 1e-2);
    free(hard0), free(s0), free(yd);
    ts_ffn_free(&f.t);
}

static void test_straight_through(void **state) {
    (void)state;
    grad_st_config("d_ff=32,block=4,activation=gelu,temperature=1", FL_ACT_GELU, 1, 0.1, 0);
    grad_st_config("d_ff=32,block=4,activation=gelu", FL_ACT_GELU, 0.1, 0.1, 0); /* defaults */
    grad_st_config("d_ff=32,block=4,activation=silu,temperature=0.5,noise=1", FL_ACT_SILU, 0.5, 1, 0);
    grad_st_config("d_ff=32,block=4,activation=gelu,noise=0,temperature=1", FL_ACT_GELU, 1, 0, 0);
    grad_st_config("d_ff=32,block=4,activation=gelu,temperature=1,multiply_by_controller=true",
                   FL_ACT_GELU, 1, 0.1, 1);
    grad_st_config("d_ff=32,block=4,temperature=1", FL_ACT_RELU, 1, 0.1, 0);
}

/* On a host whose ops lack bias_activation: add_bias and activation as two
   ops, and the same gradients (soft mask and straight-through). */
static void test_older_host(void **state) {
    (void)state;
    g_older_host = 1;
    grad_soft_config("d_ff=32,block=4,soft_mix=1,activation=gelu,temperature=1", FL_ACT_GELU, 1, 0.1, 0);
    grad_st_config("d_ff=32,block=4,temperature=1", FL_ACT_RELU, 1, 0.1, 0);
    g_older_host = 0;
}

/* Parameter gradients accumulate: a second backward doubles them. */
static void test_accumulation_and_misuse(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=32,block=4,activation=gelu,temperature=1", 8, &err), &err);
    bind(&f, 2, 3);
    redraw_params(&f);
    float x[48], R[48], y[48], dx[48];
    fill_inputs(&f, x, R);
    ts_ffn_zero_grads(&f.t);
    plugin_forward(&f, 1, KEY, x, y);
    plugin_backward(&f, KEY, R, dx);
    float once_w[32 * 8], once_b[32], once_c[2 * 32], dx1[48];
    memcpy(once_w, grads(f.fc_w), sizeof once_w);
    memcpy(once_b, grads(f.fc_b), sizeof once_b);
    memcpy(once_c, grads(f.c2), sizeof once_c);
    memcpy(dx1, dx, sizeof dx1);
    plugin_backward(&f, KEY, R, dx);
    for (int i = 0; i < 256; i++) once_w[i] *= 2;
    for (int i = 0; i < 32; i++) once_b[i] *= 2;
    for (int i = 0; i < 64; i++) once_c[i] *= 2;
    ts_assert_close(grads(f.fc_w), once_w, 256, 1e-5, 1e-7, "accumulated c_fc.weight grad");
    ts_assert_close(grads(f.fc_b), once_b, 32, 1e-5, 1e-7, "accumulated c_fc.bias grad");
    ts_assert_close(grads(f.c2), once_c, 64, 1e-5, 1e-7, "accumulated controller.c2.weight grad");
    ts_assert_close(dx, dx1, 48, 0, 0, "dx overwritten, not accumulated");

    /* backward after an inference forward, or of another batch size, is refused */
    plugin_forward(&f, 0, KEY, x, y);
    fl_tensor tdy = wrap3(&f, R), tdx = wrap3(&f, dx);
    fl_ffn_ctx c = ctx_of(&f, 1, KEY);
    assert_int_equal(f.t.L.ffn->backward(f.t.L.layer, &c, &tdy, &tdx, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "training forward"));
    plugin_forward(&f, 1, KEY, x, y);
    int64_t shape[2] = {3, 8};
    fl_tensor small = fl_wrap(R, FL_F32, f.t.be->device, 2, shape);
    assert_int_equal(f.t.L.ffn->backward(f.t.L.layer, &c, &small, &small, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "rows"));
    int64_t wide[2] = {6, 7};
    fl_tensor bad = fl_wrap(x, FL_F32, f.t.be->device, 2, wide);
    assert_int_equal(f.t.L.ffn->forward(f.t.L.layer, &c, &bad, &bad, &err), FL_EINVAL);
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Determinism                                                                */
/* ------------------------------------------------------------------------ */

static void test_determinism(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer(&f, "d_ff=64,block=8,noise=1", 8, &err), &err);
    bind(&f, 4, 16);
    redraw_params(&f);
    size_t n = (size_t)f.N * f.D;
    float *x = calloc(n, sizeof *x), *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
    for (size_t i = 0; i < n; i++) x[i] = fl_rng_normal(31, i);
    plugin_forward(&f, 1, KEY, x, a);
    plugin_forward(&f, 1, KEY, x, b);
    assert_memory_equal(a, b, n * sizeof *a); /* same key: the same step */
    plugin_forward(&f, 1, KEY + 1, x, b);
    assert_memory_not_equal(a, b, n * sizeof *a); /* the noise follows the key */
    /* a second layer with the same seed and key computes the same */
    fx g;
    ts_assert_ok(make_layer(&g, "d_ff=64,block=8,noise=1", 8, &err), &err);
    bind(&g, 4, 16);
    redraw_params(&g);
    plugin_forward(&g, 1, KEY, x, b);
    assert_memory_equal(a, b, n * sizeof *a);
    ts_ffn_free(&g.t);
    /* the selection is Gumbel-max sampling: with noise 1 and zero logits, every
       unit of a block is picked about equally often */
    for (int i = 0; i < f.t.list.n; i++)
        if (strstr(f.t.list.items[i]->pub.name, "controller"))
            f.t.be->ops.fill(&f.t.list.items[i]->pub.value, 0.0f);
    int *sel = calloc((size_t)f.N * f.NB, sizeof *sel), count[8] = {0};
    double *yd = calloc(n, sizeof *yd);
    ref o = ref_of(FL_ACT_RELU, 0.1, 1.0, 0);
    forward_ref(&f, x, &o, yd, sel, NULL, NULL);
    for (int i = 0; i < f.N * f.NB; i++) count[sel[i] % 8]++;
    for (int k = 0; k < 8; k++) assert_true(count[k] > 40 && count[k] < 90); /* 512 draws / 8 = 64 */
    plugin_forward(&f, 1, KEY, x, a);
    for (size_t i = 0; i < n; i++) b[i] = (float)yd[i];
    ts_assert_close(a, b, n, 1e-4, 1e-5, "sampled forward vs reference");
    free(sel), free(yd), free(x), free(a), free(b);
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* End to end                                                                 */
/* ------------------------------------------------------------------------ */

/* --device cpu: this suite is the CPU's (label cpu), and `auto` would pick a
   GPU where there is one (tests/test_cuda_model.c trains on the GPU). */
static void test_trains_end_to_end(void **state) {
    (void)state;
    double val, unigram;
    char *dir = ts_ffn_train_e2e("--warmup-steps 20 --device cpu --ffn cnt:block=16", 150, &val, &unigram);
    assert_true(val < 0.7 * unigram);
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_create_checks),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_eval_matches_masked_dense),
        cmocka_unit_test(test_eval_uses_argmax_units),
        cmocka_unit_test(test_eval_follows_weight_changes),
        cmocka_unit_test(test_host_kernels_match),
        cmocka_unit_test(test_train_grad_units),
        cmocka_unit_test(test_train_grad_soft),
        cmocka_unit_test(test_straight_through),
        cmocka_unit_test(test_older_host),
        cmocka_unit_test(test_accumulation_and_misuse),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_trains_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
