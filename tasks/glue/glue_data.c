/*
 * tasks/glue/glue_data.c — the (Super)GLUE task table and file readers
 * (see glue.h).
 *
 * One reader per file shape: headerless CoLA TSV, TSV with a header (columns
 * found by name, so MNLI's 12-column dev files and QQP's 6 columns read the
 * same way), and JSON Lines (keys tried in the order the table gives, so
 * SuperGLUE, the converted subsets and BabyLM's files share one reader).
 * MultiRC's nested paragraphs become one example per answer option; WSC's
 * pronoun (span2) is marked *like this* in the text, with span1 as the second
 * segment, as the P-tuning/BabyLM preprocessing does.
 */
#include "glue.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const glue_def DEFS[] = {
    {"cola", "CoLA", 2, GLUE_MCC, "0|1", NULL, NULL, NULL, "sentence|text_a", NULL, REC_PLAIN,
     {"train.tsv"}, {"dev.tsv"}, {NULL}, "validation", "test", NULL, NULL},
    {"sst2", "SST-2", 2, GLUE_ACC, "0|1", "sentence", NULL, "label", "sentence|text_a", NULL, REC_PLAIN,
     {"train.tsv"}, {"dev.tsv"}, {NULL}, "validation", "test", NULL, NULL},
    {"mrpc", "MRPC", 2, GLUE_F1_ACC, "0|1", "#1 String", "#2 String", "Quality", "sentence1|text_a",
     "sentence2|text_b", REC_PLAIN, {"train.tsv"}, {"dev.tsv"}, {NULL}, "validation", "test", NULL, NULL},
    {"qqp", "QQP", 2, GLUE_F1_ACC, "0|1", "question1", "question2", "is_duplicate", "question1|text_a",
     "question2|text_b", REC_PLAIN, {"train.tsv", "train_subset9k.jsonl"}, {"dev.tsv", "train_heldout1k.jsonl"},
     {NULL}, "validation", "test", NULL, NULL},
    {"mnli", "MNLI", 3, GLUE_ACC, "entailment|neutral|contradiction", "sentence1", "sentence2", "gold_label",
     "premise|text_a|sentence1", "hypothesis|text_b|sentence2", REC_PLAIN,
     {"train.tsv", "train_subset9k.jsonl"}, {"dev_matched.tsv", "train_heldout1k.jsonl"}, {"dev_mismatched.tsv"},
     "validation_matched", "test_matched", "validation_mismatched", "test_mismatched"},
    {"qnli", "QNLI", 2, GLUE_ACC, "entailment|not_entailment", "question", "sentence", "label", "question|text_a",
     "sentence|text_b", REC_PLAIN, {"train.tsv", "train_subset9k.jsonl"}, {"dev.tsv", "train_heldout1k.jsonl"},
     {NULL}, "validation", "test", NULL, NULL},
    {"rte", "RTE", 2, GLUE_ACC, "entailment|not_entailment", "sentence1", "sentence2", "label",
     "sentence1|premise|text_a", "sentence2|hypothesis|text_b", REC_PLAIN, {"train.tsv", "train.jsonl"},
     {"dev.tsv", "val.jsonl"}, {NULL}, "validation", "test", NULL, NULL},
    {"boolq", "BoolQ", 2, GLUE_ACC, "false|true", NULL, NULL, NULL, "question", "passage", REC_PLAIN,
     {"train.jsonl"}, {"val.jsonl"}, {NULL}, "validation", "test", NULL, NULL},
    {"multirc", "MultiRC", 2, GLUE_ACC, "0|1", NULL, NULL, NULL, "paragraph", "question", REC_MULTIRC,
     {"train.jsonl"}, {"val.jsonl"}, {NULL}, "validation", "test", NULL, NULL},
    {"wsc", "WSC", 2, GLUE_ACC, "false|true", NULL, NULL, NULL, "text", "span1_text", REC_WSC,
     {"train.jsonl"}, {"val.jsonl"}, {NULL}, "validation", "test", NULL, NULL},
};
#define N_DEFS (sizeof DEFS / sizeof DEFS[0])

const glue_def *glue_find(const char *name) {
    for (size_t i = 0; i < N_DEFS; i++)
        if (!strcmp(DEFS[i].name, name)) return &DEFS[i];
    return NULL;
}

const char *glue_names(void) { return "cola|sst2|mrpc|qqp|mnli|qnli|rte|boolq|multirc|wsc"; }

/* ------------------------------------------------------------ labels */

/* Index of word in a '|'-joined list, or -1. */
static int word_index(const char *list, const char *word) {
    size_t n = strlen(word);
    int i = 0;
    for (const char *p = list; p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, word, n)) return i;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

int glue_label_of(const glue_def *d, const char *text) {
    int k = word_index(d->labels, text);
    if (k >= 0) return k;
    if (!strcmp(text, "-1")) return -1; /* a hidden test label */
    if (isdigit((unsigned char)text[0]) && !text[1] && text[0] - '0' < d->n_classes) return text[0] - '0';
    if (!strcmp(text, "True") || !strcmp(text, "False")) return word_index(d->labels, text[0] == 'T' ? "true" : "false");
    return -2;
}

/* -2 when the value is no label of d. */
static int json_label(const glue_def *d, const cJSON *v) {
    if (cJSON_IsBool(v)) return d->n_classes == 2 ? cJSON_IsTrue(v) : -2;
    if (cJSON_IsString(v)) return glue_label_of(d, v->valuestring);
    if (!cJSON_IsNumber(v)) return -2;
    double x = v->valuedouble;
    return x == floor(x) && x >= -1 && x < d->n_classes ? (int)x : -2;
}

/* ------------------------------------------------------------ examples */

static char *trimmed_copy(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = 0;
    return d;
}

static fl_status push(glue_split *s, const char *a, const char *b, int label, fl_error *err) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 1024;
        glue_example *grown = realloc(s->ex, (size_t)cap * sizeof *grown);
        if (!grown) return tu_fail(err, FL_ENOMEM, "%s: out of memory", s->path);
        s->ex = grown, s->cap = cap;
    }
    glue_example e = {.a = trimmed_copy(a), .b = b ? trimmed_copy(b) : NULL, .label = label};
    if (!e.a || (b && !e.b)) {
        free(e.a), free(e.b);
        return tu_fail(err, FL_ENOMEM, "%s: out of memory", s->path);
    }
    s->ex[s->n++] = e;
    return FL_OK;
}

static void note(glue_split *s, const char *msg) {
    if (s->n_notes == GLUE_MAX_NOTES) return;
    size_t n = strlen(msg), room = sizeof s->notes[0] - 1;
    memcpy(s->notes[s->n_notes], msg, n < room ? n : room);
    s->notes[s->n_notes++][n < room ? n : room] = 0;
}

/* A malformed line: the error (stop) or counted (skip). */
static fl_status malformed(glue_split *s, int64_t line, const char *why, int skip, fl_error *err) {
    fl_error e = {0};
    tu_fail(&e, FL_EINVAL, "%s:%lld: %s", s->path, (long long)line, why);
    if (!skip) {
        if (err) *err = e;
        return FL_EINVAL;
    }
    s->skipped++;
    note(s, e.msg);
    return FL_OK;
}

/* ------------------------------------------------------------ TSV */

#define MAX_COLS 64

static int column(char **names, int n, const char *want) {
    for (int i = 0; i < n && i < MAX_COLS; i++)
        if (!strcmp(names[i], want)) return i;
    return -1;
}

typedef struct tsv_cols {
    int n, a, b, label;
} tsv_cols;

/* Column numbers from the header (or CoLA's fixed 4 columns). */
static fl_status tsv_header(const glue_def *d, tu_file *f, glue_split *s, tsv_cols *c, fl_error *err) {
    if (!d->tsv_a) {
        *c = (tsv_cols){.n = 4, .a = 3, .b = -1, .label = 1}; /* source, label, mark, sentence */
        return FL_OK;
    }
    char *line = tu_file_next(f, NULL), *names[MAX_COLS];
    if (!line) return tu_fail(err, FL_EINVAL, "%s: empty file (expected a header line)", s->path);
    c->n = tu_tsv_split(line, names, MAX_COLS);
    c->a = column(names, c->n, d->tsv_a);
    c->b = d->tsv_b ? column(names, c->n, d->tsv_b) : -1;
    c->label = column(names, c->n, d->tsv_label);
    const char *missing = c->a < 0 ? d->tsv_a : (d->tsv_b && c->b < 0) ? d->tsv_b : c->label < 0 ? d->tsv_label : NULL;
    if (missing)
        return tu_fail(err, FL_EINVAL, "%s:1: the header has no column \"%s\" (a %s file needs %s%s%s%s, %s)", s->path,
                       missing, d->name, d->tsv_a, d->tsv_b ? ", " : "", d->tsv_b ? d->tsv_b : "", "", d->tsv_label);
    return FL_OK;
}

static fl_status tsv_row(const glue_def *d, glue_split *s, char *line, const tsv_cols *c, int64_t line_no, int skip,
                         fl_error *err) {
    char *f[MAX_COLS], why[160];
    int n = tu_tsv_split(line, f, MAX_COLS);
    if (n != c->n) {
        snprintf(why, sizeof why, "expected %d tab-separated columns, found %d", c->n, n);
        return malformed(s, line_no, why, skip, err);
    }
    int label = glue_label_of(d, f[c->label]);
    if (label < -1) {
        snprintf(why, sizeof why, "label \"%.40s\" is not one of %s", f[c->label], d->labels);
        return malformed(s, line_no, why, skip, err);
    }
    if (!f[c->a][0]) return malformed(s, line_no, "the text column is empty", skip, err);
    return push(s, f[c->a], c->b >= 0 ? f[c->b] : NULL, label, err);
}

static fl_status read_tsv(const glue_def *d, tu_file *f, glue_split *s, int skip, fl_error *err) {
    tsv_cols c;
    fl_status st = tsv_header(d, f, s, &c, err);
    for (char *line; !st && (line = tu_file_next(f, NULL));) st = tsv_row(d, s, line, &c, f->line_no, skip, err);
    return st;
}

/* ------------------------------------------------------------ JSON Lines */

/* The first of the '|'-joined keys holding a string. */
static const char *json_text(const cJSON *o, const char *keys) {
    char key[64];
    for (const char *p = keys; p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        snprintf(key, sizeof key, "%.*s", (int)len, p);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        if (cJSON_IsString(v)) return v->valuestring;
        p = bar ? bar + 1 : NULL;
    }
    return NULL;
}

/* Writes why a record is malformed (what may hold one %s for arg). */
static fl_status rejectf(char *why, size_t n, const char *what, const char *arg) {
    snprintf(why, n, what, arg);
    return FL_EINVAL;
}

static fl_status reject(char *why, size_t n, const char *what) { return rejectf(why, n, "%s", what); }

static fl_status plain_record(const glue_def *d, glue_split *s, const cJSON *o, char *why, size_t n, fl_error *err) {
    const char *a = json_text(o, d->json_a), *b = d->json_b ? json_text(o, d->json_b) : NULL;
    if (!a || !a[0]) return rejectf(why, n, "no text: expected a non-empty string in %s", d->json_a);
    if (d->json_b && !b) return rejectf(why, n, "no second text: expected a string in %s", d->json_b);
    int label = json_label(d, cJSON_GetObjectItemCaseSensitive(o, "label"));
    if (label < -1) return rejectf(why, n, "label is missing or not one of %s", d->labels);
    return push(s, a, b, label, err);
}

/* "question answer" as the second segment. */
static fl_status multirc_push(glue_split *s, const char *para, const char *q, const char *ans, int label, fl_error *err) {
    size_t len = strlen(q) + strlen(ans) + 2;
    char *b = malloc(len);
    if (!b) return tu_fail(err, FL_ENOMEM, "%s: out of memory", s->path);
    snprintf(b, len, "%s %s", q, ans);
    fl_status st = push(s, para, b, label, err);
    free(b);
    return st;
}

/* BabyLM's flat {paragraph, question, answer, label}, or SuperGLUE's
   {passage: {text, questions: [{question, answers: [{text, label}]}]}}. */
static fl_status multirc_record(const glue_def *d, glue_split *s, const cJSON *o, char *why, size_t n, fl_error *err) {
    const cJSON *passage = cJSON_GetObjectItemCaseSensitive(o, "passage");
    if (!cJSON_IsObject(passage)) {
        const char *para = json_text(o, "paragraph"), *q = json_text(o, "question"), *ans = json_text(o, "answer");
        int label = json_label(d, cJSON_GetObjectItemCaseSensitive(o, "label"));
        if (!para || !q || !ans || label < -1) return reject(why, n, "expected paragraph, question, answer and label");
        return multirc_push(s, para, q, ans, label, err);
    }
    const char *text = json_text(passage, "text");
    const cJSON *qs = cJSON_GetObjectItemCaseSensitive(passage, "questions"), *q = NULL;
    if (!text || !cJSON_IsArray(qs)) return reject(why, n, "passage needs text and a questions array");
    cJSON_ArrayForEach(q, qs) {
        const char *question = json_text(q, "question");
        const cJSON *answers = cJSON_GetObjectItemCaseSensitive(q, "answers"), *a = NULL;
        if (!question || !cJSON_IsArray(answers)) return reject(why, n, "a question needs question and answers");
        cJSON_ArrayForEach(a, answers) {
            const char *at = json_text(a, "text");
            int label = json_label(d, cJSON_GetObjectItemCaseSensitive(a, "label"));
            if (!at || label < -1) return reject(why, n, "an answer needs text and label 0/1");
            fl_status st = multirc_push(s, text, question, at, label, err);
            if (st) return st;
        }
    }
    return FL_OK;
}

/* text with word span2_index marked *word*; spans at the top level
   (BabyLM) or under "target" (SuperGLUE). */
static fl_status wsc_record(const glue_def *d, glue_split *s, const cJSON *o, char *why, size_t n, fl_error *err) {
    const cJSON *target = cJSON_GetObjectItemCaseSensitive(o, "target");
    const cJSON *spans = cJSON_IsObject(target) ? target : o;
    const char *text = json_text(o, "text"), *span1 = json_text(spans, "span1_text");
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(spans, "span2_index");
    int label = json_label(d, cJSON_GetObjectItemCaseSensitive(o, "label"));
    if (!text || !span1 || !cJSON_IsNumber(idx) || label < -1)
        return reject(why, n, "expected text, span1_text, span2_index and label");
    size_t len = strlen(text);
    char *copy = malloc(len + 1), *marked = malloc(len + 3);
    if (!copy || !marked) {
        free(copy), free(marked);
        return tu_fail(err, FL_ENOMEM, "%s: out of memory", s->path);
    }
    memcpy(copy, text, len + 1);
    size_t k = 0;
    int w = 0, found = 0;
    for (char *save = NULL, *word = strtok_r(copy, " ", &save); word; word = strtok_r(NULL, " ", &save), w++) {
        int hit = w == idx->valueint;
        found |= hit;
        k += (size_t)sprintf(marked + k, "%s%s%s%s", k ? " " : "", hit ? "*" : "", word, hit ? "*" : "");
    }
    fl_status st = found ? push(s, marked, span1, label, err) : reject(why, n, "span2_index is past the last word");
    free(copy), free(marked);
    return st;
}

static fl_status read_jsonl(const glue_def *d, tu_file *f, glue_split *s, int skip, fl_error *err) {
    fl_status st = FL_OK;
    size_t len;
    for (char *line; !st && (line = tu_file_next(f, &len));) {
        char why[200] = "";
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithOpts(line, &end, 1);
        fl_status rs;
        if (!o) rs = reject(why, sizeof why, "not valid JSON");
        else if (tu_json_strict(f, line, len, why, sizeof why)) rs = FL_EINVAL;
        else if (!cJSON_IsObject(o)) rs = reject(why, sizeof why, "not a JSON object");
        else if (d->record == REC_MULTIRC) rs = multirc_record(d, s, o, why, sizeof why, err);
        else if (d->record == REC_WSC) rs = wsc_record(d, s, o, why, sizeof why, err);
        else rs = plain_record(d, s, o, why, sizeof why, err);
        cJSON_Delete(o);
        st = rs == FL_EINVAL && why[0] ? malformed(s, f->line_no, why, skip, err) : rs;
    }
    return st;
}

/* ------------------------------------------------------------ files */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* All labels -1 is a test set without labels; some -1 is an error. */
static fl_status check_hidden(glue_split *s, fl_error *err) {
    int64_t hidden = 0;
    for (int64_t i = 0; i < s->n; i++) hidden += s->ex[i].label == -1;
    if (hidden && hidden != s->n)
        return tu_fail(err, FL_EINVAL, "%s: %lld of %lld labels are -1 (hidden); a split hides all or none",
                       s->path, (long long)hidden, (long long)s->n);
    s->hidden = hidden > 0;
    return FL_OK;
}

fl_status glue_read(const glue_def *d, const char *path, int skip, glue_split *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    tu_file f;
    fl_status st = tu_file_read(&f, path, err);
    if (st) return st;
    st = ends_with(path, ".tsv") ? read_tsv(d, &f, out, skip, err) : read_jsonl(d, &f, out, skip, err);
    tu_file_free(&f);
    if (!st && out->n == 0)
        st = tu_fail(err, FL_EINVAL, "%s: no examples%s", path, out->skipped ? " (every line was malformed)" : " (empty file)");
    if (!st) st = check_hidden(out, err);
    if (st) glue_split_free(out);
    return st;
}

void glue_split_free(glue_split *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->ex[i].a), free(s->ex[i].b);
    free(s->ex);
    s->ex = NULL, s->n = s->cap = 0;
}
