/*
 * backends/cuda/cu_product_keys.cu — the product-key memory's selection:
 * per (token, head) the top-k of v1[a] + v2[b] over the two halves' sorted
 * top-k lists, the softmax over the winners, and the backward routing of
 * the winners' score gradient to the two lists' positions.
 *
 * One thread per (token, head), running the CPU's code (backends/
 * product_keys.h): the winners are ranked by insertion straight into that
 * (token, head)'s row of w and pair (global memory, cached), so no scratch
 * and no cap on k beyond the pair encoding; slot and pair are bit-identical
 * to the CPU's, w differs only by expf's last bits, backward is
 * bit-identical.
 * There are N*H threads of O(k log k)-ish work each: small next to the
 * sub-key GEMM that precedes it.
 */
#include "cu_ops.h"

#include "product_keys.h" /* the per-(token, head) work, shared with the CPU */

/* t = n*H + h; v, ix [2H,N,k]; w, slot, pair [N,H*k] */
static __global__ void k_product_topk(const float *v, const int32_t *ix, int64_t N, int H, int k, int64_t n_keys,
                                      float *w, int32_t *slot, int32_t *pair) {
    CU_LOOP(t, N * H) {
        const int64_t n = t / H;
        const int h = (int)(t % H);
        const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = t * k;
        pk_token_head_topk(v, ix, o1, o2, o, k, n_keys, w, slot, pair);
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
    CU_LAUNCH(cu_grid(N * H), CU_THREADS, 0, k_product_topk)(cu_f32(v), cu_i32(ix), N, H, (int)k, n_keys,
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
        pk_token_head_backward(ds, pair, ix, o1, o2, o, k, g, gix);
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
    CU_LAUNCH(cu_grid(N * H), CU_THREADS, 0, k_product_topk_backward)(cu_f32(ds), cu_i32(pair), cu_i32(ix),
                                                                            N, H, (int)k, cu_f32(g), cu_i32(gix));
    CU_LAUNCHED("k_product_topk_backward");
}
