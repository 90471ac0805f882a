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
        else return fl_cli_usage("bench", "--ffn-only: unknown or incomplete option '%s'", a);
    }
    fl_error err = {0};
    if (fl_job_request_precision(precision, &err)) return fl_cli_usage("bench", "%s", err.msg);
    fl_bench_ffn_result *r = malloc(sizeof *r);
    if (!r) return fl_cli_report(&(fl_error){FL_ENOMEM, "out of memory"});
    int rc = fl_bench_ffn(&o, r, &err) ? fl_cli_report(&err) : 0;
    if (!rc) print_table(r);
    if (!rc && json_path) rc = fl_cli_write_json(json_path, fl_json_bench_ffn(r));
    free(r);
    return rc;
}
