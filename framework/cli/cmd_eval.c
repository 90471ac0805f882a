/*
 * cli/cmd_eval.c — `ffnlab eval`: run evaluation task plugins on a trained run.
 *
 *   ffnlab eval --run runs/tiny --task blimp
 *   ffnlab eval --run DIR --task blimp:data=shared/data/blimp --task glue:tasks=cola,sst2,rte
 *
 * Every --task is "NAME[:key=value,...]" naming task_NAME.so (`ffnlab plugins
 * NAME` lists its options). Results go to DIR/eval.json (or --out) and a
 * table on stdout; the work of the tasks (generated data, predictions) goes
 * to DIR/eval/. `ffnlab bench --blimp` (fl_cmd_bench_blimp, below) times the blimp task.
 */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval.h"
#include "results.h"

#define MAX_SPECS 64

static void help(void) {
    printf("usage: ffnlab eval [--run DIR] --task SPEC [--task SPEC ...] [--out FILE] [--device D] [--precision P]\n"
           "                   [--threads N]\n\n"
           "  --run DIR      a run folder written by ffnlab train (default runs/tiny)\n"
           "  --task SPEC    NAME[:key=value,...]; repeatable; a list value may use commas\n"
           "                 (glue:tasks=cola,sst2,rte). Built in: blimp, glue, lm;\n"
           "                 `ffnlab plugins NAME` shows a task's options\n"
           "  --out FILE     where the results go (default DIR/eval.json)\n"
           "  --device D     auto, cpu, cuda[:N] (default: the run's)\n"
           "  --precision P  GEMM precision: fp32 or bf16 on the CPU (default fp32), tf32, fp32 or\n"
           "                 bf16 on a GPU (default tf32); not the run's: say it to score in bf16\n"
           "  --threads N    CPU threads (default: all cores)\n\n"
           "Examples:\n"
           "  ffnlab eval --run runs/tiny --task blimp            # built-in minimal pairs, no download\n"
           "  ffnlab eval --run DIR --task blimp:data=shared/data/blimp --task lm\n"
           "  ffnlab eval --run DIR --task glue:data=shared/data/glue,tasks=cola,rte,max_train=2000\n");
}

int fl_cmd_eval(int argc, char **argv) {
    const char *run = "runs/tiny", *out = NULL, *device = "";
    const char *specs[MAX_SPECS];
    int n = 0;
    static const struct option longopts[] = {{"run", 1, 0, 'r'},    {"task", 1, 0, 't'}, {"out", 1, 0, 'o'},
                                             {"device", 1, 0, 'd'}, {"threads", 1, 0, 'j'},
                                             {"precision", 1, 0, 'p'}, {"help", 0, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': run = optarg; break;
        case 'o': out = optarg; break;
        case 'd': device = optarg; break;
        case 'p':
            if (fl_cli_precision("eval", optarg)) return 2;
            break;
        case 't':
            if (n == MAX_SPECS) return fl_cli_usage("eval", "at most %d --task options", MAX_SPECS);
            specs[n++] = optarg;
            break;
        case 'j': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 4096) return fl_cli_usage("eval", "--threads: '%s' is not in [1, 4096]", optarg);
            omp_set_num_threads((int)v);
            break;
        }
        case 'h': help(); return 0;
        default: return fl_cli_usage("eval", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return fl_cli_usage("eval", "unexpected argument '%s'", argv[optind]);
    if (!n) return fl_cli_usage("eval", "no --task given (e.g. --task blimp)");
    fl_error err = {0};
    fl_eval_opts o = {.out_json = out, .table = stdout};
    return fl_eval_run_dir(run, device, specs, n, &o, &err) ? fl_cli_report(&err) : 0;
}

/* ------------------------------------------------------------------------ */
/* ffnlab bench --blimp                                                       */
/* ------------------------------------------------------------------------ */

static void bench_help(void) {
    printf("usage: ffnlab bench --blimp[=DIR] [--tokenizer FILE] [--d-model D] [--layers L] [--heads H] [--context T]\n"
           "                    [--vocab V] [--ffn SPEC] [--batch N] [--device D] [--precision P] [--threads N]\n"
           "                    [--json FILE]\n\n"
           "Times `ffnlab eval --task blimp` (read, tokenize, batch, score, tally) on a freshly initialised model of\n"
           "the given shape (default the reference: d=256, 4 layers, 4 heads, context 256). DIR holds the BLiMP JSONL\n"
           "files (default: the built-in minimal pairs). Speed depends on how many tokens a sentence becomes, so\n"
           "pass the tokenizer the real runs use; without one a BPE of --vocab (default 4096) tokens is trained on\n"
           "the built-in corpus. --batch: sentences per forward (default 0: about 8192 tokens). --precision: the GEMM\n"
           "precision, as for eval (CPU fp32 or bf16; the kernel line names the path).\n");
}

static void print_blimp_bench(const fl_eval_bench_opts *o, const fl_eval_bench_result *r) {
    printf("blimp d=%d L=%d H=%d T=%d V=%d ffn=%s: %lld pairs (%.1f tokens per sentence) in %.1f s = %.0f pairs/s, "
           "%.0f tokens/s (untrained accuracy %.3f)\n", o->d_model, o->n_layers, o->n_heads, o->context, r->vocab,
           o->ffn, (long long)r->pairs, (double)r->tokens / (2.0 * (double)r->pairs), r->seconds,
           (double)r->pairs / r->seconds, (double)r->tokens / r->seconds, r->accuracy);
}

int fl_cmd_bench_blimp(int argc, char **argv) {
    fl_eval_bench_opts o = {.vocab = 4096, .d_model = 256, .n_layers = 4, .n_heads = 4, .context = 256, .ffn = "dense",
                            .device = "auto"};
    const char *json = NULL;
    static const struct option longopts[] = {
        {"blimp", 2, 0, 'B'}, {"tokenizer", 1, 0, 'k'}, {"d-model", 1, 0, 'd'}, {"layers", 1, 0, 'l'},
        {"heads", 1, 0, 'H'}, {"context", 1, 0, 't'}, {"vocab", 1, 0, 'v'}, {"ffn", 1, 0, 'f'}, {"batch", 1, 0, 'b'},
        {"device", 1, 0, 'D'}, {"threads", 1, 0, 'j'}, {"json", 1, 0, 'J'}, {"precision", 1, 0, 'p'},
        {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    int c, rc = 0, threads = 0;
    optind = 1;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'B': o.data = optarg; break;
        case 'k': o.tokenizer = optarg; break;
        case 'd': rc = fl_cli_int("bench", "--d-model", optarg, 1, 1 << 16, &o.d_model); break;
        case 'l': rc = fl_cli_int("bench", "--layers", optarg, 1, 64, &o.n_layers); break;
        case 'H': rc = fl_cli_int("bench", "--heads", optarg, 1, 1024, &o.n_heads); break;
        case 't': rc = fl_cli_int("bench", "--context", optarg, 2, 1 << 16, &o.context); break;
        case 'v': rc = fl_cli_int("bench", "--vocab", optarg, 257, 1 << 20, &o.vocab); break;
        case 'b': rc = fl_cli_int("bench", "--batch", optarg, 0, 1 << 16, &o.batch); break;
        case 'j': rc = fl_cli_int("bench", "--threads", optarg, 1, 4096, &threads); break;
        case 'f': o.ffn = optarg; break;
        case 'D': o.device = optarg; break;
        case 'J': json = optarg; break;
        case 'p': rc = fl_cli_precision("bench", optarg); break;
        case 'h': bench_help(); return 0;
        default: return fl_cli_usage("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (rc) return rc;
    if (fl_cli_json_target(json)) return 1;
    if (threads) omp_set_num_threads(threads);
    fl_eval_bench_result r;
    fl_error err = {0};
    if (fl_eval_bench_blimp(&o, &r, &err)) return fl_cli_report(&err);
    printf("backend: %s — %s\n", r.backend, r.kernel);
    print_blimp_bench(&o, &r);
    return json ? fl_cli_write_json(json, fl_json_bench_blimp(&o, &r)) : 0;
}
