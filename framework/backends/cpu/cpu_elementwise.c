/*
 * backends/cpu/cpu_elementwise.c — elementwise and per-row-scalar ops of the
 * CPU backend: bias add and its gradient, activations and their gradients
 * (and both fused: bias and activation in one pass, one bias per group of
 * rows too), mul / axpby / fill / copy, row scaling and row dot products,
 * host copies. The counter-based RNG fills and dropout are in cpu_rng.c.
 *
 * Pattern: the flat index range is cut into fixed chunks shared out by an
 * OpenMP loop (one thread below CPU_PAR_MIN elements), and each chunk runs an
 * `omp simd` loop. `omp simd` asserts the lanes are independent, which holds
 * for elementwise work even when the output aliases an input exactly (the
 * header allows that), so no runtime alias checks fall back to scalar code.
 */
#include "cpu.h"
#include "row_groups.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#define CHUNK 16384

static inline int64_t n_chunks(int64_t n) { return (n + CHUNK - 1) / CHUNK; }
static inline int64_t chunk_end(int64_t c, int64_t n) {
    return (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
}

/* GELU, tanh form: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
   0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + e), e = exp(-2u): one exp and
   no cancellation. The exp's argument comes from x clamped to [-9, 9]:
   there -2u is within [-66.4, 66.4], so e needs none of cpu_expf's range
   checks (which took 40% of GELU's time), and outside it sigmoid(2u) is 1
   or below 2e-29 in f32 anyway. Below -9 x itself is taken as -9 as well
   (GELU is then -1.3e-28, zero to within 2e-28): the unclamped x times the
   tiny s would be far from it. So GELU(+inf) = inf, GELU(-inf) = -1.3e-28,
   GELU(NaN) = NaN, and the gradient is NaN at every non-finite x. The
   CUDA backend computes the same (cu_elementwise.cu). */
#define GELU_C 0.7978845608028654f
#define GELU_A 0.044715f
#define GELU_X_MAX 0x41100000u /* 9.0f */

/* x with its magnitude clamped to 9, on the bits (NaN and inf go to +-9);
   integer ops only, so the loops around it vectorise (see cpu_expf) */
static inline float gelu_clamp(float x) {
    const uint32_t u = fl_f2u(x), m = u & 0x7fffffffu;
    return fl_u2f((u & 0x80000000u) | (m < GELU_X_MAX ? m : GELU_X_MAX));
}

/* e = exp(-2u) for |xc| <= 9: a normal float, 2^n in one factor */
static inline float gelu_exp(float xc) {
    const float t = xc * (-2.0f * GELU_C - (2.0f * GELU_C * GELU_A) * xc * xc);
    int32_t n;
    const float p = fl_exp_core(t, &n);
    return p * fl_u2f((uint32_t)(n + 127) << 23);
}

static inline float gelu(float x) {
    const float xc = gelu_clamp(x);
    const uint32_t u = fl_f2u(x);
    const float xs = fl_u2f(u - 0x80000000u <= 0x7f800000u ? fl_f2u(xc) : u); /* x < 0, not NaN: xc */
    return xs / (1.0f + gelu_exp(xc));
}

/* d/dx [x s], s = 1 / (1 + e): s + x s (1 - s) 2u' = s (1 + 2u' x e s),
   u' = sqrt(2/pi) (1 + 3 a x^2), on the clamped x (beyond 9 it is 1 or 0 to
   f32); + (x - x) is 0, or NaN for a non-finite x */
static inline float gelu_grad(float x) {
    const float xc = gelu_clamp(x), e = gelu_exp(xc), s = 1.0f / (1.0f + e);
    const float du2 = 2.0f * GELU_C * (1.0f + 3.0f * GELU_A * xc * xc);
    return s * (1.0f + du2 * xc * e * s) + (x - x);
}

/* d/dx [x s(x)] = s (1 + x (1 - s)) */
static inline float silu_grad(float x) {
    float s = cpu_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

static int same_f32(const fl_tensor *a, const fl_tensor *b) {
    return a->dtype == FL_F32 && b->dtype == FL_F32 && fl_numel(a) == fl_numel(b);
}

/* y[N,M] += b[M] */
void cpu_add_bias(fl_tensor *y, const fl_tensor *b) {
    const int64_t N = cpu_rows(y), M = cpu_cols(y);
    CPU_CHECK(y->dtype == FL_F32 && b->dtype == FL_F32 && fl_numel(b) == M);
    float *py = cpu_f32(y);
    const float *pb = cpu_f32(b);
#pragma omp parallel for schedule(static) if (N * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float *r = py + i * M;
#pragma omp simd
        for (int64_t j = 0; j < M; j++) r[j] += pb[j];
    }
}

/* One row's share of a column sum: whatever row i's work is, its M values
   are added into acc[M]. */
typedef void (*row_into_sums)(const void *job, int64_t i, double *acc);

/* out[M] = beta out + the sum over rows i < N of what row(job, i) adds
   (beta 0: out is not read). Each thread takes a range of rows into its own
   double row, then the rows are added in thread order: deterministic for a
   fixed thread count. */
static void column_sums(int64_t N, int64_t M, row_into_sums row, const void *job, float beta, float *po) {
    const int nt = N * M > CPU_PAR_MIN ? cpu_threads() : 1;
    double *part = calloc((size_t)nt * (size_t)M, sizeof *part);
    if (!part) {
        cpu_shape_error(__func__, "out of memory for partial sums");
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        double *acc = part + (int64_t)t * M;
        for (int64_t i = N * t / T; i < N * (t + 1) / T; i++) row(job, i, acc);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t j = 0; j < M; j++) {
            double s = 0;
            for (int k = 0; k < T; k++) s += part[(int64_t)k * M + j];
            po[j] = (float)(beta == 0.0f ? s : beta * (double)po[j] + s);
        }
    }
    free(part);
}

typedef struct row_job {
    const float *x;
    int64_t M;
} row_job;

/* acc[M] += r[M] */
static void add_into(const float *r, int64_t M, double *acc) {
#pragma omp simd
    for (int64_t c = 0; c < M; c++) acc[c] += r[c];
}

static void add_row(const void *job, int64_t i, double *acc) {
    const row_job *j = job;
    add_into(j->x + i * j->M, j->M, acc);
}

/* out[M] = beta out + sum over rows of x[N,M] */
void cpu_sum_rows(const fl_tensor *x, float beta, fl_tensor *out) {
    const int64_t N = cpu_rows(x), M = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && out->dtype == FL_F32 && fl_numel(out) == M);
    const row_job job = {cpu_f32(x), M};
    column_sums(N, M, add_row, &job, beta, cpu_f32(out));
}

/* BODY for each i < n, vectorised, with X the activation's input: x[i], or
   x[i] + b[i] when b is not NULL. The bias is added inside the loop that
   uses it: staged through a buffer first, the fused op was no faster than
   add_bias and activation apart (measured). */
#define FOR_INPUT(n, x, b, BODY)                                                                 \
    do {                                                                                         \
        if (b) {                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < (n); i++) {                              \
                const float X = (x)[i] + (b)[i];                                                 \
                BODY;                                                                            \
            }                                                                                    \
        } else {                                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < (n); i++) {                              \
                const float X = (x)[i];                                                          \
                BODY;                                                                            \
            }                                                                                    \
        }                                                                                        \
    } while (0)

/* y = act(x (+ b)) over n values */
static void act_range(int act, const float *x, const float *b, float *y, int64_t n) {
    switch (act) {
    case FL_ACT_GELU:
        FOR_INPUT(n, x, b, y[i] = gelu(X));
        break;
    case FL_ACT_RELU:
        FOR_INPUT(n, x, b, y[i] = X > 0.0f ? X : 0.0f);
        break;
    case FL_ACT_SILU:
        FOR_INPUT(n, x, b, y[i] = X * cpu_sigmoid(X));
        break;
    case FL_ACT_SOFTPLUS: /* libm: a router-sized op, accuracy over speed */
        for (int64_t i = 0; i < n; i++) {
            const float X = b ? x[i] + b[i] : x[i];
            y[i] = X > 20.0f ? X : log1pf(expf(X));
        }
        break;
    default: /* identity */
        if (b) FOR_INPUT(n, x, b, y[i] = X);
        else if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
        break;
    }
}

/* A bf16 output of an f32 op: x[n] f32 rounded into y[n] bf16 */
static void round_range(const float *x, uint16_t *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = cpu_bf16(x[i]);
}

/* act_range into bf16: the f32 results go through a small stack buffer, so
   y is exactly the f32 op's result rounded (the same act_range computes it) */
static void act_range_bf16(int act, const float *x, const float *b, uint16_t *y, int64_t n) {
    enum { PIECE = 1024 };
    float tmp[PIECE];
    for (int64_t i = 0; i < n; i += PIECE) {
        const int64_t k = n - i < PIECE ? n - i : PIECE;
        act_range(act, x + i, b ? b + i : NULL, tmp, k);
        round_range(tmp, y + i, k);
    }
}

/* x f32 and y f32 or (not aliasing x) bf16, the same number of values */
static int f32_to_f32_or_bf16(const fl_tensor *x, const fl_tensor *y) {
    return x->dtype == FL_F32 && fl_numel(x) == fl_numel(y) &&
           (y->dtype == FL_F32 || (y->dtype == FL_BF16 && y->data != x->data));
}

/* y = act(x) elementwise; y may alias x, or be bf16 (the f32 result rounded). */
void cpu_activation(int act, const fl_tensor *x, fl_tensor *y) {
    CPU_CHECK(f32_to_f32_or_bf16(x, y));
    CPU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    const int64_t n = fl_numel(x);
    const float *px = cpu_f32(x);
    const int bf16 = y->dtype == FL_BF16;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t c = 0; c < n_chunks(n); c++) {
        const int64_t o = c * CHUNK, len = chunk_end(c, n) - o;
        if (bf16) act_range_bf16(act, px + o, NULL, (uint16_t *)y->data + o, len);
        else act_range(act, px + o, NULL, cpu_f32(y) + o, len);
    }
}

/* dx = dy * act'(x (+ b)) over n values */
static void act_grad_range(int act, const float *x, const float *b, const float *dy, float *dx, int64_t n) {
    switch (act) {
    case FL_ACT_GELU:
        FOR_INPUT(n, x, b, dx[i] = dy[i] * gelu_grad(X));
        break;
    case FL_ACT_RELU:
        FOR_INPUT(n, x, b, dx[i] = X > 0.0f ? dy[i] : 0.0f);
        break;
    case FL_ACT_SILU:
        FOR_INPUT(n, x, b, dx[i] = dy[i] * silu_grad(X));
        break;
    case FL_ACT_SOFTPLUS:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f / (1.0f + expf(-(b ? x[i] + b[i] : x[i]))));
        break;
    default:
        if (dx != dy) memcpy(dx, dy, (size_t)n * sizeof *dx);
        break;
    }
}

/* dx = dy * act'(x); dx may alias dy (and is overwritten). */
void cpu_activation_backward(int act, const fl_tensor *x, const fl_tensor *dy, fl_tensor *dx) {
    CPU_CHECK(same_f32(x, dy) && same_f32(x, dx));
    CPU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    const int64_t n = fl_numel(x);
    const float *px = cpu_f32(x), *pdy = cpu_f32(dy);
    float *pdx = cpu_f32(dx);
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t c = 0; c < n_chunks(n); c++) {
        const int64_t o = c * CHUNK;
        act_grad_range(act, px + o, NULL, pdy + o, pdx + o, chunk_end(c, n) - o);
    }
}

/* The fused bias ops run the activation loops of activation and its
   backward with the bias added to their input (FOR_INPUT): the same bits as
   add_bias followed by either. The plain ones are the grouped ones with one
   group of all rows. */

/* y[N,M] = act(x + b[g]) on group g's rows; y may alias x, or be bf16 (not
   aliasing x). */
void cpu_bias_activation_grouped(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                 fl_tensor *y) {
    const int64_t N = cpu_rows(x), M = cpu_cols(x);
    CPU_CHECK(f32_to_f32_or_bf16(x, y) && fl_row_groups_ok(off, G, N));
    CPU_CHECK(b->dtype == FL_F32 && fl_numel(b) == (int64_t)G * M);
    CPU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    const float *px = cpu_f32(x), *pb = cpu_f32(b);
    const int bf16 = y->dtype == FL_BF16;
    const int64_t R = off[G];
#pragma omp parallel for schedule(static) if (R * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < R; i++) {
        const float *bg = pb + (int64_t)fl_row_group(off, G, i) * M;
        if (bf16) act_range_bf16(act, px + i * M, bg, (uint16_t *)y->data + i * M, M);
        else act_range(act, px + i * M, bg, cpu_f32(y) + i * M, M);
    }
}

void cpu_bias_activation(int act, const fl_tensor *x, const fl_tensor *b, fl_tensor *y) {
    const int64_t all[2] = {0, cpu_rows(x)};
    cpu_bias_activation_grouped(act, x, b, all, 1, y);
}

typedef struct bias_grad_job {
    int act;
    const float *x, *b, *dy; /* from a group's first row; b its bias row */
    float *dx;
    int64_t M;
} bias_grad_job;

/* Row i: dx = dy * act'(x + b), then (unless acc is NULL) added into acc
   while the row is still in cache. */
static void bias_grad_row(const void *job, int64_t i, double *acc) {
    const bias_grad_job *j = job;
    const int64_t o = i * j->M;
    act_grad_range(j->act, j->x + o, j->b, j->dy + o, j->dx + o, j->M);
    if (acc) add_into(j->dx + o, j->M, acc);
}

/* dx = dy * act'(x + b[g]) on group g's rows (dx may alias dy); db[g] += the
   sum of those rows of dx unless db is NULL: a column sum per group (each
   on all threads), or without db one pass over every grouped row. */
void cpu_bias_activation_grouped_backward(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off,
                                          int G, const fl_tensor *dy, fl_tensor *dx, fl_tensor *db) {
    const int64_t N = cpu_rows(x), M = cpu_cols(x);
    CPU_CHECK(same_f32(x, dy) && same_f32(x, dx) && fl_row_groups_ok(off, G, N));
    CPU_CHECK(b->dtype == FL_F32 && fl_numel(b) == (int64_t)G * M);
    CPU_CHECK(!db || (db->dtype == FL_F32 && fl_numel(db) == (int64_t)G * M));
    CPU_CHECK(act >= FL_ACT_IDENTITY && act <= FL_ACT_SOFTPLUS);
    const float *px = cpu_f32(x), *pb = cpu_f32(b), *pdy = cpu_f32(dy);
    float *pdx = cpu_f32(dx);
    if (db) {
        for (int g = 0; g < G; g++) {
            const int64_t r0 = off[g], n = off[g + 1] - r0;
            if (n == 0) continue;
            const bias_grad_job job = {act, px + r0 * M, pb + (int64_t)g * M, pdy + r0 * M, pdx + r0 * M, M};
            column_sums(n, M, bias_grad_row, &job, 1.0f, cpu_f32(db) + (int64_t)g * M);
        }
        return;
    }
    const int64_t R = off[G];
#pragma omp parallel for schedule(static) if (R * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < R; i++) {
        const bias_grad_job job = {act, px, pb + (int64_t)fl_row_group(off, G, i) * M, pdy, pdx, M};
        bias_grad_row(&job, i, NULL);
    }
}

void cpu_bias_activation_backward(int act, const fl_tensor *x, const fl_tensor *b, const fl_tensor *dy, fl_tensor *dx,
                                  fl_tensor *db) {
    const int64_t all[2] = {0, cpu_rows(x)};
    cpu_bias_activation_grouped_backward(act, x, b, all, 1, dy, dx, db);
}

/* out = a * b elementwise; out may alias a or b, or be bf16 (the f32
   product rounded; then it aliases neither) */
void cpu_mul(const fl_tensor *a, const fl_tensor *b, fl_tensor *out) {
    CPU_CHECK(same_f32(a, b) && f32_to_f32_or_bf16(a, out));
    CPU_CHECK(out->dtype == FL_F32 || out->data != b->data);
    const int64_t n = fl_numel(a);
    const float *pa = cpu_f32(a), *pb = cpu_f32(b);
    float *po = out->dtype == FL_F32 ? cpu_f32(out) : NULL; /* one of these two */
    uint16_t *ph = out->dtype == FL_BF16 ? out->data : NULL;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t c = 0; c < n_chunks(n); c++) {
        if (ph) {
#pragma omp simd
            for (int64_t i = c * CHUNK; i < chunk_end(c, n); i++) ph[i] = cpu_bf16(pa[i] * pb[i]);
        } else {
#pragma omp simd
            for (int64_t i = c * CHUNK; i < chunk_end(c, n); i++) po[i] = pa[i] * pb[i];
        }
    }
}

/* y = alpha x + beta y; beta = 0 does not read y (NaN there does not
   survive), as in BLAS. */
void cpu_axpby(float alpha, const fl_tensor *x, float beta, fl_tensor *y) {
    CPU_CHECK(same_f32(x, y));
    const int64_t n = fl_numel(x);
    const float *px = cpu_f32(x);
    float *py = cpu_f32(y);
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t c = 0; c < n_chunks(n); c++) {
        const int64_t e = chunk_end(c, n);
        if (beta == 0.0f) {
#pragma omp simd
            for (int64_t i = c * CHUNK; i < e; i++) py[i] = alpha * px[i];
        } else {
#pragma omp simd
            for (int64_t i = c * CHUNK; i < e; i++) py[i] = alpha * px[i] + beta * py[i];
        }
    }
}

static void fill_f32(float *p, int64_t n, float v) {
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t c = 0; c < n_chunks(n); c++) {
#pragma omp simd
        for (int64_t i = c * CHUNK; i < chunk_end(c, n); i++) p[i] = v;
    }
}

/* x = v everywhere, converted to x's dtype. */
void cpu_fill(fl_tensor *x, float v) {
    const int64_t n = fl_numel(x);
    switch (x->dtype) {
    case FL_F32: fill_f32(cpu_f32(x), n, v); break;
    case FL_BF16: {
        uint16_t h = cpu_bf16(v), *p = x->data;
        for (int64_t i = 0; i < n; i++) p[i] = h;
        break;
    }
    case FL_I32: {
        int32_t k = (int32_t)v, *p = x->data;
        for (int64_t i = 0; i < n; i++) p[i] = k;
        break;
    }
    case FL_I64: {
        int64_t k = (int64_t)v, *p = x->data;
        for (int64_t i = 0; i < n; i++) p[i] = k;
        break;
    }
    case FL_U8: memset(x->data, (int)(uint8_t)v, (size_t)n); break;
    default: cpu_shape_error(__func__, "unknown dtype"); break;
    }
}

/* memcpy split over threads: one core reaches only part of the memory
   bandwidth. */
static void par_memcpy(void *dst, const void *src, size_t bytes) {
    const size_t block = (size_t)1 << 20;
    const int64_t nb = (int64_t)((bytes + block - 1) / block);
#pragma omp parallel for schedule(static) if (nb > 1)
    for (int64_t b = 0; b < nb; b++) {
        size_t o = (size_t)b * block, len = bytes - o < block ? bytes - o : block;
        memcpy((char *)dst + o, (const char *)src + o, len);
    }
}

/* dst = src (same numel and dtype) */
void cpu_copy(const fl_tensor *src, fl_tensor *dst) {
    CPU_CHECK(src->dtype == dst->dtype && fl_numel(src) == fl_numel(dst));
    if (src->data != dst->data) par_memcpy(dst->data, src->data, fl_nbytes(src));
}

/* y[N,M] = x[N,M] * s[N]; y may alias x */
void cpu_scale_rows(const fl_tensor *x, const fl_tensor *s, fl_tensor *y) {
    const int64_t N = cpu_rows(x), M = cpu_cols(x);
    CPU_CHECK(same_f32(x, y) && s->dtype == FL_F32 && fl_numel(s) == N);
    const float *px = cpu_f32(x), *ps = cpu_f32(s);
    float *py = cpu_f32(y);
#pragma omp parallel for schedule(static) if (N * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float si = ps[i];
#pragma omp simd
        for (int64_t j = 0; j < M; j++) py[i * M + j] = px[i * M + j] * si;
    }
}

/* out[N] = sum_j a[N,j] b[N,j] */
void cpu_row_dot(const fl_tensor *a, const fl_tensor *b, fl_tensor *out) {
    const int64_t N = cpu_rows(a), M = cpu_cols(a);
    CPU_CHECK(same_f32(a, b) && out->dtype == FL_F32 && fl_numel(out) == N);
    const float *pa = cpu_f32(a), *pb = cpu_f32(b);
    float *po = cpu_f32(out);
#pragma omp parallel for schedule(static) if (N * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < M; j++) s += pa[i * M + j] * pb[i * M + j];
        po[i] = s;
    }
}

void cpu_to_host(void *dst, const fl_tensor *src, size_t bytes) {
    CPU_CHECK(bytes <= fl_nbytes(src));
    par_memcpy(dst, src->data, bytes);
}

void cpu_from_host(fl_tensor *dst, const void *src, size_t bytes) {
    CPU_CHECK(bytes <= fl_nbytes(dst));
    par_memcpy(dst->data, src, bytes);
}

/* y[B,A,C] = x[A,B,C]; rows of C values are copied whole. */
void cpu_permute01(const fl_tensor *x, int64_t A, int64_t B, int64_t C, fl_tensor *y) {
    CPU_CHECK(x->dtype == y->dtype && fl_numel(x) >= A * B * C && fl_numel(y) >= A * B * C);
    CPU_CHECK(x->data != y->data || A * B * C == 0);
    const size_t es = fl_dtype_size(x->dtype), row = (size_t)C * es;
    const char *px = x->data;
    char *py = y->data;
#pragma omp parallel for schedule(static) if (A * B * C > CPU_PAR_MIN)
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < B; b++) memcpy(py + (size_t)(b * A + a) * row, px + (size_t)(a * B + b) * row, row);
}

/* Integer keys from token ids (fl_ops.hash_ids): a negative id is padding
   and keeps key -1. */
void cpu_hash_ids(const fl_tensor *ids, uint64_t seed, int64_t buckets, fl_tensor *out) {
    CPU_CHECK(ids->dtype == FL_I32 && out->dtype == FL_I32 && fl_numel(out) == fl_numel(ids) && buckets >= 1);
    const int64_t n = fl_numel(ids);
    const int32_t *pi = cpu_i32(ids);
    int32_t *po = cpu_i32(out);
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        po[i] = pi[i] < 0 ? -1 : (int32_t)(fl_rng_bits(seed, (uint64_t)pi[i]) % (uint64_t)buckets);
}
