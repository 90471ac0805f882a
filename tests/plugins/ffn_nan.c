/*
 * tests/plugins/ffn_nan.c — a well-formed FFN plugin that outputs NaN.
 *
 * y = 0 until training step `at_step`, then NaN everywhere: lets the training
 * tests check that a non-finite loss stops the run with a message naming the
 * step and leaves no checkpoint of the broken state.
 */
#include <math.h>

#include "ffnlab/ffn.h"

typedef struct nan_layer {
    const fl_host *host;
    int64_t at_step;
} nan_layer;

static const fl_option OPTIONS[] = {
    {"at_step", FL_OPT_INT, "3", 0, 1e9, NULL, "training step from which the output is NaN"},
};

static fl_status nan_create(const fl_host *host, const fl_ffn_config *cfg, void **layer, fl_error *err) {
    static nan_layer layers[64];
    if (cfg->layer_index >= 64) return host->error(err, FL_EINVAL, "ffn_nan: at most 64 layers");
    nan_layer *l = &layers[cfg->layer_index];
    l->host = host;
    l->at_step = cfg->values[0].i;
    *layer = l;
    return FL_OK;
}

static fl_status nan_forward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x, fl_tensor *y, fl_error *err) {
    (void)x, (void)err;
    nan_layer *l = layer;
    l->host->ops->fill(y, ctx->train && ctx->step >= l->at_step ? NAN : 0.0f);
    return FL_OK;
}

static fl_status nan_backward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy, fl_tensor *dx, fl_error *err) {
    (void)ctx, (void)dy, (void)err;
    ((nan_layer *)layer)->host->ops->fill(dx, 0.0f);
    return FL_OK;
}

static void nan_destroy(void *layer) { (void)layer; }

static const fl_ffn_plugin PLUGIN = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_FFN_ABI_MAJOR, .abi_minor = FL_FFN_ABI_MINOR,
               .struct_size = sizeof(fl_ffn_plugin), .kind = FL_PLUGIN_FFN, .name = "nan", .version = "1",
               .description = "test plugin: zero output, then NaN from a given step",
               .options = OPTIONS, .n_options = 1},
    .devices = FL_DEVICES_ALL, .create = nan_create, .forward = nan_forward, .backward = nan_backward, .destroy = nan_destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &PLUGIN.header; }
