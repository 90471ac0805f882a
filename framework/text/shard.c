/*
 * text/shard.c — writing and mmap-reading binary token shards (see shard.h).
 *
 * The writer streams little-endian tokens through an atomic file in fixed
 * chunks, so a multi-GB shard needs no second copy in memory. The reader maps
 * the file and checks everything once at open (header fields, exact length,
 * every token below vocab_size): training then reads tokens with no checks in
 * its inner loop, and a damaged file fails at open with one message naming
 * the file and the problem.
 */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"

#define CHUNK_TOKENS 65536

/* Offsets of the header fields. */
#define OFF_MAGIC 0
#define OFF_VERSION 8
#define OFF_TOKEN_BYTES 12
#define OFF_N_TOKENS 16
#define OFF_VOCAB 24

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p) {
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Width that holds every id below vocab_size. */
static uint32_t width_for(uint32_t vocab_size) { return vocab_size <= 65536u ? 2u : 4u; }

static void encode_header(uint8_t *h, uint32_t tb, uint64_t n, uint32_t vocab_size) {
    memset(h, 0, FL_SHARD_HEADER_BYTES);
    memcpy(h + OFF_MAGIC, FL_SHARD_MAGIC, sizeof FL_SHARD_MAGIC); /* includes the NUL */
    put_le32(h + OFF_VERSION, FL_SHARD_VERSION);
    put_le32(h + OFF_TOKEN_BYTES, tb);
    put_le64(h + OFF_N_TOKENS, n);
    put_le32(h + OFF_VOCAB, vocab_size);
}

/* Packs tokens[0..n) into buf at width tb; returns the index of the first
   token out of range, or n. */
static uint64_t pack_chunk(uint8_t *buf, const int32_t *tokens, uint64_t n, uint32_t tb,
                           uint32_t vocab_size) {
    for (uint64_t i = 0; i < n; i++) {
        int32_t t = tokens[i];
        if (t < 0 || (uint32_t)t >= vocab_size) return i;
        if (tb == 2) {
            buf[2 * i] = (uint8_t)t;
            buf[2 * i + 1] = (uint8_t)(t >> 8);
        } else {
            put_le32(buf + 4 * i, (uint32_t)t);
        }
    }
    return n;
}

static fl_status write_tokens(fl_atomic_file *af, const int32_t *tokens, uint64_t n, uint32_t tb,
                              uint32_t vocab_size, fl_error *err) {
    uint8_t *buf = malloc((size_t)CHUNK_TOKENS * tb);
    if (!buf) return fl_fail(err, FL_ENOMEM, "%s: out of memory", af->path);
    fl_status st = FL_OK;
    for (uint64_t at = 0; at < n && !st; at += CHUNK_TOKENS) {
        uint64_t k = n - at < CHUNK_TOKENS ? n - at : CHUNK_TOKENS;
        uint64_t bad = pack_chunk(buf, tokens + at, k, tb, vocab_size);
        if (bad != k)
            st = fl_fail(err, FL_EINVAL, "%s: token %d at position %llu is outside the vocabulary "
                         "(size %u)", af->path, (int)tokens[at + bad],
                         (unsigned long long)(at + bad), (unsigned)vocab_size);
        else if (fwrite(buf, tb, (size_t)k, af->f) != (size_t)k)
            st = fl_fail(err, FL_EIO, "%s: write failed: %s", af->path, strerror(errno));
    }
    free(buf);
    return st;
}

fl_status fl_shard_write(const char *path, const int32_t *tokens, uint64_t n, uint32_t vocab_size,
                         fl_error *err) {
    if (vocab_size == 0 || vocab_size > (uint32_t)INT32_MAX)
        return fl_fail(err, FL_EINVAL, "%s: vocabulary size %u must be in 1..%d", path, (unsigned)vocab_size, INT32_MAX);
    uint32_t tb = width_for(vocab_size);
    uint8_t h[FL_SHARD_HEADER_BYTES];
    encode_header(h, tb, n, vocab_size);
    fl_atomic_file af;
    fl_status st = fl_atomic_open(&af, path, err);
    if (st) return st;
    if (fwrite(h, 1, sizeof h, af.f) != sizeof h)
        st = fl_fail(err, FL_EIO, "%s: write failed: %s", path, strerror(errno));
    if (!st) st = write_tokens(&af, tokens, n, tb, vocab_size, err);
    if (st) {
        fl_atomic_abort(&af);
        return st;
    }
    return fl_atomic_commit(&af, err);
}

/* ---- reading --------------------------------------------------------------- */

static fl_status check_header(const fl_shard *s, const char *path, fl_error *err) {
    const uint8_t *h = s->map;
    if (s->map_len < FL_SHARD_HEADER_BYTES)
        return fl_fail(err, FL_EINVAL, "%s: truncated token shard (%zu bytes, header needs %d)",
                       path, s->map_len, FL_SHARD_HEADER_BYTES);
    if (memcmp(h + OFF_MAGIC, FL_SHARD_MAGIC, sizeof FL_SHARD_MAGIC) != 0)
        return fl_fail(err, FL_EINVAL, "%s: not an ffnlab token shard (bad magic)", path);
    uint32_t version = get_le32(h + OFF_VERSION);
    if (version != FL_SHARD_VERSION)
        return fl_fail(err, FL_EINVAL, "%s: token shard version %u, this build reads version %u",
                       path, (unsigned)version, (unsigned)FL_SHARD_VERSION);
    uint32_t tb = get_le32(h + OFF_TOKEN_BYTES), vocab = get_le32(h + OFF_VOCAB);
    if (tb != 2 && tb != 4)
        return fl_fail(err, FL_EINVAL, "%s: bad token width %u (must be 2 or 4)", path, (unsigned)tb);
    if (vocab == 0 || (tb == 2 && vocab > 65536u))
        return fl_fail(err, FL_EINVAL, "%s: vocabulary size %u does not fit %u-byte tokens", path,
                       (unsigned)vocab, (unsigned)tb);
    if (vocab > (uint32_t)INT32_MAX) /* ids are int32 once read: a larger one would turn negative */
        return fl_fail(err, FL_EINVAL, "%s: vocabulary size %u is above the largest token id ffnlab takes (%d)", path,
                       (unsigned)vocab, INT32_MAX);
    uint64_t n = get_le64(h + OFF_N_TOKENS);
    uint64_t body = s->map_len - FL_SHARD_HEADER_BYTES;
    if (n > body / tb || n * tb != body)
        return fl_fail(err, FL_EINVAL, "%s: %s token shard: header says %llu tokens (%llu bytes), "
                       "file has %llu bytes after the header", path,
                       n > body / tb ? "truncated" : "oversized", (unsigned long long)n,
                       (unsigned long long)(n > UINT64_MAX / tb ? UINT64_MAX : n * tb),
                       (unsigned long long)body);
    return FL_OK;
}

static fl_status check_tokens(const fl_shard *s, const char *path, fl_error *err) {
    const uint8_t *p = s->tokens;
    for (uint64_t i = 0; i < s->n_tokens; i++) {
        uint32_t t = s->token_bytes == 2 ? (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8
                                         : get_le32(p + 4 * i);
        if (t >= s->vocab_size)
            return fl_fail(err, FL_EINVAL, "%s: token %u at position %llu is outside the "
                           "vocabulary (size %u)", path, (unsigned)t, (unsigned long long)i,
                           (unsigned)s->vocab_size);
    }
    return FL_OK;
}

/* Maps path read-only into s->map / s->map_len. */
static fl_status map_file(const char *path, fl_shard *s, fl_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fl_fail(err, FL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fl_fail(err, FL_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    s->map_len = (size_t)sb.st_size;
    if (s->map_len < FL_SHARD_HEADER_BYTES) { /* also keeps mmap away from length 0 */
        close(fd);
        return fl_fail(err, FL_EINVAL, "%s: truncated token shard (%zu bytes, header needs %d)",
                       path, s->map_len, FL_SHARD_HEADER_BYTES);
    }
    void *m = mmap(NULL, s->map_len, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return fl_fail(err, FL_EIO, "%s: cannot map: %s", path, strerror(e));
    s->map = m;
    return FL_OK;
}

fl_status fl_shard_open(const char *path, fl_shard *out, fl_error *err) {
    fl_shard s;
    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    fl_status st = map_file(path, &s, err);
    if (st) return st;
    if ((st = check_header(&s, path, err))) {
        fl_shard_close(&s);
        return st;
    }
    s.token_bytes = get_le32(s.map + OFF_TOKEN_BYTES);
    s.vocab_size = get_le32(s.map + OFF_VOCAB);
    s.n_tokens = get_le64(s.map + OFF_N_TOKENS);
    s.tokens = s.map + FL_SHARD_HEADER_BYTES;
    if ((st = check_tokens(&s, path, err))) {
        fl_shard_close(&s);
        return st;
    }
    *out = s;
    return FL_OK;
}

void fl_shard_read(const fl_shard *s, uint64_t start, uint64_t n, int32_t *dst) {
    const uint8_t *p = s->tokens;
    if (s->token_bytes == 2) {
        p += 2 * start;
        for (uint64_t i = 0; i < n; i++) dst[i] = (int32_t)((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8);
    } else {
        p += 4 * start;
        for (uint64_t i = 0; i < n; i++) dst[i] = (int32_t)get_le32(p + 4 * i);
    }
}

void fl_shard_close(fl_shard *s) {
    if (!s) return;
    if (s->map) munmap((void *)s->map, s->map_len);
    memset(s, 0, sizeof *s);
}
