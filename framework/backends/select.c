/*
 * backends/select.c — choosing the backend for --device.
 *
 * Only the CPU backend exists in this build; the CUDA backend registers
 * here when it is built (FFNLAB_HAVE_CUDA). "auto" never fails: without a
 * usable GPU it is the CPU.
 */
#include <string.h>

#include "backend.h"
#include "error.h"

fl_status fl_backend_select(const char *device, const fl_backend **out, fl_error *err) {
    if (!device || !device[0] || !strcmp(device, "auto") || !strcmp(device, "cpu")) {
        *out = fl_backend_cpu();
        return FL_OK;
    }
    if (!strncmp(device, "cuda", 4))
        return fl_fail(err, FL_EUNSUPPORTED, "--device %s: this ffnlab has no CUDA backend yet (use --device cpu)", device);
    return fl_fail(err, FL_EINVAL, "--device %s: expected auto, cpu, cuda or cuda:N", device);
}
