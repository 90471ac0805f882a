/*
 * plugins/ffn_pkm/pkm.c — product-key memory (PKM) as an ffnlab FFN plugin.
 *
 * Lample, Sablayrolles, Ranzato, Denoyer, Jégou, "Large Memory Layers with
 * Product Keys", NeurIPS 2019 (arXiv:1907.05242); the reference is
 * facebookresearch/XLM, xlm/model/memory/memory.py (HashingMemoryProductFast),
 * whose defaults this plugin keeps: 4 heads, k_dim 256, knn 32, 512 sub-keys
 * per half (512² = 262,144 slots), values normal(0, v_dim^-1/2) trained with
 * Adam at a fixed LR of 1e-3, sub-keys uniform(±1/sqrt(k_dim/2)).
 *
 * For each token x[d] and head h (F = heads * k_dim, half = k_dim / 2):
 *
 *     q      = norm(x · Wq + bq)              [F], head h's part q_h [k_dim]
 *     q1, q2 = the two halves of q_h          [half] each
 *     s1     = q1 · K1_hᵀ, s2 = q2 · K2_hᵀ      [n_keys] each
 *     top-knn of s1 (a ↦ i1[a]) and of s2 (b ↦ i2[b])
 *     top-knn of s1[a] + s2[b] over the knn² pairs: scores σ_j, slots
 *        i1[a_j] * n_keys + i2[b_j]  (= the exact top-knn over all n_keys²
 *        keys concat(K1[i], K2[j]): a key in the true top-knn has both halves
 *        in their halves' top-knn)
 *     out   += Σ_j softmax(σ)_j · V[slot_j]    V [n_keys², v_dim]
 *     y      = out (v_dim = d) or out · Wo     Wo [v_dim, d]
 *
 * Heads' outputs are summed, as XLM does (one embedding bag over heads*knn).
 * Backward reads only what forward selected: the values' gradient touches
 * only the rows read (and marks them with host->param_touch_rows, so the
 * host's lazy AdamW updates only those rows), the sub-keys' gradient only
 * the knn chosen sub-keys per head half, and the softmax gradient flows to
 * the selected pair scores, then to s1/s2 at the chosen positions, to q
 * through the sub-keys, through the norm to Wq, bq and x.
 *
 * Work per token is O(heads·(d·k_dim + n_keys·k_dim + knn·log knn + knn·v_dim))
 * — the value memory itself is never swept. The pair top-k (product_topk)
 * and its gradient are this plugin's own kernels (pkm_topk.h: C on the CPU,
 * CUDA on a GPU); every other step is a host op: GEMMs, dropout, the head
 * transposes (permute01), the norms (batchnorm, layernorm_groups), the
 * sub-key top-k, the softmax gradient, and embedding bags for the value
 * read and the sub-keys' gradient. Two steps
 * have faster CPU forms of the plugin's own (pkm_kernels.c): the value read
 * and its gradient as a *grouped* embedding bag (entries sorted by slot
 * within blocks of tokens, so a value row is loaded once per block rather
 * than once per read — several times faster than the token-ordered host op
 * when slots are read many times per batch), and the sub-keys' gradient for
 * all head halves in one pass. Option kernels=auto uses them on the CPU;
 * kernels=host takes the portable path everywhere (so the CPU tests cover
 * what a GPU runs).
 *
 * Query normalisation: batchnorm (the paper's "query batch normalisation";
 * default), layernorm (per token and head, over k_dim) or none. BatchNorm's
 * running statistics are declared as host parameters so checkpoints carry
 * them (eval mode then behaves the same after a reload); they are marked
 * FL_PARAM_SPARSE_ROWS and no row is ever touched, so the optimizer never
 * changes them and their gradient stays zero — only the forward moves them.
 *
 * This file sees only the public SDK headers.
 */
#include <math.h>            /* log, sqrtf */
#include <stdint.h>          /* int64_t, uint64_t */
#include <stdlib.h>          /* calloc, malloc, free */

#include "ffnlab/ffn.h"      /* fl_ffn_plugin, fl_ffn_config, fl_ffn_ctx */
#include "ffnlab/host.h"     /* fl_host, fl_ops, fl_param_spec, fl_option */
#include "ffnlab/plugin.h"   /* FL_EXPORT, FL_PLUGIN_MAGIC */
#include "ffnlab/rng.h"      /* fl_rng_key */
#include "ffnlab/tensor.h"   /* fl_tensor, fl_view2, fl_rows */

#include "pkm_kernels.h"
#include "pkm_topk.h"

/* ------------------------------------------------------------------------ */
/* Options                                                                    */
/* ------------------------------------------------------------------------ */

enum {
    OPT_HEADS, OPT_K_DIM, OPT_N_KEYS, OPT_KNN, OPT_V_DIM, OPT_QUERY_NORM,
    OPT_INPUT_DROPOUT, OPT_QUERY_DROPOUT, OPT_VALUE_DROPOUT, OPT_VALUE_LR,
    OPT_BN_MOMENTUM, OPT_STATS_WINDOW, OPT_BAG_CHUNK, OPT_KERNELS, N_OPTIONS
};

enum { NORM_BATCH = 0, NORM_LAYER = 1, NORM_NONE = 2 }; /* ENUM index of query_norm */
enum { KERNELS_AUTO = 0, KERNELS_HOST = 1 };             /* ENUM index of kernels */

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_HEADS] = {"heads", FL_OPT_INT, "4", 1, 64, NULL,
                   "memory reading heads; their outputs are summed"},
    [OPT_K_DIM] = {"k_dim", FL_OPT_INT, "256", 2, 8192, NULL,
                   "query/key width per head (even: split into two product halves)"},
    [OPT_N_KEYS] = {"n_keys", FL_OPT_INT, "512", 1, 46340, NULL,
                    "sub-keys per half; the memory has n_keys^2 value slots"},
    [OPT_KNN] = {"knn", FL_OPT_INT, "32", 1, 1024, NULL,
                 "slots read per head and token (and sub-keys kept per half); <= n_keys"},
    [OPT_V_DIM] = {"v_dim", FL_OPT_INT, NULL, 1, 1 << 20, NULL,
                   "value width (default d_model; otherwise an output projection to d_model follows)"},
    [OPT_QUERY_NORM] = {"query_norm", FL_OPT_ENUM, "batchnorm", 0, -1, "batchnorm|layernorm|none",
                        "query normalisation: batchnorm (the paper's; running statistics in eval), "
                        "layernorm per head, or none"},
    [OPT_INPUT_DROPOUT] = {"input_dropout", FL_OPT_FLOAT, "0", 0, 1, NULL,
                           "dropout on the layer input before the query (training only; < 1)"},
    [OPT_QUERY_DROPOUT] = {"query_dropout", FL_OPT_FLOAT, "0", 0, 1, NULL,
                           "dropout on the normalised query (training only; < 1)"},
    [OPT_VALUE_DROPOUT] = {"value_dropout", FL_OPT_FLOAT, "0", 0, 1, NULL,
                           "dropout on the memory output (training only; < 1)"},
    [OPT_VALUE_LR] = {"value_lr", FL_OPT_FLOAT, "1e-3", 0, 10, NULL,
                      "fixed Adam LR of the values (the paper's 1e-3); 0 = follow the run's LR schedule"},
    [OPT_BN_MOMENTUM] = {"bn_momentum", FL_OPT_FLOAT, "0.1", 0, 1, NULL,
                         "batchnorm running-statistics momentum (PyTorch's rule and default)"},
    [OPT_STATS_WINDOW] = {"stats_window", FL_OPT_INT, "100", 1, 1000000000, NULL,
                          "forwards per memory-usage window (memory_usage, kl_uniform)"},
    [OPT_BAG_CHUNK] = {"bag_chunk", FL_OPT_INT, "0", 0, 1 << 30, NULL,
                       "tokens per block of the grouped value read and its gradient (0 = auto); "
                       "speed only, the result is the same"},
    [OPT_KERNELS] = {"kernels", FL_OPT_ENUM, "auto", 0, -1, "auto|host",
                     "auto: the plugin's own value bag and sub-key gradient on the CPU, host ops "
                     "elsewhere; host: host ops everywhere (the portable path)"},
};

#define BN_EPS 1e-5f
#define LN_EPS 1e-5f

/* ------------------------------------------------------------------------ */
/* The layer                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct pkm {
    const fl_host *host;
    int64_t d, H, kd, half, F;     /* F = H * kd: query width */
    int64_t n_keys, slots, knn, v_dim;
    int norm;                      /* NORM_* */
    float p_in, p_q, p_v, momentum;
    int64_t window;                /* forwards per usage window */
    int64_t bag_chunk;             /* option: tokens per value-bag block (0 = auto) */
    int own;                       /* CPU, kernels=auto: pk_subkey_backward and the grouped bag */

    fl_param *wq, *bq;             /* query.weight [d,F], query.bias [F] */
    fl_param *ng, *nb;             /* query_norm.weight, .bias [F] (norm != none) */
    fl_param *rmean, *rvar;        /* query_norm.running_mean, running_var [F] (batchnorm) */
    fl_param *keys;                /* keys [H,2,n_keys,half] */
    fl_param *values;              /* values.weight [slots, v_dim] */
    fl_param *wo;                  /* out_proj.weight [v_dim,d] (v_dim != d) */

    /* What the last forward saved for backward. */
    int64_t n;                     /* rows; -1 before any forward */
    int train;                     /* dropout was applied (train mode) */
    int bn_batch;                  /* batchnorm used batch statistics */
    uint64_t key_in, key_q, key_v; /* dropout streams of that forward */
    fl_tensor x;                   /* [N,d] view of the input (kept alive by the host) */
    fl_tensor xd;                  /* [N,d] query input: x, or xd_buf after dropout */
    fl_tensor qpre;                /* [N,F] x·Wq + bq */
    fl_tensor qn;                  /* [N,F] normalised (+dropout) query: qn_buf or qpre */
    fl_tensor nmean, nrstd;        /* batchnorm [F], layernorm [N*H] */
    fl_tensor qt;                  /* [2H,N,half] query by head half */
    fl_tensor S;                   /* [2H,N,n_keys] sub-key scores (forward scratch) */
    fl_tensor tv, ti;              /* [2H,N,knn] top sub-key scores (f32) and indices (i32) */
    fl_tensor w;                   /* [N,H*knn] softmax weights of the selected slots */
    fl_tensor slot, pair;          /* [N,H*knn] i32 value rows, a << 16 | b */
    fl_tensor out;                 /* [N,v_dim] memory output (with out_proj) */
    int64_t chunk;                 /* own: tokens per block of the grouped value bag */
    fl_tensor etok, ew, epos;      /* own: [N*H*knn] entries by chunk and slot: token, weight, index */
    fl_tensor eoff;                /* own: [chunks*(slots+1)] i64 each (chunk, slot)'s range */
    fl_tensor xd_buf, qn_buf;

    /* Backward scratch. */
    fl_tensor dout, dw, g, gix, dqt, dqn, dqpre;

    /* Memory usage over the current window of forwards, on the device:
       copied to the host only when stats are asked for. */
    fl_tensor reads;               /* [slots,1] reads per slot */
    fl_tensor mass;                /* [slots,1] summed softmax weights per slot */
    fl_tensor ones;                /* [N*H*knn,1] ones: each read counts 1 */
    int64_t win_forwards;
} pkm;

static int64_t active_params(const pkm *L) {
    int64_t p = L->d * L->F + L->F;                    /* query projection */
    if (L->norm != NORM_NONE) p += 2 * L->F;           /* norm affine */
    p += L->H * 2 * L->n_keys * L->half;               /* every sub-key is scored */
    p += L->H * L->knn * L->v_dim;                     /* values read */
    if (L->wo) p += L->v_dim * L->d;
    return p;
}

/* Multiply-adds only, 2 FLOPs each (as the dense plugin counts): query
   projection, sub-key scores, the weighted value sum, the output projection.
   Top-k, pair sums, softmax and norms are O(heads·(n_keys + knn·log knn)). */
static int64_t flops_per_token(const pkm *L) {
    int64_t f = 2 * L->d * L->F + 2 * L->H * L->n_keys * L->kd + 2 * L->H * L->knn * L->v_dim;
    if (L->wo) f += 2 * L->v_dim * L->d;
    return f;
}

static fl_param *declare(const fl_host *host, fl_param_scope *scope, const char *name, int ndim,
                         const int64_t *shape, int init, float scale, uint32_t flags, float lr,
                         fl_error *err) {
    fl_param_spec spec = {0};
    spec.name = name;
    spec.ndim = ndim;
    for (int i = 0; i < ndim; i++) spec.shape[i] = shape[i];
    spec.init = init;
    spec.init_scale = scale;
    spec.flags = flags;
    spec.lr = lr;
    return host->param(host, scope, &spec, err);
}

/* Names and inits follow XLM where it has them (see README.md). */
static fl_status declare_params(pkm *L, fl_param_scope *scope, float value_lr, fl_error *err) {
    const fl_host *H = L->host;
    const int64_t s_wq[] = {L->d, L->F}, s_f[] = {L->F};
    const int64_t s_keys[] = {L->H, 2, L->n_keys, L->half};
    const int64_t s_val[] = {L->slots, L->v_dim}, s_wo[] = {L->v_dim, L->d};
#define DECL(field, ...) \
    if (!(L->field = declare(H, scope, __VA_ARGS__, err))) return err ? err->code : FL_EINVAL
    DECL(wq, "query.weight", 2, s_wq, FL_INIT_NORMAL, 0.02f, FL_PARAM_DECAY, 0.0f);
    DECL(bq, "query.bias", 1, s_f, FL_INIT_ZEROS, 0.0f, 0, 0.0f);
    if (L->norm != NORM_NONE) {
        DECL(ng, "query_norm.weight", 1, s_f, FL_INIT_ONES, 0.0f, 0, 0.0f);
        DECL(nb, "query_norm.bias", 1, s_f, FL_INIT_ZEROS, 0.0f, 0, 0.0f);
    }
    if (L->norm == NORM_BATCH) { /* buffers: never touched, so never optimized */
        DECL(rmean, "query_norm.running_mean", 1, s_f, FL_INIT_ZEROS, 0.0f, FL_PARAM_SPARSE_ROWS, 0.0f);
        DECL(rvar, "query_norm.running_var", 1, s_f, FL_INIT_ONES, 0.0f, FL_PARAM_SPARSE_ROWS, 0.0f);
    }
    DECL(keys, "keys", 4, s_keys, FL_INIT_UNIFORM, 1.0f / sqrtf((float)L->half), 0, 0.0f);
    DECL(values, "values.weight", 2, s_val, FL_INIT_NORMAL, 1.0f / sqrtf((float)L->v_dim),
         FL_PARAM_SPARSE_ROWS, value_lr);
    if (L->v_dim != L->d)
        DECL(wo, "out_proj.weight", 2, s_wo, FL_INIT_NORMAL, 0.02f, FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT, 0.0f);
#undef DECL
    return FL_OK;
}

static void pkm_destroy(void *layer) {
    pkm *L = layer;
    if (!L) return;
    fl_tensor *owned[] = {&L->nmean, &L->nrstd, &L->qpre, &L->qt, &L->S, &L->tv, &L->ti,
                          &L->w, &L->slot, &L->pair, &L->out, &L->xd_buf, &L->qn_buf,
                          &L->dout, &L->dw, &L->g, &L->gix, &L->dqt, &L->dqn, &L->dqpre,
                          &L->etok, &L->ew, &L->epos, &L->eoff, &L->reads, &L->mass, &L->ones};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) L->host->tensor_release(L->host, owned[i]);
    free(L);
}

static double opt_f(const fl_value *v, int i, double def) { return v && v[i].present ? v[i].f : def; }
static int64_t opt_i(const fl_value *v, int i, int64_t def) { return v && v[i].present ? v[i].i : def; }

/* Checks what the option table cannot say alone (combinations, parity,
   half-open ranges), naming the option. */
static fl_status check_options(const fl_host *host, const pkm *L, float value_lr, fl_error *err) {
    if (L->H < 1 || L->H > 64)
        return host->error(err, FL_EINVAL, "pkm: heads = %lld is out of range [1, 64]", (long long)L->H);
    if (L->kd < 2 || L->kd % 2)
        return host->error(err, FL_EINVAL, "pkm: k_dim = %lld must be even and >= 2 (it is split into two halves)",
                           (long long)L->kd);
    if (L->n_keys < 1 || L->n_keys > 46340)
        return host->error(err, FL_EINVAL, "pkm: n_keys = %lld is out of range [1, 46340] (n_keys^2 slots must fit in 31 bits)",
                           (long long)L->n_keys);
    if (L->knn < 1 || L->knn > 1024 || L->knn > L->n_keys)
        return host->error(err, FL_EINVAL, "pkm: knn = %lld must be in [1, min(1024, n_keys = %lld)]",
                           (long long)L->knn, (long long)L->n_keys);
    if (L->v_dim < 1 || L->v_dim > (1 << 20))
        return host->error(err, FL_EINVAL, "pkm: v_dim = %lld is out of range [1, 1048576]", (long long)L->v_dim);
    if (L->norm < NORM_BATCH || L->norm > NORM_NONE)
        return host->error(err, FL_EINVAL, "pkm: query_norm index %d is not one of batchnorm|layernorm|none", L->norm);
    const struct { const char *name; float p; } drops[] = {
        {"input_dropout", L->p_in}, {"query_dropout", L->p_q}, {"value_dropout", L->p_v}};
    for (int i = 0; i < 3; i++)
        if (!(drops[i].p >= 0.0f && drops[i].p < 1.0f))
            return host->error(err, FL_EINVAL, "pkm: %s = %g must be in [0, 1)", drops[i].name, (double)drops[i].p);
    if (!(value_lr >= 0.0f))
        return host->error(err, FL_EINVAL, "pkm: value_lr = %g must be >= 0", (double)value_lr);
    if (!(L->momentum >= 0.0f && L->momentum <= 1.0f))
        return host->error(err, FL_EINVAL, "pkm: bn_momentum = %g must be in [0, 1]", (double)L->momentum);
    if (L->window < 1)
        return host->error(err, FL_EINVAL, "pkm: stats_window = %lld must be >= 1", (long long)L->window);
    if (L->bag_chunk < 0)
        return host->error(err, FL_EINVAL, "pkm: bag_chunk = %lld must be >= 0", (long long)L->bag_chunk);
    return FL_OK;
}

static fl_status usage_create(pkm *L, fl_error *err);

static fl_status pkm_create(const fl_host *host, const fl_ffn_config *cfg, void **layer,
                            fl_error *err) {
    *layer = NULL;
    if (cfg->d_model < 1)
        return host->error(err, FL_EINVAL, "pkm: d_model %d must be positive", (int)cfg->d_model);
    const fl_value *v = cfg->values;
    pkm *L = calloc(1, sizeof *L);
    if (!L) return host->error(err, FL_ENOMEM, "pkm: out of memory");
    L->host = host;
    L->d = cfg->d_model;
    L->H = opt_i(v, OPT_HEADS, 4);
    L->kd = opt_i(v, OPT_K_DIM, 256);
    L->n_keys = opt_i(v, OPT_N_KEYS, 512);
    L->knn = opt_i(v, OPT_KNN, 32);
    L->v_dim = opt_i(v, OPT_V_DIM, L->d);
    L->norm = (int)opt_i(v, OPT_QUERY_NORM, NORM_BATCH);
    L->p_in = (float)opt_f(v, OPT_INPUT_DROPOUT, 0.0);
    L->p_q = (float)opt_f(v, OPT_QUERY_DROPOUT, 0.0);
    L->p_v = (float)opt_f(v, OPT_VALUE_DROPOUT, 0.0);
    L->momentum = (float)opt_f(v, OPT_BN_MOMENTUM, 0.1);
    L->window = opt_i(v, OPT_STATS_WINDOW, 100);
    L->bag_chunk = opt_i(v, OPT_BAG_CHUNK, 0);
    L->own = host->device.kind == FL_DEVICE_CPU && opt_i(v, OPT_KERNELS, KERNELS_AUTO) == KERNELS_AUTO;
    const float value_lr = (float)opt_f(v, OPT_VALUE_LR, 1e-3);
    L->n = -1;
    fl_status st = check_options(host, L, value_lr, err);
    if (st) {
        free(L);
        return st;
    }
    L->half = L->kd / 2;
    L->F = L->H * L->kd;
    L->slots = L->n_keys * L->n_keys;
    st = declare_params(L, cfg->scope, value_lr, err);
    if (!st) st = usage_create(L, err);
    if (st) {
        pkm_destroy(L); /* the params already declared belong to the host */
        return st;
    }
    *layer = L;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Buffers                                                                    */
/* ------------------------------------------------------------------------ */

static fl_status ensure(pkm *L, fl_tensor *t, int32_t dtype, int ndim, int64_t d0, int64_t d1,
                        int64_t d2, fl_error *err) {
    const int64_t shape[3] = {d0, d1, d2};
    return L->host->tensor_ensure(L->host, t, dtype, ndim, shape, err);
}

/* The usage counters [slots,1], zero. */
static fl_status usage_create(pkm *L, fl_error *err) {
    fl_status st;
    if ((st = ensure(L, &L->reads, FL_F32, 2, L->slots, 1, 1, err)) ||
        (st = ensure(L, &L->mass, FL_F32, 2, L->slots, 1, 1, err)))
        return st;
    L->host->ops->fill(&L->reads, 0.0f);
    L->host->ops->fill(&L->mass, 0.0f);
    return FL_OK;
}

/* The grouped value bag's entry lists and block offsets. */
static fl_status ensure_grouping(pkm *L, int64_t n, fl_error *err) {
    const int64_t hk = L->H * L->knn;
    fl_status st;
    if ((st = ensure(L, &L->etok, FL_I32, 1, n * hk, 1, 1, err)) ||
        (st = ensure(L, &L->ew, FL_F32, 1, n * hk, 1, 1, err)) ||
        (st = ensure(L, &L->epos, FL_I32, 1, n * hk, 1, 1, err)))
        return st;
    L->chunk = pk_bag_chunk(n, hk, L->slots, L->v_dim, L->bag_chunk);
    return ensure(L, &L->eoff, FL_I64, 1, (n + L->chunk - 1) / L->chunk * (L->slots + 1), 1, 1, err);
}

static fl_status ensure_forward(pkm *L, int64_t n, fl_error *err) {
    const int64_t B = 2 * L->H, hk = L->H * L->knn;
    fl_status st;
    if ((st = ensure(L, &L->qpre, FL_F32, 2, n, L->F, 1, err)) ||
        (st = ensure(L, &L->qt, FL_F32, 3, B, n, L->half, err)) ||
        (st = ensure(L, &L->S, FL_F32, 3, B, n, L->n_keys, err)) ||
        (st = ensure(L, &L->tv, FL_F32, 3, B, n, L->knn, err)) ||
        (st = ensure(L, &L->ti, FL_I32, 3, B, n, L->knn, err)) ||
        (st = ensure(L, &L->w, FL_F32, 2, n, hk, 1, err)) ||
        (st = ensure(L, &L->slot, FL_I32, 2, n, hk, 1, err)) ||
        (st = ensure(L, &L->pair, FL_I32, 2, n, hk, 1, err)) ||
        (st = ensure(L, &L->ones, FL_F32, 2, n * hk, 1, 1, err)))
        return st;
    if (L->own && (st = ensure_grouping(L, n, err))) return st;
    if (L->norm == NORM_BATCH &&
        ((st = ensure(L, &L->nmean, FL_F32, 1, L->F, 1, 1, err)) ||
         (st = ensure(L, &L->nrstd, FL_F32, 1, L->F, 1, 1, err))))
        return st;
    if (L->norm == NORM_LAYER &&
        ((st = ensure(L, &L->nmean, FL_F32, 1, n * L->H, 1, 1, err)) ||
         (st = ensure(L, &L->nrstd, FL_F32, 1, n * L->H, 1, 1, err))))
        return st;
    if (L->wo && (st = ensure(L, &L->out, FL_F32, 2, n, L->v_dim, 1, err))) return st;
    return FL_OK;
}

static float *f32(const fl_tensor *t) { return (float *)t->data; }
static int32_t *i32(const fl_tensor *t) { return (int32_t *)t->data; }

/* The sub-keys as [2H, n_keys, half]: block b is head b/2's half b%2. */
static fl_tensor keys_by_half(const pkm *L, const fl_tensor *k) {
    fl_tensor k3 = fl_view2(k, 2 * L->H * L->n_keys, L->half);
    k3.ndim = 3;
    k3.shape[0] = 2 * L->H;
    k3.shape[1] = L->n_keys;
    k3.shape[2] = L->half;
    return k3;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                    */
/* ------------------------------------------------------------------------ */

/* qn = norm(qpre), then query dropout; qn is qpre itself when neither applies. */
static fl_status query_norm_forward(pkm *L, int64_t n, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    const int drop = L->train && L->p_q > 0.0f;
    L->bn_batch = 0;
    if (L->norm == NORM_NONE && !drop) {
        L->qn = L->qpre;
        return FL_OK;
    }
    fl_status st = ensure(L, &L->qn_buf, FL_F32, 2, n, L->F, 1, err);
    if (st) return st;
    L->qn = fl_view2(&L->qn_buf, n, L->F);
    const fl_tensor *ng = L->ng ? &L->ng->value : NULL, *nb = L->nb ? &L->nb->value : NULL;
    if (L->norm == NORM_BATCH) {
        L->bn_batch = L->train; /* eval: the running statistics */
        ops->batchnorm(&L->qpre, ng, nb, BN_EPS, L->momentum, L->train, &L->qn, &L->nmean, &L->nrstd,
                       &L->rmean->value, &L->rvar->value);
    } else if (L->norm == NORM_LAYER) {
        ops->layernorm_groups(&L->qpre, (int)L->H, ng, nb, LN_EPS, &L->qn, &L->nmean, &L->nrstd);
    }
    if (drop) ops->dropout(L->norm == NORM_NONE ? &L->qpre : &L->qn, L->p_q, L->key_q, &L->qn);
    return FL_OK;
}

/* Sub-key scores, their top-knn per head half, then the pair top-knn and the
   softmax weights: fills qt, tv, ti, w, slot, pair. */
static fl_status select_slots(pkm *L, int64_t n, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    const int64_t B = 2 * L->H;
    ops->permute01(&L->qn, n, B, L->half, &L->qt); /* [N,2H,half] → [2H,N,half] */
    fl_tensor keys3 = keys_by_half(L, &L->keys->value);
    ops->gemm_batched(0, 1, 1.0f, &L->qt, &keys3, 0.0f, &L->S); /* S[b] = qt[b] · K[b]ᵀ */
    fl_tensor S2 = fl_view2(&L->S, B * n, L->n_keys);
    fl_tensor tv2 = fl_view2(&L->tv, B * n, L->knn), ti2 = fl_view2(&L->ti, B * n, L->knn);
    ops->topk(&S2, (int)L->knn, &tv2, &ti2);
    return pkm_product_topk(L->host, &L->tv, &L->ti, (int)L->H, L->n_keys, &L->w, &L->slot, &L->pair, err);
}

/* Adds this forward's reads to the usage window (a new window starts after
   `window` forwards): reads[slot] += 1, mass[slot] += w. */
static void count_usage(pkm *L, int64_t n) {
    const fl_ops *ops = L->host->ops;
    const int64_t e = n * L->H * L->knn;
    if (L->win_forwards >= L->window) {
        ops->fill(&L->reads, 0.0f);
        ops->fill(&L->mass, 0.0f);
        L->win_forwards = 0;
    }
    fl_tensor ones = fl_view2(&L->ones, e, 1), w = fl_view2(&L->w, e, 1), slot = fl_view2(&L->slot, e, 1);
    ops->fill(&ones, 1.0f);
    ops->scatter_add_rows(&ones, &slot, &L->reads);
    ops->scatter_add_rows(&w, &slot, &L->mass);
    L->win_forwards++;
}

/* out[N,v_dim] = Σ_j w · V[slot]: the grouped bag of pk_bag_forward (its
   grouping is kept for backward), or the host's embedding bag. */
static void read_values(pkm *L, int64_t n, fl_tensor *out) {
    if (!L->own) {
        L->host->ops->embedding_bag(&L->values->value, &L->slot, &L->w, out);
        return;
    }
    const int64_t hk = L->H * L->knn;
    int64_t *off = (int64_t *)L->eoff.data;
    pk_group_chunks(i32(&L->slot), f32(&L->w), n, hk, L->slots, L->chunk, off, i32(&L->etok), f32(&L->ew),
                    i32(&L->epos));
    pk_bag_forward(f32(&L->values->value), off, i32(&L->etok), f32(&L->ew), n, L->slots, L->chunk, L->v_dim,
                   f32(out));
}

static fl_status pkm_forward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x, fl_tensor *y,
                             fl_error *err) {
    pkm *L = layer;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "pkm", "x", x, L->d, &n, err);
    if (!st) st = fl_ffn_rows(L->host, "pkm", "y", y, L->d, &n, err);
    if (st) return st;
    if (n != fl_numel(x) / L->d)
        return L->host->error(err, FL_EINVAL, "pkm: y has %lld rows, x has %lld", (long long)n,
                              (long long)(fl_numel(x) / L->d));
    L->n = -1;
    if (n == 0) {
        L->n = 0;
        return FL_OK;
    }
    if (n > INT32_MAX / (L->H * L->knn)) /* reads are indexed with i32 */
        return L->host->error(err, FL_EINVAL, "pkm: %lld tokens x %lld reads each is too many for one call",
                              (long long)n, (long long)(L->H * L->knn));
    if ((st = ensure_forward(L, n, err))) return st;
    L->train = ctx->train != 0;
    L->key_in = fl_rng_key(ctx->rng_key, "pkm.input_dropout");
    L->key_q = fl_rng_key(ctx->rng_key, "pkm.query_dropout");
    L->key_v = fl_rng_key(ctx->rng_key, "pkm.value_dropout");
    L->x = fl_view2(x, n, L->d);
    fl_tensor y2 = fl_view2(y, n, L->d);

    L->xd = L->x;
    if (L->train && L->p_in > 0.0f) {
        if ((st = ensure(L, &L->xd_buf, FL_F32, 2, n, L->d, 1, err))) return st;
        L->xd = fl_view2(&L->xd_buf, n, L->d);
        ops->dropout(&L->x, L->p_in, L->key_in, &L->xd);
    }
    ops->gemm(0, 0, 1.0f, &L->xd, &L->wq->value, 0.0f, &L->qpre); /* qpre[N,F] */
    ops->add_bias(&L->qpre, &L->bq->value);
    if ((st = query_norm_forward(L, n, err))) return st;
    if ((st = select_slots(L, n, err))) return st;

    fl_tensor *out = L->wo ? &L->out : &y2; /* [N,v_dim] */
    read_values(L, n, out);
    if (L->train && L->p_v > 0.0f) ops->dropout(out, L->p_v, L->key_v, out);
    if (L->wo) ops->gemm(0, 0, 1.0f, &L->out, &L->wo->value, 0.0f, &y2);
    count_usage(L, n);
    L->n = n;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                   */
/* ------------------------------------------------------------------------ */

static fl_status ensure_backward(pkm *L, int64_t n, fl_error *err) {
    const int64_t B = 2 * L->H, hk = L->H * L->knn;
    fl_status st;
    if ((st = ensure(L, &L->dw, FL_F32, 2, n, hk, 1, err)) ||
        (st = ensure(L, &L->g, FL_F32, 3, B, n, L->knn, err)) ||
        (st = ensure(L, &L->gix, FL_I32, 3, B, n, L->knn, err)) ||
        (st = ensure(L, &L->dqt, FL_F32, 3, B, n, L->half, err)) ||
        (st = ensure(L, &L->dqn, FL_F32, 2, n, L->F, 1, err)))
        return st;
    if (L->norm != NORM_NONE && (st = ensure(L, &L->dqpre, FL_F32, 2, n, L->F, 1, err))) return st;
    if ((L->wo || (L->train && L->p_v > 0.0f)) && (st = ensure(L, &L->dout, FL_F32, 2, n, L->v_dim, 1, err)))
        return st;
    return FL_OK;
}

/* d(memory output)[N,v_dim]: through out_proj (dWo += outᵀ·dy) and the value
   dropout. Returns dy itself when neither applies. */
static const fl_tensor *memory_output_grad(pkm *L, const fl_tensor *dy2) {
    const fl_ops *ops = L->host->ops;
    const int drop = L->train && L->p_v > 0.0f;
    if (!L->wo && !drop) return dy2;
    fl_tensor *dout = &L->dout;
    if (L->wo) {
        ops->gemm(1, 0, 1.0f, &L->out, dy2, 1.0f, &L->wo->grad);      /* dWo [v_dim,d] */
        ops->gemm(0, 1, 1.0f, dy2, &L->wo->value, 0.0f, dout);         /* dout = dy · Woᵀ */
        if (drop) ops->dropout(dout, L->p_v, L->key_v, dout);
    } else {
        ops->dropout(dy2, L->p_v, L->key_v, dout);
    }
    return dout;
}

/* From the selected scores' gradient ds (in dw) to the query halves (dqt)
   and the sub-keys: only the top-knn positions some winner used carry
   gradient (gix), so both are embedding bags over each head half's sub-key
   table: dq_b = Σ_a g[a] K_b[i[a]] and dK_b[i[a]] += g[a] q_b (host ops, or
   all halves at once by pk_subkey_backward). */
static fl_status subkey_backward(pkm *L, int64_t n, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    fl_status st = pkm_product_topk_backward(L->host, &L->dw, &L->pair, &L->ti, (int)L->H, &L->g, &L->gix, err);
    if (st) return st;
    if (L->own) {
        pk_subkey_backward(f32(&L->keys->value), f32(&L->qt), f32(&L->g), i32(&L->gix), 2 * L->H, n, L->knn,
                           L->n_keys, L->half, f32(&L->dqt), f32(&L->keys->grad));
        return FL_OK;
    }
    fl_tensor K = keys_by_half(L, &L->keys->value), dK = keys_by_half(L, &L->keys->grad);
    for (int64_t b = 0; b < 2 * L->H; b++) {
        fl_tensor Kb = fl_rows(&K, b, 1), dKb = fl_rows(&dK, b, 1);           /* [n_keys, half] */
        fl_tensor qb = fl_rows(&L->qt, b, 1), dqb = fl_rows(&L->dqt, b, 1);   /* [N, half] */
        fl_tensor gb = fl_rows(&L->g, b, 1), ib = fl_rows(&L->gix, b, 1);     /* [N, knn] */
        ops->embedding_bag(&Kb, &ib, &gb, &dqb);
        ops->embedding_bag_backward(&qb, &Kb, &ib, &gb, &dKb, NULL);
    }
    return FL_OK;
}

/* The values' gradient on the rows read only, dV[slot] += w · dout, and
   dw = dout · V[slot] (into L->dw), by the forward's grouping (see
   pk_values_backward) or the host's embedding-bag gradient; then the rows
   read are marked touched. */
static void values_backward(pkm *L, int64_t n, const fl_tensor *dout) {
    if (L->own)
        pk_values_backward(f32(dout), f32(&L->values->value), (const int64_t *)L->eoff.data, i32(&L->etok),
                           f32(&L->ew), i32(&L->epos), n, L->slots, L->chunk, L->v_dim, f32(&L->values->grad),
                           f32(&L->dw));
    else
        L->host->ops->embedding_bag_backward(dout, &L->values->value, &L->slot, &L->w, &L->values->grad, &L->dw);
    L->host->param_touch_rows(L->host, L->values, &L->slot);
}

/* dqn (in place: query dropout) → d qpre through the norm. Returns d qpre. */
static const fl_tensor *query_norm_backward(pkm *L, int64_t n) {
    const fl_ops *ops = L->host->ops;
    if (L->train && L->p_q > 0.0f) ops->dropout(&L->dqn, L->p_q, L->key_q, &L->dqn);
    if (L->norm == NORM_NONE) return &L->dqn;
    fl_tensor dqn = fl_view2(&L->dqn, n, L->F), dqpre = fl_view2(&L->dqpre, n, L->F);
    if (L->norm == NORM_BATCH)
        ops->batchnorm_backward(&L->qpre, &L->ng->value, &L->nmean, &L->nrstd, &dqn, L->bn_batch, &dqpre,
                                &L->ng->grad, &L->nb->grad);
    else
        ops->layernorm_groups_backward(&L->qpre, (int)L->H, &L->ng->value, &L->nmean, &L->nrstd, &dqn, &dqpre,
                                       &L->ng->grad, &L->nb->grad);
    return &L->dqpre;
}

static fl_status pkm_backward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy,
                              fl_tensor *dx, fl_error *err) {
    (void)ctx; /* the forward saved its mode and dropout streams */
    pkm *L = layer;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "pkm", "dy", dy, L->d, &n, err);
    if (!st) st = fl_ffn_rows(L->host, "pkm", "dx", dx, L->d, &n, err);
    if (st) return st;
    if (n != fl_numel(dy) / L->d || n != L->n)
        return L->host->error(err, FL_EINVAL, "pkm: backward of %lld rows after a forward of %lld",
                              (long long)(fl_numel(dy) / L->d), (long long)L->n);
    if (n == 0) return FL_OK;
    if ((st = ensure_backward(L, n, err))) return st;
    fl_tensor dy2 = fl_view2(dy, n, L->d), dx2 = fl_view2(dx, n, L->d);

    const fl_tensor *dout = memory_output_grad(L, &dy2);
    values_backward(L, n, dout);

    /* softmax over each (token, head)'s knn winners: dw → d score (in place) */
    fl_tensor w3 = fl_view2(&L->w, n * L->H, L->knn), dw3 = fl_view2(&L->dw, n * L->H, L->knn);
    ops->softmax_backward(&w3, &dw3, &dw3);
    if ((st = subkey_backward(L, n, err))) return st;
    ops->permute01(&L->dqt, 2 * L->H, n, L->half, &L->dqn); /* [2H,N,half] → [N,2H,half] */
    const fl_tensor *dqpre = query_norm_backward(L, n);

    ops->gemm(1, 0, 1.0f, &L->xd, dqpre, 1.0f, &L->wq->grad);  /* dWq += xdᵀ · dqpre */
    ops->sum_rows(dqpre, 1.0f, &L->bq->grad);
    ops->gemm(0, 1, 1.0f, dqpre, &L->wq->value, 0.0f, &dx2);   /* dx = dqpre · Wqᵀ */
    if (L->train && L->p_in > 0.0f) ops->dropout(&dx2, L->p_in, L->key_in, &dx2);
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Statistics and the descriptor                                              */
/* ------------------------------------------------------------------------ */

/* memory_usage: the fraction of slots read at least once in the window;
   kl_uniform: KL(p || uniform) = Σ p_i log(p_i · slots), p = the window's
   softmax weight per slot normalised to 1 (XLM's mem_kl_w); 0 before any
   forward. The counters come to the host here, and only here. */
static void usage_stats(const pkm *L, double *usage, double *kl) {
    *usage = *kl = 0.0;
    float *reads = malloc((size_t)L->slots * sizeof *reads), *mass = malloc((size_t)L->slots * sizeof *mass);
    if (reads && mass) {
        L->host->ops->to_host(reads, &L->reads, (size_t)L->slots * sizeof *reads);
        L->host->ops->to_host(mass, &L->mass, (size_t)L->slots * sizeof *mass);
        int64_t hit = 0;
        double total = 0.0;
        for (int64_t i = 0; i < L->slots; i++) {
            hit += reads[i] > 0.0f;
            total += mass[i];
        }
        *usage = (double)hit / (double)L->slots;
        for (int64_t i = 0; i < L->slots && total > 0; i++)
            if (mass[i] > 0) {
                const double p = mass[i] / total;
                *kl += p * log(p * (double)L->slots);
            }
    }
    free(reads);
    free(mass);
}

static int pkm_stats(void *layer, fl_stat *out, int max) {
    const pkm *L = layer;
    double usage, kl;
    usage_stats(L, &usage, &kl);
    fl_stat all[] = {
        {"active_params", (double)active_params(L)},
        {"flops_per_token", (double)flops_per_token(L)},
        {"memory_usage", usage},
        {"kl_uniform", kl},
        {"slots", (double)L->slots},
        {"knn", (double)L->knn},
        {"usage_window_forwards", (double)L->win_forwards},
    };
    int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n && i < max; i++) out[i] = all[i];
    return n;
}

/* What `ffnlab sweep --match` may change to size this layer (ffn.h). */
static const char *const SIZE_OPTIONS[] = {"n_keys", "k_dim", NULL};

static const fl_ffn_plugin DESCRIPTOR = {
    .header = {
        .magic = FL_PLUGIN_MAGIC,
        .abi_major = FL_FFN_ABI_MAJOR,
        .abi_minor = FL_FFN_ABI_MINOR,
        .struct_size = sizeof(fl_ffn_plugin),
        .kind = FL_PLUGIN_FFN,
        .name = "pkm",
        .version = "1.0.0",
        .description = "product-key memory (Lample et al. 2019): heads x top-knn of n_keys^2 value slots",
        .options = OPTIONS,
        .n_options = N_OPTIONS,
    },
    .devices = FL_DEVICES_BUILT,
    .create = pkm_create,
    .forward = pkm_forward,
    .backward = pkm_backward,
    .aux_loss = NULL,
    .stats = pkm_stats,
    .destroy = pkm_destroy,
    .size_options = SIZE_OPTIONS,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &DESCRIPTOR.header; }
