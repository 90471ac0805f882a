/*
 * cli/cmd_bench_decode.c — `ffnlab bench --decode`: parses the flags, runs
 * run/bench_decode.c's measurement and prints it (and its JSON with --json).
 */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_decode.h"
#include "cli.h"
#include "results.h"

static void help(void) {
    printf("usage: ffnlab bench --decode [--ffn SPEC] [--d-model D] [--layers L] [--heads H] [--context T] [--vocab V]\n"
           "                     [--batch B] [--prompt N] [--tokens N] [--device D] [--precision P] [--threads N]\n"
           "                     [--json FILE]\n\n"
           "Greedy decoding speed of a freshly initialised model: new tokens/s with the KV cache and without it (the\n"
           "whole visible window run for every token, as generate --no-cache), at batch 1 and at batch B (default 8),\n"
           "generating --tokens N (default 256) after random prompts of --prompt N tokens (default 16). Default shape:\n"
           "d=256, 2 layers, 4 heads, context 512, vocab 10000, dense FFN. --precision: the GEMM precision (CPU fp32 or\n"
           "bf16, GPU tf32, fp32 or bf16). --json FILE writes the figures.\n");
}

static void print_result(const fl_bench_decode_result *r) {
    const fl_bench_decode_opts *o = &r->opts;
    printf("backend: %s — %s\n", r->backend, r->kernel);
    printf("decode d=%d L=%d H=%d T=%d V=%d ffn=%s, %s, prompts of %d tokens + %d new:\n", o->d_model, o->n_layers,
           o->n_heads, o->context, o->vocab, o->ffn, r->precision, o->prompt_len, o->n_new);
    for (int i = 0; i < r->n_rates; i++) {
        const fl_bench_decode_rate *x = &r->rates[i];
        printf("  batch %d: cached %.1f tokens/s, uncached %.1f tokens/s (%.1fx)\n", x->batch, x->cached_tokens_per_s,
               x->uncached_tokens_per_s, x->cached_tokens_per_s / x->uncached_tokens_per_s);
    }
}

int fl_cmd_bench_decode(int argc, char **argv) {
    fl_bench_decode_opts o = {.d_model = 256, .n_layers = 2, .n_heads = 4, .context = 512, .vocab = 10000,
                              .ffn = "dense", .device = "auto", .batch = 8, .prompt_len = 16, .n_new = 256};
    const char *json = NULL;
    static const struct option longopts[] = {
        {"decode", 0, 0, 'X'}, {"ffn", 1, 0, 'f'}, {"d-model", 1, 0, 'd'}, {"layers", 1, 0, 'l'},
        {"heads", 1, 0, 'H'}, {"context", 1, 0, 't'}, {"vocab", 1, 0, 'v'}, {"batch", 1, 0, 'b'},
        {"prompt", 1, 0, 'P'}, {"tokens", 1, 0, 'n'}, {"device", 1, 0, 'D'}, {"precision", 1, 0, 'p'},
        {"threads", 1, 0, 'j'}, {"json", 1, 0, 'J'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c, rc = 0, threads = 0;
    optind = 1;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'X': break;
        case 'f': o.ffn = optarg; break;
        case 'd': rc = fl_cli_int("bench", "--d-model", optarg, 1, 1 << 16, &o.d_model); break;
        case 'l': rc = fl_cli_int("bench", "--layers", optarg, 1, 64, &o.n_layers); break;
        case 'H': rc = fl_cli_int("bench", "--heads", optarg, 1, 1024, &o.n_heads); break;
        case 't': rc = fl_cli_int("bench", "--context", optarg, 1, 1 << 20, &o.context); break;
        case 'v': rc = fl_cli_int("bench", "--vocab", optarg, 2, 1 << 24, &o.vocab); break;
        case 'b': rc = fl_cli_int("bench", "--batch", optarg, 1, 1 << 16, &o.batch); break;
        case 'P': rc = fl_cli_int("bench", "--prompt", optarg, 1, 1 << 20, &o.prompt_len); break;
        case 'n': rc = fl_cli_int("bench", "--tokens", optarg, 1, 1 << 20, &o.n_new); break;
        case 'j': rc = fl_cli_int("bench", "--threads", optarg, 1, 4096, &threads); break;
        case 'D': o.device = optarg; break;
        case 'J': json = optarg; break;
        case 'p': rc = fl_cli_precision("bench", optarg); break;
        case 'h': help(); return 0;
        default: return fl_cli_usage("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (rc) return rc;
    if (optind < argc) return fl_cli_usage("bench", "unexpected argument '%s'", argv[optind]);
    if (o.prompt_len > o.context)
        return fl_cli_usage("bench", "--prompt %d is longer than the context (%d)", o.prompt_len, o.context);
    if (fl_cli_json_target(json)) return 1;
    if (threads) omp_set_num_threads(threads);
    fl_bench_decode_result r;
    fl_error err = {0};
    if (fl_bench_decode(&o, &r, &err)) return fl_cli_report(&err);
    print_result(&r);
    return json ? fl_cli_write_json(json, fl_json_bench_decode(&r)) : 0;
}
