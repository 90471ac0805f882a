/*
 * run/task_host.h — the services table task plugins receive (ffnlab/task.h).
 *
 * An fl_task_host binds one model and its tokenizer to an fl_task_services
 * table: tokenizer calls, batched log-probabilities and hidden states, the
 * fine-tuning service (run/finetune.h), token files, built-in data, and a
 * sink that collects the metrics tasks report. The eval runner (run/eval.h)
 * makes one per evaluation and hands &th->svc to every task. Scoring
 * (svc->logprobs) is run/task_logprobs.h.
 */
#ifndef FFNLAB_TASK_HOST_H
#define FFNLAB_TASK_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ffnlab/task.h"
#include "model.h"
#include "tokenizer.h"

/* One reported metric, with the task it came from (all strings owned). */
typedef struct fl_metric_rec {
    char *task, *spec, *name, *subtask, *group, *item, *split;
    int32_t kind;
    double value;
    int64_t n;
} fl_metric_rec;

typedef struct fl_metric_list {
    fl_metric_rec *items;
    size_t n, cap;
} fl_metric_list;

void fl_metric_list_free(fl_metric_list *l);
fl_status fl_metric_list_add(fl_metric_list *l, const char *task, const char *spec, const fl_metric *m,
                             fl_error *err);

typedef struct fl_task_host {
    fl_task_services svc;      /* first: tasks get &svc */
    fl_model *model;
    const fl_tokenizer *tok;
    char run_dir[FL_PATH_MAX];
    char work_dir[FL_PATH_MAX];
    char val_shard[FL_PATH_MAX];
    fl_metric_list *sink;      /* where svc->metric goes */
    const char *task, *spec;   /* what metrics are attributed to (fl_task_host_set_task) */
    int progress_line;         /* 1: rewrite one terminal line */
    double progress_t;         /* time of the last progress output */
} fl_task_host;

/* work_dir is created if missing; run_dir and val_shard may be "" or NULL. */
fl_status fl_task_host_init(fl_task_host *th, fl_model *m, const fl_tokenizer *tok, const char *run_dir,
                            const char *work_dir, const char *val_shard, fl_metric_list *sink,
                            fl_error *err);
void fl_task_host_set_task(fl_task_host *th, const char *task, const char *spec);

#endif
