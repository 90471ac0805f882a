/*
 * tests/test_ffn_pkm.c — the product-key memory plugin (plugins/ffn_pkm) on the CPU.
 *
 * Layers are built as training builds them (fl_ffn_layer_create, through
 * tests/support/ffn_fixture: loaded by name, options parsed by the host's
 * parser) on a real host.
 * A naive double-precision reference (ref_forward) scores *every* one of the
 * n_keys² full keys concat(K1[a], K2[b]) by brute force, sorts them and
 * takes the top knn, so it checks the product-key shortcut as well as the
 * arithmetic. Specification:
 *   - bad options (odd k_dim, knn > n_keys, dropout 1, unknown key, unknown
 *     norm) fail with FL_EINVAL naming the option, and no layer;
 *   - parameter names, shapes, flags, fixed value LR and XLM's inits;
 *   - the slots read are exactly the brute-force top knn, with the same
 *     scores (values set to one-hot rows make y show each slot's weight);
 *   - forward equals the reference for every norm, with and without the
 *     output projection, in train (batch statistics) and eval mode
 *     (running statistics), and with dropout (same counter-based masks);
 *   - backward matches double-sided finite differences of sum(y * R) for dx
 *     and every trained parameter (a difference whose perturbation changes
 *     the selected slots is not a derivative and is skipped; few are);
 *   - the values' gradient is nonzero only on rows read, the touched-row
 *     list is exactly that set, and one host AdamW step changes only those
 *     rows (and never the batchnorm running statistics);
 *   - forward is deterministic under a seed and a dropout key, and output
 *     and every gradient are bit-identical whatever the value-bag blocking
 *     (bag_chunk) and the thread count;
 *   - kernels=host (host ops only, the path a GPU runs) gives the output
 *     and gradients of kernels=auto (the plugin's own CPU value bag and
 *     sub-key gradient) to 1e-5 relative, and its gradients pass the
 *     finite differences;
 *   - stats: active_params and flops_per_token formulas, memory_usage and
 *     kl_uniform over the window of forwards;
 *   - batchnorm: running statistics follow PyTorch's rule, and eval outputs
 *     survive a checkpoint round trip of a whole model bit for bit;
 *   - end to end: `ffnlab train` with a PKM layer learns (validation loss
 *     < 0.7 x the unigram entropy).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>    /* exp, log, sqrt, fabs */
#include <omp.h>     /* omp_set_num_threads */
#include <stdio.h>   /* snprintf */
#include <stdlib.h>  /* calloc, free, qsort */
#include <string.h>  /* strcmp, strstr, memcpy */

#include "checkpoint.h"
#include "ffn_fixture.h"
#include "model.h"
#include "optim.h"

enum { NORM_BN = 0, NORM_LN = 1, NORM_NONE = 2 };
static const char *NORM_NAMES[] = {"batchnorm", "layernorm", "none"};

/* One layer's shape and options (the test's view of them). */
typedef struct cfg {
    int d, N, H, kd, n_keys, knn, v_dim, norm;
    double p_in, p_q, p_v;
} cfg;

/* One PKM layer (t: built by fl_ffn_layer_create), its configuration, the
   context its forwards run under, and its parameters. */
typedef struct fx {
    ts_ffn t;
    cfg c;
    fl_ffn_ctx ctx;
    fl_param *wq, *bq, *ng, *nb, *rm, *rv, *keys, *values, *wo;
} fx;

static float *vals(fl_param *p) { return (float *)p->value.data; }
static float *grads(fl_param *p) { return (float *)p->grad.data; }

/* Creates a layer from option text; returns the status (layer NULL on failure). */
static fl_status make_layer_opts(fx *f, const char *opts, int d_model, fl_error *err) {
    memset(f, 0, sizeof *f);
    return ts_ffn_create(&f->t, "pkm", opts, d_model, err);
}

/* Creates the layer c describes (failing the test if it cannot), train mode. */
static void make_layer(fx *f, const cfg *c, const char *extra) {
    char opts[512];
    snprintf(opts, sizeof opts,
             "heads=%d,k_dim=%d,n_keys=%d,knn=%d,v_dim=%d,query_norm=%s,input_dropout=%g,"
             "query_dropout=%g,value_dropout=%g%s%s",
             c->H, c->kd, c->n_keys, c->knn, c->v_dim, NORM_NAMES[c->norm], c->p_in, c->p_q, c->p_v,
             extra ? "," : "", extra ? extra : "");
    fl_error err = {0};
    ts_assert_ok(make_layer_opts(f, opts, c->d, &err), &err);
    f->c = *c;
    f->ctx = (fl_ffn_ctx){.train = 1, .step = 0, .rng_key = 77, .B = 1, .T = c->N};
    f->wq = ts_ffn_param(&f->t, "query.weight");
    f->bq = ts_ffn_param(&f->t, "query.bias");
    f->ng = ts_ffn_param(&f->t, "query_norm.weight");
    f->nb = ts_ffn_param(&f->t, "query_norm.bias");
    f->rm = ts_ffn_param(&f->t, "query_norm.running_mean");
    f->rv = ts_ffn_param(&f->t, "query_norm.running_var");
    f->keys = ts_ffn_param(&f->t, "keys");
    f->values = ts_ffn_param(&f->t, "values.weight");
    f->wo = ts_ffn_param(&f->t, "out_proj.weight");
    assert_non_null(f->wq);
    assert_non_null(f->bq);
    assert_non_null(f->keys);
    assert_non_null(f->values);
}

/* Re-draws the trained parameters larger than their inits so that scores
   spread out (fewer near-ties) and the norms' affine maps are not identity. */
static void redraw(fx *f, uint64_t seed) {
    const fl_ops *o = &f->t.be->ops;
    o->rng_normal(&f->wq->value, fl_rng_key(seed, "wq"), 0, 0.0f, 0.5f);
    o->rng_normal(&f->bq->value, fl_rng_key(seed, "bq"), 0, 0.0f, 0.3f);
    o->rng_normal(&f->keys->value, fl_rng_key(seed, "keys"), 0, 0.0f, 0.5f);
    o->rng_normal(&f->values->value, fl_rng_key(seed, "values"), 0, 0.0f, 0.5f);
    if (f->ng) o->rng_normal(&f->ng->value, fl_rng_key(seed, "ng"), 0, 1.0f, 0.3f);
    if (f->nb) o->rng_normal(&f->nb->value, fl_rng_key(seed, "nb"), 0, 0.0f, 0.3f);
    if (f->wo) o->rng_normal(&f->wo->value, fl_rng_key(seed, "wo"), 0, 0.0f, 0.5f);
}

static void fill_normal(float *x, int n, uint64_t key, float std) {
    for (int i = 0; i < n; i++) x[i] = std * fl_rng_normal(key, (uint64_t)i);
}

/* ------------------------------------------------------------------------ */
/* Naive reference                                                            */
/* ------------------------------------------------------------------------ */

/* What one reference forward computed. */
typedef struct ref {
    double *y;      /* [N,d] */
    int *slot;      /* [N,H,knn] selected slots, best first */
    double *score;  /* [N,H,knn] their scores */
    double *w;      /* [N,H,knn] softmax weights */
    double gap;     /* smallest (knn-th - (knn+1)-th) score gap over (n, h) */
    double *bmean, *bvar; /* [F] batch mean and biased variance of the query (batchnorm) */
} ref;

static void ref_alloc(ref *r, const cfg *c) {
    const int hk = c->N * c->H * c->knn, F = c->H * c->kd;
    r->y = calloc((size_t)c->N * c->d, sizeof *r->y);
    r->slot = calloc((size_t)hk, sizeof *r->slot);
    r->score = calloc((size_t)hk, sizeof *r->score);
    r->w = calloc((size_t)hk, sizeof *r->w);
    r->bmean = calloc((size_t)F, sizeof *r->bmean);
    r->bvar = calloc((size_t)F, sizeof *r->bvar);
}

static void ref_free(ref *r) {
    free(r->y);
    free(r->slot);
    free(r->score);
    free(r->w);
    free(r->bmean);
    free(r->bvar);
}

/* The dropout mask the plugin documents: element i of a stream is dropped
   when fl_rng_uniform(fl_rng_key(ctx key, "pkm.<which>_dropout"), i) < p. */
static double keep(const fl_ffn_ctx *ctx, const char *which, double p, int64_t i) {
    if (!ctx->train || p <= 0) return 1.0;
    uint64_t key = fl_rng_key(ctx->rng_key, which);
    return fl_rng_uniform(key, (uint64_t)i) < (float)p ? 0.0 : 1.0 / (1.0 - p);
}

static const double *g_sort_scores;
static int by_score_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    double si = g_sort_scores[i], sj = g_sort_scores[j];
    if (si > sj) return -1;
    if (si < sj) return 1;
    return (i > j) - (i < j);
}

/* q[N,F] = norm(dropout(x) · Wq + bq), then query dropout. */
static void ref_query(fx *f, const float *x, double *q, ref *r) {
    const cfg *c = &f->c;
    const int F = c->H * c->kd, N = c->N, d = c->d;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < F; j++) {
            double s = vals(f->bq)[j];
            for (int i = 0; i < d; i++)
                s += x[n * d + i] * keep(&f->ctx, "pkm.input_dropout", c->p_in, n * d + i) * vals(f->wq)[i * F + j];
            q[n * F + j] = s;
        }
    if (c->norm == NORM_BN) {
        for (int j = 0; j < F; j++) {
            double mu = 0, var = 0;
            for (int n = 0; n < N; n++) mu += q[n * F + j];
            mu /= N;
            for (int n = 0; n < N; n++) var += (q[n * F + j] - mu) * (q[n * F + j] - mu);
            var /= N;
            r->bmean[j] = mu;
            r->bvar[j] = var;
            if (!f->ctx.train) {
                mu = vals(f->rm)[j];
                var = vals(f->rv)[j];
            }
            for (int n = 0; n < N; n++)
                q[n * F + j] = (q[n * F + j] - mu) / sqrt(var + 1e-5) * vals(f->ng)[j] + vals(f->nb)[j];
        }
    } else if (c->norm == NORM_LN) {
        for (int n = 0; n < N; n++)
            for (int h = 0; h < c->H; h++) {
                double *g = q + n * F + h * c->kd, mu = 0, var = 0;
                for (int i = 0; i < c->kd; i++) mu += g[i];
                mu /= c->kd;
                for (int i = 0; i < c->kd; i++) var += (g[i] - mu) * (g[i] - mu);
                var /= c->kd;
                for (int i = 0; i < c->kd; i++)
                    g[i] = (g[i] - mu) / sqrt(var + 1e-5) * vals(f->ng)[h * c->kd + i] + vals(f->nb)[h * c->kd + i];
            }
    }
    for (int i = 0; i < N * F; i++) q[i] *= keep(&f->ctx, "pkm.query_dropout", c->p_q, i);
}

/* Brute force over all n_keys² full keys of every (token, head). */
static void ref_forward(fx *f, const float *x, ref *r) {
    const cfg *c = &f->c;
    const int F = c->H * c->kd, N = c->N, half = c->kd / 2, S = c->n_keys * c->n_keys;
    double *q = calloc((size_t)N * F, sizeof *q), *sc = calloc((size_t)S, sizeof *sc);
    double *out = calloc((size_t)N * c->v_dim, sizeof *out);
    int *order = calloc((size_t)S, sizeof *order);
    ref_query(f, x, q, r);
    const float *K = vals(f->keys), *V = vals(f->values);
    r->gap = INFINITY;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < c->H; h++) {
            const double *q1 = q + n * F + h * c->kd, *q2 = q1 + half;
            const float *K1 = K + (size_t)(2 * h) * c->n_keys * half, *K2 = K1 + (size_t)c->n_keys * half;
            for (int a = 0; a < c->n_keys; a++)
                for (int b = 0; b < c->n_keys; b++) {
                    double s = 0; /* q · concat(K1[a], K2[b]) */
                    for (int i = 0; i < half; i++) s += q1[i] * K1[a * half + i] + q2[i] * K2[b * half + i];
                    sc[a * c->n_keys + b] = s;
                }
            for (int s = 0; s < S; s++) order[s] = s;
            g_sort_scores = sc;
            qsort(order, (size_t)S, sizeof *order, by_score_desc);
            if (c->knn < S && sc[order[c->knn - 1]] - sc[order[c->knn]] < r->gap)
                r->gap = sc[order[c->knn - 1]] - sc[order[c->knn]];
            const int o = (n * c->H + h) * c->knn;
            double z = 0;
            for (int j = 0; j < c->knn; j++) z += exp(sc[order[j]] - sc[order[0]]);
            for (int j = 0; j < c->knn; j++) {
                r->slot[o + j] = order[j];
                r->score[o + j] = sc[order[j]];
                r->w[o + j] = exp(sc[order[j]] - sc[order[0]]) / z;
                for (int i = 0; i < c->v_dim; i++) out[n * c->v_dim + i] += r->w[o + j] * V[(size_t)order[j] * c->v_dim + i];
            }
        }
    for (int i = 0; i < N * c->v_dim; i++) out[i] *= keep(&f->ctx, "pkm.value_dropout", c->p_v, i);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < c->d; k++) {
            if (!f->wo) {
                r->y[n * c->d + k] = out[n * c->v_dim + k];
                continue;
            }
            double s = 0;
            for (int i = 0; i < c->v_dim; i++) s += out[n * c->v_dim + i] * vals(f->wo)[i * c->d + k];
            r->y[n * c->d + k] = s;
        }
    free(q);
    free(sc);
    free(out);
    free(order);
}

/* 1 if two reference forwards selected different slot sets anywhere. */
static int selection_differs(const cfg *c, const ref *a, const ref *b) {
    const int n = c->N * c->H * c->knn;
    for (int i = 0; i < n; i++)
        if (a->slot[i] != b->slot[i]) return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Plugin calls                                                               */
/* ------------------------------------------------------------------------ */

static fl_tensor wrap2(fx *f, float *data, int rows, int cols) {
    int64_t shape[2] = {rows, cols};
    return fl_wrap(data, FL_F32, f->t.be->device, 2, shape);
}

static void plugin_forward(fx *f, float *x, float *y) {
    fl_tensor tx = wrap2(f, x, f->c.N, f->c.d), ty = wrap2(f, y, f->c.N, f->c.d);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->forward(f->t.L.layer, &f->ctx, &tx, &ty, &err), &err);
}

static void plugin_backward(fx *f, const float *dy, float *dx) {
    fl_tensor tdy = wrap2(f, (float *)dy, f->c.N, f->c.d), tdx = wrap2(f, dx, f->c.N, f->c.d);
    fl_error err = {0};
    ts_assert_ok(f->t.L.ffn->backward(f->t.L.layer, &f->ctx, &tdy, &tdx, &err), &err);
}

static double loss_of(fx *f, float *x, const float *R) {
    float *y = calloc((size_t)f->c.N * f->c.d, sizeof *y);
    plugin_forward(f, x, y);
    double s = 0;
    for (int i = 0; i < f->c.N * f->c.d; i++) s += (double)y[i] * R[i];
    free(y);
    return s;
}

/* Forward of the plugin against the reference, and the reference's output. */
static void check_forward(fx *f, float *x, ref *r, const char *what) {
    const int n = f->c.N * f->c.d;
    float *y = calloc((size_t)n, sizeof *y), *yr = calloc((size_t)n, sizeof *yr);
    plugin_forward(f, x, y);
    ref_forward(f, x, r);
    for (int i = 0; i < n; i++) yr[i] = (float)r->y[i];
    ts_assert_close(y, yr, (size_t)n, 2e-4, 2e-5, what);
    free(y);
    free(yr);
}

/* ------------------------------------------------------------------------ */
/* Options and parameters                                                     */
/* ------------------------------------------------------------------------ */

static void expect_option_error(const char *opts, const char *sub) {
    ts_ffn_expect_option_error("pkm", opts, 16, sub);
}

static void test_option_errors(void **state) {
    (void)state;
    expect_option_error("k_dim=7", "k_dim");
    expect_option_error("n_keys=8,knn=9", "knn");
    expect_option_error("n_keys=8,knn=9", "n_keys = 8");
    expect_option_error("width=3", "unknown option 'width'");
    expect_option_error("query_norm=rms", "batchnorm|layernorm|none");
    expect_option_error("n_keys=8,knn=4,value_dropout=1", "value_dropout");
    expect_option_error("n_keys=8,knn=4,query_dropout=1.5", "query_dropout");
    expect_option_error("heads=0", "heads");
}

/* create itself refuses values a careless host let through. create is called
   directly: fl_ffn_layer_create only passes values its parser accepted. */
static void test_create_checks(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    ts_assert_ok(make_layer_opts(&f, "n_keys=8,knn=4,k_dim=8", 16, &err), &err);
    fl_value bad[16];
    assert_true(f.t.L.opts.n <= 16);
    memcpy(bad, f.t.L.opts.values, (size_t)f.t.L.opts.n * sizeof *bad);
    bad[1].i = 5; /* k_dim odd */
    fl_param_scope scope = ts_ffn_scope(&f.t);
    fl_ffn_config cfgv = {.d_model = 16, .n_layers = 2, .values = bad, .scope = &scope};
    void *layer = (void *)1;
    assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfgv, &layer, &err), FL_EINVAL);
    assert_null(layer);
    assert_non_null(strstr(err.msg, "k_dim"));
    cfgv.values = f.t.L.opts.values;
    cfgv.d_model = 0;
    assert_int_equal(f.t.L.ffn->create(&f.t.host, &cfgv, &layer, &err), FL_EINVAL);
    ts_ffn_free(&f.t);
}

static void check_shape(fl_param *p, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    assert_non_null(p);
    const int64_t want[4] = {d0, d1, d2, d3};
    assert_int_equal(p->value.ndim, ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(p->value.shape[i], want[i]);
}

static void test_params(void **state) {
    (void)state;
    fx f;
    cfg c = {.d = 16, .N = 4, .H = 3, .kd = 12, .n_keys = 10, .knn = 4, .v_dim = 24, .norm = NORM_BN};
    make_layer(&f, &c, NULL);
    assert_int_equal(f.t.list.n, 9);
    const int F = 36, half = 6, S = 100;
    check_shape(f.wq, 2, 16, F, 0, 0);
    check_shape(f.bq, 1, F, 0, 0, 0);
    check_shape(f.ng, 1, F, 0, 0, 0);
    check_shape(f.nb, 1, F, 0, 0, 0);
    check_shape(f.rm, 1, F, 0, 0, 0);
    check_shape(f.rv, 1, F, 0, 0, 0);
    check_shape(f.keys, 4, 3, 2, 10, half);
    check_shape(f.values, 2, S, 24, 0, 0);
    check_shape(f.wo, 2, 24, 16, 0, 0);
    assert_int_equal(f.wq->flags, FL_PARAM_DECAY);
    assert_int_equal(f.bq->flags, 0);
    assert_int_equal(f.keys->flags, 0);
    assert_int_equal(f.values->flags, FL_PARAM_SPARSE_ROWS);
    assert_int_equal(f.rm->flags, FL_PARAM_SPARSE_ROWS); /* never touched: never optimized */
    assert_int_equal(f.wo->flags, FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT);
    assert_true(fl_param_impl_of(f.values)->lr_fixed == 1e-3f);
    assert_true(fl_param_impl_of(f.keys)->lr_fixed == 0.0f);
    /* inits: keys uniform(±1/sqrt(half)) as XLM; values normal(0, v_dim^-1/2);
       running mean 0, running var 1, norm weight 1 */
    double bound = 1.0 / sqrt(half), ss = 0, mx = 0;
    for (int i = 0; i < 3 * 2 * 10 * half; i++) {
        double v = vals(f.keys)[i];
        ss += v * v;
        if (fabs(v) > mx) mx = fabs(v);
    }
    assert_true(mx <= bound);
    assert_true(fabs(sqrt(ss / (360.0)) - bound / sqrt(3.0)) < 0.2 * bound);
    ss = 0;
    for (int i = 0; i < S * 24; i++) ss += (double)vals(f.values)[i] * vals(f.values)[i];
    assert_true(fabs(sqrt(ss / (S * 24)) - 1.0 / sqrt(24.0)) < 0.1 / sqrt(24.0));
    for (int i = 0; i < F; i++) {
        assert_true(vals(f.rm)[i] == 0.0f && vals(f.rv)[i] == 1.0f && vals(f.ng)[i] == 1.0f);
        assert_true(vals(f.nb)[i] == 0.0f && vals(f.bq)[i] == 0.0f);
    }
    ts_ffn_free(&f.t);

    /* v_dim = d: no projection; layernorm: no running statistics; none: no norm */
    c.v_dim = 16;
    c.norm = NORM_LN;
    make_layer(&f, &c, "value_lr=0");
    assert_int_equal(f.t.list.n, 6);
    assert_null(f.wo);
    assert_null(f.rm);
    assert_true(fl_param_impl_of(f.values)->lr_fixed == 0.0f); /* follows the schedule */
    ts_ffn_free(&f.t);
    c.norm = NORM_NONE;
    make_layer(&f, &c, NULL);
    assert_int_equal(f.t.list.n, 4);
    assert_null(f.ng);
    ts_ffn_free(&f.t);

    /* the defaults: XLM's 4 heads, k_dim 256, 512² slots, v_dim = d */
    fl_error err = {0};
    ts_assert_ok(make_layer_opts(&f, NULL, 8, &err), &err);
    check_shape(ts_ffn_param(&f.t, "keys"), 4, 4, 2, 512, 128);
    check_shape(ts_ffn_param(&f.t, "values.weight"), 2, 512 * 512, 8, 0, 0);
    assert_non_null(ts_ffn_param(&f.t, "query_norm.running_var")); /* batchnorm by default */
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Selection and forward                                                      */
/* ------------------------------------------------------------------------ */

/* With one head and values V[s] = onehot(s) (v_dim = d = n_keys²), y[n, s] is
   the softmax weight of slot s: the slots with y > 0 must be the brute-force
   top knn, and log-weight differences the score differences. */
static void check_selection(int n_keys, int knn, int kd, uint64_t seed) {
    const int S = n_keys * n_keys;
    cfg c = {.d = S, .N = 7, .H = 1, .kd = kd, .n_keys = n_keys, .knn = knn, .v_dim = S, .norm = NORM_NONE};
    fx f;
    make_layer(&f, &c, NULL);
    float *x = calloc((size_t)c.N * S, sizeof *x), *y = calloc((size_t)c.N * S, sizeof *y);
    ref r;
    ref_alloc(&r, &c);
    /* draw until the knn-th and (knn+1)-th scores are clearly apart */
    for (uint64_t s = seed;; s++) {
        redraw(&f, s);
        fill_normal(x, c.N * S, s * 31 + 1, 2.0f / sqrtf((float)S)); /* q of order 1 */
        ref_forward(&f, x, &r);
        if (r.gap > 1e-3) break;
    }
    f.t.be->ops.fill(&f.values->value, 0.0f);
    for (int s = 0; s < S; s++) vals(f.values)[(size_t)s * S + s] = 1.0f;
    plugin_forward(&f, x, y);
    int checked = 0;
    for (int n = 0; n < c.N; n++) {
        int nz = 0;
        for (int s = 0; s < S; s++) nz += y[n * S + s] != 0.0f;
        assert_int_equal(nz, knn);
        for (int j = 0; j < knn; j++) {
            const int o = n * knn + j, s = r.slot[o];
            if (!(y[n * S + s] > 0)) fail_msg("token %d: brute-force slot %d (rank %d) not read", n, s, j);
            double got = log(y[n * S + s]) - log(y[n * S + r.slot[n * knn]]);
            double want = r.score[o] - r.score[n * knn];
            if (fabs(got - want) > 1e-4 * (1 + fabs(want)))
                fail_msg("token %d slot %d: score difference %.6g, brute force %.6g", n, s, got, want);
            checked++;
        }
    }
    print_message("  n_keys %2d knn %2d k_dim %2d: %d selected slots equal brute force (gap %.3g)\n",
                  n_keys, knn, kd, checked, r.gap);
    ref_free(&r);
    free(x);
    free(y);
    ts_ffn_free(&f.t);
}

static void test_selection_is_brute_force_topk(void **state) {
    (void)state;
    check_selection(8, 5, 8, 1);
    check_selection(6, 6, 4, 2);   /* knn = n_keys */
    check_selection(12, 9, 16, 3);
    check_selection(5, 1, 2, 4);   /* knn = 1, half = 1 */
    check_selection(16, 16, 6, 5); /* knn = n_keys, 256 slots */
}

static void run_forward(const cfg *c, int train, const char *label) {
    fx f;
    make_layer(&f, c, NULL);
    f.ctx.train = train;
    float *x = calloc((size_t)c->N * c->d, sizeof *x);
    ref r;
    ref_alloc(&r, c);
    redraw(&f, 9);
    if (f.rm) { /* eval mode reads these */
        f.t.be->ops.rng_normal(&f.rm->value, 5, 0, 0.0f, 0.5f);
        f.t.be->ops.rng_uniform(&f.rv->value, 6, 0, 0.5f, 2.0f);
    }
    fill_normal(x, c->N * c->d, 21, 1.0f);
    check_forward(&f, x, &r, label);
    print_message("  forward %-46s matches (gap %.3g)\n", label, r.gap);
    ref_free(&r);
    free(x);
    ts_ffn_free(&f.t);
}

static void test_forward_matches_reference(void **state) {
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        cfg c = {.d = 10, .N = 9, .H = 2, .kd = 8, .n_keys = 7, .knn = 4, .v_dim = 10, .norm = norm};
        char label[96];
        snprintf(label, sizeof label, "%s train", NORM_NAMES[norm]);
        run_forward(&c, 1, label);
        snprintf(label, sizeof label, "%s eval", NORM_NAMES[norm]);
        run_forward(&c, 0, label);
        c.v_dim = 6;
        snprintf(label, sizeof label, "%s out_proj", NORM_NAMES[norm]);
        run_forward(&c, 1, label);
        c.p_in = 0.2;
        c.p_q = 0.3;
        c.p_v = 0.25;
        snprintf(label, sizeof label, "%s dropout", NORM_NAMES[norm]);
        run_forward(&c, 1, label);
        snprintf(label, sizeof label, "%s dropout, eval (none applied)", NORM_NAMES[norm]);
        run_forward(&c, 0, label);
    }
    /* the study's head layout at a small scale: 4 heads, many tokens */
    cfg big = {.d = 16, .N = 40, .H = 4, .kd = 32, .n_keys = 14, .knn = 6, .v_dim = 16, .norm = NORM_BN};
    run_forward(&big, 1, "4 heads, 40 tokens, batchnorm");
}

/* ------------------------------------------------------------------------ */
/* Gradients                                                                  */
/* ------------------------------------------------------------------------ */

/* Numerical d loss / d v[i] into num; a difference whose +eps or -eps
   forward selects other slots than the unperturbed one is not a derivative:
   num[i] = ana[i] there (nothing compared). Returns how many were skipped. */
static int numeric_grad(fx *f, float *v, int n, float *x, const float *R, float *num,
                        const float *ana, float eps) {
    int skipped = 0;
    ref base, moved;
    ref_alloc(&base, &f->c);
    ref_alloc(&moved, &f->c);
    ref_forward(f, x, &base);
    for (int i = 0; i < n; i++) {
        float keep_v = v[i];
        v[i] = keep_v + eps;
        double lp = loss_of(f, x, R);
        ref_forward(f, x, &moved);
        int changed = selection_differs(&f->c, &base, &moved);
        v[i] = keep_v - eps;
        double lm = loss_of(f, x, R);
        ref_forward(f, x, &moved);
        changed |= selection_differs(&f->c, &base, &moved);
        v[i] = keep_v;
        num[i] = changed ? ana[i] : (float)((lp - lm) / (2.0 * eps));
        skipped += changed;
    }
    ref_free(&base);
    ref_free(&moved);
    return skipped;
}

static void check_one_grad(fx *f, const char *label, const char *name, float *v, int n, float *x,
                           const float *R, const float *ana, int *skipped, int *total) {
    float *num = calloc((size_t)n, sizeof *num);
    *skipped += numeric_grad(f, v, n, x, R, num, ana, 3e-3f);
    *total += n;
    double e = ts_rel_error(ana, num, (size_t)n), big = 0;
    for (int i = 0; i < n; i++) big = fmax(big, fmax(fabs(num[i]), fabs(ana[i])));
    if (big < 1e-4) { /* a gradient that is zero (the bias before batchnorm) */
        print_message("  %-28s %-26s zero (max |grad| %.1e)\n", label, name, big);
        free(num);
        return;
    }
    print_message("  %-28s %-26s rel error %.2e\n", label, name, e);
    if (!(e < 1e-2)) fail_msg("%s %s: relative error %.3g >= 1e-2", label, name, e);
    free(num);
}

static void run_gradients(const cfg *c, const char *label, const char *extra) {
    fx f;
    make_layer(&f, c, extra);
    const int nx = c->N * c->d;
    float *x = calloc((size_t)nx, sizeof *x), *R = calloc((size_t)nx, sizeof *R);
    float *dx = calloc((size_t)nx, sizeof *dx), *y = calloc((size_t)nx, sizeof *y);
    redraw(&f, 3);
    fill_normal(x, nx, 41, 1.0f);
    fill_normal(R, nx, 42, 1.0f);
    for (int i = 0; i < nx; i++) dx[i] = NAN; /* backward must overwrite */
    ts_ffn_zero_grads(&f.t);
    plugin_forward(&f, x, y);
    plugin_backward(&f, R, dx);
    /* copies: the finite differences run more backward-free forwards */
    int skipped = 0, total = 0;
    check_one_grad(&f, label, "dx", x, nx, x, R, dx, &skipped, &total);
    for (int p = 0; p < f.t.list.n; p++) {
        fl_param *prm = &f.t.list.items[p]->pub;
        if (prm == f.rm || prm == f.rv) continue; /* statistics, not trained */
        const int n = (int)fl_numel(&prm->value);
        float *ana = malloc((size_t)n * sizeof *ana);
        memcpy(ana, grads(prm), (size_t)n * sizeof *ana);
        check_one_grad(&f, label, prm->name + strlen(TS_FFN_PREFIX), vals(prm), n, x, R, ana, &skipped,
                       &total);
        free(ana);
    }
    print_message("  %-28s %d of %d differences skipped (selection changed)\n", label, skipped, total);
    assert_true(skipped * 10 < total);
    if (f.rm)
        for (int i = 0; i < (int)fl_numel(&f.rm->grad); i++)
            assert_true(grads(f.rm)[i] == 0.0f && grads(f.rv)[i] == 0.0f);
    free(x);
    free(R);
    free(dx);
    free(y);
    ts_ffn_free(&f.t);
}

static void test_gradients(void **state) {
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        cfg c = {.d = 6, .N = 5, .H = 2, .kd = 6, .n_keys = 5, .knn = 3, .v_dim = 6, .norm = norm};
        char label[64];
        snprintf(label, sizeof label, "%s", NORM_NAMES[norm]);
        run_gradients(&c, label, NULL);
        c.v_dim = 4;
        snprintf(label, sizeof label, "%s out_proj", NORM_NAMES[norm]);
        run_gradients(&c, label, NULL);
    }
    cfg c = {.d = 6, .N = 5, .H = 2, .kd = 6, .n_keys = 5, .knn = 3, .v_dim = 4, .norm = NORM_BN,
             .p_in = 0.2, .p_q = 0.2, .p_v = 0.2};
    run_gradients(&c, "batchnorm dropout", NULL);
    c.p_in = c.p_q = c.p_v = 0;
    run_gradients(&c, "batchnorm bag_chunk=2", "bag_chunk=2");
}

/* Parameter gradients accumulate: a second backward doubles them. */
static void test_accumulation(void **state) {
    (void)state;
    cfg c = {.d = 8, .N = 6, .H = 2, .kd = 8, .n_keys = 6, .knn = 3, .v_dim = 8, .norm = NORM_LN};
    fx f;
    make_layer(&f, &c, NULL);
    redraw(&f, 4);
    float x[48], R[48], y[48], dx[48];
    fill_normal(x, 48, 1, 1.0f);
    fill_normal(R, 48, 2, 1.0f);
    ts_ffn_zero_grads(&f.t);
    plugin_forward(&f, x, y);
    plugin_backward(&f, R, dx);
    fl_param *ps[] = {f.wq, f.keys, f.values, f.ng};
    float *once[4];
    for (int p = 0; p < 4; p++) {
        const size_t n = (size_t)fl_numel(&ps[p]->grad);
        once[p] = malloc(n * sizeof *once[p]);
        for (size_t i = 0; i < n; i++) once[p][i] = 2 * grads(ps[p])[i];
    }
    plugin_backward(&f, R, dx);
    for (int p = 0; p < 4; p++) {
        ts_assert_close(grads(ps[p]), once[p], (size_t)fl_numel(&ps[p]->grad), 1e-5, 1e-7, ps[p]->name);
        free(once[p]);
    }
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Sparse values: gradient rows, touched rows, the optimizer                  */
/* ------------------------------------------------------------------------ */

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static void test_values_sparse(void **state) {
    (void)state;
    cfg c = {.d = 8, .N = 6, .H = 2, .kd = 8, .n_keys = 12, .knn = 4, .v_dim = 8, .norm = NORM_BN};
    fx f;
    make_layer(&f, &c, NULL);
    const int S = 144, D = 8, nx = c.N * c.d;
    float x[48], R[48], y[48], dx[48];
    fill_normal(x, nx, 5, 1.0f);
    fill_normal(R, nx, 6, 1.0f);
    ref r;
    ref_alloc(&r, &c);
    char *read = calloc(S, 1);
    int n_read = 0;
    fl_error err = {0};
    fl_adamw opt = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    float *before = malloc((size_t)S * D * sizeof *before);
    float rm0[16], rv0[16];
    memcpy(rm0, vals(f.rm), sizeof rm0);
    memcpy(rv0, vals(f.rv), sizeof rv0);
    for (int step = 1; step <= 2; step++) {
        ref_forward(&f, x, &r); /* the slots this step reads */
        memset(read, 0, S);
        n_read = 0;
        for (int i = 0; i < c.N * c.H * c.knn; i++) {
            n_read += !read[r.slot[i]];
            read[r.slot[i]] = 1;
        }
        fl_zero_grad(f.t.be, &f.t.list);
        plugin_forward(&f, x, y);
        plugin_backward(&f, R, dx);
        /* the gradient lives on read rows only (and is nonzero on them) */
        for (int s = 0; s < S; s++) {
            double ss = 0;
            for (int k = 0; k < D; k++) ss += (double)grads(f.values)[s * D + k] * grads(f.values)[s * D + k];
            if (read[s]) assert_true(ss > 0);
            else assert_true(ss == 0);
        }
        /* touched rows == rows read */
        fl_param_impl *pi = fl_param_impl_of(f.values);
        assert_int_equal(pi->n_rows_touched, n_read);
        int *rows = malloc((size_t)n_read * sizeof *rows);
        for (int i = 0; i < n_read; i++) rows[i] = pi->rows[i];
        qsort(rows, (size_t)n_read, sizeof *rows, cmp_int);
        for (int i = 0, s = 0; s < S; s++)
            if (read[s]) assert_int_equal(rows[i++], s);
        free(rows);
        /* one AdamW step changes only those rows */
        memcpy(before, vals(f.values), (size_t)S * D * sizeof *before);
        memcpy(rm0, vals(f.rm), sizeof rm0); /* the forward moved them */
        memcpy(rv0, vals(f.rv), sizeof rv0);
        ts_assert_ok(fl_adamw_step(f.t.be, &f.t.list, &opt, 1e-2, 1.0f, step, &err), &err);
        int changed = 0;
        for (int s = 0; s < S; s++) {
            int diff = memcmp(before + s * D, vals(f.values) + s * D, D * sizeof(float)) != 0;
            if (!read[s] && diff) fail_msg("step %d: unread value row %d changed", step, s);
            changed += diff;
        }
        assert_int_equal(changed, n_read);
        assert_memory_equal(rm0, vals(f.rm), sizeof rm0);
        assert_memory_equal(rv0, vals(f.rv), sizeof rv0);
    }
    print_message("  %d of %d value rows read, touched, updated; the rest untouched\n", n_read, S);
    free(before);
    free(read);
    ref_free(&r);
    ts_ffn_free(&f.t);
}

/* ------------------------------------------------------------------------ */
/* Determinism, statistics, batchnorm                                         */
/* ------------------------------------------------------------------------ */

static void test_determinism(void **state) {
    (void)state;
    cfg c = {.d = 16, .N = 64, .H = 4, .kd = 16, .n_keys = 16, .knn = 8, .v_dim = 16, .norm = NORM_BN,
             .p_in = 0.1, .p_q = 0.1, .p_v = 0.1};
    fx a, b;
    make_layer(&a, &c, NULL);
    make_layer(&b, &c, NULL);
    for (int i = 0; i < a.t.list.n; i++) /* the same seed gives the same parameters */
        assert_memory_equal(a.t.list.items[i]->pub.value.data, b.t.list.items[i]->pub.value.data,
                            fl_nbytes(&a.t.list.items[i]->pub.value));
    const int n = c.N * c.d;
    float *x = malloc(n * sizeof *x), *ya = malloc(n * sizeof *ya), *yb = malloc(n * sizeof *yb);
    fill_normal(x, n, 8, 1.0f);
    plugin_forward(&a, x, ya);
    plugin_forward(&b, x, yb);
    assert_memory_equal(ya, yb, n * sizeof *ya);
    b.ctx.rng_key = 78; /* another dropout stream: another output */
    plugin_forward(&b, x, yb);
    assert_true(memcmp(ya, yb, n * sizeof *ya) != 0);
    free(x);
    free(ya);
    free(yb);
    ts_ffn_free(&a.t);
    ts_ffn_free(&b.t);
}

/* One forward and backward; returns y followed by every parameter gradient. */
#define MAX_OUT_TENSORS 16

/* y[N,d] then every parameter gradient, after one forward and backward;
   *n_out values in all, ends[t] where tensor t ends (y is tensor 0),
   *n_tensors of them (ends may be NULL). */
static float *outputs_by_tensor(const cfg *c, const char *extra, const float *x, const float *R, size_t *n_out,
                                size_t *ends, int *n_tensors) {
    fx f;
    make_layer(&f, c, extra);
    redraw(&f, 12);
    const int nx = c->N * c->d;
    size_t n = (size_t)nx;
    for (int i = 0; i < f.t.list.n; i++) n += (size_t)fl_numel(&f.t.list.items[i]->pub.grad);
    float *out = calloc(n, sizeof *out), *dx = calloc((size_t)nx, sizeof *dx);
    ts_ffn_zero_grads(&f.t);
    plugin_forward(&f, (float *)x, out);
    plugin_backward(&f, R, dx);
    size_t o = (size_t)nx;
    assert_true(f.t.list.n + 1 <= MAX_OUT_TENSORS);
    if (ends) ends[0] = o;
    for (int i = 0; i < f.t.list.n; i++) {
        const fl_tensor *g = &f.t.list.items[i]->pub.grad;
        memcpy(out + o, g->data, fl_nbytes(g));
        o += (size_t)fl_numel(g);
        if (ends) ends[i + 1] = o;
    }
    if (n_tensors) *n_tensors = f.t.list.n + 1;
    free(dx);
    ts_ffn_free(&f.t);
    *n_out = n;
    return out;
}

static float *outputs(const cfg *c, const char *extra, const float *x, const float *R, size_t *n_out) {
    return outputs_by_tensor(c, extra, x, R, n_out, NULL, NULL);
}

static void test_blocking_and_threads_do_not_change_results(void **state) {
    (void)state;
    cfg c = {.d = 12, .N = 50, .H = 3, .kd = 8, .n_keys = 7, .knn = 4, .v_dim = 12, .norm = NORM_BN,
             .p_in = 0.1, .p_q = 0.1, .p_v = 0.1};
    const int nx = c.N * c.d;
    float *x = malloc((size_t)nx * sizeof *x), *R = malloc((size_t)nx * sizeof *R);
    fill_normal(x, nx, 61, 1.0f);
    fill_normal(R, nx, 62, 1.0f);
    size_t n0, n;
    float *base = outputs(&c, NULL, x, R, &n0);
    const char *variants[] = {"bag_chunk=1", "bag_chunk=3", "bag_chunk=16", "bag_chunk=1000"};
    for (int v = 0; v < 4; v++) {
        float *o = outputs(&c, variants[v], x, R, &n);
        assert_int_equal(n, n0);
        if (memcmp(o, base, n * sizeof *o)) fail_msg("%s changed the results", variants[v]);
        free(o);
    }
    const int nt = omp_get_max_threads();
    for (int t = 1; t <= 3; t += 2) {
        omp_set_num_threads(t);
        float *o = outputs(&c, NULL, x, R, &n);
        omp_set_num_threads(nt);
        if (memcmp(o, base, n * sizeof *o)) fail_msg("%d threads changed the results", t);
        free(o);
    }
    print_message("  y and %zu gradient values bit-identical over bag_chunk 0/1/3/16/1000 and 1/3 threads\n",
                  n0 - (size_t)nx);
    free(base);
    free(x);
    free(R);
}

/* kernels=host (host ops only: what a GPU runs) against kernels=auto (the
   plugin's grouped value bag and sub-key gradient): the same output and
   gradients up to the order of the additions, for every norm, with the
   output projection and dropout; the same slots read and touched. */
static void test_host_kernels_match_own(void **state) {
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        cfg c = {.d = 12, .N = 50, .H = 3, .kd = 8, .n_keys = 7, .knn = 4, .v_dim = 12, .norm = norm};
        for (int variant = 0; variant < 2; variant++) {
            if (variant) c.v_dim = 10, c.p_in = 0.1, c.p_q = 0.2, c.p_v = 0.15;
            const int nx = c.N * c.d;
            float *x = malloc((size_t)nx * sizeof *x), *R = malloc((size_t)nx * sizeof *R);
            fill_normal(x, nx, 71 + norm, 1.0f);
            fill_normal(R, nx, 72 + norm, 1.0f);
            size_t n_own, n_host, ends[MAX_OUT_TENSORS];
            int n_t;
            float *own = outputs_by_tensor(&c, NULL, x, R, &n_own, ends, &n_t);
            float *host = outputs(&c, "kernels=host", x, R, &n_host);
            assert_int_equal(n_own, n_host);
            char what[96];
            snprintf(what, sizeof what, "%s%s: y and gradients", NORM_NAMES[norm],
                     variant ? " out_proj dropout" : "");
            /* The two paths sum the same terms in other orders (and with or
               without FMA contraction, which differs by ISA), so an element
               near cancellation may differ by far more than its own size:
               compare each tensor normwise. Each value sums at most a few
               hundred terms, so f32 reordering moves it by at most about
               n u sum|terms| ~ 300 * 6e-8 of the terms' scale: 1e-5 with
               room. The terms' scale is the tensor's largest value, or a
               tenth of the largest gradient anywhere for a gradient that is
               zero in exact arithmetic (the query bias before a batch norm:
               its computed value is that rounding noise alone). */
            double grad_max = 0, worst = 0;
            for (size_t i = ends[0]; i < n_own; i++) grad_max = fmax(grad_max, fabs(own[i]));
            for (int t = 0, at = 0; t < n_t; at = (int)ends[t++]) {
                double ref_max = 0, diff = 0;
                for (size_t i = (size_t)at; i < ends[t]; i++) {
                    ref_max = fmax(ref_max, fabs(own[i]));
                    diff = fmax(diff, fabs((double)own[i] - host[i]));
                }
                const double e = diff / fmax(t ? fmax(ref_max, 0.1 * grad_max) : ref_max, 1e-30);
                if (!(e <= 1e-5)) fail_msg("%s: tensor %d (values %d-%zu) differs by %.3g of its scale > 1e-5",
                                           what, t, at, ends[t], e);
                worst = fmax(worst, e);
            }
            print_message("  kernels=host vs auto, %-40s worst per-tensor error %.2e of scale\n", what, worst);
            free(own);
            free(host);
            free(x);
            free(R);
        }
    }
    /* finite differences through the portable path alone */
    cfg c = {.d = 6, .N = 5, .H = 2, .kd = 6, .n_keys = 5, .knn = 3, .v_dim = 4, .norm = NORM_BN};
    run_gradients(&c, "batchnorm kernels=host", "kernels=host");
    c.norm = NORM_LN;
    run_gradients(&c, "layernorm kernels=host", "kernels=host");
}

static void test_stats(void **state) {
    (void)state;
    cfg c = {.d = 8, .N = 10, .H = 2, .kd = 6, .n_keys = 9, .knn = 4, .v_dim = 5, .norm = NORM_LN};
    fx f;
    make_layer(&f, &c, "stats_window=2");
    const double F = 12, S = 81;
    assert_true(ts_ffn_stat(&f.t, "active_params") == 8 * F + F + 2 * F + 2 * 9 * 6 + 2 * 4 * 5 + 5 * 8);
    assert_true(ts_ffn_stat(&f.t, "flops_per_token") ==
                2 * 8 * F + 2 * 2 * 9 * 6 + 2 * 2 * 4 * 5 + 2 * 5 * 8);
    assert_true(ts_ffn_stat(&f.t, "slots") == S);
    assert_true(ts_ffn_stat(&f.t, "memory_usage") == 0 && ts_ffn_stat(&f.t, "kl_uniform") == 0);
    fl_stat one[1];
    assert_int_equal(f.t.L.ffn->stats(f.t.L.layer, one, 1), 7); /* reports how many it has */
    assert_true(ts_ffn_stat(&f.t, "knn") == 4);
    redraw(&f, 6);
    float x[80], y[80];
    double att[81];
    for (int fw = 0; fw < 3; fw++) {
        fill_normal(x, 80, 100 + fw, 1.0f);
        if (fw != 1) memset(att, 0, sizeof att); /* window of 2: forwards 0-1, then 2 */
        ref r;
        ref_alloc(&r, &c);
        ref_forward(&f, x, &r);
        for (int i = 0; i < c.N * c.H * c.knn; i++) att[r.slot[i]] += r.w[i];
        ref_free(&r);
        plugin_forward(&f, x, y);
        double total = 0, kl = 0;
        int used = 0;
        for (int s = 0; s < 81; s++) total += att[s];
        for (int s = 0; s < 81; s++)
            if (att[s] > 0) {
                used++;
                kl += att[s] / total * log(att[s] / total * S);
            }
        print_message("  forward %d: memory_usage %.4f (want %.4f), kl_uniform %.4f (want %.4f)\n", fw,
                      ts_ffn_stat(&f.t, "memory_usage"), used / S, ts_ffn_stat(&f.t, "kl_uniform"), kl);
        assert_true(fabs(ts_ffn_stat(&f.t, "memory_usage") - used / S) < 1e-12);
        assert_true(fabs(ts_ffn_stat(&f.t, "kl_uniform") - kl) < 1e-4);
        assert_true(ts_ffn_stat(&f.t, "usage_window_forwards") == (fw == 2 ? 1 : fw + 1));
    }
    ts_ffn_free(&f.t);
}

/* Train forwards move the running statistics by PyTorch's rule; eval reads them. */
static void test_batchnorm_running_stats(void **state) {
    (void)state;
    cfg c = {.d = 8, .N = 12, .H = 2, .kd = 4, .n_keys = 6, .knn = 3, .v_dim = 8, .norm = NORM_BN};
    fx f;
    make_layer(&f, &c, "bn_momentum=0.25");
    redraw(&f, 7);
    float x[96], y[96];
    double rm[8] = {0}, rv[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int it = 0; it < 3; it++) {
        fill_normal(x, 96, 200 + it, 1.0f);
        ref r;
        ref_alloc(&r, &c);
        ref_forward(&f, x, &r);
        for (int j = 0; j < 8; j++) {
            rm[j] = 0.75 * rm[j] + 0.25 * r.bmean[j];
            rv[j] = 0.75 * rv[j] + 0.25 * r.bvar[j] * 12.0 / 11.0; /* unbiased */
        }
        ref_free(&r);
        plugin_forward(&f, x, y);
    }
    float want_m[8], want_v[8];
    for (int j = 0; j < 8; j++) {
        want_m[j] = (float)rm[j];
        want_v[j] = (float)rv[j];
    }
    ts_assert_close(vals(f.rm), want_m, 8, 1e-4, 1e-6, "running_mean");
    ts_assert_close(vals(f.rv), want_v, 8, 1e-4, 1e-6, "running_var");
    /* eval: the running statistics are used and left alone */
    f.ctx.train = 0;
    ref r;
    ref_alloc(&r, &c);
    check_forward(&f, x, &r, "batchnorm eval");
    ts_assert_close(vals(f.rm), want_m, 8, 1e-4, 1e-6, "running_mean after eval");
    ref_free(&r);
    ts_ffn_free(&f.t);
}

/* A whole model with a batchnorm PKM layer: a few training steps move the
   running statistics; eval logits after a checkpoint round trip into a
   fresh model are bit-identical (and differ from a model that did not load
   them, so the statistics did matter). */
static void test_checkpoint_keeps_eval(void **state) {
    (void)state;
    const char *specs[2] = {"dense:d_ff=64", "pkm:heads=2,k_dim=16,n_keys=8,knn=4"};
    fl_model_config mc = {.vocab_size = 64, .context = 16, .d_model = 32, .n_layers = 2, .n_heads = 2,
                          .ffn_specs = specs, .seed = 5};
    const fl_backend *be = fl_backend_cpu();
    fl_model *m = NULL, *m2 = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, be, &m, &err), &err);
    enum { B = 4, T = 16 };
    int32_t tok[B * T], tgt[B * T];
    fl_adamw opt = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    for (int step = 0; step < 5; step++) {
        for (int i = 0; i < B * T; i++) {
            tok[i] = (int32_t)(fl_rng_bits(step, i) % 64);
            tgt[i] = (int32_t)(fl_rng_bits(step + 100, i) % 64);
        }
        double loss;
        fl_model_zero_grad(m);
        ts_assert_ok(fl_model_forward(m, tok, tgt, B, T, 1, step, &loss, &err), &err);
        ts_assert_ok(fl_model_backward(m, &err), &err);
        ts_assert_ok(fl_adamw_step(be, fl_model_params(m), &opt, 1e-2, 1.0f, step + 1, &err), &err);
    }
    fl_param *rv = fl_model_find_param(m, "transformer.h.1.mlp.query_norm.running_var");
    assert_non_null(rv);
    assert_true(vals(rv)[0] != 1.0f); /* moved by the train forwards */
    double loss;
    ts_assert_ok(fl_model_forward(m, tok, tgt, B, T, 0, 0, &loss, &err), &err);
    const size_t nl = (size_t)B * T * 64;
    float *logits = malloc(nl * sizeof *logits), *again = malloc(nl * sizeof *again);
    memcpy(logits, fl_model_logits(m)->data, nl * sizeof *logits);

    char *dir = ts_tmpdir();
    ts_assert_ok(fl_checkpoint_save(dir, m, 1, 5, -1, &err), &err);
    ts_assert_ok(fl_model_create(&mc, be, &m2, &err), &err);
    ts_assert_ok(fl_model_forward(m2, tok, tgt, B, T, 0, 0, &loss, &err), &err);
    assert_true(memcmp(logits, fl_model_logits(m2)->data, nl * sizeof *logits) != 0);
    ts_assert_ok(fl_checkpoint_load(dir, m2, 1, NULL, &err), &err);
    ts_assert_ok(fl_model_forward(m2, tok, tgt, B, T, 0, 0, &loss, &err), &err);
    memcpy(again, fl_model_logits(m2)->data, nl * sizeof *again);
    assert_memory_equal(logits, again, nl * sizeof *logits);
    /* and with only the running statistics reset, eval changes */
    fl_param *rv2 = fl_model_find_param(m2, "transformer.h.1.mlp.query_norm.running_var");
    be->ops.fill(&rv2->value, 1.0f);
    ts_assert_ok(fl_model_forward(m2, tok, tgt, B, T, 0, 0, &loss, &err), &err);
    assert_true(memcmp(logits, fl_model_logits(m2)->data, nl * sizeof *logits) != 0);
    ts_rmtree(dir);
    free(dir);
    free(logits);
    free(again);
    fl_model_free(m);
    fl_model_free(m2);
}

/* ------------------------------------------------------------------------ */
/* End to end                                                                 */
/* ------------------------------------------------------------------------ */

static void test_train_end_to_end(void **state) {
    (void)state;
    double val, unigram;
    char *dir = ts_ffn_train_e2e("--warmup-steps 15 --ffn-layer 1=pkm:heads=2,n_keys=32,k_dim=32,knn=8", 150,
                                 &val, &unigram);
    assert_true(val < 0.7 * unigram);
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_create_checks),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_selection_is_brute_force_topk),
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_values_sparse),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_blocking_and_threads_do_not_change_results),
        cmocka_unit_test(test_host_kernels_match_own),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_batchnorm_running_stats),
        cmocka_unit_test(test_checkpoint_keeps_eval),
        cmocka_unit_test(test_train_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
