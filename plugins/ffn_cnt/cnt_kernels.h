/*
 * plugins/ffn_cnt/cnt_kernels.h — the controller FFN's own CPU kernels for
 * inference on the CPU: the sparse pair (gathered dot products against the
 * selected columns of W1, and the weighted sum of the selected rows of W2),
 * tiled for the caches on packed copies of the weights, because these
 * decide whether the sparse path beats a dense GEMM at all; and the
 * fingerprint that tells when the packed copies are stale.
 *
 * The rest of the layer's math is host ops (ffnlab/host.h), the block
 * selection included (block_select, block_select_backward, block_argmax).
 * On other devices, or with kernels=host, the plugin computes the same pair
 * with the host's embedding_bag ops instead of these kernels.
 *
 * Private to the plugin: plain pointers to host memory (so: CPU tensors
 * only), shapes in the comments, row-major, f32 unless the type says
 * otherwise. Parallel with OpenMP inside; call from one thread.
 */
#ifndef FFNLAB_CNT_KERNELS_H
#define FFNLAB_CNT_KERNELS_H

#include <stdint.h>

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
