/*
 * run/bench_comm.c — `ffnlab bench --comm` (see bench.h): what multi-process training
 * pays for communication. Run it under `mpirun -np P` (and once without
 * mpirun for the one-process baseline).
 *
 * Two parts, on the MPI communicator (CPU buffers):
 *   1. collectives alone: all-to-all-v with the row counts an MoE layer of
 *      the benchmark shape sends (N/P tokens x top_k rows of d floats per
 *      rank, spread evenly over the ranks of its expert group; also a
 *      quarter and four times that), and all-reduce of the fused replicated
 *      gradient buffer (and of 1 MiB): time per call (median of 10) and
 *      bandwidth — bytes this rank sends to others per second for
 *      all-to-all-v, algbw and busbw = algbw * 2(P-1)/P for all-reduce;
 *   2. whole training steps of the MoE model with experts split over the
 *      ranks (expert_parallel = P unless given) on one global batch: step
 *      time, global tokens/s, time per token, and the time spent inside
 *      collectives (the plugins' all-to-alls, the gradient all-reduce, the
 *      loss reduction; waiting for a slower rank counts as communication),
 *      as the mean and maximum over ranks and a fraction of the step.
 * Inputs are random tokens: throughput does not depend on the text.
 */
#include "bench.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "clock.h"
#include "comm.h"
#include "dist.h"
#include "error.h"
#include "host_table.h"
#include "model.h"
#include "optim.h"
#include "results.h"

typedef struct step_figures {
    double step_s, comm_s, comm_max_s, sync_s;
    int64_t replicated_floats;
} step_figures;

/* Median of 10 timed calls of fn (after 2 untimed), the slowest rank's. */
typedef fl_status (*bench_fn)(const fl_comm *c, void *arg, fl_error *err);
static fl_status median_time(const fl_comm *c, bench_fn fn, void *arg, double *out, fl_error *err) {
    double t[10];
    for (int rep = -2; rep < 10; rep++) {
        fl_status st = fl_comm_barrier_host(c, err);
        double t0 = fl_now_s();
        if (!st) st = fn(c, arg, err);
        if (st) return st;
        if (rep >= 0) t[rep] = fl_now_s() - t0;
    }
    qsort(t, 10, sizeof t[0], fl_cmp_double);
    /* the collective takes as long as its slowest member */
    uint64_t ns = (uint64_t)(0.5 * (t[4] + t[5]) * 1e9), lo = 0, hi = 0;
    fl_status st = fl_comm_minmax_u64(c, &ns, &lo, &hi, 1, err);
    *out = (double)hi * 1e-9;
    return st;
}

/* -------------------------------------------------- part 1: collectives */

typedef struct a2a_arg {
    int64_t rows;              /* rows this rank sends in total */
    size_t row_bytes;
    float *send, *recv;
    int64_t counts[1024];
} a2a_arg;

static fl_status run_a2a(const fl_comm *c, void *p, fl_error *err) {
    a2a_arg *a = p;
    return c->alltoallv(c, a->send, a->counts, a->recv, a->counts, a->row_bytes, err);
}

typedef struct ar_arg {
    fl_tensor t;
} ar_arg;

static fl_status run_ar(const fl_comm *c, void *p, fl_error *err) {
    return c->allreduce_sum(c, &((ar_arg *)p)->t, err);
}

static fl_bench_comm_op *next_op(fl_bench_comm_result *r) {
    return r->n_ops < FL_BENCH_COMM_MAX_OPS ? &r->ops[r->n_ops++] : &r->ops[FL_BENCH_COMM_MAX_OPS - 1];
}

static fl_status bench_a2a(const fl_comm *c, int64_t rows, int d, fl_bench_comm_result *r, fl_error *err) {
    a2a_arg a = {.rows = rows, .row_bytes = (size_t)d * sizeof(float)};
    const int E = c->ep_size;
    for (int j = 0; j < E; j++) a.counts[j] = rows / E;
    a.send = calloc((size_t)rows + 1, a.row_bytes);
    a.recv = calloc((size_t)rows + 1, a.row_bytes);
    if (!a.send || !a.recv) {
        free(a.send), free(a.recv);
        return fl_fail(err, FL_ENOMEM, "out of memory for the all-to-all-v benchmark");
    }
    double t = 0;
    fl_status st = median_time(c, run_a2a, &a, &t, err);
    double sent = (double)(rows / E) * (E - 1) * (double)a.row_bytes;
    if (!st)
        *next_op(r) = (fl_bench_comm_op){.op = FL_COMM_OP_ALLTOALLV, .count = rows, .row_floats = d,
                                         .bytes = rows * (double)a.row_bytes, .bytes_to_others = sent, .ms = 1e3 * t,
                                         .gb_per_s = sent / t / 1e9};
    free(a.send), free(a.recv);
    return st;
}

static fl_status bench_allreduce(const fl_comm *c, int64_t floats, const char *what, fl_bench_comm_result *r,
                                 fl_error *err) {
    ar_arg a;
    int64_t n = floats > 0 ? floats : 1;
    float *buf = calloc((size_t)n, sizeof *buf);
    if (!buf) return fl_fail(err, FL_ENOMEM, "out of memory for the all-reduce benchmark");
    a.t = fl_wrap(buf, FL_F32, (fl_device){FL_DEVICE_CPU, 0}, 1, &n);
    double t = 0;
    fl_status st = median_time(c, run_ar, &a, &t, err);
    double bytes = (double)n * 4, alg = bytes / t, bus = alg * 2.0 * (c->size - 1) / c->size;
    if (!st)
        *next_op(r) = (fl_bench_comm_op){.op = FL_COMM_OP_ALLREDUCE, .count = n, .what = what, .bytes = bytes,
                                         .ms = 1e3 * t, .gb_per_s = alg / 1e9, .busbw_gb_per_s = bus / 1e9};
    free(buf);
    return st;
}

/* ----------------------------------------------- part 2: training steps */

static fl_status make_model(const fl_bench_shape *s, const fl_comm *c, fl_model **m, fl_error *err) {
    const char *specs[64];
    for (int l = 0; l < s->n_layers; l++) specs[l] = s->ffn;
    fl_model_config mc = {.vocab_size = s->vocab, .context = s->context, .d_model = s->d_model,
                          .n_layers = s->n_layers, .n_heads = s->n_heads, .ffn_specs = specs, .seed = 1,
                          .comm = c};
    return fl_model_create(&mc, fl_backend_cpu(), m, err);
}

/* One step on this rank's slice; *sync_s gets the gradient all-reduce's time. */
static fl_status one_step(fl_model *m, fl_dist *dist, const int32_t *x, const int32_t *y, int b, int T,
                          int64_t step, double *sync_s, fl_error *err) {
    static const fl_adamw opt = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    double loss = 0;
    fl_model_zero_grad(m);
    fl_status st = fl_model_forward(m, x, y, b, T, 1, step, &loss, err);
    if (!st) st = fl_model_backward(m, err);
    double t0 = fl_now_s();
    if (!st && dist) st = fl_dist_sync_grads(dist, err);
    *sync_s += fl_now_s() - t0;
    const fl_comm *c = fl_model_host(m)->comm;
    if (!st) st = fl_comm_sum_f64(c, FL_COMM_WORLD, &loss, 1, err); /* as training reports it */
    if (!st) st = fl_adamw_step(fl_host_backend(fl_model_host(m)), fl_model_params(m), &opt, 1e-4, 1.0f, step + 1, err);
    return st;
}

static fl_status train_steps(const fl_bench_shape *s, const fl_comm *c, step_figures *f, fl_error *err) {
    fl_model *m = NULL;
    fl_dist *dist = NULL;
    fl_status st = make_model(s, c, &m, err);
    if (!st && c->size > 1) st = fl_dist_create(m, &dist, err);
    size_t n = (size_t)s->batch * (size_t)s->context;
    int32_t *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!st && (!x || !y)) st = fl_fail(err, FL_ENOMEM, "out of memory for a batch");
    for (size_t i = 0; !st && i < n; i++)
        x[i] = (int32_t)(fl_rng_bits(7, i) % (uint64_t)s->vocab), y[i] = (int32_t)(fl_rng_bits(8, i) % (uint64_t)s->vocab);
    const int b = s->batch / c->size;
    const size_t off = (size_t)c->rank * (size_t)b * (size_t)s->context;
    double t0 = 0, c0 = 0, sync = 0;
    for (int step = 0; step < s->steps + 2 && !st; step++) {
        if (step == 2) { /* two warm-up steps: allocation, JIT */
            if ((st = fl_comm_barrier_host(c, err))) break;
            t0 = fl_now_s(), sync = 0;
            fl_comm_counters(&c0, NULL);
        }
        st = one_step(m, dist, x + off, y + off, b, s->context, step, &sync, err);
    }
    if (!st) {
        double c1 = 0;
        fl_comm_counters(&c1, NULL);
        f->step_s = (fl_now_s() - t0) / s->steps;
        double v[3] = {(c1 - c0) / s->steps, sync / s->steps, f->step_s};
        double mine = v[0];
        st = fl_comm_sum_f64(c, FL_COMM_WORLD, v, 3, err);
        uint64_t us = (uint64_t)(mine * 1e6), lo = 0, hi = 0;
        if (!st) st = fl_comm_minmax_u64(c, &us, &lo, &hi, 1, err);
        f->comm_s = v[0] / c->size, f->sync_s = v[1] / c->size, f->step_s = v[2] / c->size;
        f->comm_max_s = (double)hi * 1e-6;
        if (dist) fl_dist_sizes(dist, &f->replicated_floats, NULL);
    }
    free(x), free(y);
    fl_dist_free(dist);
    fl_model_free(m);
    return st;
}

/* Rows one rank sends per all-to-all of one MoE layer: N/P tokens x top_k,
   read from the plugin's stats of a model built for it. */
static int64_t moe_rows(const fl_bench_shape *s, const fl_comm *c, fl_error *err, fl_status *st) {
    fl_model *m = NULL;
    if ((*st = make_model(s, c, &m, err))) return 0;
    void *layer = NULL;
    const fl_ffn_plugin *p = fl_model_ffn(m, 0, &layer);
    fl_stat stats[80];
    int n = p->stats ? p->stats(layer, stats, 80) : 0;
    int64_t k = 1;
    for (int i = 0; i < n && i < 80; i++)
        if (!strcmp(stats[i].name, "top_k")) k = (int64_t)stats[i].value;
    fl_model_free(m);
    return (int64_t)s->batch / c->size * s->context * k;
}

/* ----------------------------------------------------------------- the job */

/* OMP_NUM_THREADS if set, else this node's cores shared out among its ranks. */
static void share_cores(const fl_comm *w) {
    if (getenv("OMP_NUM_THREADS")) return;
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int here = local ? atoi(local) : w->size;
    if (w->size > 1 && here > 1) omp_set_num_threads(omp_get_num_procs() / here > 0 ? omp_get_num_procs() / here : 1);
}

fl_status fl_bench_comm(const fl_bench_comm_opts *o, fl_bench_comm_result *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    const fl_bench_shape *s = &o->shape;
    if (s->n_layers < 1 || s->n_layers > 64) return fl_fail(err, FL_EINVAL, "bench --comm: layers must be in [1, 64]");
    const fl_comm *w = NULL, *c = NULL;
    fl_status st = fl_comm_world(&w, err);
    if (st) return st;
    /* rank 0 writes the report at the end: it checks the file first, and every rank stops if it cannot */
    if (o->json && (st = fl_comm_agree(w, w->rank == 0 ? fl_json_check_report(o->json, err) : FL_OK, err)))
        return st;
    const int ep = o->expert_parallel ? o->expert_parallel : w->size;
    if (s->batch % w->size)
        return fl_comm_agree(w, fl_fail(err, FL_EINVAL, "--batch %d does not split over %d processes", s->batch, w->size), err);
    share_cores(w);
    if ((st = fl_comm_agree(w, fl_comm_open(ep, (fl_device){FL_DEVICE_CPU, 0}, &c, err), err))) return st;
    *r = (fl_bench_comm_result){.rank = c->rank, .processes = c->size, .expert_parallel = c->ep_size,
                                .threads = omp_get_max_threads()};
    step_figures f = {0};
    int64_t rows = moe_rows(s, c, err, &st);
    if (!st && c->size > 1) {
        for (int64_t n = rows / 4; n <= rows * 4 && !st; n *= 4) st = bench_a2a(c, n, s->d_model, r, err);
        if (!st) st = train_steps(s, c, &f, err); /* also sizes the fused gradient buffer */
        if (!st) st = bench_allreduce(c, f.replicated_floats, "the fused replicated gradients", r, err);
        if (!st) st = bench_allreduce(c, 262144, "1 MiB", r, err);
    } else if (!st) {
        st = train_steps(s, c, &f, err);
    }
    if (!st) {
        const double tokens = (double)s->batch * s->context;
        r->step_ms = 1e3 * f.step_s;
        r->tokens_per_s = tokens / f.step_s;
        r->us_per_token = 1e6 * f.step_s / tokens;
        r->comm_ms = 1e3 * f.comm_s;
        r->comm_max_ms = 1e3 * f.comm_max_s;
        r->grad_allreduce_ms = 1e3 * f.sync_s;
    }
    fl_comm_close(c);
    return st;
}
