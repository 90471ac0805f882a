/*
 * plugins/ffn_pkm/pkm_topk.h — the product-key selection only a product-key
 * memory has, as this plugin's own kernels on the host's device: C on the
 * CPU (pkm_topk_cpu.c), CUDA on a GPU (pkm_topk.cu, built with the plugin's
 * CUDA sources: FFNLAB_PLUGIN_CUDA); the per-(token, head) work is one
 * source for both (pkm_topk_rows.h). H heads, two halves each; each returns
 * FL_OK or an error naming the step.
 */
#ifndef FFN_PKM_TOPK_H
#define FFN_PKM_TOPK_H

#include "ffnlab/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* v[2H,N,k], ix[2H,N,k] i32: each head half's top-k sub-key scores
   (descending) and indices; block 2h is head h's first half, 2h+1 its
   second. For each token n and head h: the k largest v1[a] + v2[b] over
   the k*k pairs (ties: the pair met first in (a, b) order), written to
   row n, columns h*k .. h*k+k-1, best first:
     w[N,H*k]        softmax of those k scores
     slot[N,H*k] i32 ix1[a] * n_keys + ix2[b]   (the value row)
     pair[N,H*k] i32 a << 16 | b                (for backward) */
fl_status pkm_product_topk(const fl_host *h, const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys,
                           fl_tensor *w, fl_tensor *slot, fl_tensor *pair, fl_error *err);

/* Backward of the pair sums, ds[N,H*k] the scores' gradient:
     g[2H,N,k]       g1[a] = sum of ds over the winners using a (g2 alike)
     gix[2H,N,k] i32 ix where some winner used that position, else -1. */
fl_status pkm_product_topk_backward(const fl_host *h, const fl_tensor *ds, const fl_tensor *pair, const fl_tensor *ix,
                                    int H, fl_tensor *g, fl_tensor *gix, fl_error *err);

/* The same per device (shapes checked by the two above). */
void pkm_product_topk_cpu(const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys, fl_tensor *w, fl_tensor *slot,
                          fl_tensor *pair);
void pkm_product_topk_backward_cpu(const fl_tensor *ds, const fl_tensor *pair, const fl_tensor *ix, int H, fl_tensor *g,
                                   fl_tensor *gix);
fl_status pkm_product_topk_cuda(const fl_host *h, const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys,
                                fl_tensor *w, fl_tensor *slot, fl_tensor *pair, fl_error *err);
fl_status pkm_product_topk_backward_cuda(const fl_host *h, const fl_tensor *ds, const fl_tensor *pair,
                                         const fl_tensor *ix, int H, fl_tensor *g, fl_tensor *gix, fl_error *err);

#ifdef __cplusplus
}
#endif
#endif
