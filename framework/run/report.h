/*
 * run/report.h — `ffnlab report`: one self-contained report from run folders
 * and sweep folders.
 *
 * Inputs. A run folder holds train_config.json and metrics.jsonl (required),
 * and summary.json and eval.json (optional: their columns print as "–"
 * without them). A sweep folder holds sweep.json, whose cells name run
 * folders inside it; a cell in state "done" must have its folder, a cell in
 * any other state is skipped with a note.
 *
 * Tables. Runs are grouped by model shape (d_model, n_layers, n_heads,
 * context, vocab_size, and the architecture: an encoder's masked-LM loss and
 * PLL BLiMP do not compare with a decoder's), one table each. Within a table, runs with the same
 * variant label (a sweep cell's variant, else the FFN spec with its
 * per-layer overrides) and the same config but for the seed (and the
 * bookkeeping keys of REPORT_IGNORED_KEYS in report_table.c) pool into one
 * row: every cell is the mean ± sample standard deviation over the row's
 * runs that have the value.
 *
 * Output (fl_report_make): OUT/report.md, OUT/report.html, OUT/tables/<table
 * slug>.csv, OUT/plots/<name>.png and .svg drawn by gnuplot from the scripts
 * and data in OUT/plots/gnuplot/. The report is built in a temporary folder
 * beside OUT and renamed into place, so a failure leaves no half-written
 * report; an existing OUT is replaced only when it is an earlier report
 * (it holds REPORT_MARKER).
 */
#ifndef FFNLAB_REPORT_H
#define FFNLAB_REPORT_H

#include <stdio.h>

#include "config.h" /* FL_PATH_MAX */
#include "ffnlab/status.h"

struct cJSON;

#define FL_REPORT_NAME 128  /* a metric, layer, stat or column name */
#define FL_REPORT_LABEL 512 /* a variant label */

/* The file that marks a folder as an ffnlab report (so --out may replace it). */
#define FL_REPORT_MARKER ".ffnlab-report"

/* A run's single numbers, NAN where the run has none. */
enum {
    FL_RV_TOTAL_PARAMS,
    FL_RV_ACTIVE_PARAMS,       /* per token */
    FL_RV_FLOPS_PER_TOKEN,
    FL_RV_VAL_LOSS,            /* final validation loss, nats/token */
    FL_RV_BLIMP_PARADIGM,      /* accuracy_paradigm_mean */
    FL_RV_BLIMP_PHENOMENON,    /* accuracy_phenomenon_mean */
    FL_RV_BLIMP_SUPPLEMENT,    /* supplement accuracy_task_mean */
    FL_RV_BLIMP_STUDY,         /* phenomena + supplement tasks weighted by pairs (the study's way) */
    FL_RV_GLUE_AVERAGE,        /* mean of the (Super)GLUE tasks' scores */
    FL_RV_TRAIN_TOKENS_PER_S,
    FL_RV_INFER_TOKENS_PER_S,
    FL_RV_DECODE_TOKENS_PER_S,
    FL_RV_PEAK_RSS_MIB,
    FL_RV_PEAK_DEVICE_MIB,
    FL_RV_COUNT
};

/* Named numbers in first-seen order: a value and the items behind it (n). */
typedef struct fl_report_named {
    int n, cap;
    char (*name)[FL_REPORT_NAME];
    double *value, *count;
} fl_report_named;

/* One quantity over training, one point per logged step; tokens and time_s
   are NAN where the line has none (runs from before they were logged). */
typedef struct fl_report_curve {
    char layer[FL_REPORT_NAME]; /* plugin stats: the layer ("h.0"); "" otherwise */
    char stat[FL_REPORT_NAME];  /* plugin stats: the stat ("load.0"); "val_loss" otherwise */
    int n, cap;
    double *step, *tokens, *time_s, *value;
} fl_report_curve;

typedef struct fl_report_shape {
    int d_model, n_layers, n_heads, context, vocab_size;
    int encoder;               /* arch bert: its loss is the masked-LM loss, another quantity */
} fl_report_shape;

typedef struct fl_report_run {
    char dir[FL_PATH_MAX];
    char label[FL_REPORT_LABEL];   /* the variant this run belongs to */
    char seed[32];
    fl_report_shape shape;
    struct cJSON *config;          /* train_config.json */
    double v[FL_RV_COUNT];         /* FL_RV_* */
    fl_report_named blimp_fields;      /* accuracy per BLiMP field */
    fl_report_named blimp_phenomena;   /* accuracy and pairs per phenomenon */
    fl_report_named supplement_tasks;  /* accuracy and pairs per supplement task */
    fl_report_named glue_tasks;        /* score per (Super)GLUE task (MCC, F1 or accuracy) */
    fl_report_named last_stats;        /* the last training line's plugin stats, first layer that has each */
    fl_report_curve val;               /* validation loss */
    int n_stats;
    fl_report_curve *stats;            /* plugin stats per layer and name over training */
} fl_report_run;

/* What a column holds: its format, and which value is best (size and
   memory columns mark none). */
typedef enum fl_report_kind {
    FL_KIND_COUNT,   /* parameters, FLOPs: unmarked */
    FL_KIND_LOSS,    /* lowest is best */
    FL_KIND_SCORE,   /* accuracy, F1, MCC: highest is best */
    FL_KIND_SPEED,   /* tokens/s: highest is best */
    FL_KIND_MIB      /* memory: unmarked */
} fl_report_kind;

/* The named list a column reads (when rv < 0). */
enum { FL_LIST_BLIMP_FIELDS, FL_LIST_GLUE_TASKS };

typedef struct fl_report_col {
    char id[FL_REPORT_NAME];    /* CSV header: val_loss, blimp_field_syntax, glue_cola ... */
    char title[FL_REPORT_NAME]; /* md/html header */
    fl_report_kind kind;
    int rv;                     /* FL_RV_* or -1 */
    int list;                   /* FL_LIST_* when rv < 0 */
    char item[FL_REPORT_NAME];  /* the name in that list */
} fl_report_col;

/* n runs had the value; sd is NAN for n < 2; best marks the column's best. */
typedef struct fl_report_cell {
    int n, best;
    double mean, sd;
} fl_report_cell;

typedef struct fl_report_row {
    char label[FL_REPORT_LABEL];
    int n_runs;
    int *runs;             /* indices into fl_report.runs */
    fl_report_cell *cells; /* one per column */
} fl_report_row;

typedef struct fl_report_table {
    fl_report_shape shape;
    char title[256]; /* "d=256, 2 layers, 4 heads, context 512, vocab 10000" */
    char slug[96];   /* "d256-l2-h4-t512-v10000": file names */
    int n_cols, n_rows;
    fl_report_col *cols;
    fl_report_row *rows;
} fl_report_table;

/* A published number of the study ffnlab reproduces (NAN: not published). */
typedef struct fl_report_study_ref {
    const char *label;   /* "MoE top-k 2" */
    const char *plugin;  /* "moe" */
    const char *param;   /* what tells the configurations apart: "top_k", "blocks", "knn"; NULL for dense */
    int param_value;
    double blimp, glue, eval_loss;
} fl_report_study_ref;

/* One line of the comparison: a published configuration and a row of this
   report that matches it (table < 0: none does). */
typedef struct fl_report_study_line {
    const fl_report_study_ref *ref;
    int table, row;
    fl_report_cell blimp, glue, loss; /* FL_RV_BLIMP_STUDY, FL_RV_GLUE_AVERAGE, FL_RV_VAL_LOSS */
    int n_phenomena, n_supplement;    /* what the BLiMP figure was computed over (the first run's) */
} fl_report_study_line;

/* The study's model shape (its `seed` config: the decoder, encoder 0). */
extern const fl_report_shape FL_REPORT_STUDY_SHAPE;

/* One plot: gnuplot draws plots/<stem>.png and .svg. */
typedef enum fl_report_plot_kind {
    FL_PLOT_VAL_LOSS_TOKENS, /* validation loss vs training tokens (vs step when tokens were not logged) */
    FL_PLOT_VAL_LOSS_TIME,   /* validation loss vs wall time */
    FL_PLOT_BLIMP_PHENOMENA, /* accuracy per phenomenon, a bar per variant */
    FL_PLOT_SPEED_PARAMS,    /* training tokens/s vs total parameters */
    FL_PLOT_MOE_LOAD,        /* one row's load.<i> per layer over steps */
    FL_PLOT_PKM_MEMORY       /* memory_usage per row and layer over steps */
} fl_report_plot_kind;

typedef struct fl_report_plot {
    fl_report_plot_kind kind;
    int table, row;          /* row: FL_PLOT_MOE_LOAD only, else -1 */
    char stem[256];
    char title[FL_REPORT_LABEL];
} fl_report_plot;

typedef struct fl_report {
    int n_inputs;
    char **inputs;
    int n_runs, n_tables, n_notes, n_plots, n_study;
    fl_report_run *runs;
    fl_report_table *tables;
    char **notes;               /* skipped cells and other things a reader should know */
    fl_report_plot *plots;
    fl_report_study_line *study; /* with compare_study */
    int compare_study;
    char plots_skipped[256];    /* why there are no plots ("" when drawn) */
    char md_path[FL_PATH_MAX + 16]; /* OUT/report.md once written */
} fl_report;

typedef struct fl_report_opts {
    const char *const *inputs; /* run and sweep folders */
    int n_inputs;
    const char *out_dir;       /* NULL: "report" */
    int compare_study;
    const char *gnuplot;       /* the program; NULL: $FFNLAB_GNUPLOT, else "gnuplot" on PATH */
} fl_report_opts;

/* Reads the inputs, builds the tables and writes the report (see top).
   r holds everything it computed, also after a failure (fl_report_free). */
fl_status fl_report_make(const fl_report_opts *o, fl_report *r, fl_error *err);
void fl_report_free(fl_report *r);

/* The steps of fl_report_make, for tests and other callers. */
/* Reads every input folder into r->runs (report_read.c). */
fl_status fl_report_read(fl_report *r, const char *const *inputs, int n, fl_error *err);
/* Groups r->runs into r->tables, computes the cells, marks the best, and
   the study lines when r->compare_study (report_table.c). */
fl_status fl_report_tabulate(fl_report *r, fl_error *err);
/* Lists the plots the data allows into r->plots (report_plot.c). */
fl_status fl_report_plan_plots(fl_report *r, fl_error *err);
/* Writes every plot's data and script under dir/plots/gnuplot/ and runs
   gnuplot on each; without gnuplot sets r->plots_skipped (report_plot.c). */
fl_status fl_report_draw(fl_report *r, const char *dir, const char *gnuplot, fl_error *err);
/* report.md, report.html and tables/<slug>.csv into dir (report_write.c). */
fl_status fl_report_write(const fl_report *r, const char *dir, fl_error *err);

/* "d=256, 2 layers, ...: 3 variants, 9 runs; best val loss 2.905 (dense)". */
void fl_report_table_summary(const fl_report_table *t, char *buf, size_t n);

/* Helpers the parts share. */
fl_status fl_report_note(fl_report *r, fl_error *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fl_report_named_find(const fl_report_named *l, const char *name); /* index or -1 */
fl_status fl_report_named_put(fl_report_named *l, const char *name, double value, double count, fl_error *err);
fl_status fl_report_curve_push(fl_report_curve *c, double step, double tokens, double time_s, double value,
                               fl_error *err);
void fl_report_curve_free(fl_report_curve *c);
/* The column's value for one run (NAN when it has none). */
double fl_report_run_value(const fl_report_run *run, const fl_report_col *col);

#endif
