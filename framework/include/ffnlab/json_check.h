/*
 * ffnlab/json_check.h — the rules of RFC 8259 that cJSON lets through.
 *
 * cJSON, the JSON library ffnlab and its plugins read files with, accepts a
 * key twice in one object (the last one wins, silently: "n_layers" given
 * twice builds a model nobody asked for), raw control characters and any
 * bytes at all inside strings (a safetensors tensor name holding a NUL byte
 * loads cut at the NUL), and the escape \u0000, which cuts the C string it
 * returns. fl_json_check scans the text of one JSON value and reports the
 * first of these, so a reader can refuse the file with one line saying what
 * and where:
 *
 *     fl_json_problem p;
 *     if (fl_json_check(text, len, 0, &p))
 *         return fail(err, "%s: line %lld: %s", path, p.line, p.what);
 *
 * It checks the whole grammar too (RFC 8259 as written: the four whitespace
 * characters, numbers without leading zeros or a '+', nesting at most
 * FL_JSON_MAX_DEPTH; a UTF-8 byte-order mark at the start is skipped, as
 * cJSON skips it), so any text it accepts, cJSON parses. Readers parse with
 * cJSON first, which keeps their own syntax messages, then check.
 *
 * Header-only, libc only: the framework's readers and the task plugins
 * (which never link the framework) compile the same code. This header is
 * part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_JSON_CHECK_H
#define FFNLAB_JSON_CHECK_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffnlab/utf8.h" /* fl_utf8_len */

#define FL_JSON_MAX_DEPTH 500 /* cJSON refuses 1000 */

typedef enum fl_json_fault {
    FL_JSON_FINE = 0,
    FL_JSON_SYNTAX,        /* not JSON at all (or cut short) */
    FL_JSON_TOO_DEEP,      /* arrays/objects nested deeper than FL_JSON_MAX_DEPTH */
    FL_JSON_DUPLICATE_KEY, /* a key twice in one object (compared after unescaping) */
    FL_JSON_CONTROL_CHAR,  /* a raw byte below 0x20 inside a string */
    FL_JSON_BAD_UTF8,      /* a string's bytes are not UTF-8, or an unpaired \uD800-\uDFFF */
    FL_JSON_NUL_ESCAPE,    /* \u0000: a C string cannot hold it */
    FL_JSON_NO_MEMORY
} fl_json_fault;

typedef struct fl_json_problem {
    fl_json_fault fault;
    size_t offset;         /* byte offset of the problem: at + its position in text */
    long long line;        /* its 1-based line in text */
    char what[192];        /* e.g. duplicate key "n_layers", invalid UTF-8 in a string at byte 57 */
} fl_json_problem;

/* ---- inside: a recursive-descent scanner over text[0..n) ---- */

typedef struct fl_jc_key {
    size_t off, len;       /* the key's bytes between its quotes */
    uint32_t obj, hash;    /* which object (1, 2, ...; 0 = empty slot) */
} fl_jc_key;

typedef struct fl_jc {
    const unsigned char *s;
    size_t n, i, at;
    fl_jc_key *keys;       /* open addressing, cap a power of two, at most half full */
    size_t cap, used;
    uint32_t objs;
    fl_json_problem *p;
} fl_jc;

static inline fl_json_fault fl_jc_fail(fl_jc *c, fl_json_fault f, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline fl_json_fault fl_jc_fail(fl_jc *c, fl_json_fault f, size_t pos, const char *fmt, ...) {
    fl_json_problem *p = c->p;
    p->fault = f;
    p->offset = c->at + pos;
    p->line = 1;
    for (size_t k = 0; k < pos && k < c->n; k++) p->line += c->s[k] == '\n';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->what, sizeof p->what, fmt, ap);
    va_end(ap);
    return f;
}

static inline fl_json_fault fl_jc_syntax(fl_jc *c) {
    if (c->i >= c->n) return fl_jc_fail(c, FL_JSON_SYNTAX, c->i, "not valid JSON: the text ends at byte %zu", c->at + c->i);
    return fl_jc_fail(c, FL_JSON_SYNTAX, c->i, "not valid JSON at byte %zu", c->at + c->i);
}

static inline void fl_jc_space(fl_jc *c) {
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r')) c->i++;
}

static inline int fl_jc_peek(const fl_jc *c) { return c->i < c->n ? c->s[c->i] : -1; }

/* The value of 4 hex digits at s, or -1. */
static inline long fl_jc_hex4(const unsigned char *s) {
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int d = s[k] >= '0' && s[k] <= '9' ? s[k] - '0' : s[k] >= 'a' && s[k] <= 'f' ? s[k] - 'a' + 10
              : s[k] >= 'A' && s[k] <= 'F' ? s[k] - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A \u escape at c->i (just past the 'u'), a surrogate pair taken whole. */
static inline fl_json_fault fl_jc_unicode(fl_jc *c, size_t esc) {
    long u = c->i + 4 <= c->n ? fl_jc_hex4(c->s + c->i) : -1;
    if (u < 0) return fl_jc_syntax(c);
    c->i += 4;
    if (u == 0) return fl_jc_fail(c, FL_JSON_NUL_ESCAPE, esc, "\\u0000 (a NUL character) in a string at byte %zu", c->at + esc);
    if (u >= 0xDC00 && u <= 0xDFFF) goto unpaired;
    if (u < 0xD800 || u > 0xDBFF) return FL_JSON_FINE;
    if (c->i + 6 > c->n || c->s[c->i] != '\\' || c->s[c->i + 1] != 'u') goto unpaired;
    long low = fl_jc_hex4(c->s + c->i + 2);
    if (low < 0xDC00 || low > 0xDFFF) goto unpaired;
    c->i += 6;
    return FL_JSON_FINE;
unpaired:
    return fl_jc_fail(c, FL_JSON_BAD_UTF8, esc, "unpaired UTF-16 surrogate \\u%04lX in a string at byte %zu", (unsigned long)u,
                      c->at + esc);
}

/* A string from its opening quote at c->i; [*from, *to) are its bytes. */
static inline fl_json_fault fl_jc_string(fl_jc *c, size_t *from, size_t *to) {
    c->i++;
    *from = c->i;
    while (c->i < c->n) {
        unsigned char b = c->s[c->i];
        if (b == '"') {
            *to = c->i++;
            return FL_JSON_FINE;
        }
        if (b < 0x20)
            return fl_jc_fail(c, FL_JSON_CONTROL_CHAR, c->i, "raw control character 0x%02X in a string at byte %zu", b,
                              c->at + c->i);
        if (b == '\\') {
            size_t esc = c->i++;
            int e = fl_jc_peek(c);
            c->i++;
            if (e == 'u') {
                fl_json_fault f = fl_jc_unicode(c, esc);
                if (f) return f;
            } else if (e < 0 || !strchr("\"\\/bfnrt", e)) {
                c->i = esc;
                return fl_jc_syntax(c);
            }
            continue;
        }
        size_t k = fl_utf8_len(c->s + c->i, c->n - c->i);
        if (!k) return fl_jc_fail(c, FL_JSON_BAD_UTF8, c->i, "invalid UTF-8 in a string at byte %zu", c->at + c->i);
        c->i += k;
    }
    return fl_jc_syntax(c);
}

/* A key's bytes after unescaping, one at a time (-1 at the end); the key was
   checked already. */
typedef struct fl_jc_it {
    const unsigned char *s;
    size_t i, end;
    unsigned char pend[4];
    int np, kp;
} fl_jc_it;

static inline int fl_jc_next(fl_jc_it *it) {
    if (it->kp < it->np) return it->pend[it->kp++];
    if (it->i >= it->end) return -1;
    unsigned char b = it->s[it->i++];
    if (b != '\\') return b;
    b = it->s[it->i++];
    switch (b) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': break;
    default: return b; /* " \ / */
    }
    unsigned long u = (unsigned long)fl_jc_hex4(it->s + it->i);
    it->i += 4;
    if (u >= 0xD800 && u <= 0xDBFF) {
        u = 0x10000 + ((u - 0xD800) << 10) + ((unsigned long)fl_jc_hex4(it->s + it->i + 2) - 0xDC00);
        it->i += 6;
    }
    unsigned char *q = it->pend;
    if (u < 0x80) q[0] = (unsigned char)u, it->np = 1;
    else if (u < 0x800) q[0] = (unsigned char)(0xC0 | u >> 6), q[1] = (unsigned char)(0x80 | (u & 0x3F)), it->np = 2;
    else if (u < 0x10000)
        q[0] = (unsigned char)(0xE0 | u >> 12), q[1] = (unsigned char)(0x80 | (u >> 6 & 0x3F)),
        q[2] = (unsigned char)(0x80 | (u & 0x3F)), it->np = 3;
    else
        q[0] = (unsigned char)(0xF0 | u >> 18), q[1] = (unsigned char)(0x80 | (u >> 12 & 0x3F)),
        q[2] = (unsigned char)(0x80 | (u >> 6 & 0x3F)), q[3] = (unsigned char)(0x80 | (u & 0x3F)), it->np = 4;
    it->kp = 1;
    return q[0];
}

static inline fl_jc_it fl_jc_iter(const fl_jc *c, size_t off, size_t len) {
    fl_jc_it it = {.s = c->s, .i = off, .end = off + len};
    return it;
}

static inline uint32_t fl_jc_hash(const fl_jc *c, uint32_t obj, size_t off, size_t len) {
    uint32_t h = 2166136261u ^ obj;
    fl_jc_it it = fl_jc_iter(c, off, len);
    for (int b; (b = fl_jc_next(&it)) >= 0;) h = (h ^ (uint32_t)b) * 16777619u;
    return h ? h : 1;
}

static inline int fl_jc_same_key(const fl_jc *c, const fl_jc_key *k, size_t off, size_t len) {
    fl_jc_it a = fl_jc_iter(c, k->off, k->len), b = fl_jc_iter(c, off, len);
    int x, y;
    do x = fl_jc_next(&a), y = fl_jc_next(&b);
    while (x == y && x >= 0);
    return x == y;
}

static inline int fl_jc_grow(fl_jc *c) {
    size_t cap = c->cap ? 2 * c->cap : 64;
    fl_jc_key *keys = (fl_jc_key *)calloc(cap, sizeof *keys);
    if (!keys) return 0;
    for (size_t k = 0; k < c->cap; k++) {
        if (!c->keys[k].obj) continue;
        size_t j = c->keys[k].hash & (cap - 1);
        while (keys[j].obj) j = (j + 1) & (cap - 1);
        keys[j] = c->keys[k];
    }
    free(c->keys);
    c->keys = keys, c->cap = cap;
    return 1;
}

/* The key [off, off+len) of object obj, refused when the object has it. */
static inline fl_json_fault fl_jc_key_add(fl_jc *c, uint32_t obj, size_t off, size_t len) {
    if (2 * (c->used + 1) > c->cap && !fl_jc_grow(c))
        return fl_jc_fail(c, FL_JSON_NO_MEMORY, off, "out of memory checking the JSON");
    uint32_t h = fl_jc_hash(c, obj, off, len);
    size_t j = h & (c->cap - 1);
    for (; c->keys[j].obj; j = (j + 1) & (c->cap - 1)) {
        const fl_jc_key *k = &c->keys[j];
        if (k->obj == obj && k->hash == h && fl_jc_same_key(c, k, off, len)) {
            char shown[80];
            size_t w = 0;
            for (size_t q = off; q < off + len && w + 5 < sizeof shown; q++)
                w += (size_t)snprintf(shown + w, sizeof shown - w, c->s[q] >= 0x20 && c->s[q] < 0x7F ? "%c" : "\\x%02X",
                                      c->s[q]);
            return fl_jc_fail(c, FL_JSON_DUPLICATE_KEY, off - 1, "duplicate key \"%s%s\"", shown,
                              w + 5 >= sizeof shown ? "..." : "");
        }
    }
    c->keys[j] = (fl_jc_key){.off = off, .len = len, .obj = obj, .hash = h};
    c->used++;
    return FL_JSON_FINE;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static inline fl_json_fault fl_jc_number(fl_jc *c) {
    const unsigned char *s = c->s;
    size_t i = c->i;
#define FL_JC_DIGIT(k) ((k) < c->n && s[k] >= '0' && s[k] <= '9')
    if (i < c->n && s[i] == '-') i++;
    if (!FL_JC_DIGIT(i)) goto bad;
    if (s[i++] != '0')
        while (FL_JC_DIGIT(i)) i++;
    if (i < c->n && s[i] == '.') {
        if (!FL_JC_DIGIT(i + 1)) goto bad;
        for (i++; FL_JC_DIGIT(i); i++) {}
    }
    if (i < c->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < c->n && (s[i] == '+' || s[i] == '-')) i++;
        if (!FL_JC_DIGIT(i)) goto bad;
        while (FL_JC_DIGIT(i)) i++;
    }
#undef FL_JC_DIGIT
    c->i = i;
    return FL_JSON_FINE;
bad:
    c->i = i;
    return fl_jc_syntax(c);
}

static inline fl_json_fault fl_jc_value(fl_jc *c, int depth);

static inline fl_json_fault fl_jc_object(fl_jc *c, int depth) {
    uint32_t obj = ++c->objs;
    c->i++;
    fl_jc_space(c);
    if (fl_jc_peek(c) == '}') return c->i++, FL_JSON_FINE;
    for (;;) {
        size_t from = 0, to = 0;
        fl_json_fault f = fl_jc_peek(c) == '"' ? fl_jc_string(c, &from, &to) : fl_jc_syntax(c);
        if (!f) f = fl_jc_key_add(c, obj, from, to - from);
        if (f) return f;
        fl_jc_space(c);
        if (fl_jc_peek(c) != ':') return fl_jc_syntax(c);
        c->i++;
        if ((f = fl_jc_value(c, depth))) return f;
        fl_jc_space(c);
        int b = fl_jc_peek(c);
        c->i += b == ',' || b == '}';
        if (b == '}') return FL_JSON_FINE;
        if (b != ',') return fl_jc_syntax(c);
        fl_jc_space(c);
    }
}

static inline fl_json_fault fl_jc_array(fl_jc *c, int depth) {
    c->i++;
    fl_jc_space(c);
    if (fl_jc_peek(c) == ']') return c->i++, FL_JSON_FINE;
    for (;;) {
        fl_json_fault f = fl_jc_value(c, depth);
        if (f) return f;
        fl_jc_space(c);
        int b = fl_jc_peek(c);
        c->i += b == ',' || b == ']';
        if (b == ']') return FL_JSON_FINE;
        if (b != ',') return fl_jc_syntax(c);
    }
}

static inline fl_json_fault fl_jc_literal(fl_jc *c, const char *word) {
    size_t k = strlen(word);
    if (c->n - c->i < k || memcmp(c->s + c->i, word, k)) return fl_jc_syntax(c);
    c->i += k;
    return FL_JSON_FINE;
}

static inline fl_json_fault fl_jc_value(fl_jc *c, int depth) {
    fl_jc_space(c);
    size_t from = 0, to = 0;
    switch (fl_jc_peek(c)) {
    case '{':
    case '[':
        if (depth >= FL_JSON_MAX_DEPTH)
            return fl_jc_fail(c, FL_JSON_TOO_DEEP, c->i, "nested deeper than %d levels at byte %zu", FL_JSON_MAX_DEPTH,
                              c->at + c->i);
        return c->s[c->i] == '{' ? fl_jc_object(c, depth + 1) : fl_jc_array(c, depth + 1);
    case '"': return fl_jc_string(c, &from, &to);
    case 't': return fl_jc_literal(c, "true");
    case 'f': return fl_jc_literal(c, "false");
    case 'n': return fl_jc_literal(c, "null");
    default: return fl_jc_number(c);
    }
}

/* ---- the check ---- */

/* Checks text[0..len): one JSON value, whitespace around it. at is the
   offset of text in its file (added to the byte offsets reported). Returns
   FL_JSON_FINE, or the first problem's fault with *p filled in. */
static inline fl_json_fault fl_json_check(const char *text, size_t len, size_t at, fl_json_problem *p) {
    fl_jc c = {.s = (const unsigned char *)text, .n = len, .at = at, .p = p};
    memset(p, 0, sizeof *p);
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) c.i = 3;
    fl_json_fault f = fl_jc_value(&c, 0);
    if (!f) {
        fl_jc_space(&c);
        if (c.i < c.n) f = fl_jc_fail(&c, FL_JSON_SYNTAX, c.i, "unexpected bytes after the JSON value at byte %zu", at + c.i);
    }
    free(c.keys);
    return f;
}

#endif
