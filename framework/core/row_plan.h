/*
 * core/row_plan.h — the plan of a shared-rows forward (model.h:
 * fl_model_forward_shared): which rows of a padded batch are computed, and
 * the layout attention sees them in.
 *
 * The caller describes B sequences as rows of a padded batch tokens[B,T]
 * with same_as[B*T] (model.h says the rules; this file checks them). The
 * plan numbers the computed rows 0..n-1 in batch order: the blocks' GEMMs
 * and FFNs run on those n rows alone. Attention needs each sequence whole,
 * so it runs on a layout of every sequence's real rows, sequences grouped
 * by length (no padding at all): the sequences of length l take layout rows
 * [start[l], start[l+1]), one after another, each row reading the computed
 * row it is (src) and each computed row written back from one layout row
 * (own).
 */
#ifndef FFNLAB_ROW_PLAN_H
#define FFNLAB_ROW_PLAN_H

#include <stdint.h>

#include "error.h"

typedef struct fl_row_plan {
    int64_t n;               /* computed rows */
    int64_t L;               /* layout rows: the real rows of every sequence */
    int T;                   /* the padded batch's length (a length is 1..T) */
    int32_t *own;            /* [n] the layout row each computed row is written back from */
    int32_t *src;            /* [L] the computed row each layout row reads */
    int32_t *tok, *pos;      /* [n] each computed row's token and position */
    int32_t *lay_tok;        /* [L] each layout row's token */
    int64_t *start;          /* [T+2] where the sequences of length l start; start[T+1] = L */
    int32_t *len;            /* [B] scratch: each sequence's real rows */
    int64_t cap_rows, cap_B, cap_T;
} fl_row_plan;

/* Checks same_as and plans tokens[B,T]; hidden_row[B*T] receives each row's
   computed row (-1 for padding). A broken rule is FL_EINVAL naming the row. */
fl_status fl_row_plan_build(fl_row_plan *p, const int32_t *tokens, const int32_t *same_as, int B, int T,
                            int32_t *hidden_row, fl_error *err);

/* Sequences of length l in the layout. */
static inline int64_t fl_row_plan_count(const fl_row_plan *p, int l) { return (p->start[l + 1] - p->start[l]) / l; }

void fl_row_plan_free(fl_row_plan *p);

#endif
