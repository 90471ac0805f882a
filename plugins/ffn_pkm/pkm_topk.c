/*
 * plugins/ffn_pkm/pkm_topk.c — the product-key selection's contracts checked
 * once, then run by this device's code (see pkm_topk.h).
 */
#include "pkm_topk.h"

#include "pkm_topk_rows.h" /* PK_K_MAX */

static int64_t cols(const fl_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

#define REQUIRE(cond, step)                                                                                  \
    do {                                                                                                     \
        if (!(cond)) return h->error(err, FL_EINVAL, "pkm: %s: shape check failed: %s", step, #cond);       \
    } while (0)

static fl_status no_device(const fl_host *h, const char *step, fl_error *err) {
    return h->error(err, FL_EUNSUPPORTED, "pkm: %s: this build of the plugin has no code for device kind %d", step,
                    (int)h->device.kind);
}

fl_status pkm_product_topk(const fl_host *h, const fl_tensor *v, const fl_tensor *ix, int H, int64_t n_keys,
                           fl_tensor *w, fl_tensor *slot, fl_tensor *pair, fl_error *err) {
    const int64_t hk = cols(w), N = hk ? fl_numel(w) / hk : 0, k = H > 0 ? hk / H : 0;
    REQUIRE(H >= 1 && k >= 1 && k <= PK_K_MAX && hk == H * k, "product_topk");
    REQUIRE(v->dtype == FL_F32 && ix->dtype == FL_I32 && w->dtype == FL_F32, "product_topk");
    REQUIRE(slot->dtype == FL_I32 && pair->dtype == FL_I32, "product_topk");
    REQUIRE(fl_numel(v) == 2 * N * hk && fl_numel(ix) == 2 * N * hk, "product_topk");
    REQUIRE(fl_numel(slot) == N * hk && fl_numel(pair) == N * hk, "product_topk");
    if (h->device.kind == FL_DEVICE_CPU) {
        pkm_product_topk_cpu(v, ix, H, n_keys, w, slot, pair);
        return FL_OK;
    }
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA) return pkm_product_topk_cuda(h, v, ix, H, n_keys, w, slot, pair, err);
#endif
    return no_device(h, "product_topk", err);
}

fl_status pkm_product_topk_backward(const fl_host *h, const fl_tensor *ds, const fl_tensor *pair, const fl_tensor *ix,
                                    int H, fl_tensor *g, fl_tensor *gix, fl_error *err) {
    const int64_t hk = cols(ds), N = hk ? fl_numel(ds) / hk : 0, k = H > 0 ? hk / H : 0;
    REQUIRE(H >= 1 && k >= 1 && k <= PK_K_MAX && hk == H * k, "product_topk_backward");
    REQUIRE(ds->dtype == FL_F32 && pair->dtype == FL_I32 && ix->dtype == FL_I32, "product_topk_backward");
    REQUIRE(g->dtype == FL_F32 && gix->dtype == FL_I32 && fl_numel(pair) == N * hk, "product_topk_backward");
    REQUIRE(fl_numel(ix) == 2 * N * hk && fl_numel(g) == 2 * N * hk && fl_numel(gix) == 2 * N * hk,
            "product_topk_backward");
    if (h->device.kind == FL_DEVICE_CPU) {
        pkm_product_topk_backward_cpu(ds, pair, ix, H, g, gix);
        return FL_OK;
    }
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA) return pkm_product_topk_backward_cuda(h, ds, pair, ix, H, g, gix, err);
#endif
    return no_device(h, "product_topk_backward", err);
}
