/*
 * backends/backend.h — what the framework needs from a compute backend.
 *
 * A backend is the public ops table plugins use (fl_ops, ffnlab/host.h) plus
 * the kernels only the model itself needs: embeddings, attention (causal,
 * bidirectional with padding, local), the fused LM-head cross-entropy,
 * AdamW and norms, and device memory. There is
 * one instance per backend (CPU here; CUDA in backends/cuda/). All tensors
 * live on the backend's device; f32 unless a comment says otherwise.
 *
 * Shapes: B batch, T context, C = d_model, H heads, V vocab, N = B*T.
 */
#ifndef FFNLAB_BACKEND_H
#define FFNLAB_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which keys each query of an attention call sees. Query i of sequence b
   attends key j when all of
     j < lengths[b]              padding: an encoder's right-padded batch
                                 (lengths NULL: all T keys are real)
     j <= i                      when causal (a decoder)
     |i - j| < window            when window > 0 (local attention, GPT-Neo:
                                 a causal query sees itself and the
                                 window-1 keys before it)
   hold. A query that sees no key (only possible with padding and a window)
   gets output 0 and passes no gradient. Padded queries (i >= lengths[b])
   still attend the real keys; their outputs are the caller's to ignore. */
typedef struct fl_attn_mask {
    int causal;
    int64_t window;                /* 0: every key the other rules allow */
    const fl_tensor *lengths;      /* [B] i32 on the backend's device, 0..T; or NULL */
} fl_attn_mask;

typedef struct fl_backend {
    const char *name;          /* "cpu", "cuda" */
    fl_device device;
    fl_ops ops;                /* what plugins get */

    /* Device memory, zero-initialised; NULL when out of memory. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);

    /* One line naming the kernel path chosen (e.g. "oneDNN 2.6 sgemm, avx512_core"). */
    const char *(*describe)(void);

    /* x[N,C] = wte[tokens[n],:] + wpe[n % T,:]; tokens[B,T] i32 */
    void (*embed)(const fl_tensor *wte, const fl_tensor *wpe, const fl_tensor *tokens,
                  fl_tensor *x);
    /* dwte[tokens[n],:] += dx[n,:]; dwpe[n % T,:] += dx[n,:] */
    void (*embed_backward)(const fl_tensor *dx, const fl_tensor *tokens, fl_tensor *dwte,
                           fl_tensor *dwpe);

    /* Multi-head self-attention. qkv[B,T,3C] holds q | k | v, each split
       into H heads of C/H. out[B,T,C]. mask says which keys each query
       sees (fl_attn_mask below; NULL: causal, every earlier key). saved is
       a 1-D f32 tensor of attention_saved_numel(B,T,C,H) values that keeps
       what backward needs, in a layout of the backend's choosing: the CPU
       keeps the softmax probabilities [B,H,T,T]; the CUDA flash kernels
       keep one log-sum-exp per row [B,H,T], so no T x T matrix reaches
       device memory. */
    int64_t (*attention_saved_numel)(int64_t B, int64_t T, int64_t C, int n_head);
    void (*attention)(const fl_tensor *qkv, int n_head, const struct fl_attn_mask *mask, fl_tensor *out,
                      fl_tensor *saved);
    /* dqkv[B,T,3C] is overwritten; out is the forward's output (flash
       backward needs rowsum(dout * out)); mask as in the forward. */
    void (*attention_backward)(const fl_tensor *qkv, const fl_tensor *out, const fl_tensor *saved,
                               int n_head, const struct fl_attn_mask *mask, const fl_tensor *dout,
                               fl_tensor *dqkv);

    /* Decoding with a KV cache (core/model.h: fl_model_prefill, fl_model_decode_step).
       k_cache and v_cache [B,H,S,hs] hold the keys and values of positions
       0..S-1 of each of B sequences, head by head (so one head's keys are a
       contiguous [S,hs] matrix); S is the cache's capacity, H and hs come
       from their shape.
       kv_append writes the k and v parts of qkv[B,n,3C] (C = H*hs; positions
       pos..pos+n-1 of each sequence, pos + n <= S) into the cache: n = T for
       a prompt, 1 for a decoding step. */
    void (*kv_append)(const fl_tensor *qkv, int64_t pos, fl_tensor *k_cache, fl_tensor *v_cache);
    /* out[B,C]: attention of one new position per sequence over positions
       0..t-1 of its cache (the new one, appended before, included: causal by
       construction, no mask), 1 <= t <= S; with window > 0 only over the
       last window of them, t-window..t-1 (a local layer, fl_attn_mask).
       The queries are q[B,H,hs], the first C columns of qkv[B,1,3C] (rows
       3C apart, read in place). */
    void (*attention_decode)(const fl_tensor *qkv, const fl_tensor *k_cache, const fl_tensor *v_cache,
                             int64_t t, int64_t window, fl_tensor *out);

    /* Cross-entropy of logits[N,W] against targets[N] i32 (target < 0: row
       ignored), over the first V = classes columns of each row (1 <= V <=
       W; V < W when the LM head pads its columns to an aligned width: the
       rest are ignored). Returns the mean loss over counted rows and writes
       their count. If dlogits != NULL ([N,W], may alias logits) it receives
       scale * (softmax - onehot) in a counted row's V columns, 0 elsewhere. */
    double (*cross_entropy)(const fl_tensor *logits, int64_t classes, const fl_tensor *targets,
                            fl_tensor *dlogits, float scale, int64_t *count);

    /* AdamW on n elements: m, v moments; bias correction with step t >= 1.
       The gradient used is grad_scale * grad (gradient clipping without an
       extra pass over the gradients). */
    void (*adamw)(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v,
                  float lr, float beta1, float beta2, float eps, float weight_decay,
                  float grad_scale, int64_t t);
    /* The same on whole rows of 2-D tensors, only for rows[n_rows] (host array). */
    void (*adamw_rows)(fl_tensor *param, const fl_tensor *grad, fl_tensor *m,
                       fl_tensor *v, const int32_t *rows, int64_t n_rows, float lr,
                       float beta1, float beta2, float eps, float weight_decay,
                       float grad_scale, int64_t t);
    /* sum of squares of all elements (double accumulation) */
    double (*sumsq)(const fl_tensor *x);
    /* the same over all elements of xs[0..n) together: a whole gradient
       norm with one device round trip instead of one per tensor */
    double (*sumsq_many)(const fl_tensor *const *xs, int n);
    /* the same over rows[n_rows] (host array) of a 2-D tensor */
    double (*sumsq_rows)(const fl_tensor *x, const int32_t *rows, int64_t n_rows);
    /* x[rows[i],:] = 0 for a 2-D tensor (host array of rows) */
    void (*zero_rows)(fl_tensor *x, const int32_t *rows, int64_t n_rows);
    /* 1 if any element is NaN or inf */
    int (*nonfinite)(const fl_tensor *x);

    /* Waits until the device has finished the work queued so far and reports
       the first device error since the backend started (CUDA: a failed
       launch, cuBLAS call or copy, with file:line and the API's message; it
       stays reported). NULL on the CPU, which is always finished and whose
       ops report through the log. The host calls it once per step. */
    fl_status (*sync)(fl_error *err);

    /* The device queue the ops run on, for plugins' own kernels
       (fl_host.stream): the CUDA stream, or NULL (the CPU; CUDA's legacy
       default stream). NULL function: NULL. */
    void *(*stream)(void);

    /* The device's datasheet peak dense TFLOP/s in the current GEMM
       precision, *what naming the assumption ("H100 SXM TF32 dense,
       datasheet"); 0 when unknown. NULL function: unknown (the CPU, whose
       ceiling the bench measures with an sgemm instead). */
    double (*peak_tflops)(const char **what);

    /* A row length (elements) the GEMM kernels are fastest at a multiple
       of, for the model's widest product, the LM head: its training logits
       are padded to it (core/model.c: head_width). 0 or 1: no padding (the
       CPU); CUDA: 64 (tensor-core kernels want 16-byte-aligned rows). */
    int gemm_align;
} fl_backend;

const fl_backend *fl_backend_cpu(void);

/* The CPU backend's GEMM precision (gemm, gemm_batched, gemm_grouped and
   gemm_grouped_wgrad; attention stays fp32): "fp32" (default, oneDNN sgemm)
   or "bf16" (inputs rounded to bf16, f32 accumulation and output: about
   1e-2 relative per product; natively where the CPU has bf16 dot products
   (AVX-512 BF16, AMX), else the rounded inputs in fp32 arithmetic, the
   same numbers to f32 round-off; FFNLAB_CPU_BF16=auto|native|emulated,
   read here, forces a path and a bad value is an error). Process-wide; set
   it before work starts. */
fl_status fl_cpu_set_precision(const char *mode, fl_error *err);
const char *fl_cpu_precision(void);

/* The GEMM precision the user asked for (--precision, the config field
   `precision`): "auto", "fp32", "bf16" or "tf32"; anything else fails with
   one line naming the choices. fl_backend_select applies it to the backend
   it returns: "auto" means the environment variable FFNLAB_PRECISION when
   set, else each backend's default (CPU fp32; CUDA FFNLAB_CUDA_MATH, else
   tf32). On CUDA it is fl_cuda_set_math; the CPU refuses "tf32". */
fl_status fl_backend_request_precision(const char *mode, fl_error *err);

/* Sets be's GEMM precision now ("fp32", "bf16", "tf32" where be has it). */
fl_status fl_backend_set_precision(const fl_backend *be, const char *mode, fl_error *err);

/* The CUDA backend on GPU device_index (one GPU per process). Fails with a
   message, never exits, when the build has no CUDA, no driver or no such GPU. */
fl_status fl_backend_cuda(int device_index, const fl_backend **out, fl_error *err);

/* The backend for a --device value: "auto" (the first GPU when the CUDA
   build has one, else the CPU; the environment variable FFNLAB_DEVICE, when
   set, overrides what auto means), "cpu", "cuda" or "cuda:N", with the
   requested GEMM precision applied (fl_backend_request_precision). */
fl_status fl_backend_select(const char *device, const fl_backend **out, fl_error *err);

/* The GEMM precision be runs in now: "fp32", "bf16" or (CUDA) "tf32". The
   host derives fl_host.act_dtype from it (bf16: activations that only feed
   GEMMs may be stored in bf16). */
const char *fl_backend_precision(const fl_backend *be);

#ifdef __cplusplus
}
#endif

#endif
