/*
 * tests/plugins/broken_plugin.h — one FFN plugin with a single defect, chosen
 * by the file that includes it.
 *
 * Each tests/plugins/ffn_<defect>.c defines the BROKEN_* settings it changes
 * and includes this header; everything else is a valid (do-nothing) plugin,
 * so the loader test sees exactly one thing wrong per file. Settings:
 *   BROKEN_NAME         descriptor name (required)
 *   BROKEN_MAGIC        default FL_PLUGIN_MAGIC
 *   BROKEN_ABI_MAJOR    default FL_FFN_ABI_MAJOR
 *   BROKEN_ABI_MINOR    default FL_FFN_ABI_MINOR
 *   BROKEN_STRUCT_SIZE  default sizeof(fl_ffn_plugin)
 *   BROKEN_BACKWARD     default the stub; NULL to leave it out
 *   BROKEN_OPTIONS      an fl_option array initialiser, default none
 *   BROKEN_SIZE_OPTIONS a size_options initialiser ({"a", NULL}), default none
 *   BROKEN_DEVICES      default FL_DEVICES_ALL
 *   BROKEN_ENTRY        exported entry point, default ffnlab_plugin_v1
 */
#include "ffnlab/ffn.h"

#ifndef BROKEN_MAGIC
#define BROKEN_MAGIC FL_PLUGIN_MAGIC
#endif
#ifndef BROKEN_ABI_MAJOR
#define BROKEN_ABI_MAJOR FL_FFN_ABI_MAJOR
#endif
#ifndef BROKEN_ABI_MINOR
#define BROKEN_ABI_MINOR FL_FFN_ABI_MINOR
#endif
#ifndef BROKEN_STRUCT_SIZE
#define BROKEN_STRUCT_SIZE sizeof(fl_ffn_plugin)
#endif
#ifndef BROKEN_BACKWARD
#define BROKEN_BACKWARD backward
#endif
#ifndef BROKEN_DEVICES
#define BROKEN_DEVICES FL_DEVICES_ALL
#endif
#ifndef BROKEN_ENTRY
#define BROKEN_ENTRY ffnlab_plugin_v1
#endif

static fl_status create(const fl_host *h, const fl_ffn_config *c, void **l, fl_error *e) {
    (void)h, (void)c, (void)e;
    *l = NULL;
    return FL_OK;
}

static fl_status forward(void *l, const fl_ffn_ctx *c, const fl_tensor *x, fl_tensor *y, fl_error *e) {
    (void)l, (void)c, (void)x, (void)y, (void)e;
    return FL_OK;
}

__attribute__((unused)) static fl_status backward(void *l, const fl_ffn_ctx *c, const fl_tensor *dy, fl_tensor *dx,
                          fl_error *e) {
    (void)l, (void)c, (void)dy, (void)dx, (void)e;
    return FL_OK;
}

static void destroy(void *l) { (void)l; }

#ifdef BROKEN_OPTIONS
static const fl_option OPTIONS[] = BROKEN_OPTIONS;
#define BROKEN_OPTION_LIST OPTIONS
#define BROKEN_N_OPTIONS ((int32_t)(sizeof OPTIONS / sizeof OPTIONS[0]))
#else
#define BROKEN_OPTION_LIST NULL
#define BROKEN_N_OPTIONS 0
#endif

#ifdef BROKEN_SIZE_OPTIONS
static const char *const SIZE_OPTIONS[] = BROKEN_SIZE_OPTIONS;
#define BROKEN_SIZE_LIST SIZE_OPTIONS
#else
#define BROKEN_SIZE_LIST NULL
#endif

static const fl_ffn_plugin D = {
    .header = {
        .magic = BROKEN_MAGIC,
        .abi_major = BROKEN_ABI_MAJOR,
        .abi_minor = BROKEN_ABI_MINOR,
        .struct_size = BROKEN_STRUCT_SIZE,
        .kind = FL_PLUGIN_FFN,
        .name = BROKEN_NAME,
        .version = "0.0.1",
        .description = "a deliberately broken plugin for test_loader",
        .options = BROKEN_OPTION_LIST,
        .n_options = BROKEN_N_OPTIONS,
    },
    .devices = BROKEN_DEVICES,
    .create = create,
    .forward = forward,
    .backward = BROKEN_BACKWARD,
    .destroy = destroy,
    .size_options = BROKEN_SIZE_LIST,
};

FL_EXPORT const fl_plugin_header *BROKEN_ENTRY(void) { return &D.header; }
