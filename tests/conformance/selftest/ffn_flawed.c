/*
 * tests/conformance/selftest/ffn_flawed.c — a plugin with one chosen flaw,
 * to show that the conformance suite catches it.
 *
 * A bias-free GELU MLP, y = gelu(x · W1) · W2 (W1[d,h], W2[h,d], h = 2d),
 * correct with bug=none. Each other value of the `bug` option breaks one
 * promise of ffnlab/ffn.h, and tests/CMakeLists.txt expects the matching
 * conformance test to fail:
 *
 *   grad    dW1 is 1.5x too large                     → test_gradients
 *   aux     reports an aux loss, leaves out its gradient → test_aux_gradients
 *   random  training noise that ignores ctx->rng_key  → test_train_determinism
 *   state   eval output scaled by a counter kept outside the parameters
 *                                                     → test_checkpoint_round_trip
 *   stats   active_params larger than the layer       → test_stats
 *   dx      backward adds into dx instead of overwriting it
 *                                                     → test_grad_accumulates
 *   cache   inference uses a copy of W2 taken once and never refreshed
 *                                                     → test_eval_follows_parameters
 *   shape   forward and backward take tensors of any last dimension
 *                                                     → test_rejects_bad_shapes
 *
 * Never installed, never on the plugin search path: it lives in the test
 * build folder only.
 */
#include <stdint.h>          /* int64_t */
#include <stdlib.h>          /* calloc, free, malloc */

#include "ffnlab/ffn.h"      /* fl_ffn_plugin and the rest of the SDK */

enum { BUG_NONE, BUG_GRAD, BUG_AUX, BUG_RANDOM, BUG_STATE, BUG_STATS, BUG_DX, BUG_CACHE, BUG_SHAPE };

static const fl_option OPTIONS[] = {
    {"bug", FL_OPT_ENUM, "none", 0, -1, "none|grad|aux|random|state|stats|dx|cache|shape",
     "which promise of the FFN ABI to break"},
};

typedef struct flawed {
    const fl_host *host;
    int64_t d, h, n;
    int bug;
    fl_param *w1, *w2;
    fl_tensor x, pre, act, dact, sq;  /* x is a view; the rest owned */
    fl_tensor w2_copy;                /* BUG_CACHE: W2 as of the first inference */
    float aux;
    uint64_t calls;                   /* BUG_RANDOM, BUG_STATE: hidden state */
} flawed;

static void flawed_destroy(void *p) {
    flawed *L = p;
    if (!L) return;
    fl_tensor *owned[] = {&L->pre, &L->act, &L->dact, &L->sq, &L->w2_copy};
    for (int i = 0; i < 5; i++) L->host->tensor_release(L->host, owned[i]);
    free(L);
}

static fl_param *declare(flawed *L, fl_param_scope *scope, const char *name, int64_t d0, int64_t d1,
                         fl_error *err) {
    fl_param_spec s = {.name = name, .ndim = 2, .shape = {d0, d1}, .init = FL_INIT_NORMAL,
                       .init_scale = 0.02f, .flags = FL_PARAM_DECAY};
    return L->host->param(L->host, scope, &s, err);
}

static fl_status flawed_create(const fl_host *host, const fl_ffn_config *cfg, void **out, fl_error *err) {
    *out = NULL;
    if (cfg->d_model < 1) return host->error(err, FL_EINVAL, "flawed: d_model must be positive");
    flawed *L = calloc(1, sizeof *L);
    if (!L) return host->error(err, FL_ENOMEM, "flawed: out of memory");
    L->host = host;
    L->d = cfg->d_model;
    L->h = 2 * L->d;
    L->bug = cfg->values ? (int)cfg->values[0].i : BUG_NONE;
    if (!(L->w1 = declare(L, cfg->scope, "w1", L->d, L->h, err)) ||
        !(L->w2 = declare(L, cfg->scope, "w2", L->h, L->d, err))) {
        flawed_destroy(L);
        return err ? err->code : FL_EINVAL;
    }
    *out = L;
    return FL_OK;
}

static fl_status ensure(flawed *L, fl_tensor *t, int64_t rows, int64_t cols, fl_error *err) {
    int64_t shape[2] = {rows, cols};
    return L->host->tensor_ensure(L->host, t, FL_F32, cols ? 2 : 1, shape, err);
}

/* aux = 0.01 * mean(y^2) */
static void compute_aux(flawed *L, const fl_tensor *y) {
    L->host->ops->row_dot(y, y, &L->sq);
    float *rows = malloc((size_t)L->n * sizeof *rows);
    if (!rows) return;
    L->host->ops->to_host(rows, &L->sq, (size_t)L->n * sizeof *rows);
    double s = 0;
    for (int64_t i = 0; i < L->n; i++) s += rows[i];
    free(rows);
    L->aux = (float)(0.01 * s / (double)(L->n * L->d));
}

static fl_status flawed_forward(void *p, const fl_ffn_ctx *ctx, const fl_tensor *x, fl_tensor *y,
                                fl_error *err) {
    flawed *L = p;
    const fl_ops *ops = L->host->ops;
    fl_status st = FL_OK;
    if (L->bug == BUG_SHAPE) L->n = fl_numel(x) / L->d; /* whatever x's last dimension */
    else st = fl_ffn_rows(L->host, "flawed", "x", x, L->d, &L->n, err);
    if (!st) st = ensure(L, &L->pre, L->n, L->h, err);
    if (!st) st = ensure(L, &L->act, L->n, L->h, err);
    if (!st) st = ensure(L, &L->sq, L->n, 0, err);
    if (st) return st;
    L->x = fl_view2(x, L->n, L->d);
    fl_tensor y2 = fl_view2(y, L->n, L->d);
    ops->gemm(0, 0, 1.0f, &L->x, &L->w1->value, 0.0f, &L->pre);
    if (L->bug == BUG_RANDOM && ctx->train) { /* a stream that moves on every call */
        ops->rng_normal(&L->act, 99, ++L->calls * 1000003u, 0.0f, 0.1f);
        ops->axpby(1.0f, &L->act, 1.0f, &L->pre);
    }
    ops->activation(FL_ACT_GELU, &L->pre, &L->act);
    const fl_tensor *w2 = &L->w2->value;
    if (L->bug == BUG_CACHE && !ctx->train) {
        if (!L->w2_copy.data) {
            if ((st = ensure(L, &L->w2_copy, L->h, L->d, err))) return st;
            ops->copy(w2, &L->w2_copy);
        }
        w2 = &L->w2_copy;
    }
    ops->gemm(0, 0, 1.0f, &L->act, w2, 0.0f, &y2);
    if (L->bug == BUG_STATE) {
        if (ctx->train) L->calls++;
        else ops->axpby(0.0f, &y2, 1.0f + 0.01f * (float)L->calls, &y2);
    }
    if (L->bug == BUG_AUX) compute_aux(L, &y2);
    return FL_OK;
}

static fl_status flawed_backward(void *p, const fl_ffn_ctx *ctx, const fl_tensor *dy, fl_tensor *dx,
                                 fl_error *err) {
    (void)ctx;
    flawed *L = p;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = L->bug == BUG_SHAPE ? FL_OK : fl_ffn_rows(L->host, "flawed", "dy", dy, L->d, &n, err);
    if (!st) st = ensure(L, &L->dact, L->n, L->h, err);
    if (st) return st;
    fl_tensor dy2 = fl_view2(dy, L->n, L->d), dx2 = fl_view2(dx, L->n, L->d);
    ops->gemm(1, 0, 1.0f, &L->act, &dy2, 1.0f, &L->w2->grad);
    ops->gemm(0, 1, 1.0f, &dy2, &L->w2->value, 0.0f, &L->dact);
    ops->activation_backward(FL_ACT_GELU, &L->pre, &L->dact, &L->dact);
    ops->gemm(1, 0, L->bug == BUG_GRAD ? 1.5f : 1.0f, &L->x, &L->dact, 1.0f, &L->w1->grad);
    ops->gemm(0, 1, 1.0f, &L->dact, &L->w1->value, L->bug == BUG_DX ? 1.0f : 0.0f, &dx2);
    return FL_OK;
}

static int flawed_aux(void *p, fl_stat *out, int max) {
    const flawed *L = p;
    if (L->bug != BUG_AUX) return 0;
    if (max > 0) out[0] = (fl_stat){"l2", L->aux};
    return 1;
}

static int flawed_stats(void *p, fl_stat *out, int max) {
    const flawed *L = p;
    double params = 2.0 * (double)(L->d * L->h);
    fl_stat all[] = {{"active_params", L->bug == BUG_STATS ? 2 * params : params},
                     {"flops_per_token", 2 * params}};
    for (int i = 0; i < 2 && i < max; i++) out[i] = all[i];
    return 2;
}

static const fl_ffn_plugin DESCRIPTOR = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_FFN_ABI_MAJOR, .abi_minor = FL_FFN_ABI_MINOR,
               .struct_size = sizeof(fl_ffn_plugin), .kind = FL_PLUGIN_FFN, .name = "flawed",
               .version = "0", .description = "conformance self-test: a GELU MLP with one chosen flaw",
               .options = OPTIONS, .n_options = 1},
    .devices = FL_DEVICES_ALL,
    .create = flawed_create,
    .forward = flawed_forward,
    .backward = flawed_backward,
    .aux_loss = flawed_aux,
    .stats = flawed_stats,
    .destroy = flawed_destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &DESCRIPTOR.header; }
