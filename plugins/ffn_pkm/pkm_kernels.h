/*
 * plugins/ffn_pkm/pkm_kernels.h — the product-key memory plugin's own CPU
 * kernels (private to plugins/ffn_pkm).
 *
 * Every step of the layer is a host op (the pair top-k, the norms, dropout,
 * the transposes and the embedding bags included), so the layer runs on
 * any device. What stays here are faster CPU forms of two of them, written
 * for host memory with OpenMP and used only when the layer runs on the CPU
 * with kernels=auto (kernels=host runs the host ops on the CPU too):
 *
 *   pk_subkey_backward
 *                    the sub-keys' share of backward for every head half in
 *                    one parallel region (an embedding bag and its gradient
 *                    per half as host ops: several times slower on the CPU)
 *   pk_group_chunks / pk_bag_forward / pk_values_backward
 *                    the embedding bag over the values and its gradient
 *                    (table rows and bag weights), blocked: entries grouped
 *                    by table row within chunks of tokens, so a row is read
 *                    once per chunk instead of once per entry. The result is
 *                    the host's embedding_bag / embedding_bag_backward up to
 *                    the order of the additions.
 *
 * Shapes are written as a[N,k]: N rows of k values, row-major, contiguous.
 */
#ifndef FFNLAB_PKM_KERNELS_H
#define FFNLAB_PKM_KERNELS_H

#include <stdint.h>

/* The sub-keys' share of backward, for every head half b < B at once:
 *   dq[b,n,:]  = sum_a g[b,n,a] K[b, gix[b,n,a], :]          (overwritten)
 *   dK[b, gix[b,n,a], :] += g[b,n,a] q[b,n,:]
 * over positions with gix >= 0. K, dK [B, n_keys, c]; q, dq [B, N, c];
 * g, gix [B, N, k]. One task per head half (it owns that half's dK), rows in
 * order: one parallel region, and the sums do not depend on the threads. */
void pk_subkey_backward(const float *K, const float *q, const float *g, const int32_t *gix, int64_t B,
                        int64_t N, int64_t k, int64_t n_keys, int64_t c, float *dq, float *dK);

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

#endif
