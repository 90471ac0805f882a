/*
 * backends/cuda/cu_elementwise.cu — elementwise ops of the CUDA backend:
 * bias add, activations and their gradients (and both fused: bias and
 * activation in one pass, one bias per group of rows too), mul / axpby /
 * fill / copy, row scaling, the counter-based RNG fills and host copies.
 *
 * Every kernel is a grid-stride loop over the flat index, so one launch
 * shape serves any size, and an output may alias its input exactly (each
 * element is read and written by the same thread), as the contract allows.
 *
 * The formulas are the CPU backend's, written the same way (GELU as
 * x * sigmoid(2u), the tanh form), with the accurate expf: results agree to
 * a few ulp. The RNG fills call the same fl_rng_* functions as the CPU
 * (ffnlab/rng.h compiles for the device), so uniform fills are bit-identical
 * and normal fills agree to the last bits of logf/cosf; the scale-and-shift
 * uses explicit rounding (no FMA contraction) to stay bit-identical.
 */
#include "cu_bf16.cuh"
#include "cu_ops.h"
#include "row_groups.h"

#include "ffnlab/rng.h"

#define GELU_C 0.7978845608028654f
#define GELU_A 0.044715f

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

/* GELU as the CPU computes it (backends/cpu/cpu_elementwise.c): the exp on x
   clamped to [-9, 9] (NaN and inf go to +-9), x below -9 taken as -9, so
   GELU(-inf) is -1.3e-28 rather than -inf * 0, and the gradient NaN at
   every non-finite x. */
__device__ __forceinline__ float gelu_clamp_f(float x) { return copysignf(fminf(fabsf(x), 9.0f), x); }

/* e = exp(-2u) for |xc| <= 9 */
__device__ __forceinline__ float gelu_exp_f(float xc) {
    return expf(xc * (-2.0f * GELU_C - (2.0f * GELU_C * GELU_A) * xc * xc));
}

__device__ __forceinline__ float gelu_f(float x) {
    const float xc = gelu_clamp_f(x);
    return (x < 0.0f ? xc : x) / (1.0f + gelu_exp_f(xc));
}

/* d/dx [x s], s = 1 / (1 + e): s (1 + 2u' x e s), u' = sqrt(2/pi) (1 + 3 a x^2),
   on the clamped x; + (x - x) is 0, or NaN for a non-finite x */
__device__ __forceinline__ float gelu_grad_f(float x) {
    const float xc = gelu_clamp_f(x), e = gelu_exp_f(xc), s = 1.0f / (1.0f + e);
    const float du2 = 2.0f * GELU_C * (1.0f + 3.0f * GELU_A * xc * xc);
    return s * (1.0f + du2 * xc * e * s) + (x - x);
}

/* d/dx [x s(x)] = s (1 + x (1 - s)) */
__device__ __forceinline__ float silu_grad_f(float x) {
    const float s = sigmoid_f(x);
    return s * (1.0f + x * (1.0f - s));
}

static int same_f32(const fl_tensor *a, const fl_tensor *b) {
    return a->dtype == FL_F32 && b->dtype == FL_F32 && fl_numel(a) == fl_numel(b);
}

/* x f32 and y f32 or (not aliasing x) bf16, the same number of values */
static int f32_to_f32_or_bf16(const fl_tensor *x, const fl_tensor *y) {
    return x->dtype == FL_F32 && fl_numel(x) == fl_numel(y) &&
           (y->dtype == FL_F32 || (y->dtype == FL_BF16 && y->data != x->data));
}

/* ------------------------------------------------------------ bias */

/* y[N,M] += b[M] */
static __global__ void k_add_bias(float *y, const float *b, int64_t n, int64_t M) {
    CU_LOOP(i, n) y[i] += b[i % M];
}

void cu_add_bias(fl_tensor *y, const fl_tensor *b) {
    const int64_t N = cu_rows(y), M = cu_cols(y);
    CU_CHECK(y->dtype == FL_F32 && b->dtype == FL_F32 && fl_numel(b) == M);
    if (N * M == 0) return;
    CU_LAUNCH(cu_grid(N * M), CU_THREADS, 0, k_add_bias)(cu_f32(y), cu_f32(b), N * M, M);
    CU_LAUNCHED("k_add_bias");
}

/* ------------------------------------------------------------ activations */

__device__ __forceinline__ float act_f(int act, float v) {
    return act == FL_ACT_GELU ? gelu_f(v) : act == FL_ACT_RELU ? (v > 0.0f ? v : 0.0f)
         : act == FL_ACT_SILU ? v * sigmoid_f(v) : act == FL_ACT_SOFTPLUS ? (v > 20.0f ? v : log1pf(expf(v)))
         : v;
}

/* g * act'(v) */
__device__ __forceinline__ float act_grad_f(int act, float v, float g) {
    return act == FL_ACT_GELU ? g * gelu_grad_f(v) : act == FL_ACT_RELU ? (v > 0.0f ? g : 0.0f)
         : act == FL_ACT_SILU ? g * silu_grad_f(v) : act == FL_ACT_SOFTPLUS ? g * sigmoid_f(v) : g;
}

/* y = act(x); Out float, or uint16_t for a bf16 y (the f32 result rounded) */
template <class Out> static __global__ void k_activation(int act, const float *x, Out *y, int64_t n) {
    CU_LOOP(i, n) cu_store(&y[i], act_f(act, x[i]));
}

void cu_activation(int act, const fl_tensor *x, fl_tensor *y) {
    CU_CHECK(f32_to_f32_or_bf16(x, y));
    CU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    const int64_t n = fl_numel(x);
    if (n == 0 || (act == FL_ACT_IDENTITY && x->data == y->data)) return;
    if (y->dtype == FL_BF16)
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_activation<uint16_t>)(act, cu_f32(x), (uint16_t *)y->data, n);
    else
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_activation<float>)(act, cu_f32(x), cu_f32(y), n);
    CU_LAUNCHED("k_activation");
}

static __global__ void k_activation_backward(int act, const float *x, const float *dy, float *dx, int64_t n) {
    CU_LOOP(i, n) dx[i] = act_grad_f(act, x[i], dy[i]);
}

void cu_activation_backward(int act, const fl_tensor *x, const fl_tensor *dy, fl_tensor *dx) {
    CU_CHECK(same_f32(x, dy) && same_f32(x, dx));
    CU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    const int64_t n = fl_numel(x);
    if (n == 0 || (act == FL_ACT_IDENTITY && dy->data == dx->data)) return;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_activation_backward)(act, cu_f32(x), cu_f32(dy), cu_f32(dx), n);
    CU_LAUNCHED("k_activation_backward");
}

/* ------------------------------------------------------------ bias + activation */

/* The plain ops are the grouped ones with one group of all rows, which
   neither uploads offsets nor searches them. */

/* Flat element i of rows of M: its bias b[g][i % M], g its row's group
   (off: device, G+1; NULL: one group). */
__device__ __forceinline__ float bias_of(const float *b, const int64_t *off, int G, int64_t i, int64_t M) {
    if (!off) return b[i % M];
    const int64_t r = i / M;
    return b[(int64_t)fl_row_group(off, G, r) * M + (i - r * M)];
}

/* y[n values in rows of M] = act(x + b[g]) */
template <class Out>
static __global__ void k_bias_activation(int act, const float *x, const float *b, const int64_t *off, int G, Out *y,
                                         int64_t n, int64_t M) {
    CU_LOOP(i, n) cu_store(&y[i], act_f(act, x[i] + bias_of(b, off, G, i, M)));
}

static __global__ void k_bias_activation_backward(int act, const float *x, const float *b, const int64_t *off,
                                                  int G, const float *dy, float *dx, int64_t n, int64_t M) {
    CU_LOOP(i, n) dx[i] = act_grad_f(act, x[i] + bias_of(b, off, G, i, M), dy[i]);
}

/* Rows 0..off[G] (or all N) of y = act(x + b[g]); shapes checked. */
static void bias_activation_rows(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                 fl_tensor *y) {
    const int64_t M = cu_cols(x), n = (off ? off[G] : cu_rows(x)) * M;
    if (n == 0) return;
    const int64_t *d_off = off ? (const int64_t *)cu_upload(off, (size_t)(G + 1) * sizeof *off) : NULL;
    if (off && !d_off) return;
    if (y->dtype == FL_BF16)
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_bias_activation<uint16_t>)(act, cu_f32(x), cu_f32(b), d_off, G,
                                                                         (uint16_t *)y->data, n, M);
    else
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_bias_activation<float>)(act, cu_f32(x), cu_f32(b), d_off, G,
                                                                      cu_f32(y), n, M);
    CU_LAUNCHED("k_bias_activation");
}

/* dx, then db += its column sums per group (the deterministic two-stage sum
   of sum_rows): two passes, where the CPU makes one, to reuse that sum. The
   identity in place has no first pass. The offsets go to the device once,
   for both. */
static void bias_activation_backward_rows(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                          const fl_tensor *dy, fl_tensor *dx, fl_tensor *db) {
    const int64_t N = cu_rows(x), M = cu_cols(x), n = (off ? off[G] : N) * M;
    if (n == 0) return;
    const int64_t *d_off = off ? (const int64_t *)cu_upload(off, (size_t)(G + 1) * sizeof *off) : NULL;
    if (off && !d_off) return;
    if (act != FL_ACT_IDENTITY || dx->data != dy->data) {
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_bias_activation_backward)(act, cu_f32(x), cu_f32(b), d_off, G,
                                                                        cu_f32(dy), cu_f32(dx), n, M);
        if (!CU_LAUNCHED("k_bias_activation_backward")) return;
    }
    if (!db) return;
    if (off) cu_sum_rows_grouped_raw(cu_f32(dx), off, d_off, G, N, M, 1.0f, cu_f32(db));
    else cu_sum_rows_raw(cu_f32(dx), N, M, 1.0f, cu_f32(db));
}

void cu_bias_activation(int act, const fl_tensor *x, const fl_tensor *b, fl_tensor *y) {
    CU_CHECK(f32_to_f32_or_bf16(x, y) && b->dtype == FL_F32 && fl_numel(b) == cu_cols(x));
    CU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    bias_activation_rows(act, x, b, NULL, 1, y);
}

void cu_bias_activation_backward(int act, const fl_tensor *x, const fl_tensor *b, const fl_tensor *dy, fl_tensor *dx,
                                 fl_tensor *db) {
    const int64_t M = cu_cols(x);
    CU_CHECK(same_f32(x, dy) && same_f32(x, dx) && b->dtype == FL_F32 && fl_numel(b) == M);
    CU_CHECK(!db || (db->dtype == FL_F32 && fl_numel(db) == M));
    CU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    bias_activation_backward_rows(act, x, b, NULL, 1, dy, dx, db);
}

void cu_bias_activation_grouped(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                fl_tensor *y) {
    CU_CHECK(f32_to_f32_or_bf16(x, y) && fl_row_groups_ok(off, G, cu_rows(x)));
    CU_CHECK(b->dtype == FL_F32 && fl_numel(b) == (int64_t)G * cu_cols(x));
    CU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    bias_activation_rows(act, x, b, off, G, y);
}

void cu_bias_activation_grouped_backward(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                         const fl_tensor *dy, fl_tensor *dx, fl_tensor *db) {
    const int64_t GM = (int64_t)G * cu_cols(x);
    CU_CHECK(same_f32(x, dy) && same_f32(x, dx) && fl_row_groups_ok(off, G, cu_rows(x)));
    CU_CHECK(b->dtype == FL_F32 && fl_numel(b) == GM && (!db || (db->dtype == FL_F32 && fl_numel(db) == GM)));
    CU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    bias_activation_backward_rows(act, x, b, off, G, dy, dx, db);
}

/* ------------------------------------------------------------ mul, axpby */

/* o = a * b; Out float, or uint16_t for a bf16 o (the f32 product rounded) */
template <class Out> static __global__ void k_mul(const float *a, const float *b, Out *o, int64_t n) {
    CU_LOOP(i, n) cu_store(&o[i], a[i] * b[i]);
}

void cu_mul(const fl_tensor *a, const fl_tensor *b, fl_tensor *out) {
    CU_CHECK(same_f32(a, b) && f32_to_f32_or_bf16(a, out));
    CU_CHECK(out->dtype == FL_F32 || out->data != b->data);
    const int64_t n = fl_numel(a);
    if (n == 0) return;
    if (out->dtype == FL_BF16)
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_mul<uint16_t>)(cu_f32(a), cu_f32(b), (uint16_t *)out->data, n);
    else
        CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_mul<float>)(cu_f32(a), cu_f32(b), cu_f32(out), n);
    CU_LAUNCHED("k_mul");
}

/* y = alpha x + beta y; beta = 0 does not read y (NaN there does not survive) */
static __global__ void k_axpby(float alpha, const float *x, float beta, float *y, int64_t n) {
    if (beta == 0.0f) {
        CU_LOOP(i, n) y[i] = alpha * x[i];
    } else {
        CU_LOOP(i, n) y[i] = alpha * x[i] + beta * y[i];
    }
}

void cu_axpby(float alpha, const fl_tensor *x, float beta, fl_tensor *y) {
    CU_CHECK(same_f32(x, y));
    const int64_t n = fl_numel(x);
    if (n == 0) return;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_axpby)(alpha, cu_f32(x), beta, cu_f32(y), n);
    CU_LAUNCHED("k_axpby");
}

/* ------------------------------------------------------------ fill, copy */

template <class T> static __global__ void k_fill(T *p, T v, int64_t n) {
    CU_LOOP(i, n) p[i] = v;
}

/* x = v everywhere, converted to x's dtype */
void cu_fill(fl_tensor *x, float v) {
    const int64_t n = fl_numel(x);
    if (n == 0) return;
    const unsigned grid = cu_grid(n);
    switch (x->dtype) {
    case FL_F32: CU_LAUNCH(grid, CU_THREADS, 0, k_fill<float>)(cu_f32(x), v, n); break;
    case FL_BF16: CU_LAUNCH(grid, CU_THREADS, 0, k_fill<uint16_t>)((uint16_t *)x->data, cu_bf16(v), n); break;
    case FL_I32: CU_LAUNCH(grid, CU_THREADS, 0, k_fill<int32_t>)(cu_i32(x), (int32_t)v, n); break;
    case FL_I64: CU_LAUNCH(grid, CU_THREADS, 0, k_fill<int64_t>)((int64_t *)x->data, (int64_t)v, n); break;
    case FL_U8: CU_OK(cudaMemsetAsync(x->data, (int)(uint8_t)v, (size_t)n, g_cu.stream)); return;
    default: cu_shape_error(__func__, "unknown dtype"); return;
    }
    CU_LAUNCHED("k_fill");
}

/* dst = src (same numel and dtype), device to device */
void cu_copy(const fl_tensor *src, fl_tensor *dst) {
    CU_CHECK(src->dtype == dst->dtype && fl_numel(src) == fl_numel(dst));
    const size_t bytes = fl_nbytes(src);
    if (bytes == 0 || src->data == dst->data) return;
    CU_OK(cudaMemcpyAsync(dst->data, src->data, bytes, cudaMemcpyDeviceToDevice, g_cu.stream));
}

/* ------------------------------------------------------------ rows */

/* y[N,M] = x[N,M] * s[N] */
static __global__ void k_scale_rows(const float *x, const float *s, float *y, int64_t n, int64_t M) {
    CU_LOOP(i, n) y[i] = x[i] * s[i / M];
}

void cu_scale_rows(const fl_tensor *x, const fl_tensor *s, fl_tensor *y) {
    const int64_t N = cu_rows(x), M = cu_cols(x);
    CU_CHECK(same_f32(x, y) && s->dtype == FL_F32 && fl_numel(s) == N);
    if (N * M == 0) return;
    CU_LAUNCH(cu_grid(N * M), CU_THREADS, 0, k_scale_rows)(cu_f32(x), cu_f32(s), cu_f32(y), N * M, M);
    CU_LAUNCHED("k_scale_rows");
}

/* ------------------------------------------------------------ RNG */

/* Element i gets counter offset + i, as on the CPU. */
static __global__ void k_rng_normal(float *x, int64_t n, uint64_t key, uint64_t offset, float mean, float std) {
    CU_LOOP(i, n) x[i] = __fadd_rn(__fmul_rn(fl_rng_normal(key, offset + (uint64_t)i), std), mean);
}

static __global__ void k_rng_uniform(float *x, int64_t n, uint64_t key, uint64_t offset, float lo, float w) {
    CU_LOOP(i, n) x[i] = __fadd_rn(__fmul_rn(fl_rng_uniform(key, offset + (uint64_t)i), w), lo);
}

void cu_rng_normal(fl_tensor *x, uint64_t key, uint64_t offset, float mean, float std) {
    CU_CHECK(x->dtype == FL_F32);
    const int64_t n = fl_numel(x);
    if (n == 0) return;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_rng_normal)(cu_f32(x), n, key, offset, mean, std);
    CU_LAUNCHED("k_rng_normal");
}

void cu_rng_uniform(fl_tensor *x, uint64_t key, uint64_t offset, float lo, float hi) {
    CU_CHECK(x->dtype == FL_F32);
    const int64_t n = fl_numel(x);
    if (n == 0) return;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_rng_uniform)(cu_f32(x), n, key, offset, lo, hi - lo);
    CU_LAUNCHED("k_rng_uniform");
}

/* ------------------------------------------------------------ dropout */

static __global__ void k_dropout(const float *x, float *y, int64_t n, float p, float keep, uint64_t key) {
    CU_LOOP(i, n) y[i] = fl_rng_uniform(key, (uint64_t)i) < p ? 0.0f : x[i] * keep;
}

void cu_dropout(const fl_tensor *x, float p, uint64_t key, fl_tensor *y) {
    CU_CHECK(same_f32(x, y) && p >= 0.0f && p < 1.0f);
    const int64_t n = fl_numel(x);
    if (n == 0) return;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_dropout)(cu_f32(x), cu_f32(y), n, p, 1.0f / (1.0f - p), key);
    CU_LAUNCHED("k_dropout");
}

/* ------------------------------------------------------------ hash_ids */

static __global__ void k_hash_ids(const int32_t *ids, int32_t *out, int64_t n, uint64_t seed, int64_t buckets) {
    CU_LOOP(i, n) out[i] = ids[i] < 0 ? -1 : (int32_t)(fl_rng_bits(seed, (uint64_t)ids[i]) % (uint64_t)buckets);
}

void cu_hash_ids(const fl_tensor *ids, uint64_t seed, int64_t buckets, fl_tensor *out) {
    CU_CHECK(ids->dtype == FL_I32 && out->dtype == FL_I32 && fl_numel(out) == fl_numel(ids) && buckets >= 1);
    const int64_t n = fl_numel(ids);
    if (n == 0) return;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_hash_ids)(cu_i32(ids), cu_i32(out), n, seed, buckets);
    CU_LAUNCHED("k_hash_ids");
}

/* ------------------------------------------------------------ permute */

/* y[B,A,C] = x[A,B,C], one thread per word of W (uint32_t for f32/i32/i64,
   uint16_t for bf16). */
template <class W> static __global__ void k_permute01(const W *x, W *y, int64_t A, int64_t B, int64_t Cw) {
    CU_LOOP(i, A * B * Cw) {
        const int64_t c = i % Cw, ab = i / Cw, b = ab % B, a = ab / B;
        y[(b * A + a) * Cw + c] = x[i];
    }
}

void cu_permute01(const fl_tensor *x, int64_t A, int64_t B, int64_t C, fl_tensor *y) {
    const size_t es = fl_dtype_size(x->dtype);
    CU_CHECK(x->dtype == y->dtype && fl_numel(x) >= A * B * C && fl_numel(y) >= A * B * C);
    CU_CHECK(x->data != y->data || A * B * C == 0);
    if (A * B * C == 0) return;
    if (es % 4 == 0) {
        const int64_t Cw = C * (int64_t)(es / 4);
        CU_LAUNCH(cu_grid(A * B * Cw), CU_THREADS, 0, k_permute01<uint32_t>)((const uint32_t *)x->data,
                                                                         (uint32_t *)y->data, A, B, Cw);
    } else {
        const int64_t Cw = C * (int64_t)(es / 2);
        CU_LAUNCH(cu_grid(A * B * Cw), CU_THREADS, 0, k_permute01<uint16_t>)((const uint16_t *)x->data,
                                                                         (uint16_t *)y->data, A, B, Cw);
    }
    CU_LAUNCHED("k_permute01");
}

/* ------------------------------------------------------------ host copies */

/* Synchronous: the bytes are on the host when this returns. */
void cu_to_host(void *dst, const fl_tensor *src, size_t bytes) {
    CU_CHECK(bytes <= fl_nbytes(src));
    if (bytes) CU_OK(cudaMemcpy(dst, src->data, bytes, cudaMemcpyDeviceToHost));
}

/* Returns once src may be reused; ordered after the work queued before. */
void cu_from_host(fl_tensor *dst, const void *src, size_t bytes) {
    CU_CHECK(bytes <= fl_nbytes(dst));
    if (bytes) CU_OK(cudaMemcpy(dst->data, src, bytes, cudaMemcpyHostToDevice));
}
