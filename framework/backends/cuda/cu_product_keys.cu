/*
 * backends/cuda/cu_product_keys.cu — the product-key memory's selection:
 * per (token, head) the top-k of v1[a] + v2[b] over the two halves' sorted
 * top-k lists, the softmax over the winners, and the backward routing of
 * the winners' score gradient to the two lists' positions.
 *
 * One thread per (token, head), running the CPU's algorithm step for step
 * (cpu_product_keys.c): the winners are ranked by insertion straight into
 * that (token, head)'s row of w and pair (global memory, cached), so no
 * scratch and no cap on k beyond the pair encoding. The sums and compares
 * are the same float operations as on the CPU, so slot and pair are
 * bit-identical; w differs only by expf's last bits. Backward adds each
 * winner's gradient in rank order, as the CPU does (bit-identical).
 * There are N*H threads of O(k log k)-ish work each: small next to the
 * sub-key GEMM that precedes it.
 */
#include "cu_ops.h"

/* a << 16 | b must stay positive */
#define PK_K_MAX 32767

/* The k largest v1[a] + v2[b] into best[k], bp[k] (a << 16 | b), best first;
   only pairs with (a+1)(b+1) <= k can win; both loops stop once nothing can
   enter; an equal sum never passes one already held (ties: first met). */
__device__ static void pair_topk(const float *v1, const float *v2, int k, float *best, int32_t *bp) {
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

/* t = n*H + h; v, ix [2H,N,k]; w, slot, pair [N,H*k] */
static __global__ void k_product_topk(const float *v, const int32_t *ix, int64_t N, int H, int k, int64_t n_keys,
                                      float *w, int32_t *slot, int32_t *pair) {
    CU_LOOP(t, N * H) {
        const int64_t n = t / H;
        const int h = (int)(t % H);
        const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = t * k;
        float *wr = w + o;
        int32_t *pr = pair + o;
        pair_topk(v + o1, v + o2, k, wr, pr);
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
}

void cu_product_topk(const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys, fl_tensor *w,
                     fl_tensor *slot, fl_tensor *pair) {
    const int64_t N = cu_rows(w), hk = cu_cols(w), k = H > 0 ? hk / H : 0;
    CU_CHECK(H >= 1 && k >= 1 && k <= PK_K_MAX && hk == H * k);
    CU_CHECK(v->dtype == FL_F32 && ix->dtype == FL_I32 && w->dtype == FL_F32);
    CU_CHECK(slot->dtype == FL_I32 && pair->dtype == FL_I32);
    CU_CHECK(fl_numel(v) == 2 * N * hk && fl_numel(ix) == 2 * N * hk);
    CU_CHECK(fl_numel(slot) == N * hk && fl_numel(pair) == N * hk);
    if (N == 0) return;
    k_product_topk<<<cu_grid(N * H), CU_THREADS, 0, g_cu.stream>>>(cu_f32(v), cu_i32(ix), N, H, (int)k, n_keys,
                                                                   cu_f32(w), cu_i32(slot), cu_i32(pair));
    CU_LAUNCHED("k_product_topk");
}

/* t = n*H + h: clears its two k-blocks of g/gix, then adds the winners'
   gradients in rank order. */
static __global__ void k_product_topk_backward(const float *ds, const int32_t *pair, const int32_t *ix, int64_t N,
                                               int H, int k, float *g, int32_t *gix) {
    CU_LOOP(t, N * H) {
        const int64_t n = t / H;
        const int h = (int)(t % H);
        const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = t * k;
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
}

void cu_product_topk_backward(const fl_tensor *ds, const fl_tensor *pair, const fl_tensor *ix, int H,
                              fl_tensor *g, fl_tensor *gix) {
    const int64_t N = cu_rows(ds), hk = cu_cols(ds), k = H > 0 ? hk / H : 0;
    CU_CHECK(H >= 1 && k >= 1 && k <= PK_K_MAX && hk == H * k);
    CU_CHECK(ds->dtype == FL_F32 && pair->dtype == FL_I32 && ix->dtype == FL_I32);
    CU_CHECK(g->dtype == FL_F32 && gix->dtype == FL_I32 && fl_numel(pair) == N * hk);
    CU_CHECK(fl_numel(ix) == 2 * N * hk && fl_numel(g) == 2 * N * hk && fl_numel(gix) == 2 * N * hk);
    if (N == 0) return;
    k_product_topk_backward<<<cu_grid(N * H), CU_THREADS, 0, g_cu.stream>>>(cu_f32(ds), cu_i32(pair), cu_i32(ix),
                                                                            N, H, (int)k, cu_f32(g), cu_i32(gix));
    CU_LAUNCHED("k_product_topk_backward");
}
