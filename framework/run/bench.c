/*
 * run/bench.c — training throughput against the GEMM peak (see bench.h).
 *
 * Two figures, measured in the same invocation so machine noise cancels in
 * their ratio: (1) one GEMM of the model's largest shape (the LM head,
 * [B*T, d] x [d, V]) as the practical peak of this machine, and (2) whole
 * training steps (forward, backward, AdamW) of the model, as tokens/s and
 * achieved GFLOP/s. On a GPU, MFU against the datasheet peak too.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "clock.h"
#include "host_table.h"
#include "model.h"
#include "optim.h"

/* GFLOP/s of C[M,N] = A[M,K]·B[N,K]ᵀ, best of several repetitions. */
static double gemm_gflops(const fl_backend *be, int64_t M, int64_t N, int64_t K) {
    fl_host h;
    fl_host_init(&h, be, NULL);
    fl_tensor A = {0}, B = {0}, C = {0};
    int64_t sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
    if (h.tensor_ensure(&h, &A, FL_F32, 2, sa, NULL) || h.tensor_ensure(&h, &B, FL_F32, 2, sb, NULL) ||
        h.tensor_ensure(&h, &C, FL_F32, 2, sc, NULL))
        return 0;
    be->ops.rng_normal(&A, 1, 0, 0, 1);
    be->ops.rng_normal(&B, 2, 0, 0, 1);
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        if (be->sync) be->sync(NULL); /* a GPU runs ops asynchronously: time whole products */
        double t = fl_now_s();
        be->ops.gemm(0, 1, 1.0f, &A, &B, 0.0f, &C);
        if (be->sync) be->sync(NULL);
        t = fl_now_s() - t;
        if (rep > 0 && t < best) best = t; /* rep 0 warms up */
    }
    h.tensor_release(&h, &A), h.tensor_release(&h, &B), h.tensor_release(&h, &C);
    return 2.0 * (double)M * (double)N * (double)K / best / 1e9;
}

/* One training step (zero grad, forward, backward, AdamW), its phases
   marked in prof when given. */
static fl_status train_step(const fl_backend *be, fl_model *m, const fl_bench_shape *s, const int32_t *x,
                            const int32_t *y, int step, fl_profile *prof, fl_error *err) {
    static const fl_adamw opt = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    double loss;
    fl_profile_mark(prof, FL_PH_OPTIMIZER);
    fl_model_zero_grad(m);
    fl_status st = fl_model_forward(m, x, y, s->batch, s->context, 1, step, &loss, err);
    if (!st) st = fl_model_backward(m, err);
    fl_profile_mark(prof, FL_PH_OPTIMIZER);
    if (!st) st = fl_adamw_step(be, fl_model_params(m), &opt, 1e-4, 1.0f, step + 1, err);
    fl_profile_mark(prof, FL_PH_NONE);
    return st;
}

/* Tokens/s of full training steps; with o->profile, as many steps again
   with their phases timed. */
static fl_status train_rate(const fl_backend *be, const fl_bench_opts *o, fl_bench_result *r, fl_error *err) {
    const fl_bench_shape *s = &o->shape;
    const char *specs[64];
    if (s->n_layers < 1 || s->n_layers > 64) return fl_fail(err, FL_EINVAL, "bench: layers must be in [1, 64]");
    for (int l = 0; l < s->n_layers; l++) specs[l] = s->ffn;
    fl_model_config mc = {.vocab_size = s->vocab, .context = s->context, .d_model = s->d_model,
                          .n_layers = s->n_layers, .n_heads = s->n_heads, .ffn_specs = specs, .seed = 1};
    fl_model *m = NULL;
    fl_status st = fl_model_create(&mc, be, &m, err);
    if (st) return st;
    size_t n = (size_t)s->batch * (size_t)s->context;
    int32_t *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; x && y && i < n; i++)
        x[i] = (int32_t)(fl_rng_bits(7, i) % (uint64_t)s->vocab), y[i] = (int32_t)(fl_rng_bits(8, i) % (uint64_t)s->vocab);
    if (!x || !y) st = fl_fail(err, FL_ENOMEM, "out of memory");
    double t0 = 0;
    int step = 0;
    for (; step < s->steps + 2 && !st; step++) {
        if (step == 2) t0 = fl_now_s(); /* two warm-up steps: allocation, JIT */
        st = train_step(be, m, s, x, y, step, NULL, err);
    }
    if (!st) {
        r->tokens_per_s = (double)n * s->steps / (fl_now_s() - t0);
        r->flops_per_token = fl_model_flops_per_token(m, s->context);
        r->head_width = fl_model_head_width(m);
    }
    if (!st && o->profile) {
        fl_profile prof;
        fl_profile_init(&prof, be);
        fl_model_set_profile(m, &prof);
        t0 = fl_now_s();
        for (int i = 0; i < s->steps && !st; i++, step++) st = train_step(be, m, s, x, y, step, &prof, err);
        r->profiled_tokens_per_s = (double)n * s->steps / (fl_now_s() - t0);
        fl_model_set_profile(m, NULL);
        for (int i = 0; i < FL_PH_COUNT; i++) r->profile_ms[i] = 1e3 * prof.seconds[i] / s->steps;
        r->profiled = 1;
    }
    free(x), free(y);
    fl_model_free(m);
    return st;
}

fl_status fl_bench_train(const fl_bench_opts *o, fl_bench_result *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    const fl_bench_shape *s = &o->shape;
    const fl_backend *be = NULL;
    fl_status st = fl_backend_select(o->device, &be, err);
    if (st) return st;
    snprintf(r->backend, sizeof r->backend, "%s", be->name);
    snprintf(r->kernel, sizeof r->kernel, "%s", be->describe());
    if (be->peak_tflops) { /* the datasheet peak for MFU */
        const char *what = "";
        r->peak_tflops = be->peak_tflops(&what);
        snprintf(r->peak_what, sizeof r->peak_what, "%s", what);
    }
    r->sgemm_gflops = gemm_gflops(be, (int64_t)s->batch * s->context, s->vocab, s->d_model);
    if ((st = train_rate(be, o, r, err))) return st;
    r->gflops = r->tokens_per_s * r->flops_per_token / 1e9;
    r->mfu = r->peak_tflops > 0 ? r->gflops / (r->peak_tflops * 1e3) : 0;
    return FL_OK;
}
