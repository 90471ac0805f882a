/*
 * run/seq_order.h — the order batched scoring and fine-tuning visit token
 * sequences in: longest first, so the sequences batched together (each
 * batch padded to its longest) are of about one length.
 */
#ifndef FFNLAB_SEQ_ORDER_H
#define FFNLAB_SEQ_ORDER_H

#include <stdint.h>

#include "ffnlab/task.h"

/* The indices 0..s->n-1, longest sequence first, ties in index order:
   malloc'ed (one element at least, so s->n = 0 is not mistaken for no
   memory); NULL without memory. */
int64_t *fl_seqs_longest_first(const fl_token_seqs *s);

#endif
