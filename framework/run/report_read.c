/*
 * run/report_read.c — the report's inputs: run folders and sweep folders
 * read into fl_report_run values (see report.h).
 *
 * Files and the fields used:
 *   train_config.json  d_model, n_layers, n_heads, context, vocab_size, ffn
 *                      (required), ffn_layers, seed, arch (gpt when absent:
 *                      runs from before encoders); the whole object is kept
 *                      to tell variants apart
 *   metrics.jsonl      lines with "val_loss": step, val_loss, tokens?, time_s?;
 *                      lines with "loss": step, tokens_per_s?, tokens?,
 *                      time_s?, stats? ({layer: {name: number}})
 *   summary.json       model.{total_params, active_params_per_token,
 *                      flops_per_token}, training.{tokens_per_s,
 *                      final_val_loss}, inference.tokens_per_s,
 *                      decode.tokens_per_s, memory.{peak_rss_mib,
 *                      peak_device_mib} — each optional
 *   eval.json          model.n_params, results[] (task, spec, subtask,
 *                      metric, value, n, group, item, split)
 *   sweep.json         cells[] (variant, dir, state, name), plan.variants[]
 *                      (name, sizes) for sizes a cell's files lack
 * A field of the wrong type is an error naming the file (and line) and the
 * key; a missing optional field leaves the value NAN.
 */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "fsutil.h"
#include "json_strict.h"

/* ------------------------------------------------------------ shared helpers */

int fl_report_named_find(const fl_report_named *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->name[i], name)) return i;
    return -1;
}

/* Grows *p (of *cap elements of size elem) to hold need elements. */
static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int cap2 = *cap ? *cap * 2 : 16;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(*p, (size_t)cap2 * elem);
    if (!q) return -1;
    *p = q;
    *cap = cap2;
    return 0;
}

fl_status fl_report_named_put(fl_report_named *l, const char *name, double value, double count, fl_error *err) {
    int i = fl_report_named_find(l, name);
    if (i < 0) {
        int cap = l->cap, cap_v = l->cap, cap_c = l->cap;
        if (grow((void **)&l->name, &cap, l->n + 1, sizeof *l->name) ||
            grow((void **)&l->value, &cap_v, l->n + 1, sizeof *l->value) ||
            grow((void **)&l->count, &cap_c, l->n + 1, sizeof *l->count))
            return fl_fail(err, FL_ENOMEM, "report: out of memory");
        l->cap = cap;
        i = l->n++;
        snprintf(l->name[i], sizeof l->name[i], "%s", name);
    }
    l->value[i] = value;
    l->count[i] = count;
    return FL_OK;
}

fl_status fl_report_curve_push(fl_report_curve *c, double step, double tokens, double time_s, double value,
                               fl_error *err) {
    int cap = c->cap, cap_t = c->cap, cap_s = c->cap, cap_v = c->cap;
    if (grow((void **)&c->step, &cap, c->n + 1, sizeof *c->step) ||
        grow((void **)&c->tokens, &cap_t, c->n + 1, sizeof *c->tokens) ||
        grow((void **)&c->time_s, &cap_s, c->n + 1, sizeof *c->time_s) ||
        grow((void **)&c->value, &cap_v, c->n + 1, sizeof *c->value))
        return fl_fail(err, FL_ENOMEM, "report: out of memory");
    c->cap = cap;
    c->step[c->n] = step, c->tokens[c->n] = tokens, c->time_s[c->n] = time_s, c->value[c->n] = value;
    c->n++;
    return FL_OK;
}

void fl_report_curve_free(fl_report_curve *c) {
    free(c->step), free(c->tokens), free(c->time_s), free(c->value);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------ JSON access */

static fl_status parse_json(const char *path, const char *text, size_t len, cJSON **out, fl_error *err) {
    *out = cJSON_ParseWithLength(text, len);
    fl_status st = *out ? fl_json_strict(text, len, path, 0, 0, err) : FL_OK;
    if (st) {
        cJSON_Delete(*out);
        *out = NULL;
        return st;
    }
    if (cJSON_IsObject(*out)) return FL_OK;
    if (*out) {
        cJSON_Delete(*out);
        *out = NULL;
        return fl_fail(err, FL_EINVAL, "%s: not a JSON object", path);
    }
    const char *at = cJSON_GetErrorPtr();
    long where = at && at >= text && at <= text + len ? (long)(at - text) : 0;
    return fl_fail(err, FL_EINVAL, "%s: not valid JSON (near byte %ld)", path, where);
}

static fl_status read_json(const char *path, cJSON **out, fl_error *err) {
    char *text = NULL;
    size_t len = 0;
    fl_status st = fl_read_file(path, &text, &len, err);
    if (!st) st = parse_json(path, text, len, out, err);
    free(text);
    return st;
}

/* The item at a dotted path ("model.total_params"), NULL when absent. */
static const cJSON *item_at(const cJSON *o, const char *dotted) {
    char key[FL_REPORT_NAME];
    while (o && *dotted) {
        size_t k = strcspn(dotted, ".");
        snprintf(key, sizeof key, "%.*s", (int)k, dotted);
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        dotted += k + (dotted[k] == '.');
    }
    return o;
}

/* An optional number: absent or null leaves *v; another type is an error
   naming where (a file, or FILE:LINE) and the key. */
static fl_status opt_number(const cJSON *o, const char *key, const char *where, double *v, fl_error *err) {
    const cJSON *it = item_at(o, key);
    if (!it || cJSON_IsNull(it)) return FL_OK;
    if (!cJSON_IsNumber(it)) return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not a number", where, key);
    *v = it->valuedouble;
    return FL_OK;
}

/* An optional string (NULL when absent); another type is an error. */
static fl_status opt_string(const cJSON *o, const char *key, const char *where, const char **s, fl_error *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    *s = NULL;
    if (!it || cJSON_IsNull(it)) return FL_OK;
    if (!cJSON_IsString(it)) return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not a string", where, key);
    *s = it->valuestring;
    return FL_OK;
}

static fl_status need_string(const cJSON *o, const char *key, const char *where, const char **s, fl_error *err) {
    fl_status st = opt_string(o, key, where, s, err);
    if (!st && !*s) st = fl_fail(err, FL_EINVAL, "%s: no \"%s\"", where, key);
    return st;
}

static fl_status need_int(const cJSON *o, const char *key, const char *where, int *v, fl_error *err) {
    double d = NAN;
    fl_status st = opt_number(o, key, where, &d, err);
    if (st) return st;
    if (isnan(d)) return fl_fail(err, FL_EINVAL, "%s: no \"%s\"", where, key);
    if (d != floor(d) || d < 1 || d > 1e9)
        return fl_fail(err, FL_EINVAL, "%s: \"%s\" must be a positive integer", where, key);
    *v = (int)d;
    return FL_OK;
}

/* ------------------------------------------------------------ train_config.json */

/* "dense", or "dense [1=pkm:heads=4; 3=moe]" with per-layer overrides (a
   string "L=SPEC;L=SPEC" or an array of them). */
static fl_status variant_label(const cJSON *cfg, const char *path, char *out, size_t n, fl_error *err) {
    const char *ffn;
    fl_status st = need_string(cfg, "ffn", path, &ffn, err);
    if (st) return st;
    size_t k = (size_t)snprintf(out, n, "%s", ffn);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(cfg, "ffn_layers"), *e;
    int first = 1;
    if (cJSON_IsString(layers) && layers->valuestring[0]) {
        k += (size_t)snprintf(out + k, k < n ? n - k : 0, " [%s]", layers->valuestring);
        first = 0;
    }
    if (cJSON_IsArray(layers))
        cJSON_ArrayForEach(e, layers) {
            if (!cJSON_IsString(e)) return fl_fail(err, FL_EINVAL, "%s: \"ffn_layers\" holds a non-string", path);
            k += (size_t)snprintf(out + k, k < n ? n - k : 0, "%s%s", first ? " [" : "; ", e->valuestring);
            first = 0;
        }
    if (cJSON_IsArray(layers) && !first) snprintf(out + k, k < n ? n - k : 0, "]");
    return FL_OK;
}

static fl_status read_config(const char *dir, fl_report_run *run, fl_error *err) {
    char path[FL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/train_config.json", dir);
    fl_status st = read_json(path, &run->config, err);
    fl_report_shape *s = &run->shape;
    if (!st) st = need_int(run->config, "d_model", path, &s->d_model, err);
    if (!st) st = need_int(run->config, "n_layers", path, &s->n_layers, err);
    if (!st) st = need_int(run->config, "n_heads", path, &s->n_heads, err);
    if (!st) st = need_int(run->config, "context", path, &s->context, err);
    if (!st) st = need_int(run->config, "vocab_size", path, &s->vocab_size, err);
    const char *arch = NULL;
    if (!st) st = opt_string(run->config, "arch", path, &arch, err);
    if (!st && arch && strcmp(arch, "gpt") && strcmp(arch, "bert"))
        st = fl_fail(err, FL_EINVAL, "%s: \"arch\" is \"%s\", expected gpt or bert", path, arch);
    s->encoder = arch && !strcmp(arch, "bert");
    if (!st && !run->label[0]) st = variant_label(run->config, path, run->label, sizeof run->label, err);
    if (st) return st;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(run->config, "seed");
    if (cJSON_IsNumber(seed)) snprintf(run->seed, sizeof run->seed, "%.17g", seed->valuedouble);
    if (cJSON_IsString(seed)) snprintf(run->seed, sizeof run->seed, "%s", seed->valuestring);
    return FL_OK;
}

/* ------------------------------------------------------------ metrics.jsonl */

static fl_report_curve *stat_curve(fl_report_run *run, const char *layer, const char *stat, fl_error *err) {
    for (int i = 0; i < run->n_stats; i++)
        if (!strcmp(run->stats[i].layer, layer) && !strcmp(run->stats[i].stat, stat)) return &run->stats[i];
    fl_report_curve *c = realloc(run->stats, (size_t)(run->n_stats + 1) * sizeof *c);
    if (!c) {
        fl_fail(err, FL_ENOMEM, "report: out of memory");
        return NULL;
    }
    run->stats = c;
    c = &run->stats[run->n_stats++];
    memset(c, 0, sizeof *c);
    snprintf(c->layer, sizeof c->layer, "%s", layer);
    snprintf(c->stat, sizeof c->stat, "%s", stat);
    return c;
}

/* A training line's "stats": {layer: {name: number, ...}, ...}. */
static fl_status read_stats(fl_report_run *run, const cJSON *stats, double step, double tokens, double time_s,
                            const char *where, fl_error *err) {
    if (!cJSON_IsObject(stats)) return fl_fail(err, FL_EINVAL, "%s: \"stats\" is not an object", where);
    run->last_stats.n = 0;
    const cJSON *layer, *v;
    cJSON_ArrayForEach(layer, stats) {
        if (!cJSON_IsObject(layer))
            return fl_fail(err, FL_EINVAL, "%s: \"stats\".\"%s\" is not an object", where, layer->string);
        cJSON_ArrayForEach(v, layer) {
            if (!cJSON_IsNumber(v))
                return fl_fail(err, FL_EINVAL, "%s: \"stats\".\"%s\".\"%s\" is not a number", where, layer->string,
                               v->string);
            fl_report_curve *c = stat_curve(run, layer->string, v->string, err);
            fl_status st = c ? fl_report_curve_push(c, step, tokens, time_s, v->valuedouble, err) : FL_ENOMEM;
            if (!st && fl_report_named_find(&run->last_stats, v->string) < 0)
                st = fl_report_named_put(&run->last_stats, v->string, v->valuedouble, 1, err);
            if (st) return st;
        }
    }
    return FL_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One line; a training line's tokens_per_s goes to speeds[*n_speeds]. */
static fl_status read_metrics_line(fl_report_run *run, const cJSON *o, const char *where, double *speeds,
                                   int *n_speeds, fl_error *err) {
    const int is_val = cJSON_HasObjectItem(o, "val_loss"), is_train = cJSON_HasObjectItem(o, "loss");
    if (!is_val && !is_train) return FL_OK; /* another kind of line: not ours to judge */
    double step = NAN, tokens = NAN, time_s = NAN, loss = NAN, speed = NAN;
    fl_status st = opt_number(o, "step", where, &step, err);
    if (!st && isnan(step)) st = fl_fail(err, FL_EINVAL, "%s: no \"step\"", where);
    if (!st) st = opt_number(o, "tokens", where, &tokens, err);
    if (!st) st = opt_number(o, "time_s", where, &time_s, err);
    if (!st) st = opt_number(o, is_val ? "val_loss" : "loss", where, &loss, err);
    if (!st) st = opt_number(o, "tokens_per_s", where, &speed, err);
    if (st) return st;
    if (is_val) return fl_report_curve_push(&run->val, step, tokens, time_s, loss, err);
    if (!isnan(speed)) speeds[(*n_speeds)++] = speed;
    const cJSON *stats = cJSON_GetObjectItemCaseSensitive(o, "stats");
    return stats ? read_stats(run, stats, step, tokens, time_s, where, err) : FL_OK;
}

static fl_status read_metrics(const char *dir, fl_report_run *run, fl_error *err) {
    char path[FL_PATH_MAX + 32], where[FL_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *text = NULL;
    size_t len = 0;
    fl_status st = fl_read_file(path, &text, &len, err);
    if (st) return st;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    double *speeds = malloc(lines * sizeof *speeds);
    int n_speeds = 0;
    if (!speeds) st = fl_fail(err, FL_ENOMEM, "report: out of memory");
    snprintf(run->val.stat, sizeof run->val.stat, "val_loss");
    char *line = text;
    for (size_t no = 1; !st && line < text + len; no++) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = end ? (size_t)(end - line) : (size_t)(text + len - line);
        snprintf(where, sizeof where, "%s:%zu", path, no);
        if (strspn(line, " \t\r") < n) { /* not a blank line */
            cJSON *o = cJSON_ParseWithLength(line, n);
            if (o) st = fl_json_strict(line, n, path, (size_t)(line - text), (int64_t)no, err);
            if (!st && !cJSON_IsObject(o)) st = fl_fail(err, FL_EINVAL, "%s: not a JSON object", where);
            if (!st) st = read_metrics_line(run, o, where, speeds, &n_speeds, err);
            cJSON_Delete(o);
        }
        line += n + 1;
    }
    /* Without summary.json the speed is the median logged rate: the first
       intervals include start-up and validation passes, which a mean would
       take in. */
    if (!st && n_speeds) {
        qsort(speeds, (size_t)n_speeds, sizeof *speeds, cmp_double);
        run->v[FL_RV_TRAIN_TOKENS_PER_S] = n_speeds % 2 ? speeds[n_speeds / 2]
                                                          : 0.5 * (speeds[n_speeds / 2 - 1] + speeds[n_speeds / 2]);
    }
    if (!st && run->val.n) run->v[FL_RV_VAL_LOSS] = run->val.value[run->val.n - 1];
    free(speeds);
    free(text);
    return st;
}

/* ------------------------------------------------------------ summary.json */

static fl_status read_summary(const char *dir, fl_report_run *run, fl_error *err) {
    static const struct { const char *key; int rv; } KEYS[] = {
        {"model.total_params", FL_RV_TOTAL_PARAMS},
        {"model.active_params_per_token", FL_RV_ACTIVE_PARAMS},
        {"model.flops_per_token", FL_RV_FLOPS_PER_TOKEN},
        {"training.final_val_loss", FL_RV_VAL_LOSS},
        {"training.tokens_per_s", FL_RV_TRAIN_TOKENS_PER_S},
        {"inference.tokens_per_s", FL_RV_INFER_TOKENS_PER_S},
        {"decode.tokens_per_s", FL_RV_DECODE_TOKENS_PER_S},
        {"memory.peak_rss_mib", FL_RV_PEAK_RSS_MIB},
        {"memory.peak_device_mib", FL_RV_PEAK_DEVICE_MIB},
    };
    char path[FL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    if (!fl_path_exists(path)) return FL_OK;
    cJSON *doc = NULL;
    fl_status st = read_json(path, &doc, err);
    for (size_t i = 0; !st && i < sizeof KEYS / sizeof KEYS[0]; i++)
        st = opt_number(doc, KEYS[i].key, path, &run->v[KEYS[i].rv], err);
    cJSON_Delete(doc);
    return st;
}

/* ------------------------------------------------------------ eval.json */

/* One results[] entry, its strings ("" when absent). */
typedef struct eval_entry {
    const char *task, *spec, *subtask, *metric, *group, *item, *split;
    double value, n;
} eval_entry;

static fl_status eval_entry_of(const cJSON *e, const char *where, eval_entry *x, fl_error *err) {
    memset(x, 0, sizeof *x);
    x->value = NAN;
    if (!cJSON_IsObject(e)) return fl_fail(err, FL_EINVAL, "%s: not an object", where);
    fl_status st = need_string(e, "task", where, &x->task, err);
    if (!st) st = need_string(e, "metric", where, &x->metric, err);
    if (!st) st = opt_number(e, "value", where, &x->value, err);
    if (!st) st = opt_number(e, "n", where, &x->n, err);
    const char **opt[] = {&x->spec, &x->subtask, &x->group, &x->item, &x->split};
    const char *key[] = {"spec", "subtask", "group", "item", "split"};
    for (int i = 0; !st && i < 5; i++) {
        st = opt_string(e, key[i], where, opt[i], err);
        if (!*opt[i]) *opt[i] = "";
    }
    if (!st && isnan(x->value)) st = fl_fail(err, FL_EINVAL, "%s: no \"value\"", where);
    return st;
}

/* A (Super)GLUE task's score: the dev-side split (validation, dev, heldout)
   before test, and MCC, then F1, then accuracy: the metric BabyLM averages
   (MCC for CoLA, F1 for MRPC and QQP). Lower rank wins; -1 = not a score. */
static int glue_rank(const eval_entry *x) {
    static const char *const METRICS[] = {"mcc", "f1", "accuracy"};
    for (int m = 0; m < 3; m++)
        if (!strcmp(x->metric, METRICS[m])) return (strcmp(x->split, "test") == 0) * 3 + m;
    return -1;
}

static fl_status eval_blimp(fl_report_run *run, const eval_entry *x, fl_error *err) {
    const int sup = !strcmp(x->subtask, "supplement");
    if (!sup && x->subtask[0]) return FL_OK;
    if (!x->group[0]) {
        if (!sup && !strcmp(x->metric, "accuracy_paradigm_mean")) run->v[FL_RV_BLIMP_PARADIGM] = x->value;
        if (!sup && !strcmp(x->metric, "accuracy_phenomenon_mean")) run->v[FL_RV_BLIMP_PHENOMENON] = x->value;
        if (sup && !strcmp(x->metric, "accuracy_task_mean")) run->v[FL_RV_BLIMP_SUPPLEMENT] = x->value;
        return FL_OK;
    }
    if (strcmp(x->metric, "accuracy") || !x->item[0]) return FL_OK;
    fl_report_named *l = sup ? (!strcmp(x->group, "task") ? &run->supplement_tasks : NULL)
                             : !strcmp(x->group, "field")      ? &run->blimp_fields
                             : !strcmp(x->group, "phenomenon") ? &run->blimp_phenomena
                                                               : NULL;
    return l ? fl_report_named_put(l, x->item, x->value, x->n, err) : FL_OK;
}

static fl_status eval_glue(fl_report_run *run, fl_report_named *ranks, const eval_entry *x, fl_error *err) {
    int rank = glue_rank(x);
    if (rank < 0 || !x->subtask[0]) return FL_OK;
    int i = fl_report_named_find(ranks, x->subtask);
    if (i >= 0 && ranks->value[i] <= rank) return FL_OK;
    fl_status st = fl_report_named_put(ranks, x->subtask, rank, 0, err);
    return st ? st : fl_report_named_put(&run->glue_tasks, x->subtask, x->value, x->n, err);
}

/* Mean of l's values; NAN when empty. */
static double mean_of(const fl_report_named *l) {
    double s = 0;
    for (int i = 0; i < l->n; i++) s += l->value[i];
    return l->n ? s / l->n : NAN;
}

/* The study's BLiMP: phenomena and supplement tasks weighted by their pairs. */
static double study_blimp(const fl_report_run *run) {
    double sum = 0, pairs = 0;
    const fl_report_named *parts[] = {&run->blimp_phenomena, &run->supplement_tasks};
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < parts[p]->n; i++)
            if (parts[p]->count[i] > 0) sum += parts[p]->value[i] * parts[p]->count[i], pairs += parts[p]->count[i];
    return pairs > 0 ? sum / pairs : NAN;
}

/* Entries of a task run with another spec than the first seen are left out
   (one eval.json may hold, say, blimp on two data sets). */
static fl_status eval_results(fl_report_run *run, const cJSON *results, const char *path, fl_report_named *first,
                              fl_report_named *glue_ranks, int *other_specs, fl_error *err) {
    char where[FL_PATH_MAX + 64];
    const int n = cJSON_GetArraySize(results);
    const char **spec_of_first = calloc((size_t)n + 1, sizeof *spec_of_first); /* by the index of first's entry */
    if (!spec_of_first) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    fl_status st = FL_OK;
    int idx = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, results) {
        eval_entry x;
        snprintf(where, sizeof where, "%s: results[%d]", path, idx);
        st = eval_entry_of(e, where, &x, err);
        if (st) break;
        int f = fl_report_named_find(first, x.task);
        if (f < 0) {
            f = first->n;
            st = fl_report_named_put(first, x.task, f, 0, err);
            spec_of_first[f] = x.spec;
        }
        if (!st && strcmp(spec_of_first[f], x.spec)) (*other_specs)++;
        else if (!st && !strcmp(x.task, "blimp")) st = eval_blimp(run, &x, err);
        else if (!st && !strcmp(x.task, "glue")) st = eval_glue(run, glue_ranks, &x, err);
        if (st) break;
        idx++;
    }
    free(spec_of_first);
    return st;
}

static fl_status read_eval(const char *dir, fl_report_run *run, int *other_specs, fl_error *err) {
    char path[FL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/eval.json", dir);
    if (!fl_path_exists(path)) return FL_OK;
    cJSON *doc = NULL;
    fl_report_named first = {0}, glue_ranks = {0};
    fl_status st = read_json(path, &doc, err);
    const cJSON *results = doc ? cJSON_GetObjectItemCaseSensitive(doc, "results") : NULL;
    if (!st && !cJSON_IsArray(results)) st = fl_fail(err, FL_EINVAL, "%s: no \"results\" array", path);
    if (!st && isnan(run->v[FL_RV_TOTAL_PARAMS]))
        st = opt_number(doc, "model.n_params", path, &run->v[FL_RV_TOTAL_PARAMS], err);
    if (!st) st = eval_results(run, results, path, &first, &glue_ranks, other_specs, err);
    if (!st) {
        run->v[FL_RV_GLUE_AVERAGE] = mean_of(&run->glue_tasks);
        run->v[FL_RV_BLIMP_STUDY] = study_blimp(run);
    }
    free(first.name), free(first.value), free(first.count);
    free(glue_ranks.name), free(glue_ranks.value), free(glue_ranks.count);
    cJSON_Delete(doc);
    return st;
}

/* ------------------------------------------------------------ folders */

fl_status fl_report_note(fl_report *r, fl_error *err, const char *fmt, ...) {
    char buf[FL_PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **notes = realloc(r->notes, (size_t)(r->n_notes + 1) * sizeof *notes);
    if (notes) r->notes = notes;
    if (!notes || !(notes[r->n_notes] = strdup(buf))) return fl_fail(err, FL_ENOMEM, "report: out of memory");
    r->n_notes++;
    return FL_OK;
}

static fl_report_run *new_run(fl_report *r, fl_error *err) {
    fl_report_run *runs = realloc(r->runs, (size_t)(r->n_runs + 1) * sizeof *runs);
    if (!runs) {
        fl_fail(err, FL_ENOMEM, "report: out of memory");
        return NULL;
    }
    r->runs = runs;
    fl_report_run *run = &runs[r->n_runs++];
    memset(run, 0, sizeof *run);
    for (int i = 0; i < FL_RV_COUNT; i++) run->v[i] = NAN;
    return run;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* One run folder; label NULL: the FFN spec. */
static fl_status read_run(fl_report *r, const char *dir, const char *label, fl_report_run **out, fl_error *err) {
    fl_report_run *run = new_run(r, err);
    if (!run) return FL_ENOMEM;
    snprintf(run->dir, sizeof run->dir, "%s", dir);
    if (label) snprintf(run->label, sizeof run->label, "%s", label);
    int other_specs = 0;
    fl_status st = read_config(dir, run, err);
    if (!st) st = read_metrics(dir, run, err);
    if (!st) st = read_summary(dir, run, err);
    if (!st) st = read_eval(dir, run, &other_specs, err);
    if (!st && other_specs)
        st = fl_report_note(r, err, "%s/eval.json: %d result(s) of a task evaluated again with another spec were "
                                    "left out (the first spec of each task is used)", dir, other_specs);
    if (out) *out = run;
    return st;
}

/* Sizes the sweep's plan computed for a variant, for a cell whose own files
   lack them. */
static fl_status plan_sizes(const cJSON *plan, const char *variant, fl_report_run *run, const char *path,
                            fl_error *err) {
    static const struct { const char *key; int rv; } SIZES[] = {
        {"total_params", FL_RV_TOTAL_PARAMS},
        {"active_params_per_token", FL_RV_ACTIVE_PARAMS},
        {"flops_per_token", FL_RV_FLOPS_PER_TOKEN},
    };
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(plan, "variants")) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "name");
        if (!cJSON_IsString(name) || strcmp(name->valuestring, variant)) continue;
        const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(v, "sizes");
        for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++) {
            double d = NAN;
            fl_status st = opt_number(sizes, SIZES[i].key, path, &d, err);
            if (st) return st;
            if (isnan(run->v[SIZES[i].rv])) run->v[SIZES[i].rv] = d;
        }
    }
    return FL_OK;
}

static fl_status read_cell(fl_report *r, const char *sweep_dir, const cJSON *plan, const cJSON *cell,
                           const char *path, int idx, fl_error *err) {
    char where[FL_PATH_MAX + 64], dir[FL_PATH_MAX];
    snprintf(where, sizeof where, "%s: cells[%d]", path, idx);
    const char *name, *variant, *sub, *state;
    if (!cJSON_IsObject(cell)) return fl_fail(err, FL_EINVAL, "%s: not an object", where);
    fl_status st = need_string(cell, "variant", where, &variant, err);
    if (!st) st = need_string(cell, "dir", where, &sub, err);
    if (!st) st = need_string(cell, "state", where, &state, err);
    if (!st) st = opt_string(cell, "name", where, &name, err);
    if (st) return st;
    if (!name) name = sub;
    if (strcmp(state, "done"))
        return fl_report_note(r, err, "%s: cell %s skipped (state \"%s\")", sweep_dir, name, state);
    if (sub[0] == '/') snprintf(dir, sizeof dir, "%s", sub);
    else if ((st = fl_path_join(dir, sizeof dir, sweep_dir, sub, err))) return st;
    if (!is_dir(dir))
        return fl_fail(err, FL_EINVAL, "%s: cell %s is done but its folder %s is missing", path, name, dir);
    fl_report_run *run = NULL;
    st = read_run(r, dir, variant, &run, err);
    return st ? st : plan_sizes(plan, variant, run, path, err);
}

static fl_status read_sweep(fl_report *r, const char *dir, fl_error *err) {
    char path[FL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/sweep.json", dir);
    cJSON *doc = NULL;
    fl_status st = read_json(path, &doc, err);
    const cJSON *cells = doc ? cJSON_GetObjectItemCaseSensitive(doc, "cells") : NULL, *cell;
    if (!st && !cJSON_IsArray(cells)) st = fl_fail(err, FL_EINVAL, "%s: no \"cells\" array", path);
    const cJSON *plan = doc ? cJSON_GetObjectItemCaseSensitive(doc, "plan") : NULL;
    int idx = 0;
    if (!st)
        cJSON_ArrayForEach(cell, cells) {
            st = read_cell(r, dir, plan, cell, path, idx++, err);
            if (st) break;
        }
    cJSON_Delete(doc);
    return st;
}

fl_status fl_report_read(fl_report *r, const char *const *inputs, int n, fl_error *err) {
    char path[FL_PATH_MAX + 32];
    for (int i = 0; i < n; i++) {
        const char *dir = inputs[i];
        if (!is_dir(dir))
            return fl_fail(err, FL_EINVAL, "%s: %s", dir, fl_path_exists(dir) ? "not a folder" : "no such folder");
        if (strlen(dir) >= FL_PATH_MAX - 64) return fl_fail(err, FL_EINVAL, "%s: path too long", dir);
        fl_status st;
        snprintf(path, sizeof path, "%s/sweep.json", dir);
        if (fl_path_exists(path)) {
            st = read_sweep(r, dir, err);
        } else {
            snprintf(path, sizeof path, "%s/train_config.json", dir);
            st = fl_path_exists(path) ? read_run(r, dir, NULL, NULL, err)
                                      : fl_fail(err, FL_EINVAL, "%s: neither a run folder (train_config.json) nor a "
                                                                "sweep folder (sweep.json)", dir);
        }
        if (st) return st;
    }
    return r->n_runs ? FL_OK : fl_fail(err, FL_EINVAL, "no finished runs in the given folders");
}
