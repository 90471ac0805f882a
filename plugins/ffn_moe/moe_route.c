/*
 * plugins/ffn_moe/moe_route.c — the routing steps' contracts checked once,
 * then run by this device's code (see moe_route.h).
 */
#include "moe_route.h"

#include <stdint.h>

/* The last dimension (a matrix's columns). */
static int64_t cols(const fl_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

#define REQUIRE(cond, step)                                                                                  \
    do {                                                                                                     \
        if (!(cond)) return h->error(err, FL_EINVAL, "moe: %s: shape check failed: %s", step, #cond);       \
    } while (0)

static fl_status no_device(const fl_host *h, const char *step, fl_error *err) {
    return h->error(err, FL_EUNSUPPORTED, "moe: %s: this build of the plugin has no code for device kind %d", step,
                    (int)h->device.kind);
}

fl_status moe_route(const fl_host *h, const fl_tensor *topv, const fl_tensor *topi, int E, int renorm, int64_t cap,
                    fl_tensor *gates, fl_tensor *keys, fl_tensor *count, fl_tensor *scratch, fl_error *err) {
    const int64_t NK = fl_numel(topv);
    REQUIRE(topv->dtype == FL_F32 && topi->dtype == FL_I32 && fl_numel(topi) == NK, "route");
    REQUIRE(gates->dtype == FL_F32 && fl_numel(gates) == NK, "route");
    REQUIRE(keys->dtype == FL_I32 && fl_numel(keys) == NK, "route");
    REQUIRE(E >= 1 && count->dtype == FL_I32 && fl_numel(count) == E && NK < INT32_MAX, "route");
    if (h->device.kind == FL_DEVICE_CPU) return moe_route_cpu(h, topv, topi, E, renorm, cap, gates, keys, count, err);
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA)
        return moe_route_cuda(h, topv, topi, E, renorm, cap, gates, keys, count, scratch, err);
#endif
    (void)scratch;
    return no_device(h, "route", err);
}

fl_status moe_index(const fl_host *h, const fl_tensor *perm, int k, const fl_tensor *gates, fl_tensor *tok,
                    fl_tensor *gs, fl_tensor *pos, fl_error *err) {
    const int64_t M = fl_numel(perm), NK = fl_numel(gates);
    REQUIRE(perm->dtype == FL_I32 && gates->dtype == FL_F32 && k >= 1 && cols(gates) == k, "index");
    REQUIRE(tok->dtype == FL_I32 && fl_numel(tok) == M && gs->dtype == FL_F32 && fl_numel(gs) == M, "index");
    REQUIRE(pos->dtype == FL_I32 && fl_numel(pos) == NK && M <= NK && NK < INT32_MAX, "index");
    if (h->device.kind == FL_DEVICE_CPU) return moe_index_cpu(h, perm, k, gates, tok, gs, pos, err);
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA) return moe_index_cuda(h, perm, k, gates, tok, gs, pos, err);
#endif
    return no_device(h, "index", err);
}

fl_status moe_router_backward(const fl_host *h, const fl_tensor *probs, const fl_tensor *lse, const fl_tensor *topv,
                              const fl_tensor *topi, const fl_tensor *gates, const fl_tensor *dgate,
                              const fl_tensor *dbal, int renorm, float zc, fl_tensor *dlogits, fl_error *err) {
    const int64_t E = cols(probs), N = E ? fl_numel(probs) / E : 0, NK = fl_numel(topv);
    REQUIRE(probs->dtype == FL_F32 && dlogits->dtype == FL_F32 && fl_numel(dlogits) == N * E, "router backward");
    REQUIRE(lse->dtype == FL_F32 && fl_numel(lse) == N && dbal->dtype == FL_F32 && fl_numel(dbal) == E,
            "router backward");
    REQUIRE(topv->dtype == FL_F32 && topi->dtype == FL_I32 && fl_numel(topi) == NK && NK % (N ? N : 1) == 0,
            "router backward");
    REQUIRE(gates->dtype == FL_F32 && fl_numel(gates) == NK && dgate->dtype == FL_F32 && fl_numel(dgate) == NK,
            "router backward");
    if (h->device.kind == FL_DEVICE_CPU)
        return moe_router_backward_cpu(h, probs, lse, topv, topi, gates, dgate, dbal, renorm, zc, dlogits, err);
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA)
        return moe_router_backward_cuda(h, probs, lse, topv, topi, gates, dgate, dbal, renorm, zc, dlogits, err);
#endif
    return no_device(h, "router backward", err);
}
