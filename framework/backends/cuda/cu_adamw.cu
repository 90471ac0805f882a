/*
 * backends/cuda/cu_adamw.cu — the fused AdamW update, on whole tensors and on
 * a host-given list of rows (sparse-row parameters such as PKM values).
 *
 * One pass per element, written as the CPU writes it:
 *     g = grad_scale * grad                 (clipping without another pass)
 *     m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
 *     p -= lr ((m / c1) / (sqrt(v / c2) + eps) + wd p)
 * with the bias corrections c1 = 1 - b1^t, c2 = 1 - b2^t computed on the host
 * in double and rounded to float, as on the CPU.
 */
#include "cu_ops.h"

#include <math.h>

typedef struct adam_args {
    float lr, b1, b2, eps, wd, gs, c1, c2;
} adam_args;

__device__ __forceinline__ void adam_one(float *p, const float *g, float *m, float *v, int64_t i,
                                         const adam_args &a) {
    const float gi = a.gs * g[i];
    const float mi = a.b1 * m[i] + (1.0f - a.b1) * gi;
    const float vi = a.b2 * v[i] + (1.0f - a.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float den = sqrtf(vi / a.c2);
    p[i] -= a.lr * ((mi / a.c1) / (den + a.eps) + a.wd * p[i]);
}

static __global__ void k_adamw(float *p, const float *g, float *m, float *v, int64_t n, adam_args a) {
    CU_LOOP(i, n) adam_one(p, g, m, v, i, a);
}

static __global__ void k_adamw_rows(float *p, const float *g, float *m, float *v, const int32_t *rows,
                                    int64_t n_rows, int64_t R, int64_t D, adam_args a, unsigned *flags) {
    CU_LOOP(e, n_rows * D) {
        const int32_t r = rows[e / D];
        if (r < 0 || r >= R) {
            if (e % D == 0) atomicOr(flags, CU_FLAG_ROWS);
            continue;
        }
        adam_one(p, g, m, v, (int64_t)r * D + e % D, a);
    }
}

static int adam_shapes_ok(const fl_tensor *p, const fl_tensor *g, const fl_tensor *m, const fl_tensor *v) {
    const int64_t n = fl_numel(p);
    return p->dtype == FL_F32 && g->dtype == FL_F32 && m->dtype == FL_F32 && v->dtype == FL_F32 &&
           fl_numel(g) == n && fl_numel(m) == n && fl_numel(v) == n;
}

static adam_args args_of(float lr, float b1, float b2, float eps, float wd, float gs, int64_t t) {
    adam_args a = {lr, b1, b2, eps, wd, gs, (float)(1.0 - pow(b1, (double)t)), (float)(1.0 - pow(b2, (double)t))};
    return a;
}

void cu_adamw(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v, float lr, float beta1,
              float beta2, float eps, float weight_decay, float grad_scale, int64_t t) {
    CU_CHECK(adam_shapes_ok(param, grad, m, v) && t >= 1);
    const int64_t n = fl_numel(param);
    if (n == 0) return;
    CU_LAUNCH(cu_grid(n), CU_THREADS, 0, k_adamw)(cu_f32(param), cu_f32(grad), cu_f32(m), cu_f32(v), n,
                                                        args_of(lr, beta1, beta2, eps, weight_decay, grad_scale, t));
    CU_LAUNCHED("k_adamw");
}

/* The same on rows[n_rows] (a host array) of 2-D tensors; the row length is
   numel / shape[0]. */
void cu_adamw_rows(fl_tensor *param, const fl_tensor *grad, fl_tensor *m, fl_tensor *v, const int32_t *rows,
                   int64_t n_rows, float lr, float beta1, float beta2, float eps, float weight_decay,
                   float grad_scale, int64_t t) {
    CU_CHECK(adam_shapes_ok(param, grad, m, v) && t >= 1 && param->shape[0] > 0);
    const int64_t R = param->shape[0], D = fl_numel(param) / R;
    if (n_rows <= 0 || D == 0) return;
    const int32_t *d_rows = (const int32_t *)cu_upload(rows, (size_t)n_rows * sizeof *rows);
    if (!d_rows) return;
    CU_LAUNCH(cu_grid(n_rows * D), CU_THREADS, 0, k_adamw_rows)(
        cu_f32(param), cu_f32(grad), cu_f32(m), cu_f32(v), d_rows, n_rows, R, D,
        args_of(lr, beta1, beta2, eps, weight_decay, grad_scale, t), g_cu.flags);
    CU_LAUNCHED("k_adamw_rows");
}
