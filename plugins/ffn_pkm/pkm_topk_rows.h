/*
 * plugins/ffn_pkm/pkm_topk_rows.h — the product-key memory's per-(token,
 * head) selection and its backward, written once for both devices (the CPU
 * code loops over (token, head) with OpenMP, the CUDA code runs one thread
 * per (token, head)), so the two give the same slots and pairs bit for bit
 * and the same weights up to expf's last bits.
 *
 * Layout (pkm_topk.h): v, ix, g, gix [2H,N,k],
 * block 2h is head h's first half and 2h+1 its second; w, slot, pair, ds
 * [N,H*k]. For token n and head h the first half's row starts at
 * o1 = (2h*N + n)*k, the second's at o2 = o1 + N*k, the output row at o.
 */
#ifndef FFN_PKM_TOPK_ROWS_H
#define FFN_PKM_TOPK_ROWS_H

#include <math.h>   /* expf */
#include <stdint.h>

#if defined(__CUDACC__)
#define PK_FN static inline __host__ __device__
#else
#define PK_FN static inline
#endif

/* pair = a << 16 | b with a, b < k: k must fit 15 bits so a << 16 stays positive */
#define PK_K_MAX 32767

/* The k largest v1[a] + v2[b] (v1, v2 descending) into best[k], bp[k]
   (bp = a << 16 | b: shifts, not divisions, unpack it), best first. A pair
   with (a+1)(b+1) > k is never needed: the (a+1)(b+1) - 1 pairs (a' <= a,
   b' <= b) other than itself all score at least as much, and that is >= k
   of them. Within row a the sums fall as b grows, and across rows
   v1[a] + v2[0] bounds everything that follows, so both loops stop as soon
   as nothing can enter. Ties keep the pair met first (an equal sum never
   passes one already held). */
PK_FN void pk_pair_topk(const float *v1, const float *v2, int k, float *best, int32_t *bp) {
    int cnt = 0;
    for (int a = 0; a < k; a++) {
        if (cnt == k && !(v1[a] + v2[0] > best[k - 1])) break;
        const int nb = k / (a + 1);
        for (int b = 0; b < nb; b++) {
            const float s = v1[a] + v2[b];
            if (cnt == k && !(s > best[k - 1])) break;
            int p = cnt < k ? cnt++ : k - 1;
            for (; p > 0 && best[p - 1] < s; p--) {
                best[p] = best[p - 1];
                bp[p] = bp[p - 1];
            }
            best[p] = s;
            bp[p] = a << 16 | b;
        }
    }
}

/* One (token, head) of product_topk: the winners' scores are ranked in w's
   row itself (no scratch), then turned into their softmax; slot from the
   two halves' sub-key indices. */
PK_FN void pk_token_head_topk(const float *v, const int32_t *ix, int64_t o1, int64_t o2, int64_t o, int k,
                              int64_t n_keys, float *w, int32_t *slot, int32_t *pair) {
    float *wr = w + o;
    int32_t *pr = pair + o;
    pk_pair_topk(v + o1, v + o2, k, wr, pr);
    const float top = wr[0];
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        wr[j] = expf(wr[j] - top);
        sum += wr[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < k; j++) {
        wr[j] *= inv;
        slot[o + j] = (int32_t)(ix[o1 + (pr[j] >> 16)] * n_keys + ix[o2 + (pr[j] & 0xffff)]);
    }
}

/* One (token, head) of product_topk_backward: clears its two k-blocks of
   g and gix, then adds each winner's gradient to the two positions it used,
   winners in rank order. */
PK_FN void pk_token_head_backward(const float *ds, const int32_t *pair, const int32_t *ix, int64_t o1, int64_t o2,
                                  int64_t o, int k, float *g, int32_t *gix) {
    for (int a = 0; a < k; a++) {
        g[o1 + a] = g[o2 + a] = 0.0f;
        gix[o1 + a] = gix[o2 + a] = -1;
    }
    for (int j = 0; j < k; j++) {
        const int a = pair[o + j] >> 16, b = pair[o + j] & 0xffff;
        g[o1 + a] += ds[o + j];
        g[o2 + b] += ds[o + j];
        gix[o1 + a] = ix[o1 + a];
        gix[o2 + b] = ix[o2 + b];
    }
}

#endif
