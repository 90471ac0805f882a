/*
 * run/eval.h — running evaluation task plugins and recording their results.
 *
 * A task spec is "NAME[:key=value,...]" as for FFN plugins. A list value may
 * be written with commas, `glue:tasks=cola,sst2,rte,lr=3e-5`: an item without
 * '=' after a string option continues that option's value, and reaches the
 * task with its items joined by '|' ("cola|sst2|rte").
 *
 * fl_eval_run loads every task plugin, parses and checks every spec and
 * creates every task before running any (a typo fails at once, not after an
 * hour of fine-tuning), runs them in order, then writes <run>/eval.json and
 * prints a table. eval.json holds the model's identity (checkpoint step,
 * SHA-256 of model.safetensors, parameter count, the run's config), and one
 * entry per metric: task, spec, subtask, metric, kind, value, n, group/item
 * for breakdowns, split, and the task's wall time. Results of tasks not run
 * this time are kept when the model is the same; otherwise the file is
 * rewritten. When a task fails, the results of the tasks before it are
 * still written.
 */
#ifndef FFNLAB_EVAL_H
#define FFNLAB_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "model.h"
#include "task_host.h"
#include "tokenizer.h"

/* The model the tasks evaluate and where its files are. */
typedef struct fl_eval_target {
    fl_model *model;
    const fl_tokenizer *tok;
    const fl_config *cfg;      /* the run's config (recorded), may be NULL */
    const char *run_dir;       /* may be NULL (then work_dir is required) */
    const char *work_dir;      /* NULL: <run_dir>/eval */
    int64_t step;              /* checkpoint step; -1 unknown */
} fl_eval_target;

typedef struct fl_eval_opts {
    const char *out_json;      /* NULL: <run_dir>/eval.json (none without a run); "": don't write */
    FILE *table;               /* where the result table goes; NULL: nowhere */
} fl_eval_opts;

/* Runs specs[0..n) on t. Metrics also go to *out when not NULL (the caller
   frees it with fl_metric_list_free). */
fl_status fl_eval_run(const fl_eval_target *t, const char *const *specs, int n, const fl_eval_opts *o,
                      fl_metric_list *out, fl_error *err);

/* Loads the run in dir (device "" keeps the run's) and runs specs on it. */
fl_status fl_eval_run_dir(const char *dir, const char *device, const char *const *specs, int n,
                          const fl_eval_opts *o, fl_error *err);

/* The start of `ffnlab train`: every spec in cfg->eval_tasks names a task
   plugin that loads and accepts its options (so a typo fails before
   training, not after). */
fl_status fl_eval_check_config(const fl_config *cfg, fl_error *err);

/* The end of `ffnlab train`: runs cfg->eval_tasks (';'-separated specs) on
   the trained model; nothing when it is empty. */
fl_status fl_eval_after_training(fl_model *m, const fl_tokenizer *tok, const fl_config *cfg, int64_t step,
                                 fl_error *err);

/* Rewrites a spec's option text: items without '=' following a STRING
   option are appended to its value with '|'. (Exposed for the tests.) */
fl_status fl_eval_join_lists(const fl_option *opts, int n_opts, const char *text, char **out,
                             fl_error *err);

/* eval.json (eval_json.c): the file at path, merged as described above. */
fl_status fl_eval_write_json(const char *path, const fl_eval_target *t, const fl_metric_list *ms,
                             const double *task_time, const char *const *task_names,
                             const char *const *task_specs, int n_tasks, fl_error *err);
/* Lowercase hex SHA-256 of a file into hex[65]. */
fl_status fl_sha256_file(const char *path, char hex[65], fl_error *err);

/* `ffnlab bench --blimp` (eval_bench.c): the blimp task on a fresh model of
   this shape, timed end to end. */
typedef struct fl_eval_bench_opts {
    const char *data;          /* BLiMP folder; NULL: the built-in minimal pairs */
    const char *tokenizer;     /* tokenizer.json; NULL: a BPE of `vocab` trained on the built-in corpus */
    int vocab, d_model, n_layers, n_heads, context, batch;  /* batch: sentences per forward, 0 = auto */
    const char *ffn;           /* FFN spec of every layer */
    const char *device;        /* auto, cpu, cuda[:N] */
} fl_eval_bench_opts;

typedef struct fl_eval_bench_result {
    int64_t pairs, tokens;     /* pairs scored; tokens of all their sentences */
    double seconds;            /* wall time of the whole task */
    double accuracy;           /* of the untrained model: only a sanity figure */
    int vocab;                 /* the tokenizer's (and model's) vocabulary */
    char backend[32];          /* the backend it ran on ("cpu", "cuda") */
    char kernel[256];          /* its describe() line: the kernel path chosen */
} fl_eval_bench_result;

fl_status fl_eval_bench_blimp(const fl_eval_bench_opts *o, fl_eval_bench_result *r, fl_error *err);

#endif
