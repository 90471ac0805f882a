/*
 * core/batches.h — cutting (input, target) windows out of a token shard.
 *
 * Training batches are a pure function of (seed, step): window b of step s
 * starts at a position drawn from fl_rng_bits(key(seed), s*B + b). No loader
 * state exists, so a resumed run sees exactly the batches it would have seen.
 * Validation batches are evenly spaced over the shard, the same every time.
 */
#ifndef FFNLAB_BATCHES_H
#define FFNLAB_BATCHES_H

#include <stdint.h>

#include "shard.h"

/* x[B,T] inputs and y[B,T] next-token targets. Shard needs >= T+1 tokens. */
void fl_batch_train(const fl_shard *s, uint64_t seed, int64_t step, int B, int T, int32_t *x, int32_t *y);
/* Batch i of n_batches for evaluation. */
void fl_batch_eval(const fl_shard *s, int i, int n_batches, int B, int T, int32_t *x, int32_t *y);

#endif
