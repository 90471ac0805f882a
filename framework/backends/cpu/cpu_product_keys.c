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

#include "product_keys.h" /* the per-(token, head) work, shared with CUDA */

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
            pk_token_head_topk(pv, pi, o1, o2, o, (int)k, n_keys, pw, ps, pp);
        }
}

/* ds, pair [N,H*k]; ix, g, gix [2H,N,k] */
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
            pk_token_head_backward(pd, pp, pi, o1, o2, o, (int)k, pg, pgi);
        }
}
