/*
 * tasks/blimp/blimp_data.c — reading BLiMP-format minimal pairs (see blimp.h).
 *
 * Each line is parsed by cJSON on its own and held to RFC 8259 (no key twice,
 * no raw control characters or invalid UTF-8 in strings), so a broken line
 * costs that line only and its message can name the file and line number.
 * Blank lines are skipped (tu_file_next), as in every JSON Lines reader. Nothing is passed
 * over without being counted: with on_error=skip a malformed line goes into
 * skipped_lines (the task reports the count), an empty file into empty_files.
 */
#include "blimp.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* BabyLM 2023 groups BLiMP's 13 linguistics_term values into 12 phenomena,
   named like its files: s-selection goes with argument_structure, and
   filler_gap_dependency is called filler_gap. */
static const char *phenomenon_of(const char *term) {
    if (!strcmp(term, "s-selection")) return "argument_structure";
    if (!strcmp(term, "filler_gap_dependency")) return "filler_gap";
    return term;
}

static void field_name(const char *raw, char *out, size_t n) {
    snprintf(out, n, "%s", raw);
    for (char *p = out; *p; p++)
        if (*p == '/') *p = '_'; /* principle_A_case_2 spells it "syntax/semantics" */
}

/* A string member, or NULL; *bad set when present but not a string. */
static const char *opt_string(const cJSON *o, const char *key, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return NULL;
    if (!cJSON_IsString(v)) {
        *bad = 1;
        return NULL;
    }
    return v->valuestring;
}

static fl_status line_error(const char *path, int64_t line, const char *what, fl_error *err) {
    return tu_fail(err, FL_EINVAL, "%s:%lld: %s", path, (long long)line, what);
}

/* Writes why a line is malformed; FL_EINVAL. */
static fl_status reject(char *why, size_t n, const char *what, const char *key) {
    snprintf(why, n, what, key);
    return FL_EINVAL;
}

static fl_status check_sentence(const cJSON *o, const char *key, const char **out, char *why, size_t n) {
    int bad = 0;
    *out = opt_string(o, key, &bad);
    if (!*out) return reject(why, n, "%s is missing or not a string", key);
    if (!(*out)[0]) return reject(why, n, "%s is empty", key);
    return FL_OK;
}

static fl_status push_pair(blimp_set *s, const blimp_pair *p, fl_error *err) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 4096;
        blimp_pair *grown = realloc(s->pairs, (size_t)cap * sizeof *grown);
        if (!grown) return tu_fail(err, FL_ENOMEM, "out of memory for minimal pairs");
        s->pairs = grown, s->cap = cap;
    }
    s->pairs[s->n++] = *p;
    return FL_OK;
}

typedef struct file_ctx {
    blimp_set *s;
    const char *path;
    char stem[256];
    int supplement;
    const tu_list *only;
} file_ctx;

/* One parsed record → one pair (or nothing, when filtered out). `why`
   receives the reason for FL_EINVAL; other codes are real errors. */
static fl_status add_record(file_ctx *c, const cJSON *o, char *why, size_t n, fl_error *err) {
    if (!cJSON_IsObject(o)) return reject(why, n, "not a JSON %s", "object");
    const char *good, *bad_s;
    if (check_sentence(o, "sentence_good", &good, why, n) || check_sentence(o, "sentence_bad", &bad_s, why, n))
        return FL_EINVAL;
    int bad = 0;
    const char *uid = opt_string(o, "UID", &bad), *field = opt_string(o, "field", &bad);
    const char *term = opt_string(o, "linguistics_term", &bad);
    if (bad) return reject(why, n, "%s is not a string", "UID, field or linguistics_term");
    const char *paradigm = uid && uid[0] ? uid : c->stem;
    if (c->only && !tu_list_has(c->only, paradigm) && !tu_list_has(c->only, c->stem)) return FL_OK;
    char fname[128];
    field_name(field ? field : c->supplement ? "supplement" : "unknown", fname, sizeof fname);
    const char *phen = c->supplement || !term ? c->stem : phenomenon_of(term);
    blimp_pair p = {.good = strdup(good), .bad = strdup(bad_s), .supplement = c->supplement,
                    .paradigm = tu_strtab_id(&c->s->paradigms, paradigm),
                    .phenomenon = tu_strtab_id(&c->s->phenomena, phen),
                    .field = tu_strtab_id(&c->s->fields, fname)};
    if (!p.good || !p.bad || p.paradigm < 0 || p.phenomenon < 0 || p.field < 0) {
        free(p.good), free(p.bad);
        return tu_fail(err, FL_ENOMEM, "%s: out of memory", c->path);
    }
    fl_status st = push_pair(c->s, &p, err);
    if (st) free(p.good), free(p.bad);
    return st;
}

/* Keeps the first messages (cut to the note size) for the log. */
static void note(blimp_set *s, const char *msg) {
    if (s->n_notes == BLIMP_MAX_NOTES) return;
    size_t n = strlen(msg), room = sizeof s->notes[0] - 1;
    memcpy(s->notes[s->n_notes], msg, n < room ? n : room);
    s->notes[s->n_notes++][n < room ? n : room] = 0;
}

/* A malformed line: the error (stop) or one more skipped line (skip). */
static fl_status malformed(file_ctx *c, int64_t line, const char *why, int skip, fl_error *err) {
    fl_error e = {0};
    line_error(c->path, line, why, &e);
    if (!skip) {
        if (err) *err = e;
        return FL_EINVAL;
    }
    c->s->skipped_lines++;
    note(c->s, e.msg);
    return FL_OK;
}

fl_status blimp_read_file(blimp_set *s, const char *path, int supplement, int skip, const tu_list *only,
                          fl_error *err) {
    tu_file f;
    fl_status st = tu_file_read(&f, path, err);
    if (st) return st;
    file_ctx c = {.s = s, .path = path, .supplement = supplement, .only = only};
    tu_file_stem(path, c.stem, sizeof c.stem);
    int64_t lines = 0;
    size_t len;
    for (char *line; !st && (line = tu_file_next(&f, &len));) {
        lines++;
        char why[200] = "";
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithOpts(line, &end, 1);
        fl_status rs = FL_EINVAL;
        if (!o) snprintf(why, sizeof why, "not valid JSON (near column %lld)", (long long)(end ? end - line + 1 : 1));
        else if (!tu_json_strict(&f, line, len, why, sizeof why)) rs = add_record(&c, o, why, sizeof why, err);
        cJSON_Delete(o);
        if (rs == FL_EINVAL) st = malformed(&c, f.line_no, why, skip, err);
        else st = rs;
    }
    tu_file_free(&f);
    s->files++;
    if (!st && lines == 0) {
        if (!skip) return tu_fail(err, FL_EINVAL, "%s: empty file (no minimal pairs)", path);
        s->empty_files++;
        char msg[300];
        snprintf(msg, sizeof msg, "%s: empty file (no minimal pairs)", path);
        note(s, msg);
    }
    return st;
}

fl_status blimp_read_path(blimp_set *s, const char *path, int supplement, int skip, const tu_list *only,
                          fl_error *err) {
    if (!tu_is_dir(path)) {
        if (!tu_exists(path)) return tu_fail(err, FL_EIO, "%s: no such file or folder", path);
        return blimp_read_file(s, path, supplement, skip, only, err);
    }
    char **paths = NULL;
    size_t n = 0;
    fl_status st = tu_list_dir(path, ".jsonl|.json", &paths, &n, err);
    if (!st && n == 0) st = tu_fail(err, FL_EINVAL, "%s: no .jsonl or .json files in this folder", path);
    for (size_t i = 0; i < n && !st; i++) st = blimp_read_file(s, paths[i], supplement, skip, only, err);
    tu_free_paths(paths, n);
    return st;
}

void blimp_set_free(blimp_set *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->pairs[i].good), free(s->pairs[i].bad);
    free(s->pairs);
    tu_strtab_free(&s->paradigms);
    tu_strtab_free(&s->phenomena);
    tu_strtab_free(&s->fields);
    memset(s, 0, sizeof *s);
}
