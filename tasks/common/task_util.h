/*
 * tasks/common/task_util.h — small helpers the built-in task plugins share.
 *
 * Compiled into each task plugin (tasks never link the framework), and into
 * the tests that check the readers. Nothing here knows about the model:
 *
 *   tu_fail      an fl_error with a formatted one-line message
 *   tu_file      a whole file in memory, split into lines: a UTF-8 BOM at the
 *                start is dropped, "\r\n" ends a line like "\n", a last line
 *                without a newline counts, blank lines (nothing but
 *                whitespace) are skipped as the framework's corpus reader
 *                skips them, line numbers start at 1 and count every line
 *   tu_json_strict  a JSON Lines line held to RFC 8259 where cJSON is
 *                lenient (ffnlab/json_check.h: duplicate keys, control
 *                characters, invalid UTF-8)
 *   tu_tsv_split tab-separated fields of one line, in place; quotes are
 *                ordinary characters (GLUE's TSVs are not CSV)
 *   tu_list      a '|' or ',' separated option value split into items
 *   tu_seqs      token sequences being built, in the fl_token_seqs layout
 *   tu_strtab    interned names (paradigms, phenomena) as small integers
 *   tu_accuracy / tu_f1 / tu_mcc    the metrics, with their degenerate cases
 *                defined: F1 with no predicted or true positives is 0, MCC
 *                with a constant prediction or a constant truth is 0
 */
#ifndef FFNLAB_TASK_UTIL_H
#define FFNLAB_TASK_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/task.h"

fl_status tu_fail(fl_error *err, fl_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- files and lines ---- */

typedef struct tu_file {
    char *data;                /* the file, NUL-terminated, BOM removed */
    size_t len;
    char *cursor;              /* next line */
    int64_t line_no;           /* number of the line last returned */
    const char *path;
} tu_file;

fl_status tu_file_read(tu_file *f, const char *path, fl_error *err);
/* The next line that is not blank, NUL-terminated in place without its "\n"
   / "\r\n" (NULL at the end). *len is its length; f->line_no its number. */
char *tu_file_next(tu_file *f, size_t *len);
void tu_file_free(tu_file *f);

/* 1 when line (len bytes, a line tu_file_next returned from f) breaks a rule
   of RFC 8259 that cJSON lets through; why gets what and the byte offset in
   the file. */
int tu_json_strict(const tu_file *f, const char *line, size_t len, char *why, size_t n);

/* Splits line at '\t' into at most max fields (NUL-terminating in place);
   returns the number of fields the line has (may exceed max). */
int tu_tsv_split(char *line, char **fields, int max);

/* "a.jsonl" → "a" into out. */
void tu_file_stem(const char *path, char *out, size_t n);
/* Regular files in dir ending in one of the suffixes ("|"-separated, e.g.
   ".jsonl|.json"), sorted by name; *paths malloc'ed array of malloc'ed strings. */
fl_status tu_list_dir(const char *dir, const char *suffixes, char ***paths, size_t *n, fl_error *err);
void tu_free_paths(char **paths, size_t n);
int tu_is_dir(const char *path);
int tu_exists(const char *path);

/* ---- option lists ---- */

typedef struct tu_list {
    char *storage;
    char **items;
    int n;
} tu_list;

/* Items of "a|b,c" (blanks trimmed, empty items dropped). */
fl_status tu_list_split(const char *text, tu_list *out, fl_error *err);
int tu_list_has(const tu_list *l, const char *s);
void tu_list_free(tu_list *l);

/* ---- token sequences ---- */

typedef struct tu_seqs {
    int32_t *tokens;
    int64_t *offsets;          /* [n + 1] */
    int64_t n, n_tokens, cap_tokens, cap_seqs;
} tu_seqs;

fl_status tu_seqs_init(tu_seqs *s, fl_error *err);
/* Appends one sequence made of parts (each ids[k][0..lens[k])). */
fl_status tu_seqs_add(tu_seqs *s, const int32_t *const *parts, const size_t *lens, int n_parts, fl_error *err);
fl_token_seqs tu_seqs_view(const tu_seqs *s);
void tu_seqs_free(tu_seqs *s);

/* ---- interned names ---- */

typedef struct tu_strtab {
    char **names;
    int n, cap;
} tu_strtab;

/* Index of s, added if new; -1 when out of memory. */
int tu_strtab_id(tu_strtab *t, const char *s);
int tu_strtab_find(const tu_strtab *t, const char *s);
void tu_strtab_free(tu_strtab *t);

/* ---- metrics ---- */

double tu_accuracy(const int32_t *pred, const int32_t *gold, int64_t n);
/* Binary F1 of class 1. */
double tu_f1(const int32_t *pred, const int32_t *gold, int64_t n);
/* Matthews correlation over K classes (the binary formula when K = 2). */
double tu_mcc(const int32_t *pred, const int32_t *gold, int64_t n, int K);

#endif
