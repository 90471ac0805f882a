/*
 * tests/plugins/ffn_badmagic.c — a deliberately broken FFN plugin for test_loader.
 *
 * Its descriptor starts with the wrong magic number.
 */
#include "ffnlab/ffn.h"

static fl_status create(const fl_host *h, const fl_ffn_config *c, void **l, fl_error *e) {
    (void)h; (void)c; (void)e;
    *l = NULL;
    return FL_OK;
}
static fl_status forward(void *l, const fl_ffn_ctx *c, const fl_tensor *x, fl_tensor *y,
                         fl_error *e) {
    (void)l; (void)c; (void)x; (void)y; (void)e;
    return FL_OK;
}
static fl_status backward(void *l, const fl_ffn_ctx *c, const fl_tensor *dy, fl_tensor *dx,
                          fl_error *e) {
    (void)l; (void)c; (void)dy; (void)dx; (void)e;
    return FL_OK;
}
static void destroy(void *l) { (void)l; }

static const fl_ffn_plugin D = {
    .header = {
        .magic = 0x12345678u,
        .abi_major = FL_FFN_ABI_MAJOR,
        .abi_minor = FL_FFN_ABI_MINOR,
        .struct_size = sizeof(fl_ffn_plugin),
        .kind = FL_PLUGIN_FFN,
        .name = "badmagic",
        .version = "0.0.1",
        .description = "Its descriptor starts with the wrong magic number",
    },
    .create = create,
    .forward = forward,
    .backward = backward,
    .destroy = destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &D.header; }
