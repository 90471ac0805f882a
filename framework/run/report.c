/*
 * run/report.c — `ffnlab report` from start to end: the output folder, the
 * steps in order, and freeing what they made (see report.h).
 *
 * The output folder is replaced as a whole: everything is written into
 * "<parent>/.<name>.partial.<pid>", which is renamed into place only when
 * complete (an earlier report there is set aside first and deleted after),
 * so a reader sees the old report or the new one, and a failure leaves
 * neither half of one nor a temporary folder.
 */
#include "report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"

/* ------------------------------------------------------------ the output folder */

typedef struct out_dir {
    char final[FL_PATH_MAX], tmp[FL_PATH_MAX + 64], aside[FL_PATH_MAX + 64];
} out_dir;

/* Refuses an OUT that is not a folder, or a folder with files that is not
   an earlier report; works out the temporary names beside it. */
static fl_status out_plan(out_dir *o, const char *path, fl_error *err) {
    char parent[FL_PATH_MAX], base[FL_PATH_MAX], marker[FL_PATH_MAX + 32];
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--; /* "report/" is "report" */
    if (len == 0 || len >= FL_PATH_MAX) return fl_fail(err, FL_EINVAL, "--out: '%s' is not a usable path", path);
    snprintf(o->final, sizeof o->final, "%.*s", (int)len, path);
    snprintf(parent, sizeof parent, "%s", o->final);
    snprintf(base, sizeof base, "%s", o->final);
    const char *p = dirname(parent), *b = basename(base);
    if (!strcmp(b, "/") || !strcmp(b, ".") || !strcmp(b, ".."))
        return fl_fail(err, FL_EINVAL, "--out: '%s' is not a usable report folder", path);
    snprintf(o->tmp, sizeof o->tmp, "%s/.%s.partial.%ld", p, b, (long)getpid());
    snprintf(o->aside, sizeof o->aside, "%s/.%s.old.%ld", p, b, (long)getpid());
    struct stat st;
    if (stat(o->final, &st) != 0) return FL_OK;
    if (!S_ISDIR(st.st_mode)) return fl_fail(err, FL_EINVAL, "%s: exists and is not a folder", o->final);
    snprintf(marker, sizeof marker, "%s/" FL_REPORT_MARKER, o->final);
    if (!fl_dir_is_empty(o->final) && !fl_path_exists(marker))
        return fl_fail(err, FL_EINVAL, "%s: exists and is not an ffnlab report (no %s); not overwriting it",
                       o->final, FL_REPORT_MARKER);
    return FL_OK;
}

static fl_status out_begin(const out_dir *o, fl_error *err) {
    fl_remove_tree(o->tmp); /* left by a killed command with the same pid */
    return fl_mkdirs(o->tmp, err);
}

/* The finished temporary folder renamed into place. */
static fl_status out_commit(const out_dir *o, fl_error *err) {
    int had = fl_path_exists(o->final);
    if (had && rename(o->final, o->aside) != 0)
        return fl_fail(err, FL_EIO, "%s: cannot set the old report aside: %s", o->final, strerror(errno));
    if (rename(o->tmp, o->final) != 0) {
        int e = errno;
        if (had) rename(o->aside, o->final);
        return fl_fail(err, FL_EIO, "%s: cannot move the new report into place: %s", o->final, strerror(e));
    }
    if (had) fl_remove_tree(o->aside);
    return FL_OK;
}

/* ------------------------------------------------------------ the steps */

static fl_status copy_inputs(fl_report *r, const fl_report_opts *o, fl_error *err) {
    r->inputs = calloc((size_t)o->n_inputs + 1, sizeof *r->inputs);
    if (!r->inputs) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    for (int i = 0; i < o->n_inputs; i++) {
        if (!(r->inputs[i] = strdup(o->inputs[i]))) return fl_fail(err, FL_ENOMEM, "report: out of memory");
        r->n_inputs++;
    }
    return FL_OK;
}

fl_status fl_report_make(const fl_report_opts *o, fl_report *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    r->compare_study = o->compare_study;
    if (o->n_inputs < 1) return fl_fail(err, FL_EINVAL, "no run or sweep folder given");
    out_dir out;
    fl_status st = out_plan(&out, o->out_dir ? o->out_dir : "report", err);
    if (!st) st = copy_inputs(r, o, err);
    if (!st) st = fl_report_read(r, o->inputs, o->n_inputs, err);
    if (!st) st = fl_report_tabulate(r, err);
    if (!st) st = fl_report_plan_plots(r, err);
    if (st) return st;
    st = out_begin(&out, err);
    if (!st) st = fl_report_draw(r, out.tmp, o->gnuplot, err);
    if (!st) st = fl_report_write(r, out.tmp, err);
    if (!st) st = out_commit(&out, err);
    if (st) fl_remove_tree(out.tmp);
    else snprintf(r->md_path, sizeof r->md_path, "%s/report.md", out.final);
    return st;
}

/* ------------------------------------------------------------ freeing */

static void named_free(fl_report_named *l) { free(l->name), free(l->value), free(l->count); }

static void run_free(fl_report_run *run) {
    cJSON_Delete(run->config);
    named_free(&run->blimp_fields), named_free(&run->blimp_phenomena), named_free(&run->supplement_tasks);
    named_free(&run->glue_tasks), named_free(&run->last_stats);
    fl_report_curve_free(&run->val);
    for (int i = 0; i < run->n_stats; i++) fl_report_curve_free(&run->stats[i]);
    free(run->stats);
}

static void table_free(fl_report_table *t) {
    for (int k = 0; k < t->n_rows; k++) free(t->rows[k].runs), free(t->rows[k].cells);
    free(t->rows), free(t->cols);
}

void fl_report_free(fl_report *r) {
    for (int i = 0; i < r->n_inputs; i++) free(r->inputs[i]);
    for (int i = 0; i < r->n_runs; i++) run_free(&r->runs[i]);
    for (int i = 0; i < r->n_tables; i++) table_free(&r->tables[i]);
    for (int i = 0; i < r->n_notes; i++) free(r->notes[i]);
    free(r->inputs), free(r->runs), free(r->tables), free(r->notes), free(r->plots), free(r->study);
    memset(r, 0, sizeof *r);
}
