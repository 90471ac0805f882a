/*
 * tests/mpi/ffn_rankfail.c — a well-formed FFN plugin that fails on one rank.
 *
 * y = 0 everywhere; in training step `at_step` the forward of rank `rank`
 * (host->comm) returns an error, or with kill=true ends its process with
 * SIGKILL (as the kernel's OOM killer or a crash would). The multi-process
 * tests use it to check that an error on one rank ends the whole job with
 * that rank's message instead of leaving the others waiting in a
 * collective, and that a rank killed mid-run ends the job too.
 */
#include <signal.h> /* raise */

#include "ffnlab/ffn.h"

typedef struct fail_layer {
    const fl_host *host;
    int64_t rank, at_step;
    int kill;
} fail_layer;

static const fl_option OPTIONS[] = {
    {"rank", FL_OPT_INT, "1", 0, 1e6, NULL, "the rank whose forward fails"},
    {"at_step", FL_OPT_INT, "1", 0, 1e9, NULL, "the training step at which it fails"},
    {"kill", FL_OPT_BOOL, "false", 0, 0, NULL, "end the process with SIGKILL instead of returning an error"},
};

static fl_status rf_create(const fl_host *host, const fl_ffn_config *cfg, void **layer, fl_error *err) {
    static fail_layer layers[64];
    if (cfg->layer_index >= 64) return host->error(err, FL_EINVAL, "ffn_rankfail: at most 64 layers");
    fail_layer *l = &layers[cfg->layer_index];
    l->host = host;
    l->rank = cfg->values[0].i;
    l->at_step = cfg->values[1].i;
    l->kill = (int)cfg->values[2].i;
    *layer = l;
    return FL_OK;
}

static fl_status rf_forward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *x, fl_tensor *y, fl_error *err) {
    (void)x;
    fail_layer *l = layer;
    if (ctx->train && ctx->step == l->at_step && l->host->comm->rank == l->rank && l->kill) raise(SIGKILL);
    if (ctx->train && ctx->step == l->at_step && l->host->comm->rank == l->rank)
        return l->host->error(err, FL_EINVAL, "rankfail: deliberate failure on rank %d at step %lld",
                              (int)l->rank, (long long)ctx->step);
    l->host->ops->fill(y, 0.0f);
    return FL_OK;
}

static fl_status rf_backward(void *layer, const fl_ffn_ctx *ctx, const fl_tensor *dy, fl_tensor *dx, fl_error *err) {
    (void)ctx, (void)dy, (void)err;
    ((fail_layer *)layer)->host->ops->fill(dx, 0.0f);
    return FL_OK;
}

static void rf_destroy(void *layer) { (void)layer; }

static const fl_ffn_plugin PLUGIN = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_FFN_ABI_MAJOR, .abi_minor = FL_FFN_ABI_MINOR,
               .struct_size = sizeof(fl_ffn_plugin), .kind = FL_PLUGIN_FFN, .name = "rankfail", .version = "1",
               .description = "test plugin: zero output; fails on one rank at one step",
               .options = OPTIONS, .n_options = 3},
    .devices = FL_DEVICES_ALL, .create = rf_create, .forward = rf_forward, .backward = rf_backward, .destroy = rf_destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &PLUGIN.header; }
