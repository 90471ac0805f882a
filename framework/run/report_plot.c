/*
 * run/report_plot.c — the report's plots: which ones the data allows, and
 * drawing them with gnuplot (see report.h).
 *
 * Each plot is a data file and a script in OUT/plots/gnuplot/ (kept, so a
 * reader can restyle a plot: `cd plots/gnuplot && gnuplot NAME.gp`), and
 * gnuplot, run as a child process in that folder, writes ../NAME.png
 * (pngcairo) and ../NAME.svg. Curves of a variant's seeds are averaged step
 * by step and drawn bold; with several seeds each seed is drawn faintly
 * behind the mean.
 */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"

/* A color per variant (or expert), cycled; gnuplot's #AARRGGBB takes AA as
   transparency, so FAINT_ALPHA draws the same color faded. */
static const char *const COLORS[] = {"1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd",
                                     "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf"};
#define N_COLORS (int)(sizeof COLORS / sizeof COLORS[0])
#define FAINT_ALPHA "b0"

/* ------------------------------------------------------------ the plan */

static fl_status push_plot(fl_report *r, fl_report_plot_kind kind, int t, int row, const char *suffix,
                           const char *title, fl_error *err) {
    fl_report_plot *p = realloc(r->plots, (size_t)(r->n_plots + 1) * sizeof *p);
    if (!p) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    r->plots = p;
    p = &p[r->n_plots++];
    memset(p, 0, sizeof *p);
    p->kind = kind, p->table = t, p->row = row;
    snprintf(p->stem, sizeof p->stem, "%s-%s", r->tables[t].slug, suffix);
    snprintf(p->title, sizeof p->title, "%s", title);
    return FL_OK;
}

static const fl_report_run *run_of(const fl_report *r, const fl_report_row *row, int i) {
    return &r->runs[row->runs[i]];
}

/* The curve of one run's plugin stat at a layer; NULL when it has none. */
static const fl_report_curve *find_stat(const fl_report_run *run, const char *layer, const char *stat) {
    for (int i = 0; i < run->n_stats; i++)
        if (!strcmp(run->stats[i].layer, layer) && !strcmp(run->stats[i].stat, stat)) return &run->stats[i];
    return NULL;
}

static int is_load_stat(const char *stat) { return !strncmp(stat, "load.", 5); }
static int is_memory_stat(const char *stat) { return !strcmp(stat, "memory_usage"); }

static int row_has_stat(const fl_report *r, const fl_report_row *row, int (*want)(const char *)) {
    for (int i = 0; i < row->n_runs; i++)
        for (int s = 0; s < run_of(r, row, i)->n_stats; s++)
            if (want(run_of(r, row, i)->stats[s].stat)) return 1;
    return 0;
}

/* What the table's validation curves allow: 1 when every point has tokens
   (else the x axis is the step), and likewise for wall time. */
static void val_axes(const fl_report *r, const fl_report_table *tb, int *any, int *all_tokens, int *all_time) {
    *any = 0, *all_tokens = 1, *all_time = 1;
    for (int k = 0; k < tb->n_rows; k++)
        for (int i = 0; i < tb->rows[k].n_runs; i++) {
            const fl_report_curve *c = &run_of(r, &tb->rows[k], i)->val;
            *any |= c->n > 0;
            for (int j = 0; j < c->n; j++) *all_tokens &= !isnan(c->tokens[j]), *all_time &= !isnan(c->time_s[j]);
        }
}

static int table_has_phenomena(const fl_report *r, const fl_report_table *tb) {
    for (int k = 0; k < tb->n_rows; k++)
        for (int i = 0; i < tb->rows[k].n_runs; i++)
            if (run_of(r, &tb->rows[k], i)->blimp_phenomena.n) return 1;
    return 0;
}

static int col_of(const fl_report_table *tb, int rv) {
    for (int c = 0; c < tb->n_cols; c++)
        if (tb->cols[c].rv == rv) return c;
    return -1;
}

static int table_has_speed_and_size(const fl_report_table *tb) {
    int cp = col_of(tb, FL_RV_TOTAL_PARAMS), cs = col_of(tb, FL_RV_TRAIN_TOKENS_PER_S);
    for (int k = 0; k < tb->n_rows; k++)
        if (tb->rows[k].cells[cp].n && tb->rows[k].cells[cs].n) return 1;
    return 0;
}

static fl_status plan_table(fl_report *r, int t, fl_error *err) {
    const fl_report_table *tb = &r->tables[t];
    char title[FL_REPORT_LABEL + 64];
    int any_val, all_tokens, all_time, any_memory = 0;
    val_axes(r, tb, &any_val, &all_tokens, &all_time);
    fl_status st = FL_OK;
    if (any_val)
        st = push_plot(r, FL_PLOT_VAL_LOSS_TOKENS, t, -1, "val-loss",
                       all_tokens ? "Validation loss vs training tokens" : "Validation loss vs step", err);
    if (!st && any_val && all_time)
        st = push_plot(r, FL_PLOT_VAL_LOSS_TIME, t, -1, "val-loss-time", "Validation loss vs wall time", err);
    if (!st && table_has_phenomena(r, tb))
        st = push_plot(r, FL_PLOT_BLIMP_PHENOMENA, t, -1, "blimp-phenomena", "BLiMP accuracy by phenomenon", err);
    if (!st && table_has_speed_and_size(tb))
        st = push_plot(r, FL_PLOT_SPEED_PARAMS, t, -1, "speed-params", "Training tokens/s vs total parameters", err);
    for (int k = 0; !st && k < tb->n_rows; k++) {
        any_memory |= row_has_stat(r, &tb->rows[k], is_memory_stat);
        if (!row_has_stat(r, &tb->rows[k], is_load_stat)) continue;
        char suffix[32];
        snprintf(suffix, sizeof suffix, "moe-load-%d", k + 1);
        snprintf(title, sizeof title, "MoE expert load over training: %s", tb->rows[k].label);
        st = push_plot(r, FL_PLOT_MOE_LOAD, t, k, suffix, title, err);
    }
    if (!st && any_memory)
        st = push_plot(r, FL_PLOT_PKM_MEMORY, t, -1, "pkm-memory", "PKM memory usage over training", err);
    return st;
}

fl_status fl_report_plan_plots(fl_report *r, fl_error *err) {
    fl_status st = FL_OK;
    for (int t = 0; !st && t < r->n_tables; t++) st = plan_table(r, t, err);
    return st;
}

/* ------------------------------------------------------------ curves */

typedef struct point {
    double step, tokens, time_s, value;
    int order; /* position in its curve: a later line wins */
} point;

static int point_cmp(const void *a, const void *b) {
    const point *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* The curves' mean at every step any of them logged (a curve that logged a
   step twice, as a resumed run does for the steps after its checkpoint,
   counts its last line). tokens and time_s are NAN where a curve lacks them. */
static fl_status mean_curve(const fl_report_curve *const *curves, int n, fl_report_curve *out, fl_error *err) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)curves[i]->n;
    point *all = malloc((total ? total : 1) * sizeof *all), *p = all;
    if (!all) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    for (int i = 0; i < n; i++) {
        point *first = p;
        for (int j = 0; j < curves[i]->n; j++)
            *p++ = (point){curves[i]->step[j], curves[i]->tokens[j], curves[i]->time_s[j], curves[i]->value[j], j};
        qsort(first, (size_t)(p - first), sizeof *first, point_cmp);
        point *keep = first; /* the last point of each step */
        for (point *q = first; q < p; q++) {
            if (q + 1 < p && q[1].step == q->step) continue;
            *keep++ = *q;
        }
        p = keep;
    }
    size_t m = (size_t)(p - all);
    qsort(all, m, sizeof *all, point_cmp);
    fl_status st = FL_OK;
    for (size_t a = 0, b; !st && a < m; a = b) {
        double tokens = 0, time_s = 0, value = 0;
        for (b = a; b < m && all[b].step == all[a].step; b++)
            tokens += all[b].tokens, time_s += all[b].time_s, value += all[b].value;
        double k = (double)(b - a);
        st = fl_report_curve_push(out, all[a].step, tokens / k, time_s / k, value / k, err);
    }
    free(all);
    return st;
}

static void put_number(FILE *f, double v) {
    if (isnan(v)) fputs("NaN", f);
    else fprintf(f, "%.10g", v);
}

/* One data block: "step tokens time_s value" lines, then two blank lines
   (gnuplot's `index` separator). */
static void write_block(FILE *f, const fl_report_curve *c) {
    for (int j = 0; j < c->n; j++) {
        const double v[4] = {c->step[j], c->tokens[j], c->time_s[j], c->value[j]};
        for (int i = 0; i < 4; i++) put_number(f, v[i]), fputc(i < 3 ? ' ' : '\n', f);
    }
    fputs("\n\n", f);
}

/* A string for a gnuplot script: single quotes, '' for a quote inside. */
static void put_gp_string(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* A label inside a data file: double quotes, which it cannot escape. */
static void put_data_label(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) fputc(*s == '"' ? '\'' : *s, f);
    fputc('"', f);
}

/* ------------------------------------------------------------ scripts */

/* One line of a line plot: the mean of `curves`, drawn faintly one by one
   too when faint. */
typedef struct series {
    const fl_report_curve **curves; /* one per run of the row that has the curve */
    int n, row, color, dash, faint;
    char title[FL_REPORT_LABEL + FL_REPORT_NAME + 2]; /* "<variant> <layer>" */
} series;

static void series_free(series *s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i].curves);
    free(s);
}

static void script_head(FILE *gp, const fl_report_plot *p, const char *xlabel, const char *ylabel) {
    fputs("set terminal pngcairo size 960,600 noenhanced font 'sans,10'\nset output '../", gp);
    fprintf(gp, "%s.png'\nset title ", p->stem);
    put_gp_string(gp, p->title);
    fputs("\nset xlabel ", gp);
    put_gp_string(gp, xlabel);
    fputs("\nset ylabel ", gp);
    put_gp_string(gp, ylabel);
    fputs("\nset grid\nset key outside right top\n", gp);
}

/* The same plot again as SVG. */
static void script_tail(FILE *gp, const fl_report_plot *p) {
    fprintf(gp, "set terminal svg size 960,600 noenhanced font 'sans,10' background rgb 'white'\n"
                "set output '../%s.svg'\nreplot\nunset output\n", p->stem);
}

/* Blocks: per series (faint) each curve, then its mean on top. */
static fl_status line_plot(FILE *dat, FILE *gp, const fl_report_plot *p, const series *s, int n_series,
                           int x_column, fl_error *err) {
    fputs("plot ", gp);
    int block = 0;
    for (int i = 0; i < n_series; i++) {
        const char *color = COLORS[s[i].color % N_COLORS];
        for (int j = 0; s[i].faint && j < s[i].n; j++) {
            write_block(dat, s[i].curves[j]);
            fprintf(gp, "%s'%s.dat' index %d using %d:4 with lines lw 1 lc rgb '#" FAINT_ALPHA "%s' notitle",
                    block ? ", \\\n     " : "", p->stem, block, x_column, color);
            block++;
        }
        fl_report_curve mean = {0};
        fl_status st = mean_curve(s[i].curves, s[i].n, &mean, err);
        if (st) return st;
        write_block(dat, &mean);
        fl_report_curve_free(&mean);
        fprintf(gp, "%s'%s.dat' index %d using %d:4 with lines lw 2 dt %d lc rgb '#%s' title ",
                block ? ", \\\n     " : "", p->stem, block, x_column, s[i].dash, color);
        block++;
        put_gp_string(gp, s[i].title);
    }
    fputc('\n', gp);
    return FL_OK;
}

static fl_status plot_val_loss(const fl_report *r, const fl_report_plot *p, FILE *dat, FILE *gp, fl_error *err) {
    const fl_report_table *tb = &r->tables[p->table];
    int any, all_tokens, all_time;
    val_axes(r, tb, &any, &all_tokens, &all_time);
    const int by_time = p->kind == FL_PLOT_VAL_LOSS_TIME;
    series *s = calloc((size_t)tb->n_rows, sizeof *s);
    for (int k = 0; s && k < tb->n_rows; k++)
        if (!(s[k].curves = calloc((size_t)tb->rows[k].n_runs, sizeof *s[k].curves))) series_free(s, k), s = NULL;
    if (!s) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    for (int k = 0; k < tb->n_rows; k++) {
        for (int i = 0; i < tb->rows[k].n_runs; i++) s[k].curves[s[k].n++] = &run_of(r, &tb->rows[k], i)->val;
        s[k].color = k, s[k].dash = 1, s[k].faint = s[k].n > 1;
        snprintf(s[k].title, sizeof s[k].title, "%s", tb->rows[k].label);
    }
    script_head(gp, p, by_time ? "wall time (s)" : all_tokens ? "training tokens" : "step", "validation loss (nats/token)");
    if (!by_time && all_tokens) fputs("set format x '%.1s%c'\n", gp);
    fl_status st = line_plot(dat, gp, p, s, tb->n_rows, by_time ? 3 : all_tokens ? 2 : 1, err);
    series_free(s, tb->n_rows);
    return st;
}

/* The number at the end of a name ("h.1" -> 1, "load.3" -> 3); 0 if none. */
static int trailing_number(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? atoi(dot + 1) : 0;
}

static int find_series(const series *s, int n, int row, const fl_report_curve *c) {
    for (int j = 0; j < n; j++)
        if (s[j].row == row && !strcmp(s[j].curves[0]->layer, c->layer) && !strcmp(s[j].curves[0]->stat, c->stat))
            return j;
    return -1;
}

/* Lines of plugin stats over steps, averaged over a row's runs: MoE load.<i>
   of one row (a color per expert, a dash per layer), or PKM memory_usage of
   every row (a color per row, a dash per layer). */
static fl_status plot_stats(const fl_report *r, const fl_report_plot *p, FILE *dat, FILE *gp, fl_error *err) {
    const fl_report_table *tb = &r->tables[p->table];
    const int moe = p->kind == FL_PLOT_MOE_LOAD;
    int n = 0, cap = 0;
    series *s = NULL;
    for (int k = moe ? p->row : 0; k < (moe ? p->row + 1 : tb->n_rows); k++) {
        const fl_report_row *row = &tb->rows[k];
        for (int i = 0; i < row->n_runs; i++)
            for (int c = 0; c < run_of(r, row, i)->n_stats; c++) {
                const fl_report_curve *sc = &run_of(r, row, i)->stats[c];
                if (!(moe ? is_load_stat : is_memory_stat)(sc->stat) || find_series(s, n, k, sc) >= 0) continue;
                series *grown = n < cap ? s : realloc(s, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *s);
                const fl_report_curve **curves = calloc((size_t)row->n_runs, sizeof *curves);
                if (!grown || !curves) return free(curves), series_free(grown ? grown : s, n), fl_fail(err, FL_ENOMEM, "report: out of memory");
                s = grown;
                series *x = &s[n++];
                memset(x, 0, sizeof *x);
                x->row = k, x->curves = curves;
                for (int q = 0; q < row->n_runs; q++) {
                    const fl_report_curve *same = find_stat(run_of(r, row, q), sc->layer, sc->stat);
                    if (same) x->curves[x->n++] = same;
                }
                x->color = moe ? trailing_number(sc->stat) : k, x->dash = 1 + trailing_number(sc->layer) % 5;
                snprintf(x->title, sizeof x->title, "%s %s", moe ? sc->layer : row->label, moe ? sc->stat : sc->layer);
            }
    }
    script_head(gp, p, "step", moe ? "share of routed tokens" : "share of memory slots used");
    fl_status st = line_plot(dat, gp, p, s, n, 1, err);
    series_free(s, n);
    return st;
}

/* Clustered bars: a row per phenomenon, a column per variant (its mean
   over seeds; NaN where it has none). */
static fl_status plot_phenomena(const fl_report *r, const fl_report_plot *p, FILE *dat, FILE *gp, fl_error *err) {
    const fl_report_table *tb = &r->tables[p->table];
    fl_report_named names = {0};
    fl_status st = FL_OK;
    for (int k = 0; !st && k < tb->n_rows; k++)
        for (int i = 0; !st && i < tb->rows[k].n_runs; i++) {
            const fl_report_named *ph = &run_of(r, &tb->rows[k], i)->blimp_phenomena;
            for (int j = 0; !st && j < ph->n; j++)
                if (fl_report_named_find(&names, ph->name[j]) < 0) st = fl_report_named_put(&names, ph->name[j], 0, 0, err);
        }
    fputs("phenomenon", dat);
    for (int k = 0; k < tb->n_rows; k++) fputc(' ', dat), put_data_label(dat, tb->rows[k].label);
    fputc('\n', dat);
    for (int j = 0; !st && j < names.n; j++) {
        put_data_label(dat, names.name[j]);
        for (int k = 0; k < tb->n_rows; k++) {
            double sum = 0;
            int n = 0;
            for (int i = 0; i < tb->rows[k].n_runs; i++) {
                const fl_report_named *ph = &run_of(r, &tb->rows[k], i)->blimp_phenomena;
                int at = fl_report_named_find(ph, names.name[j]);
                if (at >= 0) sum += ph->value[at], n++;
            }
            fputc(' ', dat), put_number(dat, n ? sum / n : NAN);
        }
        fputc('\n', dat);
    }
    free(names.name), free(names.value), free(names.count);
    script_head(gp, p, "", "accuracy");
    fputs("set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
          "set yrange [0:1]\nset xtics rotate by -35 scale 0\nset key autotitle columnheader\nplot ", gp);
    for (int k = 0; k < tb->n_rows; k++)
        fprintf(gp, "%s'%s.dat' using %d%s lc rgb '#%s'", k ? ", " : "", p->stem, k + 2, k ? "" : ":xtic(1)",
                COLORS[k % N_COLORS]);
    fputc('\n', gp);
    return st;
}

/* A point per variant: mean training tokens/s (± sd) over mean total
   parameters, labelled with the variant. */
static fl_status plot_speed(const fl_report *r, const fl_report_plot *p, FILE *dat, FILE *gp, fl_error *err) {
    (void)err;
    const fl_report_table *tb = &r->tables[p->table];
    const int cp = col_of(tb, FL_RV_TOTAL_PARAMS), cs = col_of(tb, FL_RV_TRAIN_TOKENS_PER_S);
    for (int k = 0; k < tb->n_rows; k++) {
        const fl_report_cell *x = &tb->rows[k].cells[cp], *y = &tb->rows[k].cells[cs];
        if (!x->n || !y->n) continue;
        put_number(dat, x->mean), fputc(' ', dat), put_number(dat, y->mean), fputc(' ', dat);
        put_number(dat, y->n > 1 ? y->sd : 0), fputc(' ', dat), put_data_label(dat, tb->rows[k].label), fputc('\n', dat);
    }
    script_head(gp, p, "total parameters", "training tokens/s");
    fprintf(gp, "set format x '%%.2s%%c'\nset offsets graph 0.1, graph 0.4, graph 0.15, graph 0.1\nset key off\n"
                "plot '%s.dat' using 1:2:3 with yerrorbars pt 7 ps 1.2 lc rgb '#%s', \\\n"
                "     '%s.dat' using 1:2:4 with labels left offset char 1,0.6\n", p->stem, COLORS[0], p->stem);
    return FL_OK;
}

/* ------------------------------------------------------------ running gnuplot */

/* prog itself when it names a path, else the first PATH entry that has it. */
static int find_program(const char *prog, char *out, size_t n) {
    if (strchr(prog, '/')) return snprintf(out, n, "%s", prog), access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        size_t k = strcspn(p, ":");
        snprintf(out, n, "%.*s/%s", (int)k, p, prog);
        if (k && access(out, X_OK) == 0) return 1;
        p += k + (p[k] == ':');
    }
    return 0;
}

/* The first line of gnuplot's log that names an error (else its first line). */
static void gnuplot_complaint(const char *log_path, char *out, size_t n) {
    char *text = NULL;
    size_t len = 0;
    fl_error ignored = {0};
    snprintf(out, n, "no message");
    if (fl_read_file(log_path, &text, &len, &ignored)) return;
    const char *line = strstr(text, "rror") ? strstr(text, "rror") : text;
    while (line > text && line[-1] != '\n') line--;
    if (strcspn(line, "\n")) snprintf(out, n, "%.*s", (int)strcspn(line, "\n"), line);
    free(text);
}

static fl_status run_gnuplot(const char *prog, const char *gp_dir, const char *stem, fl_error *err) {
    char script[300], log_path[FL_PATH_MAX + 300];
    snprintf(script, sizeof script, "%s.gp", stem);
    snprintf(log_path, sizeof log_path, "%s/%s.log", gp_dir, stem);
    pid_t pid = fork();
    if (pid < 0) return fl_fail(err, FL_EIO, "cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) { /* the child: in the script's folder, output to the log */
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || chdir(gp_dir) != 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(126);
        execl(prog, prog, script, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char why[400];
        gnuplot_complaint(log_path, why, sizeof why);
        return fl_fail(err, FL_EIO, "gnuplot (%s) failed on plots/gnuplot/%s (exit %d): %s", prog, script,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1, why);
    }
    unlink(log_path);
    return FL_OK;
}

static fl_status check_output(const char *plots_dir, const char *stem, const char *ext, fl_error *err) {
    char path[FL_PATH_MAX + 300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s.%s", plots_dir, stem, ext);
    if (stat(path, &st) != 0 || st.st_size == 0)
        return fl_fail(err, FL_EIO, "gnuplot wrote no plots/%s.%s", stem, ext);
    return FL_OK;
}

/* The data file and the script of one plot. */
static fl_status write_plot_files(const fl_report *r, const fl_report_plot *p, const char *gp_dir, fl_error *err) {
    char path[FL_PATH_MAX + 300];
    fl_atomic_file dat, gp;
    snprintf(path, sizeof path, "%s/%s.dat", gp_dir, p->stem);
    fl_status st = fl_atomic_open(&dat, path, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/%s.gp", gp_dir, p->stem);
    if ((st = fl_atomic_open(&gp, path, err))) return fl_atomic_abort(&dat), st;
    fprintf(gp.f, "# %s — drawn by ffnlab report; run `gnuplot %s.gp` in this folder to redraw\n", p->title, p->stem);
    switch (p->kind) {
    case FL_PLOT_VAL_LOSS_TOKENS:
    case FL_PLOT_VAL_LOSS_TIME: st = plot_val_loss(r, p, dat.f, gp.f, err); break;
    case FL_PLOT_BLIMP_PHENOMENA: st = plot_phenomena(r, p, dat.f, gp.f, err); break;
    case FL_PLOT_SPEED_PARAMS: st = plot_speed(r, p, dat.f, gp.f, err); break;
    case FL_PLOT_MOE_LOAD:
    case FL_PLOT_PKM_MEMORY: st = plot_stats(r, p, dat.f, gp.f, err); break;
    }
    if (!st) script_tail(gp.f, p);
    if (!st) st = fl_atomic_commit(&dat, err);
    else fl_atomic_abort(&dat);
    if (!st) st = fl_atomic_commit(&gp, err);
    else fl_atomic_abort(&gp);
    return st;
}

fl_status fl_report_draw(fl_report *r, const char *dir, const char *gnuplot, fl_error *err) {
    if (!r->n_plots) return FL_OK;
    const char *prog = gnuplot ? gnuplot : getenv("FFNLAB_GNUPLOT") ? getenv("FFNLAB_GNUPLOT") : "gnuplot";
    char found[FL_PATH_MAX + 300], plots_dir[FL_PATH_MAX + 16], gp_dir[FL_PATH_MAX + 32];
    if (!find_program(prog, found, sizeof found)) {
        snprintf(r->plots_skipped, sizeof r->plots_skipped, "gnuplot not found");
        return FL_OK;
    }
    snprintf(plots_dir, sizeof plots_dir, "%s/plots", dir);
    snprintf(gp_dir, sizeof gp_dir, "%s/plots/gnuplot", dir);
    fl_status st = fl_mkdirs(gp_dir, err);
    for (int i = 0; !st && i < r->n_plots; i++) {
        st = write_plot_files(r, &r->plots[i], gp_dir, err);
        if (!st) st = run_gnuplot(found, gp_dir, r->plots[i].stem, err);
        if (!st) st = check_output(plots_dir, r->plots[i].stem, "png", err);
        if (!st) st = check_output(plots_dir, r->plots[i].stem, "svg", err);
    }
    return st;
}
