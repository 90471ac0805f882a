/*
 * core/model.h — the GPT-2-style transformer with plugin feedforward blocks:
 * a causal decoder (arch gpt) or a bidirectional encoder (arch bert).
 *
 *   x = wte[tokens] + wpe[pos]                                x[B,T,C]
 *   for each block l:  x += attn(ln_1(x));  x += ffn_l(ln_2(x))
 *   logits = ln_f(x) · wteᵀ                                    logits[B,T,V]
 *   loss = mean cross-entropy(logits, targets) + Σ plugin aux losses
 *
 * Parameters use GPT-2's names and layouts (Conv1D weights are [in, out]):
 * transformer.wte.weight [V,C], transformer.wpe.weight [T,C],
 * transformer.h.{i}.ln_1.{weight,bias}, .attn.c_attn.{weight [C,3C], bias},
 * .attn.c_proj.{weight [C,C], bias}, .ln_2, .mlp.<the plugin's names>,
 * transformer.ln_f.{weight,bias}. The model owns every parameter (the
 * plugins' too) in one list, so the optimizer and checkpoints are generic.
 *
 * The two architectures share all of it and differ only in attention's
 * mask (backends/backend.h: fl_attn_mask) and in what the targets are:
 *   gpt   causal attention; targets are the next tokens.
 *   bert  bidirectional attention; a row's trailing pad_token keys are
 *         padding (masked: a row of B, T is its tokens up to the last
 *         non-pad one); targets are the original tokens at the positions
 *         the caller masked (core/mlm.h), -1 elsewhere, so the loss counts
 *         only those.
 * Either may make some layers local (GPT-Neo): their queries see only the
 * `window` nearest keys (for gpt: itself and window-1 before it).
 */
#ifndef FFNLAB_MODEL_H
#define FFNLAB_MODEL_H

#include <stdint.h>

typedef struct fl_backend fl_backend; /* defined in backends/backend.h */
#include "ffnlab/ffn.h"
#include "loader.h"

enum { FL_ARCH_GPT = 0, FL_ARCH_BERT = 1 };

typedef struct fl_model_config {
    int32_t vocab_size, context, d_model, n_layers, n_heads;
    const char *const *ffn_specs;  /* [n_layers] "dense:d_ff=512" ... */
    uint64_t seed;                 /* parameter init */
    const fl_comm *comm;           /* multi-process runs (host->comm, expert
                                      shards); NULL = one process */
    int32_t arch;                  /* FL_ARCH_GPT (0, the default) or FL_ARCH_BERT */
    int32_t pad_token;             /* bert: the padding id (required); gpt: unused */
    uint64_t local_layers;         /* bit l: block l attends locally (0: all global) */
    int32_t window;                /* a local block's keys per query (> 0 when any is local) */
} fl_model_config;

typedef struct fl_model fl_model;

fl_status fl_model_create(const fl_model_config *mc, const fl_backend *be, fl_model **out,
                          fl_error *err);
void fl_model_free(fl_model *m);


/* Forward over tokens[B,T] (host i32, B*T <= the size used so far grows
   buffers). With targets[B,T] (host i32, <0 = ignore) it computes the loss
   (cross-entropy + aux) into *loss and keeps what backward needs. */
fl_status fl_model_forward(fl_model *m, const int32_t *tokens, const int32_t *targets, int B,
                           int T, int train, int64_t step, double *loss, fl_error *err);
/* Gradients of the last forward's loss, accumulated into every param's grad. */
fl_status fl_model_backward(fl_model *m, fl_error *err);
void fl_model_zero_grad(fl_model *m);

/* Multiplies the cross-entropy (mean over the counted targets) and its
   gradient in the following forwards by w (default 1). A data-parallel
   encoder sets w = P n_rank / n_all: the ranks' averaged gradient is then
   that of the mean over every rank's masked positions, as in one process. */
void fl_model_set_loss_weight(fl_model *m, double w);

/* The last forward's cross-entropy alone, and its aux losses by name. */
double fl_model_ce_loss(const fl_model *m);
int fl_model_aux_losses(const fl_model *m, fl_stat *out, int max);

/* Logits on the device: [B*T,V] after fl_model_forward, [B,V] (the new
   position of each sequence) after fl_model_prefill or fl_model_decode_step.
   After a training forward with targets the rows are fl_model_head_width
   long: V, or more where the LM head is padded (the columns past V then
   hold zeros and mean nothing). */
const fl_tensor *fl_model_logits(const fl_model *m);

/* The LM head's width in training: the vocabulary V, rounded up to a
   multiple of the backend's gemm_align (a GPU: 64) or of FFNLAB_PAD_VOCAB
   ("off": none). It changes no result, only the speed of the head's GEMMs. */
int64_t fl_model_head_width(const fl_model *m);

/* Decoding with a KV cache: B sequences of equal length, one new token per
 * sequence per step, each step costing one position's work instead of the
 * whole prefix's.
 *
 *   fl_model_prefill(m, prompts[B,T], B, T)   forward over the prompts
 *       (T <= context) that keeps every layer's keys and values
 *   fl_model_decode_step(m, tokens[B])        appends tokens at position
 *       fl_model_decode_len(m) (then one more); attention reads the cache
 *
 * Each leaves the logits of the new positions in fl_model_logits, [B,V].
 * Both run in eval mode: every FFN plugin sees ctx.train = 0 and its N = B*T
 * (prefill) or N = B (step) rows, with ctx.tokens [B,T] or [B,1]. Positions
 * are absolute (learned wpe), so while a sequence fits the context the
 * logits are those of fl_model_forward over the whole sequence, up to f32
 * round-off. The cache holds `context` positions: a step when it is full
 * fails (FL_EINVAL), since past the context the window slides and every
 * position moves; callers go on with the uncached forward (fl_sample does).
 * The cache lives until fl_model_free; fl_model_forward in between neither
 * reads nor changes it. A local block attends the last `window` cached
 * positions. Bad input (B or T < 1, T > context, a token outside the
 * vocabulary, a step before any prefill, an encoder: nothing to decode) is
 * an FL_EINVAL message. */
fl_status fl_model_prefill(fl_model *m, const int32_t *prompts, int B, int T, fl_error *err);
fl_status fl_model_decode_step(fl_model *m, const int32_t *tokens, fl_error *err);
/* Positions cached per sequence (0 before the first prefill and after a
   failed one). */
int fl_model_decode_len(const fl_model *m);

/* bench --profile: forward and backward mark their phases in p (NULL: off).
   The profile must outlive its use; see profile.h. */
struct fl_profile;
void fl_model_set_profile(fl_model *m, struct fl_profile *p);

/* Forward without the LM head (no logits, no loss): for tasks that read the
   final hidden states. Keeps what fl_model_backward_hidden needs when train. */
fl_status fl_model_forward_hidden(fl_model *m, const int32_t *tokens, int B, int T, int train,
                                  int64_t step, fl_error *err);
/* The final hidden states (ln_f output) of the last forward, [B*T, C] on the
   device; valid until the next forward. */
const fl_tensor *fl_model_hidden(const fl_model *m);
/* An inference forward without the LM head that computes a row shared by
   several sequences once: tokens[B,T] as for fl_model_forward_hidden, and
   for each row r = b*T + t, same_as[r] is
     r         the row is computed;
     s < r     the row is row s's: same position t, same token, and the row
               before it shares the row before s (checked), so every token
               up to t is the same and a causal model gives both one state;
     negative  padding after the sequence's end: neither computed nor read.
   The blocks run on the n computed rows alone (only attention sees the
   padded [B,T] batch), so shared prefixes and padding cost no GEMM work.
   fl_model_hidden is then [n, C], and hidden_row[B*T] receives each row's
   index into it (-1 for padding). Decoder models only; a same_as that
   breaks a rule is an FL_EINVAL message naming the row. */
fl_status fl_model_forward_shared(fl_model *m, const int32_t *tokens, const int32_t *same_as, int B, int T,
                                  int32_t *hidden_row, fl_error *err);
/* Gradients from dhidden = d loss / d hidden [B*T, C] of the last training
   forward, accumulated into every parameter's grad (the LM head is not part
   of that loss, so wte gets only its embedding gradient). */
fl_status fl_model_backward_hidden(fl_model *m, const fl_tensor *dhidden, fl_error *err);
/* A new model with the same config, backend and plugins and a copy of every
   parameter value; the two share nothing afterwards. */
fl_status fl_model_copy(const fl_model *src, fl_model **out, fl_error *err);

int fl_model_n_params(const fl_model *m);
/* The host-owned parameter list (what the optimizer steps). */
struct fl_param_list *fl_model_params(fl_model *m);
fl_param *fl_model_param(fl_model *m, int i);
fl_param *fl_model_find_param(fl_model *m, const char *name);
int64_t fl_model_n_weights(const fl_model *m);   /* total scalar parameters */
const fl_model_config *fl_model_cfg(const fl_model *m);
const fl_host *fl_model_host(const fl_model *m);
/* The loaded FFN plugin and layer object of block l (for stats). */
const fl_ffn_plugin *fl_model_ffn(const fl_model *m, int l, void **layer);
/* Training FLOPs per token (forward+backward, 6N plus attention) for MFU. */
double fl_model_flops_per_token(const fl_model *m, int T);
/* Keys a query attends on average over a sequence of T positions: T/2-ish
   for a causal global layer, T for a bidirectional one, about window for a
   local one (attention's FLOPs per token are 4 C times this). */
double fl_attn_mean_keys(int64_t T, int causal, int64_t window);

#endif
