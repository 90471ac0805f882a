/*
 * text/prepare.h — corpus + tokenizer → train/val token shards.
 *
 * Every document is encoded and followed by <|endoftext|>. Documents are
 * assigned to validation deterministically (document i goes to val when
 * floor((i+1)*f) > floor(i*f), f = val_fraction), so the split does not depend
 * on thread count and every document lands in exactly one shard.
 */
#ifndef FFNLAB_PREPARE_H
#define FFNLAB_PREPARE_H

#include <stdint.h>

#include "corpus.h"
#include "tokenizer.h"

/* Writes <out_dir>/train.bin and <out_dir>/val.bin (atomically). */
fl_status fl_data_prepare(const fl_corpus *c, const fl_tokenizer *tok, double val_fraction,
                          const char *out_dir, uint64_t *n_train, uint64_t *n_val, fl_error *err);

#endif
