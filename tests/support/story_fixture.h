/*
 * tests/support/story_fixture.h — text fixtures from the built-in corpus
 * (text/storygen.h) that several suites train a tokenizer on, and the
 * double-precision log-softmax the scoring tests compare against.
 */
#ifndef FFNLAB_STORY_FIXTURE_H
#define FFNLAB_STORY_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* A byte-level BPE of `vocab` ids trained on `bytes` of the built-in stories
   (seed), with the encoder's <s> </s> <pad> <mask> when `encoder`; when
   stream is not NULL, the stories' ids too (*stream malloc'ed, *n long).
   Fails the running test on an error. */
fl_tokenizer *ts_story_tokenizer(uint64_t seed, size_t bytes, int vocab, int encoder, int32_t **stream, size_t *n);

/* log softmax(row[0..V))[target], in double: the reference a scorer's
   float output is checked against. */
double ts_log_softmax(const float *row, int V, int32_t target);

#endif
