/*
 * run/bench_gemm.c — each GEMM of a training step, its forward against its
 * two backward products (see bench.h), on the backend's own gemm op, so
 * whatever path the backend picks for a transposed operand is what is
 * measured.
 *
 * A round runs the three products of a layer back to back, and the rounds
 * repeat; each product's time is the best of its rounds. On a shared
 * virtual machine a vCPU is now and then taken away for whole scheduler
 * slices (times then come out as multiples of 4 ms and GFLOP/s halve), so
 * the best round is the one that ran on both cores, which is the speed the
 * kernel itself has; the ratio of a backward product to its forward (the
 * figure that matters: it does the forward's FLOPs and should take its
 * time) compares like with like.
 */
#include "bench.h"

#include <string.h>

#include "backend.h"
#include "clock.h"
#include "error.h"
#include "host_table.h"

const char *const fl_bench_gemm_product_names[FL_GEMM_PRODUCTS] = {"forward", "dx", "dW"};

/* The operands of one layer's products: x[N,in] (f32, or bf16 with
   x_dtype), W and dW [in,out] or [out,in] (w_out_in), y/dy[N,out]. */
typedef struct layer_mats {
    fl_tensor x, w, y, dx, dw;
    int w_out_in;
    int32_t x_dtype;
} layer_mats;

static fl_status mats_make(const fl_host *h, int64_t N, int64_t in, int64_t out, layer_mats *m, fl_error *err) {
    const int64_t sx[2] = {N, in}, sy[2] = {N, out};
    const int64_t sw[2] = {m->w_out_in ? out : in, m->w_out_in ? in : out};
    fl_status st = h->tensor_ensure(h, &m->x, m->x_dtype, 2, sx, err);
    if (!st) st = h->tensor_ensure(h, &m->w, FL_F32, 2, sw, err);
    if (!st) st = h->tensor_ensure(h, &m->y, FL_F32, 2, sy, err);
    if (!st) st = h->tensor_ensure(h, &m->dx, FL_F32, 2, sx, err);
    if (!st) st = h->tensor_ensure(h, &m->dw, FL_F32, 2, sw, err);
    if (st) return st;
    h->ops->rng_normal(&m->dx, 1, 0, 0.0f, 1.0f); /* x's values, rounded into x if it is bf16 */
    if (m->x_dtype == FL_F32) h->ops->copy(&m->dx, &m->x);
    else h->ops->activation(FL_ACT_IDENTITY, &m->dx, &m->x);
    h->ops->rng_normal(&m->w, 2, 0, 0.0f, 0.05f);
    h->ops->rng_normal(&m->y, 3, 0, 0.0f, 1.0f);
    h->ops->fill(&m->dw, 0.0f);
    return FL_OK;
}

static void mats_free(const fl_host *h, layer_mats *m) {
    fl_tensor *all[] = {&m->x, &m->w, &m->y, &m->dx, &m->dw};
    for (int i = 0; i < 5; i++) h->tensor_release(h, all[i]);
}

/* Seconds of one product, the device finished. */
static double time_product(const fl_backend *be, layer_mats *m, int product) {
    if (be->sync) be->sync(NULL);
    const double t0 = fl_now_s();
    const int oi = m->w_out_in; /* bench.h: the transposes of each layout */
    if (product == FL_GEMM_FWD) be->ops.gemm(0, oi, 1.0f, &m->x, &m->w, 0.0f, &m->y);       /* y = x·W or x·Wᵀ */
    else if (product == FL_GEMM_DX) be->ops.gemm(0, !oi, 1.0f, &m->y, &m->w, 0.0f, &m->dx); /* dx = dy·Wᵀ or dy·W */
    else if (oi) be->ops.gemm(1, 0, 1.0f, &m->y, &m->x, 1.0f, &m->dw);                     /* dW += dyᵀ·x */
    else be->ops.gemm(1, 0, 1.0f, &m->x, &m->y, 1.0f, &m->dw);                             /* dW += xᵀ·dy */
    if (be->sync) be->sync(NULL);
    return fl_now_s() - t0;
}

static fl_status measure_layer(const fl_backend *be, const fl_host *h, int reps, int32_t x_dtype,
                               fl_bench_gemm_row *row, fl_error *err) {
    layer_mats m = {.w_out_in = row->w_out_in, .x_dtype = x_dtype};
    fl_status st = mats_make(h, row->tokens, row->in, row->out, &m, err);
    if (!st) {
        double best[FL_GEMM_PRODUCTS] = {1e30, 1e30, 1e30};
        for (int p = 0; p < FL_GEMM_PRODUCTS; p++) time_product(be, &m, p); /* warm-up: packing, JIT */
        for (int r = 0; r < reps; r++)
            for (int p = 0; p < FL_GEMM_PRODUCTS; p++) {
                const double t = time_product(be, &m, p);
                if (t < best[p]) best[p] = t;
            }
        const double flop = 2.0 * (double)row->tokens * (double)row->in * (double)row->out;
        for (int p = 0; p < FL_GEMM_PRODUCTS; p++) {
            row->ms[p] = 1e3 * best[p];
            row->gflops[p] = flop / best[p] / 1e9;
        }
    }
    mats_free(h, &m);
    return st;
}

fl_status fl_bench_gemm(const fl_bench_gemm_opts *o, fl_bench_gemm_result *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    const fl_bench_shape *s = &o->shape;
    if (o->reps < 1 || o->reps > 64) return fl_fail(err, FL_EINVAL, "--reps %d must be in [1, 64]", o->reps);
    if (s->d_model < 1 || s->context < 1 || s->batch < 1 || s->vocab < 1)
        return fl_fail(err, FL_EINVAL, "bench --gemm: the shape must be positive");
    const fl_backend *be = NULL;
    fl_status st = fl_backend_select(o->device, &be, err);
    if (st) return st;
    if (o->bf16_x && strcmp(fl_backend_precision(be), "bf16"))
        return fl_fail(err, FL_EINVAL, "bench --gemm: --activations bf16 needs the bf16 precision (the %s backend runs %s)",
                       be->name, fl_backend_precision(be));
    snprintf(r->backend, sizeof r->backend, "%s", be->name);
    snprintf(r->kernel, sizeof r->kernel, "%s", be->describe());
    r->reps = o->reps;
    const int64_t N = (int64_t)s->batch * s->context, d = s->d_model;
    /* stored as the model and the dense FFN plugin store them (bench.h) */
    const struct { const char *name; int64_t in, out; int w_out_in; } layers[FL_BENCH_GEMM_LAYERS] = {
        {"qkv", d, 3 * d, 0}, {"attn proj", d, d, 0}, {"ffn fc", d, 4 * d, 0}, {"ffn proj", 4 * d, d, 0},
        {"lm head", d, s->vocab, 1},
    };
    fl_host h;
    fl_host_init(&h, be, NULL);
    for (int i = 0; i < FL_BENCH_GEMM_LAYERS && !st; i++) {
        fl_bench_gemm_row *row = &r->rows[r->n_rows];
        *row = (fl_bench_gemm_row){.layer = layers[i].name, .tokens = N, .in = layers[i].in, .out = layers[i].out,
                                   .w_out_in = layers[i].w_out_in};
        if ((st = measure_layer(be, &h, o->reps, o->bf16_x ? FL_BF16 : FL_F32, row, err))) break;
        r->n_rows++;
        for (int p = FL_GEMM_DX; p < FL_GEMM_PRODUCTS; p++)
            if (row->ms[p] / row->ms[FL_GEMM_FWD] > r->worst_ratio) r->worst_ratio = row->ms[p] / row->ms[FL_GEMM_FWD];
    }
    return st;
}
