/*
 * tests/plugins/ffn_fails.c — a well-formed FFN plugin whose calls fail on
 * request, as a buggy plugin's do.
 *
 * y = 0 and dx = 0 until the call named by `call` (create, forward or
 * backward) fails with FL_EINVAL and the message "deliberate failure", from
 * training step `at_step` on (create fails at once). The training tests
 * check that the host's message then names the plugin, the layer and the
 * call.
 */
#include "ffnlab/ffn.h"

typedef struct fails_layer {
    const fl_host *host;
    int call;                  /* index into CALLS */
    int64_t at_step;
} fails_layer;

enum { CALL_CREATE, CALL_FORWARD, CALL_BACKWARD };

static const fl_option OPTIONS[] = {
    {"call", FL_OPT_ENUM, "forward", 0, 0, "create|forward|backward", "the call that fails"},
    {"at_step", FL_OPT_INT, "2", 0, 1e9, NULL, "training step from which forward or backward fails"},
};

static fl_status fails_create(const fl_host *host, const fl_ffn_config *cfg, void **layer, fl_error *err) {
    static fails_layer layers[64];
    if (cfg->layer_index >= 64) return host->error(err, FL_EINVAL, "at most 64 layers");
    if (cfg->values[0].i == CALL_CREATE) return host->error(err, FL_EINVAL, "deliberate failure");
    fails_layer *l = &layers[cfg->layer_index];
    *l = (fails_layer){.host = host, .call = (int)cfg->values[0].i, .at_step = cfg->values[1].i};
    *layer = l;
    return FL_OK;
}

static fl_status fail_now(const fails_layer *l, const fl_ffn_ctx *ctx, int call, fl_error *err) {
    if (l->call == call && ctx->train && ctx->step >= l->at_step) return l->host->error(err, FL_EINVAL, "deliberate failure");
    return FL_OK;
}

static fl_status fails_forward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x, fl_tensor *y, fl_error *err) {
    (void)x;
    fails_layer *l = layer;
    l->host->ops->fill(y, 0.0f);
    return fail_now(l, ctx, CALL_FORWARD, err);
}

static fl_status fails_backward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy, fl_tensor *dx, fl_error *err) {
    (void)dy;
    fails_layer *l = layer;
    l->host->ops->fill(dx, 0.0f);
    return fail_now(l, ctx, CALL_BACKWARD, err);
}

static void fails_destroy(void *layer) { (void)layer; }

static const fl_ffn_plugin PLUGIN = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_FFN_ABI_MAJOR, .abi_minor = FL_FFN_ABI_MINOR,
               .struct_size = sizeof(fl_ffn_plugin), .kind = FL_PLUGIN_FFN, .name = "fails", .version = "1",
               .description = "test plugin: create, forward or backward fails on request",
               .options = OPTIONS, .n_options = 2},
    .devices = FL_DEVICES_ALL, .create = fails_create, .forward = fails_forward, .backward = fails_backward,
    .destroy = fails_destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &PLUGIN.header; }
