/*
 * backends/cpu/cpu_model.c — the kernels only the model itself uses on the
 * CPU: token + position embedding and its gradient, the fused LM-head
 * cross-entropy (loss and dlogits in one pass over the logits), AdamW on
 * whole tensors and on selected rows, the sum of squares for gradient
 * clipping and the NaN/inf check.
 *
 * Losses and norms accumulate in double; their OpenMP reductions use a
 * static schedule so a fixed thread count gives the same bits every run.
 */
#include "cpu.h"

#include <math.h>
#include <string.h>
#include <omp.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

/* T of tokens[B,T] (a 1-D tokens tensor is one sequence) */
static int64_t seq_len(const fl_tensor *tokens) {
    return tokens->ndim >= 2 ? tokens->shape[tokens->ndim - 1] : fl_numel(tokens);
}

/* x[N,C] = wte[tokens[n],:] + wpe[n % T,:]; wte[V,C], wpe[>=T,C] */
void cpu_embed(const fl_tensor *wte, const fl_tensor *wpe, const fl_tensor *tokens,
               fl_tensor *x) {
    const int64_t N = fl_numel(tokens), T = seq_len(tokens), C = cpu_cols(wte);
    const int64_t V = cpu_rows(wte);
    CPU_CHECK(tokens->dtype == FL_I32 && wte->dtype == FL_F32 && wpe->dtype == FL_F32);
    CPU_CHECK(cpu_cols(wpe) == C && cpu_rows(wpe) >= T);
    CPU_CHECK(x->dtype == FL_F32 && fl_numel(x) == N * C);
    const int32_t *tok = cpu_i32(tokens);
    const float *pe = cpu_f32(wte), *pp = cpu_f32(wpe);
    float *px = cpu_f32(x);
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (N * C > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const int32_t t = tok[n];
        const float *p = pp + (n % T) * C;
        float *o = px + n * C;
        if (t < 0 || t >= V) { /* a bad token: position only, reported below */
            bad++;
            memcpy(o, p, (size_t)C * sizeof *o);
            continue;
        }
        const float *e = pe + (int64_t)t * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
    if (bad) cpu_shape_error(__func__, "token id outside [0, V)");
}

/* dwte[tokens[n],:] += dx[n,:]; dwpe[n % T,:] += dx[n,:] */
void cpu_embed_backward(const fl_tensor *dx, const fl_tensor *tokens, fl_tensor *dwte,
                        fl_tensor *dwpe) {
    const int64_t N = fl_numel(tokens), T = seq_len(tokens), C = cpu_cols(dwte);
    CPU_CHECK(tokens->dtype == FL_I32 && dx->dtype == FL_F32 && fl_numel(dx) == N * C);
    CPU_CHECK(dwte->dtype == FL_F32 && dwpe->dtype == FL_F32);
    CPU_CHECK(cpu_cols(dwpe) == C && cpu_rows(dwpe) >= T);
    const float *pdx = cpu_f32(dx);
    cpu_scatter_add(pdx, 1, cpu_i32(tokens), NULL, N, cpu_f32(dwte), cpu_rows(dwte), C);
    /* positions: thread per position, batch rows summed in order */
    float *pp = cpu_f32(dwpe);
#pragma omp parallel for schedule(static) if (N * C > CPU_PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        float *o = pp + t * C;
        for (int64_t n = t; n < N; n += T) {
            const float *g = pdx + n * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) o[c] += g[c];
        }
    }
}

/* One row of cross-entropy: returns -log softmax(x)[tgt]. With dl (may alias
   x) writes scale * (softmax(x) - onehot(tgt)), keeping the exps in dl so
   each logit is exponentiated once. */
static double ce_row(const float *x, float *dl, int64_t V, int32_t tgt, float scale) {
    const float xt = x[tgt]; /* read before dl may overwrite x */
    float m = -INFINITY, s = 0.0f;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < V; j++) m = x[j] > m ? x[j] : m;
    if (dl) {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < V; j++) {
            dl[j] = cpu_expf(x[j] - m);
            s += dl[j];
        }
        const float k = scale / s;
#pragma omp simd
        for (int64_t j = 0; j < V; j++) dl[j] *= k;
        dl[tgt] -= scale;
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < V; j++) s += cpu_expf(x[j] - m);
    }
    return (double)m + log((double)s) - (double)xt;
}

/* Mean loss of logits[N,W] (the first V columns are the classes) against
   targets[N] (< 0: ignored) */
double cpu_cross_entropy(const fl_tensor *logits, int64_t V, const fl_tensor *targets, fl_tensor *dlogits,
                         float scale, int64_t *count) {
    const int64_t N = cpu_rows(logits), W = cpu_cols(logits);
    if (count) *count = 0;
    CPU_CHECK(logits->dtype == FL_F32 && targets->dtype == FL_I32 && fl_numel(targets) == N, NAN);
    CPU_CHECK(V >= 1 && V <= W, NAN);
    CPU_CHECK(!dlogits || (dlogits->dtype == FL_F32 && fl_numel(dlogits) == N * W), NAN);
    const float *px = cpu_f32(logits);
    const int32_t *tg = cpu_i32(targets);
    float *pd = dlogits ? cpu_f32(dlogits) : NULL;
    double loss = 0.0;
    int64_t cnt = 0, bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, cnt, bad) if (N * W > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float *dl = pd ? pd + i * W : NULL;
        if (dl && W > V) memset(dl + V, 0, (size_t)(W - V) * sizeof *dl);
        if (tg[i] < 0 || tg[i] >= V) {
            bad += tg[i] >= V;
            if (dl) memset(dl, 0, (size_t)V * sizeof *dl);
            continue;
        }
        loss += ce_row(px + i * W, dl, V, tg[i], scale);
        cnt++;
    }
    if (bad) cpu_shape_error(__func__, "target id >= V");
    if (count) *count = cnt;
    return cnt ? loss / (double)cnt : 0.0;
}

/* dst[n] = sqrt(src[n]). GCC will not vectorise sqrtf in a loop while
   sqrtf may set errno (-fmath-errno, the default, cannot be turned off per
   function), so the AVX path is spelled out. */
static void sqrt_span(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
#ifdef __AVX__
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_sqrt_ps(_mm256_loadu_ps(src + i)));
#endif
    for (; i < n; i++) dst[i] = sqrtf(src[i]);
}

/* The AdamW update of n contiguous elements; c1, c2 are the bias corrections
   1 - beta^t. Blocks of ADAM_BLOCK go through three vectorised passes over
   a buffer that stays in L1: moments and sqrt(vhat), then the update. */
#define ADAM_BLOCK 256
static void adamw_span(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                       float b1, float b2, float eps, float wd, float gs, float c1, float c2) {
    float den[ADAM_BLOCK];
    for (int64_t o = 0; o < n; o += ADAM_BLOCK) {
        const int64_t len = n - o < ADAM_BLOCK ? n - o : ADAM_BLOCK;
        float *pp = p + o, *pm = m + o, *pv = v + o;
        const float *pg = g + o;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) {
            const float gi = gs * pg[i];
            pm[i] = b1 * pm[i] + (1.0f - b1) * gi;
            pv[i] = b2 * pv[i] + (1.0f - b2) * gi * gi;
            den[i] = pv[i] / c2;
        }
        sqrt_span(den, den, len);
#pragma omp simd
        for (int64_t i = 0; i < len; i++)
            pp[i] -= lr * ((pm[i] / c1) / (den[i] + eps) + wd * pp[i]);
    }
}

static int adam_shapes_ok(const fl_tensor *p, const fl_tensor *g, const fl_tensor *m,
                          const fl_tensor *v) {
    const int64_t n = fl_numel(p);
    return p->dtype == FL_F32 && g->dtype == FL_F32 && m->dtype == FL_F32 &&
           v->dtype == FL_F32 && fl_numel(g) == n && fl_numel(m) == n && fl_numel(v) == n;
}

/* p -= lr (mhat / (sqrt(vhat) + eps) + wd p) on every element */
void cpu_adamw(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v, float lr,
               float beta1, float beta2, float eps, float weight_decay, float grad_scale, int64_t t) {
    CPU_CHECK(adam_shapes_ok(param, grad, m, v) && t >= 1);
    const int64_t n = fl_numel(param), chunk = 16384, nc = (n + chunk - 1) / chunk;
    const float c1 = (float)(1.0 - pow(beta1, (double)t));
    const float c2 = (float)(1.0 - pow(beta2, (double)t));
    float *pp = cpu_f32(param), *pm = cpu_f32(m), *pv = cpu_f32(v);
    const float *pg = cpu_f32(grad);
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t c = 0; c < nc; c++) {
        const int64_t o = c * chunk, len = n - o < chunk ? n - o : chunk;
        adamw_span(pp + o, pg + o, pm + o, pv + o, len, lr, beta1, beta2, eps, weight_decay,
                   grad_scale, c1, c2);
    }
}

/* The same on rows[n_rows] of 2-D tensors (row length numel / shape[0]) */
void cpu_adamw_rows(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v,
                    const int32_t *rows, int64_t n_rows, float lr, float beta1, float beta2,
                    float eps, float weight_decay, float grad_scale, int64_t t) {
    CPU_CHECK(adam_shapes_ok(param, grad, m, v) && t >= 1 && param->shape[0] > 0);
    const int64_t R = param->shape[0], D = fl_numel(param) / R;
    const float c1 = (float)(1.0 - pow(beta1, (double)t));
    const float c2 = (float)(1.0 - pow(beta2, (double)t));
    float *pp = cpu_f32(param), *pm = cpu_f32(m), *pv = cpu_f32(v);
    const float *pg = cpu_f32(grad);
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n_rows * D > CPU_PAR_MIN)
    for (int64_t i = 0; i < n_rows; i++) {
        const int64_t r = rows[i], o = r * D;
        if (r < 0 || r >= R) {
            bad++;
            continue;
        }
        adamw_span(pp + o, pg + o, pm + o, pv + o, D, lr, beta1, beta2, eps, weight_decay,
                   grad_scale, c1, c2);
    }
    if (bad) cpu_shape_error(__func__, "row outside [0, rows)");
}

/* sum of x^2 in double */
double cpu_sumsq(const fl_tensor *x) {
    CPU_CHECK(x->dtype == FL_F32, NAN);
    const int64_t n = fl_numel(x);
    const float *p = cpu_f32(x);
    double s = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (parallel : n > CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) s += (double)p[i] * (double)p[i];
    return s;
}

double cpu_sumsq_many(const fl_tensor *const *xs, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += cpu_sumsq(xs[i]);
    return s;
}

/* sum of x[rows[i],:]^2 in double */
double cpu_sumsq_rows(const fl_tensor *x, const int32_t *rows, int64_t n_rows) {
    CPU_CHECK(x->dtype == FL_F32 && x->shape[0] > 0, NAN);
    const int64_t R = x->shape[0], D = fl_numel(x) / R;
    const float *p = cpu_f32(x);
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s) if (n_rows * D > CPU_PAR_MIN)
    for (int64_t i = 0; i < n_rows; i++) {
        if (rows[i] < 0 || rows[i] >= R) continue;
        const float *row = p + rows[i] * D;
        for (int64_t j = 0; j < D; j++) s += (double)row[j] * (double)row[j];
    }
    return s;
}

/* x[rows[i],:] = 0 */
void cpu_zero_rows(fl_tensor *x, const int32_t *rows, int64_t n_rows) {
    CPU_CHECK(x->shape[0] > 0);
    const int64_t R = x->shape[0], D = fl_numel(x) / R;
    const size_t row_bytes = (size_t)D * fl_dtype_size(x->dtype);
#pragma omp parallel for schedule(static) if (n_rows * D > CPU_PAR_MIN)
    for (int64_t i = 0; i < n_rows; i++)
        if (rows[i] >= 0 && rows[i] < R) memset((char *)x->data + (size_t)rows[i] * row_bytes, 0, row_bytes);
}

/* 1 if any element is NaN or inf: exponent bits all ones */
int cpu_nonfinite(const fl_tensor *x) {
    CPU_CHECK(x->dtype == FL_F32, 1);
    const int64_t n = fl_numel(x);
    const uint32_t *p = x->data;
    uint32_t any = 0;
#pragma omp parallel for simd schedule(static) reduction(| : any) if (parallel : n > CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) any |= (p[i] & 0x7f800000u) == 0x7f800000u;
    return any != 0;
}
