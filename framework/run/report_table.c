/*
 * run/report_table.c — the report's tables: runs grouped by model shape,
 * pooled into variant rows, one cell (mean ± sample sd over the row's runs)
 * per column, the best cell of each quality and speed column marked; and the
 * comparison with the published study (see report.h).
 */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Config keys that say where and how a run was logged, not what was
   trained: runs that differ only in these (and the seed) are one variant. */
static const char *const REPORT_IGNORED_KEYS[] = {"seed", "run_dir", "threads", "eval_tasks", "log_every",
                                                   "ckpt_every"};

/* The study ffnlab reproduces: BLiMP over the 17 BabyLM 2023 filtered tasks
   weighted by example count, (Super)GLUE averaged over accuracy, F1 and MCC,
   eval loss (nats/token), at d_model 256, 2 layers, 4 heads, context 512.
   CNT's N is its number of blocks (d_ff / block). */
static const fl_report_study_ref STUDY[] = {
    {"dense", "dense", NULL, 0, 0.589, 0.503, 1.568},
    {"CNT N=16", "cnt", "blocks", 16, 0.544, NAN, NAN},
    {"CNT N=32", "cnt", "blocks", 32, 0.589, NAN, NAN},
    {"CNT N=64", "cnt", "blocks", 64, 0.538, NAN, NAN},
    {"MoE top-k 1", "moe", "top_k", 1, 0.531, NAN, NAN},
    {"MoE top-k 2", "moe", "top_k", 2, 0.552, NAN, NAN},
    {"MoE top-k 3", "moe", "top_k", 3, 0.567, NAN, NAN},
    {"PKM knn 14", "pkm", "knn", 14, 0.570, NAN, NAN},
    {"PKM knn 28", "pkm", "knn", 28, 0.584, NAN, NAN},
    {"PKM knn 42", "pkm", "knn", 42, 0.552, NAN, NAN},
};
#define N_STUDY (int)(sizeof STUDY / sizeof STUDY[0])

/* The study's published numbers are its decoder's (its encoder learned to copy,
   see configs/seed-encoder.json), so only a decoder table matches. */
const fl_report_shape FL_REPORT_STUDY_SHAPE = {.d_model = 256, .n_layers = 2, .n_heads = 4, .context = 512,
                                               .encoder = 0};

/* ------------------------------------------------------------ grouping */

static int ignored_key(const char *key) {
    for (size_t i = 0; i < sizeof REPORT_IGNORED_KEYS / sizeof REPORT_IGNORED_KEYS[0]; i++)
        if (!strcmp(key, REPORT_IGNORED_KEYS[i])) return 1;
    return 0;
}

/* 1 when a and b differ at key (absent on one side counts). */
static int differs_at(const cJSON *a, const cJSON *b, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, key), *y = cJSON_GetObjectItemCaseSensitive(b, key);
    return !x || !y || !cJSON_Compare(x, y, 1);
}

static int same_variant_config(const cJSON *a, const cJSON *b) {
    const cJSON *e;
    cJSON_ArrayForEach(e, a) if (!ignored_key(e->string) && differs_at(a, b, e->string)) return 0;
    cJSON_ArrayForEach(e, b) if (!ignored_key(e->string) && differs_at(a, b, e->string)) return 0;
    return 1;
}

static int shape_cmp(const fl_report_shape *a, const fl_report_shape *b) {
    const int x[] = {a->d_model, a->n_layers, a->n_heads, a->context, a->vocab_size, a->encoder};
    const int y[] = {b->d_model, b->n_layers, b->n_heads, b->context, b->vocab_size, b->encoder};
    for (int i = 0; i < 6; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

static int table_cmp(const void *a, const void *b) {
    return shape_cmp(&((const fl_report_table *)a)->shape, &((const fl_report_table *)b)->shape);
}

static fl_status add_tables(fl_report *r, fl_error *err) {
    for (int i = 0; i < r->n_runs; i++) {
        int t = 0;
        while (t < r->n_tables && shape_cmp(&r->tables[t].shape, &r->runs[i].shape)) t++;
        if (t < r->n_tables) continue;
        fl_report_table *tables = realloc(r->tables, (size_t)(r->n_tables + 1) * sizeof *tables);
        if (!tables) return fl_fail(err, FL_ENOMEM, "report: out of memory");
        r->tables = tables;
        fl_report_table *tb = &tables[r->n_tables++];
        memset(tb, 0, sizeof *tb);
        tb->shape = r->runs[i].shape;
    }
    qsort(r->tables, (size_t)r->n_tables, sizeof *r->tables, table_cmp);
    for (int t = 0; t < r->n_tables; t++) {
        const fl_report_shape *s = &r->tables[t].shape;
        snprintf(r->tables[t].title, sizeof r->tables[t].title, "%sd=%d, %d layer%s, %d head%s, context %d, vocab %d",
                 s->encoder ? "encoder (arch bert), " : "", s->d_model, s->n_layers, s->n_layers == 1 ? "" : "s",
                 s->n_heads, s->n_heads == 1 ? "" : "s", s->context, s->vocab_size);
        snprintf(r->tables[t].slug, sizeof r->tables[t].slug, "d%d-l%d-h%d-t%d-v%d%s", s->d_model, s->n_layers,
                 s->n_heads, s->context, s->vocab_size, s->encoder ? "-bert" : "");
    }
    return FL_OK;
}

static fl_status add_run_to_rows(fl_report *r, fl_report_table *tb, int run, fl_error *err) {
    const fl_report_run *x = &r->runs[run];
    int k = 0;
    for (; k < tb->n_rows; k++) {
        const fl_report_run *y = &r->runs[tb->rows[k].runs[0]];
        if (!strcmp(x->label, y->label) && same_variant_config(x->config, y->config)) break;
    }
    if (k == tb->n_rows) {
        fl_report_row *rows = realloc(tb->rows, (size_t)(tb->n_rows + 1) * sizeof *rows);
        if (!rows) return fl_fail(err, FL_ENOMEM, "report: out of memory");
        tb->rows = rows;
        memset(&rows[k], 0, sizeof rows[k]);
        snprintf(rows[k].label, sizeof rows[k].label, "%s", x->label);
        tb->n_rows++;
    }
    fl_report_row *row = &tb->rows[k];
    int *runs = realloc(row->runs, (size_t)(row->n_runs + 1) * sizeof *runs);
    if (!runs) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    row->runs = runs;
    runs[row->n_runs++] = run;
    return FL_OK;
}

/* Rows that share a label but not their config get the keys they differ in:
   "dense (steps=2000)". */
static void disambiguate(const fl_report *r, fl_report_table *tb) {
    for (int a = 0; a < tb->n_rows; a++) {
        const cJSON *ca = r->runs[tb->rows[a].runs[0]].config, *e;
        const char *label = r->runs[tb->rows[a].runs[0]].label;
        char extra[FL_REPORT_LABEL] = "";
        size_t k = 0;
        cJSON_ArrayForEach(e, ca) {
            if (ignored_key(e->string)) continue;
            int differs = 0;
            for (int b = 0; b < tb->n_rows && !differs; b++)
                differs = b != a && !strcmp(r->runs[tb->rows[b].runs[0]].label, label) &&
                          differs_at(ca, r->runs[tb->rows[b].runs[0]].config, e->string);
            if (!differs || k >= sizeof extra) continue;
            char *v = cJSON_IsString(e) ? NULL : cJSON_PrintUnformatted(e);
            k += (size_t)snprintf(extra + k, sizeof extra - k, "%s%s=%s", k ? ", " : "", e->string,
                                  v ? v : cJSON_IsString(e) ? e->valuestring : "?");
            free(v);
        }
        if (extra[0]) { /* cut to fit: a label is display text */
            size_t n = strlen(label) < sizeof tb->rows[a].label - 4 ? strlen(label) : sizeof tb->rows[a].label - 4;
            snprintf(tb->rows[a].label, sizeof tb->rows[a].label, "%.*s (%.*s)", (int)n, label,
                     (int)(sizeof tb->rows[a].label - n - 4), extra);
        }
    }
}

/* ------------------------------------------------------------ columns */

typedef struct fixed_col {
    const char *id, *title;
    fl_report_kind kind;
    int rv;
    int always; /* shown even when no run has it (then every cell is "–") */
} fixed_col;

static const fixed_col HEAD_COLS[] = {
    {"total_params", "total params", FL_KIND_COUNT, FL_RV_TOTAL_PARAMS, 1},
    {"active_params_per_token", "active params/token", FL_KIND_COUNT, FL_RV_ACTIVE_PARAMS, 1},
    {"flops_per_token", "FLOPs/token", FL_KIND_COUNT, FL_RV_FLOPS_PER_TOKEN, 1},
    {"val_loss", "val loss", FL_KIND_LOSS, FL_RV_VAL_LOSS, 1},
    {"blimp_paradigm_mean", "BLiMP paradigms", FL_KIND_SCORE, FL_RV_BLIMP_PARADIGM, 1},
    {"blimp_phenomenon_mean", "BLiMP phenomena", FL_KIND_SCORE, FL_RV_BLIMP_PHENOMENON, 1},
};
static const fixed_col SUPPLEMENT_COL = {"blimp_supplement_mean", "BLiMP supplement", FL_KIND_SCORE,
                                         FL_RV_BLIMP_SUPPLEMENT, 0};
static const fixed_col GLUE_AVERAGE_COL = {"glue_average", "(Super)GLUE avg", FL_KIND_SCORE, FL_RV_GLUE_AVERAGE, 0};
static const fixed_col TAIL_COLS[] = {
    {"train_tokens_per_s", "train tok/s", FL_KIND_SPEED, FL_RV_TRAIN_TOKENS_PER_S, 1},
    {"inference_tokens_per_s", "inference tok/s", FL_KIND_SPEED, FL_RV_INFER_TOKENS_PER_S, 1},
    {"decode_tokens_per_s", "decode tok/s", FL_KIND_SPEED, FL_RV_DECODE_TOKENS_PER_S, 1},
    {"peak_rss_mib", "peak RSS MiB", FL_KIND_MIB, FL_RV_PEAK_RSS_MIB, 1},
    {"peak_device_mib", "peak GPU MiB", FL_KIND_MIB, FL_RV_PEAK_DEVICE_MIB, 0},
};

double fl_report_run_value(const fl_report_run *run, const fl_report_col *col) {
    if (col->rv >= 0) return run->v[col->rv];
    const fl_report_named *l = col->list == FL_LIST_BLIMP_FIELDS ? &run->blimp_fields : &run->glue_tasks;
    int i = fl_report_named_find(l, col->item);
    return i < 0 ? NAN : l->value[i];
}

static fl_status push_col(fl_report_table *tb, const fl_report_col *c, fl_error *err) {
    fl_report_col *cols = realloc(tb->cols, (size_t)(tb->n_cols + 1) * sizeof *cols);
    if (!cols) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    tb->cols = cols;
    cols[tb->n_cols++] = *c;
    return FL_OK;
}

static int table_has(const fl_report *r, const fl_report_table *tb, const fl_report_col *c) {
    for (int k = 0; k < tb->n_rows; k++)
        for (int i = 0; i < tb->rows[k].n_runs; i++)
            if (!isnan(fl_report_run_value(&r->runs[tb->rows[k].runs[i]], c))) return 1;
    return 0;
}

static fl_status add_fixed(const fl_report *r, fl_report_table *tb, const fixed_col *f, fl_error *err) {
    fl_report_col c = {.kind = f->kind, .rv = f->rv};
    snprintf(c.id, sizeof c.id, "%s", f->id);
    /* an encoder's loss is on masked tokens only: say so where it is read */
    const int mlm = tb->shape.encoder && f->rv == FL_RV_VAL_LOSS;
    snprintf(c.title, sizeof c.title, "%s%s", f->title, mlm ? " (masked LM)" : "");
    return f->always || table_has(r, tb, &c) ? push_col(tb, &c, err) : FL_OK;
}

/* One column per name in a list, in the order the table's runs name them. */
static fl_status add_listed(const fl_report *r, fl_report_table *tb, int list, fl_error *err) {
    const int first = tb->n_cols;
    for (int k = 0; k < tb->n_rows; k++)
        for (int i = 0; i < tb->rows[k].n_runs; i++) {
            const fl_report_run *run = &r->runs[tb->rows[k].runs[i]];
            const fl_report_named *l = list == FL_LIST_BLIMP_FIELDS ? &run->blimp_fields : &run->glue_tasks;
            for (int j = 0; j < l->n; j++) {
                int seen = 0;
                for (int c = first; c < tb->n_cols && !seen; c++) seen = !strcmp(tb->cols[c].item, l->name[j]);
                if (seen) continue;
                fl_report_col c = {.kind = FL_KIND_SCORE, .rv = -1, .list = list};
                snprintf(c.item, sizeof c.item, "%s", l->name[j]);
                snprintf(c.id, sizeof c.id, "%s_%s", list == FL_LIST_BLIMP_FIELDS ? "blimp_field" : "glue",
                         l->name[j]);
                snprintf(c.title, sizeof c.title, "%s%s", list == FL_LIST_BLIMP_FIELDS ? "BLiMP " : "", l->name[j]);
                fl_status st = push_col(tb, &c, err);
                if (st) return st;
            }
        }
    return FL_OK;
}

static fl_status add_columns(const fl_report *r, fl_report_table *tb, fl_error *err) {
    fl_status st = FL_OK;
    for (size_t i = 0; !st && i < sizeof HEAD_COLS / sizeof HEAD_COLS[0]; i++) st = add_fixed(r, tb, &HEAD_COLS[i], err);
    if (!st) st = add_listed(r, tb, FL_LIST_BLIMP_FIELDS, err);
    if (!st) st = add_fixed(r, tb, &SUPPLEMENT_COL, err);
    if (!st) st = add_listed(r, tb, FL_LIST_GLUE_TASKS, err);
    if (!st) st = add_fixed(r, tb, &GLUE_AVERAGE_COL, err);
    for (size_t i = 0; !st && i < sizeof TAIL_COLS / sizeof TAIL_COLS[0]; i++) st = add_fixed(r, tb, &TAIL_COLS[i], err);
    return st;
}

/* ------------------------------------------------------------ cells */

static fl_report_cell cell_of(const fl_report *r, const fl_report_row *row, const fl_report_col *col) {
    fl_report_cell c = {.mean = NAN, .sd = NAN};
    double sum = 0;
    for (int i = 0; i < row->n_runs; i++) {
        double v = fl_report_run_value(&r->runs[row->runs[i]], col);
        if (!isnan(v)) sum += v, c.n++;
    }
    if (!c.n) return c;
    c.mean = sum / c.n;
    if (c.n < 2) return c;
    double ss = 0;
    for (int i = 0; i < row->n_runs; i++) {
        double v = fl_report_run_value(&r->runs[row->runs[i]], col);
        if (!isnan(v)) ss += (v - c.mean) * (v - c.mean);
    }
    c.sd = sqrt(ss / (c.n - 1));
    return c;
}

/* Lowest loss, highest score and speed; marked only where two or more rows
   have the value (a lone row is not "best"). Ties are all marked. */
static void mark_best(fl_report_table *tb, int c) {
    const fl_report_kind kind = tb->cols[c].kind;
    if (kind != FL_KIND_LOSS && kind != FL_KIND_SCORE && kind != FL_KIND_SPEED) return;
    int with_value = 0;
    double best = NAN;
    for (int k = 0; k < tb->n_rows; k++) {
        const fl_report_cell *x = &tb->rows[k].cells[c];
        if (!x->n) continue;
        with_value++;
        if (isnan(best) || (kind == FL_KIND_LOSS ? x->mean < best : x->mean > best)) best = x->mean;
    }
    for (int k = 0; k < tb->n_rows && with_value > 1; k++)
        tb->rows[k].cells[c].best = tb->rows[k].cells[c].n && tb->rows[k].cells[c].mean == best;
}

static fl_status fill_cells(const fl_report *r, fl_report_table *tb, fl_error *err) {
    for (int k = 0; k < tb->n_rows; k++) {
        tb->rows[k].cells = calloc((size_t)tb->n_cols, sizeof *tb->rows[k].cells);
        if (!tb->rows[k].cells) return fl_fail(err, FL_ENOMEM, "report: out of memory");
        for (int c = 0; c < tb->n_cols; c++) tb->rows[k].cells[c] = cell_of(r, &tb->rows[k], &tb->cols[c]);
    }
    for (int c = 0; c < tb->n_cols; c++) mark_best(tb, c);
    return FL_OK;
}

/* ------------------------------------------------------------ the study */

/* 1 (and *v) when the FFN spec "name:k=v,k=v" sets key to an integer. */
static int spec_option(const char *spec, const char *key, long *v) {
    const char *p = strchr(spec, ':');
    size_t klen = strlen(key);
    while (p && *p) {
        p++;
        if (!strncmp(p, key, klen) && p[klen] == '=') {
            char *end;
            *v = strtol(p + klen + 1, &end, 10);
            return *end == ',' || *end == 0;
        }
        p = strchr(p, ',');
    }
    return 0;
}

/* The value that tells the study's configurations of a plugin apart: what
   the layer reported in its stats, else what the spec says explicitly (a
   default is not guessed: the plugins own their defaults). */
static int study_param(const fl_report_run *run, const char *spec, const char *param, long *v) {
    int i = fl_report_named_find(&run->last_stats, param);
    if (i >= 0) {
        *v = lround(run->last_stats.value[i]);
        return 1;
    }
    if (strcmp(param, "blocks")) return spec_option(spec, param, v);
    long d_ff, block; /* CNT: N = d_ff / block */
    if (!spec_option(spec, "d_ff", &d_ff) || !spec_option(spec, "block", &block) || block <= 0 || d_ff % block)
        return 0;
    *v = d_ff / block;
    return 1;
}

static int has_layer_overrides(const cJSON *layers) {
    return (cJSON_IsString(layers) && layers->valuestring[0]) || (cJSON_IsArray(layers) && cJSON_GetArraySize(layers));
}

static int matches_study(const fl_report_run *run, const fl_report_study_ref *ref) {
    const cJSON *ffn = cJSON_GetObjectItemCaseSensitive(run->config, "ffn");
    if (!cJSON_IsString(ffn) || has_layer_overrides(cJSON_GetObjectItemCaseSensitive(run->config, "ffn_layers")))
        return 0;
    const char *spec = ffn->valuestring;
    size_t k = strcspn(spec, ":");
    if (strlen(ref->plugin) != k || strncmp(spec, ref->plugin, k)) return 0;
    long v;
    return !ref->param || (study_param(run, spec, ref->param, &v) && v == ref->param_value);
}

static fl_status push_study_line(fl_report *r, const fl_report_study_line *line, fl_error *err) {
    fl_report_study_line *s = realloc(r->study, (size_t)(r->n_study + 1) * sizeof *s);
    if (!s) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    r->study = s;
    s[r->n_study++] = *line;
    return FL_OK;
}

static fl_report_study_line study_line(const fl_report *r, const fl_report_study_ref *ref, int t, int k) {
    fl_report_study_line line = {.ref = ref, .table = t, .row = k};
    const fl_report_row *row = &r->tables[t].rows[k];
    const fl_report_col blimp = {.rv = FL_RV_BLIMP_STUDY}, glue = {.rv = FL_RV_GLUE_AVERAGE},
                        loss = {.rv = FL_RV_VAL_LOSS};
    line.blimp = cell_of(r, row, &blimp), line.glue = cell_of(r, row, &glue), line.loss = cell_of(r, row, &loss);
    for (int i = 0; i < row->n_runs && !line.n_phenomena && !line.n_supplement; i++) {
        const fl_report_run *run = &r->runs[row->runs[i]];
        for (int j = 0; j < run->blimp_phenomena.n; j++) line.n_phenomena += run->blimp_phenomena.count[j] > 0;
        for (int j = 0; j < run->supplement_tasks.n; j++) line.n_supplement += run->supplement_tasks.count[j] > 0;
    }
    return line;
}

static fl_status compare_study(fl_report *r, fl_error *err) {
    for (int s = 0; s < N_STUDY; s++) {
        int found = 0;
        for (int t = 0; t < r->n_tables; t++) {
            fl_report_shape shape = r->tables[t].shape;
            shape.vocab_size = 0; /* the study's vocabulary is not part of the match; its numbers are its
                                     decoder's, so an encoder table never matches (FL_REPORT_STUDY_SHAPE) */
            if (shape_cmp(&shape, &FL_REPORT_STUDY_SHAPE)) continue;
            for (int k = 0; k < r->tables[t].n_rows; k++) {
                if (!matches_study(&r->runs[r->tables[t].rows[k].runs[0]], &STUDY[s])) continue;
                fl_report_study_line line = study_line(r, &STUDY[s], t, k);
                fl_status st = push_study_line(r, &line, err);
                if (st) return st;
                found = 1;
            }
        }
        fl_report_study_line none = {.ref = &STUDY[s], .table = -1, .row = -1};
        fl_status st = found ? FL_OK : push_study_line(r, &none, err);
        if (st) return st;
    }
    return FL_OK;
}

/* ------------------------------------------------------------ all of it */

fl_status fl_report_tabulate(fl_report *r, fl_error *err) {
    fl_status st = add_tables(r, err);
    for (int t = 0; !st && t < r->n_tables; t++) {
        fl_report_table *tb = &r->tables[t];
        for (int i = 0; !st && i < r->n_runs; i++)
            if (!shape_cmp(&r->runs[i].shape, &tb->shape)) st = add_run_to_rows(r, tb, i, err);
        if (!st) disambiguate(r, tb);
        if (!st) st = add_columns(r, tb, err);
        if (!st) st = fill_cells(r, tb, err);
    }
    if (!st && r->compare_study) st = compare_study(r, err);
    return st;
}

void fl_report_table_summary(const fl_report_table *t, char *buf, size_t n) {
    int runs = 0, loss_col = -1, best = -1;
    for (int k = 0; k < t->n_rows; k++) runs += t->rows[k].n_runs;
    for (int c = 0; c < t->n_cols; c++)
        if (t->cols[c].rv == FL_RV_VAL_LOSS) loss_col = c;
    for (int k = 0; loss_col >= 0 && k < t->n_rows; k++)
        if (t->rows[k].cells[loss_col].n &&
            (best < 0 || t->rows[k].cells[loss_col].mean < t->rows[best].cells[loss_col].mean))
            best = k;
    int w = snprintf(buf, n, "%s: %d variant%s, %d run%s", t->title, t->n_rows, t->n_rows == 1 ? "" : "s", runs,
                     runs == 1 ? "" : "s");
    if (best >= 0 && w >= 0 && (size_t)w < n)
        snprintf(buf + w, n - (size_t)w, "; lowest val loss %.4f (%s)", t->rows[best].cells[loss_col].mean,
                 t->rows[best].label);
}
