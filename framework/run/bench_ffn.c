/*
 * run/bench_ffn.c — `ffnlab bench --ffn-only`: one FFN layer, sparse vs dense
 * (see bench.h).
 *
 * Runs each plugin on its own (no model around it) over N = 16x256 tokens
 * (--tokens N: N/256 sequences of 256) at
 * the shapes of the study ffnlab reproduces (d=256: dense d_ff=4096, MoE
 * 4x1023 top-1..3, CNT d_ff=4032 in 16/32/64 blocks, PKM 4 heads, 56^2 slots,
 * knn 14..42) and at d=512 (MoE 8 experts top-1, CNT block 8, PKM 64^2 slots),
 * and reports tokens/s and the ratio to the dense FFN measured in the same
 * invocation: at equal total parameters (dense d_ff = 4d) and at equal active
 * FLOPs (a dense FFN whose d_ff matches the sparse layer's flops_per_token).
 * Modes: forward (training mode), forward+backward, and inference (eval-mode
 * forward, where CNT computes only the selected units).
 * --profile: the layers get a host whose ops are timed one by one
 * (core/op_profile.h); after each mode's median, as many calls again are
 * profiled (the dense baselines and the cases, not the equal-FLOPs denses).
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "error.h"
#include "ffn_layer.h"
#include "host_table.h"
#include "log.h"
#include "op_profile.h"

enum { MODE_FWD = FL_BENCH_FWD, MODE_FWD_BWD = FL_BENCH_FWD_BWD, MODE_INFER = FL_BENCH_INFER, N_MODES = FL_BENCH_MODES };
const char *const fl_bench_mode_names[FL_BENCH_MODES] = {"forward", "fwd+bwd", "inference"};

typedef struct ffn_case {
    int d;
    const char *spec;          /* the sparse (or dense) layer */
    unsigned modes;            /* bit per MODE_* */
} ffn_case;

#define FWD (1u << MODE_FWD)
#define BWD (1u << MODE_FWD_BWD)
#define INF (1u << MODE_INFER)

static const ffn_case CASES[] = {
    {256, "moe:experts=4,d_expert=1023,top_k=1", FWD | BWD},
    {256, "moe:experts=4,d_expert=1023,top_k=2", FWD | BWD},
    {256, "moe:experts=4,d_expert=1023,top_k=3", FWD},
    {256, "cnt:d_ff=4032,block=252", FWD | INF},
    {256, "cnt:d_ff=4032,block=126", FWD | INF},
    {256, "cnt:d_ff=4032,block=63", FWD | INF},
    {256, "pkm:heads=4,n_keys=56,k_dim=256,knn=14", FWD | BWD},
    {256, "pkm:heads=4,n_keys=56,k_dim=256,knn=42", FWD},
    {512, "moe:experts=8,top_k=1", FWD | BWD},
    {512, "cnt:block=8", FWD | BWD | INF},
    {512, "pkm:heads=4,n_keys=64,k_dim=256,knn=32", FWD | BWD},
};
#define N_CASES (int)(sizeof CASES / sizeof CASES[0])

/* --only: a prefix of the specs, or NULL for all */
static int selected(const ffn_case *k, const char *only) { return !only || !strncmp(k->spec, only, strlen(only)); }

#define BENCH_VOCAB 4096 /* the token ids a layer sees (a hash layer routes by them) */

typedef struct bench_io {
    const fl_host *h;
    fl_tensor x, y, dy, dx;    /* [N,d] */
    fl_tensor tokens, positions; /* [B,T] i32: random ids, 0..T-1 */
    int64_t B, T;
    int reps;
    fl_bench_ffn_result *r;    /* where --profile rows go */
    int profile;
} bench_io;

/* Seconds of one call in `mode` (step `step`). A GPU backend queues work:
   the call is timed up to the end of its kernels. */
static fl_status timed_call(bench_io *io, fl_ffn_layer *L, int mode, int step, double *sec, fl_error *err) {
    const fl_backend *be = fl_host_backend(io->h);
    fl_ffn_ctx ctx = {.train = mode != MODE_INFER, .step = step, .rng_key = 7, .B = io->B, .T = io->T,
                      .tokens = &io->tokens, .positions = &io->positions};
    fl_status st = be->sync ? be->sync(err) : FL_OK;
    if (st) return st;
    double t0 = fl_now_s();
    st = L->ffn->forward(L->layer, &ctx, &io->x, &io->y, err);
    if (!st && mode == MODE_FWD_BWD) st = L->ffn->backward(L->layer, &ctx, &io->dy, &io->dx, err);
    if (!st && be->sync) st = be->sync(err);
    *sec = fl_now_s() - t0;
    return st;
}

/* Median seconds of one call in `mode` (after one warm-up call). */
static fl_status time_mode(bench_io *io, fl_ffn_layer *L, int mode, double *sec, fl_error *err) {
    double t[32], warm_up;
    int reps = io->reps < 32 ? io->reps : 32;
    for (int r = -1; r < reps; r++) {
        fl_status st = timed_call(io, L, mode, r + 1, r < 0 ? &warm_up : &t[r], err);
        if (st) return st;
    }
    qsort(t, (size_t)reps, sizeof *t, fl_cmp_double);
    *sec = t[reps / 2];
    return FL_OK;
}

/* As many calls again in `mode` with every host op timed: one row of
   io->r->profiles (none once the table is full). */
static fl_status profile_mode(bench_io *io, fl_ffn_layer *L, int d, const char *spec, int mode, double unprofiled,
                              fl_error *err) {
    fl_bench_ffn_result *r = io->r;
    if (r->n_profiles == FL_BENCH_FFN_MAX_PROFILES) return FL_OK;
    fl_bench_ffn_profile *p = &r->profiles[r->n_profiles];
    *p = (fl_bench_ffn_profile){.d = d, .mode = mode, .calls = io->reps, .unprofiled_ms = 1e3 * unprofiled};
    snprintf(p->spec, sizeof p->spec, "%s", spec);
    fl_op_profile_attach(&p->ops);
    fl_status st = FL_OK;
    for (int c = 0; c < io->reps && !st; c++) {
        double sec = 0;
        st = timed_call(io, L, mode, io->reps + 1 + c, &sec, err);
        p->ms += 1e3 * sec / io->reps;
    }
    fl_op_profile_attach(NULL);
    if (st) return st;
    p->own_ms = p->ms;
    for (int op = 0; op < FL_OP_COUNT; op++) p->own_ms -= 1e3 * p->ops.seconds[op] / p->calls;
    r->n_profiles++;
    return FL_OK;
}

/* Creates the layer `spec` at width d, times every mode in `modes` into
   sec[] (and profiles it when `profile` and --profile), and records the
   layer's flops_per_token after each mode (CNT's training and inference
   FLOPs differ). */
static fl_status measure(bench_io *io, int d, const char *spec, unsigned modes, int profile, double sec[N_MODES],
                         double flops[N_MODES], fl_error *err) {
    fl_param_list params = {0};
    fl_ffn_layer L;
    const fl_ffn_site site = {.d_model = d, .index = 0, .n_layers = 4, .vocab_size = BENCH_VOCAB, .seed = 1};
    fl_status st = fl_ffn_layer_create(&L, io->h, &params, spec, &site, err);
    for (int m = 0; m < N_MODES && !st; m++) {
        sec[m] = flops[m] = NAN;
        if (!(modes & (1u << m))) continue;
        st = time_mode(io, &L, m, &sec[m], err);
        if (!st && profile && io->profile) st = profile_mode(io, &L, d, spec, m, sec[m], err);
        flops[m] = fl_ffn_layer_stat(&L, "flops_per_token", NAN);
    }
    fl_ffn_layer_destroy(&L);
    fl_params_free(&params, fl_host_backend(io->h));
    return st;
}

/* Seconds of a dense FFN doing the same FLOPs per token as a sparse layer
   in mode m (NAN when the layer reports no FLOPs). */
static fl_status equal_flops_dense(bench_io *io, int d, int m, double flops, double *sec, fl_error *err) {
    *sec = NAN;
    int dff = isfinite(flops) ? (int)lround(flops / (4.0 * d)) : 0;
    if (dff < 1) return FL_OK;
    char spec[64];
    double all[N_MODES], unused[N_MODES];
    snprintf(spec, sizeof spec, "dense:d_ff=%d", dff);
    fl_status st = measure(io, d, spec, 1u << m, 0, all, unused, err);
    if (!st) *sec = all[m];
    return st;
}

/* tokens[B,T] random ids in [0, BENCH_VOCAB), positions[B,T] = t. */
static fl_status alloc_ids(bench_io *io, fl_error *err) {
    const int64_t shape[2] = {io->B, io->T}, n = io->B * io->T;
    int32_t *host = malloc((size_t)n * sizeof *host);
    fl_status st = host ? FL_OK : fl_fail(err, FL_ENOMEM, "out of memory");
    if (!st) st = io->h->tensor_ensure(io->h, &io->tokens, FL_I32, 2, shape, err);
    if (!st) st = io->h->tensor_ensure(io->h, &io->positions, FL_I32, 2, shape, err);
    if (!st) {
        for (int64_t i = 0; i < n; i++) host[i] = (int32_t)(fl_rng_bits(13, (uint64_t)i) % BENCH_VOCAB);
        io->h->ops->from_host(&io->tokens, host, (size_t)n * sizeof *host);
        for (int64_t i = 0; i < n; i++) host[i] = (int32_t)(i % io->T);
        io->h->ops->from_host(&io->positions, host, (size_t)n * sizeof *host);
    }
    free(host);
    return st;
}

static fl_status alloc_io(bench_io *io, int d, fl_error *err) {
    int64_t shape[2] = {io->B * io->T, d};
    fl_tensor *ts[] = {&io->x, &io->y, &io->dy, &io->dx};
    for (int i = 0; i < 4; i++) {
        fl_status st = io->h->tensor_ensure(io->h, ts[i], FL_F32, 2, shape, err);
        if (st) return st;
    }
    io->h->ops->rng_normal(&io->x, 11, 0, 0.0f, 1.0f);
    io->h->ops->rng_normal(&io->dy, 12, 0, 0.0f, 1.0f);
    return alloc_ids(io, err);
}

/* One result row. */
static void add_row(fl_bench_ffn_result *r, int d, const char *spec, int mode, double sec, double tokens,
                    double dense_sec, double eq_sec) {
    if (r->n_rows == FL_BENCH_FFN_MAX_ROWS) return;
    fl_bench_ffn_row *w = &r->rows[r->n_rows++];
    *w = (fl_bench_ffn_row){.d = d, .mode = mode, .ms = 1e3 * sec, .tokens_per_s = tokens / sec,
                            .speedup_equal_params = dense_sec / sec, .speedup_equal_flops = eq_sec / sec};
    snprintf(w->spec, sizeof w->spec, "%s", spec);
}

/* One shape: the dense baseline, then every case at that width. */
static fl_status bench_width(bench_io *io, int d, const char *only, fl_bench_ffn_result *r, fl_error *err) {
    fl_bench_ffn_width *wd = &r->widths[r->n_widths++];
    wd->d = d;
    snprintf(wd->dense_spec, sizeof wd->dense_spec, "dense:d_ff=%d", d == 256 ? 4096 : 4 * d);
    double tokens = (double)(io->B * io->T), unused[N_MODES];
    fl_status st = alloc_io(io, d, err);
    if (!st) st = measure(io, d, wd->dense_spec, FWD | BWD | INF, 1, wd->dense_ms, unused, err);
    if (st) return st;
    const double *dense = wd->dense_ms; /* seconds until the end, ms after */
    for (int c = 0; c < N_CASES && !st; c++) {
        const ffn_case *k = &CASES[c];
        if (k->d != d || !selected(k, only)) continue;
        fl_log_info("bench --ffn-only: d=%d %s", d, k->spec);
        double sec[N_MODES], flops[N_MODES];
        if ((st = measure(io, d, k->spec, k->modes, 1, sec, flops, err))) break;
        for (int m = 0; m < N_MODES && !st; m++) {
            if (!(k->modes & (1u << m))) continue;
            double eq = NAN;
            if ((st = equal_flops_dense(io, d, m, flops[m], &eq, err))) break;
            add_row(r, d, k->spec, m, sec[m], tokens, dense[m], eq);
        }
    }
    for (int m = 0; m < N_MODES; m++) wd->dense_ms[m] *= 1e3;
    return st;
}

/* FL_OK when --only (a prefix of the specs, or NULL: all) selects a case;
   else FL_EINVAL listing them all. */
static fl_status check_only(const char *only, fl_error *err) {
    char all[1024] = "";
    for (int c = 0; c < N_CASES; c++) {
        if (selected(&CASES[c], only)) return FL_OK;
        const size_t n = strlen(all);
        snprintf(all + n, sizeof all - n, "%s%s", c ? ", " : "", CASES[c].spec);
    }
    return fl_fail(err, FL_EINVAL, "--only '%s' is the start of none of the layers: %s", only, all);
}

fl_status fl_bench_ffn(const fl_bench_ffn_opts *o, fl_bench_ffn_result *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    if (o->reps < 1 || o->reps > 32) return fl_fail(err, FL_EINVAL, "--reps must be in [1, 32]");
    if (o->tokens < 256 || o->tokens % 256 || o->tokens > (1 << 24))
        return fl_fail(err, FL_EINVAL, "--tokens must be a multiple of 256 in [256, 16777216] (sequences of 256)");
    fl_status st = check_only(o->only, err);
    if (st) return st;
    const fl_backend *be = NULL;
    if ((st = fl_backend_select(o->device, &be, err))) return st;
    fl_host h;
    fl_host_init(&h, be, NULL);
    fl_ops timed_ops;
    if (o->profile) { /* detached, the timed ops only forward: the medians stay the same */
        fl_op_profile_table(be, &timed_ops);
        h.ops = &timed_ops;
    }
    bench_io io = {.h = &h, .B = o->tokens / 256, .T = 256, .reps = o->reps, .r = r, .profile = o->profile};
    snprintf(r->backend, sizeof r->backend, "%s", be->name);
    snprintf(r->kernel, sizeof r->kernel, "%s", be->describe());
    r->reps = o->reps;
    r->tokens = o->tokens;
    st = bench_width(&io, 256, o->only, r, err);
    if (!st) st = bench_width(&io, 512, o->only, r, err);
    fl_tensor *ts[] = {&io.x, &io.y, &io.dy, &io.dx, &io.tokens, &io.positions};
    for (int i = 0; i < 6; i++) h.tensor_release(&h, ts[i]);
    return st;
}
