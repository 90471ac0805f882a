/*
 * text/prepare.c — corpus + tokenizer → train.bin / val.bin (see prepare.h).
 *
 * Documents are encoded in parallel in fixed-size batches (OpenMP, dynamic
 * schedule: story lengths vary), then appended in document order, so the
 * shards are byte-identical whatever the thread count. Batching bounds the
 * memory held as per-document id arrays; the two growing token arrays are the
 * only corpus-sized allocations. Which split a document joins depends only on
 * its index (floor((i+1)f) > floor(if)), which spreads validation documents
 * evenly through the corpus and gives round(n*f) of them.
 */
#include "prepare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fsutil.h"
#include "shard.h"

#define BATCH_DOCS 4096

/* A growing array of token ids. */
typedef struct tokbuf {
    int32_t *ids;
    uint64_t n, cap;
} tokbuf;

static int tokbuf_append(tokbuf *b, const int32_t *ids, size_t n, int32_t eot) {
    if (b->n + n + 1 > b->cap) {
        uint64_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n + 1) cap *= 2;
        int32_t *p = realloc(b->ids, cap * sizeof *p);
        if (!p) return -1;
        b->ids = p;
        b->cap = cap;
    }
    if (n) memcpy(b->ids + b->n, ids, n * sizeof *ids);
    b->n += n;
    b->ids[b->n++] = eot; /* every document ends with <|endoftext|> */
    return 0;
}

static int goes_to_val(size_t i, double f) {
    return floor((double)(i + 1) * f) > floor((double)i * f);
}

/* One batch's encodings, indexed from the batch's first document. */
typedef struct batch {
    int32_t *ids[BATCH_DOCS];
    size_t n[BATCH_DOCS];
    fl_status st[BATCH_DOCS];
    fl_error err[BATCH_DOCS];
} batch;

static void encode_batch(const fl_corpus *c, const fl_tokenizer *tok, size_t first, size_t count,
                         batch *b) {
    long cnt = (long)count;
#pragma omp parallel for schedule(dynamic, 16)
    for (long j = 0; j < cnt; j++) {
        size_t i = first + (size_t)j;
        b->ids[j] = NULL;
        b->n[j] = 0;
        b->st[j] = fl_tokenizer_encode(tok, c->docs[i], c->lens[i], &b->ids[j], &b->n[j], &b->err[j]);
    }
}

/* Appends a batch in document order; reports the first failure by index. */
static fl_status collect_batch(batch *b, size_t first, size_t count, double f, int32_t eot,
                               tokbuf *train, tokbuf *val, fl_error *err) {
    fl_status st = FL_OK;
    for (size_t j = 0; j < count; j++) {
        if (!st && b->st[j]) {
            st = b->st[j];
            if (err) *err = b->err[j];
            fl_error_prefix(err, "document %zu", first + j);
        }
        if (!st && tokbuf_append(goes_to_val(first + j, f) ? val : train, b->ids[j], b->n[j], eot))
            st = fl_fail(err, FL_ENOMEM, "out of memory collecting tokens");
        free(b->ids[j]);
        b->ids[j] = NULL;
    }
    return st;
}

static fl_status encode_all(const fl_corpus *c, const fl_tokenizer *tok, double f, int32_t eot,
                            tokbuf *train, tokbuf *val, fl_error *err) {
    batch *b = calloc(1, sizeof *b);
    if (!b) return fl_fail(err, FL_ENOMEM, "out of memory");
    fl_status st = FL_OK;
    for (size_t first = 0; first < c->n_docs && !st; first += BATCH_DOCS) {
        size_t count = c->n_docs - first < BATCH_DOCS ? c->n_docs - first : BATCH_DOCS;
        encode_batch(c, tok, first, count, b);
        st = collect_batch(b, first, count, f, eot, train, val, err);
    }
    free(b);
    return st;
}

static fl_status write_shards(const char *out_dir, const tokbuf *train, const tokbuf *val,
                              uint32_t vocab, fl_error *err) {
    char path[4096];
    fl_status st = fl_mkdirs(out_dir, err);
    if (!st) st = fl_path_join(path, sizeof path, out_dir, "train.bin", err);
    if (!st) st = fl_shard_write(path, train->ids, train->n, vocab, err);
    if (!st) st = fl_path_join(path, sizeof path, out_dir, "val.bin", err);
    if (!st) st = fl_shard_write(path, val->ids, val->n, vocab, err);
    return st;
}

fl_status fl_data_prepare(const fl_corpus *c, const fl_tokenizer *tok, double val_fraction,
                          const char *out_dir, uint64_t *n_train, uint64_t *n_val, fl_error *err) {
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return fl_fail(err, FL_EINVAL, "validation fraction %g must be in [0, 1)", val_fraction);
    int32_t eot = fl_tokenizer_eot(tok), vocab = fl_tokenizer_vocab_size(tok);
    if (eot < 0)
        return fl_fail(err, FL_EINVAL, "tokenizer has no %s token to separate documents",
                       FL_EOT_TEXT);
    if (vocab <= 0) return fl_fail(err, FL_EINVAL, "tokenizer has an empty vocabulary");
    tokbuf train = {0}, val = {0};
    fl_status st = encode_all(c, tok, val_fraction, eot, &train, &val, err);
    if (!st) st = write_shards(out_dir, &train, &val, (uint32_t)vocab, err);
    if (!st) {
        if (n_train) *n_train = train.n;
        if (n_val) *n_val = val.n;
    }
    free(train.ids);
    free(val.ids);
    return st;
}
