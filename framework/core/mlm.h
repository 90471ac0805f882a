/*
 * core/mlm.h — the masked-LM objective of an encoder (arch bert): RoBERTa's
 * dynamic masking (Liu et al. 2019, as Hugging Face's
 * DataCollatorForLanguageModeling does it).
 *
 * An encoder's row is <s> followed by T-1 tokens of the token stream, every
 * <|endoftext|> (the document separator) shown as </s>: the layout RoBERTa
 * packs documents in. Then each token that is not special (<s>, </s>,
 * <pad>, <mask>, <|endoftext|>) is chosen with probability p (mask_prob,
 * 0.15); a chosen token becomes <mask> (80%), a random non-special token
 * (10%) or stays itself (10%), and its target is the original token. Every
 * other target is -1, so the loss (core/model.h) counts only the chosen
 * positions: copying the input scores nothing there.
 *
 * The draw is a pure function of (key, row, position), so there is no
 * state: training keys by the seed and the row's global index step*B + b,
 * which makes the masks new every time a window is seen (dynamic masking),
 * equal on every rank of a data-parallel job and on a resumed run;
 * validation keys by the seed alone (fl_mlm_val_key) and scores the same
 * masks in every pass.
 */
#ifndef FFNLAB_MLM_H
#define FFNLAB_MLM_H

#include <stdint.h>

#include "tokenizer.h"

typedef struct fl_mlm {
    fl_special_ids ids;        /* <s>, </s>, <pad>, <mask> */
    int32_t eot;               /* <|endoftext|>, shown as </s> */
    int32_t vocab_size;
    double prob;               /* chance that a non-special token is chosen */
    uint8_t *special;          /* [vocab_size] 1: never chosen, never a random replacement */
    int32_t *plain;            /* [n_plain] the ids a random replacement draws from */
    int32_t n_plain;
} fl_mlm;

/* The masker for tok (which must have the encoder's special tokens: one
   error line when it lacks one) and a model of vocab_size >= tok's ids. */
fl_status fl_mlm_init(fl_mlm *m, const fl_tokenizer *tok, int32_t vocab_size, double prob, fl_error *err);
void fl_mlm_free(fl_mlm *m);

/* The stream keys: training (rows numbered step*B + b) and validation
   (rows numbered i*B + b). */
uint64_t fl_mlm_train_key(uint64_t seed);
uint64_t fl_mlm_val_key(uint64_t seed);

/* x[B,T] stream windows (fl_batch_train, fl_batch_eval) into encoder rows
   in place, masked; y[B,T] their targets. Row b is number row0 + b. */
void fl_mlm_batch(const fl_mlm *m, uint64_t key, uint64_t row0, int B, int T, int32_t *x, int32_t *y);

/* The chosen positions of rows [b0, b1) of y[.,T] (targets >= 0). */
int64_t fl_mlm_count(const int32_t *y, int b0, int b1, int T);

#endif
