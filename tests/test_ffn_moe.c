/*
 * tests/test_ffn_moe.c — the mixture-of-experts FFN plugin (plugins/ffn_moe)
 * on the CPU.
 *
 * Layers are built as the model builds them (fl_ffn_layer_create, through
 * tests/support/ffn_fixture: loaded by name, options parsed by the host's
 * parser) against a real CPU host. Specification:
 *   - the descriptor: options, defaults, help text; option errors (top_k >
 *     experts, negative coefficients, an unknown gate) fail with FL_EINVAL
 *     naming the option, from the parser or from create itself;
 *   - parameters: names, shapes, flags, inits; d_expert defaults to
 *     4 * d / experts (equal weights to the dense d_ff = 4d MLP), at least 1;
 *   - routing is a permutation undone exactly: with identity experts that
 *     each add a distinct marker, every token's output is exactly its own
 *     experts' outputs, mixed by its own gates; with random experts the
 *     output equals a naive double-precision per-token reference, for both
 *     gates (the noisy one with its noise rebuilt from fl_rng and the key);
 *   - capacity: on hand-made routings, the dropped assignments are exactly
 *     the ones past ceil(c * N * k / E) per expert in token order, and they
 *     contribute nothing;
 *   - the balance and z losses equal their closed forms on a hand-made
 *     routing, and for a zero router (all ties → expert 0: balance 1, z (ln E)²);
 *   - backward matches central finite differences (eps 1e-2, relative error
 *     < 1e-2) of loss = sum(y * R) + aux losses, for dx and every parameter
 *     including the router (and the noise projection), for top_k 1 and 2,
 *     both gates, renormalised or not, with capacity dropping; inputs are
 *     searched (deterministically) so that no top-k choice is within a safe
 *     margin of switching under a perturbation;
 *   - the same forward and gradients on a host whose ops table ends before
 *     bias_activation_grouped (per-expert add_bias and sum_rows instead);
 *   - determinism under a seed, gradient accumulation, stats formulas;
 *   - end to end: a tiny model with --ffn moe trains well below the unigram
 *     entropy.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>    /* tanh, exp, log, fabs, ceil */
#include <stdio.h>   /* snprintf, sscanf */
#include <stdlib.h>  /* calloc, free */
#include <string.h>  /* strcmp, strstr, memcpy */

#include "ffn_fixture.h"

#define MAXE 128

/* One MoE layer (t: built by fl_ffn_layer_create), its parameters and its
   configuration as the reference needs them. */
typedef struct fx {
    ts_ffn t;
    int d, E, k, de, act, noisy, renorm;
    double cap, bal, z;
    fl_param *rw, *nw, *fc_w, *fc_b, *proj_w, *proj_b;
} fx;

static float *vals(fl_param *p) { return (float *)p->value.data; }
static float *grads(fl_param *p) { return (float *)p->grad.data; }

static double aux(fx *f, const char *name) {
    fl_stat s[8];
    int n = f->t.L.ffn->aux_loss(f->t.L.layer, s, 8);
    for (int i = 0; i < n && i < 8; i++)
        if (!strcmp(s[i].name, name)) return s[i].value;
    fail_msg("no aux loss %s", name);
    return 0;
}

/* Whether layers are made on a host whose ops end before
   bias_activation_grouped (test_older_host). */
static int g_older_host;

/* Creates the layer from option text; returns the status (layer NULL on failure). */
static fl_status make_layer(fx *f, const char *opts, int d_model, fl_error *err) {
    memset(f, 0, sizeof *f);
    fl_status st = g_older_host ? ts_ffn_create_older_host(&f->t, "moe", opts, d_model,
                                                           offsetof(fl_ops, bias_activation_grouped), err)
                                : ts_ffn_create(&f->t, "moe", opts, d_model, err);
    if (st) return st;
    f->d = d_model;
    f->rw = ts_ffn_param(&f->t, "router.weight");
    f->nw = ts_ffn_param(&f->t, "router_noise.weight");
    f->fc_w = ts_ffn_param(&f->t, "experts.c_fc.weight");
    f->fc_b = ts_ffn_param(&f->t, "experts.c_fc.bias");
    f->proj_w = ts_ffn_param(&f->t, "experts.c_proj.weight");
    f->proj_b = ts_ffn_param(&f->t, "experts.c_proj.bias");
    f->E = (int)ts_ffn_stat(&f->t, "experts");
    f->k = (int)ts_ffn_stat(&f->t, "top_k");
    f->de = (int)ts_ffn_stat(&f->t, "d_expert");
    /* The rest of the configuration, as the reference needs it. */
    static const int acts[] = {FL_ACT_GELU, FL_ACT_RELU, FL_ACT_SILU};
    const fl_value *v = f->t.L.opts.values;
    f->act = acts[v[3].i];
    f->noisy = v[4].i == 1;
    f->bal = v[5].f;
    f->z = v[6].f;
    f->cap = v[7].f;
    f->renorm = v[8].present ? (int)v[8].i : f->k > 1;
    return FL_OK;
}

static void make_ok(fx *f, const char *opts, int d) {
    fl_error err = {0};
    ts_assert_ok(make_layer(f, opts, d, &err), &err);
}

/* ------------------------------------------------------------------------ */
/* Naive double-precision reference: every token on its own                   */
/* ------------------------------------------------------------------------ */

/* What the reference decides for each token. */
typedef struct route_ref {
    double H[MAXE], p[MAXE], lse;
    int e[MAXE];        /* chosen experts, best first */
    double g[MAXE];     /* gate weights */
    int kept[MAXE];     /* 0 when dropped by capacity */
    double gap;         /* k-th minus (k+1)-th gating logit (inf when k = E) */
} route_ref;

/* Gating logits, softmax, top-k (ties to the lower index) and gates of
   token x[d]; noise element (n, i) is fl_rng_normal(key, n * E + i). */
static void route_token(fx *f, const float *x, int64_t n, int train, uint64_t key, route_ref *r) {
    const int d = f->d, E = f->E, k = f->k;
    double m = -INFINITY, s = 0;
    for (int i = 0; i < E; i++) {
        double h = 0, raw = 0;
        for (int c = 0; c < d; c++) h += (double)x[c] * vals(f->rw)[c * E + i];
        if (f->noisy && train) {
            for (int c = 0; c < d; c++) raw += (double)x[c] * vals(f->nw)[c * E + i];
            double sp = raw > 20 ? raw : log1p(exp(raw));
            h += (double)fl_rng_normal(key, (uint64_t)(n * E + i)) * sp;
        }
        r->H[i] = h;
        if (h > m) m = h;
    }
    for (int i = 0; i < E; i++) s += exp(r->H[i] - m);
    r->lse = m + log(s);
    for (int i = 0; i < E; i++) r->p[i] = exp(r->H[i] - r->lse);
    int used[MAXE] = {0};
    double sum = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < E; i++)
            if (!used[i] && (best < 0 || r->p[i] > r->p[best])) best = i;
        used[best] = 1;
        r->e[j] = best;
        sum += r->p[best];
    }
    double next = -INFINITY;
    for (int i = 0; i < E; i++)
        if (!used[i] && r->H[i] > next) next = r->H[i];
    r->gap = r->H[r->e[k - 1]] - next;
    for (int j = 0; j < k; j++) r->g[j] = f->renorm ? r->p[r->e[j]] / sum : r->p[r->e[j]];
}

/* Routes all N tokens, applying the capacity in token order. Returns the
   number of dropped assignments; count[E] gets assignments before dropping. */
static int route_all(fx *f, const float *x, int N, int train, uint64_t key, route_ref *r, int *count) {
    int fill[MAXE] = {0}, dropped = 0;
    int64_t cap = f->cap > 0 ? (int64_t)ceil(f->cap * N * f->k / f->E) : -1;
    for (int i = 0; i < f->E; i++) count[i] = 0;
    for (int n = 0; n < N; n++) {
        route_token(f, x + n * f->d, n, train, key, &r[n]);
        for (int j = 0; j < f->k; j++) {
            int e = r[n].e[j];
            count[e]++;
            r[n].kept[j] = cap < 0 || fill[e] < cap;
            fill[e] += r[n].kept[j];
            dropped += !r[n].kept[j];
        }
    }
    return dropped;
}

/* expert e applied to x[d] → out[d] */
static void expert_ref(fx *f, int e, const float *x, double *out) {
    const int d = f->d, de = f->de;
    const float *w1 = vals(f->fc_w) + (int64_t)e * d * de, *b1 = vals(f->fc_b) + (int64_t)e * de;
    const float *w2 = vals(f->proj_w) + (int64_t)e * de * d, *b2 = vals(f->proj_b) + (int64_t)e * d;
    for (int c = 0; c < d; c++) out[c] = b2[c];
    for (int j = 0; j < de; j++) {
        double h = b1[j];
        for (int c = 0; c < d; c++) h += (double)x[c] * w1[c * de + j];
        double a = ts_act_ref(f->act, h);
        for (int c = 0; c < d; c++) out[c] += a * w2[j * d + c];
    }
}

/* y[N,d] = the layer, token by token. Returns dropped assignments. */
static int forward_ref(fx *f, const float *x, int N, int train, uint64_t key, double *y) {
    route_ref *r = calloc((size_t)N, sizeof *r);
    int count[MAXE];
    int dropped = route_all(f, x, N, train, key, r, count);
    double out[1024];
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < f->d; c++) y[n * f->d + c] = 0;
        for (int j = 0; j < f->k; j++) {
            if (!r[n].kept[j]) continue;
            expert_ref(f, r[n].e[j], x + n * f->d, out);
            for (int c = 0; c < f->d; c++) y[n * f->d + c] += r[n].g[j] * out[c];
        }
    }
    free(r);
    return dropped;
}

/* ------------------------------------------------------------------------ */
/* Plugin forward and loss                                                    */
/* ------------------------------------------------------------------------ */

static fl_ffn_ctx ctx_of(int B, int T, int train, uint64_t key) {
    fl_ffn_ctx c = {.train = train, .step = 0, .rng_key = key, .B = B, .T = T};
    return c;
}

static fl_tensor wrap(fx *f, float *data, int N) {
    int64_t shape[2] = {N, f->d};
    return fl_wrap(data, FL_F32, f->t.be->device, 2, shape);
}

static void plugin_forward(fx *f, const fl_ffn_ctx *c, float *x, float *y) {
    const int N = (int)(c->B * c->T);
    fl_tensor tx = wrap(f, x, N), ty = wrap(f, y, N);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->forward(f->t.L.layer, c, &tx, &ty, &err), &err);
}

static void plugin_backward(fx *f, const fl_ffn_ctx *c, const float *dy, float *dx) {
    const int N = (int)(c->B * c->T);
    fl_tensor tdy = wrap(f, (float *)dy, N), tdx = wrap(f, dx, N);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->backward(f->t.L.layer, c, &tdy, &tdx, &err), &err);
}

/* sum(y * R) + the aux losses the host would add (weight 1). */
static double loss_of(fx *f, const fl_ffn_ctx *c, float *x, const float *R) {
    const int N = (int)(c->B * c->T);
    float *y = malloc(sizeof(float) * (size_t)N * f->d);
    plugin_forward(f, c, x, y);
    double s = 0;
    for (int i = 0; i < N * f->d; i++) s += (double)y[i] * R[i];
    free(y);
    fl_stat a[8];
    int n = f->t.L.ffn->aux_loss(f->t.L.layer, a, 8);
    for (int i = 0; i < n; i++) s += a[i].value;
    return s;
}

/* Random matrices std 0.5, biases std 0.3, the router std `router_std`. */
static void redraw_params(fx *f, float router_std) {
    for (int i = 0; i < f->t.list.n; i++) {
        fl_param *p = &f->t.list.items[i]->pub;
        float std = p == f->rw ? router_std : p->value.ndim == 3 || p == f->nw ? 0.5f : 0.3f;
        f->t.be->ops.rng_normal(&p->value, fl_rng_key(99, p->name), 0, 0.0f, std);
    }
}

static void fill_normal(float *v, int n, uint64_t key, float std) {
    for (int i = 0; i < n; i++) v[i] = fl_rng_normal(key, (uint64_t)i) * std;
}

/* ------------------------------------------------------------------------ */
/* Descriptor, parameters, option errors                                      */
/* ------------------------------------------------------------------------ */

static void test_descriptor(void **state) {
    (void)state;
    fx f;
    make_ok(&f, NULL, 16);
    const fl_plugin_header *h = f.t.L.plugin.header;
    assert_string_equal(h->name, "moe");
    assert_int_equal(h->kind, FL_PLUGIN_FFN);
    static const char *names[] = {"experts", "top_k", "d_expert", "activation", "gate",
                                  "balance_loss", "z_loss", "capacity_factor", "renormalize"};
    static const char *defs[] = {"8", "1", NULL, "gelu", "softmax", "0.01", "0", "0", NULL};
    assert_int_equal(h->n_options, 9);
    for (int i = 0; i < 9; i++) {
        assert_string_equal(h->options[i].name, names[i]);
        if (defs[i]) assert_string_equal(h->options[i].def, defs[i]);
        else assert_null(h->options[i].def);
        assert_non_null(h->options[i].help);
        assert_true(strlen(h->options[i].help) > 10);
    }
    assert_string_equal(h->options[4].choices, "softmax|noisy_topk");
    assert_non_null(f.t.L.ffn->aux_loss);
    assert_non_null(f.t.L.ffn->stats);
    ts_ffn_free(&f.t);
}

static void check_param(fl_param *p, int ndim, int64_t d0, int64_t d1, int64_t d2, uint32_t flags) {
    assert_non_null(p);
    assert_int_equal(p->value.ndim, ndim);
    assert_int_equal(p->value.shape[0], d0);
    if (ndim > 1) assert_int_equal(p->value.shape[1], d1);
    if (ndim > 2) assert_int_equal(p->value.shape[2], d2);
    assert_int_equal(p->flags, flags);
}

static double rms(fl_param *p) {
    double s = 0;
    int64_t n = fl_numel(&p->value);
    for (int64_t i = 0; i < n; i++) s += (double)vals(p)[i] * vals(p)[i];
    return sqrt(s / (double)n);
}

static void test_parameters(void **state) {
    (void)state;
    fx f;
    make_ok(&f, NULL, 16); /* experts 8 → d_expert = 4 * 16 / 8 = 8 */
    assert_int_equal(f.E, 8);
    assert_int_equal(f.k, 1);
    assert_int_equal(f.de, 8);
    assert_int_equal(f.t.list.n, 5);
    const uint32_t X = FL_PARAM_EXPERT;
    check_param(f.rw, 2, 16, 8, 0, 0);
    check_param(f.fc_w, 3, 8, 16, 8, X | FL_PARAM_DECAY);
    check_param(f.fc_b, 2, 8, 8, 0, X);
    check_param(f.proj_w, 3, 8, 8, 16, X | FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT);
    check_param(f.proj_b, 2, 8, 16, 0, X);
    assert_null(f.nw);
    /* Equal weights to the dense d_ff = 4d MLP. */
    assert_int_equal(fl_numel(&f.fc_w->value), 16 * 4 * 16);
    assert_int_equal(fl_numel(&f.proj_w->value), 4 * 16 * 16);
    /* Inits: normal(0.02), residual output scaled by 1/sqrt(2 * 2 layers), biases 0. */
    assert_true(rms(f.rw) > 0.012 && rms(f.rw) < 0.028);
    assert_true(rms(f.fc_w) > 0.015 && rms(f.fc_w) < 0.025);
    assert_true(rms(f.proj_w) > 0.0075 && rms(f.proj_w) < 0.0125);
    assert_true(rms(f.fc_b) == 0 && rms(f.proj_b) == 0);
    ts_ffn_free(&f.t);

    make_ok(&f, "gate=noisy_topk,experts=4,top_k=2,d_expert=5", 6);
    assert_int_equal(f.t.list.n, 6);
    check_param(f.nw, 2, 6, 4, 0, 0);
    assert_true(rms(f.nw) == 0); /* zeros, as Shazeer et al. */
    check_param(f.fc_w, 3, 4, 6, 5, X | FL_PARAM_DECAY);
    assert_int_equal(f.renorm, 1);
    ts_ffn_free(&f.t);

    make_ok(&f, "experts=16", 2); /* 4 * 2 / 16 = 0 → at least 1 */
    assert_int_equal(f.de, 1);
    ts_ffn_free(&f.t);
}

static void expect_option_error(const char *opts, const char *sub) {
    ts_ffn_expect_option_error("moe", opts, 8, sub);
}

static void test_option_errors(void **state) {
    (void)state;
    expect_option_error("experts=2,top_k=3", "top_k");
    expect_option_error("top_k=9", "top_k"); /* default experts = 8 */
    expect_option_error("balance_loss=-0.1", "balance_loss");
    expect_option_error("z_loss=-1", "z_loss");
    expect_option_error("capacity_factor=-2", "capacity_factor");
    expect_option_error("gate=hash", "gate");
    expect_option_error("gate=hash", "softmax|noisy_topk");
    expect_option_error("experts=0", "experts");
    expect_option_error("d_expert=0", "d_expert");
    expect_option_error("activation=tanh", "gelu|relu|silu");
    expect_option_error("renormalize=maybe", "renormalize");
    expect_option_error("width=3", "unknown option 'width'");
}

/* create itself refuses values a careless host let through. create is called
   directly: fl_ffn_layer_create only passes values its parser accepted. */
static void test_create_checks(void **state) {
    (void)state;
    fx f;
    make_ok(&f, "experts=4", 8);
    fl_value bad[9];
    fl_error err = {0};
    void *layer = (void *)1;
    fl_param_scope scope = ts_ffn_scope(&f.t);
    fl_ffn_config cfg = {.d_model = 8, .n_layers = 2, .values = bad, .scope = &scope};
    struct { int opt; double v; const char *name; } cases[] = {
        {1, 5, "top_k"}, {0, 0, "experts"}, {5, -1, "balance_loss"}, {6, -1, "z_loss"},
        {7, -1, "capacity_factor"}, {4, 7, "gate"}, {3, 9, "activation"}, {2, 0, "d_expert"},
        {5, NAN, "balance_loss"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(bad, f.t.L.opts.values, sizeof bad);
        bad[cases[c].opt].present = 1;
        bad[cases[c].opt].i = (int64_t)(isnan(cases[c].v) ? 0 : cases[c].v);
        bad[cases[c].opt].f = cases[c].v;
        assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfg, &layer, &err), FL_EINVAL);
        assert_null(layer);
        if (!strstr(err.msg, cases[c].name)) fail_msg("'%s' does not name %s", err.msg, cases[c].name);
    }
    cfg.values = f.t.L.opts.values;
    cfg.d_model = 0;
    assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfg, &layer, &err), FL_EINVAL);
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Routing: permutation, reference forward, capacity                          */
/* ------------------------------------------------------------------------ */

/* Identity experts: W_fc[e] = I, b_fc = 10, relu, W_proj[e] = I, b_proj[e] =
   100 (e + 1). With |x| < 10 relu passes x + 10 unchanged, so each expert
   returns x + 10 + its marker exactly, and y_n = Σ_j g_nj (x_n + 10 +
   100 (e_nj + 1)) shows which experts each token got and with what weight. */
static void run_identity(const char *opts, int B, int T) {
    fx f;
    make_ok(&f, opts, 8);
    const int d = f.d, E = f.E, N = B * T;
    f.t.be->ops.rng_normal(&f.rw->value, 5, 0, 0.0f, 1.0f);
    f.t.be->ops.fill(&f.fc_w->value, 0.0f);
    f.t.be->ops.fill(&f.proj_w->value, 0.0f);
    f.t.be->ops.fill(&f.fc_b->value, 10.0f);
    for (int e = 0; e < E; e++)
        for (int c = 0; c < d; c++) {
            vals(f.fc_w)[(e * d + c) * d + c] = 1.0f;
            vals(f.proj_w)[(e * d + c) * d + c] = 1.0f;
            vals(f.proj_b)[e * d + c] = 100.0f * (float)(e + 1);
        }
    float *x = malloc(sizeof(float) * N * d), *y = malloc(sizeof(float) * N * d);
    float *want = malloc(sizeof(float) * N * d);
    fill_normal(x, N * d, 17, 1.0f);
    fl_ffn_ctx c = ctx_of(B, T, 1, 3);
    plugin_forward(&f, &c, x, y);
    route_ref *r = calloc((size_t)N, sizeof *r);
    int count[MAXE];
    route_all(&f, x, N, 1, 3, r, count);
    for (int n = 0; n < N; n++)
        for (int ch = 0; ch < d; ch++) {
            double s = 0;
            for (int j = 0; j < f.k; j++)
                s += r[n].g[j] * ((double)x[n * d + ch] + 10.0 + 100.0 * (r[n].e[j] + 1));
            want[n * d + ch] = (float)s;
        }
    char what[128];
    snprintf(what, sizeof what, "identity experts y (%s)", opts);
    ts_assert_close(y, want, (size_t)N * d, 2e-6, 1e-5, what);
    /* every expert got tokens, so the sort did real work */
    for (int e = 0; e < E; e++) assert_true(count[e] > 0);
    free(r);
    free(x);
    free(y);
    free(want);
    ts_ffn_free(&f.t);
}

static void test_identity_experts(void **state) {
    (void)state;
    run_identity("experts=4,top_k=1,d_expert=8,activation=relu", 4, 16);
    run_identity("experts=4,top_k=2,d_expert=8,activation=relu", 4, 16);
    run_identity("experts=5,top_k=3,d_expert=8,activation=relu,renormalize=false", 3, 7);
    run_identity("experts=4,top_k=2,d_expert=8,activation=relu,gate=noisy_topk", 4, 16);
}

/* Random experts against the per-token reference. */
static void run_reference(const char *opts, int train) {
    fx f;
    make_ok(&f, opts, 8);
    redraw_params(&f, 1.0f);
    const int B = 3, T = 11, N = B * T, d = f.d;
    float x[33 * 8], y[33 * 8], want[33 * 8];
    double yd[33 * 8];
    fill_normal(x, N * d, 11, 1.0f);
    fl_ffn_ctx c = ctx_of(B, T, train, 77);
    plugin_forward(&f, &c, x, y);
    int dropped = forward_ref(&f, x, N, train, 77, yd);
    for (int i = 0; i < N * d; i++) want[i] = (float)yd[i];
    char what[160];
    snprintf(what, sizeof what, "forward y (%s, %s)", opts, train ? "train" : "eval");
    ts_assert_close(y, want, (size_t)N * d, 1e-4, 1e-5, what);
    assert_true(ts_ffn_stat(&f.t, "tokens_dropped") == dropped);
    ts_ffn_free(&f.t);
}

static void test_forward_reference(void **state) {
    (void)state;
    run_reference("experts=4,top_k=1,d_expert=6", 1);
    run_reference("experts=4,top_k=2,d_expert=6", 1);
    run_reference("experts=6,top_k=2,d_expert=5,activation=silu,renormalize=false", 1);
    run_reference("experts=4,top_k=2,d_expert=6,capacity_factor=0.6", 1);
    run_reference("experts=4,top_k=2,d_expert=6,gate=noisy_topk", 1); /* noise from fl_rng, the key */
    run_reference("experts=4,top_k=2,d_expert=6,gate=noisy_topk", 0); /* no noise in eval */
}

/* One-hot inputs on a diagonal router route token n to target[n] (logit 8
   against 0) and, with k = 2, to second[n] (logit 4). */
static void hand_routing(fx *f, float *x, const int *target, const int *second, int N) {
    f->t.be->ops.fill(&f->rw->value, 0.0f);
    for (int e = 0; e < f->E; e++) vals(f->rw)[e * f->E + e] = 8.0f;
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < f->d; c++) x[n * f->d + c] = 0.0f;
        x[n * f->d + target[n]] = 1.0f;
        if (second) x[n * f->d + second[n]] = 0.5f;
    }
}

static int all_zero(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (v[i] != 0.0f) return 0;
    return 1;
}

static void test_capacity(void **state) {
    (void)state;
    /* k = 1, E = 4, N = 8, factor 1: capacity ceil(1 * 8 * 1 / 4) = 2. Expert 0
       is chosen by tokens 0, 1, 3, 5: it keeps 0 and 1 and drops 3 and 5. */
    fx f;
    make_ok(&f, "experts=4,top_k=1,d_expert=6,capacity_factor=1", 8);
    redraw_params(&f, 1.0f);
    const int target[8] = {0, 0, 1, 0, 2, 0, 3, 1};
    float x[64], y[64];
    double yd[64];
    hand_routing(&f, x, target, NULL, 8);
    fl_ffn_ctx c = ctx_of(2, 4, 1, 1);
    plugin_forward(&f, &c, x, y);
    assert_true(ts_ffn_stat(&f.t, "tokens_dropped") == 2);
    for (int n = 0; n < 8; n++) {
        int dropped = n == 3 || n == 5;
        if (dropped != all_zero(y + n * 8, 8)) fail_msg("token %d: dropped %d, output zero %d", n, dropped, !dropped);
    }
    forward_ref(&f, x, 8, 1, 1, yd);
    float want[64];
    for (int i = 0; i < 64; i++) want[i] = (float)yd[i];
    ts_assert_close(y, want, 64, 1e-4, 1e-5, "capacity k=1 y");
    /* Loads count assignments before dropping: 4, 2, 1, 1 of 8. */
    assert_true(fabs(ts_ffn_stat(&f.t, "load.0") - 0.5) < 1e-12 &&
                fabs(ts_ffn_stat(&f.t, "load.1") - 0.25) < 1e-12);
    assert_true(fabs(ts_ffn_stat(&f.t, "load.2") - 0.125) < 1e-12 &&
                fabs(ts_ffn_stat(&f.t, "load.3") - 0.125) < 1e-12);
    /* Dropless (the default) keeps everything. */
    ts_ffn_free(&f.t);
    make_ok(&f, "experts=4,top_k=1,d_expert=6", 8);
    redraw_params(&f, 1.0f);
    hand_routing(&f, x, target, NULL, 8);
    plugin_forward(&f, &c, x, y);
    assert_true(ts_ffn_stat(&f.t, "tokens_dropped") == 0);
    for (int n = 0; n < 8; n++) assert_false(all_zero(y + n * 8, 8));
    ts_ffn_free(&f.t);

    /* k = 2, factor 0.5: capacity ceil(0.5 * 8 * 2 / 4) = 2 per expert, first
       come first served over (token, rank) pairs in token order. First
       choices 0,0,1,0,2,0,3,1; second choices 1,1,0,2,1,3,2,0. Tokens 0 and
       1 fill experts 0 and 1; token 2 finds both full; token 3 keeps expert
       2 only, token 4 expert 2 only (1 is full), token 5 expert 3 only,
       token 6 expert 3 only (2 is full), token 7 neither: 8 dropped. */
    make_ok(&f, "experts=4,top_k=2,d_expert=6,capacity_factor=0.5", 8);
    redraw_params(&f, 1.0f);
    const int second[8] = {1, 1, 0, 2, 1, 3, 2, 0};
    hand_routing(&f, x, target, second, 8);
    plugin_forward(&f, &c, x, y);
    assert_true(ts_ffn_stat(&f.t, "tokens_dropped") == 8);
    route_ref r[8];
    int count[MAXE];
    assert_int_equal(route_all(&f, x, 8, 1, 1, r, count), 8);
    static const int kept[8][2] = {{1, 1}, {1, 1}, {0, 0}, {0, 1}, {1, 0}, {0, 1}, {1, 0}, {0, 0}};
    for (int n = 0; n < 8; n++)
        for (int j = 0; j < 2; j++) {
            assert_int_equal(r[n].e[j], j ? second[n] : target[n]);
            assert_int_equal(r[n].kept[j], kept[n][j]);
        }
    /* tokens 2 and 7 lost both experts: zero output */
    assert_true(all_zero(y + 2 * 8, 8) && all_zero(y + 7 * 8, 8));
    forward_ref(&f, x, 8, 1, 1, yd);
    for (int i = 0; i < 64; i++) want[i] = (float)yd[i];
    ts_assert_close(y, want, 64, 1e-4, 1e-5, "capacity k=2 y");
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Auxiliary losses                                                           */
/* ------------------------------------------------------------------------ */

static void test_balance_and_z_closed_form(void **state) {
    (void)state;
    fx f;
    make_ok(&f, "experts=4,top_k=1,d_expert=6,balance_loss=0.5,z_loss=0.25", 8);
    /* Router rows chosen by hand: one-hot x_n picks row target[n] of W, so
       token n's logits are exactly W[target[n], :]. */
    static const float W[4][4] = {{2, 0, 0, 1}, {0, 3, 1, 0}, {1, 1, 0, 0}, {0, 0.5f, 0, 2}};
    const int target[8] = {0, 0, 1, 3, 2, 0, 3, 1};
    float x[64], y[64];
    hand_routing(&f, x, target, NULL, 8);
    for (int i = 0; i < 4; i++)
        for (int e = 0; e < 4; e++) vals(f.rw)[i * 4 + e] = W[i][e];
    fl_ffn_ctx c = ctx_of(2, 4, 1, 1);
    plugin_forward(&f, &c, x, y);
    /* Closed form: P_i = mean_n softmax(W[t_n])_i; f_i = share of argmaxes
       (row 2 ties experts 0 and 1 → the lower index, 0). */
    double P[4] = {0}, fr[4] = {0}, z = 0;
    for (int n = 0; n < 8; n++) {
        const float *l = W[target[n]];
        double s = 0, best = -1;
        int arg = 0;
        for (int e = 0; e < 4; e++) s += exp(l[e]);
        for (int e = 0; e < 4; e++) {
            P[e] += exp(l[e]) / s / 8;
            if (l[e] > best) best = l[e], arg = e;
        }
        fr[arg] += 1.0 / 8;
        z += log(s) * log(s) / 8;
    }
    double bal = 0;
    for (int e = 0; e < 4; e++) bal += 4 * fr[e] * P[e];
    print_message("  balance %.6f (closed form %.6f), z %.6f (closed form %.6f)\n",
                  ts_ffn_stat(&f.t, "balance_loss"), bal, ts_ffn_stat(&f.t, "z_loss"), z);
    assert_true(fabs(ts_ffn_stat(&f.t, "balance_loss") - bal) < 1e-5 * bal);
    assert_true(fabs(aux(&f, "balance") - 0.5 * bal) < 1e-5 * bal);
    assert_true(fabs(ts_ffn_stat(&f.t, "z_loss") - z) < 1e-5 * z);
    assert_true(fabs(aux(&f, "z") - 0.25 * z) < 1e-5 * z);
    for (int e = 0; e < 4; e++) {
        char name[16];
        snprintf(name, sizeof name, "load.%d", e);
        assert_true(fabs(ts_ffn_stat(&f.t, name) - fr[e]) < 1e-12);
    }
    /* A zero router: uniform probabilities, every tie to expert 0, so
       balance = E * 1 * (1/E) = 1 and z = (ln E)^2. */
    f.t.be->ops.fill(&f.rw->value, 0.0f);
    plugin_forward(&f, &c, x, y);
    assert_true(fabs(ts_ffn_stat(&f.t, "balance_loss") - 1.0) < 1e-6);
    assert_true(fabs(ts_ffn_stat(&f.t, "z_loss") - log(4.0) * log(4.0)) < 1e-5);
    assert_true(ts_ffn_stat(&f.t, "load.0") == 1.0);
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Gradients                                                                  */
/* ------------------------------------------------------------------------ */

enum { GB = 2, GT = 5, GN = GB * GT, GD = 8 };

/* Numerical d loss / d v[i] for each of n values (central differences). */
static void numeric_grad(fx *f, const fl_ffn_ctx *c, float *v, int n, float *x, const float *R,
                         float *num, float eps) {
    for (int i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + eps;
        double lp = loss_of(f, c, x, R);
        v[i] = keep - eps;
        double lm = loss_of(f, c, x, R);
        v[i] = keep;
        num[i] = (float)((lp - lm) / (2.0 * eps));
    }
}

/* Searches input seeds until every token's k-th gating logit leads the next
   one by `margin` (and, with a capacity, no routing change is near): then
   no perturbation of size eps flips a top-k choice. */
static void pick_input(fx *f, float *x, int train, uint64_t key, double margin) {
    route_ref r[GN];
    int count[MAXE];
    for (uint64_t seed = 100; seed < 400; seed++) {
        fill_normal(x, GN * GD, seed, 1.0f);
        route_all(f, x, GN, train, key, r, count);
        double worst = INFINITY;
        for (int n = 0; n < GN; n++)
            if (r[n].gap < worst) worst = r[n].gap;
        if (worst > margin) {
            print_message("  input seed %llu: smallest top-k logit gap %.3f\n", (unsigned long long)seed, worst);
            return;
        }
    }
    fail_msg("no input with top-k gaps > %g", margin);
}

static void run_gradients(const char *opts) {
    fx f;
    make_ok(&f, opts, GD);
    redraw_params(&f, 1.0f);
    const fl_ffn_ctx c = ctx_of(GB, GT, 1, 4242);
    float x[GN * GD], R[GN * GD], dx[GN * GD], y[GN * GD];
    pick_input(&f, x, 1, 4242, 0.15);
    fill_normal(R, GN * GD, 12, 1.0f);
    for (int i = 0; i < GN * GD; i++) dx[i] = NAN; /* backward must overwrite */
    ts_ffn_zero_grads(&f.t);
    plugin_forward(&f, &c, x, y);
    plugin_backward(&f, &c, R, dx);
    print_message("  %s: %g assignments dropped\n", opts, ts_ffn_stat(&f.t, "tokens_dropped"));

    const float eps = 1e-2f;
    float *num = malloc(sizeof(float) * 4096);
    numeric_grad(&f, &c, x, GN * GD, x, R, num, eps);
    double e = ts_rel_error(dx, num, GN * GD), worst = e;
    print_message("  %-58s %-24s rel error %.2e\n", opts, "dx", e);
    if (!(e < 1e-2)) fail_msg("%s dx: relative error %.3g >= 1e-2", opts, e);
    for (int p = 0; p < f.t.list.n; p++) {
        fl_param *prm = &f.t.list.items[p]->pub;
        int n = (int)fl_numel(&prm->value);
        assert_true(n <= 4096);
        numeric_grad(&f, &c, vals(prm), n, x, R, num, eps);
        e = ts_rel_error(grads(prm), num, (size_t)n);
        print_message("  %-58s %-24s rel error %.2e\n", opts, prm->name + strlen(TS_FFN_PREFIX), e);
        if (!(e < 1e-2)) fail_msg("%s %s: relative error %.3g >= 1e-2", opts, prm->name, e);
        /* a gradient that is all zero would pass vacuously */
        double mx = 0;
        for (int i = 0; i < n; i++) mx = fmax(mx, fabs(grads(prm)[i]));
        assert_true(mx > 1e-4);
        if (e > worst) worst = e;
    }
    print_message("  %-58s worst relative error %.2e\n", opts, worst);
    free(num);
    ts_ffn_free(&f.t);
}

static void test_gradients_top1(void **state) {
    (void)state;
    run_gradients("experts=4,top_k=1,d_expert=6,balance_loss=0.3,z_loss=0.1");
    run_gradients("experts=3,top_k=1,d_expert=4,activation=silu,capacity_factor=0.9,z_loss=0.05");
}

static void test_gradients_top2(void **state) {
    (void)state;
    run_gradients("experts=4,top_k=2,d_expert=6,balance_loss=0.3,z_loss=0.1");
    run_gradients("experts=5,top_k=2,d_expert=4,renormalize=false,activation=silu,balance_loss=0.2");
    run_gradients("experts=4,top_k=2,d_expert=6,capacity_factor=0.75,z_loss=0.1");
}

static void test_gradients_noisy(void **state) {
    (void)state;
    run_gradients("experts=4,top_k=1,d_expert=6,gate=noisy_topk,balance_loss=0.3,z_loss=0.1");
    run_gradients("experts=4,top_k=2,d_expert=6,gate=noisy_topk,balance_loss=0.3,z_loss=0.1");
}

/* On a host whose ops lack bias_activation_grouped the experts' biases go
   per expert through add_bias and sum_rows, and the activation alone: the
   same forward and gradients. */
static void test_older_host(void **state) {
    (void)state;
    g_older_host = 1;
    run_reference("experts=4,top_k=2,d_expert=6", 1);
    run_reference("experts=6,top_k=2,d_expert=5,activation=silu,renormalize=false", 1);
    run_gradients("experts=4,top_k=1,d_expert=6,balance_loss=0.3,z_loss=0.1");
    run_gradients("experts=4,top_k=2,d_expert=6,capacity_factor=0.75,z_loss=0.1");
    g_older_host = 0;
}

/* Parameter gradients accumulate: a second backward doubles them. */
static void test_accumulation(void **state) {
    (void)state;
    fx f;
    make_ok(&f, "experts=4,top_k=2,d_expert=6,gate=noisy_topk,z_loss=0.1", GD);
    redraw_params(&f, 1.0f);
    const fl_ffn_ctx c = ctx_of(GB, GT, 1, 9);
    float x[GN * GD], R[GN * GD], dx[GN * GD], dx2[GN * GD], y[GN * GD];
    fill_normal(x, GN * GD, 3, 1.0f);
    fill_normal(R, GN * GD, 4, 1.0f);
    ts_ffn_zero_grads(&f.t);
    plugin_forward(&f, &c, x, y);
    plugin_backward(&f, &c, R, dx);
    float *once[8];
    for (int p = 0; p < f.t.list.n; p++) {
        fl_param *prm = &f.t.list.items[p]->pub;
        size_t n = (size_t)fl_numel(&prm->grad);
        once[p] = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) once[p][i] = 2 * grads(prm)[i];
    }
    plugin_backward(&f, &c, R, dx2);
    ts_assert_close(dx2, dx, GN * GD, 0, 0, "dx of a repeated backward");
    for (int p = 0; p < f.t.list.n; p++) {
        fl_param *prm = &f.t.list.items[p]->pub;
        ts_assert_close(grads(prm), once[p], (size_t)fl_numel(&prm->grad), 1e-5, 1e-7, prm->name);
        free(once[p]);
    }
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Determinism and statistics                                                 */
/* ------------------------------------------------------------------------ */

static void test_determinism(void **state) {
    (void)state;
    fx a, b;
    const char *opts = "experts=4,top_k=2,d_expert=6,gate=noisy_topk";
    make_ok(&a, opts, 8);
    make_ok(&b, opts, 8);
    /* Same seed, same parameters (noise weights made non-zero the same way). */
    for (int p = 0; p < a.t.list.n; p++)
        assert_memory_equal(a.t.list.items[p]->pub.value.data, b.t.list.items[p]->pub.value.data,
                            fl_nbytes(&a.t.list.items[p]->pub.value));
    a.t.be->ops.rng_normal(&a.nw->value, 8, 0, 0.0f, 1.0f);
    b.t.be->ops.rng_normal(&b.nw->value, 8, 0, 0.0f, 1.0f);
    enum { N = 64 };
    float x[N * 8], y1[N * 8], y2[N * 8], y3[N * 8], y4[N * 8];
    fill_normal(x, N * 8, 21, 1.0f);
    fl_ffn_ctx c = ctx_of(4, 16, 1, 555), other = ctx_of(4, 16, 1, 556);
    plugin_forward(&a, &c, x, y1);
    plugin_forward(&b, &c, x, y2);
    assert_memory_equal(y1, y2, sizeof y1); /* same key: same noise, bit for bit */
    plugin_forward(&a, &other, x, y3);
    assert_memory_not_equal(y1, y3, sizeof y1); /* another key: other noise */
    plugin_forward(&a, &c, x, y3);
    assert_memory_equal(y1, y3, sizeof y1);
    fl_ffn_ctx e1 = ctx_of(4, 16, 0, 555), e2 = ctx_of(4, 16, 0, 556);
    plugin_forward(&a, &e1, x, y3);
    plugin_forward(&a, &e2, x, y4);
    assert_memory_equal(y3, y4, sizeof y3); /* eval: no noise at all */
    ts_ffn_free(&a.t);
    ts_ffn_free(&b.t);
}

static void test_stats(void **state) {
    (void)state;
    fx f;
    make_ok(&f, "experts=6,top_k=2,d_expert=5", 8);
    enum { N = 40 };
    float x[N * 8], y[N * 8];
    fill_normal(x, N * 8, 2, 1.0f);
    f.t.be->ops.rng_normal(&f.rw->value, 3, 0, 0.0f, 1.0f);
    fl_ffn_ctx c = ctx_of(5, 8, 1, 1);
    plugin_forward(&f, &c, x, y);
    const double d = 8, E = 6, k = 2, de = 5;
    assert_true(ts_ffn_stat(&f.t, "active_params") == d * E + k * (2 * d * de + de + d));
    assert_true(ts_ffn_stat(&f.t, "flops_per_token") == 2 * d * E + k * (2 * d * de * 2));
    assert_true(ts_ffn_stat(&f.t, "experts") == 6 && ts_ffn_stat(&f.t, "top_k") == 2 &&
                ts_ffn_stat(&f.t, "d_expert") == 5);
    assert_true(ts_ffn_stat(&f.t, "tokens_dropped") == 0);
    double sum = 0;
    for (int e = 0; e < 6; e++) {
        char name[16];
        snprintf(name, sizeof name, "load.%d", e);
        sum += ts_ffn_stat(&f.t, name);
    }
    assert_true(fabs(sum - 1.0) < 1e-12);
    fl_stat s[2];
    assert_int_equal(f.t.L.ffn->stats(f.t.L.layer, s, 2), 8 + 6); /* reports how many it has */
    assert_string_equal(s[0].name, "active_params");
    ts_ffn_free(&f.t);

    make_ok(&f, "experts=100,gate=noisy_topk", 8); /* load.<i> capped at 64 */
    fl_stat all[200];
    assert_int_equal(f.t.L.ffn->stats(f.t.L.layer, all, 200), 8 + 64);
    assert_string_equal(all[8 + 63].name, "load.63");
    assert_true(ts_ffn_stat(&f.t, "active_params") == 8 * 200 + (2 * 8 * 1 + 1 + 8));
    assert_true(ts_ffn_stat(&f.t, "flops_per_token") == 2 * 8 * 200 + 2 * 8 * 1 * 2);
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* End to end                                                                 */
/* ------------------------------------------------------------------------ */

static void test_trains_end_to_end(void **state) {
    (void)state;
    double val, unigram;
    char *dir = ts_ffn_train_e2e("--warmup-steps 20 --ffn moe:experts=4,top_k=1", 150, &val, &unigram);
    assert_true(val < 0.7 * unigram);
    char path[4200];
    snprintf(path, sizeof path, "%s/" TS_FFN_E2E_RUN "/metrics.jsonl", dir);
    char *metrics = ts_read_file(path, NULL);
    assert_non_null(metrics);
    assert_non_null(strstr(metrics, "\"aux.balance\"")); /* the aux loss reached the log */
    free(metrics);
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_parameters),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_create_checks),
        cmocka_unit_test(test_identity_experts),
        cmocka_unit_test(test_forward_reference),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_balance_and_z_closed_form),
        cmocka_unit_test(test_gradients_top1),
        cmocka_unit_test(test_gradients_top2),
        cmocka_unit_test(test_gradients_noisy),
        cmocka_unit_test(test_older_host),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_trains_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
