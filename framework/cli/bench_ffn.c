/*
 * cli/bench_ffn.c — `ffnlab bench --ffn-only`: one FFN layer, sparse vs dense.
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
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>  /* --json */

#include "cli.h"
#include "error.h"
#include "ffn_layer.h"
#include "fsutil.h"
#include "host.h"

enum { MODE_FWD, MODE_FWD_BWD, MODE_INFER, N_MODES };
static const char *const MODE_NAMES[N_MODES] = {"forward", "fwd+bwd", "inference"};

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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_io {
    const fl_host *h;
    fl_tensor x, y, dy, dx;    /* [N,d] */
    int64_t B, T;
    int reps;
} bench_io;

/* Median seconds of one call in `mode` (after one warm-up call). A GPU
   backend queues work: each call is timed up to the end of its kernels. */
static fl_status time_mode(bench_io *io, fl_ffn_layer *L, int mode, double *sec, fl_error *err) {
    double t[32];
    int reps = io->reps < 32 ? io->reps : 32;
    const fl_backend *be = fl_host_backend(io->h);
    fl_ffn_ctx ctx = {.train = mode != MODE_INFER, .step = 0, .rng_key = 7, .B = io->B, .T = io->T};
    for (int r = -1; r < reps; r++) {
        ctx.step = r + 1;
        fl_status st = be->sync ? be->sync(err) : FL_OK;
        if (st) return st;
        double t0 = now_s();
        st = L->ffn->forward(L->layer, &ctx, &io->x, &io->y, err);
        if (!st && mode == MODE_FWD_BWD) st = L->ffn->backward(L->layer, &ctx, &io->dy, &io->dx, err);
        if (!st && be->sync) st = be->sync(err);
        if (st) return st;
        if (r >= 0) t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    *sec = t[reps / 2];
    return FL_OK;
}

/* Creates the layer `spec` at width d, times every mode in `modes` into
   sec[], and records the layer's flops_per_token after each mode (CNT's
   training and inference FLOPs differ). */
static fl_status measure(bench_io *io, int d, const char *spec, unsigned modes, double sec[N_MODES],
                         double flops[N_MODES], fl_error *err) {
    fl_param_list params = {0};
    fl_ffn_layer L;
    fl_status st = fl_ffn_layer_create(&L, io->h, &params, spec, d, 0, 4, 1, err);
    for (int m = 0; m < N_MODES && !st; m++) {
        sec[m] = flops[m] = NAN;
        if (!(modes & (1u << m))) continue;
        st = time_mode(io, &L, m, &sec[m], err);
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
    fl_status st = measure(io, d, spec, 1u << m, all, unused, err);
    if (!st) *sec = all[m];
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
    return FL_OK;
}

/* One result: a table line, and an object in rows (if any). */
static void row(cJSON *rows, int d, const char *spec, const char *mode, double sec, double tokens,
                double dense_sec, double eq_sec) {
    printf("  d=%-4d %-40s %-9s %8.2f ms %9.0f tok/s   x%-6.2f", d, spec, mode, 1e3 * sec, tokens / sec,
           dense_sec / sec);
    if (isfinite(eq_sec)) printf("  x%.2f", eq_sec / sec);
    printf("\n");
    if (!rows) return;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "d", d);
    cJSON_AddStringToObject(r, "spec", spec);
    cJSON_AddStringToObject(r, "mode", mode);
    cJSON_AddNumberToObject(r, "ms", 1e3 * sec);
    cJSON_AddNumberToObject(r, "tokens_per_s", tokens / sec);
    cJSON_AddNumberToObject(r, "speedup_equal_params", dense_sec / sec);
    if (isfinite(eq_sec)) cJSON_AddNumberToObject(r, "speedup_equal_flops", eq_sec / sec);
    else cJSON_AddNullToObject(r, "speedup_equal_flops");
    cJSON_AddItemToArray(rows, r);
}

/* One shape: the dense baseline, then every case at that width. */
static fl_status bench_width(bench_io *io, int d, const char *only, cJSON *rows, fl_error *err) {
    char dense_spec[64];
    snprintf(dense_spec, sizeof dense_spec, "dense:d_ff=%d", d == 256 ? 4096 : 4 * d);
    double dense[N_MODES], tokens = (double)(io->B * io->T);
    fl_status st = alloc_io(io, d, err);
    double unused[N_MODES];
    if (!st) st = measure(io, d, dense_spec, FWD | BWD | INF, dense, unused, err);
    if (st) return st;
    printf("d=%d, N=%lld tokens; baseline %s: forward %.2f ms, fwd+bwd %.2f ms\n", d, (long long)tokens,
           dense_spec, 1e3 * dense[MODE_FWD], 1e3 * dense[MODE_FWD_BWD]);
    printf("  %-6s %-40s %-9s %11s %15s   %-7s  %s\n", "", "layer", "mode", "time", "throughput",
           "vs dense", "vs dense of equal active FLOPs");
    for (int c = 0; c < N_CASES && !st; c++) {
        const ffn_case *k = &CASES[c];
        if (k->d != d || (only && strncmp(k->spec, only, strlen(only)))) continue;
        double sec[N_MODES], flops[N_MODES];
        if ((st = measure(io, d, k->spec, k->modes, sec, flops, err))) break;
        for (int m = 0; m < N_MODES && !st; m++) {
            if (!(k->modes & (1u << m))) continue;
            double eq = NAN;
            if ((st = equal_flops_dense(io, d, m, flops[m], &eq, err))) break;
            row(rows, d, k->spec, MODE_NAMES[m], sec[m], tokens, dense[m], eq);
        }
    }
    return st;
}

int fl_cmd_bench_ffn(int argc, char **argv) {
    const char *json_path = NULL, *only = NULL, *device = "cpu", *precision = "auto";
    int reps = 5;
    long long tokens = 16 * 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--ffn-only")) continue;
        if (!strcmp(a, "--json") && has_value) json_path = argv[++i];
        else if (!strcmp(a, "--only") && has_value) only = argv[++i];
        else if (!strcmp(a, "--device") && has_value) device = argv[++i];
        else if (!strcmp(a, "--reps") && has_value) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--tokens") && has_value) tokens = atoll(argv[++i]);
        else if (!strcmp(a, "--precision") && has_value) precision = argv[++i];
        else return fl_cli_usage("bench", "--ffn-only: unknown or incomplete option '%s'", a);
    }
    if (reps < 1 || reps > 32) return fl_cli_usage("bench", "--reps must be in [1, 32]");
    if (tokens < 256 || tokens % 256 || tokens > (1 << 24))
        return fl_cli_usage("bench", "--tokens must be a multiple of 256 in [256, 16777216] (sequences of 256)");
    const fl_backend *be = NULL;
    fl_error serr = {0};
    if (fl_backend_request_precision(precision, &serr) || fl_backend_select(device, &be, &serr))
        return fl_cli_report(&serr);
    fl_host h;
    fl_host_init(&h, be, NULL);
    bench_io io = {.h = &h, .B = tokens / 256, .T = 256, .reps = reps};
    cJSON *doc = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(doc, "ffn");
    cJSON_AddStringToObject(doc, "backend", be->name);
    cJSON_AddStringToObject(doc, "kernel", be->describe());
    printf("FFN layers alone on %s (%s); times are medians of %d\n", be->name, be->describe(), reps);
    fl_error err = {0};
    fl_status st = bench_width(&io, 256, only, rows, &err);
    if (!st) st = bench_width(&io, 512, only, rows, &err);
    if (!st && json_path) {
        char *text = cJSON_Print(doc);
        st = text ? fl_write_file_atomic(json_path, text, strlen(text), &err) : fl_fail(&err, FL_ENOMEM, "out of memory");
        cJSON_free(text);
    }
    cJSON_Delete(doc);
    fl_tensor *ts[] = {&io.x, &io.y, &io.dy, &io.dx};
    for (int i = 0; i < 4; i++) h.tensor_release(&h, ts[i]);
    return st ? fl_cli_report(&err) : 0;
}
