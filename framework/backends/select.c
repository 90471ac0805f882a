/*
 * backends/select.c — choosing the backend for --device.
 *
 * "cpu" is always the CPU backend. "cuda" and "cuda:N" are that GPU or an
 * error saying why not (no CUDA in this build, no driver, no such GPU).
 * "auto" never fails: the first GPU when this build has the CUDA backend and
 * the machine has a GPU, else the CPU, and then one line on stderr says so
 * (once per process, and only in builds that could have used a GPU). The
 * environment variable FFNLAB_DEVICE, when set, is what "auto" means (e.g.
 * FFNLAB_DEVICE=cpu runs the CPU test suite on a GPU machine).
 *
 * Without FFNLAB_HAVE_CUDA this file also provides fl_backend_cuda() as a stub
 * that explains the build has no CUDA, so callers (tests, bench) need no #ifdef.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

#ifndef FFNLAB_HAVE_CUDA
fl_status fl_backend_cuda(int device_index, const fl_backend **out, fl_error *err) {
    (void)device_index;
    *out = NULL;
    return fl_fail(err, FL_EUNSUPPORTED,
                   "this ffnlab was built without the CUDA backend (configure with -DFFNLAB_CUDA=ON "
                   "where nvcc is installed), so it cannot use a GPU; use --device cpu");
}
#endif

/* "cuda" → 0, "cuda:N" → N; -1 when the text is neither. */
static int cuda_index(const char *device) {
    if (!strcmp(device, "cuda")) return 0;
    if (strncmp(device, "cuda:", 5) || !device[5]) return -1;
    char *end;
    long n = strtol(device + 5, &end, 10);
    return *end || n < 0 || n > 9999 || device[5] == '-' || device[5] == '+' ? -1 : (int)n;
}

fl_status fl_backend_select(const char *device, const fl_backend **out, fl_error *err) {
    if (!device || !device[0] || !strcmp(device, "auto")) {
        const char *env = getenv("FFNLAB_DEVICE");
        if (env && env[0] && strcmp(env, "auto")) {
            fl_status st = fl_backend_select(env, out, err);
            if (st) fl_error_prefix(err, "FFNLAB_DEVICE=%s (what --device auto means here)", env);
            return st;
        }
#ifdef FFNLAB_HAVE_CUDA
        fl_error why = {0};
        if (fl_backend_cuda(0, out, &why) == FL_OK) return FL_OK;
        static int told;
        if (!told) {
            told = 1;
            fprintf(stderr, "ffnlab: no GPU found; using the CPU (%s)\n", why.msg);
        }
#endif
        *out = fl_backend_cpu();
        return FL_OK;
    }
    if (!strcmp(device, "cpu")) {
        *out = fl_backend_cpu();
        return FL_OK;
    }
    int idx = cuda_index(device);
    if (idx >= 0) {
        fl_status st = fl_backend_cuda(idx, out, err);
        if (st) fl_error_prefix(err, "--device %s", device);
        return st;
    }
    return fl_fail(err, FL_EINVAL, "--device %s: expected auto, cpu, cuda or cuda:N", device);
}
