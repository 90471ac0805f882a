/*
 * backends/cpu/cpu_norm_groups.c — the normalisations of the product-key
 * memory's query: batch norm over rows (train: batch statistics and the
 * running-statistics update; eval: running statistics) and layer norm over
 * groups of columns within a row (one group per head) with a per-column
 * affine; both with their gradients.
 *
 * Rows are independent in the elementwise passes (one OpenMP loop over
 * rows). Reductions over rows (batch-norm statistics, the affine gradients)
 * run over RED_CHUNKS fixed chunks of rows, each summing its rows in order
 * into its own row of a scratch [2, RED_CHUNKS, F] (float), and the chunks
 * are then added in chunk order in double: no atomics, and the result does
 * not depend on the thread count. Each op allocates that scratch itself.
 */
#include "cpu.h"

#include <math.h>   /* sqrt, sqrtf */
#include <stdlib.h> /* malloc, free */

/* These kernels came from the PKM plugin, built with -ffp-contract=fast, as
   the whole backend is (framework/CMakeLists.txt): their results stay bit
   for bit what the plugin computed. */

#define RED_CHUNKS 16

/* Rows [r0, r1) of chunk ch of N rows cut into RED_CHUNKS pieces. */
static void chunk_rows(int64_t N, int ch, int64_t *r0, int64_t *r1) {
    *r0 = N * ch / RED_CHUNKS;
    *r1 = N * (ch + 1) / RED_CHUNKS;
}

/* Scratch for two chunked column sums of F columns (NULL: logged). */
static float *red_scratch(const char *op, int64_t F) {
    float *p = malloc((size_t)(2 * RED_CHUNKS * (F > 0 ? F : 1)) * sizeof *p);
    if (!p) cpu_shape_error(op, "out of memory for the reduction scratch");
    return p;
}

/* Column f's total over the chunk partials part[RED_CHUNKS,F], in chunk order. */
static double chunk_total(const float *part, int64_t F, int64_t f) {
    double s = 0.0;
    for (int ch = 0; ch < RED_CHUNKS; ch++) s += part[ch * F + f];
    return s;
}

/* part[ch][f] = sum over chunk ch's rows of x[n,f] - shift[f] (squared if sq). */
static void column_sums(const float *x, int64_t N, int64_t F, const float *shift, int sq, float *part) {
#pragma omp parallel for schedule(static) if (N * F > CPU_PAR_MIN)
    for (int ch = 0; ch < RED_CHUNKS; ch++) {
        int64_t r0, r1;
        chunk_rows(N, ch, &r0, &r1);
        float *p = part + ch * F;
        for (int64_t f = 0; f < F; f++) p[f] = 0.0f;
        for (int64_t n = r0; n < r1; n++) {
            const float *xr = x + n * F;
            if (sq) {
#pragma omp simd
                for (int64_t f = 0; f < F; f++) p[f] += (xr[f] - shift[f]) * (xr[f] - shift[f]);
            } else {
#pragma omp simd
                for (int64_t f = 0; f < F; f++) p[f] += xr[f];
            }
        }
    }
}

/* y[N,F] = (x - mean) rstd g + b with per-column mean, rstd; rows in parallel. */
static void affine_rows(const float *x, int64_t N, int64_t F, const float *mean, const float *rstd,
                        const float *g, const float *b, float *y) {
#pragma omp parallel for schedule(static) if (N * F > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * F;
        float *yr = y + n * F;
#pragma omp simd
        for (int64_t f = 0; f < F; f++) yr[f] = (xr[f] - mean[f]) * rstd[f] * g[f] + b[f];
    }
}

/* part1[ch][f] = sum dy, part2[ch][f] = sum dy xh over chunk ch's rows, with
   xh = (x - mean[col]) rstd[col] and col = f (batch norm, G = 0) or the
   row's group statistics (layer norm: mean/rstd indexed n*G + f/c). */
static void affine_grad_sums(const float *x, int64_t N, int64_t F, const float *mean, const float *rstd,
                             int G, int64_t c, const float *dy, float *part1, float *part2) {
#pragma omp parallel for schedule(static) if (N * F > CPU_PAR_MIN)
    for (int ch = 0; ch < RED_CHUNKS; ch++) {
        int64_t r0, r1;
        chunk_rows(N, ch, &r0, &r1);
        float *p1 = part1 + ch * F, *p2 = part2 + ch * F;
        for (int64_t f = 0; f < F; f++) p1[f] = p2[f] = 0.0f;
        for (int64_t n = r0; n < r1; n++) {
            const float *xr = x + n * F, *gr = dy + n * F;
            if (G == 0) {
#pragma omp simd
                for (int64_t f = 0; f < F; f++) {
                    p1[f] += gr[f];
                    p2[f] += gr[f] * ((xr[f] - mean[f]) * rstd[f]);
                }
            } else {
                for (int j = 0; j < G; j++) {
                    const float mu = mean[n * G + j], rs = rstd[n * G + j];
                    const int64_t o = (int64_t)j * c;
#pragma omp simd
                    for (int64_t i = 0; i < c; i++) {
                        p1[o + i] += gr[o + i];
                        p2[o + i] += gr[o + i] * ((xr[o + i] - mu) * rs);
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------- batch norm */

/* Batch statistics in two passes (the mean, then the centred squares: no
   cancellation); the running variance takes the unbiased estimate, as
   PyTorch's BatchNorm1d does. */
static void bn_batch_stats(const float *x, int64_t N, int64_t F, float eps, float momentum, float *mean,
                           float *rstd, float *run_mean, float *run_var, float *scratch) {
    const double unbias = N > 1 ? (double)N / (double)(N - 1) : 1.0;
    column_sums(x, N, F, NULL, 0, scratch);
    for (int64_t f = 0; f < F; f++) mean[f] = (float)(chunk_total(scratch, F, f) / (double)N);
    column_sums(x, N, F, mean, 1, scratch);
    for (int64_t f = 0; f < F; f++) {
        const double var = chunk_total(scratch, F, f) / (double)N;
        rstd[f] = (float)(1.0 / sqrt(var + eps));
        if (run_mean) run_mean[f] = (1.0f - momentum) * run_mean[f] + momentum * mean[f];
        if (run_var) run_var[f] = (1.0f - momentum) * run_var[f] + momentum * (float)(var * unbias);
    }
}

/* x, y [N,F]; g, b, mean, rstd, run_mean, run_var [F] */
void cpu_batchnorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps,
                   float momentum, int train, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd,
                   fl_tensor *run_mean, fl_tensor *run_var) {
    const int64_t N = cpu_rows(x), F = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && y->dtype == FL_F32 && fl_numel(y) == N * F);
    CPU_CHECK(g && b && fl_numel(g) == F && fl_numel(b) == F && fl_numel(mean) == F && fl_numel(rstd) == F);
    CPU_CHECK(!run_mean || fl_numel(run_mean) == F);
    CPU_CHECK(!run_var || fl_numel(run_var) == F);
    CPU_CHECK(train ? N >= 1 : run_mean && run_var);
    float *pm = cpu_f32(mean), *pr = cpu_f32(rstd);
    float *rm = run_mean ? cpu_f32(run_mean) : NULL, *rv = run_var ? cpu_f32(run_var) : NULL;
    if (train) {
        float *scratch = red_scratch(__func__, F);
        if (!scratch) return;
        bn_batch_stats(cpu_f32(x), N, F, eps, momentum, pm, pr, rm, rv, scratch);
        free(scratch);
    } else {
        for (int64_t f = 0; f < F; f++) {
            pm[f] = rm[f];
            pr[f] = 1.0f / sqrtf(rv[f] + eps);
        }
    }
    affine_rows(cpu_f32(x), N, F, pm, pr, cpu_f32(g), cpu_f32(b), cpu_f32(y));
}

/* With xh = (x - mean) rstd: dg = sum dy xh, db = sum dy over rows, and
   with batch statistics dx = g rstd (dy - db/N - xh dg/N) (the mean and
   variance depend on every row); with fixed statistics dx = g rstd dy.
   The sums are taken before dx is written. */
void cpu_batchnorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean,
                            const fl_tensor *rstd, const fl_tensor *dy, int batch, fl_tensor *dx,
                            fl_tensor *dg, fl_tensor *db) {
    const int64_t N = cpu_rows(x), F = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32);
    CPU_CHECK(fl_numel(dy) == N * F && fl_numel(dx) == N * F);
    CPU_CHECK(fl_numel(g) == F && fl_numel(mean) == F && fl_numel(rstd) == F);
    CPU_CHECK(!dg || fl_numel(dg) == F);
    CPU_CHECK(!db || fl_numel(db) == F);
    float *scratch = red_scratch(__func__, F);
    if (!scratch) return;
    const float *px = cpu_f32(x), *pg = cpu_f32(g), *pm = cpu_f32(mean), *pr = cpu_f32(rstd);
    const float *pdy = cpu_f32(dy);
    float *p1 = scratch, *p2 = scratch + RED_CHUNKS * F, *pdx = cpu_f32(dx);
    affine_grad_sums(px, N, F, pm, pr, 0, 0, pdy, p1, p2);
    /* reduce in place into the first row of each part: sums, then means */
    for (int64_t f = 0; f < F; f++) {
        const double s1 = chunk_total(p1, F, f), s2 = chunk_total(p2, F, f);
        if (db) cpu_f32(db)[f] += (float)s1;
        if (dg) cpu_f32(dg)[f] += (float)s2;
        p1[f] = batch ? (float)(s1 / (double)N) : 0.0f;
        p2[f] = batch ? (float)(s2 / (double)N) : 0.0f;
    }
#pragma omp parallel for schedule(static) if (N * F > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = px + n * F, *gr = pdy + n * F;
        float *dr = pdx + n * F;
#pragma omp simd
        for (int64_t f = 0; f < F; f++) {
            const float xh = (xr[f] - pm[f]) * pr[f];
            dr[f] = pg[f] * pr[f] * (gr[f] - p1[f] - xh * p2[f]);
        }
    }
    free(scratch);
}

/* ---------------------------------------------------------- layer norm */

/* One group of c values: two passes (mean, centred variance), then the affine. */
static void ln_group(const float *xr, const float *gr, const float *br, int64_t c, float eps, float *yr,
                     float *mean, float *rstd) {
    float s = 0.0f, v = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < c; i++) s += xr[i];
    const float mu = s / (float)c;
#pragma omp simd reduction(+ : v)
    for (int64_t i = 0; i < c; i++) v += (xr[i] - mu) * (xr[i] - mu);
    const float rs = 1.0f / sqrtf(v / (float)c + eps);
#pragma omp simd
    for (int64_t i = 0; i < c; i++) yr[i] = (xr[i] - mu) * rs * gr[i] + br[i];
    *mean = mu;
    *rstd = rs;
}

/* x, y [N,F], F = G*c; g, b [F]; mean, rstd [N*G] */
void cpu_layernorm_groups(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *b,
                          float eps, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd) {
    const int64_t N = cpu_rows(x), F = cpu_cols(x), c = G > 0 ? F / G : 0;
    CPU_CHECK(G >= 1 && c >= 1 && c * G == F);
    CPU_CHECK(x->dtype == FL_F32 && y->dtype == FL_F32 && fl_numel(y) == N * F);
    CPU_CHECK(g && b && fl_numel(g) == F && fl_numel(b) == F);
    CPU_CHECK(fl_numel(mean) == N * G && fl_numel(rstd) == N * G);
    const float *px = cpu_f32(x), *pg = cpu_f32(g), *pb = cpu_f32(b);
    float *py = cpu_f32(y), *pm = cpu_f32(mean), *pr = cpu_f32(rstd);
#pragma omp parallel for schedule(static) if (N * F > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < G; j++) {
            const int64_t o = n * F + (int64_t)j * c;
            ln_group(px + o, pg + j * c, pb + j * c, c, eps, py + o, pm + n * G + j, pr + n * G + j);
        }
}

/* One group: with xh = (x - mean) rstd and gy = dy g,
   dx = rstd (gy - mean(gy) - xh mean(gy xh)). */
static void ln_group_dx(const float *xr, const float *gr, float mu, float rs, const float *dyr, int64_t c,
                        float *dxr) {
    float a = 0.0f, bsum = 0.0f;
#pragma omp simd reduction(+ : a, bsum)
    for (int64_t i = 0; i < c; i++) {
        const float gy = dyr[i] * gr[i];
        a += gy;
        bsum += gy * (xr[i] - mu) * rs;
    }
    a /= (float)c;
    bsum /= (float)c;
#pragma omp simd
    for (int64_t i = 0; i < c; i++) {
        const float xh = (xr[i] - mu) * rs;
        dxr[i] = rs * (dyr[i] * gr[i] - a - xh * bsum);
    }
}

/* The row pass (dx), then the chunked column sums dg += sum_rows dy xh,
   db += sum_rows dy. */
void cpu_layernorm_groups_backward(const fl_tensor *x, int G, const fl_tensor *g,
                                   const fl_tensor *mean, const fl_tensor *rstd,
                                   const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg,
                                   fl_tensor *db) {
    const int64_t N = cpu_rows(x), F = cpu_cols(x), c = G > 0 ? F / G : 0;
    CPU_CHECK(G >= 1 && c >= 1 && c * G == F);
    CPU_CHECK(x->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32);
    CPU_CHECK(fl_numel(dy) == N * F && fl_numel(dx) == N * F && fl_numel(g) == F);
    CPU_CHECK(fl_numel(mean) == N * G && fl_numel(rstd) == N * G);
    CPU_CHECK(!dg || fl_numel(dg) == F);
    CPU_CHECK(!db || fl_numel(db) == F);
    CPU_CHECK(dx->data != dy->data || (!dg && !db)); /* the sums read dy after dx is written */
    const float *px = cpu_f32(x), *pg = cpu_f32(g), *pm = cpu_f32(mean), *pr = cpu_f32(rstd);
    const float *pdy = cpu_f32(dy);
    float *pdx = cpu_f32(dx);
#pragma omp parallel for schedule(static) if (N * F > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < G; j++) {
            const int64_t o = n * F + (int64_t)j * c;
            ln_group_dx(px + o, pg + j * c, pm[n * G + j], pr[n * G + j], pdy + o, c, pdx + o);
        }
    if (!dg && !db) return;
    float *scratch = red_scratch(__func__, F);
    if (!scratch) return;
    float *p1 = scratch, *p2 = scratch + RED_CHUNKS * F;
    affine_grad_sums(px, N, F, pm, pr, G, c, pdy, p1, p2);
    for (int64_t f = 0; f < F; f++) {
        if (db) cpu_f32(db)[f] += (float)chunk_total(p1, F, f);
        if (dg) cpu_f32(dg)[f] += (float)chunk_total(p2, F, f);
    }
    free(scratch);
}
