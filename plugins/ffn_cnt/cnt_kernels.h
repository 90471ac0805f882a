/*
 * plugins/ffn_cnt/cnt_kernels.h — the controller FFN's own CPU kernels.
 *
 * Everything the host's ops table (ffnlab/host.h) cannot express for this
 * layer, written once for the CPU: the Gumbel-softmax block selection and its
 * straight-through backward (the table has no log, so no Gumbel noise), the
 * per-block argmax with global unit indices, and the sparse inference pair
 * (gathered dot products against selected columns of W1, and the weighted sum
 * of selected rows of W2), tiled for the caches because these decide whether
 * the sparse path beats a dense GEMM at all. Each one is a host op candidate;
 * plugins/ffn_cnt/README.md lists them.
 *
 * Private to the plugin: plain pointers to host memory, shapes in the
 * comments, row-major, f32 unless the type says otherwise. Parallel with
 * OpenMP inside; call from one thread.
 */
#ifndef FFNLAB_CNT_KERNELS_H
#define FFNLAB_CNT_KERNELS_H

#include <stdint.h>

/* Training selection, per row n and per block b of B units (F = nb * B):
     z = (l + noise g) * inv_tau    g: Gumbel noise, counter n * F + j
     s = softmax_block(z)           the Gumbel-softmax probabilities
     idx[n, b] = b * B + argmax_block(z)   (ties: the lower index)
     p = softmax_block(l)           only when p != NULL (multiply_by_controller)
     mask = soft ? s : onehot(idx)
     hm = a * mask * (p or 1)
   l[N,F] logits (bias included), a[N,F] activations; s, hm [N,F] out,
   p [N,F] out or NULL, idx [N,nb] i32 out. */
void cnt_select_train(int64_t N, int64_t F, int64_t B, float noise, float inv_tau, uint64_t key,
                      int soft, const float *l, const float *a, float *s, float *p, int32_t *idx,
                      float *hm);

/* Backward of cnt_select_train's hm = a * mask * (p or 1) with the
   straight-through estimator (d mask / d s = identity, whether the forward
   used the hard or the soft mask):
     in:  dhm[N,F] = dL/dhm, a, s, p (or NULL), idx as saved by the forward
     out: dhm is overwritten with dL/da; dl[N,F] = dL/dl through s and p. */
void cnt_select_backward(int64_t N, int64_t F, int64_t B, float inv_tau, int soft,
                         const float *a, const float *s, const float *p, const int32_t *idx,
                         float *dhm, float *dl);

/* Inference selection: idx[n, b] = b * B + argmax over the block of
   l[n,:] + bias (ties: the lower index); pmax[n, b] (if not NULL) = the
   block softmax probability of the selected unit. l[N,F], bias[F]. */
void cnt_block_argmax(int64_t N, int64_t F, int64_t B, const float *l, const float *bias,
                      int32_t *idx, float *pmax);

/* The sparse kernels read the unit weights packed chunk-major: for chunk c
   of CNT_CHUNK columns of d and unit u, packed[c][u][0..CNT_CHUNK) holds
   W[u][c * CNT_CHUNK ...] (zero past d), W being c_fc.weight transposed
   ([d,d_ff] → units as rows) or c_proj.weight as it is ([d_ff,d]). */
#ifndef CNT_CHUNK
#define CNT_CHUNK 64
#endif

/* Floats of a packed copy of a [F units, d] matrix. */
int64_t cnt_packed_size(int64_t F, int64_t d);

/* packed = the chunk-major copy of w: w[d,F] when transposed (c_fc.weight),
   else w[F,d] (c_proj.weight). */
void cnt_pack(int64_t F, int64_t d, const float *w, int transposed, float *packed);

/* h[n, j] = dot(x[n,:], W1[:, idx[n,j]]) + b1[idx[n,j]];
   x[N,d], p1 = packed c_fc.weight (F units), idx[N,nb] i32, b1[F], h[N,nb]. */
void cnt_gather_dot(int64_t N, int64_t d, int64_t F, int64_t nb, const float *x, const float *p1,
                    const int32_t *idx, const float *b1, float *h);

/* y[n,:] = b2 + sum_j h[n,j] * W2[idx[n,j],:]; h[N,nb], p2 = packed
   c_proj.weight, b2[d], y[N,d]. */
void cnt_gather_axpy(int64_t N, int64_t d, int64_t F, int64_t nb, const float *h,
                     const int32_t *idx, const float *p2, const float *b2, float *y);

/* A hash of all of w[n], one pass: it changes whenever any single value
   changes (and, for unrelated contents, collides with probability ~2^-64). */
uint64_t cnt_fingerprint(const float *w, int64_t n);

#endif
