/*
 * examples/ffn_template/template.c — a small sparse FFN plugin to copy from.
 *
 * A top-k ("k-winners") MLP: every token scores all d_ff hidden units, keeps
 * the k best, and only those k units produce its output:
 *
 *     h      = x · W_inᵀ                     x[N,d]  W_in[d_ff,d]   h[N,d_ff]
 *     (s, u) = top-k of each row of h        s[N,k] scores, u[N,k] unit ids
 *     a      = act(s)                        a[N,k]
 *     y[n]   = Σ_j a[n,j] · W_out[u[n,j]] + b_out     W_out[d_ff,d]  y[N,d]
 *
 * With k = d_ff it is an ordinary (bias-free) MLP; with k << d_ff the output
 * side and the whole backward touch only k rows per token, which is the kind
 * of saving a sparse layer is after. Both weight matrices are stored one row
 * per unit, so reading and updating "the rows of the chosen units" is one
 * embedding-bag op each way.
 *
 * The file walks through every point of the plugin ABI (ffnlab/ffn.h), in
 * the order the host calls them: the option table, create (validate, declare
 * parameters), forward (save what backward needs), backward (overwrite dx,
 * accumulate parameter gradients, include the aux loss), aux_loss, stats,
 * destroy, and the exported descriptor. It uses only the public SDK headers
 * and does its math through host->ops, which every device has; the one step
 * the ops lack (counting how often each unit was kept, for a stat) is the
 * plugin's own kernel, for the CPU in units.c and for CUDA in units.cu
 * (units.h), so the layer runs on the CPU and, when built with CUDA, on a GPU.
 * It builds out of tree with find_package(ffnlab).
 *
 * To start a new layer: copy this folder, rename the file stem (ffn_NAME),
 * the descriptor's .name ("NAME", equal to the stem after "ffn_") and the
 * ffnlab_add_plugin() line, then change the math. Run ffnlab-conformance on
 * it after every change.
 */
#include <stdint.h>          /* int64_t */
#include <stdlib.h>          /* calloc, free */

#include "ffnlab/ffn.h"      /* fl_ffn_plugin, fl_ffn_config, fl_ffn_ctx, fl_stat */
#include "ffnlab/host.h"     /* fl_host, fl_ops, fl_option, fl_param_spec */
#include "ffnlab/plugin.h"   /* FL_EXPORT, FL_PLUGIN_MAGIC, fl_plugin_header */
#include "ffnlab/tensor.h"   /* fl_tensor, fl_view2 */

#include "units.h"           /* units_count: this plugin's own kernel */

/* ------------------------------------------------------------------------ */
/* Options                                                                    */
/* ------------------------------------------------------------------------ */

/* The host parses "--ffn template:k=16,act_l2=0.01" against this table
   before create runs: unknown keys, bad numbers, out-of-range values and
   bad choices are refused with one line naming the option, and
   `ffnlab plugins template` prints the table as help. A NULL default means
   "derived by the plugin" (then fl_value.present is 0 unless the user set it). */
enum { OPT_D_FF, OPT_K, OPT_ACTIVATION, OPT_NOISE, OPT_ACT_L2, OPT_LAZY, N_OPTIONS };

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_D_FF] = {"d_ff", FL_OPT_INT, NULL, 1, 1 << 20, NULL,
                  "hidden units (default 4 * d_model)"},
    [OPT_K] = {"k", FL_OPT_INT, NULL, 1, 1 << 20, NULL,
               "units kept per token (default d_ff / 4); at most d_ff"},
    [OPT_ACTIVATION] = {"activation", FL_OPT_ENUM, "gelu", 0, -1, "gelu|relu|silu",
                        "nonlinearity applied to the kept scores"},
    [OPT_NOISE] = {"noise", FL_OPT_FLOAT, "0", 0, 10, NULL,
                   "std of normal noise added to the scores while training (exploration)"},
    [OPT_ACT_L2] = {"act_l2", FL_OPT_FLOAT, "0", 0, 1000, NULL,
                    "weight of the auxiliary loss act_l2 * mean(a^2) over kept units (0 = off)"},
    [OPT_LAZY] = {"lazy", FL_OPT_BOOL, "false", 0, -1, NULL,
                  "update only the W_out rows read in a step (lazy Adam, FL_PARAM_SPARSE_ROWS)"},
};

/* The ENUM index of "gelu|relu|silu" → the host's activation code. */
static const int ACTIVATIONS[] = {FL_ACT_GELU, FL_ACT_RELU, FL_ACT_SILU};
#define N_ACTIVATIONS ((int)(sizeof ACTIVATIONS / sizeof ACTIVATIONS[0]))

/* ------------------------------------------------------------------------ */
/* The layer                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct layer {
    const fl_host *host;       /* kept from create: every later call needs it */
    int64_t d, d_ff, k;
    int act;                   /* FL_ACT_* */
    float noise, act_l2;
    fl_param *w_in;            /* w_in.weight  [d_ff,d]: row u scores unit u */
    fl_param *w_out;           /* w_out.weight [d_ff,d]: row u is unit u's output */
    fl_param *b_out;           /* w_out.bias   [d] */

    /* Saved by forward for backward (owned tensors, grown by tensor_ensure). */
    fl_tensor x;               /* [N,d] a view of the caller's input: the host
                                  keeps it unchanged until this layer's backward */
    fl_tensor s;               /* [N,k] kept scores (pre-activation) */
    fl_tensor u;               /* [N,k] i32 kept unit ids */
    fl_tensor a;               /* [N,k] act(s) */
    int64_t n;                 /* rows of the last forward; 0 before any */
    float aux;                 /* act_l2 * mean(a^2) of the last forward */

    /* Scratch: scores of all units, noise, and backward's gradients. */
    fl_tensor h, eps, sq, da, ds;
    fl_tensor count;           /* [d_ff] i32: tokens that kept each unit (last forward) */
} layer;

/* ------------------------------------------------------------------------ */
/* create and destroy                                                         */
/* ------------------------------------------------------------------------ */

/* One parameter. The host allocates value and gradient, initialises the
   value (normal init of std init_scale; FL_PARAM_RESIDUAL_OUT scales it by
   1/sqrt(2 n_layers)), prefixes the name with "transformer.h.{i}.mlp." and
   owns it from now on: the optimizer, gradient clipping, checkpoints and
   expert sharding work without the plugin doing anything. Flags:
     FL_PARAM_DECAY        AdamW weight decay applies (matrices)
     FL_PARAM_RESIDUAL_OUT output projection into the residual stream
     FL_PARAM_EXPERT       dim 0 indexes experts (may be sharded over ranks)
     FL_PARAM_SPARSE_ROWS  only rows passed to host->param_touch_rows in a
                           step get gradients and optimizer updates */
static fl_param *declare(layer *L, fl_param_scope *scope, const char *name, int ndim, int64_t d0,
                         int64_t d1, int init, uint32_t flags, fl_error *err) {
    fl_param_spec spec = {0};
    spec.name = name;
    spec.ndim = ndim;
    spec.shape[0] = d0;
    spec.shape[1] = d1;
    spec.init = init;
    spec.init_scale = init == FL_INIT_NORMAL ? 0.02f : 0.0f;
    spec.flags = flags;
    return L->host->param(L->host, scope, &spec, err);
}

static void template_destroy(void *ptr) {
    layer *L = ptr;
    if (!L) return;
    /* Only the layer's own tensors: the parameters belong to the host. */
    fl_tensor *owned[] = {&L->s, &L->u, &L->a, &L->h, &L->eps, &L->sq, &L->da, &L->ds, &L->count};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) L->host->tensor_release(L->host, owned[i]);
    free(L);
}

/* An option's value, or `fallback` when it has no default and was not set. */
static int64_t int_option(const fl_value *v, int opt, int64_t fallback) {
    return v && v[opt].present ? v[opt].i : fallback;
}
static double float_option(const fl_value *v, int opt) { return v && v[opt].present ? v[opt].f : 0.0; }

/* create: the options arrive parsed and range-checked (cfg->values, in the
   table's order); what create still checks is what the table cannot say —
   combinations (k <= d_ff) and shapes (d_model). Every failure is a status
   plus one line through host->error, never a crash or exit(). */
static fl_status template_create(const fl_host *host, const fl_ffn_config *cfg, void **out,
                                 fl_error *err) {
    *out = NULL;
    const fl_value *v = cfg->values;
    if (cfg->d_model < 1)
        return host->error(err, FL_EINVAL, "template: d_model %d must be positive", (int)cfg->d_model);
    int64_t d_ff = int_option(v, OPT_D_FF, 4 * (int64_t)cfg->d_model);
    int64_t k = int_option(v, OPT_K, d_ff / 4 > 0 ? d_ff / 4 : 1);
    int64_t act = int_option(v, OPT_ACTIVATION, 0);
    if (d_ff < 1 || k < 1 || k > d_ff)
        return host->error(err, FL_EINVAL, "template: k = %lld must be in [1, d_ff = %lld]", (long long)k,
                           (long long)d_ff);
    if (act < 0 || act >= N_ACTIVATIONS)
        return host->error(err, FL_EINVAL, "template: activation index %lld is not one of gelu|relu|silu",
                           (long long)act);

    layer *L = calloc(1, sizeof *L);
    if (!L) return host->error(err, FL_ENOMEM, "template: out of memory");
    L->host = host;
    L->d = cfg->d_model;
    L->d_ff = d_ff;
    L->k = k;
    L->act = ACTIVATIONS[act];
    L->noise = (float)float_option(v, OPT_NOISE);
    L->act_l2 = (float)float_option(v, OPT_ACT_L2);
    uint32_t lazy = int_option(v, OPT_LAZY, 0) ? FL_PARAM_SPARSE_ROWS : 0;

    if (!(L->w_in = declare(L, cfg->scope, "w_in.weight", 2, d_ff, L->d, FL_INIT_NORMAL, FL_PARAM_DECAY, err)) ||
        !(L->w_out = declare(L, cfg->scope, "w_out.weight", 2, d_ff, L->d, FL_INIT_NORMAL,
                             FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT | lazy, err)) ||
        !(L->b_out = declare(L, cfg->scope, "w_out.bias", 1, L->d, 1, FL_INIT_ZEROS, 0, err))) {
        template_destroy(L); /* parameters declared so far stay with the host */
        return err ? err->code : FL_EINVAL;
    }
    *out = L;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* forward                                                                    */
/* ------------------------------------------------------------------------ */

/* Makes t an owned [rows, cols] tensor; reallocates only when it grows. */
static fl_status ensure(layer *L, fl_tensor *t, int32_t dtype, int64_t rows, int64_t cols, fl_error *err) {
    int64_t shape[2] = {rows, cols};
    return L->host->tensor_ensure(L->host, t, dtype, cols ? 2 : 1, shape, err);
}

static fl_status ensure_forward(layer *L, int64_t n, fl_error *err) {
    fl_status st = ensure(L, &L->h, FL_F32, n, L->d_ff, err);
    if (!st) st = ensure(L, &L->s, FL_F32, n, L->k, err);
    if (!st) st = ensure(L, &L->u, FL_I32, n, L->k, err);
    if (!st) st = ensure(L, &L->a, FL_F32, n, L->k, err);
    if (!st) st = ensure(L, &L->sq, FL_F32, n, 0, err);
    if (!st) st = ensure(L, &L->count, FL_I32, L->d_ff, 0, err);
    return st;
}

/* Training with noise > 0: normal noise on the scores, drawn from
   ctx->rng_key. The host gives each layer and step its own key, so the
   noise is reproducible (resume is bit-identical, the conformance suite can
   repeat a forward) and identical on every backend. Eval adds none. */
static fl_status add_noise(layer *L, const fl_ffn_ctx *ctx, int64_t n, fl_error *err) {
    if (!ctx->train || L->noise <= 0) return FL_OK;
    fl_status st = ensure(L, &L->eps, FL_F32, n, L->d_ff, err);
    if (st) return st;
    L->host->ops->rng_normal(&L->eps, ctx->rng_key, 0, 0.0f, L->noise);
    L->host->ops->axpby(1.0f, &L->eps, 1.0f, &L->h);
    return FL_OK;
}

/* act_l2 * mean(a^2): the one number aux_loss reports. Reading N floats back
   to the host is cheap next to the layer's GEMM. */
static void compute_aux(layer *L, int64_t n) {
    L->aux = 0.0f;
    if (L->act_l2 <= 0) return;
    L->host->ops->row_dot(&L->a, &L->a, &L->sq);  /* sq[N] = Σ_j a² */
    float *rows = malloc((size_t)n * sizeof *rows);
    if (!rows) return;
    L->host->ops->to_host(rows, &L->sq, (size_t)n * sizeof *rows);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += rows[i];
    free(rows);
    L->aux = (float)(L->act_l2 * sum / (double)(n * L->k));
}

/* forward: y must be written completely (its old contents are garbage), x
   must not be written; whatever backward needs is saved in the layer. */
static fl_status template_forward(void *ptr, const fl_ffn_ctx *ctx, const fl_tensor *x, fl_tensor *y,
                                  fl_error *err) {
    layer *L = ptr;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "template", "x", x, L->d, &n, err); /* [B,T,d] or [N,d]: n rows */
    if (!st) st = ensure_forward(L, n, err);
    if (st) return st;
    L->x = fl_view2(x, n, L->d);
    fl_tensor y2 = fl_view2(y, n, L->d);

    ops->gemm(0, 1, 1.0f, &L->x, &L->w_in->value, 0.0f, &L->h);  /* h = x · W_inᵀ  [N,d_ff] */
    if ((st = add_noise(L, ctx, n, err))) return st;
    ops->topk(&L->h, (int)L->k, &L->s, &L->u);                   /* s, u  [N,k] */
    if ((st = units_count(L->host, &L->u, L->d_ff, &L->count, err))) return st; /* count[d_ff] */
    ops->activation(L->act, &L->s, &L->a);                       /* a = act(s) */
    ops->embedding_bag(&L->w_out->value, &L->u, &L->a, &y2);     /* y = Σ_j a_j W_out[u_j] */
    ops->add_bias(&y2, &L->b_out->value);
    compute_aux(L, n);
    L->n = n;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* backward                                                                   */
/* ------------------------------------------------------------------------ */

/* backward: same ctx as the forward of this step. dx is overwritten;
   parameter gradients are accumulated (+=) because the host may run several
   micro-batches before an optimizer step. The aux loss enters the total loss
   with weight 1, so its gradient is added here too. */
static fl_status template_backward(void *ptr, const fl_ffn_ctx *ctx, const fl_tensor *dy, fl_tensor *dx,
                                   fl_error *err) {
    (void)ctx; /* the noise only moved the selection; it has no gradient */
    layer *L = ptr;
    const fl_host *H = L->host;
    const fl_ops *ops = H->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "template", "dy", dy, L->d, &n, err);
    if (st) return st;
    if (n != L->n)
        return H->error(err, FL_EINVAL, "template: backward of %lld rows after a forward of %lld",
                        (long long)n, (long long)L->n);
    if ((st = ensure(L, &L->da, FL_F32, n, L->k, err)) || (st = ensure(L, &L->ds, FL_F32, n, L->k, err)))
        return st;
    fl_tensor dy2 = fl_view2(dy, n, L->d), dx2 = fl_view2(dx, n, L->d);

    ops->sum_rows(&dy2, 1.0f, &L->b_out->grad);                  /* db_out += Σ_rows dy */
    /* dW_out[u_j] += a_j dy  and  da_j = dy · W_out[u_j] */
    ops->embedding_bag_backward(&dy2, &L->w_out->value, &L->u, &L->a, &L->w_out->grad, &L->da);
    if (L->w_out->flags & FL_PARAM_SPARSE_ROWS) H->param_touch_rows(H, L->w_out, &L->u);
    if (L->act_l2 > 0)                                           /* d(aux)/da = 2 c a / (N k) */
        ops->axpby(2.0f * L->act_l2 / (float)(n * L->k), &L->a, 1.0f, &L->da);
    ops->activation_backward(L->act, &L->s, &L->da, &L->ds);     /* ds = act'(s) da */
    /* dW_in[u_j] += ds_j x  (the scores of units not kept had no effect) */
    ops->embedding_bag_backward(&L->x, &L->w_in->value, &L->u, &L->ds, &L->w_in->grad, NULL);
    ops->embedding_bag(&L->w_in->value, &L->u, &L->ds, &dx2);    /* dx = Σ_j ds_j W_in[u_j] */
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* aux_loss, stats                                                            */
/* ------------------------------------------------------------------------ */

/* Both write at most max entries and return how many there are, so the
   host can ask with max = 0 first. Names are logged as they are. */
static int template_aux_loss(void *ptr, fl_stat *out, int max) {
    const layer *L = ptr;
    if (L->act_l2 <= 0) return 0;
    if (max > 0) out[0] = (fl_stat){"act_l2", L->aux};
    return 1;
}

/* The fraction of units no token kept in the last forward (dead units, the
   known failure of top-k layers); 0 before any forward. */
static double unused_fraction(const layer *L) {
    if (L->n == 0) return 0.0;
    int32_t *c = malloc((size_t)L->d_ff * sizeof *c);
    if (!c) return 0.0;
    L->host->ops->to_host(c, &L->count, (size_t)L->d_ff * sizeof *c);
    int64_t unused = 0;
    for (int64_t j = 0; j < L->d_ff; j++) unused += c[j] == 0;
    free(c);
    return (double)unused / (double)L->d_ff;
}

/* "active_params" and "flops_per_token" are the standard figures the
   reports compare layers by: parameters a token actually uses and forward
   matmul FLOPs per token (a multiply-add is 2). Here all of W_in is read to
   score the units, but only k rows of W_out. */
static int template_stats(void *ptr, fl_stat *out, int max) {
    const layer *L = ptr;
    fl_stat all[] = {
        {"active_params", (double)(L->d_ff * L->d + L->k * L->d + L->d)},
        {"flops_per_token", (double)(2 * L->d * L->d_ff + 2 * L->k * L->d)},
        {"kept_fraction", (double)L->k / (double)L->d_ff},
        {"unused_fraction", unused_fraction(L)},
    };
    int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n && i < max; i++) out[i] = all[i];
    return n;
}

/* ------------------------------------------------------------------------ */
/* The descriptor: the one exported symbol                                    */
/* ------------------------------------------------------------------------ */

/* The host checks magic, ABI version, struct_size, kind and that .name is
   the file stem after "ffn_" before it calls anything. Optional functions
   (aux_loss, stats) may be NULL. .devices lists the devices the plugin runs
   on: FL_DEVICES_BUILT is the CPU, plus CUDA when units.cu was compiled in;
   a host on another device refuses the plugin with one line. */
/* What `ffnlab sweep --match` may change to size this layer (ffn.h). */
static const char *const SIZE_OPTIONS[] = {"d_ff", NULL};

static const fl_ffn_plugin DESCRIPTOR = {
    .header = {
        .magic = FL_PLUGIN_MAGIC,
        .abi_major = FL_FFN_ABI_MAJOR,
        .abi_minor = FL_FFN_ABI_MINOR,
        .struct_size = sizeof(fl_ffn_plugin),
        .kind = FL_PLUGIN_FFN,
        .name = "template",
        .version = "0.1.0",
        .description = "example top-k MLP: each token keeps the k best of d_ff units (copy me)",
        .options = OPTIONS,
        .n_options = N_OPTIONS,
    },
    .devices = FL_DEVICES_BUILT,
    .create = template_create,
    .forward = template_forward,
    .backward = template_backward,
    .aux_loss = template_aux_loss,
    .stats = template_stats,
    .destroy = template_destroy,
    .size_options = SIZE_OPTIONS,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &DESCRIPTOR.header; }
