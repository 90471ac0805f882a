/*
 * backends/cuda/cu_ops.h — the functions each cu_*.cu file provides to the
 * table in cuda_backend.cu. Semantics are fl_ops' (ffnlab/host.h) and
 * fl_backend's (backend.h), the same as the CPU backend's.
 */
#ifndef FFNLAB_CU_OPS_H
#define FFNLAB_CU_OPS_H

#include "attn_mask.h" /* fl_attn_rule and the key ranges, shared with the CPU */
#include "cu_common.h"

/* cu_gemm.cu — cuBLAS */
void cu_gemm(int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B, float beta,
             fl_tensor *C);
void cu_gemm_batched(int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B,
                     float beta, fl_tensor *C);
void cu_gemm_grouped(int transW, float alpha, const fl_tensor *A, const fl_tensor *W, const int64_t *off,
                     int G, float beta, fl_tensor *C);
void cu_gemm_grouped_wgrad(float alpha, const fl_tensor *A, const fl_tensor *dY, const int64_t *off, int G,
                           float beta, fl_tensor *dW);

/* cu_elementwise.cu */
void cu_add_bias(fl_tensor *y, const fl_tensor *b);
void cu_activation(int act, const fl_tensor *x, fl_tensor *y);
void cu_activation_backward(int act, const fl_tensor *x, const fl_tensor *dy, fl_tensor *dx);
void cu_bias_activation(int act, const fl_tensor *x, const fl_tensor *b, fl_tensor *y);
void cu_bias_activation_backward(int act, const fl_tensor *x, const fl_tensor *b, const fl_tensor *dy, fl_tensor *dx,
                                 fl_tensor *db);
void cu_bias_activation_grouped(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                fl_tensor *y);
void cu_bias_activation_grouped_backward(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                         const fl_tensor *dy, fl_tensor *dx, fl_tensor *db);
void cu_mul(const fl_tensor *a, const fl_tensor *b, fl_tensor *out);
void cu_axpby(float alpha, const fl_tensor *x, float beta, fl_tensor *y);
void cu_fill(fl_tensor *x, float v);
void cu_copy(const fl_tensor *src, fl_tensor *dst);
void cu_scale_rows(const fl_tensor *x, const fl_tensor *s, fl_tensor *y);
void cu_rng_normal(fl_tensor *x, uint64_t key, uint64_t offset, float mean, float std);
void cu_rng_uniform(fl_tensor *x, uint64_t key, uint64_t offset, float lo, float hi);
void cu_to_host(void *dst, const fl_tensor *src, size_t bytes);
void cu_from_host(fl_tensor *dst, const void *src, size_t bytes);
void cu_permute01(const fl_tensor *x, int64_t A, int64_t B, int64_t C, fl_tensor *y);
void cu_dropout(const fl_tensor *x, float p, uint64_t key, fl_tensor *y);
void cu_hash_ids(const fl_tensor *ids, uint64_t seed, int64_t buckets, fl_tensor *out);

/* cu_reduce.cu — sums along rows and columns */
void cu_sum_rows(const fl_tensor *x, float beta, fl_tensor *out);
void cu_row_dot(const fl_tensor *a, const fl_tensor *b, fl_tensor *out);

/* cu_softmax.cu */
void cu_softmax(const fl_tensor *x, fl_tensor *y);
void cu_softmax_backward(const fl_tensor *y, const fl_tensor *dy, fl_tensor *dx);
void cu_logsumexp(const fl_tensor *x, fl_tensor *out);

/* cu_topk.cu */
void cu_topk(const fl_tensor *x, int k, fl_tensor *vals, fl_tensor *idx);

/* cu_rows.cu — gather / scatter / embedding bag / zero rows */
void cu_gather_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst);
void cu_scatter_add_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst);
void cu_embedding_bag(const fl_tensor *table, const fl_tensor *idx, const fl_tensor *w, fl_tensor *out);
void cu_embedding_bag_backward(const fl_tensor *dout, const fl_tensor *table, const fl_tensor *idx,
                               const fl_tensor *w, fl_tensor *dtable, fl_tensor *dw);
void cu_zero_rows(fl_tensor *x, const int32_t *rows, int64_t n_rows);

/* cu_layernorm.cu */
void cu_layernorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps, fl_tensor *y,
                  fl_tensor *mean, fl_tensor *rstd);
void cu_layernorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean,
                           const fl_tensor *rstd, const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg,
                           fl_tensor *db);

/* cu_bucket_sort.cu */
void cu_bucket_sort(const fl_tensor *keys, int G, fl_tensor *perm, int64_t *off);

/* cu_embed.cu */
void cu_embed(const fl_tensor *wte, const fl_tensor *wpe, const fl_tensor *tokens, fl_tensor *x);
void cu_embed_backward(const fl_tensor *dx, const fl_tensor *tokens, fl_tensor *dwte, fl_tensor *dwpe);

/* cu_attention.cu — the backend's attention ops: the flash kernels where
   they apply, else cuBLAS products around the saved probabilities */
int64_t cu_attention_saved_numel(int64_t B, int64_t T, int64_t C, int n_head);
void cu_attention(const fl_tensor *qkv, int n_head, const fl_attn_mask *mask, fl_tensor *out, fl_tensor *saved);
void cu_attention_backward(const fl_tensor *qkv, const fl_tensor *out, const fl_tensor *saved, int n_head,
                           const fl_attn_mask *mask, const fl_tensor *dout, fl_tensor *dqkv);

/* cu_attention_decode.cu — decoding with a KV cache k/v_cache[B,H,S,hs] */
void cu_kv_append(const fl_tensor *qkv, int64_t pos, fl_tensor *k_cache, fl_tensor *v_cache);
void cu_attention_decode(const fl_tensor *qkv, const fl_tensor *k_cache, const fl_tensor *v_cache, int64_t t,
                         int64_t window, fl_tensor *out);

/* cu_flash_attention.cu — fused masked attention on tensor cores.
   qkv[B,T,3C] f32, y[B,T,C] f32, lse[B,H,T] f32 (+inf for a row that sees
   no key); head size hs = C/H; the mask as rule and lengths[B] (device
   i32, or NULL), attn_mask.h. */
int cu_flash_supported(int64_t hs);   /* for this hs, the current math mode and this GPU */
void cu_flash_forward(const float *qkv, int64_t B, int64_t T, int64_t C, int H, fl_attn_rule rule,
                      const int32_t *lengths, float *y, float *lse);
void cu_flash_backward(const float *qkv, const float *y, const float *lse, const float *dy, int64_t B, int64_t T,
                       int64_t C, int H, fl_attn_rule rule, const int32_t *lengths, float *dqkv);

/* cu_cross_entropy.cu */
double cu_cross_entropy(const fl_tensor *logits, int64_t classes, const fl_tensor *targets, fl_tensor *dlogits, float scale,
                        int64_t *count);

/* cu_adamw.cu */
void cu_adamw(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v, float lr, float beta1,
              float beta2, float eps, float weight_decay, float grad_scale, int64_t t);
void cu_adamw_rows(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v, const int32_t *rows,
                   int64_t n_rows, float lr, float beta1, float beta2, float eps, float weight_decay,
                   float grad_scale, int64_t t);

/* cu_norms.cu — sums of squares and the NaN/inf check */
double cu_sumsq(const fl_tensor *x);
double cu_sumsq_many(const fl_tensor *const *xs, int n);
double cu_sumsq_rows(const fl_tensor *x, const int32_t *rows, int64_t n_rows);
int cu_nonfinite(const fl_tensor *x);

/* cu_norm_groups.cu — batch norm and per-group layer norm */
void cu_batchnorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps, float momentum,
                  int train, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, fl_tensor *run_mean,
                  fl_tensor *run_var);
void cu_batchnorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean, const fl_tensor *rstd,
                           const fl_tensor *dy, int batch, fl_tensor *dx, fl_tensor *dg, fl_tensor *db);
void cu_layernorm_groups(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *b, float eps,
                         fl_tensor *y, fl_tensor *mean, fl_tensor *rstd);
void cu_layernorm_groups_backward(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *mean,
                                  const fl_tensor *rstd, const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg,
                                  fl_tensor *db);

#endif
