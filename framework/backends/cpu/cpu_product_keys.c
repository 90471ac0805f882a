/*
 * backends/cpu/cpu_product_keys.c — the product-key memory's selection
 * (PKM, Lample et al. 2019): the top-k of the sums of two sorted top-k
 * lists per (token, head), with the softmax over the winners, and the
 * routing of the winners' score gradient back to the two lists.
 *
 * Layout (see host.h): v, ix [2H,N,k], block 2h is head h's first half and
 * 2h+1 its second; w, slot, pair [N,H*k]. Tokens are independent: one
 * OpenMP loop over tokens, no shared writes, so the result does not depend
 * on the thread count.
 */
#include "cpu.h"

#include <math.h> /* expf */

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
static void pair_topk(const float *v1, const float *v2, int k, float *best, int32_t *bp) {
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

/* One (token, head): the winners' scores are ranked in w's row itself
   (no scratch), then turned into their softmax (libm expf: the plugin's
   figures predate this op); slot from the two halves' sub-key indices. */
static void token_head_topk(const float *v1, const float *v2, const int32_t *ix1, const int32_t *ix2,
                            int k, int64_t n_keys, float *w, int32_t *slot, int32_t *pair) {
    pair_topk(v1, v2, k, w, pair);
    const float top = w[0];
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        w[j] = expf(w[j] - top);
        sum += w[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < k; j++) {
        w[j] *= inv;
        slot[j] = (int32_t)(ix1[pair[j] >> 16] * n_keys + ix2[pair[j] & 0xffff]);
    }
}

/* v[2H,N,k], ix[2H,N,k] → w, slot, pair [N,H*k] */
void cpu_product_topk(const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys,
                      fl_tensor *w, fl_tensor *slot, fl_tensor *pair) {
    const int64_t N = cpu_rows(w), hk = cpu_cols(w), k = H > 0 ? hk / H : 0;
    CPU_CHECK(H >= 1 && k >= 1 && k <= PK_K_MAX && hk == H * k);
    CPU_CHECK(v->dtype == FL_F32 && ix->dtype == FL_I32 && w->dtype == FL_F32);
    CPU_CHECK(slot->dtype == FL_I32 && pair->dtype == FL_I32);
    CPU_CHECK(fl_numel(v) == 2 * N * hk && fl_numel(ix) == 2 * N * hk);
    CPU_CHECK(fl_numel(slot) == N * hk && fl_numel(pair) == N * hk);
    const float *pv = cpu_f32(v);
    const int32_t *pi = cpu_i32(ix);
    float *pw = cpu_f32(w);
    int32_t *ps = cpu_i32(slot), *pp = cpu_i32(pair);
#pragma omp parallel for schedule(static) if (N * hk > CPU_PAR_MIN / 16)
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = n * hk + h * k;
            token_head_topk(pv + o1, pv + o2, pi + o1, pi + o2, (int)k, n_keys, pw + o, ps + o, pp + o);
        }
}

/* ds, pair [N,H*k]; ix, g, gix [2H,N,k]. Each (token, head) clears its two
   k-blocks of g, then adds each winner's gradient to the two positions it
   used, winners in rank order. */
void cpu_product_topk_backward(const fl_tensor *ds, const fl_tensor *pair, const fl_tensor *ix,
                               int H, fl_tensor *g, fl_tensor *gix) {
    const int64_t N = cpu_rows(ds), hk = cpu_cols(ds), k = H > 0 ? hk / H : 0;
    CPU_CHECK(H >= 1 && k >= 1 && k <= PK_K_MAX && hk == H * k);
    CPU_CHECK(ds->dtype == FL_F32 && pair->dtype == FL_I32 && ix->dtype == FL_I32);
    CPU_CHECK(g->dtype == FL_F32 && gix->dtype == FL_I32 && fl_numel(pair) == N * hk);
    CPU_CHECK(fl_numel(ix) == 2 * N * hk && fl_numel(g) == 2 * N * hk && fl_numel(gix) == 2 * N * hk);
    const float *pd = cpu_f32(ds);
    const int32_t *pp = cpu_i32(pair), *pi = cpu_i32(ix);
    float *pg = cpu_f32(g);
    int32_t *pgi = cpu_i32(gix);
#pragma omp parallel for schedule(static) if (N * hk > CPU_PAR_MIN / 4)
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = n * hk + h * k;
            for (int64_t a = 0; a < k; a++) {
                pg[o1 + a] = pg[o2 + a] = 0.0f;
                pgi[o1 + a] = pgi[o2 + a] = -1;
            }
            for (int64_t j = 0; j < k; j++) {
                const int a = pp[o + j] >> 16, b = pp[o + j] & 0xffff;
                pg[o1 + a] += pd[o + j];
                pg[o2 + b] += pd[o + j];
                pgi[o1 + a] = pi[o1 + a];
                pgi[o2 + b] = pi[o2 + b];
            }
        }
}
