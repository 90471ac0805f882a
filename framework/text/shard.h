/*
 * text/shard.h — binary token shards, read through mmap.
 *
 * Layout (little-endian): a 64-byte header
 *     magic "FFNLTOK\0" (8 bytes), u32 version (1), u32 token_bytes (2 or 4),
 *     u64 n_tokens, u32 vocab_size, then zero padding to 64 bytes,
 * followed by n_tokens tokens of token_bytes each (uint16 when the vocabulary
 * fits, else uint32). Documents are separated by the <|endoftext|> id. The
 * reader validates magic, version, token width, that the file length equals
 * header + n_tokens * token_bytes, that vocab_size fits an int32 id, and
 * that every token is < vocab_size
 * (checked once at open), so a truncated or foreign file is one clear error.
 */
#ifndef FFNLAB_SHARD_H
#define FFNLAB_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/status.h"

#define FL_SHARD_MAGIC "FFNLTOK"
#define FL_SHARD_VERSION 1u
#define FL_SHARD_HEADER_BYTES 64

typedef struct fl_shard {
    const uint8_t *map;     /* whole file */
    size_t map_len;
    const void *tokens;     /* map + header */
    uint64_t n_tokens;
    uint32_t token_bytes;
    uint32_t vocab_size;
} fl_shard;

/* Atomic write; token width chosen from vocab_size. */
fl_status fl_shard_write(const char *path, const int32_t *tokens, uint64_t n, uint32_t vocab_size,
                         fl_error *err);
fl_status fl_shard_open(const char *path, fl_shard *out, fl_error *err);
/* dst[i] = token start+i for i < n (caller keeps start+n <= n_tokens) */
void fl_shard_read(const fl_shard *s, uint64_t start, uint64_t n, int32_t *dst);
void fl_shard_close(fl_shard *s);

#endif
