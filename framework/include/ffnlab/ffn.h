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
 *
 * Kernels. A plugin's math is host->ops (generic: GEMMs, sort, gather,
 * norms, ...) and its own code, per device, as TensorRT plugins enqueue
 * theirs: on the CPU plain C in the plugin's .c files (tensor data is host
 * memory), on a GPU CUDA kernels in its .cu files (ffnlab_add_plugin's
 * CUDA_SOURCES; ffnlab/kernel_cuda.h has the launch and error helpers)
 * launched on host->stream, so they are ordered with the host's ops without
 * a synchronisation. The plugin picks by host->device.kind; scratch memory
 * is host->tensor_ensure (the host's allocator, on the device); a kernel
 * that fails is an fl_status like any other error. `devices` in the
 * descriptor names the device kinds the plugin runs on.
 */
#ifndef FFNLAB_FFN_H
#define FFNLAB_FFN_H

#include <stdint.h>

#include "ffnlab/host.h"
#include "ffnlab/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2.0: plugins own their kernels. The host table has only generic ops
   (the routing, block-selection and product-key steps of 1.x moved into
   the moe, cnt and pkm plugins), plus what a plugin's own CPU or CUDA code
   needs (fl_host.device, .stream, .act_dtype, scratch through
   tensor_ensure); the descriptor says which devices the plugin runs on
   (`devices`) and which options size it (`size_options`); fl_ffn_config
   has the vocabulary size, and fl_ffn_ctx always has the batch's token ids
   and positions. A 1.x plugin is refused: rebuild it against these
   headers.
   2.1: an evaluation forward may compute a row once for every sequence
   that holds it (fl_ffn_ctx: B = 1, positions not consecutive); nothing
   else changed, so 2.0 plugins load as they are. */
#define FL_FFN_ABI_MAJOR 2
#define FL_FFN_ABI_MINOR 1

/* What create() gets besides the host. */
typedef struct fl_ffn_config {
    int32_t d_model;
    int32_t layer_index;       /* 0-based block index */
    int32_t n_layers;
    int32_t vocab_size;        /* token ids are in [0, vocab_size) (a hash
                                  layer balanced over the vocabulary needs it) */
    const fl_value *values;    /* one per descriptor option, same order */
    fl_param_scope *scope;     /* pass to host->param() */
} fl_ffn_config;

/* What every forward/backward call sees of the batch. */
typedef struct fl_ffn_ctx {
    int32_t train;             /* 1 training (noise, Gumbel, dropout), 0 eval */
    int64_t step;              /* optimizer step (0-based) */
    uint64_t rng_key;          /* a stream for this layer and step (ffnlab/rng.h) */
    int64_t B, T;              /* batch shape; x has N = B*T rows, row b*T + t
                                  the token at position t of sequence b */
    /* [B,T] i32 on host->device, always set: the batch's *input* token ids
       (what the model reads at each row of x, not the targets) and each
       row's absolute position in its sequence (0..T-1 in training; the
       cache position when decoding one token at a time). Scoring (train 0)
       may run on rows shared by several sequences, each computed once
       (core/model.h: fl_model_forward_shared): then B = 1, T = the rows,
       and positions gives each row's own position (not 0..T-1). Rows stay
       independent inputs, as everywhere: an FFN is per token. */
    const fl_tensor *tokens;
    const fl_tensor *positions;
} fl_ffn_ctx;

/* A named number (aux loss or statistic). */
typedef struct fl_stat {
    const char *name;
    double value;
} fl_stat;

/* A device kind as a bit of fl_ffn_plugin.devices. */
#define FL_DEVICE_BIT(kind) (1u << (kind))
#define FL_DEVICES_ALL 0xffffffffu /* host ops only: whatever device the host has */
/* A plugin with its own kernels: the CPU, and CUDA when ffnlab_add_plugin
   built its CUDA sources (it then defines FFNLAB_PLUGIN_CUDA). */
#ifdef FFNLAB_PLUGIN_CUDA
#define FL_DEVICES_BUILT (FL_DEVICE_BIT(FL_DEVICE_CPU) | FL_DEVICE_BIT(FL_DEVICE_CUDA))
#else
#define FL_DEVICES_BUILT FL_DEVICE_BIT(FL_DEVICE_CPU)
#endif

typedef struct fl_ffn_plugin {
    fl_plugin_header header;   /* kind = FL_PLUGIN_FFN */

    /* The device kinds this plugin runs on: FL_DEVICES_ALL when all of its
       math is host ops, else FL_DEVICE_BIT(FL_DEVICE_CPU) | ... for each
       kind it has its own code for (a plugin built without its CUDA
       sources leaves CUDA out). The host refuses a layer on another device
       with a message naming the plugin and the device. */
    uint32_t devices;
    /* The integer options that set the layer's size, most natural first,
       NULL-terminated (NULL: none). `ffnlab sweep --match params|flops`
       sets the ones the user did not fix until the layer's parameters (or
       active FLOPs per token) equal the dense reference's; so each should
       make the layer larger as it grows. */
    const char *const *size_options;

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
} fl_ffn_plugin;

/* The rows of t read as [N,d] (x arrives as [N,d] or [B,T,d]): FL_OK and
   *n = N, or FL_EINVAL with "<plugin>: <what> must be f32 [N,d], got last
   dim D" unless t is f32 with d columns: the check a forward and a
   backward make of the tensors they are handed. */
static inline fl_status fl_ffn_rows(const fl_host *host, const char *plugin, const char *what,
                                    const fl_tensor *t, int64_t d, int64_t *n, fl_error *err) {
    const int64_t last = t->ndim >= 1 && t->ndim <= FL_MAX_DIMS ? t->shape[t->ndim - 1] : -1;
    if (last != d || t->dtype != FL_F32)
        return host->error(err, FL_EINVAL, "%s: %s must be f32 [N,%lld], got last dim %lld", plugin, what,
                           (long long)d, (long long)last);
    *n = fl_numel(t) / d;
    return FL_OK;
}

#ifdef __cplusplus
}
#endif
#endif
