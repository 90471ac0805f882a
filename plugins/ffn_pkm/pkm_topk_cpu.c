/*
 * plugins/ffn_pkm/pkm_topk_cpu.c — the product-key selection on the CPU (see
 * pkm_topk.h; shapes are checked by pkm_topk.c): the top-k of the sums of
 * two sorted top-k lists per (token, head), with the softmax over the
 * winners, and the routing of the winners' score gradient back to the two
 * lists. Tokens are independent: one OpenMP loop over tokens, no shared
 * writes, so the result does not depend on the thread count.
 */
#include "pkm_topk.h"

#include "pkm_topk_rows.h" /* the per-(token, head) work, shared with CUDA */

/* Below this many (token, head) values a step stays on one thread. */
#define PAR_MIN 2048

static int64_t cols(const fl_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

void pkm_product_topk_cpu(const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys, fl_tensor *w, fl_tensor *slot,
                          fl_tensor *pair) {
    const int64_t hk = cols(w), N = fl_numel(w) / hk, k = hk / H;
    const float *pv = v->data;
    const int32_t *pi = ix->data;
    float *pw = w->data;
    int32_t *ps = slot->data, *pp = pair->data;
#pragma omp parallel for schedule(static) if (N * hk > PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = n * hk + h * k;
            pk_token_head_topk(pv, pi, o1, o2, o, (int)k, n_keys, pw, ps, pp);
        }
}

void pkm_product_topk_backward_cpu(const fl_tensor *ds, const fl_tensor *pair, const fl_tensor *ix, int H, fl_tensor *g,
                                   fl_tensor *gix) {
    const int64_t hk = cols(ds), N = fl_numel(ds) / hk, k = hk / H;
    const float *pd = ds->data;
    const int32_t *pp = pair->data, *pi = ix->data;
    float *pg = g->data;
    int32_t *pgi = gix->data;
#pragma omp parallel for schedule(static) if (N * hk > PAR_MIN * 4)
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = n * hk + h * k;
            pk_token_head_backward(pd, pp, pi, o1, o2, o, (int)k, pg, pgi);
        }
}
