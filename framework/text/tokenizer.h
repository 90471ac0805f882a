/*
 * text/tokenizer.h — byte-level BPE: train, encode, decode, tokenizer.json.
 *
 * The tokenizer is GPT-2's scheme: text is split by GPT-2's pre-tokenizer
 * regex (PCRE2, Unicode classes), each piece's bytes are mapped to the 256
 * "byte-level" printable characters, and learned merges are applied by rank.
 * Any byte string, valid UTF-8 or not, round-trips exactly:
 * decode(encode(x)) == x. The special token "<|endoftext|>" (the document
 * separator) is one id and is recognised in text given to encode.
 *
 * Files use the Hugging Face `tokenizer.json` layout (model.type "BPE",
 * model.vocab, model.merges as "a b" strings or [a, b] pairs, added_tokens,
 * pre_tokenizer ByteLevel), so GPT-2's own tokenizer.json loads, and files
 * ffnlab writes load in the `tokenizers` library.
 */
#ifndef FFNLAB_TOKENIZER_H
#define FFNLAB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/status.h"

#define FL_EOT_TEXT "<|endoftext|>"

typedef struct fl_tokenizer fl_tokenizer;

/* Trains merges on documents docs[i] (lens[i] bytes) until the vocabulary
   (256 bytes + merges + <|endoftext|>) has vocab_size entries, or fewer when
   the corpus runs out of pairs to merge (as Hugging Face's trainer does: ask
   fl_tokenizer_vocab_size). Two merges spelling the same string share an id,
   so there can be more merges than vocab_size - 257. Deterministic: ties
   between equally frequent pairs go to the smaller pair of token ids. */
fl_status fl_tokenizer_train(const char *const *docs, const size_t *lens, size_t n_docs,
                             int32_t vocab_size, fl_tokenizer **out, fl_error *err);

fl_status fl_tokenizer_load(const char *path, fl_tokenizer **out, fl_error *err);
/* Atomic write of tokenizer.json. */
fl_status fl_tokenizer_save(const fl_tokenizer *tok, const char *path, fl_error *err);
void fl_tokenizer_free(fl_tokenizer *tok);

int32_t fl_tokenizer_vocab_size(const fl_tokenizer *tok);
/* Id of <|endoftext|>, or -1 if the vocabulary has none. */
int32_t fl_tokenizer_eot(const fl_tokenizer *tok);

/* ids (malloc'ed, *n of them) for text[0..len). Thread-safe for one tok. */
fl_status fl_tokenizer_encode(const fl_tokenizer *tok, const char *text, size_t len,
                              int32_t **ids, size_t *n, fl_error *err);
/* FL_EINVAL naming the ids tok does not have (the first few, and how many
   in all), so a caller can refuse them; FL_OK when it has every one. */
fl_status fl_tokenizer_check_ids(const fl_tokenizer *tok, const int32_t *ids, size_t n, fl_error *err);
/* Bytes for ids (malloc'ed, NUL-terminated, *len excludes the NUL); ids out of
   range decode to nothing. Returns NULL only when out of memory. */
char *fl_tokenizer_decode(const fl_tokenizer *tok, const int32_t *ids, size_t n, size_t *len);

#endif
