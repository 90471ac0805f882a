/*
 * run/report_write.c — the report's files: report.md, report.html and
 * tables/<slug>.csv (see report.h).
 *
 * The document is written once (write_document) through an emitter per
 * format, so Markdown and HTML say the same thing; a table goes through a
 * grid of formatted cells, whose best cells Markdown makes bold and HTML
 * marks with class "best". HTML embeds the SVG plots by relative path, has
 * a small inline stylesheet, no script and nothing from the network.
 */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fsutil.h"

#define MISSING "–"
#define CELL_LEN 96

/* ------------------------------------------------------------ cells as text */

/* 1234567 -> "1.23M": three significant digits and an SI suffix. */
static void format_count(double v, char *out, size_t n) {
    static const char *const SUFFIX[] = {"", "K", "M", "G", "T"};
    int s = 0;
    double a = fabs(v);
    while (a >= 999.5 && s < 4) a /= 1000, v /= 1000, s++;
    if (s == 0) snprintf(out, n, "%.0f", v);
    else snprintf(out, n, "%.3g%s", v, SUFFIX[s]);
}

static void format_value(fl_report_kind kind, double v, char *out, size_t n) {
    switch (kind) {
    case FL_KIND_COUNT: format_count(v, out, n); break;
    case FL_KIND_LOSS: snprintf(out, n, "%.4f", v); break;
    case FL_KIND_SCORE: snprintf(out, n, "%.3f", v); break;
    case FL_KIND_SPEED:
    case FL_KIND_MIB: snprintf(out, n, "%.0f", v); break;
    }
}

/* "mean ± sd", the value alone for one run, "–" for none. */
static void format_cell(fl_report_kind kind, const fl_report_cell *c, char *out, size_t n) {
    char mean[CELL_LEN / 3], sd[CELL_LEN / 3];
    if (!c->n) {
        snprintf(out, n, MISSING);
        return;
    }
    format_value(kind, c->mean, mean, sizeof mean);
    if (c->n < 2) {
        snprintf(out, n, "%s", mean);
        return;
    }
    format_value(kind, c->sd, sd, sizeof sd);
    snprintf(out, n, "%s ± %s", mean, sd);
}

/* A table as text: n_rows + 1 lines (the header first) of n_cols cells. */
#define GRID_CELL (CELL_LEN + FL_REPORT_LABEL) /* a variant label or a formatted number */
typedef struct grid {
    int n_cols, n_rows;
    char (*text)[GRID_CELL]; /* [(n_rows + 1) * n_cols] */
    int *best;                               /* [(n_rows + 1) * n_cols] */
} grid;

static fl_status grid_init(grid *g, int n_cols, int n_rows, fl_error *err) {
    g->n_cols = n_cols, g->n_rows = n_rows;
    g->text = calloc((size_t)(n_rows + 1) * (size_t)n_cols, sizeof *g->text);
    g->best = calloc((size_t)(n_rows + 1) * (size_t)n_cols, sizeof *g->best);
    if (g->text && g->best) return FL_OK;
    free(g->text), free(g->best);
    return fl_fail(err, FL_ENOMEM, "report: out of memory");
}

static void grid_free(grid *g) { free(g->text), free(g->best); }

static char *grid_at(grid *g, int line, int col) { return g->text[line * g->n_cols + col]; }

static fl_status table_grid(const fl_report_table *t, grid *g, fl_error *err) {
    fl_status st = grid_init(g, t->n_cols + 2, t->n_rows, err);
    if (st) return st;
    snprintf(grid_at(g, 0, 0), GRID_CELL, "variant");
    snprintf(grid_at(g, 0, 1), GRID_CELL, "seeds");
    for (int c = 0; c < t->n_cols; c++) snprintf(grid_at(g, 0, c + 2), GRID_CELL, "%s", t->cols[c].title);
    for (int k = 0; k < t->n_rows; k++) {
        snprintf(grid_at(g, k + 1, 0), GRID_CELL, "%s", t->rows[k].label);
        snprintf(grid_at(g, k + 1, 1), GRID_CELL, "%d", t->rows[k].n_runs);
        for (int c = 0; c < t->n_cols; c++) {
            format_cell(t->cols[c].kind, &t->rows[k].cells[c], grid_at(g, k + 1, c + 2), GRID_CELL);
            g->best[(k + 1) * g->n_cols + c + 2] = t->rows[k].cells[c].best;
        }
    }
    return FL_OK;
}

/* ------------------------------------------------------------ emitters */

typedef struct emitter {
    void (*begin)(FILE *f);
    void (*end)(FILE *f);
    void (*heading)(FILE *f, int level, const char *text);
    void (*para)(FILE *f, const char *text);
    void (*item)(FILE *f, const char *text, int first, int last); /* a bullet list, item by item */
    void (*link)(FILE *f, const char *before, const char *href);  /* "before href" with href a link */
    void (*table)(FILE *f, grid *g);
    void (*figure)(FILE *f, const char *title, const char *stem);
} emitter;

/* Markdown: characters that would format are escaped. */
static void md_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (strchr("\\|*_`<>[]#", *s)) fputc('\\', f);
        fputc(*s, f);
    }
}

static void md_begin(FILE *f) { (void)f; }
static void md_end(FILE *f) { (void)f; }

static void md_heading(FILE *f, int level, const char *text) {
    for (int i = 0; i < level; i++) fputc('#', f);
    fputc(' ', f), md_text(f, text), fputs("\n\n", f);
}

static void md_para(FILE *f, const char *text) { md_text(f, text), fputs("\n\n", f); }

static void md_item(FILE *f, const char *text, int first, int last) {
    (void)first;
    fputs("- ", f), md_text(f, text), fputs(last ? "\n\n" : "\n", f);
}

static void md_link(FILE *f, const char *before, const char *href) {
    md_text(f, before), fprintf(f, " [%s](%s)\n\n", href, href);
}

static void md_table(FILE *f, grid *g) {
    for (int line = 0; line <= g->n_rows; line++) {
        for (int c = 0; c < g->n_cols; c++) {
            const int bold = g->best[line * g->n_cols + c];
            fputs("| ", f), fputs(bold ? "**" : "", f), md_text(f, grid_at(g, line, c)), fputs(bold ? "** " : " ", f);
        }
        fputs("|\n", f);
        for (int c = 0; line == 0 && c < g->n_cols; c++) fputs(c ? "|---:" : "|---", f);
        if (line == 0) fputs("|\n", f);
    }
    fputc('\n', f);
}

static void md_figure(FILE *f, const char *title, const char *stem) {
    fputs("![", f), md_text(f, title), fprintf(f, "](plots/%s.png)\n\n", stem);
    md_text(f, title), fprintf(f, ": [PNG](plots/%s.png), [SVG](plots/%s.svg)\n\n", stem, stem);
}

static const emitter MARKDOWN = {md_begin, md_end, md_heading, md_para, md_item, md_link, md_table, md_figure};

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void html_begin(FILE *f) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ffnlab report</title>\n"
          "<style>\n"
          "body { font-family: sans-serif; max-width: 80em; margin: 2em auto; padding: 0 1em; color: #222; }\n"
          "table { border-collapse: collapse; margin: 1em 0; font-size: 90%; }\n"
          "th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }\n"
          "th:first-child, td:first-child { text-align: left; }\n"
          "th { background: #f3f3f3; }\n"
          "td.best { font-weight: bold; background: #e3f2e6; }\n"
          "figure { margin: 1.5em 0; }\n"
          "img { max-width: 100%; height: auto; border: 1px solid #eee; }\n"
          "</style>\n</head>\n<body>\n", f);
}

static void html_end(FILE *f) { fputs("</body>\n</html>\n", f); }

static void html_heading(FILE *f, int level, const char *text) {
    fprintf(f, "<h%d>", level), html_text(f, text), fprintf(f, "</h%d>\n", level);
}

static void html_para(FILE *f, const char *text) { fputs("<p>", f), html_text(f, text), fputs("</p>\n", f); }

static void html_item(FILE *f, const char *text, int first, int last) {
    fputs(first ? "<ul>\n<li>" : "<li>", f), html_text(f, text), fputs(last ? "</li>\n</ul>\n" : "</li>\n", f);
}

static void html_link(FILE *f, const char *before, const char *href) {
    fputs("<p>", f), html_text(f, before), fputs(" <a href=\"", f), html_text(f, href), fputs("\">", f);
    html_text(f, href), fputs("</a></p>\n", f);
}

static void html_table(FILE *f, grid *g) {
    fputs("<table>\n", f);
    for (int line = 0; line <= g->n_rows; line++) {
        fputs("<tr>", f);
        for (int c = 0; c < g->n_cols; c++) {
            const char *tag = line ? "td" : "th";
            fprintf(f, "<%s%s>", tag, g->best[line * g->n_cols + c] ? " class=\"best\"" : "");
            html_text(f, grid_at(g, line, c)), fprintf(f, "</%s>", tag);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void html_figure(FILE *f, const char *title, const char *stem) {
    fprintf(f, "<figure><img src=\"plots/%s.svg\" alt=\"", stem), html_text(f, title);
    fputs("\"><figcaption>", f), html_text(f, title);
    fprintf(f, " (<a href=\"plots/%s.png\">PNG</a>, <a href=\"plots/%s.svg\">SVG</a>)</figcaption></figure>\n", stem,
            stem);
}

static const emitter HTML = {html_begin, html_end, html_heading, html_para, html_item, html_link, html_table,
                             html_figure};

/* ------------------------------------------------------------ the document */

static const char *const LEGEND =
    "Every number is the mean ± sample standard deviation over a variant's seeds (the value alone for one seed); "
    "– marks a value the runs do not have. The best value of each quality and speed column is in bold: lowest "
    "validation loss, highest accuracy or score, highest tokens/s (sizes and memory are not marked). val loss: "
    "final validation loss (nats/token). BLiMP paradigms / phenomena: mean accuracy over BLiMP's paradigms / over "
    "its phenomena; BLiMP <field>: accuracy over a field's pairs; BLiMP supplement: mean over the BabyLM "
    "supplement tasks. (Super)GLUE columns: each task's score on its validation split (MCC for CoLA, F1 for MRPC "
    "and QQP, accuracy otherwise) and their mean. tok/s: training, inference (forward) and decode tokens per "
    "second. peak RSS / GPU: the run's peak resident and device memory.";

static void write_inputs(FILE *f, const emitter *e, const fl_report *r) {
    char line[FL_PATH_MAX + 128];
    snprintf(line, sizeof line, "Made by ffnlab %s from %d run%s in:", FFNLAB_VERSION, r->n_runs,
             r->n_runs == 1 ? "" : "s");
    e->para(f, line);
    for (int i = 0; i < r->n_inputs; i++) e->item(f, r->inputs[i], i == 0, i == r->n_inputs - 1);
}

static void write_runs(FILE *f, const emitter *e, const fl_report *r, const fl_report_table *t) {
    for (int k = 0; k < t->n_rows; k++) {
        char line[4096];
        size_t n = (size_t)snprintf(line, sizeof line, "%s:", t->rows[k].label);
        for (int i = 0; i < t->rows[k].n_runs && n < sizeof line; i++) {
            const fl_report_run *run = &r->runs[t->rows[k].runs[i]];
            n += (size_t)snprintf(line + n, sizeof line - n, "%s %s%s%s%s", i ? "," : "", run->dir,
                                  run->seed[0] ? " (seed " : "", run->seed, run->seed[0] ? ")" : "");
        }
        e->item(f, line, k == 0, k == t->n_rows - 1);
    }
}

static fl_status write_table_section(FILE *f, const emitter *e, const fl_report *r, int t, fl_error *err) {
    const fl_report_table *tb = &r->tables[t];
    char href[160];
    grid g;
    e->heading(f, 2, tb->title);
    fl_status st = table_grid(tb, &g, err);
    if (st) return st;
    e->table(f, &g);
    grid_free(&g);
    snprintf(href, sizeof href, "tables/%s.csv", tb->slug);
    e->link(f, "As CSV (mean and sd columns, full precision):", href);
    e->para(f, "Runs:");
    write_runs(f, e, r, tb);
    for (int i = 0; i < r->n_plots && !r->plots_skipped[0]; i++)
        if (r->plots[i].table == t) e->figure(f, r->plots[i].title, r->plots[i].stem);
    return FL_OK;
}

static void study_number(double v, char *out, size_t n) {
    if (isnan(v)) snprintf(out, n, MISSING);
    else snprintf(out, n, "%.3f", v);
}

static fl_status write_study(FILE *f, const emitter *e, const fl_report *r, fl_error *err) {
    static const char *const HEAD[] = {"study configuration", "study BLiMP", "this report's variant", "seeds",
                                       "BLiMP (weighted)", "BLiMP computed over", "study (Super)GLUE", "(Super)GLUE",
                                       "study eval loss", "val loss"};
    const int n_cols = (int)(sizeof HEAD / sizeof HEAD[0]);
    char text[1024];
    e->heading(f, 2, "Comparison with the published study");
    snprintf(text, sizeof text,
             "Published numbers of the study ffnlab reproduces, at its model shape (d_model %d, %d layers, %d heads, "
             "context %d), beside this report's runs of that shape. The study's BLiMP is over the 17 BabyLM 2023 "
             "filtered tasks (12 BLiMP phenomena + 5 supplement tasks), weighted by example count; its (Super)GLUE "
             "average mixes accuracy, F1 and MCC.",
             FL_REPORT_STUDY_SHAPE.d_model, FL_REPORT_STUDY_SHAPE.n_layers, FL_REPORT_STUDY_SHAPE.n_heads,
             FL_REPORT_STUDY_SHAPE.context);
    e->para(f, text);
    e->para(f, "This report's figures are computed the same way where the data allows: BLiMP (weighted) is each "
               "phenomenon's and each supplement task's accuracy weighted by its number of pairs (the n of eval.json), "
               "over the phenomena and supplement tasks the runs were evaluated on (the column after it says how many; "
               "12 + 5 with BabyLM 2023's blimp_filtered and supplement_filtered); (Super)GLUE is the mean of each task's "
               "score (MCC for CoLA, F1 for MRPC and QQP, accuracy otherwise); the loss is the final validation loss. "
               "Variants are matched by plugin and by the value that tells the study's configurations apart (CNT's "
               "number of blocks N = d_ff / block, MoE's top_k, PKM's knn), from the layers' stats or else the spec.");
    grid g;
    fl_status st = grid_init(&g, n_cols, r->n_study, err);
    if (st) return st;
    for (int c = 0; c < n_cols; c++) snprintf(grid_at(&g, 0, c), GRID_CELL, "%s", HEAD[c]);
    for (int i = 0; i < r->n_study; i++) {
        const fl_report_study_line *s = &r->study[i];
        const int line = i + 1;
        snprintf(grid_at(&g, line, 0), GRID_CELL, "%s", s->ref->label);
        study_number(s->ref->blimp, grid_at(&g, line, 1), GRID_CELL);
        study_number(s->ref->glue, grid_at(&g, line, 6), GRID_CELL);
        study_number(s->ref->eval_loss, grid_at(&g, line, 8), GRID_CELL);
        if (s->table < 0) {
            snprintf(grid_at(&g, line, 2), GRID_CELL, "no run");
            for (int c = 3; c < n_cols; c++)
                if (c != 6 && c != 8) snprintf(grid_at(&g, line, c), GRID_CELL, MISSING);
            continue;
        }
        const fl_report_row *row = &r->tables[s->table].rows[s->row];
        snprintf(grid_at(&g, line, 2), GRID_CELL, "%s", row->label);
        snprintf(grid_at(&g, line, 3), GRID_CELL, "%d", row->n_runs);
        format_cell(FL_KIND_SCORE, &s->blimp, grid_at(&g, line, 4), GRID_CELL);
        if (s->blimp.n) snprintf(grid_at(&g, line, 5), GRID_CELL, "%d phenomena + %d supplement", s->n_phenomena,
                                 s->n_supplement);
        else snprintf(grid_at(&g, line, 5), GRID_CELL, MISSING);
        format_cell(FL_KIND_SCORE, &s->glue, grid_at(&g, line, 7), GRID_CELL);
        format_cell(FL_KIND_LOSS, &s->loss, grid_at(&g, line, 9), GRID_CELL);
    }
    e->table(f, &g);
    grid_free(&g);
    return FL_OK;
}

static fl_status write_document(FILE *f, const emitter *e, const fl_report *r, fl_error *err) {
    e->begin(f);
    e->heading(f, 1, "ffnlab report");
    write_inputs(f, e, r);
    e->para(f, LEGEND);
    if (r->plots_skipped[0]) {
        char line[300];
        snprintf(line, sizeof line, "plots skipped: %s", r->plots_skipped);
        e->para(f, line);
    }
    if (r->n_notes) {
        e->heading(f, 2, "Notes");
        for (int i = 0; i < r->n_notes; i++) e->item(f, r->notes[i], i == 0, i == r->n_notes - 1);
    }
    fl_status st = FL_OK;
    for (int t = 0; !st && t < r->n_tables; t++) st = write_table_section(f, e, r, t, err);
    if (!st && r->compare_study) st = write_study(f, e, r, err);
    e->end(f);
    return st;
}

/* ------------------------------------------------------------ CSV */

static void csv_text(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* variant, seeds, then <id> and <id>_sd per column: numbers in full
   (round-trip) precision, empty where there is none. */
static void write_csv(FILE *f, const fl_report_table *t) {
    fputs("variant,seeds", f);
    for (int c = 0; c < t->n_cols; c++) fputc(',', f), csv_text(f, t->cols[c].id), fputc(',', f), csv_text(f, t->cols[c].id), fputs("_sd", f);
    fputc('\n', f);
    for (int k = 0; k < t->n_rows; k++) {
        csv_text(f, t->rows[k].label);
        fprintf(f, ",%d", t->rows[k].n_runs);
        for (int c = 0; c < t->n_cols; c++) {
            const fl_report_cell *x = &t->rows[k].cells[c];
            fputc(',', f);
            if (x->n) fprintf(f, "%.17g", x->mean);
            fputc(',', f);
            if (x->n > 1) fprintf(f, "%.17g", x->sd);
        }
        fputc('\n', f);
    }
}

/* ------------------------------------------------------------ files */

static fl_status write_doc_file(const char *path, const emitter *e, const fl_report *r, fl_error *err) {
    fl_atomic_file af;
    fl_status st = fl_atomic_open(&af, path, err);
    if (st) return st;
    st = write_document(af.f, e, r, err);
    if (st) {
        fl_atomic_abort(&af);
        return st;
    }
    return fl_atomic_commit(&af, err);
}

fl_status fl_report_write(const fl_report *r, const char *dir, fl_error *err) {
    char path[FL_PATH_MAX + 160];
    snprintf(path, sizeof path, "%s/tables", dir);
    fl_status st = fl_mkdirs(path, err);
    for (int t = 0; !st && t < r->n_tables; t++) {
        fl_atomic_file af;
        snprintf(path, sizeof path, "%s/tables/%s.csv", dir, r->tables[t].slug);
        st = fl_atomic_open(&af, path, err);
        if (!st) write_csv(af.f, &r->tables[t]), st = fl_atomic_commit(&af, err);
    }
    snprintf(path, sizeof path, "%s/report.md", dir);
    if (!st) st = write_doc_file(path, &MARKDOWN, r, err);
    snprintf(path, sizeof path, "%s/report.html", dir);
    if (!st) st = write_doc_file(path, &HTML, r, err);
    snprintf(path, sizeof path, "%s/" FL_REPORT_MARKER, dir);
    if (!st) st = fl_write_file_atomic(path, "ffnlab report " FFNLAB_VERSION "\n", strlen("ffnlab report " FFNLAB_VERSION "\n"), err);
    return st;
}
