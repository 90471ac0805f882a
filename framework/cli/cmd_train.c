/*
 * cli/cmd_train.c — `ffnlab train`: config → fl_train_run.
 *
 * Configuration precedence: built-in defaults < the resumed run's
 * train_config.json (--resume) < --config FILE < individual flags. Every
 * config field is a flag: --d-model 256, --ffn moe:experts=8, and the
 * repeatable --ffn-layer 3=pkm:heads=4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "job.h"
#include "runfiles.h"
#include "train.h"

typedef struct train_args {
    const char *config_file;
    const char *run_dir;
    fl_train_opts opts;
} train_args;

static void help(void) {
    printf("usage: ffnlab train [--config FILE] [--resume] [--force] [--progress|--no-progress] [--FIELD VALUE ...]\n\n"
           "With no arguments: trains the tiny default model on the built-in story corpus into runs/tiny.\n\n"
           "  --config FILE    JSON config, or a name: tiny, small, base, seed, seed-encoder (configs/NAME.json); flags override it\n"
           "  --resume         continue the run in --run-dir from its checkpoint (bit-identical)\n"
           "  --force          overwrite an existing run folder\n"
           "  --progress       one updating progress line (default on a terminal)\n"
           "  --no-progress    plain log lines\n"
           "  --stop-after N   checkpoint and stop after step N (continue with --resume)\n\n"
           "Config fields (every one is a flag; '_' may be written '-'):\n");
    fl_config_print_help(stdout);
}

/* First pass: the switches that decide where the base config comes from. */
static int parse_switches(int argc, char **argv, train_args *a) {
    for (int i = 1; i < argc; i++) {
        char name[128];
        const char *val;
        if (!fl_cli_flag_name(argv[i], name, sizeof name, &val)) return fl_cli_usage("train", "unexpected argument '%s'", argv[i]);
        if (!strcmp(name, "help")) return help(), -1;
        if (!strcmp(name, "resume")) a->opts.resume = 1;
        else if (!strcmp(name, "force")) a->opts.force = 1;
        else if (!strcmp(name, "progress")) a->opts.progress = 1;
        else if (!strcmp(name, "no_progress")) a->opts.progress = 0;
        else {
            if (!val && i + 1 >= argc) return fl_cli_usage("train", "%s needs a value", argv[i]);
            const char *v = val ? val : argv[++i];
            if (!strcmp(name, "config")) a->config_file = v;
            if (!strcmp(name, "run_dir")) a->run_dir = v;
            if (!strcmp(name, "stop_after")) {
                char *end;
                a->opts.stop_after = strtoll(v, &end, 10);
                if (*end || a->opts.stop_after < 1) return fl_cli_usage("train", "--stop-after: '%s' is not a positive step", v);
            }
        }
    }
    return 0;
}

/* Second pass: every FIELD flag, applied over the base config. */
static int apply_flags(int argc, char **argv, fl_config *c, fl_error *err) {
    for (int i = 1; i < argc; i++) {
        char name[128];
        const char *val = NULL;
        fl_cli_flag_name(argv[i], name, sizeof name, &val);
        if (!strcmp(name, "resume") || !strcmp(name, "force") || !strcmp(name, "progress") ||
            !strcmp(name, "no_progress"))
            continue;
        const char *v = val ? val : argv[++i];
        if (!strcmp(name, "config") || !strcmp(name, "stop_after")) continue;
        if (fl_config_set(c, name, v, err)) return 1;
    }
    return 0;
}

int fl_cmd_train(int argc, char **argv) {
    train_args a = {.opts = {.progress = -1}};
    int rc = parse_switches(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    fl_config cfg;
    fl_error err = {0};
    fl_config_defaults(&cfg);
    if (a.opts.resume && fl_run_read_config(a.run_dir ? a.run_dir : cfg.run_dir, &cfg, &err)) return fl_cli_report(&err);
    if (a.config_file && fl_cli_load_config(a.config_file, &cfg, &err)) return fl_cli_report(&err);
    if (apply_flags(argc, argv, &cfg, &err)) return fl_cli_report(&err);
    /* the backend is chosen inside fl_train_run; the precision goes with it */
    if (fl_job_request_precision(cfg.precision, &err)) return fl_cli_report(&err);
    fl_train_result res;
    if (fl_train_run(&cfg, &a.opts, &res, &err)) {
        int code = err.code == FL_EINTR ? fl_train_interrupt_status() : 1;
        if (fl_job_should_report(&err, code)) fl_cli_report(&err); /* under mpirun: rank 0 once, or the job ends */
        return code;
    }
    if (fl_job_rank() != 0) return 0; /* rank 0 speaks for the job */
    if (res.steps_done < cfg.steps) {
        printf("stopped after step %lld of %lld; checkpoint in %s/checkpoint (continue with --resume)\n",
               (long long)res.steps_done, (long long)cfg.steps, cfg.run_dir);
        return 0;
    }
    printf("trained %lld steps: validation loss %.4f nats/token (unigram entropy %.4f), %.0f tokens/s; run folder %s\n",
           (long long)res.steps_done, res.final_val_loss, res.unigram_entropy, res.tokens_per_s, cfg.run_dir);
    return 0;
}
