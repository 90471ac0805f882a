/*
 * backends/cpu/cpu_blas.c — the weight-gradient products' second library.
 *
 * A linear layer's weight gradient dW += dYᵀ·X is a product with a
 * transposed first operand and a long inner dimension (the batch's tokens).
 * oneDNN 2.6's AVX2 sgemm runs exactly that shape at 40% of its forward
 * speed (measured on an AMD EPYC Zen 3, `ffnlab bench --gemm`: the LM head's
 * dW 2.5x its forward's time, the FFN's 1.7-2.4x), while OpenBLAS runs it as
 * fast as the forward (0.97-1.08x). So on CPUs where oneDNN takes its AVX2
 * kernels, those products (transA and not transB, 16 MFLOP or more) go to
 * OpenBLAS; everything else stays on oneDNN, which is the faster of the two
 * for the other shapes. On AVX-512 CPUs oneDNN's own kernels are kept.
 *
 * OpenBLAS is loaded at run time, and only its OpenMP build
 * (libopenblas0-openmp on Debian): it then shares ffnlab's OpenMP threads
 * instead of starting a pthread pool whose spinning threads would compete
 * with them, and runs single-threaded inside ffnlab's parallel regions. Not
 * installed: everything runs on oneDNN, as before.
 *
 * FFNLAB_CPU_GEMM_TN = auto (default) | onednn | openblas forces a path;
 * forced openblas takes every such product, whatever its size, so the GEMM
 * test suites cover it on small odd shapes too. Each path gives the same
 * result on every run (neither splits the inner dimension over threads).
 */
#include "cpu.h"

#include <dlfcn.h>
#include <limits.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

#ifndef FFNLAB_OPENBLAS_OPENMP
#define FFNLAB_OPENBLAS_OPENMP "libopenblas.so.0"
#endif

/* Below this many FLOPs the auto path leaves a product on oneDNN. */
#define TN_MIN_FLOPS (16.0 * 1024 * 1024)

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);

static struct {
    int resolved;              /* the choice was made */
    int on;                    /* TN products go to OpenBLAS */
    int forced;                /* ... all of them (FFNLAB_CPU_GEMM_TN=openblas) */
    cblas_sgemm_fn sgemm;
    void (*set_threads)(int);
    int threads;               /* what OpenBLAS was last told */
    char name[96];             /* "OpenBLAS 0.3.21 (Zen)" */
} g_tn;

/* OpenBLAS's OpenMP build, or a reason why not (returns 0). */
static int load_openblas(char *why, size_t n) {
    const char *path = getenv("FFNLAB_OPENBLAS");
    if (!path || !path[0]) path = FFNLAB_OPENBLAS_OPENMP;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return snprintf(why, n, "cannot load %s (install libopenblas0-openmp)", path), 0;
    int (*parallel)(void) = (int (*)(void))dlsym(h, "openblas_get_parallel");
    char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
    char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
    g_tn.sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    g_tn.set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    if (!g_tn.sgemm || !g_tn.set_threads || !parallel || !corename) {
        dlclose(h);
        return snprintf(why, n, "%s is not OpenBLAS", path), 0;
    }
    if (parallel() != 2) { /* 2: the OpenMP build */
        dlclose(h);
        return snprintf(why, n, "%s is not OpenBLAS's OpenMP build (install libopenblas0-openmp)", path), 0;
    }
    const char *cfg = config ? config() : "OpenBLAS";
    char version[32] = "";
    sscanf(cfg, "OpenBLAS %31s", version);
    snprintf(g_tn.name, sizeof g_tn.name, "OpenBLAS %s (%s)", version, corename());
    return 1; /* the library stays loaded for the life of the process */
}

fl_status cpu_tn_choose(fl_error *err) {
    if (g_tn.resolved) return FL_OK;
    const char *want = getenv("FFNLAB_CPU_GEMM_TN");
    char why[256] = "";
    if (!want || !want[0] || !strcmp(want, "auto")) {
        g_tn.on = dnnl_get_effective_cpu_isa() < dnnl_cpu_isa_avx512_core && load_openblas(why, sizeof why);
    } else if (!strcmp(want, "onednn")) {
        g_tn.on = 0;
    } else if (!strcmp(want, "openblas")) {
        if (!load_openblas(why, sizeof why))
            return fl_fail(err, FL_EUNSUPPORTED, "FFNLAB_CPU_GEMM_TN=openblas: %s", why);
        g_tn.on = g_tn.forced = 1;
    } else {
        return fl_fail(err, FL_EINVAL, "FFNLAB_CPU_GEMM_TN=%s: expected auto, onednn or openblas", want);
    }
    g_tn.resolved = 1;
    return FL_OK;
}

/* The choice, made on first use when no backend selection made it (a bad
   FFNLAB_CPU_GEMM_TN then falls back to oneDNN, once, with a warning). */
static void resolve(void) {
    fl_error err = {0};
    if (!g_tn.resolved && cpu_tn_choose(&err)) {
        fl_log_warn("%s; weight gradients stay on oneDNN", err.msg);
        g_tn.resolved = 1, g_tn.on = 0;
    }
}

const char *cpu_tn_describe(void) {
    resolve();
    return g_tn.on ? g_tn.name : NULL;
}

int cpu_tn_openblas(int64_t M, int64_t N, int64_t K) {
    resolve();
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX) return 0; /* CBLAS takes int sizes */
    return g_tn.on && (g_tn.forced || 2.0 * (double)M * (double)N * (double)K >= TN_MIN_FLOPS);
}

void cpu_tn_sgemm(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    if (!omp_in_parallel() && g_tn.threads != omp_get_max_threads()) { /* follow --threads */
        g_tn.threads = omp_get_max_threads();
        g_tn.set_threads(g_tn.threads);
    }
    g_tn.sgemm(CBLAS_ROW_MAJOR, CBLAS_TRANS, CBLAS_NO_TRANS, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
               beta, C, (int)ldc);
}
