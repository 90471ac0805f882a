/*
 * tests/test_report.c — `ffnlab report`: tables, CSV, Markdown/HTML and
 * gnuplot plots from run and sweep folders.
 *
 * Specification (fixtures are small hand-written run and sweep folders):
 *  - a sweep of two variants x 3 seeds is one table with a row per variant:
 *    every cell is the mean ± sample sd over the seeds of exactly the input
 *    numbers; the best cell is marked only in quality and speed columns
 *    (lowest loss, highest score and tokens/s; sizes and memory never);
 *    a (Super)GLUE task's score is MCC for CoLA, F1 for MRPC, the
 *    validation split before test, never the majority baseline; a cell that
 *    is not done is skipped with a note;
 *  - tables/<size>.csv parses back to the same numbers; report.md bolds the
 *    best cells and prints "–" for a missing value; report.html marks them
 *    with class "best", embeds the SVG plots by relative path, and has no
 *    script and no network address;
 *  - every plot is a PNG (signature) and an SVG document, drawn by gnuplot:
 *    validation loss vs tokens and vs time, BLiMP by phenomenon, speed vs
 *    parameters, MoE expert load; PKM memory usage where PKM stats exist;
 *  - loose run folders pool by seed, runs that differ otherwise are told
 *    apart in their label, model sizes are separate tables; an old run
 *    (no tokens, no summary.json, no eval.json) is plotted against the step;
 *  - --compare-study prints the study's labelled numbers and this report's
 *    example-count-weighted BLiMP beside them;
 *  - a missing folder, a malformed metrics line, a sweep cell that is done
 *    but missing, or a failing gnuplot is one error line, non-zero exit and
 *    no report (not even a temporary folder); an existing folder that is not
 *    a report is never overwritten, an earlier report is replaced; without
 *    gnuplot the tables are written and the report says plots were skipped;
 *  - a real run folder (train + eval blimp) reads as written by ffnlab.
 */
#include "support.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"

#define SHAPE_SWEEP "\"d_model\": 64, \"n_layers\": 2, \"n_heads\": 2, \"context\": 32, \"vocab_size\": 300"
#define SLUG_SWEEP "d64-l2-h2-t32-v300"

/* ------------------------------------------------------------ fixtures */

/* What one fixture run holds; NAN / NULL leaves a value (or file) out. */
typedef struct fx_run {
    const char *ffn, *ffn_layers, *stats; /* stats: "moe", "pkm" or NULL */
    int seed, steps, d_model, with_tokens;
    double val_final;
    double total_params, active_params, flops, train_tps, infer_tps, decode_tps, peak_rss; /* summary.json */
    double blimp_paradigm, blimp_phenomenon, morphology, syntax;                         /* eval.json */
    double phen[3], sup[2], cola, mrpc_f1, rte_val, rte_test, boolq_test;
} fx_run;

static const char *const PHENOMENA[3] = {"anaphor_agreement", "island_effects", "quantifiers"};
static const double PHEN_N[3] = {1000, 2000, 500};
static const char *const SUPPLEMENT[2] = {"hypernym", "qa_congruence_easy"};
static const double SUP_N[2] = {300, 700};

/* Buffer sizes by depth below the test's folder (so no path is ever cut). */
#define TOP_LEN 512    /* g_dir/NAME */
#define SUB_LEN 1024   /* g_dir/NAME/NAME */
#define FILE_LEN 2048  /* any of those/FILE */
#define CMD_LEN 8192

static void mkdirs(const char *dir) {
    char cmd[CMD_LEN];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static FILE *create(const char *dir, const char *name) {
    char path[FILE_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("cannot write %s", path);
    return f;
}

static void write_config(const char *dir, const fx_run *x) {
    FILE *f = create(dir, "train_config.json");
    fprintf(f, "{\"vocab_size\": 300, \"context\": 32, \"d_model\": %d, \"n_layers\": 2, \"n_heads\": 2, \"ffn\": \"%s\", "
               "\"ffn_layers\": \"%s\", \"batch_size\": 4, \"steps\": %d, \"lr\": 0.003, \"seed\": %d, \"run_dir\": \"%s\", "
               "\"log_every\": 10, \"threads\": 0}\n",
            x->d_model ? x->d_model : 64, x->ffn, x->ffn_layers ? x->ffn_layers : "", x->steps ? x->steps : 30, x->seed,
            dir);
    fclose(f);
}

/* The plugin stats of a training line at step (MoE load moves with the step). */
static void write_stats(FILE *f, const char *kind, int step) {
    if (!kind) return;
    fputs(", \"stats\": {", f);
    for (int layer = 0; layer < 2; layer++) {
        if (!strcmp(kind, "moe"))
            fprintf(f, "%s\"h.%d\": {\"active_params\": 300000, \"top_k\": 1, \"load.0\": %.3f, \"load.1\": %.3f}",
                    layer ? ", " : "", layer, 0.5 + step / 1000.0, 0.5 - step / 1000.0);
        else
            fprintf(f, "%s\"h.%d\": {\"memory_usage\": %.3f, \"kl_uniform\": 0.2}", layer ? ", " : "", layer,
                    0.1 + step / 100.0);
    }
    fputc('}', f);
}

/* Training lines every 10 steps with tokens_per_s 1000, 3000, 2000 (median
   2000); validation at 10, 20, 30: final + 1, final + 0.5, final. */
static void write_metrics(const char *dir, const fx_run *x) {
    FILE *f = create(dir, "metrics.jsonl");
    const double speeds[3] = {1000, 3000, 2000}, val[3] = {x->val_final + 1, x->val_final + 0.5, x->val_final};
    for (int i = 0; i < 3; i++) {
        int step = 10 * (i + 1);
        fprintf(f, "{\"step\": %d, \"loss\": %.3f, \"ce_loss\": 3.0, \"lr\": 0.001, \"tokens_per_s\": %.1f, \"time_s\": %.1f",
                step, val[i] + 0.1, speeds[i], 2.0 * step);
        if (x->with_tokens) fprintf(f, ", \"tokens\": %d", step * 128);
        write_stats(f, x->stats, step);
        fputs("}\n", f);
        fprintf(f, "{\"step\": %d, \"val_loss\": %.17g, \"time_s\": %.1f", step, val[i], 2.0 * step + 1);
        if (x->with_tokens) fprintf(f, ", \"tokens\": %d", step * 128);
        fputs("}\n", f);
    }
    fclose(f);
}

static void put_opt(FILE *f, const char *key, double v, int *first) {
    if (isnan(v)) return;
    fprintf(f, "%s\"%s\": %.17g", *first ? "" : ", ", key, v);
    *first = 0;
}

static void write_summary(const char *dir, const fx_run *x) {
    if (isnan(x->total_params)) return;
    FILE *f = create(dir, "summary.json");
    int first = 1;
    fputs("{\"ffnlab_version\": \"0.1.0\", \"git_revision\": \"abc1234\", \"config\": {}, \"model\": {", f);
    put_opt(f, "total_params", x->total_params, &first);
    put_opt(f, "active_params_per_token", x->active_params, &first);
    put_opt(f, "flops_per_token", x->flops, &first);
    fputs(", \"ffn_params\": 1000, \"ffn\": []}, \"training\": {\"steps\": 30, \"tokens\": 3840, \"seconds\": 60", f);
    first = 0;
    put_opt(f, "tokens_per_s", x->train_tps, &first);
    put_opt(f, "final_val_loss", x->val_final, &first);
    fputs("}, \"inference\": {", f);
    first = 1;
    put_opt(f, "tokens_per_s", x->infer_tps, &first);
    fputs("}", f);
    if (!isnan(x->decode_tps)) fprintf(f, ", \"decode\": {\"tokens_per_s\": %.17g, \"batch\": 1}", x->decode_tps);
    fprintf(f, ", \"memory\": {\"peak_rss_mib\": %.17g}}\n", x->peak_rss);
    fclose(f);
}

static void result(FILE *f, int *first, const char *task, const char *metric, double value, double n,
                   const char *extra) {
    fprintf(f, "%s\n  {\"task\": \"%s\", \"spec\": \"%s\", \"metric\": \"%s\", \"kind\": \"accuracy\", \"value\": %.17g, "
               "\"n\": %.0f, \"time_s\": 1.5%s%s}",
            *first ? "" : ",", task, task, metric, value, n, extra ? ", " : "", extra ? extra : "");
    *first = 0;
}

static void write_eval(const char *dir, const fx_run *x) {
    if (isnan(x->blimp_paradigm)) return;
    FILE *f = create(dir, "eval.json");
    int first = 1;
    char extra[256];
    fputs("{\"ffnlab_version\": \"0.1.0\", \"model\": {\"n_params\": 1}, \"results\": [", f);
    result(f, &first, "blimp", "accuracy_paradigm_mean", x->blimp_paradigm, 3500, NULL);
    result(f, &first, "blimp", "accuracy_phenomenon_mean", x->blimp_phenomenon, 3500, NULL);
    result(f, &first, "blimp", "accuracy", x->morphology, 1000, "\"group\": \"field\", \"item\": \"morphology\"");
    result(f, &first, "blimp", "accuracy", x->syntax, 2500, "\"group\": \"field\", \"item\": \"syntax\"");
    for (int i = 0; i < 3; i++) {
        snprintf(extra, sizeof extra, "\"group\": \"phenomenon\", \"item\": \"%s\"", PHENOMENA[i]);
        result(f, &first, "blimp", "accuracy", x->phen[i], PHEN_N[i], extra);
    }
    result(f, &first, "blimp", "accuracy_task_mean", 0.5 * (x->sup[0] + x->sup[1]), 1000, "\"subtask\": \"supplement\"");
    for (int i = 0; i < 2; i++) {
        snprintf(extra, sizeof extra, "\"subtask\": \"supplement\", \"group\": \"task\", \"item\": \"%s\"", SUPPLEMENT[i]);
        result(f, &first, "blimp", "accuracy", x->sup[i], SUP_N[i], extra);
    }
    result(f, &first, "glue", "majority_mcc", 0.0, 500, "\"subtask\": \"cola\", \"split\": \"validation\"");
    result(f, &first, "glue", "mcc", x->cola, 500, "\"subtask\": \"cola\", \"split\": \"validation\"");
    result(f, &first, "glue", "accuracy", 0.99, 400, "\"subtask\": \"mrpc\", \"split\": \"validation\"");
    result(f, &first, "glue", "f1", x->mrpc_f1, 400, "\"subtask\": \"mrpc\", \"split\": \"validation\"");
    result(f, &first, "glue", "accuracy", x->rte_test, 200, "\"subtask\": \"rte\", \"split\": \"test\"");
    result(f, &first, "glue", "accuracy", x->rte_val, 200, "\"subtask\": \"rte\", \"split\": \"validation\"");
    result(f, &first, "glue", "accuracy", x->boolq_test, 300, "\"subtask\": \"boolq\", \"split\": \"test\"");
    result(f, &first, "lm", "loss", 3.3, 5000, NULL);
    fputs("\n]}\n", f);
    fclose(f);
}

static void write_run(const char *dir, const fx_run *x) {
    mkdirs(dir);
    write_config(dir, x);
    write_metrics(dir, x);
    write_summary(dir, x);
    write_eval(dir, x);
}

/* An old run: config and metrics only, no tokens. */
static fx_run old_run(const char *ffn, int seed, double val_final) {
    fx_run x = {.ffn = ffn, .seed = seed, .val_final = val_final, .total_params = NAN, .blimp_paradigm = NAN};
    return x;
}

/* ---- the sweep: dense and moe x seeds 1..3, and a pkm cell still running */

static const double DENSE_LOSS[3] = {2.91, 2.95, 2.87}, MOE_LOSS[3] = {3.02, 2.98, 3.06};
static const double DENSE_PAR[3] = {0.61, 0.63, 0.62}, MOE_PAR[3] = {0.66, 0.64, 0.65};
static const double DENSE_TPS[3] = {5000, 5200, 4900}, MOE_TPS[3] = {6100, 6000, 6300};
static const double DENSE_SYN[3] = {0.70, 0.72, 0.71}, MOE_SYN[3] = {0.69, 0.70, 0.74};
static const double DENSE_COLA[3] = {0.10, 0.12, 0.08}, MOE_COLA[3] = {0.05, 0.07, 0.09};

static fx_run sweep_run(int moe, int s) {
    fx_run x = {.ffn = moe ? "moe:experts=2,top_k=1" : "dense", .stats = moe ? "moe" : NULL, .seed = s + 1,
                .with_tokens = 1, .val_final = (moe ? MOE_LOSS : DENSE_LOSS)[s],
                .total_params = moe ? 1050000 : 1048576, .active_params = moe ? 300000 : 1048576,
                .flops = moe ? 600000 : 2097152, .train_tps = (moe ? MOE_TPS : DENSE_TPS)[s],
                .infer_tps = moe ? 20000 + s : 18000 + s, .decode_tps = moe ? NAN : 900 + 10 * s,
                .peak_rss = moe ? 300 + s : 250 + s, .blimp_paradigm = (moe ? MOE_PAR : DENSE_PAR)[s],
                .blimp_phenomenon = 0.6 + 0.01 * s, .morphology = 0.5 + 0.01 * s,
                .syntax = (moe ? MOE_SYN : DENSE_SYN)[s], .phen = {0.6 + 0.01 * s, 0.7, 0.55 + 0.02 * moe},
                .sup = {0.45, 0.58 + 0.01 * s}, .cola = (moe ? MOE_COLA : DENSE_COLA)[s], .mrpc_f1 = 0.6 + 0.01 * s,
                .rte_val = 0.52 + 0.01 * moe, .rte_test = 0.99, .boolq_test = 0.6 + 0.02 * s};
    return x;
}

static void write_sweep(const char *dir) {
    char cell[FILE_LEN];
    mkdirs(dir);
    FILE *f = create(dir, "sweep.json");
    fprintf(f, "{\"plan\": {\"config\": {" SHAPE_SWEEP "}, \"match\": \"params\", \"variants\": ["
               "{\"name\": \"dense\", \"spec\": \"dense\", \"sizes\": {\"total_params\": 1048576}}, "
               "{\"name\": \"moe\", \"spec\": \"moe:experts=2,top_k=1\", \"sizes\": {\"total_params\": 1050000}}, "
               "{\"name\": \"pkm\", \"spec\": \"pkm\"}], \"seeds\": [1, 2, 3], \"tasks\": [\"blimp\"]}, \"cells\": [");
    for (int moe = 0; moe < 2; moe++)
        for (int s = 0; s < 3; s++) {
            const char *v = moe ? "moe" : "dense";
            fprintf(f, "%s{\"name\": \"%s-s%d\", \"variant\": \"%s\", \"seed\": %d, \"dir\": \"%s-s%d\", \"state\": \"done\"}",
                    moe || s ? ", " : "", v, s + 1, v, s + 1, v, s + 1);
            snprintf(cell, sizeof cell, "%s/%s-s%d", dir, v, s + 1);
            fx_run x = sweep_run(moe, s);
            write_run(cell, &x);
        }
    fputs(", {\"name\": \"pkm-s1\", \"variant\": \"pkm\", \"seed\": 1, \"dir\": \"pkm-s1\", \"state\": \"running\"}]}\n", f);
    fclose(f);
}

/* ------------------------------------------------------------ helpers */

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ts_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static int ffnlab(char **out, const char *env, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ffnlab(char **out, const char *env, const char *fmt, ...) {
    char args[CMD_LEN], cmd[CMD_LEN + FILE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s '%s' %s", env ? env : "", ts_ffnlab_bin(), args);
    return ts_run(cmd, out);
}

static int have_gnuplot(void) { return ts_run("command -v gnuplot", NULL) == 0; }

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = sqrt(ss / (n - 1));
}

static int col(const fl_report_table *t, const char *id) {
    for (int c = 0; c < t->n_cols; c++)
        if (!strcmp(t->cols[c].id, id)) return c;
    fail_msg("no column %s", id);
    return -1;
}

static int row(const fl_report_table *t, const char *label) {
    for (int k = 0; k < t->n_rows; k++)
        if (!strcmp(t->rows[k].label, label)) return k;
    fail_msg("no row %s", label);
    return -1;
}

static void expect_cell(const fl_report_table *t, const char *label, const char *id, const double *x, int n) {
    double mean, sd;
    mean_sd(x, n, &mean, &sd);
    const fl_report_cell *c = &t->rows[row(t, label)].cells[col(t, id)];
    if (c->n != n || fabs(c->mean - mean) > 1e-12 * fabs(mean) || fabs(c->sd - sd) > 1e-9 * sd + 1e-15)
        fail_msg("%s/%s: n %d mean %.17g sd %.17g, want n %d mean %.17g sd %.17g", label, id, c->n, c->mean, c->sd, n,
                 mean, sd);
}

static int best(const fl_report_table *t, const char *label, const char *id) {
    return t->rows[row(t, label)].cells[col(t, id)].best;
}

/* Writes the fixture sweep g_dir/sweep<k> and makes its report into
   out = g_dir/report<k> with the API. */
static void sweep_report(int k, fl_report *r, char out[TOP_LEN]) {
    char sweep[TOP_LEN];
    snprintf(sweep, sizeof sweep, "%s/sweep%d", g_dir, k);
    snprintf(out, TOP_LEN, "%s/report%d", g_dir, k);
    write_sweep(sweep);
    const char *inputs[] = {sweep};
    fl_report_opts o = {.inputs = inputs, .n_inputs = 1, .out_dir = out};
    fl_error err = {0};
    ts_assert_ok(fl_report_make(&o, r, &err), &err);
}

static char *read_text(const char *dir, const char *name) {
    char path[FILE_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = ts_read_file(path, NULL);
    if (!text) fail_msg("cannot read %s", path);
    return text;
}

static void expect_in(const char *text, const char *what, const char *where) {
    if (!strstr(text, what)) fail_msg("%s lacks \"%s\"", where, what);
}

/* Nothing named out exists, and no temporary folder beside it. */
static void expect_no_report(const char *parent, const char *out_name) {
    char path[FILE_LEN];
    snprintf(path, sizeof path, "%s/%s", parent, out_name);
    if (access(path, F_OK) == 0) fail_msg("%s exists after a failed report", path);
    DIR *d = opendir(parent);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".partial.") || strstr(e->d_name, ".old.")) fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

/* ------------------------------------------------------------ tests */

static void test_sweep_table_values(void **state) {
    (void)state;
    char out[TOP_LEN];
    fl_report r;
    sweep_report(1, &r, out);
    assert_int_equal(r.n_tables, 1);
    const fl_report_table *t = &r.tables[0];
    assert_string_equal(t->title, "d=64, 2 layers, 2 heads, context 32, vocab 300");
    assert_string_equal(t->slug, SLUG_SWEEP);
    assert_int_equal(t->n_rows, 2);
    assert_string_equal(t->rows[0].label, "dense");
    assert_string_equal(t->rows[1].label, "moe");
    assert_int_equal(t->rows[0].n_runs, 3);
    assert_int_equal(t->rows[1].n_runs, 3);

    expect_cell(t, "dense", "val_loss", DENSE_LOSS, 3);
    expect_cell(t, "moe", "val_loss", MOE_LOSS, 3);
    expect_cell(t, "dense", "blimp_paradigm_mean", DENSE_PAR, 3);
    expect_cell(t, "moe", "blimp_paradigm_mean", MOE_PAR, 3);
    expect_cell(t, "moe", "blimp_field_syntax", MOE_SYN, 3);
    expect_cell(t, "dense", "train_tokens_per_s", DENSE_TPS, 3);
    expect_cell(t, "dense", "glue_cola", DENSE_COLA, 3); /* the model's MCC, not the majority baseline's */
    double mrpc[3], rte[3], boolq[3], glue_avg[3], params[3] = {1050000, 1050000, 1050000};
    for (int s = 0; s < 3; s++) {
        fx_run x = sweep_run(1, s);
        mrpc[s] = x.mrpc_f1, rte[s] = x.rte_val, boolq[s] = x.boolq_test;
        glue_avg[s] = (x.cola + x.mrpc_f1 + x.rte_val + x.boolq_test) / 4;
    }
    expect_cell(t, "moe", "glue_mrpc", mrpc, 3);   /* F1 */
    expect_cell(t, "moe", "glue_rte", rte, 3);     /* validation before test */
    expect_cell(t, "moe", "glue_boolq", boolq, 3); /* test when it is all there is */
    expect_cell(t, "moe", "glue_average", glue_avg, 3);
    expect_cell(t, "moe", "total_params", params, 3);
    assert_int_equal(t->rows[row(t, "moe")].cells[col(t, "decode_tokens_per_s")].n, 0);

    /* the best: lowest loss, highest score and speed; sizes and memory never */
    assert_true(best(t, "dense", "val_loss") && !best(t, "moe", "val_loss"));
    assert_true(best(t, "moe", "blimp_paradigm_mean") && !best(t, "dense", "blimp_paradigm_mean"));
    assert_true(best(t, "moe", "train_tokens_per_s") && !best(t, "dense", "train_tokens_per_s"));
    assert_true(best(t, "dense", "glue_cola") && !best(t, "moe", "glue_cola"));
    for (int k = 0; k < 2; k++) {
        assert_false(t->rows[k].cells[col(t, "total_params")].best);
        assert_false(t->rows[k].cells[col(t, "active_params_per_token")].best);
        assert_false(t->rows[k].cells[col(t, "peak_rss_mib")].best);
    }
    int noted = 0;
    for (int i = 0; i < r.n_notes; i++) noted |= strstr(r.notes[i], "pkm-s1") && strstr(r.notes[i], "running");
    assert_true(noted);
    fl_report_free(&r);
}

/* The CSV's header names and numbers, read back. */
static void test_csv_round_trip(void **state) {
    (void)state;
    char out[TOP_LEN];
    fl_report r;
    sweep_report(2, &r, out);
    const fl_report_table *t = &r.tables[0];
    char *csv = read_text(out, "tables/" SLUG_SWEEP ".csv");
    char *save = NULL, *line = strtok_r(csv, "\n", &save);
    char header[64][64];
    int n_fields = 0;
    for (char *p = line, *q; p; p = q) {
        q = strchr(p, ',');
        if (q) *q++ = 0;
        snprintf(header[n_fields++], sizeof header[0], "%s", p);
    }
    assert_int_equal(n_fields, 2 + 2 * t->n_cols);
    assert_string_equal(header[0], "variant");
    assert_string_equal(header[1], "seeds");
    for (int k = 0; k < t->n_rows; k++) {
        line = strtok_r(NULL, "\n", &save);
        assert_non_null(line);
        char *fields[64];
        int n = 0;
        for (char *p = line, *q; p; p = q) {
            q = strchr(p, ',');
            if (q) *q++ = 0;
            fields[n++] = p;
        }
        assert_int_equal(n, n_fields);
        assert_string_equal(fields[0], t->rows[k].label);
        assert_int_equal(atoi(fields[1]), 3);
        for (int c = 0; c < t->n_cols; c++) {
            const fl_report_cell *x = &t->rows[k].cells[c];
            assert_string_equal(header[2 + 2 * c], t->cols[c].id);
            if (!x->n) {
                assert_string_equal(fields[2 + 2 * c], "");
                continue;
            }
            assert_true(strtod(fields[2 + 2 * c], NULL) == x->mean);
            assert_true(strtod(fields[3 + 2 * c], NULL) == x->sd);
        }
    }
    /* and against the inputs, independently of the table */
    double mean, sd;
    mean_sd(MOE_LOSS, 3, &mean, &sd);
    assert_true(fabs(t->rows[1].cells[col(t, "val_loss")].mean - mean) < 1e-12);
    free(csv);
    fl_report_free(&r);
}

static void test_markdown_and_html(void **state) {
    (void)state;
    char out[TOP_LEN], cell[128];
    fl_report r;
    sweep_report(3, &r, out);
    char *md = read_text(out, "report.md"), *html = read_text(out, "report.html");
    double mean, sd;
    mean_sd(DENSE_LOSS, 3, &mean, &sd);
    snprintf(cell, sizeof cell, "**%.4f ± %.4f**", mean, sd); /* the best val loss, bold */
    expect_in(md, cell, "report.md");
    snprintf(cell, sizeof cell, "<td class=\"best\">%.4f ± %.4f</td>", mean, sd);
    expect_in(html, cell, "report.html");
    mean_sd(MOE_LOSS, 3, &mean, &sd);
    snprintf(cell, sizeof cell, "| %.4f ± %.4f |", mean, sd); /* not the best: plain */
    expect_in(md, cell, "report.md");
    mean_sd(MOE_PAR, 3, &mean, &sd);
    snprintf(cell, sizeof cell, "**%.3f ± %.3f**", mean, sd);
    expect_in(md, cell, "report.md");
    expect_in(md, "| dense | 3 | 1.05M ± 0 |", "report.md"); /* sizes unmarked */
    expect_in(md, "| – |", "report.md");                      /* moe has no decode speed */
    expect_in(md, "## d=64, 2 layers, 2 heads, context 32, vocab 300", "report.md");
    expect_in(md, "(tables/" SLUG_SWEEP ".csv)", "report.md");
    expect_in(md, "(plots/" SLUG_SWEEP "-val-loss.png)", "report.md");
    expect_in(md, "pkm-s1 skipped", "report.md");
    expect_in(html, "<style>", "report.html");
    expect_in(html, "<img src=\"plots/" SLUG_SWEEP "-blimp-phenomena.svg\"", "report.html");
    expect_in(html, "<td>–</td>", "report.html");
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    free(md), free(html);
    fl_report_free(&r);
}

static void expect_plot(const char *out, const char *stem) {
    char path[FILE_LEN];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/plots/%s.png", out, stem);
    char *png = ts_read_file(path, &len);
    if (!png || len < 8 || memcmp(png, "\x89PNG\r\n\x1a\n", 8)) fail_msg("%s: not a PNG", path);
    free(png);
    snprintf(path, sizeof path, "%s/plots/%s.svg", out, stem);
    char *svg = ts_read_file(path, &len);
    if (!svg || !len || !strstr(svg, "<svg") || !strstr(svg, "</svg>")) fail_msg("%s: not an SVG document", path);
    free(svg);
    snprintf(path, sizeof path, "%s/plots/gnuplot/%s.gp", out, stem); /* the script stays, to redraw */
    assert_int_equal(access(path, R_OK), 0);
}

static void test_plots(void **state) {
    (void)state;
    if (!have_gnuplot()) skip();
    char out[TOP_LEN];
    fl_report r;
    sweep_report(4, &r, out);
    assert_string_equal(r.plots_skipped, "");
    const char *stems[] = {SLUG_SWEEP "-val-loss", SLUG_SWEEP "-val-loss-time", SLUG_SWEEP "-blimp-phenomena",
                           SLUG_SWEEP "-speed-params", SLUG_SWEEP "-moe-load-2"};
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++) expect_plot(out, stems[i]);
    assert_int_equal(r.n_plots, 5); /* no PKM stats: no memory plot; no load plot for dense */
    char *gp = read_text(out, "plots/gnuplot/" SLUG_SWEEP "-val-loss.gp");
    expect_in(gp, "'training tokens'", "val-loss.gp"); /* tokens were logged */
    free(gp);
    fl_report_free(&r);
}

/* Loose run folders: seeds pool, other differences split rows, sizes split
   tables, old runs plot against the step. */
static void test_loose_runs(void **state) {
    (void)state;
    char dirs[6][SUB_LEN], out[TOP_LEN];
    fx_run runs[6] = {old_run("dense", 1, 3.1), old_run("dense", 2, 3.3), old_run("dense", 3, 3.0),
                      old_run("dense", 1, 2.9), old_run("dense", 1, 3.2), old_run("dense", 1, 3.5)};
    runs[2].steps = 60;                   /* another variant of "dense" */
    runs[3].ffn_layers = "1=pkm:knn=8";   /* a mixed stack */
    runs[3].stats = "pkm";
    runs[4].d_model = 32;                 /* another size */
    runs[5].d_model = 32;
    runs[5].seed = 2;
    for (int i = 0; i < 6; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/loose/run%d", g_dir, i);
        write_run(dirs[i], &runs[i]);
    }
    snprintf(out, sizeof out, "%s/report5", g_dir);
    const char *inputs[] = {dirs[0], dirs[1], dirs[2], dirs[3], dirs[4], dirs[5]};
    fl_report_opts o = {.inputs = inputs, .n_inputs = 6, .out_dir = out};
    fl_report r;
    fl_error err = {0};
    ts_assert_ok(fl_report_make(&o, &r, &err), &err);
    assert_int_equal(r.n_tables, 2);
    assert_int_equal(r.tables[0].shape.d_model, 32); /* sorted by size */
    assert_int_equal(r.tables[0].n_rows, 1);
    assert_int_equal(r.tables[0].rows[0].n_runs, 2);
    const fl_report_table *t = &r.tables[1];
    assert_int_equal(t->n_rows, 3);
    assert_string_equal(t->rows[0].label, "dense (steps=30)");
    assert_int_equal(t->rows[0].n_runs, 2);
    assert_string_equal(t->rows[1].label, "dense (steps=60)");
    assert_string_equal(t->rows[2].label, "dense [1=pkm:knn=8]");
    const double pooled[2] = {3.1, 3.3}, median_speed[2] = {2000, 2000};
    expect_cell(t, "dense (steps=30)", "val_loss", pooled, 2);
    expect_cell(t, "dense (steps=30)", "train_tokens_per_s", median_speed, 2); /* no summary: the logged median */
    assert_int_equal(t->rows[0].cells[col(t, "total_params")].n, 0);
    assert_int_equal(t->rows[0].cells[col(t, "blimp_paradigm_mean")].n, 0);
    char *md = read_text(out, "report.md");
    expect_in(md, "| dense (steps=30) | 2 | – | – | – |", "report.md");
    free(md);
    int pkm_plot = 0;
    for (int i = 0; i < r.n_plots; i++) {
        pkm_plot |= r.plots[i].kind == FL_PLOT_PKM_MEMORY;
        if (r.plots[i].kind == FL_PLOT_VAL_LOSS_TOKENS) assert_string_equal(r.plots[i].title, "Validation loss vs step");
    }
    assert_true(pkm_plot);
    if (have_gnuplot()) expect_plot(out, "d64-l2-h2-t32-v300-pkm-memory");
    fl_report_free(&r);
}

/* --compare-study through the CLI: the study's numbers, labelled, beside
   this report's weighted BLiMP. */
static void test_compare_study(void **state) {
    (void)state;
    char base[TOP_LEN], dir[SUB_LEN], out[TOP_LEN], *text = NULL;
    snprintf(base, sizeof base, "%s/study", g_dir);
    /* MoE top-k 1 is told by its stats (top_k 1), the others by their specs */
    const char *ffn[] = {"dense", "dense", "moe:experts=4,top_k=2", "cnt:d_ff=4032,block=126", "pkm:knn=28",
                         "moe:experts=4"};
    double weighted[2];
    char list[4096] = "";
    for (int i = 0; i < 6; i++) {
        fx_run x = sweep_run(0, i % 3);
        x.ffn = ffn[i], x.seed = i + 1, x.stats = i == 5 ? "moe" : NULL;
        snprintf(dir, sizeof dir, "%s/run%d", base, i);
        write_run(dir, &x);
        /* the study shape */
        FILE *f = create(dir, "train_config.json");
        fprintf(f, "{\"vocab_size\": 1000, \"context\": 512, \"d_model\": 256, \"n_layers\": 2, \"n_heads\": 4, "
                   "\"ffn\": \"%s\", \"ffn_layers\": \"\", \"seed\": %d}\n", ffn[i], i + 1);
        fclose(f);
        strncat(list, " ", sizeof list - strlen(list) - 1);
        strncat(list, dir, sizeof list - strlen(list) - 1);
        if (i < 2) {
            double sum = 0, n = 0;
            for (int p = 0; p < 3; p++) sum += x.phen[p] * PHEN_N[p], n += PHEN_N[p];
            for (int p = 0; p < 2; p++) sum += x.sup[p] * SUP_N[p], n += SUP_N[p];
            weighted[i] = sum / n;
        }
    }
    snprintf(out, sizeof out, "%s/report6", g_dir);
    int rc = ffnlab(&text, NULL, "report%s --out %s --compare-study", list, out);
    if (rc) fail_msg("report failed: %s", text);
    char first_line[FILE_LEN];
    snprintf(first_line, sizeof first_line, "%s/report.md\n", out);
    assert_true(!strncmp(text, first_line, strlen(first_line))); /* stdout: the report's path first */
    expect_in(text, "d=256, 2 layers, 4 heads, context 512, vocab 1000: 5 variants, 6 runs", "stdout");
    free(text);
    char *md = read_text(out, "report.md");
    expect_in(md, "## Comparison with the published study", "report.md");
    expect_in(md, "12 BLiMP phenomena + 5 supplement tasks", "report.md");
    expect_in(md, "weighted by example count", "report.md");
    expect_in(md, "mixes accuracy, F1 and MCC", "report.md");
    const char *published[] = {"| dense | 0.589 |", "0.503", "1.568", "| CNT N=16 | 0.544 |", "| CNT N=32 | 0.589 |",
                               "| CNT N=64 | 0.538 |", "| MoE top-k 1 | 0.531 |", "| MoE top-k 2 | 0.552 |",
                               "| MoE top-k 3 | 0.567 |", "| PKM knn 14 | 0.570 |", "| PKM knn 28 | 0.584 |",
                               "| PKM knn 42 | 0.552 |"};
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++) expect_in(md, published[i], "report.md");
    double mean, sd;
    mean_sd(weighted, 2, &mean, &sd);
    char line[256];
    snprintf(line, sizeof line, "| dense | 0.589 | dense | 2 | %.3f ± %.3f | 3 phenomena + 2 supplement |", mean, sd);
    expect_in(md, line, "report.md");
    expect_in(md, "| MoE top-k 2 | 0.552 | moe:experts=4,top\\_k=2 | 1 |", "report.md");
    expect_in(md, "| CNT N=32 | 0.589 | cnt:d\\_ff=4032,block=126 | 1 |", "report.md"); /* 4032 / 126 = 32 blocks */
    expect_in(md, "| PKM knn 28 | 0.584 | pkm:knn=28 | 1 |", "report.md");
    expect_in(md, "| MoE top-k 1 | 0.531 | moe:experts=4 | 1 |", "report.md");
    expect_in(md, "| MoE top-k 3 | 0.567 | no run |", "report.md");
    free(md);
}

static void expect_one_error(int rc, const char *text, const char *a, const char *b) {
    if (rc != 1 || !strstr(text, "ffnlab: error: ") || !strstr(text, a) || (b && !strstr(text, b)) ||
        strchr(text, '\n') != text + strlen(text) - 1)
        fail_msg("want one error line naming \"%s\", got rc %d: %s", a, rc, text);
}

static void test_bad_inputs(void **state) {
    (void)state;
    char dir[TOP_LEN], bad[SUB_LEN], *text = NULL;
    snprintf(dir, sizeof dir, "%s/bad", g_dir);
    mkdirs(dir);

    int rc = ffnlab(&text, NULL, "report %s/nope --out %s/out", dir, dir);
    expect_one_error(rc, text, "/bad/nope: no such folder", NULL);
    free(text);
    expect_no_report(dir, "out");

    fx_run x = sweep_run(0, 0);
    snprintf(bad, sizeof bad, "%s/malformed", dir);
    write_run(bad, &x);
    FILE *f = create(bad, "metrics.jsonl");
    fputs("{\"step\": 10, \"val_loss\": 3.0}\n{\"step\": 20, \"loss\": }\n", f);
    fclose(f);
    rc = ffnlab(&text, NULL, "report %s --out %s/out", bad, dir);
    expect_one_error(rc, text, "malformed/metrics.jsonl:2: not a JSON object", NULL);
    free(text);
    expect_no_report(dir, "out");

    f = create(bad, "metrics.jsonl");
    fputs("{\"step\": 10, \"val_loss\": \"low\"}\n", f);
    fclose(f);
    rc = ffnlab(&text, NULL, "report %s --out %s/out", bad, dir);
    expect_one_error(rc, text, "metrics.jsonl:1: \"val_loss\" is not a number", NULL);
    free(text);

    char sweep[SUB_LEN];
    snprintf(sweep, sizeof sweep, "%s/sweep", dir);
    write_sweep(sweep);
    char cmd[CMD_LEN];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/moe-s2'", sweep);
    assert_int_equal(system(cmd), 0);
    rc = ffnlab(&text, NULL, "report %s --out %s/out", sweep, dir);
    expect_one_error(rc, text, "sweep.json: cell moe-s2 is done but its folder", "missing");
    free(text);
    expect_no_report(dir, "out");

    rc = ffnlab(&text, NULL, "report %s --out %s/out", dir, dir); /* neither run nor sweep */
    expect_one_error(rc, text, "neither a run folder", NULL);
    free(text);
    expect_no_report(dir, "out");
}

/* A gnuplot that fails is an error (no report); none at all is a report
   without plots that says so. */
static void test_gnuplot_missing_or_failing(void **state) {
    (void)state;
    char sweep[TOP_LEN], *text = NULL;
    snprintf(sweep, sizeof sweep, "%s/sweep7", g_dir);
    write_sweep(sweep);
    int rc = ffnlab(&text, "FFNLAB_GNUPLOT=/bin/false", "report %s --out %s/report7", sweep, g_dir);
    expect_one_error(rc, text, "gnuplot (/bin/false) failed on plots/gnuplot/", NULL);
    free(text);
    expect_no_report(g_dir, "report7");

    rc = ffnlab(&text, "FFNLAB_GNUPLOT=/nonexistent/gnuplot", "report %s --out %s/report7", sweep, g_dir);
    assert_int_equal(rc, 0);
    expect_in(text, "plots skipped: gnuplot not found", "stderr");
    free(text);
    char out[SUB_LEN];
    snprintf(out, sizeof out, "%s/report7", g_dir);
    char *md = read_text(out, "report.md"), *html = read_text(out, "report.html"), *csv = read_text(out, "tables/" SLUG_SWEEP ".csv");
    expect_in(md, "plots skipped: gnuplot not found", "report.md");
    expect_in(html, "plots skipped: gnuplot not found", "report.html");
    assert_null(strstr(md, "](plots/"));
    assert_null(strstr(html, "<img"));
    free(md), free(html), free(csv);
}

static void test_output_folder(void **state) {
    (void)state;
    char sweep[TOP_LEN], out[TOP_LEN], path[FILE_LEN], *text = NULL;
    snprintf(sweep, sizeof sweep, "%s/sweep8", g_dir);
    write_sweep(sweep);
    snprintf(out, sizeof out, "%s/mine", g_dir);
    mkdirs(out);
    snprintf(path, sizeof path, "%s/notes.txt", out);
    assert_int_equal(ts_write_file(path, "keep me", 7), 0);
    int rc = ffnlab(&text, NULL, "report %s --out %s", sweep, out);
    expect_one_error(rc, text, "is not an ffnlab report", NULL);
    free(text);
    char *kept = ts_read_file(path, NULL);
    assert_string_equal(kept, "keep me");
    free(kept);

    snprintf(out, sizeof out, "%s/again", g_dir); /* an earlier report is replaced */
    rc = ffnlab(&text, NULL, "report %s --out %s", sweep, out);
    assert_int_equal(rc, 0);
    free(text);
    snprintf(path, sizeof path, "%s/stale.txt", out);
    assert_int_equal(ts_write_file(path, "old", 3), 0);
    rc = ffnlab(&text, NULL, "report %s --out %s/", sweep, out);
    if (rc) fail_msg("second report: %s", text);
    free(text);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/report.md", out);
    assert_int_equal(access(path, R_OK), 0);
    expect_no_report(g_dir, "no-such-name"); /* and nothing left beside it */
}

/* A run folder as ffnlab writes it: train, eval blimp, report. */
static void test_real_run_folder(void **state) {
    (void)state;
    char run[TOP_LEN], out[TOP_LEN], *text = NULL;
    snprintf(run, sizeof run, "%s/real", g_dir);
    snprintf(out, sizeof out, "%s/report9", g_dir);
    int rc = ffnlab(&text, NULL,
                    "train --corpus-bytes 200000 --vocab-size 320 --d-model 32 --n-layers 1 --n-heads 2 --context 48 "
                    "--batch-size 8 --steps 20 --warmup-steps 2 --eval-every 10 --eval-batches 2 --log-every 5 "
                    "--no-progress --device cpu --run-dir %s && '%s' eval --run %s --device cpu --task blimp",
                    run, ts_ffnlab_bin(), run);
    if (rc) fail_msg("train/eval failed: %s", text);
    free(text);
    const char *inputs[] = {run};
    fl_report_opts o = {.inputs = inputs, .n_inputs = 1, .out_dir = out};
    fl_report r;
    fl_error err = {0};
    ts_assert_ok(fl_report_make(&o, &r, &err), &err);
    const fl_report_table *t = &r.tables[0];
    assert_string_equal(t->title, "d=32, 1 layer, 2 heads, context 48, vocab 320");
    assert_string_equal(t->rows[0].label, "dense");
    /* the last validation line and eval.json's number, as written */
    char *metrics = read_text(run, "metrics.jsonl"), *eval = read_text(run, "eval.json");
    const char *last = NULL;
    for (const char *p = metrics; (p = strstr(p, "\"val_loss\":")); p++) last = p;
    assert_non_null(last);
    assert_true(fabs(t->rows[0].cells[col(t, "val_loss")].mean - strtod(last + 11, NULL)) < 1e-12);
    const char *par = strstr(eval, "\"accuracy_paradigm_mean\"");
    assert_non_null(par);
    const char *value = strstr(par, "\"value\":");
    assert_true(fabs(t->rows[0].cells[col(t, "blimp_paradigm_mean")].mean - strtod(value + 8, NULL)) < 1e-12);
    free(metrics), free(eval);
    fl_report_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_table_values),
        cmocka_unit_test(test_csv_round_trip),
        cmocka_unit_test(test_markdown_and_html),
        cmocka_unit_test(test_plots),
        cmocka_unit_test(test_loose_runs),
        cmocka_unit_test(test_compare_study),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_gnuplot_missing_or_failing),
        cmocka_unit_test(test_output_folder),
        cmocka_unit_test(test_real_run_folder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
