/*
 * plugins/ffn_cnt/cnt_select.h — the block selection only the controller
 * FFN has, as this plugin's own kernels on the host's device: C on the CPU
 * (cnt_select_cpu.c), CUDA on a GPU (cnt_select.cu, built with the plugin's
 * CUDA sources: FFNLAB_PLUGIN_CUDA). One unit per block of B units; l, a,
 * s, p, hm, dhm, dl are [N,F] with F = nb*B; idx, pmax are [N,nb]. Each
 * returns FL_OK or an error naming the step.
 */
#ifndef FFN_CNT_SELECT_H
#define FFN_CNT_SELECT_H

#include "ffnlab/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Training selection, per row n and block b:
     z   = (l + noise * g) * inv_tau,  g = -log(-log u) Gumbel noise,
           u = fl_rng_uniform(key, n*F + j) (j the column)
     s   = softmax of z over the block
     idx[n,b] = b*B + the block's argmax of z (ties: the lower index)
     p   = softmax of l over the block, only when p != NULL
     hm  = a * (soft ? s : onehot(idx)) * (p or 1) */
fl_status cnt_block_select(const fl_host *h, const fl_tensor *l, const fl_tensor *a, int B, float noise,
                           float inv_tau, uint64_t key, int soft, fl_tensor *s, fl_tensor *p, fl_tensor *idx,
                           fl_tensor *hm, fl_error *err);

/* Its backward with the straight-through estimator (d mask / d s = 1,
   whether the forward used the hard or the soft mask): dhm holds dL/dhm on
   entry and dL/da on return; dl (overwritten) = dL/dl through s (and p
   when not NULL). */
fl_status cnt_block_select_backward(const fl_host *h, const fl_tensor *a, const fl_tensor *s, const fl_tensor *p,
                                    const fl_tensor *idx, int B, float inv_tau, int soft, fl_tensor *dhm,
                                    fl_tensor *dl, fl_error *err);

/* Inference: idx[n,b] = b*B + argmax over the block of l + bias (bias[F];
   ties: the lower index); pmax[n,b] (unless NULL) = the block softmax
   probability of the chosen unit. */
fl_status cnt_block_argmax(const fl_host *h, const fl_tensor *l, const fl_tensor *bias, int B, fl_tensor *idx,
                           fl_tensor *pmax, fl_error *err);

/* The same per device; the three above check shapes and pick by
   h->device.kind. Arguments as above, shapes already checked. */
void cnt_block_select_cpu(const fl_tensor *l, const fl_tensor *a, int B, float noise, float inv_tau, uint64_t key,
                          int soft, fl_tensor *s, fl_tensor *p, fl_tensor *idx, fl_tensor *hm);
void cnt_block_select_backward_cpu(const fl_tensor *a, const fl_tensor *s, const fl_tensor *p, const fl_tensor *idx,
                                   int B, float inv_tau, int soft, fl_tensor *dhm, fl_tensor *dl);
void cnt_block_argmax_cpu(const fl_tensor *l, const fl_tensor *bias, int B, fl_tensor *idx, fl_tensor *pmax);
fl_status cnt_block_select_cuda(const fl_host *h, const fl_tensor *l, const fl_tensor *a, int B, float noise,
                                float inv_tau, uint64_t key, int soft, fl_tensor *s, fl_tensor *p, fl_tensor *idx,
                                fl_tensor *hm, fl_error *err);
fl_status cnt_block_select_backward_cuda(const fl_host *h, const fl_tensor *a, const fl_tensor *s,
                                         const fl_tensor *p, const fl_tensor *idx, int B, float inv_tau, int soft,
                                         fl_tensor *dhm, fl_tensor *dl, fl_error *err);
fl_status cnt_block_argmax_cuda(const fl_host *h, const fl_tensor *l, const fl_tensor *bias, int B, fl_tensor *idx,
                                fl_tensor *pmax, fl_error *err);

#ifdef __cplusplus
}
#endif
#endif
