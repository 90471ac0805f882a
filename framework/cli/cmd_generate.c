/*
 * cli/cmd_generate.c — `ffnlab generate`: sample a continuation from a run
 * (core/sample.h: with a KV cache, or without one under --no-cache).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "run_load.h"
#include "sample.h"

static void help(void) {
    printf("usage: ffnlab generate [--run DIR] [--prompt TEXT] [--max-tokens N] [--temperature T] [--top-k K] [--seed S] [--device D]\n"
           "                       [--no-cache]\n\n"
           "  --run DIR        a run folder written by ffnlab train (default runs/tiny)\n"
           "  --prompt TEXT    the beginning of the text (default \"Once upon a time\")\n"
           "  --max-tokens N   tokens to generate at most (default 200; stops at <|endoftext|>)\n"
           "  --temperature T  0 = greedy, higher = more random (default 0.8)\n"
           "  --top-k K        sample among the K most likely tokens, 0 = all (default 40)\n"
           "  --seed S         sampling seed (default 1)\n"
           "  --device D       auto, cpu, cuda[:N] (default: the run's)\n"
           "  --no-cache       no KV cache: rerun the model over the whole text for every token (the slow\n"
           "                   reference path; the same tokens up to f32 round-off)\n");
}

static int parse_number(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end || v < lo || v > hi) return fl_cli_usage("generate", "%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
    *out = v;
    return 0;
}

int fl_cmd_generate(int argc, char **argv) {
    const char *run = "runs/tiny", *prompt = "Once upon a time", *device = "";
    double max_new = 200, temperature = 0.8, top_k = 40, seed = 1;
    int uncached = 0;
    static const struct option longopts[] = {
        {"run", 1, 0, 'r'}, {"prompt", 1, 0, 'p'}, {"max-tokens", 1, 0, 'n'}, {"temperature", 1, 0, 't'},
        {"top-k", 1, 0, 'k'}, {"seed", 1, 0, 's'}, {"device", 1, 0, 'd'}, {"no-cache", 0, 0, 'u'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int c, rc = 0;
    optind = 1;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': run = optarg; break;
        case 'p': prompt = optarg; break;
        case 'd': device = optarg; break;
        case 'u': uncached = 1; break;
        case 'n': rc = parse_number("--max-tokens", optarg, 1, 1e6, &max_new); break;
        case 't': rc = parse_number("--temperature", optarg, 0, 100, &temperature); break;
        case 'k': rc = parse_number("--top-k", optarg, 0, 1e9, &top_k); break;
        case 's': rc = parse_number("--seed", optarg, 0, 1.8e19, &seed); break;
        case 'h': help(); return 0;
        default: return fl_cli_usage("generate", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (rc) return rc;
    if (optind < argc) return fl_cli_usage("generate", "unexpected argument '%s'", argv[optind]);
    fl_error err = {0};
    fl_loaded_run r;
    if (fl_run_load(run, device, &r, &err)) return fl_cli_report(&err);
    int32_t *ids = NULL, *out = NULL;
    size_t n_ids = 0, n_out = 0;
    fl_sample_opts o = {.max_new = (int)max_new, .temperature = (float)temperature, .top_k = (int)top_k,
                        .seed = (uint64_t)seed, .stop_id = fl_tokenizer_eot(r.tok), .uncached = uncached};
    fl_status st = fl_tokenizer_encode(r.tok, prompt, strlen(prompt), &ids, &n_ids, &err);
    if (!st) st = fl_sample(r.model, ids, n_ids, &o, &out, &n_out, &err);
    if (!st) {
        size_t n_text = n_out && out[n_out - 1] == o.stop_id ? n_out - 1 : n_out;
        size_t len = 0;
        char *text = fl_tokenizer_decode(r.tok, out, n_text, &len);
        if (!text) st = fl_fail(&err, FL_ENOMEM, "out of memory decoding");
        else {
            fwrite(text, 1, len, stdout);
            fputc('\n', stdout);
            free(text);
        }
    }
    free(ids);
    free(out);
    fl_run_unload(&r);
    return st ? fl_cli_report(&err) : 0;
}
