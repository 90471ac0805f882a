/*
 * core/safetensors.c — .safetensors files, exactly as huggingface/safetensors
 * defines them, so checkpoints open in common tools and theirs open here.
 *
 * Layout: an 8-byte little-endian u64 N, N bytes of JSON header, then the
 * data area. The header maps each tensor name to {"dtype", "shape",
 * "data_offsets": [begin, end]} with offsets relative to the data area, plus
 * an optional "__metadata__" object of string → string.
 *
 * Writing: tensors go into the header and the data area in the order given
 * (metadata first, as the reference writer does); the header is padded with
 * spaces to a multiple of 8 so every tensor of an aligned file starts 8-byte
 * aligned. The file goes through fl_atomic_* (temp file, fsync, rename), so an
 * error leaves the previous file, or nothing, never half a checkpoint.
 *
 * Reading: the file is mmap'ed and the header checked before anything is
 * handed out: length within the file and at most 100 MB (a hostile length
 * must not make us allocate), JSON object, every entry well-typed with a known
 * dtype, shape × dtype size equal to its byte range, ranges inside the data
 * area, and — as the reference reader requires — the ranges tile the data area
 * exactly (no overlaps, no holes). The first problem is reported as
 * `PATH: corrupt safetensors header: WHY (tensor "NAME")`. Tensor data points
 * into the mapping; a tensor whose bytes are not aligned for its dtype (a
 * foreign file with an unpadded header) is copied once so callers can read it
 * as float/int arrays without undefined behaviour.
 *
 * Data is written and read as host memory, which is little-endian on every
 * platform ffnlab builds for; a big-endian build stops at compile time.
 */
#include "safetensors.h"

#include <cjson/cJSON.h> /* header JSON */
#include <errno.h>
#include <fcntl.h>       /* open */
#include <inttypes.h>    /* PRId64 */
#include <stdarg.h>      /* va_list for corrupt() */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>    /* mmap */
#include <sys/stat.h>    /* fstat */
#include <unistd.h>      /* close */

#include "error.h"   /* fl_fail */
#include "fsutil.h"  /* fl_atomic_* */
#include "json_strict.h" /* fl_json_strict */
#include "test_hook.h"   /* fl_test_pause */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this code writes host memory as is"
#endif

#define HEADER_MAX (100u * 1000u * 1000u) /* the reference reader's limit */
#define EXACT_MAX 9007199254740992.0       /* 2^53: integers a JSON number holds exactly */
#define META_KEY "__metadata__"

/* ---- dtypes --------------------------------------------------------------- */

static const struct {
    const char *name;
    int32_t dtype;
} DTYPES[] = {{"F32", FL_F32}, {"BF16", FL_BF16}, {"I32", FL_I32}, {"I64", FL_I64}, {"U8", FL_U8}};

#define N_DTYPES (sizeof DTYPES / sizeof DTYPES[0])

static const char *dtype_name(int32_t dtype) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dtype == dtype) return DTYPES[i].name;
    return NULL;
}

static int dtype_from_name(const char *s, int32_t *out) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (!strcmp(DTYPES[i].name, s)) return *out = DTYPES[i].dtype, 1;
    return 0;
}

/* Bytes of a tensor, or -1 when the shape is negative or the size exceeds
   2^53 (no real tensor is that big; past it offsets lose precision in JSON). */
static int64_t tensor_bytes(int32_t dtype, int32_t ndim, const int64_t *shape) {
    double bytes = (double)fl_dtype_size(dtype);
    int64_t n = (int64_t)fl_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        bytes *= (double)shape[i];
        if (bytes > EXACT_MAX) return -1;
        n *= shape[i];
    }
    return n;
}

/* ---- writing -------------------------------------------------------------- */

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that occurs twice in names[0..n), or NULL. Sorts names. */
static const char *first_duplicate(const char **names, size_t n) {
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return names[i];
    return NULL;
}

static fl_status check_entry(const char *path, const fl_st_entry *e, size_t i, int64_t *bytes,
                             fl_error *err) {
    if (!e->name || !e->name[0])
        return fl_fail(err, FL_EINVAL, "%s: tensor %zu has no name", path, i);
    if (!strcmp(e->name, META_KEY))
        return fl_fail(err, FL_EINVAL, "%s: \"%s\" is reserved, not a tensor name", path, META_KEY);
    if (!dtype_name(e->dtype))
        return fl_fail(err, FL_EINVAL, "%s: tensor \"%s\" has unknown dtype %d", path, e->name,
                       (int)e->dtype);
    if (e->ndim < 0 || e->ndim > FL_MAX_DIMS)
        return fl_fail(err, FL_EINVAL, "%s: tensor \"%s\" has %d dimensions (0..%d allowed)", path,
                       e->name, (int)e->ndim, FL_MAX_DIMS);
    *bytes = tensor_bytes(e->dtype, e->ndim, e->shape);
    if (*bytes < 0)
        return fl_fail(err, FL_EINVAL, "%s: tensor \"%s\" has a negative or oversized shape", path,
                       e->name);
    if (*bytes > 0 && !e->data)
        return fl_fail(err, FL_EINVAL, "%s: tensor \"%s\" has no data", path, e->name);
    return FL_OK;
}

/* A JSON integer written as raw text: cJSON's number printer may round
   values with more than 15 digits. */
static cJSON *json_int(int64_t v) {
    char text[32];
    snprintf(text, sizeof text, "%" PRId64, v);
    return cJSON_CreateRaw(text);
}

static cJSON *tensor_json(const fl_st_entry *e, int64_t begin, int64_t end) {
    cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
    int ok = t && shape && offs && cJSON_AddStringToObject(t, "dtype", dtype_name(e->dtype));
    for (int i = 0; ok && i < e->ndim; i++) ok = cJSON_AddItemToArray(shape, json_int(e->shape[i]));
    ok = ok && cJSON_AddItemToArray(offs, json_int(begin)) && cJSON_AddItemToArray(offs, json_int(end));
    if (ok && cJSON_AddItemToObject(t, "shape", shape)) {
        shape = NULL;
        if (cJSON_AddItemToObject(t, "data_offsets", offs)) return t;
    }
    cJSON_Delete(shape);
    cJSON_Delete(offs);
    cJSON_Delete(t);
    return NULL;
}

static fl_status meta_json(const char *path, const char *const *meta, cJSON *root, fl_error *err) {
    size_t n = 0;
    while (meta[2 * n]) {
        if (!meta[2 * n + 1])
            return fl_fail(err, FL_EINVAL, "%s: metadata key \"%s\" has no value", path, meta[2 * n]);
        n++;
    }
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    cJSON *obj = cJSON_CreateObject();
    fl_status st = FL_OK;
    if (!keys || !obj || !cJSON_AddItemToObject(root, META_KEY, obj)) {
        cJSON_Delete(obj);
        st = fl_fail(err, FL_ENOMEM, "%s: out of memory building the header", path);
    }
    for (size_t i = 0; !st && i < n; i++) {
        keys[i] = meta[2 * i];
        if (!cJSON_AddStringToObject(obj, meta[2 * i], meta[2 * i + 1]))
            st = fl_fail(err, FL_ENOMEM, "%s: out of memory building the header", path);
    }
    const char *dup = st ? NULL : first_duplicate(keys, n);
    if (dup) st = fl_fail(err, FL_EINVAL, "%s: metadata key \"%s\" given twice", path, dup);
    free(keys);
    return st;
}

/* The header JSON, padded with spaces to a multiple of 8 (malloc'ed). */
static fl_status build_header(const char *path, const fl_st_entry *entries, size_t n,
                              const int64_t *bytes, const char *const *meta, char **out,
                              size_t *len, fl_error *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return fl_fail(err, FL_ENOMEM, "%s: out of memory building the header", path);
    fl_status st = meta ? meta_json(path, meta, root, err) : FL_OK;
    int64_t off = 0;
    for (size_t i = 0; !st && i < n; i++) {
        cJSON *t = tensor_json(&entries[i], off, off + bytes[i]);
        if (!t || !cJSON_AddItemToObject(root, entries[i].name, t)) {
            cJSON_Delete(t);
            st = fl_fail(err, FL_ENOMEM, "%s: out of memory building the header", path);
        }
        off += bytes[i];
    }
    char *text = st ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (st) return st;
    if (!text) return fl_fail(err, FL_ENOMEM, "%s: out of memory building the header", path);
    size_t k = strlen(text), padded = (k + 7) / 8 * 8;
    char *buf = padded <= HEADER_MAX ? malloc(padded) : NULL;
    if (buf) {
        memcpy(buf, text, k);
        memset(buf + k, ' ', padded - k);
    }
    cJSON_free(text);
    if (!buf)
        return padded > HEADER_MAX
                   ? fl_fail(err, FL_EINVAL, "%s: header of %zu bytes exceeds the 100 MB limit", path, padded)
                   : fl_fail(err, FL_ENOMEM, "%s: out of memory building the header", path);
    *out = buf;
    *len = padded;
    return FL_OK;
}

static fl_status write_all(fl_atomic_file *af, const char *header, size_t hlen,
                           const fl_st_entry *entries, size_t n, const int64_t *bytes) {
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (fwrite(prefix, 1, 8, af->f) != 8 || fwrite(header, 1, hlen, af->f) != hlen) return FL_EIO;
    for (size_t i = 0; i < n; i++) {
        if (bytes[i] && fwrite(entries[i].data, 1, (size_t)bytes[i], af->f) != (size_t)bytes[i])
            return FL_EIO;
        if (i == n / 2 && fflush(af->f) == 0) fl_test_pause("safetensors.half"); /* half of it on disk */
    }
    return FL_OK;
}

/* Names, dtypes, shapes and data checked; per-tensor byte sizes into bytes. */
static fl_status check_entries(const char *path, const fl_st_entry *entries, size_t n,
                               int64_t *bytes, fl_error *err) {
    for (size_t i = 0; i < n; i++) {
        fl_status st = check_entry(path, &entries[i], i, &bytes[i], err);
        if (st) return st;
    }
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) names[i] = entries[i].name;
    const char *dup = first_duplicate(names, n);
    fl_status st = dup ? fl_fail(err, FL_EINVAL, "%s: tensor \"%s\" given twice", path, dup) : FL_OK;
    free(names);
    return st;
}

fl_status fl_safetensors_write(const char *path, const fl_st_entry *entries, size_t n,
                               const char *const *meta, fl_error *err) {
    int64_t *bytes = malloc((n ? n : 1) * sizeof *bytes);
    if (!bytes) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    char *header = NULL;
    size_t hlen = 0;
    fl_status st = check_entries(path, entries, n, bytes, err);
    if (!st) st = build_header(path, entries, n, bytes, meta, &header, &hlen, err);
    fl_atomic_file af;
    if (!st) st = fl_atomic_open(&af, path, err);
    if (!st) {
        if (write_all(&af, header, hlen, entries, n, bytes) != FL_OK) {
            int e = errno;
            fl_atomic_abort(&af);
            st = fl_fail(err, FL_EIO, "%s: write failed: %s", path, strerror(e ? e : EIO));
        } else {
            st = fl_atomic_commit(&af, err);
        }
    }
    free(header);
    free(bytes);
    return st;
}

/* ---- reading -------------------------------------------------------------- */

struct fl_st_file {
    void *map;            /* the whole file, read-only */
    size_t map_len;
    cJSON *header;        /* entry names and metadata point into it */
    const cJSON *meta;    /* "__metadata__" object or NULL */
    size_t n;
    fl_st_entry *entries; /* file (header) order */
    size_t *by_name;      /* indexes of entries sorted by name, for find */
    int64_t *begin;       /* data_offsets, relative to the data area */
    int64_t *end;
    void **copies;        /* aligned copies of misaligned tensors (n slots) */
};

/* Reports a header problem; tensor may be NULL. */
static fl_status corrupt(fl_error *err, const char *path, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static fl_status corrupt(fl_error *err, const char *path, const char *tensor, const char *fmt, ...) {
    char why[FL_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (tensor)
        return fl_fail(err, FL_EINVAL, "%s: corrupt safetensors header: %s (tensor \"%s\")", path,
                       why, tensor);
    return fl_fail(err, FL_EINVAL, "%s: corrupt safetensors header: %s", path, why);
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_index(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= EXACT_MAX) || d != (double)(int64_t)d) return 0;
    *out = (int64_t)d;
    return 1;
}

static fl_status parse_shape(const char *path, const char *name, const cJSON *shape,
                             fl_st_entry *e, fl_error *err) {
    if (!cJSON_IsArray(shape))
        return corrupt(err, path, name, "\"shape\" is missing or not an array");
    int nd = cJSON_GetArraySize(shape);
    if (nd > FL_MAX_DIMS)
        return corrupt(err, path, name, "shape has %d dimensions; at most %d are supported", nd,
                       FL_MAX_DIMS);
    e->ndim = nd;
    for (int i = 0; i < FL_MAX_DIMS; i++) e->shape[i] = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++)
        if (!json_index(d, &e->shape[i]))
            return corrupt(err, path, name, "shape[%d] is not a non-negative integer", i);
    return FL_OK;
}

static fl_status parse_offsets(const char *path, const char *name, const cJSON *offs,
                               int64_t data_len, int64_t *begin, int64_t *end, fl_error *err) {
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_index(offs->child, begin) || !json_index(offs->child->next, end))
        return corrupt(err, path, name, "\"data_offsets\" is missing or not [begin, end] integers");
    if (*begin > *end)
        return corrupt(err, path, name, "data_offsets [%" PRId64 ", %" PRId64 "] end before they begin",
                       *begin, *end);
    if (*end > data_len)
        return corrupt(err, path, name,
                       "data_offsets [%" PRId64 ", %" PRId64 "] reach past the %" PRId64
                       " bytes of data",
                       *begin, *end, data_len);
    return FL_OK;
}

static fl_status parse_tensor(const char *path, const cJSON *item, int64_t data_len,
                              fl_st_entry *e, int64_t *begin, int64_t *end, fl_error *err) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item)) return corrupt(err, path, name, "entry is not an object");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dt)) return corrupt(err, path, name, "\"dtype\" is missing or not a string");
    if (!dtype_from_name(dt->valuestring, &e->dtype))
        return corrupt(err, path, name, "unknown dtype \"%s\" (ffnlab reads F32, BF16, I32, I64, U8)",
                       dt->valuestring);
    fl_status st = parse_shape(path, name, cJSON_GetObjectItemCaseSensitive(item, "shape"), e, err);
    if (!st)
        st = parse_offsets(path, name, cJSON_GetObjectItemCaseSensitive(item, "data_offsets"),
                           data_len, begin, end, err);
    if (st) return st;
    int64_t want = tensor_bytes(e->dtype, e->ndim, e->shape);
    if (want < 0) return corrupt(err, path, name, "shape is impossibly large (over 2^53 bytes)");
    if (want != *end - *begin)
        return corrupt(err, path, name,
                       "shape and dtype %s need %" PRId64 " bytes but data_offsets span %" PRId64,
                       dt->valuestring, want, *end - *begin);
    return FL_OK;
}

static fl_status parse_meta(const char *path, const cJSON *item, fl_error *err) {
    if (!cJSON_IsObject(item)) return corrupt(err, path, NULL, "\"%s\" is not an object", META_KEY);
    for (const cJSON *kv = item->child; kv; kv = kv->next)
        if (!cJSON_IsString(kv))
            return corrupt(err, path, NULL, "\"%s\" value of \"%s\" is not a string", META_KEY,
                           kv->string);
    return FL_OK;
}

/* qsort has no context argument, so the file being sorted is passed in this
   variable for the duration of one qsort call; thread-local so files opened
   on different threads at once do not see each other's. */
static _Thread_local const fl_st_file *sort_file;

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(sort_file->entries[*(const size_t *)a].name,
                  sort_file->entries[*(const size_t *)b].name);
}

static int cmp_by_offset(const void *a, const void *b) {
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (sort_file->begin[i] != sort_file->begin[j]) return sort_file->begin[i] < sort_file->begin[j] ? -1 : 1;
    if (sort_file->end[i] != sort_file->end[j]) return sort_file->end[i] < sort_file->end[j] ? -1 : 1;
    return 0;
}

/* by_name for fl_safetensors_find; names are unique (fl_json_strict refused
   a key twice). */
static void sort_names(fl_st_file *f) {
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = i;
    sort_file = f;
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_by_name);
}

/* The byte ranges must tile [0, data_len) exactly, as the reference reader
   demands: no overlap (two tensors sharing bytes) and no hole (bytes that no
   tensor owns, which would let a file hide other content). */
static fl_status check_tiling(fl_st_file *f, const char *path, int64_t data_len, fl_error *err) {
    size_t *order = malloc((f->n ? f->n : 1) * sizeof *order);
    if (!order) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < f->n; i++) order[i] = i;
    sort_file = f;
    qsort(order, f->n, sizeof *order, cmp_by_offset);
    int64_t at = 0;
    fl_status st = FL_OK;
    for (size_t k = 0; k < f->n && !st; k++) {
        size_t i = order[k];
        if (f->begin[i] < at)
            st = corrupt(err, path, f->entries[i].name,
                         "bytes [%" PRId64 ", %" PRId64 ") overlap tensor \"%s\"", f->begin[i],
                         f->end[i], f->entries[order[k - 1]].name);
        else if (f->begin[i] > at)
            st = corrupt(err, path, f->entries[i].name,
                         "data bytes [%" PRId64 ", %" PRId64 ") before it belong to no tensor", at,
                         f->begin[i]);
        at = f->end[i];
    }
    if (!st && at != data_len)
        st = corrupt(err, path, NULL,
                     "tensors cover %" PRId64 " bytes but the data area has %" PRId64, at, data_len);
    free(order);
    return st;
}

/* Points each entry at its bytes; copies those not aligned for their dtype. */
static fl_status place_data(fl_st_file *f, const char *path, const unsigned char *data,
                            fl_error *err) {
    for (size_t i = 0; i < f->n; i++) {
        const unsigned char *p = data + f->begin[i];
        size_t len = (size_t)(f->end[i] - f->begin[i]);
        f->entries[i].data = p;
        if (!len || (uintptr_t)p % fl_dtype_size(f->entries[i].dtype) == 0) continue;
        f->copies[i] = malloc(len);
        if (!f->copies[i]) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
        memcpy(f->copies[i], p, len);
        f->entries[i].data = f->copies[i];
    }
    return FL_OK;
}

static fl_status alloc_tables(fl_st_file *f, size_t n, const char *path, fl_error *err) {
    size_t k = n ? n : 1;
    f->entries = calloc(k, sizeof *f->entries);
    f->by_name = calloc(k, sizeof *f->by_name);
    f->begin = calloc(k, sizeof *f->begin);
    f->end = calloc(k, sizeof *f->end);
    f->copies = calloc(k, sizeof *f->copies);
    if (!f->entries || !f->by_name || !f->begin || !f->end || !f->copies)
        return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    return FL_OK;
}

/* The header text (after the length field) into a cJSON tree. Copied into a
   NUL-terminated buffer first so the parser can never run off the mapping. */
static fl_status parse_json(fl_st_file *f, const char *path, const char *text, size_t hlen,
                            fl_error *err) {
    char *buf = malloc(hlen + 1);
    if (!buf) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    memcpy(buf, text, hlen);
    buf[hlen] = 0;
    const char *end = NULL;
    f->header = cJSON_ParseWithLengthOpts(buf, hlen, &end, 0);
    size_t at = end ? (size_t)(end - buf) : 0;
    fl_status st = FL_OK;
    if (!f->header) {
        st = corrupt(err, path, NULL, "invalid JSON near byte %zu of the header", at);
    } else {
        while (at < hlen && (buf[at] == ' ' || buf[at] == '\t' || buf[at] == '\n' || buf[at] == '\r'))
            at++;
        if (at < hlen) st = corrupt(err, path, NULL, "unexpected bytes after the JSON at byte %zu", at);
        else if (!cJSON_IsObject(f->header)) st = corrupt(err, path, NULL, "header is not a JSON object");
    }
    if (!st) { /* a name with a NUL byte or invalid UTF-8, a tensor listed twice: refused */
        char where[FL_ERRMSG_LEN];
        snprintf(where, sizeof where, "%s: corrupt safetensors header", path);
        st = fl_json_strict(buf, hlen, where, 8, 0, err);
    }
    free(buf);
    return st;
}

static fl_status parse_entries(fl_st_file *f, const char *path, int64_t data_len, fl_error *err) {
    size_t n = 0;
    for (const cJSON *it = f->header->child; it; it = it->next) n += strcmp(it->string, META_KEY) != 0;
    fl_status st = alloc_tables(f, n, path, err);
    for (const cJSON *it = f->header->child; it && !st; it = it->next) {
        if (!strcmp(it->string, META_KEY)) {
            st = parse_meta(path, it, err);
            f->meta = it;
            continue;
        }
        st = parse_tensor(path, it, data_len, &f->entries[f->n], &f->begin[f->n], &f->end[f->n], err);
        f->n++;
    }
    return st;
}

static fl_status parse_file(fl_st_file *f, const char *path, fl_error *err) {
    const unsigned char *b = f->map;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
    size_t avail = f->map_len - 8;
    if (hlen > avail)
        return corrupt(err, path, NULL, "header length %" PRIu64 " exceeds the %zu bytes after it",
                       hlen, avail);
    if (hlen > HEADER_MAX)
        return corrupt(err, path, NULL, "header length %" PRIu64 " exceeds the 100 MB limit", hlen);
    if (hlen < 2) return corrupt(err, path, NULL, "header length %" PRIu64 " is too short for JSON", hlen);
    int64_t data_len = (int64_t)(avail - hlen);
    fl_status st = parse_json(f, path, (const char *)b + 8, (size_t)hlen, err);
    if (!st) st = parse_entries(f, path, data_len, err);
    if (!st) sort_names(f);
    if (!st) st = check_tiling(f, path, data_len, err);
    if (!st) st = place_data(f, path, b + 8 + hlen, err);
    return st;
}

/* The file mapped read-only into f. */
static fl_status map_file(fl_st_file *f, const char *path, fl_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fl_fail(err, FL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    fl_status st = FL_OK;
    if (fstat(fd, &sb) != 0) st = fl_fail(err, FL_EIO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) st = fl_fail(err, FL_EINVAL, "%s: not a regular file", path);
    else if (sb.st_size < 8)
        st = corrupt(err, path, NULL, "file is %lld bytes, too short for the 8-byte length field",
                     (long long)sb.st_size);
    if (!st) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) st = fl_fail(err, FL_EIO, "%s: cannot map: %s", path, strerror(errno));
        else f->map = m, f->map_len = (size_t)sb.st_size;
    }
    close(fd);
    return st;
}

fl_status fl_safetensors_open(const char *path, fl_st_file **out, fl_error *err) {
    *out = NULL;
    fl_st_file *f = calloc(1, sizeof *f);
    if (!f) return fl_fail(err, FL_ENOMEM, "%s: out of memory", path);
    fl_status st = map_file(f, path, err);
    if (!st) st = parse_file(f, path, err);
    if (st) {
        fl_safetensors_close(f);
        return st;
    }
    *out = f;
    return FL_OK;
}

void fl_safetensors_close(fl_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    for (size_t i = 0; f->copies && i < f->n; i++) free(f->copies[i]);
    free(f->copies);
    free(f->entries);
    free(f->by_name);
    free(f->begin);
    free(f->end);
    cJSON_Delete(f->header);
    free(f);
}

size_t fl_safetensors_count(const fl_st_file *f) { return f->n; }

const fl_st_entry *fl_safetensors_at(const fl_st_file *f, size_t i) {
    return i < f->n ? &f->entries[i] : NULL;
}

const fl_st_entry *fl_safetensors_find(const fl_st_file *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->entries[f->by_name[mid]].name, name);
        if (c == 0) return &f->entries[f->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *fl_safetensors_meta(const fl_st_file *f, const char *key) {
    const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
