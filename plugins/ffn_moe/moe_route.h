/*
 * plugins/ffn_moe/moe_route.h — the routing steps only a mixture of
 * experts has, as this plugin's own kernels on the host's device: plain C
 * on the CPU (moe_route_cpu.c), CUDA on a GPU (moe_route.cu, built when
 * the plugin is built with its CUDA sources: FFNLAB_PLUGIN_CUDA). Each
 * returns FL_OK or an error naming the step; shapes: N tokens, k experts
 * each of E.
 *
 * Integers (keys, counts, indices) are the same on every device; floats the
 * same up to the order of one row's sum.
 */
#ifndef FFN_MOE_ROUTE_H
#define FFN_MOE_ROUTE_H

#include "ffnlab/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* topv[N,k] (chosen probabilities), topi[N,k] i32 (experts in [0,E)) →
   gates[N,k] = topv / Σ_j topv[n,j] when renorm and that sum > 0, else
   topv; keys[N*k] i32 = topi, or -1 for an assignment whose expert already
   holds cap assignments earlier in row-major (token, then j) order (first
   come, first served; cap < 0: no limit); count[E] i32 = assignments per
   expert before dropping. scratch: the step's own memory (ensured here). */
fl_status moe_route(const fl_host *h, const fl_tensor *topv, const fl_tensor *topi, int E, int renorm, int64_t cap,
                    fl_tensor *gates, fl_tensor *keys, fl_tensor *count, fl_tensor *scratch, fl_error *err);

/* The inverse of an expert-ordered list of assignments perm[M] i32 (a =
   n*k + j, as bucket_sort lists the kept keys): tok[M] i32 = a / k,
   gs[M] = gates[a] (gates[N,k]), pos[N,k] i32 = m where perm[m] = a, -1 for
   an assignment perm does not list. */
fl_status moe_index(const fl_host *h, const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok,
                    fl_tensor *gs, fl_tensor *pos, fl_error *err);

/* The router's gradient, per token n (probs, dlogits [N,E]; lse [N]; topv,
   topi, gates, dgate [N,k]; dbal [E]):
     dv[j]   = renorm ? (dgate[j] - Σ_i dgate[i] gates[i]) / Σ_i topv[i]
                      (0 when that sum is 0) : dgate[j]
     dp      = dbal + dv added to columns topi[j]
     dlogits = probs * (dp - Σ_i dp[i] probs[i] + zc * lse[n])
   (softmax backward plus the z-loss term); dlogits is overwritten. */
fl_status moe_router_backward(const fl_host *h, const fl_tensor *probs, const fl_tensor *lse, const fl_tensor *topv,
                              const fl_tensor *topi, const fl_tensor *gates, const fl_tensor *dgate,
                              const fl_tensor *dbal, int renorm, float zc, fl_tensor *dlogits, fl_error *err);

/* The same steps per device (moe_route_cpu.c, moe_route.cu); the three
   above pick by h->device.kind. */
fl_status moe_route_cpu(const fl_host *h, const fl_tensor *topv, const fl_tensor *topi, int E, int renorm,
                        int64_t cap, fl_tensor *gates, fl_tensor *keys, fl_tensor *count, fl_error *err);
fl_status moe_index_cpu(const fl_host *h, const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok,
                        fl_tensor *gs, fl_tensor *pos, fl_error *err);
fl_status moe_router_backward_cpu(const fl_host *h, const fl_tensor *probs, const fl_tensor *lse,
                                  const fl_tensor *topv, const fl_tensor *topi, const fl_tensor *gates,
                                  const fl_tensor *dgate, const fl_tensor *dbal, int renorm, float zc,
                                  fl_tensor *dlogits, fl_error *err);
fl_status moe_route_cuda(const fl_host *h, const fl_tensor *topv, const fl_tensor *topi, int E, int renorm,
                         int64_t cap, fl_tensor *gates, fl_tensor *keys, fl_tensor *count, fl_tensor *scratch,
                         fl_error *err);
fl_status moe_index_cuda(const fl_host *h, const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok,
                         fl_tensor *gs, fl_tensor *pos, fl_error *err);
fl_status moe_router_backward_cuda(const fl_host *h, const fl_tensor *probs, const fl_tensor *lse,
                                   const fl_tensor *topv, const fl_tensor *topi, const fl_tensor *gates,
                                   const fl_tensor *dgate, const fl_tensor *dbal, int renorm, float zc,
                                   fl_tensor *dlogits, fl_error *err);

#ifdef __cplusplus
}
#endif
#endif
