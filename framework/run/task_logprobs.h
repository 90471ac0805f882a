/*
 * run/task_logprobs.h — svc->logprobs (ffnlab/task.h) without the table:
 * the scoring kernel behind it, exposed for the benchmark and the tests.
 *
 * Sequences are put in token order, batched so that a prefix shared by
 * consecutive sequences is computed once (fl_model_forward_shared), run
 * without the LM head, and the head (wte) is applied only to the rows that
 * are scored, never to pads or to positions the sequence before already
 * scored with the same tokens (task_logprobs.c says how).
 */
#ifndef FFNLAB_TASK_LOGPROBS_H
#define FFNLAB_TASK_LOGPROBS_H

#include <stdint.h>

#include "ffnlab/task.h"
#include "model.h"

/* svc->logprobs: out[offsets[i] + t] = log p(tokens[t] | tokens[0..t)) for
   t >= max(1, from[i]) (from may be NULL), 0 elsewhere; pad: the token
   batches are padded with; batch_seqs: sequences per forward (0: about
   8192 computed rows). */
fl_status fl_task_score_logprobs(fl_model *m, int32_t pad, const fl_token_seqs *s, const int64_t *from,
                                 int32_t batch_seqs, float *out, fl_error *err);

/* Every sequence 1..context tokens, every token in the vocabulary. */
fl_status fl_task_check_seqs(const fl_model *m, const fl_token_seqs *s, fl_error *err);

#endif
