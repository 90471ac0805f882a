/*
 * backends/cuda/cu_norms.cu — the reductions that return a number to the
 * host: sum of squares of a tensor (gradient clipping), the same over a
 * host-given list of rows (sparse-row parameters), and "any NaN or inf".
 *
 * Sums of squares accumulate in double, like the CPU. A fixed grid of at most
 * 1024 blocks per tensor writes one partial each; one block adds the
 * partials (of one tensor, or of a whole list) in order; the total comes back
 * with one 8-byte copy. The grids depend only on the sizes, so the result is
 * the same every run.
 */
#include "cu_ops.h"

#define NORM_BLOCKS 1024

/* part[blockIdx] = sum of x[e]^2 over this block's grid-stride share; with
   rows != NULL, element e is x[rows[e / D], e % D] (invalid rows skipped). */
static __global__ void k_sumsq_part(const float *x, int64_t n, const int32_t *rows, int64_t R, int64_t D,
                                    double *part) {
    __shared__ double sm[32];
    double s = 0.0;
    CU_LOOP(e, n) {
        float v;
        if (rows) {
            const int32_t r = rows[e / D];
            if (r < 0 || r >= R) continue;
            v = x[(int64_t)r * D + e % D];
        } else {
            v = x[e];
        }
        s += (double)v * (double)v;
    }
    s = cu_block_sum_d(s, sm);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

static __global__ void k_sum_parts(const double *part, int n, double *out) {
    __shared__ double sm[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
    s = cu_block_sum_d(s, sm);
    if (threadIdx.x == 0) *out = s;
}

static int64_t blocks_for(int64_t n) {
    const int64_t blocks = (n + CU_THREADS - 1) / CU_THREADS;
    return blocks < NORM_BLOCKS ? blocks : NORM_BLOCKS;
}

/* part[0..blocks_for(n)) = the partial sums of one tensor (or row list) */
static int sumsq_parts(const float *x, int64_t n, const int32_t *rows, int64_t R, int64_t D, double *part) {
    if (n <= 0) return 1;
    CU_LAUNCH((unsigned)blocks_for(n), CU_THREADS, 0, k_sumsq_part)(x, n, rows, R, D, part);
    return CU_LAUNCHED("k_sumsq_part");
}

/* the sum of part[0..n), downloaded */
static double sum_parts(double *part, int64_t n) {
    if (n == 0) return 0.0;
    CU_LAUNCH(1, CU_THREADS, 0, k_sum_parts)(part, (int)n, part + n);
    if (!CU_LAUNCHED("k_sum_parts")) return NAN;
    double s = NAN;
    return cu_download(&s, part + n, sizeof s) ? s : NAN;
}

static double sumsq_of(const float *x, int64_t n, const int32_t *rows, int64_t R, int64_t D) {
    if (n <= 0) return 0.0;
    double *part = (double *)cu_scratch(CU_SLOT_RESULT, (size_t)(blocks_for(n) + 1) * sizeof(double));
    if (!part || !sumsq_parts(x, n, rows, R, D, part)) return NAN;
    return sum_parts(part, blocks_for(n));
}

double cu_sumsq_many(const fl_tensor *const *xs, int n) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        CU_CHECK(xs[i]->dtype == FL_F32, NAN);
        total += blocks_for(fl_numel(xs[i]));
    }
    double *part = (double *)cu_scratch(CU_SLOT_RESULT, (size_t)(total + 1) * sizeof(double));
    if (!part) return NAN;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (!sumsq_parts(cu_f32(xs[i]), fl_numel(xs[i]), NULL, 0, 1, part + at)) return NAN;
        at += blocks_for(fl_numel(xs[i]));
    }
    return sum_parts(part, at);
}

double cu_sumsq(const fl_tensor *x) {
    CU_CHECK(x->dtype == FL_F32, NAN);
    return sumsq_of(cu_f32(x), fl_numel(x), NULL, 0, 1);
}

double cu_sumsq_rows(const fl_tensor *x, const int32_t *rows, int64_t n_rows) {
    CU_CHECK(x->dtype == FL_F32 && x->shape[0] > 0, NAN);
    const int64_t R = x->shape[0], D = fl_numel(x) / R;
    if (n_rows <= 0 || D == 0) return 0.0;
    const int32_t *d_rows = (const int32_t *)cu_upload(rows, (size_t)n_rows * sizeof *rows);
    if (!d_rows) return NAN;
    return sumsq_of(cu_f32(x), n_rows * D, d_rows, R, D);
}

/* *flag = 1 if any element has all exponent bits set (NaN or inf) */
static __global__ void k_nonfinite(const uint32_t *x, int64_t n, int *flag) {
    CU_LOOP(i, n) if ((x[i] & 0x7f800000u) == 0x7f800000u) *flag = 1;
}

int cu_nonfinite(const fl_tensor *x) {
    CU_CHECK(x->dtype == FL_F32, 1);
    const int64_t n = fl_numel(x);
    if (n == 0) return 0;
    int *flag = (int *)cu_scratch(CU_SLOT_RESULT, sizeof(int));
    if (!flag || !CU_OK(cudaMemsetAsync(flag, 0, sizeof(int), g_cu.stream))) return 1;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_nonfinite)((const uint32_t *)x->data, n, flag);
    if (!CU_LAUNCHED("k_nonfinite")) return 1;
    int h = 1;
    return cu_download(&h, flag, sizeof h) ? h != 0 : 1;
}
