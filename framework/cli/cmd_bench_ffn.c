/*
 * cli/cmd_bench_ffn.c — `ffnlab bench --ffn-only`: flags in, the table of
 * run/bench_ffn.c's figures out.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "job.h"
#include "results.h"

static void print_table(const fl_bench_ffn_result *r) {
    printf("FFN layers alone on %s (%s); times are medians of %d\n", r->backend, r->kernel, r->reps);
    for (int w = 0; w < r->n_widths; w++) {
        const fl_bench_ffn_width *wd = &r->widths[w];
        printf("d=%d, N=%lld tokens; baseline %s: forward %.2f ms, fwd+bwd %.2f ms\n", wd->d, (long long)r->tokens,
               wd->dense_spec, wd->dense_ms[FL_BENCH_FWD], wd->dense_ms[FL_BENCH_FWD_BWD]);
        printf("  %-6s %-40s %-9s %11s %15s   %-7s  %s\n", "", "layer", "mode", "time", "throughput", "vs dense",
               "vs dense of equal active FLOPs");
        for (int i = 0; i < r->n_rows; i++) {
            const fl_bench_ffn_row *row = &r->rows[i];
            if (row->d != wd->d) continue;
            printf("  d=%-4d %-40s %-9s %8.2f ms %9.0f tok/s   x%-6.2f", row->d, row->spec,
                   fl_bench_mode_names[row->mode], row->ms, row->tokens_per_s, row->speedup_equal_params);
            if (isfinite(row->speedup_equal_flops)) printf("  x%.2f", row->speedup_equal_flops);
            printf("\n");
        }
    }
}

/* The ops of one profile, most time first. */
static void sort_ops(const fl_op_profile *ops, int order[FL_OP_COUNT]) {
    for (int i = 0; i < FL_OP_COUNT; i++) order[i] = i;
    for (int i = 1; i < FL_OP_COUNT; i++)
        for (int j = i; j > 0 && ops->seconds[order[j]] > ops->seconds[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
}

/* --profile: per layer and mode, each host op's time per call, its share,
   and a GEMM's GFLOP/s; the rest is the plugin's own code and kernels. */
static void print_profiles(const fl_bench_ffn_result *r) {
    for (int i = 0; i < r->n_profiles; i++) {
        const fl_bench_ffn_profile *p = &r->profiles[i];
        printf("profile d=%d %s %s: %.2f ms per call with the device synchronised around every host op "
               "(unprofiled %.2f ms; an op of no work measures %.1f us)\n",
               p->d, p->spec, fl_bench_mode_names[p->mode], p->ms, p->unprofiled_ms, 1e6 * p->ops.wait_s);
        printf("  %-34s %9s %10s %7s %9s\n", "host op", "calls", "ms", "share", "GFLOP/s");
        int order[FL_OP_COUNT];
        sort_ops(&p->ops, order);
        for (int k = 0; k < FL_OP_COUNT; k++) {
            const int op = order[k];
            if (!p->ops.calls[op]) continue;
            const double ms = 1e3 * p->ops.seconds[op] / p->calls;
            printf("  %-34s %9.4g %10.3f %6.1f%%", fl_op_name(op), (double)p->ops.calls[op] / p->calls, ms,
                   100.0 * ms / p->ms);
            if (p->ops.flops[op] > 0) printf(" %9.1f", p->ops.flops[op] / p->ops.seconds[op] / 1e9);
            printf("\n");
        }
        printf("  %-34s %9s %10.3f %6.1f%%\n", "(the plugin's own code and kernels)", "", p->own_ms,
               100.0 * p->own_ms / p->ms);
    }
}

int fl_cmd_bench_ffn(int argc, char **argv) {
    const char *json_path = NULL, *precision = "auto";
    fl_bench_ffn_opts o = {.device = "cpu", .reps = 5, .tokens = 16 * 256};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--ffn-only")) continue;
        if (!strcmp(a, "--json") && has_value) json_path = argv[++i];
        else if (!strcmp(a, "--only") && has_value) o.only = argv[++i];
        else if (!strcmp(a, "--device") && has_value) o.device = argv[++i];
        else if (!strcmp(a, "--reps") && has_value) o.reps = atoi(argv[++i]);
        else if (!strcmp(a, "--tokens") && has_value) o.tokens = atoll(argv[++i]);
        else if (!strcmp(a, "--precision") && has_value) precision = argv[++i];
        else if (!strcmp(a, "--profile")) o.profile = 1;
        else return fl_cli_usage("bench", "--ffn-only: unknown or incomplete option '%s'", a);
    }
    fl_error err = {0};
    if (fl_job_request_precision(precision, &err)) return fl_cli_usage("bench", "%s", err.msg);
    if (fl_cli_json_target(json_path)) return 1;
    fl_bench_ffn_result *r = malloc(sizeof *r);
    if (!r) return fl_cli_report(&(fl_error){FL_ENOMEM, "out of memory"});
    int rc = fl_bench_ffn(&o, r, &err) ? fl_cli_report(&err) : 0;
    if (!rc) print_table(r);
    if (!rc) print_profiles(r);
    if (!rc && json_path) rc = fl_cli_write_json(json_path, fl_json_bench_ffn(r));
    free(r);
    return rc;
}
