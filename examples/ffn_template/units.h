/*
 * examples/ffn_template/units.h — the template's own kernel, one per device:
 * how often each hidden unit was kept. The host's ops cover the layer's
 * math; a step they do not have is written here once for the CPU (units.c)
 * and once for CUDA (units.cu, compiled only when the plugin is built with
 * CUDA: FFNLAB_PLUGIN_CUDA), and template.c calls the one function below
 * whatever the device.
 */
#ifndef FFN_TEMPLATE_UNITS_H
#define FFN_TEMPLATE_UNITS_H

#include "ffnlab/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* u[N,k] i32 unit ids in [0, d_ff) → count[d_ff] i32: how many (token, slot)
   chose each unit. Integers, so every device gives the same counts. */
fl_status units_count(const fl_host *h, const fl_tensor *u, int64_t d_ff, fl_tensor *count, fl_error *err);

/* The CUDA version (units.cu); units_count calls it on a CUDA host. */
fl_status units_count_cuda(const fl_host *h, const fl_tensor *u, int64_t d_ff, fl_tensor *count, fl_error *err);

#ifdef __cplusplus
}
#endif
#endif
