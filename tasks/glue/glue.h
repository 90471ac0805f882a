/*
 * tasks/glue/glue.h — (Super)GLUE data: the task table and the readers.
 *
 * Two layouts of the same tasks:
 *   glue    the released files under one root: CoLA/SST-2/MRPC/RTE/QNLI/QQP/MNLI
 *           TSVs (train.tsv, dev.tsv, dev_matched.tsv ...), SuperGLUE JSONL
 *           (BoolQ/MultiRC/WSC train.jsonl, val.jsonl), and the JSONL train
 *           subsets {id, text_a, text_b, label} where a full file is too big
 *           (train_subset9k.jsonl, train_heldout1k.jsonl: then the held-out
 *           part plays dev and is reported as split "heldout");
 *   babylm  BabyLM 2023's filtered files, <task>.<split>.json (JSON Lines),
 *           validation for model selection and test for the reported score
 *           (when test labels are hidden, -1, the validation score is reported).
 *
 * TSVs are split on tabs only: quotes are ordinary characters (GLUE's files
 * are not CSV). A UTF-8 BOM is dropped, CRLF accepted. Every row must have
 * the header's column count; a malformed line is "FILE:LINE: what" (the
 * error with on_error=stop, counted with skip).
 *
 * Labels: CoLA/SST-2/MRPC/QQP 0/1; RTE and QNLI entailment = 0,
 * not_entailment = 1; MNLI entailment 0, neutral 1, contradiction 2; BoolQ,
 * MultiRC, WSC false 0, true 1 — the Hugging Face datasets' numbering,
 * which BabyLM's files use.
 */
#ifndef FFNLAB_TASK_GLUE_H
#define FFNLAB_TASK_GLUE_H

#include <stdint.h>

#include "../common/task_util.h"

enum { GLUE_ACC = 0, GLUE_MCC = 1, GLUE_F1_ACC = 2 };           /* what a task reports */
enum { REC_PLAIN = 0, REC_MULTIRC = 1, REC_WSC = 2 };            /* how a JSON record becomes examples */

typedef struct glue_def {
    const char *name;          /* "cola" */
    const char *glue_dir;      /* "CoLA" */
    int n_classes;
    int metric;                /* GLUE_* */
    const char *labels;        /* label names, '|'-joined, in class order */
    const char *tsv_a, *tsv_b, *tsv_label;   /* header names (NULL tsv_a: CoLA's headerless layout) */
    const char *json_a, *json_b;             /* candidate keys, '|'-joined */
    int record;                /* REC_* */
    const char *train[3], *dev[3];           /* glue layout, first that exists */
    const char *dev_mm[2];     /* MNLI mismatched (glue layout) */
    const char *bl_dev, *bl_test, *bl_dev_mm, *bl_test_mm;  /* babylm split names */
} glue_def;

const glue_def *glue_find(const char *name);
/* Every task name, '|'-joined (for help and messages). */
const char *glue_names(void);

typedef struct glue_example {
    char *a, *b;               /* b may be NULL (single-sentence tasks) */
    int32_t label;             /* -1 when the split hides its labels */
} glue_example;

#define GLUE_MAX_NOTES 5

typedef struct glue_split {
    glue_example *ex;
    int64_t n, cap;
    int64_t skipped;           /* malformed lines passed over (on_error=skip) */
    int hidden;                /* every label is -1 (a test set without labels) */
    char notes[GLUE_MAX_NOTES][256];
    int n_notes;
    char path[4096];
} glue_split;

/* Reads one file of task d: .tsv by header, anything else as JSON Lines. */
fl_status glue_read(const glue_def *d, const char *path, int skip, glue_split *out, fl_error *err);
void glue_split_free(glue_split *s);

/* The label index of a value as written in a file ("entailment", "1", "true"). */
int glue_label_of(const glue_def *d, const char *text);

#endif
