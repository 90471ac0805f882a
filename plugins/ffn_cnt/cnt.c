/*
 * plugins/ffn_cnt/cnt.c — the controller feedforward network ("Sparse FF")
 * of Jaszczur et al., "Sparse is Enough in Scaling Transformers" (NeurIPS
 * 2021), as an ffnlab FFN plugin; trax's SparseFF is the reference.
 *
 * The d_ff hidden units are split into n_blocks = d_ff / block blocks of
 * `block` units. A low-rank controller scores every unit,
 *
 *     l = (x · C1) · C2 + c2_b        x[N,d]  C1[d,rank]  C2[rank,d_ff]
 *
 * and one unit per block is kept. Inference (ctx->train == 0) keeps each
 * block's argmax u_j and computes only those units:
 *
 *     h_j = act(x · W1[:,u_j] + b1[u_j]),   y = Σ_j h_j · W2[u_j,:] + b2
 *
 * n_blocks dot products and row updates per token instead of d_ff: the
 * point of the layer. Training perturbs the logits with Gumbel noise g and
 * trains the controller with the straight-through Gumbel-softmax estimator:
 * per block z = (l + noise g) / temperature, s = softmax(z); the forward uses
 * the hard one-hot of argmax z, the backward the gradient of s. noise = 1 is
 * the textbook estimator (units sampled from softmax(l)); the default 0.1 is
 * trax's, whose sample is argmax(log softmax(l) + temperature g) with
 * temperature 0.1, and which learned markedly better here (README). Every
 * unit's activation enters that gradient (dL/ds_i = dL/dm_i = (dy·W2ᵀ)_i a_i),
 * so training computes the whole hidden layer, masked:
 *
 *     a = act(x · W1 + b1),   y = (a ⊙ mask) · W2 + b2
 *
 * On a host whose ops have bias_activation, pre = x · W1 is kept without
 * b1 and a = act(pre + b1) is one pass over the [N,d_ff] hidden layer
 * instead of two; the backward likewise takes act' and b1's gradient in one
 * pass (as the dense plugin does).
 *
 * Options from trax: soft_mix, the probability that a training batch uses the
 * soft mask s itself instead of the hard one (trax's quant_prob is 1 minus
 * it), and multiply_by_controller, which also scales each kept unit by the
 * controller's plain softmax p = softmax_block(l) (in inference too).
 *
 * Noise: the Gumbel noise g of logit (n, j) is -log(-log(fl_rng_uniform(
 * ctx->rng_key, n * d_ff + j))); the soft_mix draw is fl_rng_uniform(
 * fl_rng_key(ctx->rng_key, "cnt.soft_mix"), 0). So a step is a pure function
 * of the key, and tests can rebuild the same selection.
 *
 * Devices: the block selection (block_select, its backward, block_argmax)
 * is this plugin's own kernels (cnt_select.h: C on the CPU, CUDA on a GPU);
 * the rest is host->ops. Training reads no tensor data itself. Inference has two
 * implementations of its sparse pair (gathered dot products with the kept
 * columns of W1, weighted sum of the kept rows of W2):
 *   - on the CPU, the plugin's tuned kernels (cnt_kernels.c) on packed
 *     copies of the weights, which it reads and hashes directly;
 *   - anywhere else (or with kernels=host, so the CPU can test it), host ops:
 *     W1ᵀ by permute01, then embedding_bag_backward's dw for the dot
 *     products and embedding_bag for the weighted rows.
 */
#include <stdint.h>          /* int64_t */
#include <stdlib.h>          /* calloc, free */

#include "ffnlab/ffn.h"      /* fl_ffn_plugin, fl_ffn_config, fl_ffn_ctx */
#include "ffnlab/host.h"     /* fl_host, fl_ops, fl_param_spec, fl_option */
#include "ffnlab/plugin.h"   /* FL_EXPORT, FL_PLUGIN_MAGIC */
#include "ffnlab/rng.h"      /* fl_rng_key, fl_rng_uniform */
#include "ffnlab/tensor.h"   /* fl_tensor, fl_view2 */

#include "cnt_kernels.h"
#include "cnt_select.h"

/* ------------------------------------------------------------------------ */
/* Options                                                                    */
/* ------------------------------------------------------------------------ */

enum { OPT_D_FF, OPT_BLOCK, OPT_RANK, OPT_ACTIVATION, OPT_TEMPERATURE, OPT_NOISE,
       OPT_SOFT_MIX, OPT_MULTIPLY, OPT_KERNELS, OPT_BLOCKS, N_OPTIONS };

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_D_FF] = {"d_ff", FL_OPT_INT, NULL, 1, 1 << 20, NULL,
                  "hidden units in total (default 4 * d_model); a multiple of block"},
    [OPT_BLOCK] = {"block", FL_OPT_INT, NULL, 1, 1 << 16, NULL,
                   "units per block, one of each block active per token (default 32, or d_ff / blocks)"},
    [OPT_RANK] = {"rank", FL_OPT_INT, NULL, 1, 1 << 16, NULL,
                  "controller rank (default max(1, d_model / block): the controller then costs "
                  "a fixed fraction of the kept units)"},
    [OPT_ACTIVATION] = {"activation", FL_OPT_ENUM, "relu", 0, -1, "gelu|relu|silu",
                        "nonlinearity of the units; relu as in the paper and trax"},
    [OPT_TEMPERATURE] = {"temperature", FL_OPT_FLOAT, "0.1", 0, -1, NULL,
                         "Gumbel-softmax temperature (> 0) of the straight-through gradient"},
    [OPT_NOISE] = {"noise", FL_OPT_FLOAT, "0.1", 0, 1e6, NULL,
                   "scale of the Gumbel noise in training: 0.1 as trax, 1 samples from "
                   "softmax(logits), 0 takes the argmax"},
    [OPT_SOFT_MIX] = {"soft_mix", FL_OPT_FLOAT, "0", 0, 1, NULL,
                      "probability that a training batch uses the soft mask instead of the hard one"},
    [OPT_MULTIPLY] = {"multiply_by_controller", FL_OPT_BOOL, "false", 0, -1, NULL,
                      "scale each kept unit by the controller's softmax probability"},
    [OPT_KERNELS] = {"kernels", FL_OPT_ENUM, "auto", 0, -1, "auto|host",
                     "inference's sparse pair: auto = the plugin's packed kernels on the CPU, "
                     "host ops elsewhere; host = host ops everywhere"},
    [OPT_BLOCKS] = {"blocks", FL_OPT_INT, NULL, 1, 1 << 20, NULL,
                    "number of blocks N, the units active per token (block = d_ff / N; the study's "
                    "N = 16/32/64); an alternative to block"},
};

/* The ENUM index of "auto|host". */
enum { KERNELS_AUTO = 0, KERNELS_HOST = 1 };

/* The ENUM index of "gelu|relu|silu" → the host's activation code. */
static const int ACTIVATIONS[] = {FL_ACT_GELU, FL_ACT_RELU, FL_ACT_SILU};
#define N_ACTIVATIONS ((int)(sizeof ACTIVATIONS / sizeof ACTIVATIONS[0]))

/* ------------------------------------------------------------------------ */
/* The layer                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct cnt {
    const fl_host *host;
    int64_t d, d_ff, block, nb, rank;
    int act;                   /* FL_ACT_* */
    float inv_tau;             /* 1 / temperature */
    float noise;               /* Gumbel noise scale */
    double soft_mix;
    int mbc;                   /* multiply_by_controller */
    int cpu_kernels;           /* inference uses cnt_kernels.c (CPU, kernels=auto) */
    int fused;                 /* the host has bias_activation (top of file) */
    fl_param *fc_w, *fc_b;     /* c_fc.weight [d,d_ff], c_fc.bias [d_ff] */
    fl_param *proj_w, *proj_b; /* c_proj.weight [d_ff,d], c_proj.bias [d] */
    fl_param *c1, *c2, *c2_b;  /* controller.c1.weight [d,rank], .c2.weight [rank,d_ff], .c2.bias [d_ff] */

    /* The last forward. */
    int64_t n;                 /* rows; 0 before any forward */
    int train;                 /* its mode */
    int soft;                  /* training: it used the soft mask */

    /* Saved by a training forward for backward. x is a view of the caller's
       input, which the host keeps unchanged until backward (see dense.c). */
    fl_tensor x;               /* [N,d] view */
    fl_tensor c;               /* [N,rank] x · C1 */
    fl_tensor l;               /* [N,d_ff] logits; backward reuses it for dL/dl */
    fl_tensor pre, a;          /* [N,d_ff] x · W1 + b1 (fused: x · W1) and a */
    fl_tensor s, p;            /* [N,d_ff] Gumbel-softmax probabilities; softmax(l) (mbc) */
    fl_tensor hm;              /* [N,d_ff] a * mask (* p): input of c_proj */
    fl_tensor idx;             /* [N,n_blocks] i32 selected unit of each block */
    fl_tensor dhm, dc;         /* backward scratch [N,d_ff], [N,rank] */

    /* Inference. */
    fl_tensor h, pmax;         /* [N,n_blocks] selected units' activations; p of them (mbc) */
    fl_tensor p1, p2;          /* CPU kernels: c_fc.weight, c_proj.weight packed */
    fl_tensor w1t, hb;         /* host ops: c_fc.weightᵀ [d_ff,d]; b1[idx] [N,n_blocks] */
    int packed_stale;          /* see refresh_packed */
    const void *packed_src[2];
    uint64_t packed_fp[2];
} cnt;

/* Parameters each token reads and matmul FLOPs per token (2 per
   multiply-add, matmuls only, as ffn_dense counts) for the mode of the last
   forward: training computes all d_ff units, inference n_blocks. The
   controller runs in both. Before any forward: training's figures, which
   are what the host's throughput accounting needs. */
static int64_t controller_params(const cnt *L) { return L->d * L->rank + L->rank * L->d_ff + L->d_ff; }
static int64_t active_units(const cnt *L) { return L->n && !L->train ? L->nb : L->d_ff; }
static int64_t active_params(const cnt *L) {
    return active_units(L) * (2 * L->d + 1) + L->d + controller_params(L);
}
static int64_t flops_per_token(const cnt *L) {
    return 4 * L->d * active_units(L) + 2 * L->d * L->rank + 2 * L->rank * L->d_ff;
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

/* GPT-2 init and flags for the unit weights (c_proj scaled as a residual
   output); the controller's matrices normal(0, 0.02) without weight decay,
   its bias zero: at init every unit of a block is equally likely. */
static fl_status declare_params(cnt *L, fl_param_scope *scope, fl_error *err) {
    const fl_host *H = L->host;
    int64_t d = L->d, f = L->d_ff, r = L->rank;
    if (!(L->fc_w = declare(H, scope, "c_fc.weight", 2, d, f, FL_INIT_NORMAL, FL_PARAM_DECAY, err)) ||
        !(L->fc_b = declare(H, scope, "c_fc.bias", 1, f, 1, FL_INIT_ZEROS, 0, err)) ||
        !(L->proj_w = declare(H, scope, "c_proj.weight", 2, f, d, FL_INIT_NORMAL,
                              FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT, err)) ||
        !(L->proj_b = declare(H, scope, "c_proj.bias", 1, d, 1, FL_INIT_ZEROS, 0, err)) ||
        !(L->c1 = declare(H, scope, "controller.c1.weight", 2, d, r, FL_INIT_NORMAL, 0, err)) ||
        !(L->c2 = declare(H, scope, "controller.c2.weight", 2, r, f, FL_INIT_NORMAL, 0, err)) ||
        !(L->c2_b = declare(H, scope, "controller.c2.bias", 1, f, 1, FL_INIT_ZEROS, 0, err)))
        return err ? err->code : FL_EINVAL;
    return FL_OK;
}

static void cnt_destroy(void *layer) {
    cnt *L = layer;
    if (!L) return;
    fl_tensor *owned[] = {&L->c, &L->l, &L->pre, &L->a, &L->s, &L->p, &L->hm, &L->idx,
                          &L->dhm, &L->dc, &L->h, &L->pmax, &L->p1, &L->p2, &L->w1t, &L->hb};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) L->host->tensor_release(L->host, owned[i]);
    free(L);
}

/* Reads and checks the options (the host has range-checked each already;
   create still refuses combinations and values a careless host let through). */
static fl_status read_options(cnt *L, const fl_host *host, const fl_ffn_config *cfg, fl_error *err) {
    const fl_value *v = cfg->values;
    int64_t d = cfg->d_model;
    L->d = d;
    L->d_ff = v && v[OPT_D_FF].present ? v[OPT_D_FF].i : 4 * d;
    const int64_t blocks = v && v[OPT_BLOCKS].present ? v[OPT_BLOCKS].i : 0;
    const int block_given = v && v[OPT_BLOCK].present;
    L->block = block_given ? v[OPT_BLOCK].i : 32;
    int64_t act = v && v[OPT_ACTIVATION].present ? v[OPT_ACTIVATION].i : 1;
    double tau = v && v[OPT_TEMPERATURE].present ? v[OPT_TEMPERATURE].f : 0.1;
    double noise = v && v[OPT_NOISE].present ? v[OPT_NOISE].f : 0.1;
    L->soft_mix = v && v[OPT_SOFT_MIX].present ? v[OPT_SOFT_MIX].f : 0.0;
    L->mbc = v && v[OPT_MULTIPLY].present ? v[OPT_MULTIPLY].i != 0 : 0;
    int64_t kernels = v && v[OPT_KERNELS].present ? v[OPT_KERNELS].i : KERNELS_AUTO;
    if (L->d_ff < 1 || L->d_ff > (1 << 20))
        return host->error(err, FL_EINVAL, "cnt: d_ff = %lld is out of range [1, 1048576]", (long long)L->d_ff);
    if (blocks) {
        if (block_given && L->block * blocks != L->d_ff)
            return host->error(err, FL_EINVAL, "cnt: block = %lld and blocks = %lld disagree with d_ff = %lld "
                               "(give one of them)", (long long)L->block, (long long)blocks, (long long)L->d_ff);
        if (L->d_ff % blocks)
            return host->error(err, FL_EINVAL, "cnt: d_ff = %lld is not a multiple of blocks = %lld",
                               (long long)L->d_ff, (long long)blocks);
        L->block = L->d_ff / blocks;
    }
    if (L->block < 1 || L->d_ff % L->block)
        return host->error(err, FL_EINVAL, "cnt: d_ff = %lld is not a multiple of block = %lld",
                           (long long)L->d_ff, (long long)L->block);
    L->nb = L->d_ff / L->block;
    /* Rank d_model / block keeps the controller (2 rank (d + d_ff) FLOPs per
       token) at (d + d_ff) / (2 d_ff) of the kept units (4 d n_blocks), e.g.
       5/8 at d_ff = 4d, whatever the block; a fixed d/16 would cost more than
       the kept units themselves from block 32 on. README: measurements. */
    int64_t def_rank = d / L->block > 1 ? d / L->block : 1;
    L->rank = v && v[OPT_RANK].present ? v[OPT_RANK].i : def_rank;
    if (L->rank < 1 || L->rank > (1 << 16))
        return host->error(err, FL_EINVAL, "cnt: rank = %lld is out of range [1, 65536]", (long long)L->rank);
    if (act < 0 || act >= N_ACTIVATIONS)
        return host->error(err, FL_EINVAL, "cnt: activation index %lld is not one of gelu|relu|silu",
                           (long long)act);
    L->act = ACTIVATIONS[act];
    if (!(tau > 0.0) || !(tau < 1e30))
        return host->error(err, FL_EINVAL, "cnt: temperature = %g must be > 0", tau);
    L->inv_tau = (float)(1.0 / tau);
    if (!(noise >= 0.0 && noise <= 1e6))
        return host->error(err, FL_EINVAL, "cnt: noise = %g is outside [0, 1e6]", noise);
    L->noise = (float)noise;
    if (!(L->soft_mix >= 0.0 && L->soft_mix <= 1.0))
        return host->error(err, FL_EINVAL, "cnt: soft_mix = %g is outside [0, 1]", L->soft_mix);
    if (kernels != KERNELS_AUTO && kernels != KERNELS_HOST)
        return host->error(err, FL_EINVAL, "cnt: kernels index %lld is not one of auto|host",
                           (long long)kernels);
    /* the packed kernels read tensor data as host memory: the CPU only */
    L->cpu_kernels = kernels == KERNELS_AUTO && host->device.kind == FL_DEVICE_CPU;
    L->fused = FL_OPS_HAS(host->ops, bias_activation) && FL_OPS_HAS(host->ops, bias_activation_backward);
    return FL_OK;
}

static fl_status cnt_create(const fl_host *host, const fl_ffn_config *cfg, void **layer,
                            fl_error *err) {
    *layer = NULL;
    if (cfg->d_model < 1)
        return host->error(err, FL_EINVAL, "cnt: d_model %d must be positive", (int)cfg->d_model);
    cnt *L = calloc(1, sizeof *L);
    if (!L) return host->error(err, FL_ENOMEM, "cnt: out of memory");
    L->host = host;
    L->packed_stale = 1;
    fl_status st = read_options(L, host, cfg, err);
    if (!st) st = declare_params(L, cfg->scope, err);
    if (st) {
        cnt_destroy(L); /* the params already declared belong to the host */
        return st;
    }
    *layer = L;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                    */
/* ------------------------------------------------------------------------ */

static fl_status ensure(cnt *L, fl_tensor *t, int32_t dtype, int64_t rows, int64_t cols,
                        fl_error *err) {
    int64_t shape[2] = {rows, cols};
    return L->host->tensor_ensure(L->host, t, dtype, 2, shape, err);
}

/* Tensor data as host memory: for the CPU kernels (cpu_kernels) only. */
static float *f32(const fl_tensor *t) { return (float *)t->data; }
static int32_t *i32(const fl_tensor *t) { return (int32_t *)t->data; }

/* out = x · W + b (b NULL: x · W) */
static void linear(const fl_ops *ops, const fl_tensor *x, const fl_param *w, const fl_param *b,
                   fl_tensor *out) {
    ops->gemm(0, 0, 1.0f, x, &w->value, 0.0f, out);
    if (b) ops->add_bias(out, &b->value);
}

/* ------------------------------------------------------------------------ */
/* Training forward and backward                                              */
/* ------------------------------------------------------------------------ */

static fl_status forward_train(cnt *L, const fl_ffn_ctx *ctx, int64_t n, fl_tensor *y,
                               fl_error *err) {
    const fl_ops *ops = L->host->ops;
    const int64_t F = L->d_ff;
    fl_status st = ensure(L, &L->c, FL_F32, n, L->rank, err);
    fl_tensor *big[] = {&L->l, &L->pre, &L->a, &L->s, &L->hm};
    for (size_t i = 0; !st && i < sizeof big / sizeof big[0]; i++) st = ensure(L, big[i], FL_F32, n, F, err);
    if (!st && L->mbc) st = ensure(L, &L->p, FL_F32, n, F, err);
    if (!st) st = ensure(L, &L->idx, FL_I32, n, L->nb, err);
    if (st) return st;

    ops->gemm(0, 0, 1.0f, &L->x, &L->c1->value, 0.0f, &L->c);  /* c[N,rank] */
    linear(ops, &L->c, L->c2, L->c2_b, &L->l);                  /* l[N,d_ff] */
    linear(ops, &L->x, L->fc_w, L->fused ? NULL : L->fc_b, &L->pre);  /* pre[N,d_ff] */
    if (L->fused)
        ops->bias_activation(L->act, &L->pre, &L->fc_b->value, &L->a); /* a = act(pre + b1) */
    else
        ops->activation(L->act, &L->pre, &L->a);                       /* a = act(pre) */
    L->soft = fl_rng_uniform(fl_rng_key(ctx->rng_key, "cnt.soft_mix"), 0) < L->soft_mix;
    st = cnt_block_select(L->host, &L->l, &L->a, (int)L->block, L->noise, L->inv_tau, ctx->rng_key, L->soft,
                          &L->s, L->mbc ? &L->p : NULL, &L->idx, &L->hm, err); /* s, p, idx, hm */
    if (st) return st;
    linear(ops, &L->hm, L->proj_w, L->proj_b, y);               /* y[N,d] */
    /* The optimizer may change the weights after this step: the next
       inference forward repacks them (see refresh_packed). */
    L->packed_stale = 1;
    return FL_OK;
}

/* dW += xᵀ · dz, db += Σ_rows dz (b NULL: dW only), for one linear map z = x · W + b. */
static void linear_wgrad(const fl_ops *ops, const fl_tensor *x, const fl_tensor *dz, fl_param *w,
                         fl_param *b) {
    ops->gemm(1, 0, 1.0f, x, dz, 1.0f, &w->grad);
    if (b) ops->sum_rows(dz, 1.0f, &b->grad);
}

static fl_status cnt_backward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy,
                              fl_tensor *dx, fl_error *err) {
    (void)ctx; /* the forward saved its selection */
    cnt *L = layer;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "cnt", "dy", dy, L->d, &n, err);
    if (st) return st;
    if (!L->n || !L->train)
        return L->host->error(err, FL_EINVAL, "cnt: backward needs a training forward before it");
    if (n != L->n)
        return L->host->error(err, FL_EINVAL, "cnt: backward of %lld rows after a forward of %lld",
                              (long long)n, (long long)L->n);
    st = ensure(L, &L->dhm, FL_F32, n, L->d_ff, err);
    if (!st) st = ensure(L, &L->dc, FL_F32, n, L->rank, err);
    if (st) return st;
    fl_tensor dy2 = fl_view2(dy, n, L->d), dx2 = fl_view2(dx, n, L->d);
    fl_tensor *dl = &L->l; /* the logits are not needed any more */

    linear_wgrad(ops, &L->hm, &dy2, L->proj_w, L->proj_b);          /* dW2, db2 */
    ops->gemm(0, 1, 1.0f, &dy2, &L->proj_w->value, 0.0f, &L->dhm);  /* dhm = dy · W2ᵀ */
    st = cnt_block_select_backward(L->host, &L->a, &L->s, L->mbc ? &L->p : NULL, &L->idx, (int)L->block,
                                   L->inv_tau, L->soft, &L->dhm, dl, err); /* da over dhm; dl */
    if (st) return st;
    if (L->fused) /* dpre = act'(pre + b1) da, db1 */
        ops->bias_activation_backward(L->act, &L->pre, &L->fc_b->value, &L->dhm, &L->dhm, &L->fc_b->grad);
    else
        ops->activation_backward(L->act, &L->pre, &L->dhm, &L->dhm); /* dpre = act'(pre) da */
    linear_wgrad(ops, &L->x, &L->dhm, L->fc_w, L->fused ? NULL : L->fc_b); /* dW1, db1 unless fused */
    ops->gemm(0, 1, 1.0f, &L->dhm, &L->fc_w->value, 0.0f, &dx2);    /* dx = dpre · W1ᵀ */
    linear_wgrad(ops, &L->c, dl, L->c2, L->c2_b);                   /* dC2, dc2_b */
    ops->gemm(0, 1, 1.0f, dl, &L->c2->value, 0.0f, &L->dc);         /* dc = dl · C2ᵀ */
    ops->gemm(1, 0, 1.0f, &L->x, &L->dc, 1.0f, &L->c1->grad);       /* dC1 += xᵀ dc */
    ops->gemm(0, 1, 1.0f, &L->dc, &L->c1->value, 1.0f, &dx2);       /* dx += dc · C1ᵀ */
    L->packed_stale = 1;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Inference forward                                                          */
/* ------------------------------------------------------------------------ */

/* The CPU kernels read c_fc.weight and c_proj.weight as packed copies
   (cnt_kernels.h: units as rows, cut into column chunks laid out one after
   the other, so a block group's candidates are contiguous in cache). The
   host may change parameters between any two forwards (optimizer steps,
   checkpoint loads, weight surgery in analysis tools), and inference must
   follow even one changed value, so every inference forward hashes both
   matrices (one streaming pass, about 2% of a 4096-token forward at d 512;
   cnt_fingerprint changes whenever any single value does) and repacks when
   a hash, the buffer, or a training step since the last pack (the optimizer
   steps after it) says they changed. A host "parameter version" counter
   would make the hash unnecessary; for small batches (generation) it costs
   as much as the forward itself. */
static fl_status refresh_packed(cnt *L, fl_error *err) {
    const fl_tensor *w[2] = {&L->fc_w->value, &L->proj_w->value};
    uint64_t fp[2];
    int same = !L->packed_stale;
    for (int i = 0; i < 2; i++) {
        fp[i] = cnt_fingerprint(f32(w[i]), fl_numel(w[i]));
        same = same && L->packed_src[i] == w[i]->data && L->packed_fp[i] == fp[i];
    }
    if (same) return FL_OK; /* the common case: inference between training steps */
    int64_t size = cnt_packed_size(L->d_ff, L->d);
    fl_status st = ensure(L, &L->p1, FL_F32, 1, size, err);
    if (!st) st = ensure(L, &L->p2, FL_F32, 1, size, err);
    if (st) return st;
    cnt_pack(L->d_ff, L->d, f32(w[0]), 1, f32(&L->p1));
    cnt_pack(L->d_ff, L->d, f32(w[1]), 0, f32(&L->p2));
    L->packed_stale = 0;
    for (int i = 0; i < 2; i++) L->packed_src[i] = w[i]->data, L->packed_fp[i] = fp[i];
    return FL_OK;
}

/* The sparse pair on the CPU, the plugin's kernels:
   h = act(x·W1[:,u] + b1[u]) (* pmax), y = Σ h W2[u,:] + b2. */
static fl_status sparse_cpu(cnt *L, int64_t n, fl_tensor *y, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    fl_status st = refresh_packed(L, err);
    if (st) return st;
    cnt_gather_dot(n, L->d, L->d_ff, L->nb, f32(&L->x), f32(&L->p1), i32(&L->idx),
                   f32(&L->fc_b->value), f32(&L->h));              /* h = x·W1[:,u] + b1[u] */
    ops->activation(L->act, &L->h, &L->h);
    if (L->mbc) ops->mul(&L->h, &L->pmax, &L->h);
    cnt_gather_axpy(n, L->d, L->d_ff, L->nb, f32(&L->h), i32(&L->idx), f32(&L->p2),
                    f32(&L->proj_b->value), f32(y));               /* y = Σ h W2[u,:] + b2 */
    return FL_OK;
}

/* The same with host ops only (any device). W1ᵀ is rebuilt every forward:
   one transpose of d·d_ff values, cheap next to the GEMMs on a GPU, and it
   needs no hash of the weights to follow their changes. */
static fl_status sparse_host(cnt *L, int64_t n, fl_tensor *y, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    const int64_t F = L->d_ff, d = L->d, m = n * L->nb;
    fl_status st = ensure(L, &L->w1t, FL_F32, F, d, err);
    if (!st) st = ensure(L, &L->hb, FL_F32, n, L->nb, err);
    if (st) return st;
    ops->permute01(&L->fc_w->value, d, F, 1, &L->w1t);             /* W1t[F,d] = [d,F,1]ᵀ */
    fl_tensor b1 = fl_view2(&L->fc_b->value, F, 1), hb = fl_view2(&L->hb, m, 1);
    fl_tensor units = fl_view2(&L->idx, m, 1);
    ops->gather_rows(&b1, &units, &hb);                            /* hb[N*nb] = b1[u] */
    ops->embedding_bag_backward(&L->x, &L->w1t, &L->idx, NULL, NULL, &L->h); /* h = x·W1t[u] */
    ops->axpby(1.0f, &L->hb, 1.0f, &L->h);                         /* + b1[u] */
    ops->activation(L->act, &L->h, &L->h);
    if (L->mbc) ops->mul(&L->h, &L->pmax, &L->h);
    ops->embedding_bag(&L->proj_w->value, &L->idx, &L->h, y);      /* y = Σ h W2[u,:] */
    ops->add_bias(y, &L->proj_b->value);                           /* + b2 */
    return FL_OK;
}

/* The controller runs as two whole GEMMs and one block_argmax. Computing l
   in tiles of rows that the argmax reads back from the cache (128 or 512
   rows per GEMM) was tried and measured slower on 2 threads here (x0.4 to
   x1.2 against dense instead of x1.5 to x2): the many small GEMMs and
   parallel regions lose more than the 33 MB pass over l costs (README). */
static fl_status forward_eval(cnt *L, int64_t n, fl_tensor *y, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    fl_status st = ensure(L, &L->c, FL_F32, n, L->rank, err);
    if (!st) st = ensure(L, &L->l, FL_F32, n, L->d_ff, err);
    if (!st) st = ensure(L, &L->idx, FL_I32, n, L->nb, err);
    if (!st) st = ensure(L, &L->h, FL_F32, n, L->nb, err);
    if (!st && L->mbc) st = ensure(L, &L->pmax, FL_F32, n, L->nb, err);
    if (st) return st;

    ops->gemm(0, 0, 1.0f, &L->x, &L->c1->value, 0.0f, &L->c);    /* c[N,rank] */
    ops->gemm(0, 0, 1.0f, &L->c, &L->c2->value, 0.0f, &L->l);    /* l[N,d_ff], bias added below */
    st = cnt_block_argmax(L->host, &L->l, &L->c2_b->value, (int)L->block, &L->idx, L->mbc ? &L->pmax : NULL,
                          err);                                     /* idx[N,n_blocks] */
    if (st) return st;
    return L->cpu_kernels ? sparse_cpu(L, n, y, err) : sparse_host(L, n, y, err);
}

static fl_status cnt_forward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x,
                             fl_tensor *y, fl_error *err) {
    cnt *L = layer;
    int64_t n = 0, ny = 0;
    fl_status st = fl_ffn_rows(L->host, "cnt", "x", x, L->d, &n, err);
    if (!st) st = fl_ffn_rows(L->host, "cnt", "y", y, L->d, &ny, err);
    if (st) return st;
    if (ny != n)
        return L->host->error(err, FL_EINVAL, "cnt: y has %lld rows for %lld rows of x",
                              (long long)ny, (long long)n);
    L->x = fl_view2(x, n, L->d);
    fl_tensor y2 = fl_view2(y, n, L->d);
    L->n = 0; /* until this forward succeeds, backward refuses */
    st = ctx->train ? forward_train(L, ctx, n, &y2, err) : forward_eval(L, n, &y2, err);
    if (st) return st;
    L->n = n;
    L->train = ctx->train != 0;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Statistics and the descriptor                                              */
/* ------------------------------------------------------------------------ */

static int cnt_stats(void *layer, fl_stat *out, int max) {
    const cnt *L = layer;
    fl_stat all[] = {
        {"active_params", (double)active_params(L)},
        {"flops_per_token", (double)flops_per_token(L)},
        {"d_ff", (double)L->d_ff},
        {"blocks", (double)L->nb},
        {"active_units", (double)active_units(L)},
    };
    int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n && i < max; i++) out[i] = all[i];
    return n;
}

/* What `ffnlab sweep --match` may change to size this layer (ffn.h). */
static const char *const SIZE_OPTIONS[] = {"d_ff", "rank", NULL};

static const fl_ffn_plugin DESCRIPTOR = {
    .header = {
        .magic = FL_PLUGIN_MAGIC,
        .abi_major = FL_FFN_ABI_MAJOR,
        .abi_minor = FL_FFN_ABI_MINOR,
        .struct_size = sizeof(fl_ffn_plugin),
        .kind = FL_PLUGIN_FFN,
        .name = "cnt",
        .version = "1.0.0",
        .description = "controller-sparse FFN (Jaszczur et al. 2021): one unit per block, "
                       "chosen by a low-rank controller",
        .options = OPTIONS,
        .n_options = N_OPTIONS,
    },
    .devices = FL_DEVICES_BUILT,
    .create = cnt_create,
    .forward = cnt_forward,
    .backward = cnt_backward,
    .aux_loss = NULL,
    .stats = cnt_stats,
    .destroy = cnt_destroy,
    .size_options = SIZE_OPTIONS,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &DESCRIPTOR.header; }
