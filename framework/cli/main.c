/*
 * cli/main.c — the `ffnlab` program: dispatches to a subcommand.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"train", fl_cmd_train, "pretrain a model (no arguments: the tiny default on the built-in corpus)"},
    {"eval", fl_cmd_eval, "evaluate a run with task plugins: BLiMP, (Super)GLUE, perplexity"},
    {"generate", fl_cmd_generate, "sample text from a trained run"},
    {"sweep", fl_cmd_sweep, "train and evaluate every FFN variant x seed at matched sizes, resumably"},
    {"bench", fl_cmd_bench, "measure training throughput against the GEMM peak"},
    {"report", fl_cmd_report, "tables and plots (md, html, csv, png, svg) from run and sweep folders"},
    {"plugins", fl_cmd_plugins, "list plugins, or explain one: ffnlab plugins NAME"},
    {"tokenizer", fl_cmd_tokenizer, "train, encode with, decode with a byte-level BPE tokenizer"},
    {"data", fl_cmd_data, "prepare token shards, generate the built-in corpus, fetch TinyStories"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "usage: ffnlab COMMAND [options]   (ffnlab COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    /* a file past RLIMIT_FSIZE: its write fails (EFBIG) and is reported like
       a full disk, instead of the signal ending ffnlab mid-checkpoint */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("ffnlab %s\n", FFNLAB_VERSION);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ffnlab: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
