/*
 * plugins/ffn_dense/dense.c — the dense GPT-2 MLP as an ffnlab FFN plugin.
 *
 * The baseline every sparse layer is measured against, so it is exactly
 * GPT-2's block MLP:
 *
 *     h = x · W_fc + b_fc          x[N,d]  W_fc[d,d_ff]   h[N,d_ff]
 *     a = act(h)                   a[N,d_ff]   (GELU, tanh form, by default)
 *     y = a · W_proj + b_proj      W_proj[d_ff,d]  y[N,d]
 *
 * with GPT-2's parameter names and [in, out] layouts (c_fc, c_proj), so a
 * dense checkpoint loads in common GPT-2 tooling. With glu=true it becomes
 * the gated variant (SwiGLU with activation=silu, GeGLU with gelu):
 *
 *     h = x · W_fc + b_fc,  g = x · W_gate + b_gate,  s = act(g),
 *     a = s * h,            y = a · W_proj + b_proj
 *
 * a feeds only GEMMs (c_proj and its weight gradient; backward reads h, g
 * and s, never a), so it is stored in the host's act_dtype: bf16 when the
 * run's GEMMs are, where the GEMM would round it anyway, f32 otherwise.
 * Without the gate, on a host whose ops have bias_activation, h is kept
 * without its bias and a = act(h + b_fc) is one pass over the [N,d_ff]
 * hidden layer instead of two (add_bias, then activation); the backward
 * likewise takes act' and b_fc's gradient in one pass.
 *
 * This file sees only the public SDK (ffnlab/ffn.h and what it includes):
 * all math goes through host->ops, all parameters through host->param, so
 * the same source runs on every backend and builds out of tree.
 */
#include <stdint.h>          /* int64_t */
#include <stdlib.h>          /* calloc, free */

#include "ffnlab/ffn.h"      /* fl_ffn_plugin, fl_ffn_config, fl_ffn_ctx */
#include "ffnlab/host.h"     /* fl_host, fl_ops, fl_param_spec, fl_option */
#include "ffnlab/plugin.h"   /* FL_EXPORT, FL_PLUGIN_MAGIC */
#include "ffnlab/tensor.h"   /* fl_tensor, fl_view2 */

/* ------------------------------------------------------------------------ */
/* Options                                                                    */
/* ------------------------------------------------------------------------ */

enum { OPT_D_FF, OPT_ACTIVATION, OPT_GLU, N_OPTIONS };

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_D_FF] = {"d_ff", FL_OPT_INT, NULL, 1, 1 << 20, NULL,
                  "hidden width (default 4 * d_model, as GPT-2)"},
    [OPT_ACTIVATION] = {"activation", FL_OPT_ENUM, "gelu", 0, -1, "gelu|relu|silu",
                        "nonlinearity; gelu is GPT-2's tanh approximation"},
    [OPT_GLU] = {"glu", FL_OPT_BOOL, "false", 0, -1, NULL,
                 "gated: y = c_proj(act(c_gate(x)) * c_fc(x)) (SwiGLU with silu)"},
};

/* The ENUM index of "gelu|relu|silu" → the host's activation code. */
static const int ACTIVATIONS[] = {FL_ACT_GELU, FL_ACT_RELU, FL_ACT_SILU};
#define N_ACTIVATIONS ((int)(sizeof ACTIVATIONS / sizeof ACTIVATIONS[0]))

/* ------------------------------------------------------------------------ */
/* The layer                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct dense {
    const fl_host *host;
    int64_t d, d_ff;
    int act;                   /* FL_ACT_* */
    int glu;
    int fused;                 /* not glu, and the host has bias_activation (top of file) */
    fl_param *fc_w, *fc_b;     /* c_fc.weight [d,d_ff], c_fc.bias [d_ff] */
    fl_param *gate_w, *gate_b; /* glu only: c_gate.weight [d,d_ff], c_gate.bias [d_ff] */
    fl_param *proj_w, *proj_b; /* c_proj.weight [d_ff,d], c_proj.bias [d] */

    /* Saved by forward for backward. x is a view of the caller's input: the
       host keeps the block input alive and unchanged from a layer's forward
       until its backward (it is ln_2's output buffer), so copying it would
       only cost memory bandwidth. */
    fl_tensor x;               /* [N,d] view */
    fl_tensor h;               /* [N,d_ff] x·W_fc + b_fc (fused: x·W_fc) */
    fl_tensor g;               /* glu: [N,d_ff] x·W_gate + b_gate */
    fl_tensor s;               /* glu: [N,d_ff] act(g) */
    fl_tensor a;               /* [N,d_ff] input of c_proj, in act_dtype(host) */
    int64_t n;                 /* rows of the last forward; 0 before any */

    /* Backward scratch: [N,d_ff] each. */
    fl_tensor da, dg;
} dense;

static int64_t active_params(const dense *L) {
    int64_t p = L->d * L->d_ff + L->d_ff + L->d_ff * L->d + L->d;
    if (L->glu) p += L->d * L->d_ff + L->d_ff;
    return p;
}

/* Matmuls only (2 FLOPs per multiply-add), as the 6N convention counts; bias,
   activation and gating are O(d_ff) per token and left out. */
static int64_t flops_per_token(const dense *L) {
    return 2 * (L->glu ? 3 : 2) * L->d * L->d_ff;
}

static fl_param *declare(const fl_host *host, fl_param_scope *scope, const char *name,
                         int ndim, int64_t d0, int64_t d1, int init, uint32_t flags,
                         fl_error *err) {
    fl_param_spec spec = {0};
    spec.name = name;
    spec.ndim = ndim;
    spec.shape[0] = d0;
    spec.shape[1] = d1;
    spec.init = init;
    spec.init_scale = init == FL_INIT_NORMAL ? 0.02f : 0.0f;
    spec.flags = flags;
    return host->param(host, scope, &spec, err);
}

/* GPT-2 init: matrices normal(0, 0.02), biases zero; c_proj feeds the
   residual stream, so the host scales its std by 1/sqrt(2 * n_layers). */
static fl_status declare_params(dense *L, fl_param_scope *scope, fl_error *err) {
    const fl_host *H = L->host;
    int64_t d = L->d, f = L->d_ff;
    if (!(L->fc_w = declare(H, scope, "c_fc.weight", 2, d, f, FL_INIT_NORMAL, FL_PARAM_DECAY, err)) ||
        !(L->fc_b = declare(H, scope, "c_fc.bias", 1, f, 1, FL_INIT_ZEROS, 0, err)))
        return err ? err->code : FL_EINVAL;
    if (L->glu &&
        (!(L->gate_w = declare(H, scope, "c_gate.weight", 2, d, f, FL_INIT_NORMAL, FL_PARAM_DECAY, err)) ||
         !(L->gate_b = declare(H, scope, "c_gate.bias", 1, f, 1, FL_INIT_ZEROS, 0, err))))
        return err ? err->code : FL_EINVAL;
    if (!(L->proj_w = declare(H, scope, "c_proj.weight", 2, f, d, FL_INIT_NORMAL,
                              FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT, err)) ||
        !(L->proj_b = declare(H, scope, "c_proj.bias", 1, d, 1, FL_INIT_ZEROS, 0, err)))
        return err ? err->code : FL_EINVAL;
    return FL_OK;
}

static void dense_destroy(void *layer) {
    dense *L = layer;
    if (!L) return;
    fl_tensor *owned[] = {&L->h, &L->g, &L->s, &L->a, &L->da, &L->dg};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) L->host->tensor_release(L->host, owned[i]);
    free(L);
}

/* The host has already checked each option against the table; create still
   checks the values it depends on, so a host that skipped that cannot make
   it build a nonsense layer. */
static fl_status dense_create(const fl_host *host, const fl_ffn_config *cfg, void **layer,
                              fl_error *err) {
    *layer = NULL;
    if (cfg->d_model < 1)
        return host->error(err, FL_EINVAL, "dense: d_model %d must be positive", (int)cfg->d_model);
    const fl_value *v = cfg->values;
    int64_t d_ff = v && v[OPT_D_FF].present ? v[OPT_D_FF].i : 4 * (int64_t)cfg->d_model;
    int64_t act = v && v[OPT_ACTIVATION].present ? v[OPT_ACTIVATION].i : 0;
    if (d_ff < 1 || d_ff > (1 << 20))
        return host->error(err, FL_EINVAL, "dense: d_ff = %lld is out of range [1, 1048576]",
                           (long long)d_ff);
    if (act < 0 || act >= N_ACTIVATIONS)
        return host->error(err, FL_EINVAL, "dense: activation index %lld is not one of gelu|relu|silu",
                           (long long)act);
    dense *L = calloc(1, sizeof *L);
    if (!L) return host->error(err, FL_ENOMEM, "dense: out of memory");
    L->host = host;
    L->d = cfg->d_model;
    L->d_ff = d_ff;
    L->act = ACTIVATIONS[act];
    L->glu = v && v[OPT_GLU].present ? v[OPT_GLU].i != 0 : 0;
    L->fused = !L->glu && FL_OPS_HAS(host->ops, bias_activation) && FL_OPS_HAS(host->ops, bias_activation_backward);
    fl_status st = declare_params(L, cfg->scope, err);
    if (st) {
        dense_destroy(L); /* the params already declared belong to the host */
        return st;
    }
    *layer = L;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward and backward                                                       */
/* ------------------------------------------------------------------------ */

static fl_status ensure_hidden(dense *L, fl_tensor *t, int32_t dtype, int64_t n, fl_error *err) {
    int64_t shape[2] = {n, L->d_ff};
    return L->host->tensor_ensure(L->host, t, dtype, 2, shape, err);
}

/* What a tensor that only feeds GEMMs is stored in: the host's act_dtype,
   or f32 on a host from before that field. */
static int32_t act_dtype(const fl_host *h) { return FL_HOST_HAS(h, act_dtype) ? h->act_dtype : FL_F32; }

/* out[N,d_ff] = x · W + b (b NULL: x · W) */
static void linear(const fl_ops *ops, const fl_tensor *x, const fl_param *w, const fl_param *b,
                   fl_tensor *out) {
    ops->gemm(0, 0, 1.0f, x, &w->value, 0.0f, out);
    if (b) ops->add_bias(out, &b->value);
}

static fl_status dense_forward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x,
                               fl_tensor *y, fl_error *err) {
    (void)ctx; /* the dense MLP behaves the same in train and eval */
    dense *L = layer;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "dense", "x", x, L->d, &n, err);
    if (!st) st = ensure_hidden(L, &L->h, FL_F32, n, err);
    if (!st) st = ensure_hidden(L, &L->a, act_dtype(L->host), n, err);
    if (!st && L->glu) st = ensure_hidden(L, &L->g, FL_F32, n, err);
    if (!st && L->glu) st = ensure_hidden(L, &L->s, FL_F32, n, err);
    if (st) return st;
    L->x = fl_view2(x, n, L->d);
    fl_tensor y2 = fl_view2(y, n, L->d);

    linear(ops, &L->x, L->fc_w, L->fused ? NULL : L->fc_b, &L->h); /* h[N,d_ff] */
    if (L->fused) {
        ops->bias_activation(L->act, &L->h, &L->fc_b->value, &L->a); /* a = act(h + b_fc) */
    } else if (L->glu) {
        linear(ops, &L->x, L->gate_w, L->gate_b, &L->g);            /* g[N,d_ff] */
        ops->activation(L->act, &L->g, &L->s);                      /* s = act(g) */
        ops->mul(&L->s, &L->h, &L->a);                              /* a = s * h */
    } else {
        ops->activation(L->act, &L->h, &L->a);                      /* a = act(h) */
    }
    linear(ops, &L->a, L->proj_w, L->proj_b, &y2);                  /* y[N,d] */
    L->n = n;
    return FL_OK;
}

/* dW += xᵀ · dz, db += Σ_rows dz (b NULL: dW only), for one linear map
   z = x · W + b. */
static void linear_wgrad(const fl_ops *ops, const fl_tensor *x, const fl_tensor *dz, fl_param *w,
                         fl_param *b) {
    ops->gemm(1, 0, 1.0f, x, dz, 1.0f, &w->grad);
    if (b) ops->sum_rows(dz, 1.0f, &b->grad);
}

static fl_status dense_backward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy,
                                fl_tensor *dx, fl_error *err) {
    (void)ctx;
    dense *L = layer;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "dense", "dy", dy, L->d, &n, err);
    if (st) return st;
    if (n != L->n)
        return L->host->error(err, FL_EINVAL, "dense: backward of %lld rows after a forward of %lld",
                              (long long)n, (long long)L->n);
    st = ensure_hidden(L, &L->da, FL_F32, n, err);
    if (!st && L->glu) st = ensure_hidden(L, &L->dg, FL_F32, n, err);
    if (st) return st;
    fl_tensor dy2 = fl_view2(dy, n, L->d), dx2 = fl_view2(dx, n, L->d);

    linear_wgrad(ops, &L->a, &dy2, L->proj_w, L->proj_b);       /* dW_proj, db_proj */
    ops->gemm(0, 1, 1.0f, &dy2, &L->proj_w->value, 0.0f, &L->da); /* da = dy · W_projᵀ */
    if (L->fused) {
        /* dh = act'(h + b_fc) * da (in place in da), db_fc += Σ_rows dh */
        ops->bias_activation_backward(L->act, &L->h, &L->fc_b->value, &L->da, &L->da, &L->fc_b->grad);
    } else if (L->glu) {
        /* a = s * h: ds = da * h (into dg), dh = da * s (in place in da);
           then dg = act'(g) * ds. */
        ops->mul(&L->da, &L->h, &L->dg);
        ops->mul(&L->da, &L->s, &L->da);
        ops->activation_backward(L->act, &L->g, &L->dg, &L->dg);
        linear_wgrad(ops, &L->x, &L->dg, L->gate_w, L->gate_b);
    } else {
        ops->activation_backward(L->act, &L->h, &L->da, &L->da); /* dh = act'(h) * da */
    }
    linear_wgrad(ops, &L->x, &L->da, L->fc_w, L->fused ? NULL : L->fc_b); /* dW_fc, db_fc unless fused */
    ops->gemm(0, 1, 1.0f, &L->da, &L->fc_w->value, 0.0f, &dx2);  /* dx = dh · W_fcᵀ */
    if (L->glu) ops->gemm(0, 1, 1.0f, &L->dg, &L->gate_w->value, 1.0f, &dx2); /* + dg · W_gateᵀ */
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Statistics and the descriptor                                              */
/* ------------------------------------------------------------------------ */

static int dense_stats(void *layer, fl_stat *out, int max) {
    const dense *L = layer;
    fl_stat all[] = {
        {"active_params", (double)active_params(L)},
        {"flops_per_token", (double)flops_per_token(L)},
        {"d_ff", (double)L->d_ff},
    };
    int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n && i < max; i++) out[i] = all[i];
    return n;
}

/* What `ffnlab sweep --match` may change to size this layer (ffn.h). */
static const char *const SIZE_OPTIONS[] = {"d_ff", NULL};

static const fl_ffn_plugin DESCRIPTOR = {
    .header = {
        .magic = FL_PLUGIN_MAGIC,
        .abi_major = FL_FFN_ABI_MAJOR,
        .abi_minor = FL_FFN_ABI_MINOR,
        .struct_size = sizeof(fl_ffn_plugin),
        .kind = FL_PLUGIN_FFN,
        .name = "dense",
        .version = "1.0.0",
        .description = "dense GPT-2 MLP: c_proj(act(c_fc(x))), optionally gated (GLU)",
        .options = OPTIONS,
        .n_options = N_OPTIONS,
    },
    .devices = FL_DEVICES_ALL,
    .create = dense_create,
    .forward = dense_forward,
    .backward = dense_backward,
    .aux_loss = NULL,
    .stats = dense_stats,
    .destroy = dense_destroy,
    .size_options = SIZE_OPTIONS,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &DESCRIPTOR.header; }
