/*
 * run/task_masked.h — the encoder's scoring service behind
 * svc->masked_logprobs (ffnlab/task.h), exposed for the tests.
 */
#ifndef FFNLAB_TASK_MASKED_H
#define FFNLAB_TASK_MASKED_H

#include <stdint.h>

#include "ffnlab/task.h"
#include "model.h"

/* out[k] = log p(targets[k] | the sequence holding flat position k) for
   every targets[k] >= 0, 0 elsewhere; sequences batched longest first
   (batch: sequences per forward, 0 = about 8192 tokens) and padded with the
   model's <pad>. m must be an encoder (FL_EINVAL otherwise). */
fl_status fl_task_masked_logprobs(fl_model *m, const fl_token_seqs *s, const int32_t *targets, int32_t batch,
                                  float *out, fl_error *err);

#endif
