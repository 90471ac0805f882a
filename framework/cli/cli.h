/*
 * cli/cli.h — the subcommands of the `ffnlab` program and their shared bits.
 *
 * Each subcommand is `int fl_cmd_NAME(int argc, char **argv)` with argv[0] the
 * subcommand's name; it returns the process exit code (0 ok, 1 failed, 2 bad
 * usage). Errors travel up as fl_error values and are printed in one place,
 * fl_cli_report(), as one line: "ffnlab: error: <what and where>".
 */
#ifndef FFNLAB_CLI_H
#define FFNLAB_CLI_H

#include <stdio.h>

#include "config.h"
#include "ffnlab/status.h"

/* Prints err as one line on stderr; returns the exit code for it (1). */
int fl_cli_report(const fl_error *err);

/* Prints a usage error ("ffnlab NAME: ...") and returns 2. */
int fl_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes doc (then freed) to path as JSON (run/results.c); returns the exit
   code, reporting a failure. */
struct cJSON;
int fl_cli_write_json(const char *path, struct cJSON *doc);
/* Before the work: 0 when path is NULL or a file fl_cli_write_json can
   write, else the reason reported ("--json: ...") and its exit code (1). */
int fl_cli_json_target(const char *path);

/* "--d-model" or "--d_model=256" → name "d_model" (and *inline_value
   "256"); 0 when arg is not a --flag. */
int fl_cli_flag_name(const char *arg, char *name, size_t n, const char **inline_value);
/* --config ARG: a file, or a name found by fl_config_resolve, applied over cfg. */
fl_status fl_cli_load_config(const char *arg, fl_config *cfg, fl_error *err);

/* *out = s when s is an integer in [lo, hi] (returns 0); else a usage error
   of cmd naming flag (returns 2). */
int fl_cli_int(const char *cmd, const char *flag, const char *s, int lo, int hi, int *out);

/* --precision MODE (fl_job_request_precision): 0, or a usage error of
   cmd with the reason (returns 2). */
int fl_cli_precision(const char *cmd, const char *mode);

/* A subcommand's action ("ffnlab data prepare ..."). */
typedef struct fl_cli_action {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the action's name */
} fl_cli_action;

/* Runs the action named by argv[1] (help for none, --help, -h, help); an
   unknown name is a usage error listing the known ones. */
int fl_cli_dispatch(const char *cmd, int argc, char **argv, const fl_cli_action *actions,
                    int n_actions, void (*help)(FILE *f));

int fl_cmd_train(int argc, char **argv);
int fl_cmd_generate(int argc, char **argv);
int fl_cmd_eval(int argc, char **argv);
/* `ffnlab bench --blimp`: BLiMP scoring throughput (in cmd_eval.c). */
int fl_cmd_bench_blimp(int argc, char **argv);
int fl_cmd_bench(int argc, char **argv);
/* ffnlab bench --ffn-only [--device D] [--only SPEC-PREFIX] [--reps N] [--json FILE] (cmd_bench_ffn.c) */
int fl_cmd_bench_ffn(int argc, char **argv);
int fl_cmd_bench_gemm(int argc, char **argv); /* ffnlab bench --gemm (cmd_bench_gemm.c) */
int fl_cmd_bench_comm(int argc, char **argv); /* ffnlab bench --comm (cmd_bench_comm.c) */
int fl_cmd_sweep(int argc, char **argv);
/* ffnlab bench --decode: decoding tokens/s with and without the KV cache (cmd_bench_decode.c) */
int fl_cmd_bench_decode(int argc, char **argv);
int fl_cmd_plugins(int argc, char **argv);
int fl_cmd_tokenizer(int argc, char **argv);
int fl_cmd_data(int argc, char **argv);
int fl_cmd_report(int argc, char **argv);

#endif
