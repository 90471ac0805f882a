/*
 * plugins/ffn_pkm/pkm_kernels.h — the product-key memory plugin's own CPU
 * kernels (private to plugins/ffn_pkm).
 *
 * The host ops table has no op for these steps, so the plugin carries them,
 * written for host (CPU) memory with OpenMP. Each is a candidate for a host
 * op (then the plugin would also run on the GPU):
 *
 *   pk_product_topk / pk_product_topk_backward / pk_subkey_backward
 *                    top-k of the sums of two sorted top-k lists, with the
 *                    softmax over the winners, and its gradient routed back
 *                    to the two lists' positions, the queries and sub-keys
 *   pk_bn_*          batch normalisation over rows (train: batch statistics
 *                    and running-statistics update; eval: running statistics)
 *   pk_ln_*          layer normalisation over groups of columns within a row
 *                    with a per-column affine (one group per head)
 *   pk_to_heads / pk_from_heads
 *                    [N, G*c] ↔ [G, N, c] block transposes (so one batched
 *                    GEMM scores every head half against its sub-keys)
 *   pk_dropout       inverted dropout from the counter-based RNG (ffnlab/rng.h),
 *                    so backward regenerates the mask instead of storing it
 *   pk_group_chunks / pk_bag_forward / pk_values_backward
 *                    the embedding bag over the values and its gradient
 *                    (table rows and bag weights), blocked: entries grouped
 *                    by table row within chunks of tokens, so a row is read
 *                    once per chunk instead of once per entry
 *   pk_usage_add     slot-usage counting for the memory statistics
 *
 * Shapes are written as a[N,k]: N rows of k values, row-major, contiguous.
 */
#ifndef FFNLAB_PKM_KERNELS_H
#define FFNLAB_PKM_KERNELS_H

#include <stdint.h>

/* Product-key top-k for one layer call.
 *   v[2H,N,k], ix[2H,N,k]: each head half's top-k sub-key scores (descending)
 *                          and sub-key indices; block 2h is the first half of
 *                          head h, block 2h+1 the second.
 * For each token n and head h, picks the k largest v1[a] + v2[b] over the
 * k*k pairs (only pairs with (a+1)(b+1) <= k can be among them), then writes
 * into row n, columns h*k .. h*k+k-1, best first:
 *   w[N,H*k]      softmax of the k scores v1[a] + v2[b] of (n, h)
 *   slot[N,H*k]   ix1[a] * n_keys + ix2[b]   (the value row)
 *   pair[N,H*k]   a << 16 | b                (for backward)
 * Ties go to the pair met first in (a, b) order. */
void pk_product_topk(const float *v, const int32_t *ix, int64_t N, int H, int k, int64_t n_keys,
                     float *w, int32_t *slot, int32_t *pair);

/* Backward of the pair sums: with ds[N,H*k] the gradient of the scores,
 *   g[2H,N,k]   g1[a] = sum of ds over the winners using a (g2[b] likewise)
 *   gix[2H,N,k] ix[...] where some winner used that position, else -1
 *               (so embedding bags over the sub-keys skip unused positions). */
void pk_product_topk_backward(const float *ds, const int32_t *pair, const int32_t *ix, int64_t N,
                              int H, int k, float *g, int32_t *gix);

/* The sub-keys' share of backward, for every head half b < B at once:
 *   dq[b,n,:]  = sum_a g[b,n,a] K[b, gix[b,n,a], :]          (overwritten)
 *   dK[b, gix[b,n,a], :] += g[b,n,a] q[b,n,:]
 * over positions with gix >= 0. K, dK [B, n_keys, c]; q, dq [B, N, c];
 * g, gix [B, N, k]. One task per head half (it owns that half's dK), rows in
 * order: one parallel region, and the sums do not depend on the threads. */
void pk_subkey_backward(const float *K, const float *q, const float *g, const int32_t *gix, int64_t B,
                        int64_t N, int64_t k, int64_t n_keys, int64_t c, float *dq, float *dK);

/* q[N, G*c] → qt[G, N, c] and back (dst fully written). */
void pk_to_heads(const float *q, int64_t N, int G, int64_t c, float *qt);
void pk_from_heads(const float *qt, int64_t N, int G, int64_t c, float *q);

/* Reductions over rows (batch-norm statistics, the norms' affine gradients)
 * run over PK_RED_CHUNKS fixed chunks of rows, each summing its rows into
 * its own row of a caller-provided scratch[2 * PK_RED_CHUNKS * F] floats;
 * the chunks are then added in order (in double). Rows are read in order,
 * and the result does not depend on the thread count. */
#define PK_RED_CHUNKS 16

/* Batch norm of x[N,F] over its N rows, train mode: per column mean and
 * biased variance, y = (x - mean) rstd g + b, rstd = 1/sqrt(var + eps);
 * saves mean[F], rstd[F]; if run_mean/run_var are not NULL, moves them
 * toward the batch mean and the unbiased variance by `momentum` (PyTorch's
 * BatchNorm1d rule). N >= 1. */
void pk_bn_train(const float *x, int64_t N, int64_t F, const float *g, const float *b, float eps,
                 float momentum, float *y, float *mean, float *rstd, float *run_mean,
                 float *run_var, float *scratch);
/* Eval mode: y = (x - run_mean) rstd g + b with rstd = 1/sqrt(run_var + eps);
 * writes mean[F] = run_mean and rstd[F] (what backward then uses). */
void pk_bn_eval(const float *x, int64_t N, int64_t F, const float *g, const float *b, float eps,
                const float *run_mean, const float *run_var, float *y, float *mean, float *rstd);
/* Backward. batch = 1 after pk_bn_train (mean, rstd depend on x), 0 after
 * pk_bn_eval (a fixed affine map). dx[N,F] overwritten; dg, db += . */
void pk_bn_backward(const float *x, int64_t N, int64_t F, const float *g, const float *mean,
                    const float *rstd, const float *dy, int batch, float *dx, float *dg, float *db,
                    float *scratch);

/* Layer norm of each group of c columns of x[N, G*c] (one group per head),
 * then a per-column affine g[G*c], b[G*c]: y = (x - mean) rstd g + b.
 * Saves mean[N*G], rstd[N*G]. */
void pk_ln_forward(const float *x, int64_t N, int G, int64_t c, const float *g, const float *b,
                   float eps, float *y, float *mean, float *rstd);
/* dx[N, G*c] overwritten; dg, db += . */
void pk_ln_backward(const float *x, int64_t N, int G, int64_t c, const float *g,
                    const float *mean, const float *rstd, const float *dy, float *dx, float *dg,
                    float *db, float *scratch);

/* Inverted dropout: dst[i] = src[i] / (1 - p), or 0 where
 * fl_rng_uniform(key, i) < p. dst may alias src. Backward is the same call
 * on the gradient with the same key. */
void pk_dropout(const float *src, float *dst, int64_t n, float p, uint64_t key);

/* The memory read as a grouped ("blocked") embedding bag.
 *
 * out[n,:] = sum_j w[n,j] V[slot[n,j],:] over E = N*k entries (e = n*k + j).
 * Tokens are cut into chunks of C; within a chunk the entries are grouped by
 * slot (a stable counting sort), so a slot's row is loaded once per chunk
 * and applied to every token of the chunk that reads it, while the chunk's
 * output (or output-gradient) rows stay in L2. With many reads per slot per
 * chunk this moves a fraction of the bytes of the token-ordered bag.
 *
 * off[c*(S+1) + s] .. off[c*(S+1) + s+1] is the range of chunk c's entries
 * that read slot s (absolute indices into tok/ws/pos, which hold, in that
 * order, each entry's token e / k, weight w[e] and index e). */

/* Tokens per chunk: C = forced if > 0; else enough rows of D floats to fill
 * about 1 MiB (half an L2), at least 4*S/k tokens so a slot is read about 4
 * times per chunk, and small enough that every thread gets a chunk. Either
 * way C is raised if the chunks' offsets would pass 2^23 (64 MiB). */
int64_t pk_bag_chunk(int64_t N, int64_t k, int64_t S, int64_t D, int64_t forced);
/* Fills off[ceil(N/C)*(S+1)], tok[E], ws[E], pos[E]; chunks in parallel. */
void pk_group_chunks(const int32_t *slot, const float *w, int64_t N, int64_t k, int64_t S, int64_t C,
                     int64_t *off, int32_t *tok, float *ws, int32_t *pos);
/* out[N,D] = the bag (every row written); chunks in parallel. */
void pk_bag_forward(const float *V, const int64_t *off, const int32_t *tok, const float *ws, int64_t N,
                    int64_t S, int64_t C, int64_t D, float *out);
/* Its gradient: dw[e] = dot(dout[e/k,:], V[slot,:]) and
 * dV[slot,:] += w[e] dout[e/k,:] for every entry; rows no entry reads are
 * not touched. Chunk after chunk, slots in parallel: the additions into a
 * row come in token order whatever the thread count. */
void pk_values_backward(const float *dout, const float *V, const int64_t *off, const int32_t *tok,
                        const float *ws, const int32_t *pos, int64_t N, int64_t S, int64_t C,
                        int64_t D, float *dV, float *dw);

/* Usage counting: for each of n (slot, weight) pairs sets the slot's bit in
 * used[] (64 slots per word) and adds the weight to att[slot]. */
void pk_usage_add(const int32_t *slot, const float *w, int64_t n, uint64_t *used, double *att);

#endif
