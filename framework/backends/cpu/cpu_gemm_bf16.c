/*
 * backends/cpu/cpu_gemm_bf16.c — the CPU backend's bf16 GEMM mode: inputs
 * rounded to bf16, f32 accumulation and output (see cpu_gemm_bf16.h).
 *
 * Two paths give the same numbers (to f32 accumulation order):
 *
 * "native bf16": oneDNN's BLAS-like API has no bf16 GEMM, so this runs the
 * matmul primitive: the f32 inputs are rounded into contiguous bf16 buffers
 * that keep their layout (A [M,K] or, transposed, [K,M]; B [K,N] or [N,K]:
 * the transposed ones are given to oneDNN as "ba" matrices, which its brgemm
 * kernels read directly, 1.2-1.9x faster at the weight-gradient shapes than
 * transposing A here first), and the product is written straight into C
 * with alpha as an output scale and beta as a sum post-op. oneDNN picks the
 * kernel: AMX tiles where the CPU has them, AVX-512 BF16 dot products
 * otherwise. An input that is bf16 already is handed over as it is (copied
 * only if its rows are not contiguous), so the primitive, and its cache
 * key, are the same for f32 and bf16 inputs.
 *
 * "bf16 inputs, fp32 arithmetic": on a CPU without bf16 dot products the
 * inputs are rounded to bf16 the same way, widened back to f32 (exact) and
 * multiplied by sgemm. That is every AVX2-only CPU (AMD Zen 3: oneDNN has no
 * bf16 matmul there) and the AVX-512 CPUs before AVX-512 BF16 (Skylake to
 * Ice Lake), where oneDNN's bf16 matmul emulates the dot products: on an Ice
 * Lake Xeon with 2 threads it ran the bench's products at 24-69 GFLOP/s
 * against sgemm's 110-225 on the rounded inputs. A product of two bf16
 * values is exact in f32, so both paths differ only in the order of the f32
 * sums: `--precision bf16` trains the same model on every CPU.
 * FFNLAB_CPU_BF16=native|emulated forces a path (auto by default: native
 * where the CPU has bf16 dot products), so the emulated one is tested on
 * machines that have the native one too, and the native one wherever oneDNN
 * has a bf16 matmul at all.
 *
 * A primitive is built for one shape (creation costs ~0.3-1 ms, a product
 * of the model ~1-10 ms), so each calling thread keeps a small LRU cache of
 * them, plus its own bf16 buffers and oneDNN scratchpad, grown as needed and
 * kept (fresh memory page-faults on every touch). Per-thread state needs no
 * locks: the gemm ops run either on the calling thread, with oneDNN's OpenMP
 * threads inside, or one product per thread inside an OpenMP loop
 * (cpu_gemm.c); the thread number picks the state. A primitive built inside
 * a parallel region is cached apart from one built outside (the key holds
 * the thread count it was built for), since oneDNN plans its split of the
 * work when it builds the primitive.
 */
#include "cpu_gemm_bf16.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "error.h" /* fl_fail */

#define MAX_SLOTS 256      /* threads with their own state; more fall back to fp32 */
#define CACHE_N 48         /* primitives per thread: BLiMP needs ~40 batch shapes in flight */
#define CONVERT_PAR (1 << 18) /* elements from which a conversion uses all threads */

static int g_bf16;   /* the mode: 0 fp32, 1 bf16 */
static int g_native; /* the bf16 mode's path: 1 oneDNN's bf16 matmul, 0 rounded inputs + sgemm */

typedef struct prim_key {
    int64_t M, N, K, ldc;
    int transA, transB, nthr;
    float alpha, beta;
} prim_key;

typedef struct prim_entry {
    prim_key key;
    dnnl_primitive_t prim;
    size_t scratch;            /* bytes of scratchpad it needs */
    uint64_t used;             /* LRU clock; 0 = empty */
} prim_entry;

typedef struct buffer {
    void *p;
    size_t cap;
} buffer;

/* One thread's state. */
typedef struct slot {
    buffer a, b, scratch;
    buffer fa, fb;             /* f32 copies: bf16 inputs widened, or f32 inputs rounded */
    prim_entry cache[CACHE_N];
    uint64_t clock;
} slot;

static slot g_slots[MAX_SLOTS];
static dnnl_engine_t g_engine;

/* ------------------------------------------------------------ the mode */

int cpu_gemm_is_bf16(void) { return g_bf16; }

static int native_available(void);

/* 1 when oneDNN's kernels may use bf16 dot products in hardware: its
   effective ISA (DNNL_MAX_CPU_ISA caps it) has AVX-512 BF16 or AMX. */
static int has_bf16_dot_products(void) {
    return (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

/* The bf16 mode's path, from FFNLAB_CPU_BF16 (auto when unset or empty). */
static fl_status choose_path(fl_error *err) {
    const char *want = getenv("FFNLAB_CPU_BF16");
    if (!want || !want[0] || !strcmp(want, "auto")) {
        g_native = has_bf16_dot_products() && native_available();
    } else if (!strcmp(want, "emulated")) {
        g_native = 0;
    } else if (!strcmp(want, "native")) {
        if (!native_available())
            return fl_fail(err, FL_EUNSUPPORTED,
                           "FFNLAB_CPU_BF16=native: oneDNN has no bf16 matmul on this CPU "
                           "(use auto or emulated: bf16 inputs, fp32 arithmetic)");
        g_native = 1;
    } else {
        return fl_fail(err, FL_EINVAL, "FFNLAB_CPU_BF16=%s: expected auto, native or emulated", want);
    }
    return FL_OK;
}

fl_status fl_cpu_set_precision(const char *mode, fl_error *err) {
    fl_status st = cpu_blas_choose(err); /* FFNLAB_CPU_GEMM_*: checked whenever the CPU backend is selected */
    if (st) return st;
    if (!strcmp(mode, "fp32")) {
        g_bf16 = 0;
    } else if (!strcmp(mode, "bf16")) {
        fl_status st = choose_path(err);
        if (st) return st;
        g_bf16 = 1;
    } else {
        return fl_fail(err, FL_EINVAL, "CPU GEMM precision '%s': expected fp32 or bf16", mode);
    }
    return FL_OK;
}

const char *fl_cpu_precision(void) { return g_bf16 ? "bf16" : "fp32"; }

/* ------------------------------------------------------------ rounding */

/* dst[r,c] = bf16(src[r*ld + c]): f32 rounded (cpu_bf16), bf16 copied;
   dst[rows,cols] contiguous */
static void pack_rows(cpu_operand src, int64_t rows, int64_t cols, uint16_t *dst) {
    const int bf16 = src.dtype == FL_BF16;
#pragma omp parallel for schedule(static) if (rows * cols >= CONVERT_PAR)
    for (int64_t r = 0; r < rows; r++) {
        uint16_t *d = dst + r * cols;
        if (bf16) {
            memcpy(d, (const uint16_t *)src.p + r * src.ld, (size_t)cols * sizeof *d);
        } else {
            const float *s = (const float *)src.p + r * src.ld;
            for (int64_t c = 0; c < cols; c++) d[c] = cpu_bf16(s[c]);
        }
    }
}


/* ------------------------------------------------------------ state */

/* p grown to at least bytes (contents not kept); NULL when out of memory. */
static void *grow(buffer *b, size_t bytes) {
    if (bytes <= b->cap) return b->p;
    free(b->p);
    size_t n = (bytes + 4095) / 4096 * 4096;
    b->p = aligned_alloc(64, n);
    b->cap = b->p ? n : 0;
    return b->p;
}

static dnnl_engine_t engine(void) {
    dnnl_engine_t e;
#pragma omp critical(cpu_bf16_engine)
    {
        if (!g_engine && dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) g_engine = NULL;
        e = g_engine;
    }
    return e;
}

static int key_eq(const prim_key *a, const prim_key *b) {
    return a->M == b->M && a->N == b->N && a->K == b->K && a->ldc == b->ldc && a->transA == b->transA &&
           a->transB == b->transB && a->nthr == b->nthr && a->alpha == b->alpha && a->beta == b->beta;
}

/* The matmul C[M,N] (row stride ldc, f32) = alpha op(A) op(B) + beta C,
   where A is contiguous bf16 [M,K] (transA = 0) or [K,M] (transA = 1) and
   B bf16 [K,N] or [N,K] (transB); NULL when oneDNN refuses. *scratch
   receives its scratchpad size. */
static dnnl_primitive_t build(const prim_key *k, size_t *scratch) {
    dnnl_engine_t eng = engine();
    if (!eng) return NULL;
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {k->M, k->K}, db = {k->K, k->N}, dc = {k->M, k->N}, sc = {k->ldc, 1};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_matmul_desc_t md;
    int ok = dnnl_memory_desc_init_by_tag(&a, 2, da, dnnl_bf16, k->transA ? dnnl_ba : dnnl_ab) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&b, 2, db, dnnl_bf16, k->transB ? dnnl_ba : dnnl_ab) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, sc) == dnnl_success &&
             dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && k->alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha) == dnnl_success;
    if (ok && k->beta != 0.0f)
        ok = dnnl_post_ops_create(&post) == dnnl_success && dnnl_post_ops_append_sum(post, k->beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, post) == dnnl_success;
    if (ok) ok = dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL) == dnnl_success;
    if (ok) *scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    if (ok && dnnl_primitive_create(&prim, pd) != dnnl_success) prim = NULL;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (post) dnnl_post_ops_destroy(post);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return prim;
}

/* The thread's cached primitive for k, built (evicting the least recently
   used) on a miss. */
static prim_entry *lookup(slot *s, const prim_key *k) {
    prim_entry *victim = &s->cache[0];
    for (int i = 0; i < CACHE_N; i++) {
        prim_entry *e = &s->cache[i];
        if (e->used && key_eq(&e->key, k)) {
            e->used = ++s->clock;
            return e;
        }
        if (e->used < victim->used) victim = e;
    }
    size_t scratch = 0;
    dnnl_primitive_t p = build(k, &scratch);
    if (!p) return NULL;
    if (victim->prim) dnnl_primitive_destroy(victim->prim);
    *victim = (prim_entry){.key = *k, .prim = p, .scratch = scratch, .used = ++s->clock};
    return victim;
}

/* ------------------------------------------------------------ the product */

static int run(slot *s, prim_entry *e, const uint16_t *a, const uint16_t *b, float *C) {
    dnnl_engine_t eng = engine();
    const_dnnl_primitive_desc_t pd;
    if (dnnl_primitive_get_primitive_desc(e->prim, &pd) != dnnl_success) return 0;
    void *scratch = grow(&s->scratch, e->scratch ? e->scratch : 64);
    if (!scratch) return 0;
    const dnnl_memory_desc_t *md_a = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *md_b = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *md_c = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *md_s = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, ms = NULL;
    dnnl_stream_t stream = NULL;
    int ok = dnnl_memory_create(&ma, md_a, eng, (void *)a) == dnnl_success &&
             dnnl_memory_create(&mb, md_b, eng, (void *)b) == dnnl_success &&
             dnnl_memory_create(&mc, md_c, eng, C) == dnnl_success &&
             dnnl_memory_create(&ms, md_s, eng, scratch) == dnnl_success &&
             dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc},
                                  {DNNL_ARG_SCRATCHPAD, ms}};
        ok = dnnl_primitive_execute(e->prim, stream, 4, args) == dnnl_success &&
             dnnl_stream_wait(stream) == dnnl_success;
    }
    if (stream) dnnl_stream_destroy(stream);
    dnnl_memory_t mems[] = {ma, mb, mc, ms};
    for (int i = 0; i < 4; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    return ok;
}

/* X stored [rows,cols] as the primitive's contiguous bf16 input: X itself
   when it is bf16 with contiguous rows, else packed (rounded or copied)
   into buf. NULL when out of memory. */
static const uint16_t *bf16_input(cpu_operand X, int64_t rows, int64_t cols, buffer *buf) {
    if (X.dtype == FL_BF16 && X.ld == cols) return X.p;
    uint16_t *d = grow(buf, (size_t)(rows * cols) * sizeof *d);
    if (d) pack_rows(X, rows, cols, d);
    return d;
}

/* X stored [rows,cols] in f32: X itself when it is f32 (*ld its stride),
   else widened (exactly) into buf (*ld = cols). NULL when out of memory. */
static const float *f32_input(cpu_operand X, int64_t rows, int64_t cols, buffer *buf, int64_t *ld) {
    *ld = X.ld;
    if (X.dtype == FL_F32) return X.p;
    float *d = grow(buf, (size_t)(rows * cols) * sizeof *d);
    if (!d) return NULL;
    const uint16_t *h = X.p;
#pragma omp parallel for schedule(static) if (rows * cols >= CONVERT_PAR)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) d[r * cols + c] = cpu_bf16_f32(h[r * X.ld + c]);
    *ld = cols;
    return d;
}

/* X stored [rows,cols] in f32 with every value a bf16 one: bf16 inputs
   widened, f32 inputs rounded to bf16 (cpu_bf16, as the native path rounds),
   into buf (*ld = cols). NULL when out of memory. */
static const float *rounded_input(cpu_operand X, int64_t rows, int64_t cols, buffer *buf, int64_t *ld) {
    if (X.dtype == FL_BF16) return f32_input(X, rows, cols, buf, ld);
    float *d = grow(buf, (size_t)(rows * cols) * sizeof *d);
    if (!d) return NULL;
    const float *f = X.p;
#pragma omp parallel for schedule(static) if (rows * cols >= CONVERT_PAR)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) d[r * cols + c] = cpu_bf16_f32(cpu_bf16(f[r * X.ld + c]));
    *ld = cols;
    return d;
}

/* The product of typed inputs in f32 arithmetic with s's buffers (A stored
   [K,M] when transA, else [M,K]; B [N,K] when transB, else [K,N]); round
   also rounds f32 inputs to bf16 first (the emulated bf16 path). */
static void sgemm_typed(slot *s, int round, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                        cpu_operand A, cpu_operand B, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0 || K <= 0 || alpha == 0.0f) {
        /* the inputs are not read: cpu_sgemm scales C by beta */
        cpu_sgemm(transA, transB, M, N, K, alpha, A.p, A.ld, B.p, B.ld, beta, C, ldc);
        return;
    }
    int64_t lda, ldb;
    const float *a = round ? rounded_input(A, transA ? K : M, transA ? M : K, &s->fa, &lda)
                           : f32_input(A, transA ? K : M, transA ? M : K, &s->fa, &lda);
    const float *b = round ? rounded_input(B, transB ? N : K, transB ? K : N, &s->fb, &ldb)
                           : f32_input(B, transB ? N : K, transB ? K : N, &s->fb, &ldb);
    if (!a || !b) {
        cpu_shape_error(__func__, "out of memory converting a GEMM input");
        return;
    }
    cpu_sgemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
}

/* sgemm_typed on the calling thread's buffers (a thread without state gets
   buffers for this call only). */
static void sgemm_on_thread(int round, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                            cpu_operand A, cpu_operand B, float beta, float *C, int64_t ldc) {
    const int tid = omp_get_thread_num();
    if (tid < MAX_SLOTS) {
        sgemm_typed(&g_slots[tid], round, transA, transB, M, N, K, alpha, A, B, beta, C, ldc);
        return;
    }
    slot tmp = {0};
    sgemm_typed(&tmp, round, transA, transB, M, N, K, alpha, A, B, beta, C, ldc);
    free(tmp.fa.p), free(tmp.fb.p);
}

void cpu_sgemm_widened(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, cpu_operand A,
                       cpu_operand B, float beta, float *C, int64_t ldc) {
    sgemm_on_thread(0, transA, transB, M, N, K, alpha, A, B, beta, C, ldc);
}

void cpu_bf16gemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, cpu_operand A,
                  cpu_operand B, float beta, float *C, int64_t ldc) {
    const int tid = omp_get_thread_num();
    if (!g_native || M <= 0 || N <= 0 || K <= 0 || alpha == 0.0f || tid >= MAX_SLOTS) {
        /* the emulated path, or nothing to multiply (the product is zero or
           empty: C = beta C), or a thread without primitive state */
        sgemm_on_thread(1, transA, transB, M, N, K, alpha, A, B, beta, C, ldc);
        return;
    }
    slot *s = &g_slots[tid];
    const int nthr = omp_in_parallel() ? 1 : omp_get_max_threads();
    const prim_key key = {M, N, K, ldc, transA != 0, transB != 0, nthr, alpha, beta};
    prim_entry *e = lookup(s, &key);
    if (e) {
        const uint16_t *a = bf16_input(A, transA ? K : M, transA ? M : K, &s->a);
        const uint16_t *b = bf16_input(B, transB ? N : K, transB ? K : N, &s->b);
        if (a && b && run(s, e, a, b, C)) return;
    }
    /* oneDNN refused this one shape or memory ran out before C was touched
       (execution itself does not fail midway on the CPU): the same numbers
       on the emulated path */
    sgemm_typed(s, 1, transA, transB, M, N, K, alpha, A, B, beta, C, ldc);
}

/* ------------------------------------------------------------ describe */

/* oneDNN's implementation of the bf16 matmul for a model-sized product
   (into impl, "unavailable" when it has none); 1 when it is a real bf16
   kernel, not the reference loops oneDNN keeps for completeness. */
static int native_impl(char *impl, size_t n) {
    const prim_key k = {1024, 1024, 256, 1024, 0, 1, omp_get_max_threads(), 1.0f, 0.0f};
    size_t scratch;
    dnnl_primitive_t p = build(&k, &scratch);
    const char *name = "unavailable";
    const_dnnl_primitive_desc_t pd;
    if (p && dnnl_primitive_get_primitive_desc(p, &pd) == dnnl_success)
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
    snprintf(impl, n, "%s", name);
    if (p) dnnl_primitive_destroy(p);
    return p && strncmp(impl, "ref", 3) != 0;
}

static int native_available(void) {
    static int known = -1;
    char impl[96];
    if (known < 0) known = native_impl(impl, sizeof impl);
    return known;
}

int cpu_bf16_is_native(void) { return g_native; }

const char *cpu_bf16_impl(void) {
    static char line[160];
    char impl[96];
    if (g_native && native_impl(impl, sizeof impl))
        snprintf(line, sizeof line, "native bf16, f32 accumulate (matmul %s)", impl);
    else
        snprintf(line, sizeof line, "bf16 inputs, fp32 arithmetic (sgemm)");
    return line;
}
