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
 * An encoder (arch bert) needs four more special tokens, RoBERTa's: <s>
 * (begins a sequence; its final hidden state is what classification reads),
 * </s> (ends a sentence or document), <pad> and <mask>. A tokenizer trained
 * with them (fl_tokenizer_train_special) gives them the last ids, after
 * <|endoftext|>; a loaded file has them when its added_tokens do (files
 * without them load as before). They are ids only: encode never produces
 * them from text (unlike <|endoftext|>), so no sentence can fake them.
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

/* The encoder's special tokens, in the order training appends them. */
#define FL_N_ENCODER_SPECIALS 4
extern const char *const FL_ENCODER_SPECIALS[FL_N_ENCODER_SPECIALS]; /* "<s>", "</s>", "<pad>", "<mask>" */

typedef struct fl_special_ids {
    int32_t bos, sep, pad, mask; /* <s>, </s>, <pad>, <mask> */
} fl_special_ids;

typedef struct fl_tokenizer fl_tokenizer;

/* Trains merges on documents docs[i] (lens[i] bytes) until the vocabulary
   (256 bytes + merges + <|endoftext|>) has vocab_size entries, or fewer when
   the corpus runs out of pairs to merge (as Hugging Face's trainer does: ask
   fl_tokenizer_vocab_size). Two merges spelling the same string share an id,
   so there can be more merges than vocab_size - 257. Deterministic: ties
   between equally frequent pairs go to the smaller pair of token ids. */
fl_status fl_tokenizer_train(const char *const *docs, const size_t *lens, size_t n_docs,
                             int32_t vocab_size, fl_tokenizer **out, fl_error *err);
/* The same with n_special more special tokens (texts special[i]) after
   <|endoftext|>, within the same vocab_size: fl_tokenizer_train_special(...,
   FL_ENCODER_SPECIALS, FL_N_ENCODER_SPECIALS, ...) for an encoder. */
fl_status fl_tokenizer_train_special(const char *const *docs, const size_t *lens, size_t n_docs,
                                     int32_t vocab_size, const char *const *special, int n_special,
                                     fl_tokenizer **out, fl_error *err);

fl_status fl_tokenizer_load(const char *path, fl_tokenizer **out, fl_error *err);
/* Atomic write of tokenizer.json. */
fl_status fl_tokenizer_save(const fl_tokenizer *tok, const char *path, fl_error *err);
void fl_tokenizer_free(fl_tokenizer *tok);

int32_t fl_tokenizer_vocab_size(const fl_tokenizer *tok);
/* Id of <|endoftext|>, or -1 if the vocabulary has none. */
int32_t fl_tokenizer_eot(const fl_tokenizer *tok);
/* Id of the special (added) token whose text is `text`, or -1. */
int32_t fl_tokenizer_special_id(const fl_tokenizer *tok, const char *text);
/* 1 when id is a special token (<|endoftext|>, <s>, <mask>, ...). */
int fl_tokenizer_is_special(const fl_tokenizer *tok, int32_t id);
/* The encoder's four special ids; a tokenizer without one of them is one
   FL_EINVAL line naming it (what: the file, for the message). */
fl_status fl_tokenizer_encoder_ids(const fl_tokenizer *tok, const char *what, fl_special_ids *out, fl_error *err);

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
