/*
 * text/tokenizer_internal.h — the parts of the BPE tokenizer shared by its
 * source files, and by nothing else.
 *
 * The tokenizer is split by job: pretokenize.c cuts text into pieces (GPT-2's
 * regex, special token, invalid bytes), bpe_train.c learns merges,
 * tokenizer_json.c reads and writes tokenizer.json, tokenizer.c holds the
 * object itself, the byte-level alphabet, encoding and decoding. Both ways of
 * making a tokenizer (training, loading) fill the same fl_tokenizer through
 * the small builder below, so everything after construction has one path.
 */
#ifndef FFNLAB_TOKENIZER_INTERNAL_H
#define FFNLAB_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* ---- pre-tokenizer (pretokenize.c) ----------------------------------- */

typedef struct fl_pretok fl_pretok;

fl_status fl_pretok_create(fl_pretok **out, fl_error *err);
void fl_pretok_free(fl_pretok *p);

/* Called once per piece, in text order; special is 1 for "<|endoftext|>".
   A status other than FL_OK stops the split and is returned by it. */
typedef fl_status (*fl_piece_fn)(void *ctx, const char *s, size_t n, int special);

/* Cuts text[0..len) into pieces whose concatenation is exactly the text.
   With split_eot, each "<|endoftext|>" is one special piece and the text
   between two of them is pre-tokenized on its own (as the Hugging Face
   library does). Safe to call from several threads on one fl_pretok. */
fl_status fl_pretok_split(const fl_pretok *p, const char *text, size_t len, int split_eot,
                          fl_piece_fn fn, void *ctx, fl_error *err);

/* ---- byte-level alphabet (tokenizer.c) ------------------------------- */

/* GPT-2's bytes_to_unicode: the code point that stands for byte b. */
uint32_t fl_bytelevel_cp(uint8_t b);
/* The byte-level string for bytes s[0..n) (malloc'ed UTF-8, NUL-terminated),
   or NULL when out of memory. */
char *fl_bytelevel_encode(const char *s, size_t n);
/* The bytes a byte-level string stands for, into out (room for strlen(str)
   bytes); -1 if str holds a character outside the alphabet or is not UTF-8. */
long fl_bytelevel_decode(const char *str, char *out);

/* ---- the tokenizer object and its builder (tokenizer.c) -------------- */

typedef struct fl_tok_cache fl_tok_cache;

struct fl_tokenizer {
    int32_t n_ids;          /* vocabulary size: largest id + 1 */
    int32_t eot;            /* id of <|endoftext|>, or -1 */
    int32_t byte_id[256];   /* id of each single-byte token */

    /* Bytes of each id: blob[off[id] .. off[id]+len[id]); has[id] is 0 for an
       id no token uses (foreign files may leave holes). */
    char *blob;
    size_t blob_len, blob_cap;
    size_t *off;
    uint32_t *len;
    uint8_t *has;
    uint8_t *special;       /* 1 for added tokens (stored as raw text, not byte-level) */

    /* Merges in rank order: (left, right) -> result. */
    int32_t n_merges, merges_cap;
    int32_t *m_left, *m_right, *m_result;
    /* Open-addressing map (left<<32 | right) -> rank, for encoding. */
    uint64_t *mmap_keys;
    int32_t *mmap_rank;
    size_t mmap_cap;

    fl_pretok *pretok;
    fl_tok_cache *cache;    /* piece -> ids memo; internally locked */
};

fl_status fl_tok_alloc(int32_t n_ids, fl_tokenizer **out, fl_error *err);
/* Gives id the bytes s[0..n). */
fl_status fl_tok_set_token(fl_tokenizer *tok, int32_t id, const char *s, size_t n, int special,
                           fl_error *err);
fl_status fl_tok_add_merge(fl_tokenizer *tok, int32_t left, int32_t right, int32_t result,
                           fl_error *err);
/* Completes construction: finds the 256 byte tokens (error naming the first
   missing byte, prefixed by `what`), builds the merge map, the regex, the
   cache. */
fl_status fl_tok_finish(fl_tokenizer *tok, const char *what, fl_error *err);

/* ---- hashing (tokenizer.c) ------------------------------------------- */

uint64_t fl_tok_hash(const void *data, size_t n);

#endif
