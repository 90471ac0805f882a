/*
 * backends/cpu/cpu_blas.c — the shapes oneDNN's sgemm runs slowly, and what
 * runs them instead: other libraries on CPUs where oneDNN runs its AVX2
 * kernels; where it runs its AVX-512 ones, the transposed product, or the
 * product in panels, one per thread.
 *
 * oneDNN 2.6 does every product of the CPU backend, except two kinds on CPUs
 * where it runs its AVX2 kernels (no AVX-512), measured on an AMD EPYC Zen 3
 * with 2 threads:
 *
 * - Weight gradients dW += dYᵀ·X: a transposed first operand and a long
 *   inner dimension (the batch's tokens). oneDNN runs them at about 40% of
 *   its forward speed (`ffnlab bench --gemm`: the LM head's dW 2.5x its
 *   forward's time, the FFN's 1.7-2.4x); OpenBLAS as fast as the forward
 *   (0.97-1.08x). So products Aᵀ·B of 16 MFLOP or more go to OpenBLAS.
 * - Narrow products: an output 224 to 256 columns wide, 2048 rows or more,
 *   an inner dimension of 512 or more (at d_model 256: the input gradient
 *   dx = dy·W of every layer reading the residual stream, and the FFN's
 *   projection back to it). oneDNN runs those at 80-105 GFLOP/s where BLIS
 *   runs 95-136, 1.03-1.33x faster (inner 512: 1.02-1.11x; one thread:
 *   1.12-1.17x); on wider or narrower outputs, fewer rows or a short inner
 *   dimension the two were level or oneDNN ahead. So those products (A not
 *   transposed, run on all threads: outside a parallel region) go to BLIS.
 *   (oneDNN's matmul primitive is no way round: on AVX2, oneDNN 2.6 runs
 *   fp32 matmul as "gemm:jit", this same sgemm.)
 *
 * The libraries are loaded at run time, and only their OpenMP builds
 * (libopenblas0-openmp, libblis4-openmp on Debian; scripts/deps.sh installs
 * both): they then share ffnlab's OpenMP threads instead of starting pools
 * whose spinning threads would compete with them, and run single-threaded
 * inside ffnlab's parallel regions. One not installed: its products stay on
 * oneDNN. In a build with LeakSanitizer the automatic path takes BLIS only
 * when the process was started with it preloaded (see lsan_allows).
 *
 * On AVX-512 CPUs oneDNN's own kernels do everything, but its sgemm is slow
 * on tall weight gradients too: C[M,N] = Aᵀ·B with M large and N small (the
 * LM head's and the FFN's first layer's dW, [vocab or d_ff, d_model]).
 * Measured on an Intel Xeon (Ice Lake, AVX-512, 2 threads, best of 12): the
 * same product as its transpose, T[N,M] = Bᵀ·A, whose transposed operand is
 * the small one, and then C = beta C + Tᵀ, was 1.06-1.72x faster wherever
 * M >= 1024, M >= 2N, N <= 512 and K >= 1024 (one thread: 1.24-1.76x), and
 * level or slower outside that (N = 1024: 0.80-0.98x; K = 512 or M = 512:
 * 0.86-1.18x). So those products run transposed (the "transposed" route).
 *
 * On two more kinds oneDNN's own division of the work between its threads
 * is the slow part there: the same product cut into panels of C, one per
 * thread, each a oneDNN sgemm on that thread alone, was faster (same Xeon, 2
 * threads, best of 7, grids over M, N and K):
 * - narrow products C[M,N] = A·Bᵀ (a layer stored [in, out]: its input
 *   gradient dx = dy·Wᵀ into d_model; stored [out, in]: its forward back to
 *   d_model) in panels of rows: 1.07-1.36x wherever 128 <= N <= 512 with
 *   512 rows or more a thread, K 256-4096 (the FFN's dx at d_ff 4096: 36.4 ->
 *   30.6 ms); level at N = 64, and at N >= 768 with 1024 rows a thread.
 * - weight gradients Aᵀ·B with 192 <= M <= 384 (a d_model of 256 against a
 *   wide layer, and the inner product of the transposed route at that
 *   d_model) in panels of columns: 1.03-1.19x wherever N >= 512 a thread and
 *   K >= 1024; level at M = 128-160 and M >= 448.
 * A·B was level in panels, and with oneDNN held to its AVX2 kernels
 * (DNNL_MAX_CPU_ISA=AVX2) so was every kind (mostly 0.9-1.05x; single
 * points from 0.73 to 1.41x, along no shape): panels are for AVX-512
 * kernels only.
 *
 * FFNLAB_CPU_GEMM_TN = auto (default) | onednn | openblas | transposed and
 * FFNLAB_CPU_GEMM_NARROW = auto | onednn | blis force a path. A forced
 * route takes every product of its kind (every Aᵀ·B; every product whose A
 * is not transposed), whatever its shape or place, so the GEMM test suites
 * cover it on small odd shapes too. FFNLAB_CPU_GEMM_PANELS = auto | off | on
 * does the same for panels: on, every product left to oneDNN runs in panels
 * (of columns when A is transposed, else of rows). FFNLAB_OPENBLAS /
 * FFNLAB_BLIS name another copy of a library. Each path gives the same
 * result on every run (none splits the inner dimension over threads).
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
#ifndef FFNLAB_BLIS_OPENMP
#define FFNLAB_BLIS_OPENMP "libblis.so.4"
#endif

/* Below this many FLOPs the auto paths leave a product on oneDNN. */
#define MIN_FLOPS (16.0 * 1024 * 1024)

/* The tall weight gradients C[M,N] = Aᵀ·B (inner dimension K) that run
   transposed where oneDNN runs AVX-512 kernels: M >= TALL_M_MIN and >= 2N,
   N <= TALL_N_MAX, K >= TALL_K_MIN (top of this file). */
enum { TALL_M_MIN = 1024, TALL_N_MAX = 512, TALL_K_MIN = 1024 };

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);

/* One library that takes one kind of product. */
typedef struct blas_lib blas_lib;
struct blas_lib {
    const char *var;      /* FFNLAB_CPU_GEMM_TN: chooses the path */
    const char *value;    /* openblas: the value that forces this library */
    const char *path_var; /* FFNLAB_OPENBLAS: another copy of it */
    const char *path;     /* its OpenMP build, where Debian puts it */
    const char *package;  /* libopenblas0-openmp */
    /* Finds the library's functions in h and names it; 0 with a reason when
       h is not this library, or not its OpenMP build. */
    int (*bind)(blas_lib *l, void *h, const char *path, char *why, size_t n);
    /* The automatic rule: whether a product of this kind, C[M,N] of inner
       dimension K and 16 MFLOP or more, goes to the library. */
    int (*wants)(int64_t M, int64_t N, int64_t K);
    int keeps_tls;        /* the library has thread-local storage (BLIS) */
    const char *alt;      /* transposed: the value that forces this kind's route on oneDNN, if any */

    int resolved;         /* the choice was made */
    int on;               /* this kind of product goes to the library */
    int forced;           /* ... every one of them (var=value) */
    int alt_on;           /* which products the library does not take go the alt route: ALT_OFF/TALL/ALL */
    cblas_sgemm_fn sgemm;
    void (*set_threads)(int);
    int threads;          /* what the library was last told */
    char name[96];        /* "OpenBLAS 0.3.21 (Zen)" */
};

static int bind_openblas(blas_lib *l, void *h, const char *path, char *why, size_t n) {
    int (*parallel)(void) = (int (*)(void))dlsym(h, "openblas_get_parallel");
    char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
    char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
    l->sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    l->set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    if (!l->sgemm || !l->set_threads || !parallel || !corename) return snprintf(why, n, "%s is not OpenBLAS", path), 0;
    if (parallel() != 2) /* 2: the OpenMP build */
        return snprintf(why, n, "%s is not OpenBLAS's OpenMP build (install %s)", path, l->package), 0;
    const char *cfg = config ? config() : "OpenBLAS";
    char version[32] = "";
    sscanf(cfg, "OpenBLAS %31s", version);
    snprintf(l->name, sizeof l->name, "OpenBLAS %s (%s)", version, corename());
    return 1;
}

/* BLIS's thread count is a dim_t (64-bit); ffnlab calls every library's
   setter with an int. */
static void (*g_blis_set_threads)(int64_t);
static void blis_set_threads(int n) { g_blis_set_threads(n); }

static int bind_blis(blas_lib *l, void *h, const char *path, char *why, size_t n) {
    /* the info functions return gint_t; only their low 32 bits are read */
    const char *(*version)(void) = (const char *(*)(void))dlsym(h, "bli_info_get_version_str");
    int (*openmp)(void) = (int (*)(void))dlsym(h, "bli_info_get_enable_openmp");
    int (*blas_int_bits)(void) = (int (*)(void))dlsym(h, "bli_info_get_blas_int_type_size");
    int (*arch_id)(void) = (int (*)(void))dlsym(h, "bli_arch_query_id");
    const char *(*arch_name)(int) = (const char *(*)(int))dlsym(h, "bli_arch_string");
    g_blis_set_threads = (void (*)(int64_t))dlsym(h, "bli_thread_set_num_threads");
    l->sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    if (!version || !openmp || !blas_int_bits || !arch_id || !arch_name || !g_blis_set_threads || !l->sgemm)
        return snprintf(why, n, "%s is not BLIS with its CBLAS interface", path), 0;
    if (!openmp()) return snprintf(why, n, "%s is not BLIS's OpenMP build (install %s)", path, l->package), 0;
    if (blas_int_bits() != 32) /* cblas_sgemm's sizes are ints here */
        return snprintf(why, n, "%s takes %d-bit BLAS integers, ffnlab passes 32-bit ones", path, blas_int_bits()), 0;
    l->set_threads = blis_set_threads;
    snprintf(l->name, sizeof l->name, "BLIS %s (%s)", version(), arch_name(arch_id()));
    return 1;
}

/* Weight gradients: all of them. */
static int tn_wants(int64_t M, int64_t N, int64_t K) {
    (void)M, (void)N, (void)K;
    return 1;
}

/* Narrow products: where BLIS was measured ahead (top of this file); the
   output widths also name the route in cpu_blas_describe. */
enum { NARROW_N_MIN = 224, NARROW_N_MAX = 256, NARROW_M_MIN = 2048, NARROW_K_MIN = 512 };

static int narrow_wants(int64_t M, int64_t N, int64_t K) {
    return N >= NARROW_N_MIN && N <= NARROW_N_MAX && M >= NARROW_M_MIN && K >= NARROW_K_MIN && !omp_in_parallel();
}

static blas_lib g_tn = {.var = "FFNLAB_CPU_GEMM_TN", .value = "openblas", .path_var = "FFNLAB_OPENBLAS",
                        .path = FFNLAB_OPENBLAS_OPENMP, .package = "libopenblas0-openmp", .bind = bind_openblas,
                        .wants = tn_wants, .alt = "transposed"};
static blas_lib g_narrow = {.var = "FFNLAB_CPU_GEMM_NARROW", .value = "blis", .path_var = "FFNLAB_BLIS",
                            .path = FFNLAB_BLIS_OPENMP, .package = "libblis4-openmp", .bind = bind_blis,
                            .wants = narrow_wants, .keeps_tls = 1};

static const char *lib_path(const blas_lib *l) {
    const char *path = getenv(l->path_var);
    return path && path[0] ? path : l->path;
}

/* The library's OpenMP build, or a reason why not (returns 0). */
static int load(blas_lib *l, char *why, size_t n) {
    const char *path = lib_path(l);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return snprintf(why, n, "cannot load %s (install %s)", path, l->package), 0;
    if (!l->bind(l, h, path, why, n)) {
        dlclose(h);
        return 0;
    }
    return 1; /* the library stays loaded for the life of the process */
}

/* Whether oneDNN runs its AVX-512 kernels. Its ISA values are feature masks,
   not an order: avx2_vnni (0x407) is numerically above avx512_core (0x27). */
static int onednn_avx512(void) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), avx512 = (unsigned)dnnl_cpu_isa_avx512_core;
    return (isa & avx512) == avx512;
}

#if defined(__SANITIZE_ADDRESS__)
#define LSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define LSAN_BUILD 1
#endif
#endif

/* Whether the automatic path may use l. clang 14's LeakSanitizer crashes at
   exit ("Tracer caught signal 11") reading the thread-local storage of a
   library loaded by dlopen once OpenMP threads have used it: BLIS has such
   storage, OpenBLAS none. A preloaded library's storage is static and the
   leak check runs, so under LeakSanitizer such a library is taken only when
   the process already has it (LD_PRELOAD). Forcing it still loads it. */
static int lsan_allows(const blas_lib *l) {
#ifdef LSAN_BUILD
    if (l->keeps_tls) {
        void *h = dlopen(lib_path(l), RTLD_NOW | RTLD_NOLOAD);
        if (!h) return 0;
        dlclose(h); /* drops only the reference RTLD_NOLOAD took */
    }
#else
    (void)l;
#endif
    return 1;
}

/* How much of a kind goes the oneDNN route (blas_lib.alt). */
enum { ALT_OFF, ALT_TALL, ALT_ALL };

static fl_status choose(blas_lib *l, fl_error *err) {
    if (l->resolved) return FL_OK;
    const char *want = getenv(l->var);
    char why[256] = "";
    if (!want || !want[0] || !strcmp(want, "auto")) {
        const int avx512 = onednn_avx512();
        l->on = !avx512 && lsan_allows(l) && load(l, why, sizeof why);
        l->alt_on = l->alt && avx512 ? ALT_TALL : ALT_OFF;
    } else if (!strcmp(want, "onednn")) {
        l->on = 0;
    } else if (!strcmp(want, l->value)) {
        if (!load(l, why, sizeof why)) return fl_fail(err, FL_EUNSUPPORTED, "%s=%s: %s", l->var, l->value, why);
        l->on = l->forced = 1;
    } else if (l->alt && !strcmp(want, l->alt)) {
        l->alt_on = ALT_ALL;
    } else if (l->alt) {
        return fl_fail(err, FL_EINVAL, "%s=%s: expected auto, onednn, %s or %s", l->var, want, l->value, l->alt);
    } else {
        return fl_fail(err, FL_EINVAL, "%s=%s: expected auto, onednn or %s", l->var, want, l->value);
    }
    l->resolved = 1;
    return FL_OK;
}

/* Which products run in panels of C, one per thread (top of this file). */
enum { PANELS_OFF, PANELS_RULE, PANELS_ALL };
static int g_panels = -1; /* -1: not chosen yet */

static fl_status choose_panels(int *panels, fl_error *err) {
    const char *want = getenv("FFNLAB_CPU_GEMM_PANELS");
    if (!want || !want[0] || !strcmp(want, "auto")) *panels = onednn_avx512() ? PANELS_RULE : PANELS_OFF;
    else if (!strcmp(want, "off")) *panels = PANELS_OFF;
    else if (!strcmp(want, "on")) *panels = PANELS_ALL;
    else return fl_fail(err, FL_EINVAL, "FFNLAB_CPU_GEMM_PANELS=%s: expected auto, off or on", want);
    return FL_OK;
}

/* All choices or none: a refused one leaves the others unmade too. */
fl_status cpu_blas_choose(fl_error *err) {
    blas_lib tn = g_tn, narrow = g_narrow;
    int panels = PANELS_OFF;
    fl_status st = choose(&tn, err);
    if (!st) st = choose(&narrow, err);
    if (!st) st = choose_panels(&panels, err);
    if (!st) g_tn = tn, g_narrow = narrow, g_panels = panels;
    return st;
}

/* The choice, made on first use when no backend selection made it (a bad
   setting then falls back to oneDNN, once, with a warning). */
static void resolve(blas_lib *l) {
    fl_error err = {0};
    if (!l->resolved && choose(l, &err)) {
        fl_log_warn("%s; those products stay on oneDNN", err.msg);
        l->resolved = 1, l->on = 0, l->alt_on = ALT_OFF;
    }
}

static int panels_choice(void) {
    fl_error err = {0};
    if (g_panels < 0 && choose_panels(&g_panels, &err)) {
        fl_log_warn("%s; no product runs in panels", err.msg);
        g_panels = PANELS_OFF;
    }
    return g_panels;
}

/* The kinds of product the panels rule takes (top of this file). */
enum { ROWS_N_MIN = 128, ROWS_N_MAX = 512, ROWS_PER_THREAD = 512 };
enum { COLS_M_MIN = 192, COLS_M_MAX = 384, COLS_PER_THREAD = 512, COLS_K_MIN = 1024 };

void cpu_blas_describe(char *out, size_t n) {
    resolve(&g_tn);
    resolve(&g_narrow);
    char tn[160] = "", narrow[160] = "", panels[160] = "";
    if (g_tn.on) snprintf(tn, sizeof tn, ", weight gradients (Aᵀ·B) on %s", g_tn.name);
    if (g_tn.alt_on == ALT_TALL) snprintf(tn, sizeof tn, ", tall weight gradients (Aᵀ·B, M >= %d) as (Bᵀ·A)ᵀ", TALL_M_MIN);
    if (g_tn.alt_on == ALT_ALL) snprintf(tn, sizeof tn, ", weight gradients (Aᵀ·B) as (Bᵀ·A)ᵀ");
    if (g_narrow.on)
        snprintf(narrow, sizeof narrow, ", narrow products (N %d-%d) on %s", NARROW_N_MIN, NARROW_N_MAX, g_narrow.name);
    const int mode = panels_choice();
    if (mode == PANELS_RULE && omp_get_max_threads() > 1)
        snprintf(panels, sizeof panels, ", A·Bᵀ (N %d-%d) and Aᵀ·B (M %d-%d) in panels, one per thread", ROWS_N_MIN,
                 ROWS_N_MAX, COLS_M_MIN, COLS_M_MAX);
    if (mode == PANELS_ALL) snprintf(panels, sizeof panels, ", products in panels, one per thread");
    snprintf(out, n, "%s%s%s", tn, narrow, panels);
}

/* Whether l takes C[M,N] = op(A)·op(B) of inner dimension K. */
static int takes(blas_lib *l, int64_t M, int64_t N, int64_t K) {
    resolve(l);
    if (!l->on || M > INT_MAX || N > INT_MAX || K > INT_MAX) return 0; /* CBLAS takes int sizes */
    return l->forced || (2.0 * (double)M * (double)N * (double)K >= MIN_FLOPS && l->wants(M, N, K));
}

/* The tall weight gradients the transposed route takes (top of this file). */
static int tall(int64_t M, int64_t N, int64_t K) {
    return M >= TALL_M_MIN && M >= 2 * N && N <= TALL_N_MAX && K >= TALL_K_MIN;
}

/* C[M,N] = beta C + T[N,M]ᵀ (beta = 0 overwrites, so NaN in C does not
   survive), in 32x32 tiles so that both sides are read a cache line at a
   time; on all threads outside a parallel region. */
static void add_transposed(int64_t M, int64_t N, const float *T, float beta, float *C, int64_t ldc) {
    enum { TILE = 32 };
#pragma omp parallel for if (!omp_in_parallel())
    for (int64_t i0 = 0; i0 < M; i0 += TILE)
        for (int64_t j0 = 0; j0 < N; j0 += TILE)
            for (int64_t i = i0; i < i0 + TILE && i < M; i++) {
                float *c = C + i * ldc;
                for (int64_t j = j0; j < j0 + TILE && j < N; j++)
                    c[j] = (beta == 0.0f ? 0.0f : beta * c[j]) + T[j * M + i];
            }
}

/* How a product left to oneDNN shares out the threads (top of this file):
   oneDNN's own way, or panels of C by rows or by columns, one per thread. */
enum { BY_ONEDNN, BY_ROWS, BY_COLS };

static int panels_for(int transA, int transB, int64_t M, int64_t N, int64_t K) {
    const int mode = panels_choice();
    if (mode == PANELS_ALL) return transA ? BY_COLS : BY_ROWS;
    const int64_t threads = omp_get_max_threads();
    if (mode == PANELS_OFF || threads < 2 || omp_in_parallel() || 2.0 * (double)M * (double)N * (double)K < MIN_FLOPS)
        return BY_ONEDNN;
    if (!transA && transB && N >= ROWS_N_MIN && N <= ROWS_N_MAX && M >= ROWS_PER_THREAD * threads) return BY_ROWS;
    if (transA && !transB && M >= COLS_M_MIN && M <= COLS_M_MAX && N >= COLS_PER_THREAD * threads && K >= COLS_K_MIN)
        return BY_COLS;
    return BY_ONEDNN;
}

/* C[M,N] = alpha op(A) op(B) + beta C on oneDNN, in panels of C (by rows
   or by columns), one per thread, each an sgemm on that thread alone
   (oneDNN stays on the calling thread inside a parallel region; inside one
   already, there is one panel). oneDNN checks its arguments before it
   computes, and the panels' differ only in their size: either every panel
   is done or none. */
static dnnl_status_t sgemm_panels(int by, char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha,
                                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                                  int64_t ldc) {
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (!omp_in_parallel())
    {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads(), len = by == BY_ROWS ? M : N;
        const int64_t p0 = len * t / T, p = len * (t + 1) / T - p0;
        dnnl_status_t st = dnnl_success;
        if (p > 0 && by == BY_ROWS) /* rows p0.. of C and of op(A) */
            st = dnnl_sgemm(ta, tb, p, N, K, alpha, ta == 'N' ? A + p0 * lda : A + p0, lda, B, ldb, beta,
                            C + p0 * ldc, ldc);
        if (p > 0 && by == BY_COLS) /* columns p0.. of C and of op(B) */
            st = dnnl_sgemm(ta, tb, M, p, K, alpha, A, lda, tb == 'N' ? B + p0 : B + p0 * ldb, ldb, beta, C + p0,
                            ldc);
        failed |= st != dnnl_success;
    }
    return failed ? dnnl_invalid_arguments : dnnl_success;
}

/* C[M,N] = alpha op(A) op(B) + beta C in panels, where panels_for takes the
   product: 1 when done so, else 0 (nothing done). */
static int in_panels(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int by = panels_for(transA, transB, M, N, K);
    return by != BY_ONEDNN && sgemm_panels(by, transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                                           beta, C, ldc) == dnnl_success;
}

/* C[M,N] = alpha Aᵀ·B + beta C (A[K,M], B[K,N]) as T[N,M] = alpha Bᵀ·A on
   oneDNN, added to C transposed. 0 (nothing done) without memory for T. */
static int sgemm_tn_transposed(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    float *T = malloc((size_t)M * (size_t)N * sizeof *T);
    if (!T) return 0;
    const int ok = in_panels(1, 0, N, M, K, alpha, B, ldb, A, lda, 0.0f, T, M) ||
                   dnnl_sgemm('T', 'N', N, M, K, alpha, B, ldb, A, lda, 0.0f, T, M) == dnnl_success;
    if (ok) add_transposed(M, N, T, beta, C, ldc);
    free(T);
    return ok;
}

int cpu_blas_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    blas_lib *l = !transA ? &g_narrow : !transB ? &g_tn : NULL;
    if (l && takes(l, M, N, K)) {
        if (!omp_in_parallel() && l->threads != omp_get_max_threads()) { /* follow --threads */
            l->threads = omp_get_max_threads();
            l->set_threads(l->threads);
        }
        l->sgemm(CBLAS_ROW_MAJOR, transA ? CBLAS_TRANS : CBLAS_NO_TRANS, transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
                 (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return 1;
    }
    if (l && l->alt_on && (l->alt_on == ALT_ALL || tall(M, N, K)) &&
        sgemm_tn_transposed(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return 1;
    return in_panels(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
