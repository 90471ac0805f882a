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
 * The GEMM precision a command asked for (--precision, kept here by
 * fl_backend_request_precision) is applied to whatever backend select
 * returns, so the commands need not know which backend that is: the
 * backends are process-wide, and so is their precision.
 *
 * Without FFNLAB_HAVE_CUDA this file also provides fl_backend_cuda() as a stub
 * that explains the build has no CUDA, so callers (tests, bench) need no #ifdef.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#ifdef FFNLAB_HAVE_CUDA
#include "cuda/cuda_backend.h" /* fl_cuda_set_math, fl_cuda_math */
#endif

static char g_precision[8] = "auto"; /* fl_backend_request_precision */

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

static fl_status pick(const char *device, const fl_backend **out, fl_error *err) {
    if (!device || !device[0] || !strcmp(device, "auto")) {
        const char *env = getenv("FFNLAB_DEVICE");
        if (env && env[0] && strcmp(env, "auto")) {
            fl_status st = pick(env, out, err);
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

/* ------------------------------------------------------------ precision */

static int precision_known(const char *mode) {
    return !strcmp(mode, "auto") || !strcmp(mode, "fp32") || !strcmp(mode, "bf16") || !strcmp(mode, "tf32");
}

fl_status fl_backend_request_precision(const char *mode, fl_error *err) {
    if (!mode || !precision_known(mode))
        return fl_fail(err, FL_EINVAL, "--precision %s: expected auto, fp32, bf16 or tf32 (tf32 only on a GPU)",
                       mode ? mode : "(none)");
    snprintf(g_precision, sizeof g_precision, "%s", mode);
    return FL_OK;
}

fl_status fl_backend_set_precision(const fl_backend *be, const char *mode, fl_error *err) {
#ifdef FFNLAB_HAVE_CUDA
    if (be->device.kind == FL_DEVICE_CUDA) return fl_cuda_set_math(mode, err);
#endif
    if (be->device.kind != FL_DEVICE_CPU)
        return fl_fail(err, FL_EUNSUPPORTED, "backend %s has no GEMM precision setting", be->name);
    if (!strcmp(mode, "tf32"))
        return fl_fail(err, FL_EINVAL, "the CPU computes GEMMs in fp32 or bf16 (tf32 is a GPU mode)");
    return fl_cpu_set_precision(mode, err);
}

/* The requested precision, else FFNLAB_PRECISION, else the backend's
   default: the CPU's is set (fp32) so an earlier request does not linger;
   the CUDA backend chose its own (FFNLAB_CUDA_MATH, else tf32) when it
   started. */
static fl_status apply_precision(const fl_backend *be, fl_error *err) {
    const char *mode = g_precision, *from = "--precision";
    if (!strcmp(mode, "auto")) {
        const char *env = getenv("FFNLAB_PRECISION");
        if (env && env[0] && strcmp(env, "auto")) mode = env, from = "FFNLAB_PRECISION";
    }
    if (!strcmp(mode, "auto")) return be->device.kind == FL_DEVICE_CPU ? fl_cpu_set_precision("fp32", err) : FL_OK;
    fl_status st = precision_known(mode) ? fl_backend_set_precision(be, mode, err)
                                         : fl_fail(err, FL_EINVAL, "expected auto, fp32, bf16 or tf32");
    if (st) fl_error_prefix(err, "%s=%s on the %s backend", from, mode, be->name);
    return st;
}

const char *fl_backend_precision(const fl_backend *be) {
#ifdef FFNLAB_HAVE_CUDA
    if (be->device.kind == FL_DEVICE_CUDA) return fl_cuda_math();
#else
    (void)be; /* only the CPU exists */
#endif
    return fl_cpu_precision();
}

fl_status fl_backend_select(const char *device, const fl_backend **out, fl_error *err) {
    fl_status st = pick(device, out, err);
    if (!st) st = apply_precision(*out, err);
    if (st) *out = NULL;
    return st;
}
