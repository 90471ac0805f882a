/*
 * plugins/ffn_cnt/cnt_select.c — the block selection's contracts checked
 * once, then run by this device's code (see cnt_select.h).
 */
#include "cnt_select.h"

static int64_t cols(const fl_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }
static int is_f32(const fl_tensor *t, int64_t n) { return t->dtype == FL_F32 && fl_numel(t) == n; }
static int is_i32(const fl_tensor *t, int64_t n) { return t->dtype == FL_I32 && fl_numel(t) == n; }

#define REQUIRE(cond, step)                                                                                  \
    do {                                                                                                     \
        if (!(cond)) return h->error(err, FL_EINVAL, "cnt: %s: shape check failed: %s", step, #cond);       \
    } while (0)

static fl_status no_device(const fl_host *h, const char *step, fl_error *err) {
    return h->error(err, FL_EUNSUPPORTED, "cnt: %s: this build of the plugin has no code for device kind %d", step,
                    (int)h->device.kind);
}

fl_status cnt_block_select(const fl_host *h, const fl_tensor *l, const fl_tensor *a, int B, float noise,
                           float inv_tau, uint64_t key, int soft, fl_tensor *s, fl_tensor *p, fl_tensor *idx,
                           fl_tensor *hm, fl_error *err) {
    const int64_t F = cols(l), NF = fl_numel(l), nb = B > 0 ? F / B : 0;
    REQUIRE(B > 0 && F % B == 0, "block_select");
    REQUIRE(is_f32(l, NF) && is_f32(a, NF) && is_f32(s, NF) && is_f32(hm, NF) && (!p || is_f32(p, NF)), "block_select");
    REQUIRE(is_i32(idx, F ? NF / F * nb : 0), "block_select");
    if (h->device.kind == FL_DEVICE_CPU) {
        cnt_block_select_cpu(l, a, B, noise, inv_tau, key, soft, s, p, idx, hm);
        return FL_OK;
    }
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA)
        return cnt_block_select_cuda(h, l, a, B, noise, inv_tau, key, soft, s, p, idx, hm, err);
#endif
    return no_device(h, "block_select", err);
}

fl_status cnt_block_select_backward(const fl_host *h, const fl_tensor *a, const fl_tensor *s, const fl_tensor *p,
                                    const fl_tensor *idx, int B, float inv_tau, int soft, fl_tensor *dhm,
                                    fl_tensor *dl, fl_error *err) {
    const int64_t F = cols(a), NF = fl_numel(a), nb = B > 0 ? F / B : 0;
    REQUIRE(B > 0 && F % B == 0, "block_select_backward");
    REQUIRE(is_f32(s, NF) && is_f32(dhm, NF) && is_f32(dl, NF) && (!p || is_f32(p, NF)), "block_select_backward");
    REQUIRE(is_i32(idx, F ? NF / F * nb : 0), "block_select_backward");
    if (h->device.kind == FL_DEVICE_CPU) {
        cnt_block_select_backward_cpu(a, s, p, idx, B, inv_tau, soft, dhm, dl);
        return FL_OK;
    }
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA)
        return cnt_block_select_backward_cuda(h, a, s, p, idx, B, inv_tau, soft, dhm, dl, err);
#endif
    return no_device(h, "block_select_backward", err);
}

fl_status cnt_block_argmax(const fl_host *h, const fl_tensor *l, const fl_tensor *bias, int B, fl_tensor *idx,
                           fl_tensor *pmax, fl_error *err) {
    const int64_t F = cols(l), N = F ? fl_numel(l) / F : 0, nb = B > 0 ? F / B : 0;
    REQUIRE(B > 0 && F % B == 0, "block_argmax");
    REQUIRE(l->dtype == FL_F32 && is_f32(bias, F) && is_i32(idx, N * nb) && (!pmax || is_f32(pmax, N * nb)),
            "block_argmax");
    if (h->device.kind == FL_DEVICE_CPU) {
        cnt_block_argmax_cpu(l, bias, B, idx, pmax);
        return FL_OK;
    }
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA) return cnt_block_argmax_cuda(h, l, bias, B, idx, pmax, err);
#endif
    return no_device(h, "block_argmax", err);
}
