/*
 * plugins/ffn_moe/moe.c — a sparsely-gated mixture of experts as an ffnlab
 * FFN plugin (Shazeer et al. 2017, "Outrageously Large Neural Networks";
 * Fedus et al. 2021, "Switch Transformers"; Zoph et al. 2022, ST-MoE, for
 * the router z-loss).
 *
 * E experts, each a small GPT-2 MLP of width d_expert; a linear router sends
 * each token to its top-k experts and mixes their outputs by gate weight:
 *
 *     H  = x · W_router                     x[N,d]  W_router[d,E]   H[N,E]
 *          (+ N(0,1) · softplus(x · W_noise) with gate=noisy_topk, training)
 *     p  = softmax(H)                       p[N,E]
 *     (v, e) = top-k of p per token         v[N,k]  e[N,k]
 *     g  = v / Σv  (renormalize)  or  v     g[N,k]
 *     y_n = Σ_j g_nj · expert_{e_nj}(x_n),  expert_i(x) = act(x·W_fc[i] + b_fc[i])·W_proj[i] + b_proj[i]
 *
 * The point is to do the sparse work sparsely. The N·k (token, expert)
 * assignments are bucket-sorted by expert; the tokens are gathered into that
 * order (xs[M,d], M = kept assignments); each expert's rows are one group of
 * a grouped GEMM, so every token costs k experts' FLOPs, never E, and there
 * is never one GEMM per token. The outputs come back to token order with one
 * weighted embedding-bag (y_n = Σ_j g_nj · o[pos_nj]), which writes every row
 * of y once: no zero fill, no scaled copy, no scatter conflicts.
 *
 * With capacity_factor > 0 each expert takes at most
 * ceil(capacity_factor · N · k / E) assignments, first come first served in
 * token order; the rest are dropped (they add nothing: the residual stream
 * carries the token).
 *
 * Auxiliary losses, reported already weighted and differentiated here (the
 * host adds them with weight 1):
 *   balance = balance_loss · E · Σ_i f_i · P_i   (Switch; f_i the fraction of
 *             top-k assignments that chose expert i, before dropping, held
 *             constant; P_i the mean router probability of expert i)
 *   z       = z_loss · mean_n logsumexp(H_n)²     (ST-MoE router z-loss)
 *
 * Expert parallelism (host->comm->ep_size = S > 1; README "Multi-process
 * runs"): the host gives this rank only experts e0 .. e0+E/S-1 of each
 * expert tensor (fl_param.shard_offset). Routing is unchanged — every rank
 * scores all E experts for its own tokens — and the sorted rows, already in
 * owner order, travel to their experts' ranks with one all-to-all-v (the
 * per-expert counts first); a rank reorders what it received to expert-major
 * order, runs its experts as one grouped GEMM, and sends the outputs back
 * the same way. Backward sends d o to the experts and d xs back. The balance
 * loss uses the expert loads summed over all ranks (one small all-reduce),
 * so data-parallel ranks compute the one-process loss; its gradient is
 * scaled to the host's convention (each rank's gradient is P times its
 * share; the host averages). The noisy gate draws each token's noise at its
 * global row, so the draws match one process too.
 *
 * The layer runs on every device with its own kernels for the steps only a
 * mixture of experts has (moe_route.h: moe_route for gates, capacity and
 * loads; moe_index, the inverse permutation; moe_router_backward; C on the
 * CPU, CUDA on a GPU) and host ops for the rest (GEMMs, softmax, top-k,
 * bucket_sort, gathers; the noisy gate is softplus, mul and axpby). This
 * file never reads device memory itself: the few [E]-sized figures a step
 * needs on the host (the loads, the probability column sums, Σ lse²) come
 * back in one small to_host copy, next to the expert offsets the grouped
 * GEMMs take from bucket_sort anyway; dbal goes back with one from_host.
 *
 * This file sees only the public SDK.
 */
#include <math.h>            /* ceil, isfinite, llroundf */
#include <stdint.h>          /* int64_t, int32_t */
#include <stdio.h>           /* snprintf */
#include <stdlib.h>          /* calloc, free, malloc */
#include <string.h>          /* memcpy */

#include "ffnlab/ffn.h"      /* fl_ffn_plugin, fl_ffn_config, fl_ffn_ctx, fl_stat */
#include "ffnlab/host.h"     /* fl_host, fl_ops, fl_param_spec, fl_option */
#include "ffnlab/plugin.h"   /* FL_EXPORT, FL_PLUGIN_MAGIC */
#include "ffnlab/tensor.h"   /* fl_tensor, fl_view2, fl_rows, fl_wrap */
#include "moe_route.h"     /* moe_route, moe_index, moe_router_backward */

/* ------------------------------------------------------------------------ */
/* Options                                                                    */
/* ------------------------------------------------------------------------ */

enum {
    OPT_EXPERTS,
    OPT_TOP_K,
    OPT_D_EXPERT,
    OPT_ACTIVATION,
    OPT_GATE,
    OPT_BALANCE,
    OPT_Z,
    OPT_CAPACITY,
    OPT_RENORM,
    N_OPTIONS
};

#define MAX_EXPERTS 4096
#define MAX_LOAD_STATS 64

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_EXPERTS] = {"experts", FL_OPT_INT, "8", 1, MAX_EXPERTS, NULL,
                     "number of experts E in this layer"},
    [OPT_TOP_K] = {"top_k", FL_OPT_INT, "1", 1, MAX_EXPERTS, NULL,
                   "experts per token (1 = Switch Transformer, 2 = Shazeer et al.); at most experts"},
    [OPT_D_EXPERT] = {"d_expert", FL_OPT_INT, NULL, 1, 1 << 20, NULL,
                      "hidden width of each expert (default 4 * d_model / experts: the total "
                      "parameters of a dense d_ff = 4 * d_model MLP)"},
    [OPT_ACTIVATION] = {"activation", FL_OPT_ENUM, "gelu", 0, -1, "gelu|relu|silu",
                        "nonlinearity inside each expert; gelu is GPT-2's tanh approximation"},
    [OPT_GATE] = {"gate", FL_OPT_ENUM, "softmax", 0, -1, "softmax|noisy_topk",
                  "router: plain softmax, or Shazeer's noisy top-k (adds N(0,1) * "
                  "softplus(x W_noise) to the logits in training)"},
    [OPT_BALANCE] = {"balance_loss", FL_OPT_FLOAT, "0.01", 0, 1000, NULL,
                     "weight of the Switch load-balancing loss E * sum_i f_i * P_i (0 = off)"},
    [OPT_Z] = {"z_loss", FL_OPT_FLOAT, "0", 0, 1000, NULL,
               "weight of the ST-MoE router z-loss mean(logsumexp(logits)^2) (0 = off)"},
    [OPT_CAPACITY] = {"capacity_factor", FL_OPT_FLOAT, "0", 0, 1000, NULL,
                      "0 = dropless; else each expert takes at most ceil(c * tokens * top_k / "
                      "experts) assignments, later ones (token order) are dropped"},
    [OPT_RENORM] = {"renormalize", FL_OPT_BOOL, NULL, 0, -1, NULL,
                    "rescale the chosen top_k gate weights to sum to 1 (default: true when "
                    "top_k > 1, false for top_k = 1 so the router learns from its gate)"},
};

/* ENUM index → the host's activation code. */
static const int ACTIVATIONS[] = {FL_ACT_GELU, FL_ACT_RELU, FL_ACT_SILU};
#define N_ACTIVATIONS ((int)(sizeof ACTIVATIONS / sizeof ACTIVATIONS[0]))
enum { GATE_SOFTMAX = 0, GATE_NOISY = 1, N_GATES = 2 };

/* ------------------------------------------------------------------------ */
/* The layer                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct moe {
    const fl_host *host;
    int64_t d, E, k, de;       /* d_model, experts, top_k, d_expert */
    int act;                   /* FL_ACT_* */
    int grouped_bias;          /* the host has bias_activation_grouped (bias_act) */
    int noisy;                 /* gate = noisy_topk */
    int renorm;
    float bal_coef, z_coef;
    double cap_factor;

    fl_param *router_w;        /* router.weight [d,E] */
    fl_param *noise_w;         /* router_noise.weight [d,E] (noisy only) */
    fl_param *fc_w, *fc_b;     /* experts.c_fc.weight [E,d,de], .bias [E,de] */
    fl_param *proj_w, *proj_b; /* experts.c_proj.weight [E,de,d], .bias [E,d] */

    /* Saved by forward for backward. x is a view of the caller's input, which
       the host keeps unchanged until this layer's backward (as dense.c). */
    fl_tensor x;               /* [N,d] view */
    int64_t n, m;              /* tokens and kept assignments of the last forward */
    int noise_on;              /* noise was added in the last forward */
    fl_tensor logits;          /* [N,E] H, the gating logits */
    fl_tensor raw;             /* [N,E] x·W_noise (noisy, training) */
    fl_tensor eps;             /* [N,E] the N(0,1) draws (noisy, training) */
    fl_tensor probs;           /* [N,E] softmax(H) */
    fl_tensor lse;             /* [N] logsumexp(H) */
    fl_tensor topv;            /* [N,k] chosen probabilities */
    fl_tensor topi;            /* [N,k] i32 chosen experts */
    fl_tensor gates;           /* [N,k] gate weights */
    fl_tensor keys;            /* [N·k] i32 expert of each assignment, -1 dropped */
    fl_tensor figs;            /* [2E+1] i32 count[E], then f32 psum[E], Σ lse² */
    fl_tensor dbal_t;          /* [E] dbal on the device */
    fl_tensor perm;            /* [N·k] i32 assignments in expert order */
    fl_tensor tok;             /* [N·k] i32 token of each sorted row (first m) */
    fl_tensor gs;              /* [N·k] gate of each sorted row (first m) */
    fl_tensor pos;             /* [N,k] i32 sorted row of each assignment, -1 dropped */
    fl_tensor xs;              /* [N·k,d] tokens in expert order (first m rows) */
    fl_tensor h, a;            /* [N·k,de] x · W_fc (with b_fc on an older host: bias_act), act */
    fl_tensor o;               /* [N·k,d] expert outputs, unscaled */

    /* Host arrays, E (+1) long, allocated once at create. */
    int64_t *off;              /* expert row offsets into the sorted rows */
    int64_t *count;            /* assignments per expert before dropping */
    double *psum;              /* column sums of probs */
    float *dbal;               /* d balance / d p[n,i] = coef·E·f_i / N */
    uint32_t *figs_h;          /* [2E+1] figs as copied to the host */

    /* Figures of the last forward. */
    double bal, z;             /* unweighted E·Σ f_i P_i and mean lse² */
    int64_t dropped;           /* assignments over capacity */

    /* Backward scratch. */
    fl_tensor dgate;           /* [N,k] */
    fl_tensor dout;            /* [N·k,d] d o, then d xs */
    fl_tensor da;              /* [N·k,de] */
    fl_tensor dlogits;         /* [N,E] */
    fl_tensor draw;            /* [N,E] (noisy): the noise term, then d raw */

    char load_names[MAX_LOAD_STATS][16];

    /* Expert parallelism: S ranks split the experts (S = 1: none). */
    const fl_comm *comm;
    int64_t S, El;             /* group ranks, experts held here (E / S) */
    int64_t *send_rows;        /* [S] sorted rows sent to each group rank */
    int64_t *recv_rows;        /* [S] rows received from each */
    int64_t *ones;             /* [S] all 1: the count exchange's row counts */
    int64_t *cnt_recv;         /* [S·El] rows per (source rank, local expert) */
    int64_t *loff;             /* [El+1] local expert offsets, expert-major */
    int32_t *rperm;            /* [R] expert-major row → received row */
    int32_t *rinv;             /* [R] received row → expert-major row */
    int64_t r, r_cap;          /* rows received this step; capacity of the two */
    fl_tensor cnt_s, cnt_r;    /* [E] i64 counts exchanged (device) */
    fl_tensor perm_t, inv_t;   /* [R] i32 rperm, rinv on the device */
    fl_tensor xr;              /* [R,d] rows as received (later outputs to return) */
    fl_tensor xe, he, ae, oe;  /* [R,d] [R,de] [R,de] [R,d] expert-major */
    fl_tensor stats;           /* [2E] f32 counts and probability sums, all-reduced */
    fl_tensor dae;             /* [R,de] backward scratch, expert-major */
    fl_tensor route_scratch;   /* moe_route's own memory (GPU: per-tile counters) */
} moe;

static int64_t router_width(const moe *L) { return L->noisy ? 2 * L->E : L->E; }

/* Per token: the router (and noise projection), plus k experts' weights. */
static int64_t active_params(const moe *L) {
    return L->d * router_width(L) + L->k * (2 * L->d * L->de + L->de + L->d);
}

/* Matmuls only, 2 FLOPs per multiply-add, as dense.c counts: the router
   projection(s) for every expert, and k experts' two matmuls. */
static int64_t flops_per_token(const moe *L) {
    return 2 * L->d * router_width(L) + L->k * (2 * L->d * L->de * 2);
}

/* ------------------------------------------------------------------------ */
/* Create and destroy                                                         */
/* ------------------------------------------------------------------------ */

static fl_param *declare(const fl_host *host, fl_param_scope *scope, const char *name, int ndim,
                         const int64_t *shape, int init, uint32_t flags, fl_error *err) {
    fl_param_spec spec = {0};
    spec.name = name;
    spec.ndim = ndim;
    for (int i = 0; i < ndim; i++) spec.shape[i] = shape[i];
    spec.init = init;
    spec.init_scale = init == FL_INIT_NORMAL ? 0.02f : 0.0f;
    spec.flags = flags;
    return host->param(host, scope, &spec, err);
}

/* The router has no weight decay (it only scores experts); the experts are
   GPT-2 MLPs stacked along dim 0, so they take GPT-2's init and flags plus
   FL_PARAM_EXPERT. W_noise starts at zero, as in Shazeer et al. */
static fl_status declare_params(moe *L, fl_param_scope *scope, fl_error *err) {
    const fl_host *H = L->host;
    const int64_t d = L->d, E = L->E, f = L->de;
    const uint32_t X = FL_PARAM_EXPERT;
    if (!(L->router_w = declare(H, scope, "router.weight", 2, (int64_t[]){d, E}, FL_INIT_NORMAL, 0, err)))
        return err ? err->code : FL_EINVAL;
    if (L->noisy &&
        !(L->noise_w = declare(H, scope, "router_noise.weight", 2, (int64_t[]){d, E}, FL_INIT_ZEROS, 0, err)))
        return err ? err->code : FL_EINVAL;
    if (!(L->fc_w = declare(H, scope, "experts.c_fc.weight", 3, (int64_t[]){E, d, f}, FL_INIT_NORMAL,
                            X | FL_PARAM_DECAY, err)) ||
        !(L->fc_b = declare(H, scope, "experts.c_fc.bias", 2, (int64_t[]){E, f}, FL_INIT_ZEROS, X, err)) ||
        !(L->proj_w = declare(H, scope, "experts.c_proj.weight", 3, (int64_t[]){E, f, d}, FL_INIT_NORMAL,
                              X | FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT, err)) ||
        !(L->proj_b = declare(H, scope, "experts.c_proj.bias", 2, (int64_t[]){E, d}, FL_INIT_ZEROS, X, err)))
        return err ? err->code : FL_EINVAL;
    /* Under expert parallelism the host hands back this rank's E/S experts. */
    const fl_param *ex[] = {L->fc_w, L->fc_b, L->proj_w, L->proj_b};
    for (int i = 0; i < 4; i++)
        if (ex[i]->value.shape[0] * L->S != E || ex[i]->shard_offset != (int64_t)L->comm->ep_rank * L->El)
            return H->error(err, FL_EINTERNAL, "moe: %s holds %lld experts from %lld; expected %lld from %lld",
                            ex[i]->name, (long long)ex[i]->value.shape[0], (long long)ex[i]->shard_offset,
                            (long long)L->El, (long long)L->comm->ep_rank * L->El);
    return FL_OK;
}

static void moe_destroy(void *layer) {
    moe *L = layer;
    if (!L) return;
    fl_tensor *owned[] = {&L->logits, &L->raw,  &L->eps,   &L->probs, &L->lse,     &L->topv,
                          &L->topi,   &L->gates, &L->keys, &L->perm,  &L->tok,     &L->gs,
                          &L->pos,    &L->xs,    &L->h,    &L->a,     &L->o,       &L->dgate,
                          &L->dout,   &L->da,    &L->dlogits, &L->draw, &L->cnt_s, &L->cnt_r,
                          &L->perm_t, &L->inv_t, &L->xr, &L->xe, &L->he, &L->ae, &L->oe, &L->stats,
                          &L->dae,    &L->figs,  &L->dbal_t, &L->route_scratch};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) L->host->tensor_release(L->host, owned[i]);
    free(L->off);
    free(L->count);
    free(L->psum);
    free(L->dbal);
    free(L->figs_h);
    free(L->send_rows);
    free(L->recv_rows);
    free(L->ones);
    free(L->cnt_recv);
    free(L->loff);
    free(L->rperm);
    free(L->rinv);
    free(L);
}

/* Option values as create sees them; every range is re-checked so a host
   that skipped its own checks cannot build a nonsense layer. */
typedef struct moe_opts {
    int64_t E, k, de, act, gate;
    double bal, z, cap;
    int renorm;
} moe_opts;

/* Option `opt` as given or defaulted, else dflt (a NULL default). */
static int64_t val_i(const fl_value *v, int opt, int64_t dflt) {
    return v && v[opt].present ? v[opt].i : dflt;
}
static double val_f(const fl_value *v, int opt, double dflt) {
    return v && v[opt].present ? v[opt].f : dflt;
}

static fl_status read_options(const fl_host *host, const fl_value *v, int64_t d, moe_opts *o,
                              fl_error *err) {
    o->E = val_i(v, OPT_EXPERTS, 8);
    o->k = val_i(v, OPT_TOP_K, 1);
    o->act = val_i(v, OPT_ACTIVATION, 0);
    o->gate = val_i(v, OPT_GATE, GATE_SOFTMAX);
    o->bal = val_f(v, OPT_BALANCE, 0.01);
    o->z = val_f(v, OPT_Z, 0.0);
    o->cap = val_f(v, OPT_CAPACITY, 0.0);
    if (o->E < 1 || o->E > MAX_EXPERTS)
        return host->error(err, FL_EINVAL, "moe: option 'experts' = %lld is out of range [1, %d]",
                           (long long)o->E, MAX_EXPERTS);
    if (o->k < 1 || o->k > o->E)
        return host->error(err, FL_EINVAL, "moe: option 'top_k' = %lld must be in [1, experts = %lld]",
                           (long long)o->k, (long long)o->E);
    o->de = val_i(v, OPT_D_EXPERT, (4 * d / o->E) > 0 ? 4 * d / o->E : 1);
    o->renorm = (int)val_i(v, OPT_RENORM, o->k > 1);
    if (o->de < 1 || o->de > (1 << 20))
        return host->error(err, FL_EINVAL, "moe: option 'd_expert' = %lld is out of range [1, 1048576]",
                           (long long)o->de);
    if (o->act < 0 || o->act >= N_ACTIVATIONS)
        return host->error(err, FL_EINVAL, "moe: option 'activation' index %lld is not one of gelu|relu|silu",
                           (long long)o->act);
    if (o->gate < 0 || o->gate >= N_GATES)
        return host->error(err, FL_EINVAL, "moe: option 'gate' index %lld is not one of softmax|noisy_topk",
                           (long long)o->gate);
    const struct { const char *name; double val; } coef[] = {
        {"balance_loss", o->bal}, {"z_loss", o->z}, {"capacity_factor", o->cap}};
    for (int i = 0; i < 3; i++)
        if (!(coef[i].val >= 0 && isfinite(coef[i].val)))
            return host->error(err, FL_EINVAL, "moe: option '%s' = %g must be a finite number >= 0",
                               coef[i].name, coef[i].val);
    return FL_OK;
}

static fl_status moe_create(const fl_host *host, const fl_ffn_config *cfg, void **layer,
                            fl_error *err) {
    *layer = NULL;
    if (cfg->d_model < 1)
        return host->error(err, FL_EINVAL, "moe: d_model %d must be positive", (int)cfg->d_model);
    moe_opts o = {0};
    fl_status st = read_options(host, cfg->values, cfg->d_model, &o, err);
    if (st) return st;
    moe *L = calloc(1, sizeof *L);
    if (!L) return host->error(err, FL_ENOMEM, "moe: out of memory");
    L->host = host;
    L->d = cfg->d_model;
    L->E = o.E;
    L->k = o.k;
    L->de = o.de;
    L->act = ACTIVATIONS[o.act];
    L->grouped_bias = FL_OPS_HAS(host->ops, bias_activation_grouped) &&
                      FL_OPS_HAS(host->ops, bias_activation_grouped_backward);
    L->noisy = o.gate == GATE_NOISY;
    L->renorm = o.renorm;
    L->bal_coef = (float)o.bal;
    L->z_coef = (float)o.z;
    L->cap_factor = o.cap;
    L->comm = host->comm;
    L->S = host->comm->ep_size > 1 ? host->comm->ep_size : 1;
    L->El = o.E / L->S; /* the host refuses an uneven split when declaring */
    L->off = calloc((size_t)o.E + 1, sizeof *L->off);
    L->count = calloc((size_t)o.E, sizeof *L->count);
    L->psum = calloc((size_t)o.E, sizeof *L->psum);
    L->dbal = calloc((size_t)o.E, sizeof *L->dbal);
    L->figs_h = calloc(2 * (size_t)o.E + 1, sizeof *L->figs_h);
    L->send_rows = calloc((size_t)L->S, sizeof *L->send_rows);
    L->recv_rows = calloc((size_t)L->S, sizeof *L->recv_rows);
    L->ones = calloc((size_t)L->S, sizeof *L->ones);
    L->cnt_recv = calloc((size_t)o.E, sizeof *L->cnt_recv);
    L->loff = calloc((size_t)L->El + 1, sizeof *L->loff);
    for (int64_t i = 0; L->ones && i < L->S; i++) L->ones[i] = 1;
    if (!L->off || !L->count || !L->psum || !L->dbal || !L->figs_h || !L->send_rows || !L->recv_rows ||
        !L->ones || !L->cnt_recv || !L->loff) {
        moe_destroy(L);
        return host->error(err, FL_ENOMEM, "moe: out of memory");
    }
    for (int i = 0; i < MAX_LOAD_STATS; i++) snprintf(L->load_names[i], sizeof L->load_names[i], "load.%d", i);
    st = declare_params(L, cfg->scope, err);
    if (st) {
        moe_destroy(L); /* the params already declared belong to the host */
        return st;
    }
    *layer = L;
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                    */
/* ------------------------------------------------------------------------ */

static fl_status ensure2(const moe *L, fl_tensor *t, int32_t dtype, int64_t r, int64_t c,
                         fl_error *err) {
    int64_t shape[2] = {r, c};
    return L->host->tensor_ensure(L->host, t, dtype, 2, shape, err);
}

/* A 1-D view of n values of dtype at element `at` of t (4-byte dtypes):
   slices of the index buffers, and the typed parts of figs. */
static fl_tensor slice(const fl_tensor *t, int32_t dtype, int64_t at, int64_t n) {
    int64_t shape[1] = {n};
    return fl_wrap((char *)t->data + (size_t)at * 4, dtype, t->device, 1, shape);
}

/* Buffers sized for the worst case (all N·k assignments kept), so a step
   with fewer drops than the last never reallocates. */
static fl_status ensure_forward(moe *L, int64_t N, fl_error *err) {
    const int64_t E = L->E, k = L->k, NK = N * k;
    fl_status st;
    if ((st = ensure2(L, &L->logits, FL_F32, N, E, err)) || (st = ensure2(L, &L->probs, FL_F32, N, E, err)) ||
        (st = ensure2(L, &L->lse, FL_F32, N, 1, err)) || (st = ensure2(L, &L->topv, FL_F32, N, k, err)) ||
        (st = ensure2(L, &L->topi, FL_I32, N, k, err)) || (st = ensure2(L, &L->gates, FL_F32, N, k, err)) ||
        (st = ensure2(L, &L->keys, FL_I32, NK, 1, err)) || (st = ensure2(L, &L->perm, FL_I32, NK, 1, err)) ||
        (st = ensure2(L, &L->tok, FL_I32, NK, 1, err)) || (st = ensure2(L, &L->gs, FL_F32, NK, 1, err)) ||
        (st = ensure2(L, &L->pos, FL_I32, N, k, err)) || (st = ensure2(L, &L->xs, FL_F32, NK, L->d, err)) ||
        (st = ensure2(L, &L->h, FL_F32, NK, L->de, err)) || (st = ensure2(L, &L->a, FL_F32, NK, L->de, err)) ||
        (st = ensure2(L, &L->o, FL_F32, NK, L->d, err)) || (st = ensure2(L, &L->figs, FL_I32, 2 * E + 1, 1, err)) ||
        (st = ensure2(L, &L->dbal_t, FL_F32, E, 1, err)))
        return st;
    if (L->noisy && ((st = ensure2(L, &L->raw, FL_F32, N, E, err)) || (st = ensure2(L, &L->eps, FL_F32, N, E, err)) ||
                     (st = ensure2(L, &L->draw, FL_F32, N, E, err))))
        return st;
    return FL_OK;
}

/* Noisy gate: H += eps · softplus(x·W_noise), eps[N,E] ~ N(0,1); raw and
   eps stay for backward, draw holds the noise term meanwhile. */
static void noisy_logits(moe *L, const fl_ffn_ctx *ctx) {
    const fl_ops *ops = L->host->ops;
    ops->gemm(0, 0, 1.0f, &L->x, &L->noise_w->value, 0.0f, &L->raw);
    /* at each token's global row (ranks hold consecutive slices of the
       batch), so data-parallel ranks draw what one process would */
    uint64_t at = (uint64_t)L->comm->rank * (uint64_t)(L->n * L->E);
    ops->rng_normal(&L->eps, ctx->rng_key, at, 0.0f, 1.0f);
    ops->activation(FL_ACT_SOFTPLUS, &L->raw, &L->draw);
    ops->mul(&L->draw, &L->eps, &L->draw);
    ops->axpby(1.0f, &L->draw, 1.0f, &L->logits);
}

/* H[N,E] = x·W_router (+ noise), p = softmax(H), lse = logsumexp(H),
   (topv, topi) = top-k of p. */
static void router_forward(moe *L, const fl_ffn_ctx *ctx) {
    const fl_ops *ops = L->host->ops;
    ops->gemm(0, 0, 1.0f, &L->x, &L->router_w->value, 0.0f, &L->logits);
    L->noise_on = L->noisy && ctx->train;
    if (L->noise_on) noisy_logits(L, ctx);
    ops->softmax(&L->logits, &L->probs);
    ops->logsumexp(&L->logits, &L->lse);
    ops->topk(&L->probs, (int)L->k, &L->topv, &L->topi);
}

/* Over several ranks: count[E] and psum[E] summed over the world (f32 on
   the device: the communicator's type), *n_total the world's tokens. */
static fl_status global_loads(moe *L, double *n_total, fl_error *err) {
    const fl_comm *c = L->comm;
    if (c->size == 1) return FL_OK; /* one process: the figures as they are */
    const int64_t E = L->E;
    int64_t shape[1] = {2 * E};
    fl_status st = L->host->tensor_ensure(L->host, &L->stats, FL_F32, 1, shape, err);
    if (st) return st;
    float *v = malloc((size_t)(2 * E) * sizeof *v);
    if (!v) return L->host->error(err, FL_ENOMEM, "moe: out of memory");
    for (int64_t i = 0; i < E; i++) v[i] = (float)L->count[i], v[E + i] = (float)L->psum[i];
    L->host->ops->from_host(&L->stats, v, (size_t)(2 * E) * sizeof *v);
    st = c->allreduce_sum(c, &L->stats, err);
    if (!st) L->host->ops->to_host(v, &L->stats, (size_t)(2 * E) * sizeof *v);
    for (int64_t i = 0; !st && i < E; i++) L->count[i] = (int64_t)llroundf(v[i]), L->psum[i] = v[E + i];
    free(v);
    *n_total = (double)L->n * c->size; /* every rank trains on as many tokens */
    return st;
}

/* Gates, capacity and loads (moe_route), the expert-ordered row list
   (bucket_sort: off[E+1] on the host) and its inverse (moe_index). */
static fl_status route_rows(moe *L, fl_error *err) {
    const fl_host *h = L->host;
    const fl_ops *ops = h->ops;
    const int64_t N = L->n, E = L->E, k = L->k, NK = N * k;
    int64_t cap = -1;
    if (L->cap_factor > 0) cap = (int64_t)ceil(L->cap_factor * (double)NK / (double)E);
    fl_tensor keys = slice(&L->keys, FL_I32, 0, NK), perm = slice(&L->perm, FL_I32, 0, NK);
    fl_tensor count = slice(&L->figs, FL_I32, 0, E);
    fl_status st = moe_route(h, &L->topv, &L->topi, (int)E, L->renorm, cap, &L->gates, &keys, &count,
                             &L->route_scratch, err);
    if (st) return st;
    ops->bucket_sort(&keys, (int)E, &perm, L->off);
    L->m = L->off[E];
    L->dropped = NK - L->m; /* the keys of -1 */
    fl_tensor kept = slice(&L->perm, FL_I32, 0, L->m), tok = slice(&L->tok, FL_I32, 0, L->m);
    fl_tensor gs = slice(&L->gs, FL_F32, 0, L->m);
    return moe_index(h, &kept, (int)k, &L->gates, &tok, &gs, &L->pos, err);
}

/* figs[2E+1] = count[E] (written by moe_route), psum[E] the column sums of
   probs, Σ_n lse_n²; one copy brings them to count[], psum[] and *zsum. */
static void route_figures(moe *L, double *zsum) {
    const fl_ops *ops = L->host->ops;
    const int64_t N = L->n, E = L->E;
    fl_tensor psum = slice(&L->figs, FL_F32, E, E), z = slice(&L->figs, FL_F32, 2 * E, 1);
    fl_tensor lse = fl_view2(&L->lse, 1, N); /* one row: row_dot sums it */
    ops->sum_rows(&L->probs, 0.0f, &psum);
    ops->row_dot(&lse, &lse, &z);
    uint32_t *h = L->figs_h;
    ops->to_host(h, &L->figs, (2 * (size_t)E + 1) * sizeof *h);
    for (int64_t i = 0; i < E; i++) {
        float p;
        memcpy(&p, &h[E + i], sizeof p);
        L->count[i] = (int32_t)h[i];
        L->psum[i] = p;
    }
    float zs;
    memcpy(&zs, &h[2 * E], sizeof zs);
    *zsum = zs;
}

/* The routing, then the balance and z figures and dbal (on the device for
   the router's backward). */
static fl_status route(moe *L, fl_error *err) {
    const int64_t N = L->n, E = L->E, k = L->k;
    fl_status st = route_rows(L, err);
    if (st) return st;
    double z = 0;
    route_figures(L, &z);
    /* balance = E Σ f_i P_i with f_i = count_i / (N k), P_i = psum_i / N;
       its gradient in p holds f constant (as Switch does). Over several
       ranks count, psum and N are the whole batch's, and d/dp is scaled by
       P (1 / local N instead of 1 / global N): the host averages. */
    double Ng = (double)N;
    st = global_loads(L, &Ng, err);
    if (st) return st;
    double bal = 0;
    for (int64_t i = 0; i < E; i++) {
        const double f = (double)L->count[i] / (Ng * (double)k);
        bal += f * L->psum[i] / Ng;
        L->dbal[i] = (float)(L->bal_coef * (double)E * f / (double)N);
    }
    L->host->ops->from_host(&L->dbal_t, L->dbal, (size_t)E * sizeof *L->dbal);
    L->bal = (double)E * bal;
    L->z = z / (double)N;
    return FL_OK;
}

/* Per-expert bias and activation on the expert-ordered rows: y = act(x +
   b[g]) on rows off[g]..off[g+1] (y may be x). One op, x left as it is, on
   a host with bias_activation_grouped; on an older one add_bias per group
   into x, then the activation: x then holds the bias, as bias_act_backward
   expects there. */
static void bias_act(const moe *L, int act, fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                     fl_tensor *y) {
    const fl_ops *ops = L->host->ops;
    if (L->grouped_bias) {
        ops->bias_activation_grouped(act, x, b, off, G, y);
        return;
    }
    for (int g = 0; g < G; g++) {
        const int64_t r = off[g + 1] - off[g];
        if (r <= 0) continue;
        fl_tensor rows = fl_rows(x, off[g], r), bg = fl_rows(b, g, 1);
        ops->add_bias(&rows, &bg);
    }
    if (act != FL_ACT_IDENTITY || y->data != x->data) ops->activation(act, x, y);
}

/* Its gradients: d (dy on entry, dx on return) = dy * act'(x (+ b[g])) on
   each group's rows, db[g] += their sum (empty groups add nothing). */
static void bias_act_backward(const moe *L, int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off,
                              int G, fl_tensor *d, fl_tensor *db) {
    const fl_ops *ops = L->host->ops;
    if (L->grouped_bias) {
        ops->bias_activation_grouped_backward(act, x, b, off, G, d, d, db);
        return;
    }
    if (act != FL_ACT_IDENTITY) ops->activation_backward(act, x, d, d);
    for (int g = 0; g < G; g++) {
        const int64_t r = off[g + 1] - off[g];
        if (r <= 0) continue;
        fl_tensor rows = fl_rows(d, off[g], r), dbg = fl_rows(db, g, 1);
        ops->sum_rows(&rows, 1.0f, &dbg);
    }
}

/* The experts on rows in[R,d] grouped by off[0..G] (one grouped GEMM per
   matmul): out[R,d]; h, a [R,de] stay for backward. In one process the
   rows are xs, all E experts; under expert parallelism the rows this rank
   received, its E/S experts. */
static void experts_run(moe *L, const fl_tensor *in, fl_tensor *h, fl_tensor *a, fl_tensor *out,
                        const int64_t *off, int G) {
    const fl_ops *ops = L->host->ops;
    ops->gemm_grouped(0, 1.0f, in, &L->fc_w->value, off, G, 0.0f, h);     /* h[R,de] */
    bias_act(L, L->act, h, &L->fc_b->value, off, G, a);                  /* a = act(h + b_fc) */
    ops->gemm_grouped(0, 1.0f, a, &L->proj_w->value, off, G, 0.0f, out); /* out[R,d] */
    bias_act(L, FL_ACT_IDENTITY, out, &L->proj_b->value, off, G, out);   /* out += b_proj */
}

/* ---- expert parallelism: the rows travel to their experts and back ---- */

/* Room for R received rows: host index arrays and device tensors. */
static fl_status ensure_received(moe *L, int64_t R, fl_error *err) {
    if (R > L->r_cap) {
        int32_t *p = realloc(L->rperm, (size_t)R * sizeof *p), *q = p ? realloc(L->rinv, (size_t)R * sizeof *q) : NULL;
        if (p) L->rperm = p;
        if (q) L->rinv = q;
        if (!p || !q) return L->host->error(err, FL_ENOMEM, "moe: out of memory for %lld received rows", (long long)R);
        L->r_cap = R;
    }
    fl_status st;
    if ((st = ensure2(L, &L->perm_t, FL_I32, R, 1, err)) || (st = ensure2(L, &L->inv_t, FL_I32, R, 1, err)) ||
        (st = ensure2(L, &L->xr, FL_F32, R, L->d, err)) || (st = ensure2(L, &L->xe, FL_F32, R, L->d, err)) ||
        (st = ensure2(L, &L->he, FL_F32, R, L->de, err)) || (st = ensure2(L, &L->ae, FL_F32, R, L->de, err)) ||
        (st = ensure2(L, &L->oe, FL_F32, R, L->d, err)))
        return st;
    L->perm_t.ndim = L->inv_t.ndim = 1;
    return FL_OK;
}

/* Every rank tells every rank of its group how many of its sorted rows go
   to each of that rank's experts: cnt_recv[s·El + l] rows from group rank s
   for local expert l. Sets send_rows, recv_rows and r. */
static fl_status exchange_counts(moe *L, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    const int64_t E = L->E, El = L->El, S = L->S;
    int64_t *cnt = L->cnt_recv; /* scratch for the counts sent, then the ones received */
    for (int64_t e = 0; e < E; e++) cnt[e] = L->off[e + 1] - L->off[e];
    for (int64_t j = 0; j < S; j++) L->send_rows[j] = L->off[(j + 1) * El] - L->off[j * El];
    fl_status st;
    if ((st = ensure2(L, &L->cnt_s, FL_I64, E, 1, err)) || (st = ensure2(L, &L->cnt_r, FL_I64, E, 1, err))) return st;
    ops->from_host(&L->cnt_s, cnt, (size_t)E * sizeof *cnt);
    st = L->comm->alltoallv(L->comm, L->cnt_s.data, L->ones, L->cnt_r.data, L->ones, (size_t)El * sizeof *cnt, err);
    if (st) return st;
    ops->to_host(cnt, &L->cnt_r, (size_t)E * sizeof *cnt);
    L->r = 0;
    for (int64_t s = 0; s < S; s++) {
        L->recv_rows[s] = 0;
        for (int64_t l = 0; l < El; l++) L->recv_rows[s] += cnt[s * El + l];
        L->r += L->recv_rows[s];
    }
    return FL_OK;
}

/* The received rows are source-major (rank s's rows for expert 0, 1, ...,
   then rank s+1's); the experts want expert-major. rperm[i] is the received
   row at expert-major position i, rinv its inverse, loff the local experts'
   offsets. */
static void expert_order(moe *L) {
    const int64_t El = L->El, S = L->S;
    int64_t i = 0, base = 0;
    L->loff[0] = 0;
    for (int64_t l = 0; l < El; l++) {
        base = 0;
        for (int64_t s = 0; s < S; s++) {
            int64_t at = base;
            for (int64_t q = 0; q < l; q++) at += L->cnt_recv[s * El + q];
            for (int64_t k = 0; k < L->cnt_recv[s * El + l]; k++, i++) {
                L->rperm[i] = (int32_t)(at + k);
                L->rinv[at + k] = (int32_t)i;
            }
            base += L->recv_rows[s];
        }
        L->loff[l + 1] = i;
    }
}

/* xs[M,d] (sorted, so in owner order) → xe[R,d] at this rank's experts. */
static fl_status dispatch(moe *L, const fl_tensor *xs, fl_error *err) {
    fl_status st = exchange_counts(L, err);
    if (!st) st = ensure_received(L, L->r, err);
    if (st) return st;
    const size_t row = (size_t)L->d * sizeof(float);
    st = L->comm->alltoallv(L->comm, xs->data, L->send_rows, L->xr.data, L->recv_rows, row, err);
    if (st) return st;
    expert_order(L);
    const fl_ops *ops = L->host->ops;
    ops->from_host(&L->perm_t, L->rperm, (size_t)L->r * sizeof(int32_t));
    ops->from_host(&L->inv_t, L->rinv, (size_t)L->r * sizeof(int32_t));
    fl_tensor xr = fl_rows(&L->xr, 0, L->r), xe = fl_rows(&L->xe, 0, L->r), perm = fl_rows(&L->perm_t, 0, L->r);
    ops->gather_rows(&xr, &perm, &xe);
    return FL_OK;
}

/* The reverse trip: rows[R,d] expert-major here → back[M,d] in the
   sender's sorted order (xr is the staging buffer). */
static fl_status send_back(moe *L, const fl_tensor *rows, fl_tensor *back, fl_error *err) {
    fl_tensor xr = fl_rows(&L->xr, 0, L->r), inv = fl_rows(&L->inv_t, 0, L->r);
    L->host->ops->gather_rows(rows, &inv, &xr); /* source-major again */
    return L->comm->alltoallv(L->comm, xr.data, L->recv_rows, back->data, L->send_rows,
                              (size_t)L->d * sizeof(float), err);
}

/* Rows the sorted order sends to each rank's experts, computed there. */
static fl_status experts_forward(moe *L, fl_error *err) {
    const int64_t M = L->m;
    fl_tensor xs = fl_rows(&L->xs, 0, M), o = fl_rows(&L->o, 0, M);
    if (L->S == 1) {
        fl_tensor h = fl_rows(&L->h, 0, M), a = fl_rows(&L->a, 0, M);
        experts_run(L, &xs, &h, &a, &o, L->off, (int)L->E);
        return FL_OK;
    }
    fl_status st = dispatch(L, &xs, err);
    if (st) return st;
    const int64_t R = L->r;
    fl_tensor xe = fl_rows(&L->xe, 0, R), he = fl_rows(&L->he, 0, R), ae = fl_rows(&L->ae, 0, R);
    fl_tensor oe = fl_rows(&L->oe, 0, R);
    experts_run(L, &xe, &he, &ae, &oe, L->loff, (int)L->El);
    return send_back(L, &oe, &o, err);
}

/* A rank without tokens still takes part in every collective. */
static fl_status no_tokens(moe *L, fl_error *err) {
    L->m = 0;
    L->dropped = 0;
    for (int64_t i = 0; i <= L->E; i++) L->off[i] = 0;
    for (int64_t i = 0; i < L->E; i++) L->count[i] = 0, L->psum[i] = 0;
    double ng = 0;
    fl_status st = global_loads(L, &ng, err);
    return st || L->S == 1 ? st : experts_forward(L, err);
}

static fl_status moe_forward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x, fl_tensor *y,
                             fl_error *err) {
    moe *L = layer;
    const fl_ops *ops = L->host->ops;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "moe", "x", x, L->d, &n, err);
    if (!st && fl_numel(y) != n * L->d)
        st = L->host->error(err, FL_EINVAL, "moe: y has %lld values, x has %lld rows of %lld",
                            (long long)fl_numel(y), (long long)n, (long long)L->d);
    if (!st && n * L->k > INT32_MAX)
        st = L->host->error(err, FL_EINVAL, "moe: %lld tokens x top_k %lld overflow the i32 indices",
                            (long long)n, (long long)L->k);
    if (!st) st = ensure_forward(L, n, err);
    if (st) return st;
    L->x = fl_view2(x, n, L->d);
    L->n = n;
    if (n == 0) {
        if (L->comm->size == 1) {
            L->m = 0;
            return FL_OK;
        }
        return no_tokens(L, err);
    }
    router_forward(L, ctx);
    if ((st = route(L, err))) return st;
    fl_tensor tok = slice(&L->tok, FL_I32, 0, L->m), xs = fl_rows(&L->xs, 0, L->m);
    ops->gather_rows(&L->x, &tok, &xs); /* xs[M,d]: the tokens in expert order */
    if ((st = experts_forward(L, err))) return st;
    /* y[n] = Σ_j gates[n,j] · o[pos[n,j]]: one pass writing every row once;
       dropped assignments (pos -1) add nothing. */
    fl_tensor y2 = fl_view2(y, n, L->d), o = fl_rows(&L->o, 0, L->m);
    ops->embedding_bag(&o, &L->pos, &L->gates, &y2);
    return FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                   */
/* ------------------------------------------------------------------------ */

static fl_status ensure_backward(moe *L, fl_error *err) {
    const int64_t N = L->n, NK = N * L->k;
    /* draw (noisy) was made by the forward */
    fl_status st;
    if ((st = ensure2(L, &L->dgate, FL_F32, N, L->k, err)) || (st = ensure2(L, &L->dout, FL_F32, NK, L->d, err)) ||
        (st = ensure2(L, &L->da, FL_F32, NK, L->de, err)))
        return st;
    return ensure2(L, &L->dlogits, FL_F32, N, L->E, err);
}

/* Backward through experts_run: dio[R,d] holds d out on entry and d in on
   return; parameter gradients accumulate; da[R,de] is scratch. */
static void experts_grad(moe *L, const fl_tensor *in, const fl_tensor *h, const fl_tensor *a, fl_tensor *dio,
                         fl_tensor *da, const int64_t *off, int G) {
    const fl_ops *ops = L->host->ops;
    /* c_proj: dW += aᵀ do, db += Σ do, da = do · W_projᵀ */
    ops->gemm_grouped_wgrad(1.0f, a, dio, off, G, 1.0f, &L->proj_w->grad);
    bias_act_backward(L, FL_ACT_IDENTITY, dio, &L->proj_b->value, off, G, dio, &L->proj_b->grad);
    ops->gemm_grouped(1, 1.0f, dio, &L->proj_w->value, off, G, 0.0f, da);
    /* c_fc: dh in da (and db += Σ dh), dW += inᵀ dh, d in = dh · W_fcᵀ (into dio) */
    bias_act_backward(L, L->act, h, &L->fc_b->value, off, G, da, &L->fc_b->grad);
    ops->gemm_grouped_wgrad(1.0f, in, da, off, G, 1.0f, &L->fc_w->grad);
    ops->gemm_grouped(1, 1.0f, da, &L->fc_w->value, off, G, 0.0f, dio);
}

/* d o[M,d] of the sorted rows → d xs[M,d] in the same buffer, through this
   rank's experts or (expert parallel) the owners' and back. */
static fl_status experts_backward_rows(moe *L, fl_tensor *dout, fl_error *err) {
    const int64_t M = L->m;
    if (L->S == 1) {
        fl_tensor xs = fl_rows(&L->xs, 0, M), h = fl_rows(&L->h, 0, M), a = fl_rows(&L->a, 0, M);
        fl_tensor da = fl_rows(&L->da, 0, M);
        experts_grad(L, &xs, &h, &a, dout, &da, L->off, (int)L->E);
        return FL_OK;
    }
    const int64_t R = L->r;
    fl_status st = ensure2(L, &L->dae, FL_F32, R, L->de, err);
    if (st) return st;
    /* d o to the experts' ranks, expert-major there (in oe: free by now) */
    st = L->comm->alltoallv(L->comm, dout->data, L->send_rows, L->xr.data, L->recv_rows,
                            (size_t)L->d * sizeof(float), err);
    if (st) return st;
    fl_tensor xr = fl_rows(&L->xr, 0, R), perm = fl_rows(&L->perm_t, 0, R), de = fl_rows(&L->oe, 0, R);
    L->host->ops->gather_rows(&xr, &perm, &de);
    fl_tensor xe = fl_rows(&L->xe, 0, R), he = fl_rows(&L->he, 0, R), ae = fl_rows(&L->ae, 0, R);
    fl_tensor dae = fl_rows(&L->dae, 0, R);
    experts_grad(L, &xe, &he, &ae, &de, &dae, L->loff, (int)L->El);
    return send_back(L, &de, dout, err); /* d xs home, into dout */
}

/* Through the experts: dy2[N,d] → parameter grads and dx2[N,d] (overwritten
   with the experts' part of dx); also dgate[N,k]. */
static fl_status experts_backward(moe *L, const fl_tensor *dy2, fl_tensor *dx2, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    const int64_t M = L->m;
    fl_tensor tok = slice(&L->tok, FL_I32, 0, M), gs = slice(&L->gs, FL_F32, 0, M);
    fl_tensor o = fl_rows(&L->o, 0, M), dout = fl_rows(&L->dout, 0, M);
    if (L->n > 0) {
        /* dgate[n,j] = o[pos[n,j]] · dy[n];  d o[m] = gs[m] · dy[tok[m]] */
        ops->embedding_bag_backward(dy2, &o, &L->pos, NULL, NULL, &L->dgate);
        ops->embedding_bag(dy2, &tok, &gs, &dout);
    }
    fl_status st = experts_backward_rows(L, &dout, err);
    /* dx[n] = Σ_j dxs[pos[n,j]]: back to token order, every row written */
    if (!st && L->n > 0) ops->embedding_bag(&dout, &L->pos, NULL, dx2);
    return st;
}

/* Through the router: dgate (and the aux losses) → dH, router grads, and
   dx2 += dH · W_routerᵀ (+ the noise projection's part). */
static fl_status router_backward_all(moe *L, fl_tensor *dx2, fl_error *err) {
    const fl_ops *ops = L->host->ops;
    const int64_t N = L->n;
    fl_status st = moe_router_backward(L->host, &L->probs, &L->lse, &L->topv, &L->topi, &L->gates, &L->dgate,
                                       &L->dbal_t, L->renorm, 2.0f * L->z_coef / (float)N, &L->dlogits, err);
    if (st) return st;
    ops->gemm(1, 0, 1.0f, &L->x, &L->dlogits, 1.0f, &L->router_w->grad); /* [d,N]·[N,E] */
    ops->gemm(0, 1, 1.0f, &L->dlogits, &L->router_w->value, 1.0f, dx2);  /* [N,E]·[d,E]ᵀ */
    if (!L->noise_on) return FL_OK;
    /* d raw = dH · eps · softplus'(raw) */
    ops->mul(&L->dlogits, &L->eps, &L->draw);
    ops->activation_backward(FL_ACT_SOFTPLUS, &L->raw, &L->draw, &L->draw);
    ops->gemm(1, 0, 1.0f, &L->x, &L->draw, 1.0f, &L->noise_w->grad);
    ops->gemm(0, 1, 1.0f, &L->draw, &L->noise_w->value, 1.0f, dx2);
    return FL_OK;
}

static fl_status moe_backward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy, fl_tensor *dx,
                              fl_error *err) {
    (void)ctx; /* the noise of the forward is saved, not redrawn */
    moe *L = layer;
    int64_t n = 0;
    fl_status st = fl_ffn_rows(L->host, "moe", "dy", dy, L->d, &n, err);
    if (st) return st;
    if (n != L->n || fl_numel(dx) != n * L->d)
        return L->host->error(err, FL_EINVAL, "moe: backward of %lld rows after a forward of %lld",
                              (long long)n, (long long)L->n);
    if (n == 0 && L->S == 1) return FL_OK; /* nothing to send: no collective to join */
    if ((st = ensure_backward(L, err))) return st;
    fl_tensor dy2 = fl_view2(dy, n, L->d), dx2 = fl_view2(dx, n, L->d);
    if ((st = experts_backward(L, &dy2, &dx2, err))) return st;
    return n > 0 ? router_backward_all(L, &dx2, err) : FL_OK;
}

/* ------------------------------------------------------------------------ */
/* Auxiliary losses, statistics and the descriptor                            */
/* ------------------------------------------------------------------------ */

static int moe_aux_loss(void *layer, fl_stat *out, int max) {
    const moe *L = layer;
    fl_stat all[] = {
        {"balance", L->bal_coef * L->bal},
        {"z", L->z_coef * L->z},
    };
    int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n && i < max; i++) out[i] = all[i];
    return n;
}

/* The standard figures first (a caller with a short array still gets them),
   then the load of each expert, up to MAX_LOAD_STATS. balance_loss and
   z_loss are unweighted (1.0 = perfect balance), so they are worth
   watching even when their coefficient is 0. */
static int moe_stats(void *layer, fl_stat *out, int max) {
    const moe *L = layer;
    /* over several ranks count[] holds the whole batch's assignments */
    const double NK = (double)(L->n * L->k) * (double)L->comm->size;
    fl_stat head[] = {
        {"active_params", (double)active_params(L)},
        {"flops_per_token", (double)flops_per_token(L)},
        {"tokens_dropped", (double)L->dropped},
        {"balance_loss", L->bal},
        {"z_loss", L->z},
        {"experts", (double)L->E},
        {"top_k", (double)L->k},
        {"d_expert", (double)L->de},
    };
    int nh = (int)(sizeof head / sizeof head[0]);
    int nl = (int)(L->E < MAX_LOAD_STATS ? L->E : MAX_LOAD_STATS);
    for (int i = 0; i < nh + nl && i < max; i++) {
        if (i < nh) {
            out[i] = head[i];
        } else {
            out[i].name = L->load_names[i - nh];
            out[i].value = NK > 0 ? (double)L->count[i - nh] / NK : 0.0;
        }
    }
    return nh + nl;
}

/* What `ffnlab sweep --match` may change to size this layer (ffn.h). */
static const char *const SIZE_OPTIONS[] = {"d_expert", "experts", NULL};

static const fl_ffn_plugin DESCRIPTOR = {
    .header = {
        .magic = FL_PLUGIN_MAGIC,
        .abi_major = FL_FFN_ABI_MAJOR,
        .abi_minor = FL_FFN_ABI_MINOR,
        .struct_size = sizeof(fl_ffn_plugin),
        .kind = FL_PLUGIN_FFN,
        .name = "moe",
        .version = "1.0.0",
        .description = "sparsely-gated mixture of experts: top-k router, token-sorted grouped GEMMs "
                       "(Shazeer 2017, Switch 2021)",
        .options = OPTIONS,
        .n_options = N_OPTIONS,
    },
    .devices = FL_DEVICES_BUILT,
    .create = moe_create,
    .forward = moe_forward,
    .backward = moe_backward,
    .aux_loss = moe_aux_loss,
    .stats = moe_stats,
    .destroy = moe_destroy,
    .size_options = SIZE_OPTIONS,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &DESCRIPTOR.header; }
