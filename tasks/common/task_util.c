/*
 * tasks/common/task_util.c — helpers shared by the built-in tasks (see
 * task_util.h). Plain C and libc only: this file is compiled into each
 * plugin and into the reader tests.
 */
#include "task_util.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ffnlab/json_check.h" /* fl_json_check */

fl_status tu_fail(fl_error *err, fl_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* ------------------------------------------------------------ files */

fl_status tu_file_read(tu_file *f, const char *path, fl_error *err) {
    memset(f, 0, sizeof *f);
    f->path = path;
    FILE *fp = fopen(path, "rb");
    if (!fp) return tu_fail(err, FL_EIO, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap + 1);
    while (buf && (r = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += r;
        if (n == cap) {
            char *grown = realloc(buf, 2 * cap + 1);
            if (!grown) free(buf);
            buf = grown, cap *= 2;
        }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (!buf) return tu_fail(err, FL_ENOMEM, "%s: out of memory reading", path);
    if (bad) {
        free(buf);
        return tu_fail(err, FL_EIO, "%s: read error", path);
    }
    buf[n] = 0;
    size_t skip = n >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0; /* UTF-8 BOM (MRPC has one) */
    f->data = buf;
    f->len = n;
    f->cursor = buf + skip;
    return FL_OK;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

/* The next line, blank or not. */
static char *next_line(tu_file *f, size_t *len) {
    if (!f->cursor || f->cursor >= f->data + f->len) return NULL;
    char *line = f->cursor, *end = memchr(line, '\n', (size_t)(f->data + f->len - line));
    if (end) {
        f->cursor = end + 1;
    } else {
        end = f->data + f->len;
        f->cursor = end;
    }
    if (end > line && end[-1] == '\r') end--;
    *end = 0;
    f->line_no++;
    *len = (size_t)(end - line);
    return line;
}

char *tu_file_next(tu_file *f, size_t *len) {
    size_t n = 0;
    char *line;
    while ((line = next_line(f, &n)) && blank(line, n)) {}
    if (len) *len = n;
    return line;
}

int tu_json_strict(const tu_file *f, const char *line, size_t len, char *why, size_t n) {
    fl_json_problem p;
    if (!fl_json_check(line, len, (size_t)(line - f->data), &p)) return 0;
    snprintf(why, n, "%s", p.what);
    return 1;
}

void tu_file_free(tu_file *f) {
    free(f->data);
    memset(f, 0, sizeof *f);
}

int tu_tsv_split(char *line, char **fields, int max) {
    int n = 0;
    for (char *p = line;; n++) {
        char *tab = strchr(p, '\t');
        if (n < max) fields[n] = p;
        if (!tab) return n + 1;
        *tab = 0;
        p = tab + 1;
    }
}

void tu_file_stem(const char *path, char *out, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (len >= n) len = n - 1;
    memcpy(out, base, len);
    out[len] = 0;
}

int tu_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int tu_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int has_suffix(const char *name, const char *suffixes) {
    size_t n = strlen(name);
    for (const char *p = suffixes; *p;) {
        const char *bar = strchr(p, '|');
        size_t k = bar ? (size_t)(bar - p) : strlen(p);
        if (k && n > k && !strncmp(name + n - k, p, k)) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

fl_status tu_list_dir(const char *dir, const char *suffixes, char ***paths, size_t *n, fl_error *err) {
    *paths = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return tu_fail(err, FL_EIO, "%s: cannot open the folder", dir);
    size_t cap = 0;
    char **out = NULL;
    fl_status st = FL_OK;
    for (struct dirent *e; (e = readdir(d)) && !st;) {
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, suffixes)) continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) {
            st = tu_fail(err, FL_ENOMEM, "%s: out of memory listing", dir);
            break;
        }
        snprintf(p, len, "%s/%s", dir, e->d_name);
        if (!tu_exists(p)) {
            free(p);
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            char **grown = realloc(out, cap * sizeof *out);
            if (!grown) {
                free(p);
                st = tu_fail(err, FL_ENOMEM, "%s: out of memory listing", dir);
                break;
            }
            out = grown;
        }
        out[(*n)++] = p;
    }
    closedir(d);
    if (st) {
        tu_free_paths(out, *n);
        *n = 0;
        return st;
    }
    if (*n) qsort(out, *n, sizeof *out, cmp_str);
    *paths = out;
    return FL_OK;
}

void tu_free_paths(char **paths, size_t n) {
    for (size_t i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
}

/* ------------------------------------------------------------ lists */

fl_status tu_list_split(const char *text, tu_list *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    size_t len = text ? strlen(text) : 0;
    out->storage = malloc(len + 1);
    out->items = malloc((len / 2 + 2) * sizeof *out->items);
    if (!out->storage || !out->items) {
        tu_list_free(out);
        return tu_fail(err, FL_ENOMEM, "out of memory");
    }
    memcpy(out->storage, text ? text : "", len + 1);
    for (char *p = out->storage; p;) {
        char *sep = strpbrk(p, "|,");
        if (sep) *sep = 0;
        while (*p == ' ' || *p == '\t') p++;
        char *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (*p) out->items[out->n++] = p;
        p = sep ? sep + 1 : NULL;
    }
    return FL_OK;
}

int tu_list_has(const tu_list *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->items[i], s)) return 1;
    return 0;
}

void tu_list_free(tu_list *l) {
    free(l->storage);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------ sequences */

fl_status tu_seqs_init(tu_seqs *s, fl_error *err) {
    memset(s, 0, sizeof *s);
    s->cap_seqs = 1024, s->cap_tokens = 16384;
    s->offsets = malloc((size_t)(s->cap_seqs + 1) * sizeof *s->offsets);
    s->tokens = malloc((size_t)s->cap_tokens * sizeof *s->tokens);
    if (!s->offsets || !s->tokens) {
        tu_seqs_free(s);
        return tu_fail(err, FL_ENOMEM, "out of memory for token sequences");
    }
    s->offsets[0] = 0;
    return FL_OK;
}

fl_status tu_seqs_add(tu_seqs *s, const int32_t *const *parts, const size_t *lens, int n_parts, fl_error *err) {
    size_t add = 0;
    for (int k = 0; k < n_parts; k++) add += lens[k];
    if (s->n == s->cap_seqs) {
        int64_t *grown = realloc(s->offsets, (size_t)(2 * s->cap_seqs + 1) * sizeof *grown);
        if (!grown) return tu_fail(err, FL_ENOMEM, "out of memory for token sequences");
        s->offsets = grown, s->cap_seqs *= 2;
    }
    while (s->n_tokens + (int64_t)add > s->cap_tokens) {
        int32_t *grown = realloc(s->tokens, (size_t)(2 * s->cap_tokens) * sizeof *grown);
        if (!grown) return tu_fail(err, FL_ENOMEM, "out of memory for token sequences");
        s->tokens = grown, s->cap_tokens *= 2;
    }
    for (int k = 0; k < n_parts; k++) {
        memcpy(s->tokens + s->n_tokens, parts[k], lens[k] * sizeof *s->tokens);
        s->n_tokens += (int64_t)lens[k];
    }
    s->offsets[++s->n] = s->n_tokens;
    return FL_OK;
}

fl_token_seqs tu_seqs_view(const tu_seqs *s) {
    fl_token_seqs v = {.tokens = s->tokens, .offsets = s->offsets, .n = s->n};
    return v;
}

void tu_seqs_free(tu_seqs *s) {
    free(s->tokens);
    free(s->offsets);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ names */

int tu_strtab_find(const tu_strtab *t, const char *s) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->names[i], s)) return i;
    return -1;
}

int tu_strtab_id(tu_strtab *t, const char *s) {
    int i = tu_strtab_find(t, s);
    if (i >= 0) return i;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **grown = realloc(t->names, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        t->names = grown, t->cap = cap;
    }
    if (!(t->names[t->n] = strdup(s))) return -1;
    return t->n++;
}

void tu_strtab_free(tu_strtab *t) {
    for (int i = 0; i < t->n; i++) free(t->names[i]);
    free(t->names);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------ metrics */

double tu_accuracy(const int32_t *pred, const int32_t *gold, int64_t n) {
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) ok += pred[i] == gold[i];
    return n ? (double)ok / (double)n : 0.0;
}

double tu_f1(const int32_t *pred, const int32_t *gold, int64_t n) {
    int64_t tp = 0, fp = 0, fn = 0;
    for (int64_t i = 0; i < n; i++) {
        tp += pred[i] == 1 && gold[i] == 1;
        fp += pred[i] == 1 && gold[i] != 1;
        fn += pred[i] != 1 && gold[i] == 1;
    }
    return tp ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
}

/* (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)): c correct, s total,
   p_k predicted and t_k true counts of class k (Gorodkin's R_K, which is
   the usual binary MCC when K = 2). */
double tu_mcc(const int32_t *pred, const int32_t *gold, int64_t n, int K) {
    if (K < 2 || n < 1) return 0.0;
    double *p = calloc((size_t)K, sizeof *p), *t = calloc((size_t)K, sizeof *t);
    if (!p || !t) {
        free(p), free(t);
        return NAN;
    }
    double c = 0, s = (double)n;
    for (int64_t i = 0; i < n; i++) {
        if (pred[i] >= 0 && pred[i] < K) p[pred[i]]++;
        if (gold[i] >= 0 && gold[i] < K) t[gold[i]]++;
        c += pred[i] == gold[i];
    }
    double pt = 0, pp = 0, tt = 0;
    for (int k = 0; k < K; k++) pt += p[k] * t[k], pp += p[k] * p[k], tt += t[k] * t[k];
    free(p), free(t);
    double den = (s * s - pp) * (s * s - tt);
    return den > 0 ? (c * s - pt) / sqrt(den) : 0.0;
}
