/*
 * plugins/ffn_pkm/pkm_topk.cu — the product-key selection on a GPU (see
 * pkm_topk.h; shapes are checked by pkm_topk.c): per (token, head) the top-k
 * of v1[a] + v2[b] over the two halves' sorted top-k lists, the softmax over
 * the winners, and the backward routing of the winners' score gradient to
 * the two lists' positions.
 *
 * One thread per (token, head), running the CPU's code (pkm_topk_rows.h):
 * the winners are ranked by insertion straight into that (token, head)'s
 * row of w and pair (global memory, cached), so no scratch and no cap on k
 * beyond the pair encoding; slot and pair are bit-identical to the CPU's, w
 * differs only by expf's last bits, backward is bit-identical. There are
 * N*H threads of O(k log k)-ish work each: small next to the sub-key GEMM
 * that precedes it. Every launch goes on host->stream.
 */
#include "ffnlab/kernel_cuda.h"

#include "pkm_topk.h"
#include "pkm_topk_rows.h" /* the per-(token, head) work, shared with the CPU */

static int64_t cols(const fl_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

/* t = n*H + h; v, ix [2H,N,k]; w, slot, pair [N,H*k] */
static __global__ void k_product_topk(const float *v, const int32_t *ix, int64_t N, int H, int k, int64_t n_keys,
                                      float *w, int32_t *slot, int32_t *pair) {
    FL_CUDA_LOOP(t, N * H) {
        const int64_t n = t / H;
        const int h = (int)(t % H);
        const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = t * k;
        pk_token_head_topk(v, ix, o1, o2, o, k, n_keys, w, slot, pair);
    }
}

fl_status pkm_product_topk_cuda(const fl_host *h, const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys,
                                fl_tensor *w, fl_tensor *slot, fl_tensor *pair, fl_error *err) {
    const int64_t hk = cols(w), N = fl_numel(w) / hk, k = hk / H;
    if (N == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(N * H), FL_CUDA_THREADS, 0, k_product_topk)(
        (const float *)v->data, (const int32_t *)ix->data, N, H, (int)k, n_keys, (float *)w->data,
        (int32_t *)slot->data, (int32_t *)pair->data);
    return fl_cuda_launched(h, "pkm: product_topk", err);
}

/* t = n*H + h: clears its two k-blocks of g/gix, then adds the winners'
   gradients in rank order. */
static __global__ void k_product_topk_backward(const float *ds, const int32_t *pair, const int32_t *ix, int64_t N,
                                               int H, int k, float *g, int32_t *gix) {
    FL_CUDA_LOOP(t, N * H) {
        const int64_t n = t / H;
        const int h = (int)(t % H);
        const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k, o = t * k;
        pk_token_head_backward(ds, pair, ix, o1, o2, o, k, g, gix);
    }
}

fl_status pkm_product_topk_backward_cuda(const fl_host *h, const fl_tensor *ds, const fl_tensor *pair,
                                         const fl_tensor *ix, int H, fl_tensor *g, fl_tensor *gix, fl_error *err) {
    const int64_t hk = cols(ds), N = fl_numel(ds) / hk, k = hk / H;
    if (N == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(N * H), FL_CUDA_THREADS, 0, k_product_topk_backward)(
        (const float *)ds->data, (const int32_t *)pair->data, (const int32_t *)ix->data, N, H, (int)k, (float *)g->data,
        (int32_t *)gix->data);
    return fl_cuda_launched(h, "pkm: product_topk_backward", err);
}
