/*
 * run/sweep.h — `ffnlab sweep`: every FFN variant x seed, trained and
 * evaluated into one folder, resumable.
 *
 * DIR/sweep.json records the plan (the base config, how variants were
 * matched, each variant's spec and sizes, the seeds, the tasks) and the state
 * of every cell; DIR/<variant>-s<seed>/ is each cell's ordinary run folder.
 * Running the same command again skips finished cells, resumes an
 * interrupted one from its checkpoint and retries failed ones; a command
 * whose plan differs from the recorded one for a cell that exists (another
 * base config, match mode, task list or matched spec) is refused, while new
 * variants and seeds are added. Under mpirun every rank runs the cells in
 * turn, each one data- or expert-parallel as the config says; rank 0 writes
 * the files and runs the evaluation.
 */
#ifndef FFNLAB_SWEEP_H
#define FFNLAB_SWEEP_H

#include <stdint.h>

#include "config.h"
#include "match.h"

#define FL_SWEEP_MAX_VARIANTS 32
#define FL_SWEEP_MAX_SEEDS 64
#define FL_SWEEP_MAX_TASKS 16

typedef struct fl_sweep_opts {
    fl_config base;            /* the config every cell starts from (--config, flags) */
    const char *out;           /* DIR */
    fl_match match;
    const char *variants[FL_SWEEP_MAX_VARIANTS]; /* specs as given: "dense", "moe:top_k=2" */
    int n_variants;
    int n_seeds;               /* seeds 1..n_seeds */
    const char *tasks[FL_SWEEP_MAX_TASKS];       /* evaluation task specs */
    int n_tasks;
    int progress;              /* training progress: -1 auto, 0 lines, 1 one updating line */
} fl_sweep_opts;

typedef struct fl_sweep_variant {
    char name[96];             /* the cells' prefix: "dense", "moe-top_k=2" */
    char given[FL_SPEC_MAX];   /* the spec as given */
    fl_matched m;              /* its spec with the matched size, one layer's figures */
    double total_params, active_params, flops_per_token; /* the whole model's */
} fl_sweep_variant;

typedef struct fl_sweep_plan {
    fl_sweep_variant v[FL_SWEEP_MAX_VARIANTS];
    int n_variants;
    int n_seeds;
} fl_sweep_plan;

/* Matches every variant against the base config's FFN (the reference) and
   sizes the whole model of each; checks every task spec. Writes nothing. */
fl_status fl_sweep_plan_make(const fl_sweep_opts *o, fl_sweep_plan *plan, fl_error *err);

typedef struct fl_sweep_result {
    int cells, skipped, trained, resumed, evaluated, failed;
    int interrupted;           /* stopped by Ctrl-C: rerun to continue */
} fl_sweep_result;

/* Runs the plan into o->out (see above). A failed cell is recorded and the
   next one runs; the status is then FL_EINVAL naming the failed cells. */
fl_status fl_sweep_run(const fl_sweep_opts *o, const fl_sweep_plan *plan, fl_sweep_result *r, fl_error *err);

#endif
