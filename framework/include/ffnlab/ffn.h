/*
 * ffnlab/ffn.h — the feedforward (FFN) plugin ABI.
 *
 * Every transformer block computes x += ffn_l(ln_2(x)). `ffn_l` is a plugin:
 * dense MLP, mixture of experts, controller-sparse FFN, product-key memory, or
 * yours. A plugin exports ffnlab_plugin_v1() (see ffnlab/plugin.h) returning a
 * `const fl_ffn_plugin *` cast to its header. Lifecycle, for each layer that
 * uses the plugin:
 *
 *   create    once; parse nothing (the host has already validated options
 *             against the descriptor) but check combinations and shapes,
 *             declare parameters through host->param(), keep the host pointer.
 *   forward   x[N,d] → y[N,d]; keeps in its own tensors (host->tensor_ensure)
 *             whatever backward needs. N = B*T tokens of the batch.
 *   backward  after the forward of the same step: dy[N,d] → dx[N,d]
 *             (overwritten) and parameter gradients accumulated (+=) into each
 *             fl_param's grad. It must include the gradient of the auxiliary
 *             losses the forward reported (they enter the total loss with
 *             weight 1: put the coefficient in the loss itself).
 *   aux_loss  the auxiliary losses of the last forward, already weighted
 *             (load balance, z-loss); the host adds them to the training loss
 *             and logs each by name. Optional (NULL = none).
 *   stats     named figures about the last forward or a window of them
 *             ("active_params", "flops_per_token" are standard: per token,
 *             counting a multiply-add as 2 FLOPs). Optional.
 *   destroy   free the layer's own memory (not its params: the host owns them).
 *
 * Every function that can fail returns fl_status and writes err. Threading:
 * the host calls one layer from one thread at a time; ops parallelise inside.
 */
#ifndef FFNLAB_FFN_H
#define FFNLAB_FFN_H

#include <stdint.h>

#include "ffnlab/host.h"
#include "ffnlab/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Minor versions: 1.1 appended the sparse layers' ops to fl_ops; 1.2
   appended fl_host.act_dtype (and GEMM ops that take bf16 inputs); 1.3
   appended fl_ffn_plugin.size_options. */
#define FL_FFN_ABI_MAJOR 1
#define FL_FFN_ABI_MINOR 3

/* What create() gets besides the host. */
typedef struct fl_ffn_config {
    int32_t d_model;
    int32_t layer_index;       /* 0-based block index */
    int32_t n_layers;
    const fl_value *values;    /* one per descriptor option, same order */
    fl_param_scope *scope;     /* pass to host->param() */
} fl_ffn_config;

/* What every forward/backward call sees of the batch. */
typedef struct fl_ffn_ctx {
    int32_t train;             /* 1 training (noise, Gumbel, dropout), 0 eval */
    int64_t step;              /* optimizer step (0-based) */
    uint64_t rng_key;          /* a stream for this layer and step (ffnlab/rng.h) */
    int64_t B, T;              /* batch shape; x has N = B*T rows */
    const fl_tensor *tokens;   /* [B,T] i32 token ids, or NULL */
    const fl_tensor *positions;/* [B,T] i32 positions, or NULL */
} fl_ffn_ctx;

/* A named number (aux loss or statistic). */
typedef struct fl_stat {
    const char *name;
    double value;
} fl_stat;

typedef struct fl_ffn_plugin {
    fl_plugin_header header;   /* kind = FL_PLUGIN_FFN */

    fl_status (*create)(const fl_host *host, const fl_ffn_config *cfg, void **layer,
                        fl_error *err);
    fl_status (*forward)(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x,
                         fl_tensor *y, fl_error *err);
    fl_status (*backward)(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy,
                          fl_tensor *dx, fl_error *err);
    /* Writes at most max entries; returns how many it has. Optional. */
    int (*aux_loss)(void *layer, fl_stat *out, int max);
    /* Writes at most max entries; returns how many it has. Optional. */
    int (*stats)(void *layer, fl_stat *out, int max);
    void (*destroy)(void *layer);

    /* Since 1.3. The integer options that set the layer's size, most
       natural first, NULL-terminated (NULL: none). `ffnlab sweep --match
       params|flops` changes the first of them the user did not fix until
       the layer's parameters (or active FLOPs per token) equal the dense
       reference's; so each should make the layer larger as it grows. Read
       it through fl_ffn_size_options(), which checks struct_size. */
    const char *const *size_options;
} fl_ffn_plugin;

/* p's size_options, or NULL for a plugin built against ABI < 1.3. */
static inline const char *const *fl_ffn_size_options(const fl_ffn_plugin *p) {
    const uint32_t need = (uint32_t)((const char *)&p->size_options - (const char *)p) + sizeof p->size_options;
    return p->header.struct_size >= need ? p->size_options : NULL;
}

#ifdef __cplusplus
}
#endif
#endif
