/*
 * core/model.c — the GPT-2-style transformer (decoder or encoder, model.h):
 * parameters, forward, backward.
 *
 * The model composes backend kernels (embedding, layer norm, attention, LM
 * head, cross-entropy) with one FFN plugin per block. It keeps every
 * activation backward needs, sized for the largest batch seen so far:
 *
 *   res[2l]     x entering block l          res[2l+1]  x after its attention
 *   res[2L]     x entering ln_f
 *   ln1/ln2     normalised inputs of attention / FFN, with mean and rstd;
 *               ln1 only feeds GEMMs (qkv and its weight gradient), so it
 *               is stored in host.act_dtype (bf16 in the bf16 precision
 *               mode); ln2 is the FFN plugin's f32 input
 *   qkv, att    attention projections and what attention backward keeps
 *               (the backend's choice: probabilities or row log-sum-exps)
 *   atty        attention output before c_proj
 *
 * Decoding (fl_model_prefill, fl_model_decode_step) reuses these buffers for
 * the B rows of one new position per sequence, and keeps per block a KV
 * cache k_cache/v_cache[B,H,S,hs] (S = context) that only decoding writes.
 *
 * Scoring (fl_model_forward_shared) reuses them for the distinct rows of a
 * batch whose sequences share prefixes (B = 1, T = rows); only attention
 * sees the sequences whole, in the layout of core/row_plan.h (sh_*).
 *
 * Shapes: B batch, T time, C d_model, V vocab, N = B*T, H heads, hs = C/H.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_mask.h" /* fl_attn_lo/hi: the keys a query sees */
#include "backend.h"
#include "error.h"
#include "host_table.h"
#include "ffn_layer.h"
#include "optim.h"
#include "options.h"
#include "params.h"
#include "profile.h"
#include "row_plan.h"

typedef struct block {
    fl_param *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b, *ln2_w, *ln2_b;
    fl_ffn_layer ffn_layer;      /* the FFN plugin of this block */
    const fl_ffn_plugin *ffn;    /* = ffn_layer.ffn */
    void *layer;                 /* = ffn_layer.layer */
    /* activations */
    fl_tensor ln1, ln1_mean, ln1_rstd, qkv, att, atty, ln2, ln2_mean, ln2_rstd;
    fl_tensor k_cache, v_cache;  /* decoding: [B,H,S,hs] */
} block;

/* What the forward does with the KV cache. */
enum { KV_OFF, KV_PREFILL, KV_STEP };

struct fl_model {
    fl_model_config cfg;
    char **specs;                /* copies of cfg.ffn_specs */
    const fl_backend *be;
    fl_host host;
    fl_param_list params;
    fl_param *wte, *wpe, *lnf_w, *lnf_b;
    block *blocks;
    /* activations of the last forward */
    int B, T, has_targets, train;
    int64_t step;
    fl_tensor tokens, targets;   /* [B,T] i32 */
    fl_tensor positions;         /* [B,T] i32: each row's position (fl_ffn_ctx.positions) */
    fl_tensor lengths;           /* bert: [B] i32, each row's real keys (fl_attn_mask.lengths) */
    int32_t *len_host;           /* their host copy, grow-only */
    int64_t len_cap;
    int32_t *pos_host;           /* their host copy, grow-only */
    int64_t pos_cap, pos_B, pos_T, pos_start; /* what positions holds now (pos_B 0: nothing) */
    fl_tensor *res;              /* [2L+1] of [N,C] */
    fl_tensor lnf, lnf_mean, lnf_rstd, logits, dlogits;
    /* The LM head in a training forward: its logits' rows are head_w >= V
       long (head_width); when longer, it multiplies wte_pad[head_w,C] (wte's
       rows, then zeros) and backward's dW goes through dwte_pad. */
    int64_t head_w;
    fl_tensor wte_pad, dwte_pad;
    fl_tensor ffn_y;             /* [N,C] FFN output before the residual add */
    fl_tensor dres, dtmp, dbig;  /* backward scratch: [N,C], [N,C], [N,max(3C,...)] */
    fl_tensor datty;
    double ce_loss;
    int64_t n_targets;
    double loss_weight;          /* fl_model_set_loss_weight; 1 */
    int no_head;                 /* fl_model_forward_hidden: stop after ln_f */
    int kv_mode;                 /* KV_*: this forward fills or reads the cache */
    int kv_B, kv_len;            /* decoding: sequences, positions cached */
    fl_profile *prof;            /* bench --profile: phase marks; NULL: none */
    /* fl_model_forward_shared: the blocks run on the plan's n computed rows,
       attention on its layout (row_plan.h); shared 0: an ordinary forward */
    int shared;
    fl_row_plan plan;
    fl_tensor sh_src;            /* [L] i32: plan.src */
    fl_tensor sh_own;            /* [n] i32: plan.own */
    fl_tensor sh_tokens;         /* [L] i32: plan.lay_tok */
    fl_tensor sh_x;              /* [L,C]: the embedding, then attention outputs */
    fl_tensor sh_qkv, sh_att;    /* [L,3C], and the attention's scratch */
};

/* Starts a profiled phase (a no-op without a profile). */
#define PHASE(name) fl_profile_mark(m->prof, FL_PH_##name)

/* ---------------------------------------------------------------- create */

static fl_param *add_param(fl_model *m, const char *name, int ndim, int64_t d0, int64_t d1,
                           int init, float scale, unsigned flags, fl_error *err) {
    fl_param_spec s = {.name = name, .ndim = ndim, .shape = {d0, d1, 1, 1}, .init = init,
                       .init_scale = scale, .flags = flags};
    return fl_params_add(&m->params, m->be, name, &s, m->cfg.seed, m->cfg.n_layers, err);
}

static fl_status check_config(const fl_model_config *c, fl_error *err) {
    if (c->vocab_size < 2 || c->context < 1 || c->d_model < 1 || c->n_layers < 1 || c->n_heads < 1)
        return fl_fail(err, FL_EINVAL, "model: vocab %d, context %d, d_model %d, layers %d, heads %d: all must be positive",
                       c->vocab_size, c->context, c->d_model, c->n_layers, c->n_heads);
    if (c->d_model % c->n_heads)
        return fl_fail(err, FL_EINVAL, "model: d_model %d is not a multiple of n_heads %d", c->d_model, c->n_heads);
    if (!c->ffn_specs) return fl_fail(err, FL_EINVAL, "model: no FFN specs given");
    if (c->arch != FL_ARCH_GPT && c->arch != FL_ARCH_BERT)
        return fl_fail(err, FL_EINVAL, "model: arch %d is neither gpt (%d) nor bert (%d)", c->arch, FL_ARCH_GPT, FL_ARCH_BERT);
    if (c->arch == FL_ARCH_BERT && (c->pad_token < 0 || c->pad_token >= c->vocab_size))
        return fl_fail(err, FL_EINVAL, "model: an encoder needs a padding token in [0, %d), got %d", c->vocab_size, c->pad_token);
    if (c->n_layers < 64 && c->local_layers >> c->n_layers)
        return fl_fail(err, FL_EINVAL, "model: local attention in a layer past the %d layers", c->n_layers);
    if (c->local_layers && c->window < 1)
        return fl_fail(err, FL_EINVAL, "model: local attention needs a window of at least 1 key, got %d", c->window);
    return FL_OK;
}

static fl_status create_attention(fl_model *m, block *b, int l, fl_error *err) {
    const int64_t C = m->cfg.d_model;
    char name[128];
#define P(field, suffix, nd, d0, d1, init, sc, fl)                                  \
    snprintf(name, sizeof name, "transformer.h.%d.%s", l, suffix);                  \
    if (!(b->field = add_param(m, name, nd, d0, d1, init, sc, fl, err))) return err->code;
    P(ln1_w, "ln_1.weight", 1, C, 1, FL_INIT_ONES, 0, 0)
    P(ln1_b, "ln_1.bias", 1, C, 1, FL_INIT_ZEROS, 0, 0)
    P(attn_w, "attn.c_attn.weight", 2, C, 3 * C, FL_INIT_NORMAL, 0.02f, FL_PARAM_DECAY)
    P(attn_b, "attn.c_attn.bias", 1, 3 * C, 1, FL_INIT_ZEROS, 0, 0)
    P(proj_w, "attn.c_proj.weight", 2, C, C, FL_INIT_NORMAL, 0.02f, FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT)
    P(proj_b, "attn.c_proj.bias", 1, C, 1, FL_INIT_ZEROS, 0, 0)
    P(ln2_w, "ln_2.weight", 1, C, 1, FL_INIT_ONES, 0, 0)
    P(ln2_b, "ln_2.bias", 1, C, 1, FL_INIT_ZEROS, 0, 0)
#undef P
    return FL_OK;
}

/* The row length of the training forward's logits (fl_model.head_w): the
   vocabulary V rounded up to a multiple of the backend's gemm_align (a
   GPU's tensor-core kernels want aligned rows; GPT-2's 50,257 becomes
   50,304, as llm.c pads it), or the multiple FFNLAB_PAD_VOCAB names ("off"
   or 1: none; "auto" or unset: the backend's). The numbers stay the same to
   f32 summation order: the extra columns multiply zero rows, and the loss
   ignores them. */
static fl_status head_width(int64_t V, const fl_backend *be, int64_t *out, fl_error *err) {
    const char *want = getenv("FFNLAB_PAD_VOCAB");
    long mult = be->gemm_align > 1 ? be->gemm_align : 1;
    if (want && !strcmp(want, "off")) {
        mult = 1;
    } else if (want && want[0] && strcmp(want, "auto")) {
        char *end = NULL;
        mult = strtol(want, &end, 10);
        if (*end || mult < 1 || mult > 4096)
            return fl_fail(err, FL_EINVAL, "FFNLAB_PAD_VOCAB=%s: expected auto, off or a multiple from 1 to 4096", want);
    }
    *out = (V + mult - 1) / mult * mult;
    return FL_OK;
}

/* Loads block l's FFN plugin from its spec ("moe:experts=8") and creates the layer. */
static fl_status create_ffn(fl_model *m, block *b, int l, const char *spec, fl_error *err) {
    const fl_ffn_site site = {.d_model = m->cfg.d_model, .index = l, .n_layers = m->cfg.n_layers,
                              .vocab_size = m->cfg.vocab_size, .seed = m->cfg.seed};
    fl_status st = fl_ffn_layer_create(&b->ffn_layer, &m->host, &m->params, spec, &site, err);
    b->ffn = b->ffn_layer.ffn;
    b->layer = b->ffn_layer.layer;
    return st;
}

fl_status fl_model_create(const fl_model_config *mc, const fl_backend *be, fl_model **out,
                          fl_error *err) {
    fl_status st = check_config(mc, err);
    if (st) return st;
    fl_model *m = calloc(1, sizeof *m);
    if (!m) return fl_fail(err, FL_ENOMEM, "out of memory creating the model");
    m->cfg = *mc;
    m->be = be;
    m->loss_weight = 1.0;
    if ((st = head_width(mc->vocab_size, be, &m->head_w, err))) {
        free(m);
        return st;
    }
    fl_host_init(&m->host, be, mc->comm);
    const int L = mc->n_layers;
    const int64_t C = mc->d_model;
    m->specs = calloc((size_t)L, sizeof *m->specs);
    m->blocks = calloc((size_t)L, sizeof *m->blocks);
    m->res = calloc((size_t)(2 * L + 1), sizeof *m->res);
    if (!m->specs || !m->blocks || !m->res) {
        fl_model_free(m);
        return fl_fail(err, FL_ENOMEM, "out of memory creating the model");
    }
    m->cfg.ffn_specs = (const char *const *)m->specs;
    st = FL_OK;
    if (!(m->wte = add_param(m, "transformer.wte.weight", 2, mc->vocab_size, C, FL_INIT_NORMAL, 0.02f, FL_PARAM_DECAY, err)) ||
        !(m->wpe = add_param(m, "transformer.wpe.weight", 2, mc->context, C, FL_INIT_NORMAL, 0.02f, FL_PARAM_DECAY, err)))
        st = err->code;
    for (int l = 0; l < L && !st; l++) {
        m->specs[l] = strdup(mc->ffn_specs[l] ? mc->ffn_specs[l] : "dense");
        if (!m->specs[l]) st = fl_fail(err, FL_ENOMEM, "out of memory");
        if (!st) st = create_attention(m, &m->blocks[l], l, err);
        if (!st) st = create_ffn(m, &m->blocks[l], l, m->specs[l], err);
    }
    if (!st && (!(m->lnf_w = add_param(m, "transformer.ln_f.weight", 1, C, 1, FL_INIT_ONES, 0, 0, err)) ||
                !(m->lnf_b = add_param(m, "transformer.ln_f.bias", 1, C, 1, FL_INIT_ZEROS, 0, 0, err))))
        st = err->code;
    if (st) {
        fl_model_free(m);
        return st;
    }
    *out = m;
    return FL_OK;
}

static void release_block(fl_model *m, block *b) {
    const fl_host *h = &m->host;
    fl_tensor *ts[] = {&b->ln1, &b->ln1_mean, &b->ln1_rstd, &b->qkv, &b->att, &b->atty,
                       &b->ln2, &b->ln2_mean, &b->ln2_rstd, &b->k_cache, &b->v_cache};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) h->tensor_release(h, ts[i]);
    fl_ffn_layer_destroy(&b->ffn_layer);
}

void fl_model_free(fl_model *m) {
    if (!m) return;
    const fl_host *h = &m->host;
    for (int l = 0; m->blocks && l < m->cfg.n_layers; l++) release_block(m, &m->blocks[l]);
    for (int i = 0; m->res && i < 2 * m->cfg.n_layers + 1; i++) h->tensor_release(h, &m->res[i]);
    fl_tensor *ts[] = {&m->tokens, &m->targets, &m->positions, &m->lengths, &m->lnf, &m->lnf_mean, &m->lnf_rstd,
                       &m->logits, &m->dlogits, &m->wte_pad, &m->dwte_pad, &m->ffn_y, &m->dres, &m->dtmp,
                       &m->dbig, &m->datty, &m->sh_src, &m->sh_own, &m->sh_tokens, &m->sh_x, &m->sh_qkv, &m->sh_att};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) h->tensor_release(h, ts[i]);
    fl_params_free(&m->params, m->be);
    for (int l = 0; m->specs && l < m->cfg.n_layers; l++) free(m->specs[l]);
    free(m->specs);
    free(m->blocks);
    free(m->res);
    free(m->pos_host);
    free(m->len_host);
    fl_row_plan_free(&m->plan);
    free(m);
}

/* ------------------------------------------------------------- buffers */

static fl_status ensure(fl_model *m, fl_tensor *t, int dtype, int64_t d0, int64_t d1, fl_error *err) {
    int64_t shape[2] = {d0, d1};
    return m->host.tensor_ensure(&m->host, t, dtype, d1 ? 2 : 1, shape, err);
}

/* Every activation of a forward over tokens[B,T]; n_saved: each block's
   attention scratch (a shared-rows forward keeps none: it attends in sh_att). */
static fl_status ensure_activations(fl_model *m, int B, int T, int64_t n_saved, fl_error *err) {
    const int64_t N = (int64_t)B * T, C = m->cfg.d_model;
    fl_status st = FL_OK;
    for (int i = 0; i < 2 * m->cfg.n_layers + 1 && !st; i++) st = ensure(m, &m->res[i], FL_F32, N, C, err);
    for (int l = 0; l < m->cfg.n_layers && !st; l++) {
        block *b = &m->blocks[l];
        if ((st = ensure(m, &b->ln1, m->host.act_dtype, N, C, err)) || (st = ensure(m, &b->ln1_mean, FL_F32, N, 0, err)) ||
            (st = ensure(m, &b->ln1_rstd, FL_F32, N, 0, err)) || (st = ensure(m, &b->qkv, FL_F32, N, 3 * C, err)) ||
            (st = ensure(m, &b->att, FL_F32, n_saved, 0, err)) ||
            (st = ensure(m, &b->atty, FL_F32, N, C, err)) || (st = ensure(m, &b->ln2, FL_F32, N, C, err)) ||
            (st = ensure(m, &b->ln2_mean, FL_F32, N, 0, err)) || (st = ensure(m, &b->ln2_rstd, FL_F32, N, 0, err)))
            return st;
    }
    if (st || (st = ensure(m, &m->lnf, FL_F32, N, C, err)) || (st = ensure(m, &m->lnf_mean, FL_F32, N, 0, err)) ||
        (st = ensure(m, &m->lnf_rstd, FL_F32, N, 0, err)) ||
        (st = ensure(m, &m->ffn_y, FL_F32, N, C, err)) || (st = ensure(m, &m->tokens, FL_I32, B, T, err)) ||
        (st = ensure(m, &m->targets, FL_I32, B, T, err)) || (st = ensure(m, &m->positions, FL_I32, B, T, err)) ||
        (st = ensure(m, &m->lengths, FL_I32, B, 0, err)))
        return st;
    /* the attention kernels see qkv as [B,T,3C] and outputs as [B,T,C] */
    return FL_OK;
}

static fl_tensor as3(const fl_tensor *t, int B, int T) {
    fl_tensor v = *t;
    v.ndim = 3;
    v.shape[2] = t->shape[1];
    v.shape[0] = B;
    v.shape[1] = T;
    v.capacity = 0;
    return v;
}

/* ------------------------------------------------------------- forward */

static fl_ffn_ctx ffn_ctx(const fl_model *m, int l) {
    char key[32];
    snprintf(key, sizeof key, "ffn.%d", l);
    fl_ffn_ctx c = {.train = m->train, .step = m->step,
                    .rng_key = fl_rng_key(m->cfg.seed ^ fl_mix64((uint64_t)m->step), key),
                    .B = m->B, .T = m->T, .tokens = &m->tokens, .positions = &m->positions};
    return c;
}

/* Block l's local window, or 0 for a global block. */
static int64_t window_of(const fl_model *m, int l) {
    return (m->cfg.local_layers >> l) & 1 ? m->cfg.window : 0;
}

/* Which keys block l's queries see in the last forward (model.h). */
static fl_attn_mask mask_of(const fl_model *m, int l) {
    const int bert = m->cfg.arch == FL_ARCH_BERT;
    fl_attn_mask mk = {.causal = !bert, .window = window_of(m, l), .lengths = bert ? &m->lengths : NULL};
    return mk;
}

/* The rows of t [R,D] the sequences of length l take in the plan's layout,
   as [count, l, D]. */
static fl_tensor layout_group(const fl_model *m, const fl_tensor *t, int l) {
    const int64_t count = fl_row_plan_count(&m->plan, l);
    fl_tensor rows = fl_rows(t, m->plan.start[l], count * l);
    return as3(&rows, (int)count, l);
}

/* atty = attention of a shared-rows forward: the computed qkv rows spread
   into the layout (a shared row into every sequence that holds it), each
   group of sequences of one length attended, and the computed rows'
   outputs gathered back. */
static void attend_layout(fl_model *m, block *b, int l) {
    const fl_ops *o = &m->be->ops;
    o->gather_rows(&b->qkv, &m->sh_src, &m->sh_qkv);
    const fl_attn_mask mk = mask_of(m, l);
    for (int len = 1; len <= m->plan.T; len++) {
        if (!fl_row_plan_count(&m->plan, len)) continue;
        fl_tensor qkv3 = layout_group(m, &m->sh_qkv, len), y3 = layout_group(m, &m->sh_x, len);
        fl_tensor att = fl_rows(&m->sh_att, 0, m->be->attention_saved_numel(qkv3.shape[0], len, m->cfg.d_model,
                                                                            m->cfg.n_heads));
        m->be->attention(&qkv3, m->cfg.n_heads, &mk, &y3, &att);
    }
    o->gather_rows(&m->sh_x, &m->sh_own, &b->atty);
}

/* x_mid = x + c_proj(attn(ln_1(x))) in block l. A prefill also caches the
   keys and values of its positions; a decoding step (T = 1) caches its own
   and attends over the cache: positions 0..kv_len, itself last. */
static void attention_forward(fl_model *m, block *b, int l, const fl_tensor *x, fl_tensor *x_mid) {
    const fl_ops *o = &m->be->ops;
    PHASE(NORM);
    o->layernorm(x, &b->ln1_w->value, &b->ln1_b->value, 1e-5f, &b->ln1, &b->ln1_mean, &b->ln1_rstd);
    PHASE(QKV);
    o->gemm(0, 0, 1.0f, &b->ln1, &b->attn_w->value, 0.0f, &b->qkv);
    o->add_bias(&b->qkv, &b->attn_b->value);
    fl_tensor qkv3 = as3(&b->qkv, m->B, m->T), y3 = as3(&b->atty, m->B, m->T);
    PHASE(ATTENTION);
    if (m->kv_mode == KV_STEP) {
        m->be->kv_append(&qkv3, m->kv_len, &b->k_cache, &b->v_cache);
        m->be->attention_decode(&qkv3, &b->k_cache, &b->v_cache, m->kv_len + 1, window_of(m, l), &y3);
    } else if (m->shared) {
        attend_layout(m, b, l);
    } else {
        const fl_attn_mask mk = mask_of(m, l);
        m->be->attention(&qkv3, m->cfg.n_heads, &mk, &y3, &b->att);
        if (m->kv_mode == KV_PREFILL) m->be->kv_append(&qkv3, 0, &b->k_cache, &b->v_cache);
    }
    PHASE(PROJ);
    o->copy(x, x_mid);
    o->gemm(0, 0, 1.0f, &b->atty, &b->proj_w->value, 1.0f, x_mid);
    o->add_bias(x_mid, &b->proj_b->value);
}

/* x_out = x_mid + ffn(ln_2(x_mid)) */
static fl_status ffn_forward(fl_model *m, block *b, int l, const fl_tensor *x_mid, fl_tensor *x_out,
                             fl_error *err) {
    const fl_ops *o = &m->be->ops;
    PHASE(NORM);
    o->layernorm(x_mid, &b->ln2_w->value, &b->ln2_b->value, 1e-5f, &b->ln2, &b->ln2_mean, &b->ln2_rstd);
    PHASE(FFN);
    fl_ffn_ctx c = ffn_ctx(m, l);
    fl_status st = b->ffn->forward(b->layer, &c, &b->ln2, &m->ffn_y, err);
    if (st) {
        fl_error_prefix(err, "layer %d ffn '%s' forward", l, b->ffn->header.name);
        return st;
    }
    o->copy(x_mid, x_out);
    o->axpby(1.0f, &m->ffn_y, 1.0f, x_out);
    return FL_OK;
}

static double aux_total(const fl_model *m) {
    fl_stat s[16];
    int n = fl_model_aux_losses(m, s, 16);
    double sum = 0;
    for (int i = 0; i < n && i < 16; i++) sum += s[i].value;
    return sum;
}

static int64_t count_targets(const int32_t *targets, int64_t N) {
    int64_t c = 0;
    for (int64_t i = 0; i < N; i++) c += targets[i] >= 0;
    return c;
}

static fl_status check_tokens(const fl_model *m, const int32_t *ids, int64_t N, int allow_neg,
                              const char *what, fl_error *err) {
    for (int64_t i = 0; i < N; i++)
        if (ids[i] >= m->cfg.vocab_size || (ids[i] < 0 && !allow_neg))
            return fl_fail(err, FL_EINVAL, "%s[%lld] = %d is outside the vocabulary [0, %d)", what,
                           (long long)i, ids[i], m->cfg.vocab_size);
    return FL_OK;
}

/* m->positions[B,T] = pos..pos+T-1 in every row, uploaded only when the
   shape or the start changed (a training run uploads it once). */
static fl_status set_positions(fl_model *m, int B, int T, int pos, fl_error *err) {
    if (m->pos_B == B && m->pos_T == T && m->pos_start == pos) return FL_OK;
    const int64_t n = (int64_t)B * T;
    if (n > m->pos_cap) {
        int32_t *p = realloc(m->pos_host, (size_t)n * sizeof *p);
        if (!p) return fl_fail(err, FL_ENOMEM, "out of memory for token positions");
        m->pos_host = p, m->pos_cap = n;
    }
    for (int64_t i = 0; i < n; i++) m->pos_host[i] = pos + (int32_t)(i % T);
    m->be->ops.from_host(&m->positions, m->pos_host, (size_t)n * sizeof *m->pos_host);
    m->pos_B = B, m->pos_T = T, m->pos_start = pos;
    return FL_OK;
}

/* An encoder's m->lengths[B]: each row's tokens up to its last non-pad one
   (its trailing pads are the padding attention masks). */
static fl_status set_lengths(fl_model *m, const int32_t *tokens, int B, int T, fl_error *err) {
    if (m->cfg.arch != FL_ARCH_BERT) return FL_OK;
    if (B > m->len_cap) {
        int32_t *p = realloc(m->len_host, (size_t)B * sizeof *p);
        if (!p) return fl_fail(err, FL_ENOMEM, "out of memory for sequence lengths");
        m->len_host = p, m->len_cap = B;
    }
    for (int b = 0; b < B; b++) {
        const int32_t *row = tokens + (int64_t)b * T;
        int n = T;
        while (n > 0 && row[n - 1] == m->cfg.pad_token) n--;
        m->len_host[b] = n;
    }
    m->be->ops.from_host(&m->lengths, m->len_host, (size_t)B * sizeof *m->len_host);
    return FL_OK;
}

/* res[2l+2] from res[2l], for every block: res[2L] enters ln_f. */
static fl_status run_blocks(fl_model *m, fl_error *err) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        attention_forward(m, &m->blocks[l], l, &m->res[2 * l], &m->res[2 * l + 1]);
        fl_status st = ffn_forward(m, &m->blocks[l], l, &m->res[2 * l + 1], &m->res[2 * l + 2], err);
        if (st) return st;
    }
    return FL_OK;
}

/* res[2L], the residual stream entering ln_f, for tokens[B,T] (host, checked)
   at positions pos..pos+T-1; m->train, step and kv_mode set by the caller. */
static fl_status forward_blocks(fl_model *m, const int32_t *tokens, int B, int T, int pos, fl_error *err) {
    const int64_t n_saved = m->be->attention_saved_numel(B, T, m->cfg.d_model, m->cfg.n_heads);
    fl_status st = ensure_activations(m, B, T, n_saved, err);
    if (!st) st = set_positions(m, B, T, pos, err);
    if (!st) st = set_lengths(m, tokens, B, T, err);
    if (st) return st;
    m->B = B, m->T = T, m->shared = 0;
    const fl_ops *o = &m->be->ops;
    PHASE(EMBED);
    o->from_host(&m->tokens, tokens, (size_t)B * (size_t)T * sizeof(int32_t));
    fl_tensor wpe = fl_rows(&m->wpe->value, pos, T);
    m->be->embed(&m->wte->value, &wpe, &m->tokens, &m->res[0]);
    return run_blocks(m, err);
}

/* Does t hold a NaN or an infinity? (copied to the host: only on failure) */
static int nonfinite(const fl_model *m, const fl_tensor *t) {
    size_t n = (size_t)fl_numel(t);
    float *h = malloc(n * sizeof *h);
    int bad = 0;
    if (h) m->be->ops.to_host(h, t, n * sizeof *h);
    for (size_t i = 0; h && i < n && !bad; i++) bad = !isfinite(h[i]);
    free(h);
    return bad;
}

/* A loss that is not finite: the first residual stream that is not finite
   says which part made it, so a plugin that writes NaN is named. */
static fl_status nonfinite_loss(fl_model *m, int64_t step, fl_error *err) {
    for (int i = 0; i <= 2 * m->cfg.n_layers; i++) {
        if (!nonfinite(m, &m->res[i])) continue;
        const int l = (i - 1) / 2;
        if (i == 0) return fl_fail(err, FL_ENUMERIC, "forward: the embeddings are not finite at step %lld", (long long)step);
        if (i % 2) return fl_fail(err, FL_ENUMERIC, "forward: layer %d attention output is not finite at step %lld", l,
                                  (long long)step);
        return fl_fail(err, FL_ENUMERIC, "forward: layer %d ffn '%s' wrote values that are not finite (NaN or inf) at step "
                       "%lld", l, m->blocks[l].ffn->header.name, (long long)step);
    }
    return fl_fail(err, FL_ENUMERIC, "forward: loss is not finite (%g) at step %lld", m->ce_loss, (long long)step);
}

/* wte_pad[head_w,C] = wte's V rows, then zeros: the LM head's weights in a
   padded training forward (refreshed each time: the optimizer moved wte). */
static fl_status pad_head(fl_model *m, fl_error *err) {
    const int64_t V = m->cfg.vocab_size, W = m->head_w;
    fl_status st = ensure(m, &m->wte_pad, FL_F32, W, m->cfg.d_model, err);
    if (st) return st;
    fl_tensor top = fl_rows(&m->wte_pad, 0, V), pad = fl_rows(&m->wte_pad, V, W - V);
    m->be->ops.copy(&m->wte->value, &top);
    m->be->ops.fill(&pad, 0.0f);
    return FL_OK;
}

/* The LM head's weights for logits rows W long: wte, or wte_pad when padded. */
static const fl_tensor *head_weights(const fl_model *m, int64_t W) {
    return W > m->cfg.vocab_size ? &m->wte_pad : &m->wte->value;
}

fl_status fl_model_forward(fl_model *m, const int32_t *tokens, const int32_t *targets, int B,
                           int T, int train, int64_t step, double *loss, fl_error *err) {
    if (B < 1 || T < 1 || T > m->cfg.context)
        return fl_fail(err, FL_EINVAL, "forward: batch %d x %d tokens (context is %d)", B, T, m->cfg.context);
    const int64_t N = (int64_t)B * T;
    fl_status st = check_tokens(m, tokens, N, 0, "tokens", err);
    if (!st && targets) st = check_tokens(m, targets, N, 1, "targets", err);
    const int64_t V = m->cfg.vocab_size, W = train && targets ? m->head_w : V; /* the logits' row length */
    if (!st && !m->no_head) st = ensure(m, &m->logits, FL_F32, N, W, err);
    if (st) return st;
    m->train = train, m->step = step, m->has_targets = targets != NULL;
    if ((st = forward_blocks(m, tokens, B, T, 0, err))) return st;
    const fl_ops *o = &m->be->ops;
    const int L = m->cfg.n_layers;
    PHASE(NORM);
    o->layernorm(&m->res[2 * L], &m->lnf_w->value, &m->lnf_b->value, 1e-5f, &m->lnf, &m->lnf_mean, &m->lnf_rstd);
    if (m->no_head) return FL_OK; /* fl_model_forward_hidden: the caller reads lnf */
    PHASE(HEAD);
    if (W > V && (st = pad_head(m, err))) return st;
    o->gemm(0, 1, 1.0f, &m->lnf, head_weights(m, W), 0.0f, &m->logits); /* [N,C]·[W,C]ᵀ */
    if (!targets) return FL_OK;
    PHASE(LOSS);
    o->from_host(&m->targets, targets, (size_t)N * sizeof(int32_t));
    m->n_targets = count_targets(targets, N);
    fl_tensor *dl = NULL;
    if (train) {
        if ((st = ensure(m, &m->dlogits, FL_F32, N, W, err))) return st;
        dl = &m->dlogits;
    }
    float scale = m->n_targets ? (float)(m->loss_weight / (double)m->n_targets) : 0.0f;
    fl_tensor tg = fl_view2(&m->targets, N, 1);
    tg.ndim = 1;
    m->ce_loss = m->loss_weight * m->be->cross_entropy(&m->logits, V, &tg, dl, scale, &m->n_targets);
    if (m->be->sync && (st = m->be->sync(err))) return st; /* a GPU error so far: stop here */
    if (loss) *loss = m->ce_loss + aux_total(m);
    if (!isfinite(m->ce_loss)) return nonfinite_loss(m, step, err);
    return FL_OK;
}

/* ------------------------------------------------------------ decoding */

/* Every block's k_cache, v_cache [B,H,S,hs] for B sequences of up to S =
   context positions (grow-only, like the activations). */
static fl_status ensure_cache(fl_model *m, int B, fl_error *err) {
    const int64_t H = m->cfg.n_heads, shape[4] = {B, H, m->cfg.context, m->cfg.d_model / H};
    fl_status st = FL_OK;
    for (int l = 0; l < m->cfg.n_layers && !st; l++) {
        block *b = &m->blocks[l];
        if (!(st = m->host.tensor_ensure(&m->host, &b->k_cache, FL_F32, 4, shape, err)))
            st = m->host.tensor_ensure(&m->host, &b->v_cache, FL_F32, 4, shape, err);
    }
    return st;
}

/* logits[B,V] = ln_f(x[B,C]) · wteᵀ: the LM head on one position per
   sequence, the only one decoding needs. */
static fl_status decode_head(fl_model *m, const fl_tensor *x, int B, fl_error *err) {
    const fl_ops *o = &m->be->ops;
    fl_status st;
    if ((st = ensure(m, &m->lnf, FL_F32, B, m->cfg.d_model, err)) ||
        (st = ensure(m, &m->logits, FL_F32, B, m->cfg.vocab_size, err)))
        return st;
    PHASE(NORM);
    o->layernorm(x, &m->lnf_w->value, &m->lnf_b->value, 1e-5f, &m->lnf, NULL, NULL);
    PHASE(HEAD);
    o->gemm(0, 1, 1.0f, &m->lnf, &m->wte->value, 0.0f, &m->logits); /* [B,C]·[V,C]ᵀ */
    return m->be->sync ? m->be->sync(err) : FL_OK; /* a GPU error so far: stop here */
}

/* Decoding runs in eval mode, and leaves nothing for backward. */
static void begin_decode(fl_model *m, int mode) {
    m->train = 0, m->step = 0, m->has_targets = 0;
    m->kv_mode = mode;
}

fl_status fl_model_prefill(fl_model *m, const int32_t *prompts, int B, int T, fl_error *err) {
    m->kv_B = m->kv_len = 0; /* no cache until this prefill is through */
    if (m->cfg.arch != FL_ARCH_GPT)
        return fl_fail(err, FL_EINVAL, "prefill: the model is an encoder (arch bert): it has no next token to decode");
    if (B < 1 || T < 1 || T > m->cfg.context)
        return fl_fail(err, FL_EINVAL, "prefill: batch %d x %d tokens (at least 1 x 1; the context is %d)", B, T,
                       m->cfg.context);
    fl_status st = check_tokens(m, prompts, (int64_t)B * T, 0, "prompt tokens", err);
    if (!st) st = ensure_cache(m, B, err);
    if (st) return st;
    begin_decode(m, KV_PREFILL);
    st = forward_blocks(m, prompts, B, T, 0, err);
    m->kv_mode = KV_OFF;
    if (st) return st;
    /* the head reads each prompt's last position, row b*T + T-1, copied
       into ffn_y (free once the last block is done) */
    fl_tensor last = fl_view2(&m->ffn_y, B, m->cfg.d_model);
    for (int b = 0; b < B; b++) {
        fl_tensor src = fl_rows(&m->res[2 * m->cfg.n_layers], (int64_t)b * T + T - 1, 1), dst = fl_rows(&last, b, 1);
        m->be->ops.copy(&src, &dst);
    }
    if (!(st = decode_head(m, &last, B, err))) m->kv_B = B, m->kv_len = T;
    return st;
}

fl_status fl_model_decode_step(fl_model *m, const int32_t *tokens, fl_error *err) {
    if (!m->kv_B) return fl_fail(err, FL_EINVAL, "decode step: nothing cached (fl_model_prefill comes first)");
    if (m->kv_len >= m->cfg.context)
        return fl_fail(err, FL_EINVAL, "decode step: the cache holds the whole context (%d positions); past it "
                       "the positions shift, which only the uncached forward over a sliding window computes",
                       m->cfg.context);
    fl_status st = check_tokens(m, tokens, m->kv_B, 0, "tokens", err);
    if (st) return st;
    begin_decode(m, KV_STEP);
    st = forward_blocks(m, tokens, m->kv_B, 1, m->kv_len, err);
    m->kv_mode = KV_OFF;
    if (!st) st = decode_head(m, &m->res[2 * m->cfg.n_layers], m->kv_B, err);
    if (!st) m->kv_len++;
    return st;
}

int fl_model_decode_len(const fl_model *m) { return m->kv_len; }

/* ------------------------------------------------------------ backward */

/* dres += backward of x_out = x_mid + ffn(ln_2(x_mid)) */
static fl_status ffn_backward(fl_model *m, block *b, int l, fl_error *err) {
    const fl_ops *o = &m->be->ops;
    fl_ffn_ctx c = ffn_ctx(m, l);
    PHASE(FFN_BWD);
    fl_status st = b->ffn->backward(b->layer, &c, &m->dres, &m->dtmp, err); /* dtmp = d ln2 */
    if (st) {
        fl_error_prefix(err, "layer %d ffn '%s' backward", l, b->ffn->header.name);
        return st;
    }
    fl_tensor *dx = &m->datty; /* free here; used as scratch */
    PHASE(NORM_BWD);
    o->layernorm_backward(&m->res[2 * l + 1], &b->ln2_w->value, &b->ln2_mean, &b->ln2_rstd, &m->dtmp,
                          dx, &b->ln2_w->grad, &b->ln2_b->grad);
    o->axpby(1.0f, dx, 1.0f, &m->dres);
    return FL_OK;
}

/* dres += backward of x_mid = x + c_proj(attn(ln_1(x))) */
static void attention_backward(fl_model *m, block *b, int l) {
    const fl_ops *o = &m->be->ops;
    PHASE(PROJ_BWD);
    o->gemm(1, 0, 1.0f, &b->atty, &m->dres, 1.0f, &b->proj_w->grad);   /* [C,N]·[N,C] */
    o->sum_rows(&m->dres, 1.0f, &b->proj_b->grad);
    o->gemm(0, 1, 1.0f, &m->dres, &b->proj_w->value, 0.0f, &m->datty); /* [N,C]·[C,C]ᵀ */
    fl_tensor dqkv = fl_view2(&m->dbig, b->qkv.shape[0], b->qkv.shape[1]);
    fl_tensor qkv3 = as3(&b->qkv, m->B, m->T), datty3 = as3(&m->datty, m->B, m->T);
    fl_tensor dqkv3 = as3(&dqkv, m->B, m->T);
    fl_tensor y3 = as3(&b->atty, m->B, m->T);
    const fl_attn_mask mk = mask_of(m, l);
    PHASE(ATTENTION_BWD);
    m->be->attention_backward(&qkv3, &y3, &b->att, m->cfg.n_heads, &mk, &datty3, &dqkv3);
    PHASE(QKV_BWD);
    o->gemm(1, 0, 1.0f, &b->ln1, &dqkv, 1.0f, &b->attn_w->grad);        /* [C,N]·[N,3C] */
    o->sum_rows(&dqkv, 1.0f, &b->attn_b->grad);
    o->gemm(0, 1, 1.0f, &dqkv, &b->attn_w->value, 0.0f, &m->dtmp);      /* d ln1 [N,C] */
    PHASE(NORM_BWD);
    o->layernorm_backward(&m->res[2 * l], &b->ln1_w->value, &b->ln1_mean, &b->ln1_rstd, &m->dtmp,
                          &m->datty, &b->ln1_w->grad, &b->ln1_b->grad);
    o->axpby(1.0f, &m->datty, 1.0f, &m->dres);
}

static fl_status ensure_backward(fl_model *m, fl_error *err) {
    const int64_t N = (int64_t)m->B * m->T, C = m->cfg.d_model;
    fl_status st;
    if ((st = ensure(m, &m->dres, FL_F32, N, C, err)) || (st = ensure(m, &m->dtmp, FL_F32, N, C, err)) ||
        (st = ensure(m, &m->datty, FL_F32, N, C, err)) || (st = ensure(m, &m->dbig, FL_F32, N, 3 * C, err)))
        return st;
    return FL_OK;
}

/* Everything below the LM head, given dlnf = d loss / d ln_f output [N,C]
   (read before dtmp is reused, so it may be m->dtmp itself). */
static fl_status backward_body(fl_model *m, const fl_tensor *dlnf, fl_error *err) {
    const fl_ops *o = &m->be->ops;
    const int L = m->cfg.n_layers;
    PHASE(NORM_BWD);
    o->layernorm_backward(&m->res[2 * L], &m->lnf_w->value, &m->lnf_mean, &m->lnf_rstd, dlnf,
                          &m->dres, &m->lnf_w->grad, &m->lnf_b->grad);
    for (int l = L - 1; l >= 0; l--) {
        fl_status st = ffn_backward(m, &m->blocks[l], l, err);
        if (st) return st;
        attention_backward(m, &m->blocks[l], l);
    }
    fl_tensor dwpe = fl_rows(&m->wpe->grad, 0, m->T);
    PHASE(EMBED_BWD);
    m->be->embed_backward(&m->dres, &m->tokens, &m->wte->grad, &dwpe);
    return FL_OK;
}

fl_status fl_model_backward(fl_model *m, fl_error *err) {
    if (!m->has_targets || !m->train)
        return fl_fail(err, FL_EINTERNAL, "backward without a training forward with targets");
    fl_status st = ensure_backward(m, err);
    if (st) return st;
    const fl_ops *o = &m->be->ops;
    PHASE(HEAD_BWD);
    const int64_t V = m->cfg.vocab_size, W = m->dlogits.shape[1];
    if (W == V) {
        o->gemm(1, 0, 1.0f, &m->dlogits, &m->lnf, 1.0f, &m->wte->grad); /* [V,N]·[N,C] */
    } else { /* padded (head_width): the padding's dlogits are 0, so its rows of dW are too */
        if ((st = ensure(m, &m->dwte_pad, FL_F32, W, m->cfg.d_model, err))) return st;
        o->gemm(1, 0, 1.0f, &m->dlogits, &m->lnf, 0.0f, &m->dwte_pad); /* [W,N]·[N,C] */
        fl_tensor top = fl_rows(&m->dwte_pad, 0, V);
        o->axpby(1.0f, &top, 1.0f, &m->wte->grad);
    }
    o->gemm(0, 0, 1.0f, &m->dlogits, head_weights(m, W), 0.0f, &m->dtmp); /* d lnf [N,C] */
    return backward_body(m, &m->dtmp, err);
}

/* ------------------------------------------------- hidden states, copies */

fl_status fl_model_forward_hidden(fl_model *m, const int32_t *tokens, int B, int T, int train,
                                  int64_t step, fl_error *err) {
    m->no_head = 1;
    fl_status st = fl_model_forward(m, tokens, NULL, B, T, train, step, NULL, err);
    m->no_head = 0;
    return st;
}

const fl_tensor *fl_model_hidden(const fl_model *m) { return &m->lnf; }

/* ------------------------------------------------- shared rows */

/* The device buffers of a shared forward, for the plan just made. */
static fl_status ensure_shared(fl_model *m, fl_error *err) {
    const fl_row_plan *p = &m->plan;
    const int64_t C = m->cfg.d_model;
    int64_t n_saved = 1;
    for (int l = 1; l <= p->T; l++) {
        const int64_t k = m->be->attention_saved_numel(fl_row_plan_count(p, l), l, C, m->cfg.n_heads);
        n_saved = k > n_saved ? k : n_saved;
    }
    fl_status st = ensure_activations(m, 1, (int)p->n, 1, err);
    if (!st) st = ensure(m, &m->sh_src, FL_I32, p->L, 0, err);
    if (!st) st = ensure(m, &m->sh_own, FL_I32, p->n, 0, err);
    if (!st) st = ensure(m, &m->sh_tokens, FL_I32, p->L, 0, err);
    if (!st) st = ensure(m, &m->sh_x, FL_F32, p->L, C, err);
    if (!st) st = ensure(m, &m->sh_qkv, FL_F32, p->L, 3 * C, err);
    if (!st) st = ensure(m, &m->sh_att, FL_F32, n_saved, 0, err);
    return st;
}

/* res[0] of the computed rows: each layout group embedded at positions
   0..l-1, the computed rows gathered. */
static void embed_layout(fl_model *m) {
    for (int l = 1; l <= m->plan.T; l++) {
        const int64_t count = fl_row_plan_count(&m->plan, l);
        if (!count) continue;
        fl_tensor tok = fl_rows(&m->sh_tokens, m->plan.start[l], count * l);
        tok = fl_view2(&tok, count, l);
        fl_tensor x = fl_rows(&m->sh_x, m->plan.start[l], count * l), wpe = fl_rows(&m->wpe->value, 0, l);
        m->be->embed(&m->wte->value, &wpe, &tok, &x);
    }
    m->be->ops.gather_rows(&m->sh_x, &m->sh_own, &m->res[0]);
}

fl_status fl_model_forward_shared(fl_model *m, const int32_t *tokens, const int32_t *same_as, int B, int T,
                                  int32_t *hidden_row, fl_error *err) {
    if (m->cfg.arch != FL_ARCH_GPT)
        return fl_fail(err, FL_EINVAL, "shared forward: the model is an encoder (arch bert); sharing rows needs causal attention");
    if (B < 1 || T < 1 || T > m->cfg.context || (int64_t)B * T > INT32_MAX)
        return fl_fail(err, FL_EINVAL, "shared forward: batch %d x %d tokens (context is %d)", B, T, m->cfg.context);
    fl_status st = check_tokens(m, tokens, (int64_t)B * T, 0, "tokens", err);
    if (!st) st = fl_row_plan_build(&m->plan, tokens, same_as, B, T, hidden_row, err);
    if (!st) st = ensure_shared(m, err);
    if (st) return st;
    const fl_row_plan *p = &m->plan;
    const fl_ops *o = &m->be->ops;
    m->train = 0, m->step = 0, m->has_targets = 0, m->kv_mode = KV_OFF;
    m->B = 1, m->T = (int)p->n, m->shared = 1;
    m->pos_B = 0; /* positions now holds the computed rows' */
    o->from_host(&m->sh_own, p->own, (size_t)p->n * sizeof *p->own);
    o->from_host(&m->sh_src, p->src, (size_t)p->L * sizeof *p->src);
    o->from_host(&m->sh_tokens, p->lay_tok, (size_t)p->L * sizeof *p->lay_tok);
    o->from_host(&m->tokens, p->tok, (size_t)p->n * sizeof *p->tok);
    o->from_host(&m->positions, p->pos, (size_t)p->n * sizeof *p->pos);
    PHASE(EMBED);
    embed_layout(m);
    if ((st = run_blocks(m, err))) return st;
    PHASE(NORM);
    const int L = m->cfg.n_layers;
    o->layernorm(&m->res[2 * L], &m->lnf_w->value, &m->lnf_b->value, 1e-5f, &m->lnf, &m->lnf_mean, &m->lnf_rstd);
    return m->be->sync ? m->be->sync(err) : FL_OK;
}

fl_status fl_model_backward_hidden(fl_model *m, const fl_tensor *dhidden, fl_error *err) {
    const int64_t N = (int64_t)m->B * m->T, C = m->cfg.d_model;
    if (!m->train)
        return fl_fail(err, FL_EINTERNAL, "backward_hidden without a training forward");
    if (fl_numel(dhidden) != N * C || dhidden->dtype != FL_F32)
        return fl_fail(err, FL_EINTERNAL, "backward_hidden: gradient has %lld values, the forward had [%lld, %lld]",
                       (long long)fl_numel(dhidden), (long long)N, (long long)C);
    fl_status st = ensure_backward(m, err);
    if (st) return st;
    fl_tensor d = fl_view2(dhidden, N, C);
    return backward_body(m, &d, err);
}

/* Same config, same backend, the same plugins loaded again; then every
   parameter value copied (both lists are built in the same order). */
fl_status fl_model_copy(const fl_model *src, fl_model **out, fl_error *err) {
    fl_model *m = NULL;
    fl_status st = fl_model_create(&src->cfg, src->be, &m, err);
    if (st) return st;
    if (m->params.n != src->params.n) st = fl_fail(err, FL_EINTERNAL, "model copy: %d parameters, source has %d", m->params.n, src->params.n);
    for (int i = 0; i < m->params.n && !st; i++) {
        const fl_param *a = &src->params.items[i]->pub;
        fl_param *b = &m->params.items[i]->pub;
        if (strcmp(a->name, b->name) || fl_numel(&a->value) != fl_numel(&b->value))
            st = fl_fail(err, FL_EINTERNAL, "model copy: parameter %d is %s in the copy, %s in the source", i, b->name, a->name);
        else
            m->be->ops.copy(&a->value, &b->value);
    }
    if (st) {
        fl_model_free(m);
        return st;
    }
    *out = m;
    return FL_OK;
}

void fl_model_zero_grad(fl_model *m) { fl_zero_grad(m->be, &m->params); }

void fl_model_set_loss_weight(fl_model *m, double w) { m->loss_weight = w; }

/* ------------------------------------------------------------ queries */

double fl_model_ce_loss(const fl_model *m) { return m->ce_loss; }

int fl_model_aux_losses(const fl_model *m, fl_stat *out, int max) {
    int n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const block *b = &m->blocks[l];
        if (!b->ffn->aux_loss) continue;
        fl_stat s[8];
        int k = b->ffn->aux_loss(b->layer, s, 8);
        for (int i = 0; i < k && i < 8; i++) {
            int j = 0; /* sum same-named losses over layers */
            while (j < n && j < max && strcmp(out[j].name, s[i].name)) j++;
            if (j < n && j < max) out[j].value += s[i].value;
            else if (n < max) out[n++] = s[i];
        }
    }
    return n;
}

const fl_tensor *fl_model_logits(const fl_model *m) { return &m->logits; }

int64_t fl_model_head_width(const fl_model *m) { return m->head_w; }

void fl_model_set_profile(fl_model *m, fl_profile *p) { m->prof = p; }
int fl_model_n_params(const fl_model *m) { return m->params.n; }
fl_param_list *fl_model_params(fl_model *m) { return &m->params; }
fl_param *fl_model_param(fl_model *m, int i) { return &m->params.items[i]->pub; }

fl_param *fl_model_find_param(fl_model *m, const char *name) {
    for (int i = 0; i < m->params.n; i++)
        if (!strcmp(m->params.items[i]->pub.name, name)) return &m->params.items[i]->pub;
    return NULL;
}

int64_t fl_model_n_weights(const fl_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->params.n; i++) n += fl_numel(&m->params.items[i]->pub.value);
    return n;
}

const fl_model_config *fl_model_cfg(const fl_model *m) { return &m->cfg; }
const fl_host *fl_model_host(const fl_model *m) { return &m->host; }

const fl_ffn_plugin *fl_model_ffn(const fl_model *m, int l, void **layer) {
    if (layer) *layer = m->blocks[l].layer;
    return m->blocks[l].ffn;
}

double fl_attn_mean_keys(int64_t T, int causal, int64_t window) {
    if (T < 1) return 0;
    const fl_attn_rule r = {causal, window};
    double keys = 0;
    for (int64_t i = 0; i < T; i++) keys += (double)(fl_attn_hi(r, i, T) - fl_attn_lo(r, i));
    return keys / (double)T;
}

/* Per token, forward+backward = 3x forward. Forward: 2 FLOPs per weight of
   the dense parts and the LM head, the FFN's own figure, and attention's
   q·k and att·v (2 * 2 * C per key a query sees, on average). */
double fl_model_flops_per_token(const fl_model *m, int T) {
    const double C = m->cfg.d_model, V = m->cfg.vocab_size;
    double fwd = 2.0 * V * C; /* LM head */
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const block *b = &m->blocks[l];
        const double keys = fl_attn_mean_keys(T, m->cfg.arch == FL_ARCH_GPT, window_of(m, l));
        fwd += 2.0 * (C * 3 * C + C * C) + 4.0 * keys * C; /* qkv, proj, attention */
        fl_stat s[32];
        int n = b->ffn->stats ? b->ffn->stats(b->layer, s, 32) : 0;
        for (int i = 0; i < n && i < 32; i++)
            if (!strcmp(s[i].name, "flops_per_token")) fwd += s[i].value;
    }
    return 3.0 * fwd;
}
