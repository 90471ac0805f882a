/*
 * text/corpus.c — reading a corpus (plain text or JSON Lines) into documents.
 *
 * The whole input is validated and split in one pass over memory; documents
 * are copied into one owned buffer so the caller gets stable pointers and a
 * single free. The format is chosen by content (see corpus.h): JSON Lines when
 * the first non-blank byte is '{', else the TinyStories plain-text layout.
 *
 * Plain text: a document ends at a line that is exactly "<|endoftext|>"
 * (optionally followed by "\r"); the newline before that line belongs to the
 * separator, not the document. CRLF line ends inside documents become LF, so a
 * corpus saved on Windows tokenizes exactly like the original. Leading and
 * trailing whitespace of a plain-text document is dropped (the TinyStories
 * files put blank lines, sometimes " \n", around separators), and so are
 * documents that are empty or only whitespace. JSON "text" values are kept
 * exactly as given, except that blank ones are dropped too; blank lines are
 * skipped, and each line is held to RFC 8259 (json_strict.h: no key twice,
 * no raw control characters in strings). A UTF-8 byte-order mark at the
 * start of either format is dropped.
 *
 * Errors name the file, the 1-based line and, for bad UTF-8, the 0-based byte
 * offset of the bad byte in the file, so `xxd -s OFFSET` shows it.
 */
#include "corpus.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "ffnlab/utf8.h"  /* fl_utf8_len */
#include "json_strict.h" /* fl_json_strict */

#define EOT_LINE "<|endoftext|>"
#define EOT_LINE_LEN (sizeof EOT_LINE - 1)

/* ---- UTF-8 ----------------------------------------------------------------- */

size_t fl_utf8_check(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* ASCII runs are the common case in English text: skip 8 at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        size_t k = fl_utf8_len(s + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

/* 1-based line number of byte offset off. */
static size_t line_of(const char *data, size_t off) {
    size_t line = 1;
    for (const char *p = data; (p = memchr(p, '\n', (size_t)(data + off - p))) != NULL; p++) line++;
    return line;
}

/* ---- building the document list ------------------------------------------ */

typedef struct builder {
    fl_corpus c;
    size_t cap_docs;
    size_t used;        /* bytes of storage in use */
    size_t *offs;       /* doc start offsets into storage (pointers fixed at the end) */
} builder;

static int is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_space(s[i])) return 0;
    return 1;
}

static fl_status builder_init(builder *b, size_t storage_cap, const char *path, fl_error *err) {
    memset(b, 0, sizeof *b);
    b->c.storage = malloc(storage_cap ? storage_cap : 1);
    if (!b->c.storage) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    return FL_OK;
}

static void builder_free(builder *b) {
    free(b->c.storage);
    free(b->offs);
    free(b->c.lens);
    free(b->c.docs);
    memset(b, 0, sizeof *b);
}

/* Makes room for one more document entry. */
static fl_status builder_reserve(builder *b, const char *path, fl_error *err) {
    if (b->c.n_docs < b->cap_docs) return FL_OK;
    size_t cap = b->cap_docs ? 2 * b->cap_docs : 1024;
    size_t *offs = realloc(b->offs, cap * sizeof *offs);
    if (offs) b->offs = offs;
    size_t *lens = offs ? realloc(b->c.lens, cap * sizeof *lens) : NULL;
    if (lens) b->c.lens = lens;
    if (!offs || !lens) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    b->cap_docs = cap;
    return FL_OK;
}

/* Appends the document already copied to storage[start..used), unless blank.
   trim: drop leading and trailing whitespace (plain text, where the release
   files put blank lines around separators). */
static fl_status builder_close_doc(builder *b, size_t start, int trim, const char *path,
                                   fl_error *err) {
    size_t first = start;
    if (trim) {
        while (b->used > first && is_space(b->c.storage[b->used - 1])) b->used--;
        while (first < b->used && is_space(b->c.storage[first])) first++;
    }
    size_t len = b->used - first;
    if (all_space(b->c.storage + first, len)) {
        b->used = start; /* drop it: blank documents teach nothing */
        return FL_OK;
    }
    fl_status st = builder_reserve(b, path, err);
    if (st) return st;
    b->offs[b->c.n_docs] = first;
    b->c.lens[b->c.n_docs] = len;
    b->c.n_docs++;
    b->c.bytes += len;
    return FL_OK;
}

/* Turns offsets into pointers once storage no longer moves. */
static fl_status builder_finish(builder *b, const char *path, fl_corpus *out, fl_error *err) {
    if (b->c.n_docs == 0) {
        builder_free(b);
        return fl_fail(err, FL_EINVAL, "%s: empty corpus (no documents)", path);
    }
    b->c.docs = malloc(b->c.n_docs * sizeof *b->c.docs);
    if (!b->c.docs) {
        builder_free(b);
        return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < b->c.n_docs; i++) b->c.docs[i] = b->c.storage + b->offs[i];
    free(b->offs);
    *out = b->c;
    return FL_OK;
}

/* ---- plain text ------------------------------------------------------------ */

/* Is line [p, p+n) (without its '\n') the separator? */
static int is_eot_line(const char *p, size_t n) {
    if (n && p[n - 1] == '\r') n--;
    return n == EOT_LINE_LEN && memcmp(p, EOT_LINE, EOT_LINE_LEN) == 0;
}

static fl_status check_utf8_all(const char *data, size_t len, const char *path, fl_error *err) {
    size_t bad = fl_utf8_check(data, len);
    if (bad == len) return FL_OK;
    return fl_fail(err, FL_EINVAL, "%s:%zu: invalid UTF-8 at byte %zu", path, line_of(data, bad),
                   bad);
}

static fl_status parse_text(const char *data, size_t len, size_t pos, const char *path, builder *b,
                            fl_error *err) {
    fl_status st = check_utf8_all(data, len, path, err);
    if (st) return st;
    size_t doc_start = 0;
    int in_doc = 0; /* has the current document any line yet (even an empty one)? */
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        if (is_eot_line(data + pos, n)) {
            if ((st = builder_close_doc(b, doc_start, 1, path, err))) return st;
            doc_start = b->used;
            in_doc = 0;
        } else {
            /* An empty first line still counts: "\n\nText" keeps its blank line. */
            if (in_doc) b->c.storage[b->used++] = '\n';
            size_t k = (n && data[pos + n - 1] == '\r') ? n - 1 : n;
            memcpy(b->c.storage + b->used, data + pos, k);
            b->used += k;
            in_doc = 1;
        }
        pos += n + (nl != NULL);
    }
    return builder_close_doc(b, doc_start, 1, path, err);
}

/* ---- JSON Lines ------------------------------------------------------------ */

/* The document of one line: a JSON object with a string "text". */
static fl_status json_line_text(const cJSON *obj, size_t line, const char *path, builder *b, fl_error *err) {
    const cJSON *text = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, "text") : NULL;
    if (!cJSON_IsObject(obj))
        return fl_fail(err, FL_EINVAL, "%s:%zu: expected a JSON object with a \"text\" field", path, line);
    if (!cJSON_IsString(text) || !text->valuestring)
        return fl_fail(err, FL_EINVAL, "%s:%zu: missing string field \"text\"", path, line);
    /* valid UTF-8 after unescaping too: fl_json_strict refused unpaired surrogates and \u0000 */
    size_t k = strlen(text->valuestring), start = b->used;
    memcpy(b->c.storage + b->used, text->valuestring, k);
    b->used += k;
    return builder_close_doc(b, start, 0, path, err);
}

static fl_status parse_json_line(const char *p, size_t n, size_t line, size_t file_off,
                                 const char *path, builder *b, fl_error *err) {
    size_t bad = fl_utf8_check(p, n);
    if (bad != n)
        return fl_fail(err, FL_EINVAL, "%s:%zu: invalid UTF-8 at byte %zu", path, line,
                       file_off + bad);
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithLengthOpts(p, n, &end, 0);
    if (!obj) {
        size_t col = end && end >= p ? (size_t)(end - p) + 1 : 1;
        return fl_fail(err, FL_EINVAL, "%s:%zu: not valid JSON (near column %zu)", path, line, col);
    }
    fl_status st = fl_json_strict(p, n, path, file_off, (int64_t)line, err);
    if (!st) st = json_line_text(obj, line, path, b, err);
    cJSON_Delete(obj);
    return st;
}

static fl_status parse_jsonl(const char *data, size_t len, size_t pos, const char *path, builder *b,
                             fl_error *err) {
    size_t line = 1;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        if (!all_space(data + pos, n)) {
            fl_status st = parse_json_line(data + pos, n, line, pos, path, b, err);
            if (st) return st;
        }
        pos += n + (nl != NULL);
        line++;
    }
    return FL_OK;
}

/* ---- entry points ---------------------------------------------------------- */

static int looks_like_jsonl(const char *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '{') return 1;
        if (!all_space(data + i, 1)) return 0;
    }
    return 0;
}

fl_status fl_corpus_parse(const char *data, size_t len, const char *path, fl_corpus *out,
                          fl_error *err) {
    memset(out, 0, sizeof *out);
    builder b;
    /* Documents never grow: plain text only shrinks (CRLF, separators) and a
       JSON string is never longer unescaped than escaped. */
    fl_status st = builder_init(&b, len, path, err);
    if (st) return st;
    /* a UTF-8 byte-order mark is no text (Windows editors put one in front);
       byte offsets in messages stay those of the file */
    size_t bom = len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3) ? 3 : 0;
    st = looks_like_jsonl(data + bom, len - bom) ? parse_jsonl(data, len, bom, path, &b, err)
                                                 : parse_text(data, len, bom, path, &b, err);
    if (st) {
        builder_free(&b);
        return st;
    }
    return builder_finish(&b, path, out, err);
}

fl_status fl_corpus_read(const char *path, fl_corpus *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fl_fail(err, FL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fl_fail(err, FL_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (sb.st_size == 0) {
        close(fd);
        return fl_fail(err, FL_EINVAL, "%s: empty corpus (no documents)", path);
    }
    /* mmap rather than read: a multi-GB corpus is then held once (as documents),
       not twice. */
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return fl_fail(err, FL_EIO, "%s: cannot map: %s", path, strerror(e));
    madvise(map, len, MADV_SEQUENTIAL);
    fl_status st = fl_corpus_parse(map, len, path, out, err);
    munmap(map, len);
    return st;
}

void fl_corpus_free(fl_corpus *c) {
    if (!c) return;
    free(c->docs);
    free(c->lens);
    free(c->storage);
    memset(c, 0, sizeof *c);
}
