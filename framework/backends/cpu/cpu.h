/*
 * backends/cpu/cpu.h — private to the CPU backend: the kernels each file
 * provides to the table in cpu_backend.c, shape helpers, the shape-check
 * macro and a vectorisable exp().
 *
 * Tensors are read as matrices by their last dimension: a tensor of shape
 * [B,T,C] is the matrix [B*T, C] (cpu_cols / cpu_rows). Ops check shapes
 * cheaply; a mismatch is a programming error, logged through the host log,
 * asserted in debug builds, and the op then does nothing.
 */
#ifndef FFNLAB_CPU_H
#define FFNLAB_CPU_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "ffnlab/fastmath.h" /* fl_f2u, fl_u2f, fl_exp_core */

/* ---------------------------------------------------------------- shapes */

/* Columns of t read as a matrix: its last dimension. */
static inline int64_t cpu_cols(const fl_tensor *t) {
    return t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
}

/* Rows of t read as a matrix: the product of all but the last dimension
   (not numel / cols, which a zero-width matrix would make 0). */
static inline int64_t cpu_rows(const fl_tensor *t) {
    int64_t r = 1;
    for (int i = 0; i + 1 < t->ndim; i++) r *= t->shape[i];
    return r;
}

static inline float *cpu_f32(const fl_tensor *t) { return (float *)t->data; }
static inline int32_t *cpu_i32(const fl_tensor *t) { return (int32_t *)t->data; }

/* Logs "cpu op <op>: shape check failed: <cond>" and asserts (debug). */
void cpu_shape_error(const char *op, const char *cond);

/* The products oneDNN's sgemm runs slowly, and what runs them instead
   (cpu_blas.c): where oneDNN runs AVX2 kernels, weight gradients Aᵀ·B on
   OpenBLAS and narrow products on BLIS (where the library's OpenMP build is
   installed); where it runs AVX-512 ones, tall weight gradients as (Bᵀ·A)ᵀ,
   and narrow A·Bᵀ and Aᵀ·B of a few hundred rows in panels of C, one per
   thread (FFNLAB_CPU_GEMM_TN, FFNLAB_CPU_GEMM_NARROW and
   FFNLAB_CPU_GEMM_PANELS force a path). cpu_blas_choose reads the
   environment (an error for a bad value or a forced library that is
   missing); the others choose on first use if it was not called.
   cpu_blas_describe: ", weight gradients (Aᵀ·B) on OpenBLAS 0.3.21 (Zen),
   narrow products (N 224-256) on BLIS 0.9.0 (zen3)", ", tall weight
   gradients (Aᵀ·B, M >= 1024) as (Bᵀ·A)ᵀ, A·Bᵀ (N 128-512) and Aᵀ·B (M
   192-384) in panels, one per thread", or "".
   cpu_blas_sgemm runs C = alpha op(A) op(B) + beta C (row-major) and returns
   1 when it is one of those products, else 0 (then nothing was done). */
fl_status cpu_blas_choose(fl_error *err);
void cpu_blas_describe(char *out, size_t n);
int cpu_blas_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Returns from the calling op (with the optional value) when cond is false. */
#define CPU_CHECK(cond, ...)                          \
    do {                                              \
        if (!(cond)) {                                \
            cpu_shape_error(__func__, #cond);         \
            return __VA_ARGS__;                       \
        }                                             \
    } while (0)

/* Below this many elements an elementwise op stays on one thread: starting
   the team costs more than the work. */
#define CPU_PAR_MIN 32768

/* for (int64_t i = 0; i < n; i++) { BODY }: the items one per thread when
   `spread` (each GEMM inside single-threaded), else in turn outside any
   parallel region, so that each GEMM threads itself on the process's thread
   pool. For loops whose body opens OpenMP regions (oneDNN's GEMMs), where
   `omp parallel for if (spread)` would not do: a region opened inside an
   inactive one is nested, and libgomp gives a nested team threads of its
   own, which spin beside the top-level pool's idle ones (3 threads on 2
   cores). Measured: MoE decoding at batch 1, one busy expert per grouped
   GEMM, 80 instead of 1600 tokens/s on 2 cores. */
#define CPU_FOR_EACH(spread, i, n, ...)                               \
    do {                                                              \
        if (spread) {                                                 \
            _Pragma("omp parallel for schedule(dynamic, 1)")          \
            for (int64_t i = 0; i < (n); i++) { __VA_ARGS__ }         \
        } else {                                                      \
            for (int64_t i = 0; i < (n); i++) { __VA_ARGS__ }         \
        }                                                             \
    } while (0)

/* ------------------------------------------------------------------ math */

/* f32 -> bf16 bits, round to nearest even; NaN stays NaN (quiet), inf
   stays inf. Branch-free so loops over it vectorise. Every bf16 the CPU
   backend writes (GEMM inputs, bf16 outputs of layer norm, activation, mul,
   fill) is rounded here. */
static inline uint16_t cpu_bf16(float f) {
    const uint32_t u = fl_f2u(f);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* bf16 bits -> f32 (exact) */
static inline float cpu_bf16_f32(uint16_t h) { return fl_u2f((uint32_t)h << 16); }

/* exp(x) for float, inlined so loops over it vectorise (libm's expf is a
   call per element). Range reduction x = n ln2 + r, |r| <= ln2/2, then a
   degree-7 Taylor polynomial: relative error about 1e-7, like expf.
   Tails: x is clamped to [-87, 89]; below -87 the result is set to 0
   (exp(-87) is the smallest normal result, and computing denormals costs a
   microcode assist per instruction on Intel); 2^n is applied as two factors,
   so exp(89) overflows to inf. exp(-inf) = 0, exp(+inf) = inf, NaN stays NaN.
   Every test is integer bit arithmetic, never a float compare: GCC turns a
   float clamp into a branch (it specialises the clamped value and, under
   -ftrapping-math, cannot merge the paths back), and a branch stops the
   loop from vectorising. */
static inline float cpu_expf(float x) {
    const uint32_t u = fl_f2u(x);
    const uint32_t neg = 0u - (u >> 31); /* all ones when x < 0 */
    /* magnitude clamp as an unsigned min on the bits, bound by sign */
    const uint32_t bound = (neg & 0xc2ae0000u) | (~neg & 0x42b20000u); /* -87 | 89 */
    const float xc = fl_u2f(u < bound ? u : bound);
    int32_t ni;
    const float p = fl_exp_core(xc, &ni);
    /* n is in [-126, 129]: each half is a normal exponent */
    const int32_t n1 = ni >> 1, n2 = ni - n1;
    const float y =
        p * fl_u2f((uint32_t)(n1 + 127) << 23) * fl_u2f((uint32_t)(n2 + 127) << 23);
    const uint32_t tiny = 0u - (uint32_t)(u > 0xc2ae0000u); /* x < -87 (or -NaN) */
    const uint32_t nan = 0u - (uint32_t)((u & 0x7fffffffu) > 0x7f800000u);
    return fl_u2f((fl_f2u(y) & ~tiny) | (nan & 0x7fc00000u));
}

/* 1 / (1 + exp(-x)) */
static inline float cpu_sigmoid(float x) { return 1.0f / (1.0f + cpu_expf(-x)); }

/* ------------------------------------------------------- cpu_backend.c */

int cpu_threads(void);

/* ---------------------------------------------------------- cpu_gemm.c */

void cpu_gemm(int transA, int transB, float alpha, const fl_tensor *A, const fl_tensor *B,
              float beta, fl_tensor *C);
void cpu_gemm_batched(int transA, int transB, float alpha, const fl_tensor *A,
                      const fl_tensor *B, float beta, fl_tensor *C);
void cpu_gemm_grouped(int transW, float alpha, const fl_tensor *A, const fl_tensor *W,
                      const int64_t *off, int G, float beta, fl_tensor *C);
void cpu_gemm_grouped_wgrad(float alpha, const fl_tensor *A, const fl_tensor *dY,
                            const int64_t *off, int G, float beta, fl_tensor *dW);
/* Raw row-major sgemm: C[M,N] = alpha op(A) op(B) + beta C with leading
   dimensions; handles empty sizes (K = 0 scales C by beta). */
void cpu_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc);

/* --------------------------------------------------- cpu_elementwise.c */

void cpu_add_bias(fl_tensor *y, const fl_tensor *b);
void cpu_sum_rows(const fl_tensor *x, float beta, fl_tensor *out);
void cpu_activation(int act, const fl_tensor *x, fl_tensor *y);
void cpu_activation_backward(int act, const fl_tensor *x, const fl_tensor *dy, fl_tensor *dx);
void cpu_bias_activation(int act, const fl_tensor *x, const fl_tensor *b, fl_tensor *y);
void cpu_bias_activation_backward(int act, const fl_tensor *x, const fl_tensor *b, const fl_tensor *dy, fl_tensor *dx,
                                  fl_tensor *db);
void cpu_bias_activation_grouped(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                 fl_tensor *y);
void cpu_bias_activation_grouped_backward(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off,
                                          int G, const fl_tensor *dy, fl_tensor *dx, fl_tensor *db);
void cpu_mul(const fl_tensor *a, const fl_tensor *b, fl_tensor *out);
void cpu_axpby(float alpha, const fl_tensor *x, float beta, fl_tensor *y);
void cpu_fill(fl_tensor *x, float v);
void cpu_copy(const fl_tensor *src, fl_tensor *dst);
void cpu_scale_rows(const fl_tensor *x, const fl_tensor *s, fl_tensor *y);
void cpu_row_dot(const fl_tensor *a, const fl_tensor *b, fl_tensor *out);
void cpu_to_host(void *dst, const fl_tensor *src, size_t bytes);
void cpu_from_host(fl_tensor *dst, const void *src, size_t bytes);
void cpu_permute01(const fl_tensor *x, int64_t A, int64_t B, int64_t C, fl_tensor *y);
void cpu_hash_ids(const fl_tensor *ids, uint64_t seed, int64_t buckets, fl_tensor *out);

/* ----------------------------------------------------------- cpu_rng.c */

void cpu_rng_normal(fl_tensor *x, uint64_t key, uint64_t offset, float mean, float std);
void cpu_rng_uniform(fl_tensor *x, uint64_t key, uint64_t offset, float lo, float hi);
void cpu_dropout(const fl_tensor *x, float p, uint64_t key, fl_tensor *y);

/* ---------------------------------------------------------- cpu_rows.c */

/* y[n] = softmax(x[n]) (y may alias x); a row of only -inf gives zeros */
void cpu_softmax_row(const float *x, float *y, int64_t n);

void cpu_softmax(const fl_tensor *x, fl_tensor *y);
void cpu_softmax_backward(const fl_tensor *y, const fl_tensor *dy, fl_tensor *dx);
void cpu_logsumexp(const fl_tensor *x, fl_tensor *out);
void cpu_topk(const fl_tensor *x, int k, fl_tensor *vals, fl_tensor *idx);
void cpu_gather_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst);
void cpu_scatter_add_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst);
void cpu_embedding_bag(const fl_tensor *table, const fl_tensor *idx, const fl_tensor *w,
                       fl_tensor *out);
void cpu_embedding_bag_backward(const fl_tensor *dout, const fl_tensor *table,
                                const fl_tensor *idx, const fl_tensor *w, fl_tensor *dtable,
                                fl_tensor *dw);
void cpu_layernorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps,
                   fl_tensor *y, fl_tensor *mean, fl_tensor *rstd);
void cpu_layernorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean,
                            const fl_tensor *rstd, const fl_tensor *dy, fl_tensor *dx,
                            fl_tensor *dg, fl_tensor *db);
void cpu_bucket_sort(const fl_tensor *keys, int G, fl_tensor *perm, int64_t *off);
/* dst[idx[e],:] += w[e] * src[e / k,:] for e < n_idx (w NULL: 1); indices
   outside [0, R) are skipped. Deterministic: threads own column ranges. */
void cpu_scatter_add(const float *src, int64_t k, const int32_t *idx, const float *w,
                     int64_t n_idx, float *dst, int64_t R, int64_t D);

/* --------------------------------------------------------- cpu_model.c */

void cpu_embed(const fl_tensor *wte, const fl_tensor *wpe, const fl_tensor *tokens,
               fl_tensor *x);
void cpu_embed_backward(const fl_tensor *dx, const fl_tensor *tokens, fl_tensor *dwte,
                        fl_tensor *dwpe);
double cpu_cross_entropy(const fl_tensor *logits, int64_t classes, const fl_tensor *targets, fl_tensor *dlogits,
                         float scale, int64_t *count);
void cpu_adamw(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v, float lr,
               float beta1, float beta2, float eps, float weight_decay, float grad_scale, int64_t t);
void cpu_adamw_rows(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v,
                    const int32_t *rows, int64_t n_rows, float lr, float beta1, float beta2,
                    float eps, float weight_decay, float grad_scale, int64_t t);
double cpu_sumsq(const fl_tensor *x);
double cpu_sumsq_many(const fl_tensor *const *xs, int n);
double cpu_sumsq_rows(const fl_tensor *x, const int32_t *rows, int64_t n_rows);
void cpu_zero_rows(fl_tensor *x, const int32_t *rows, int64_t n_rows);
int cpu_nonfinite(const fl_tensor *x);

/* ---------------------------------------------------- cpu_norm_groups.c */

void cpu_batchnorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps,
                   float momentum, int train, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd,
                   fl_tensor *run_mean, fl_tensor *run_var);
void cpu_batchnorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean,
                            const fl_tensor *rstd, const fl_tensor *dy, int batch, fl_tensor *dx,
                            fl_tensor *dg, fl_tensor *db);
void cpu_layernorm_groups(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *b,
                          float eps, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd);
void cpu_layernorm_groups_backward(const fl_tensor *x, int G, const fl_tensor *g,
                                   const fl_tensor *mean, const fl_tensor *rstd,
                                   const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg,
                                   fl_tensor *db);

/* ----------------------------------------------------- cpu_attention.c */

int64_t cpu_attention_saved_numel(int64_t B, int64_t T, int64_t C, int n_head);
void cpu_attention(const fl_tensor *qkv, int n_head, const fl_attn_mask *mask, fl_tensor *out, fl_tensor *att);
void cpu_attention_backward(const fl_tensor *qkv, const fl_tensor *out, const fl_tensor *att,
                            int n_head, const fl_attn_mask *mask, const fl_tensor *dout, fl_tensor *dqkv);
void cpu_kv_append(const fl_tensor *qkv, int64_t pos, fl_tensor *k_cache, fl_tensor *v_cache);
void cpu_attention_decode(const fl_tensor *qkv, const fl_tensor *k_cache, const fl_tensor *v_cache,
                          int64_t t, int64_t window, fl_tensor *out);

#endif
