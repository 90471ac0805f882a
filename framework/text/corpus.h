/*
 * text/corpus.h — reading a training corpus into documents.
 *
 * Two formats, chosen by content, not by name: JSON Lines whose objects have a
 * "text" field (first non-blank byte is '{'), or plain text whose documents are
 * separated by lines consisting of exactly "<|endoftext|>" (the TinyStories
 * release format; a trailing separator is optional; CRLF accepted). The text
 * must be valid UTF-8: an invalid byte is an error naming file, line and
 * byte offset. An empty corpus (no non-blank document) is an error.
 */
#ifndef FFNLAB_CORPUS_H
#define FFNLAB_CORPUS_H

#include <stddef.h>

#include "ffnlab/status.h"

typedef struct fl_corpus {
    size_t n_docs;
    const char **docs;   /* docs[i] points into storage; not NUL-terminated */
    size_t *lens;
    char *storage;       /* owned */
    size_t bytes;        /* total text bytes over all docs */
} fl_corpus;

fl_status fl_corpus_read(const char *path, fl_corpus *out, fl_error *err);
/* The same from memory (path is used in messages only). */
fl_status fl_corpus_parse(const char *data, size_t len, const char *path, fl_corpus *out,
                          fl_error *err);
void fl_corpus_free(fl_corpus *c);

/* Offset of the first invalid UTF-8 byte in s[0..n), or n if valid. */
size_t fl_utf8_check(const char *s, size_t n);

#endif
