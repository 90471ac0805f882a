/*
 * cli/cmd_bench_comm.c — `ffnlab bench --comm`: flags in, run/bench_comm.c's
 * figures out (rank 0 prints for the job).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "job.h"
#include "results.h"

static void help(void) {
    printf("usage: [mpirun -np P] ffnlab bench --comm [--steps N] [--d-model D] [--layers L] [--heads H] [--context T]\n"
           "                      [--batch B] [--vocab V] [--ffn SPEC] [--expert-parallel E] [--json FILE]\n\n"
           "Defaults: d=512, 2 layers, 8 heads, context 128, global batch 8, vocab 4096, ffn moe:experts=8,top_k=2,\n"
           "expert_parallel = P, 3 steps. Prints all-to-all-v and all-reduce bandwidth at the message sizes this\n"
           "MoE layer produces, and the fraction of a training step spent in collectives. Run once without\n"
           "mpirun for the one-process baseline of the same global batch.\n");
}

static int parse(int argc, char **argv, fl_bench_comm_opts *o) {
    static const struct option longopts[] = {
        {"steps", 1, 0, 's'}, {"d-model", 1, 0, 'd'}, {"layers", 1, 0, 'l'}, {"heads", 1, 0, 'H'},
        {"context", 1, 0, 't'}, {"batch", 1, 0, 'b'}, {"vocab", 1, 0, 'v'}, {"ffn", 1, 0, 'f'},
        {"expert-parallel", 1, 0, 'e'}, {"json", 1, 0, 'j'}, {"comm", 0, 0, 'c'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    fl_bench_shape *s = &o->shape;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int *field = c == 's' ? &s->steps : c == 'd' ? &s->d_model : c == 'l' ? &s->n_layers : c == 'H' ? &s->n_heads
                   : c == 't' ? &s->context : c == 'b' ? &s->batch : c == 'v' ? &s->vocab : c == 'e' ? &o->expert_parallel
                   : NULL;
        if (field) {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1 << 20) return fl_cli_usage("bench", "%s: '%s' is not a positive integer", argv[optind - 2], optarg);
            *field = (int)v;
        } else if (c == 'f') s->ffn = optarg;
        else if (c == 'j') o->json = optarg;
        else if (c == 'h') return help(), -1;
        else if (c != 'c') return fl_cli_usage("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (s->n_layers > 64) return fl_cli_usage("bench", "--layers must be at most 64");
    return 0;
}

static void print_result(const fl_bench_comm_opts *o, const fl_bench_comm_result *r) {
    const fl_bench_shape *s = &o->shape;
    printf("communication: %d process%s, expert_parallel %d, %d thread%s each; d=%d L=%d H=%d T=%d global batch %d V=%d ffn=%s\n",
           r->processes, r->processes > 1 ? "es" : "", r->expert_parallel, r->threads, r->threads > 1 ? "s" : "",
           s->d_model, s->n_layers, s->n_heads, s->context, s->batch, s->vocab, s->ffn);
    if (!r->n_ops) printf("collectives: none in one process (run under mpirun -np P to measure them)\n");
    else printf("collectives (median of 10; the slowest rank's):\n");
    for (int i = 0; i < r->n_ops; i++) {
        const fl_bench_comm_op *op = &r->ops[i];
        if (op->op == FL_COMM_OP_ALLTOALLV)
            printf("  all-to-all-v  %6lld rows x %d floats per rank (%6.2f MiB, %5.2f MiB to others): %8.3f ms, %6.2f GB/s per rank\n",
                   (long long)op->count, op->row_floats, op->bytes / 1048576.0, op->bytes_to_others / 1048576.0, op->ms,
                   op->gb_per_s);
        else
            printf("  all-reduce    %9lld floats (%6.2f MiB, %s): %8.3f ms, algbw %6.2f GB/s, busbw %6.2f GB/s\n",
                   (long long)op->count, op->bytes / 1048576.0, op->what, op->ms, op->gb_per_s, op->busbw_gb_per_s);
    }
    printf("training step (expert_parallel %d): %.1f ms, %.0f tokens/s, %.2f us/token; in collectives %.1f ms "
           "(max over ranks %.1f; gradient all-reduce %.1f) = %.1f%% of the step, %.2f us/token\n",
           r->expert_parallel, r->step_ms, r->tokens_per_s, r->us_per_token, r->comm_ms, r->comm_max_ms,
           r->grad_allreduce_ms, 100.0 * r->comm_ms / r->step_ms, 1e3 * r->comm_ms / ((double)s->batch * s->context));
}

int fl_cmd_bench_comm(int argc, char **argv) {
    fl_bench_comm_opts o = {.shape = {512, 2, 8, 128, 8, 4096, 3, "moe:experts=8,top_k=2"}};
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    fl_error err = {0};
    fl_bench_comm_result r;
    if (fl_bench_comm(&o, &r, &err)) return fl_job_should_report(&err, 1) ? fl_cli_report(&err) : 1;
    if (r.rank != 0) return 0; /* rank 0 speaks for the job */
    print_result(&o, &r);
    return o.json ? fl_cli_write_json(o.json, fl_json_bench_comm(&o, &r)) : 0;
}
