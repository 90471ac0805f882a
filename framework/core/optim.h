/*
 * core/optim.h — AdamW, the LR schedule and gradient clipping, for any model.
 *
 * Works on the host-owned parameter list, so it serves every FFN plugin
 * unchanged: weight decay only where a parameter carries FL_PARAM_DECAY, a
 * parameter's own LR rule (lr_scale, or a fixed LR such as PKM values'),
 * and FL_PARAM_SPARSE_ROWS parameters updated only on the rows touched this
 * step (lazy Adam: a row's moments and weights are untouched while unread).
 */
#ifndef FFNLAB_OPTIM_H
#define FFNLAB_OPTIM_H

#include <stdint.h>

typedef struct fl_backend fl_backend; /* defined in backends/backend.h */
#include "params.h"

typedef struct fl_adamw {
    double lr, beta1, beta2, eps, weight_decay;
} fl_adamw;

/* LR at step (0-based): linear warmup over `warmup` steps to lr, then cosine
   down to lr*min_ratio at `total`. */
double fl_lr_at(int64_t step, int64_t warmup, int64_t total, double lr, double min_ratio);

/* Global L2 norm of all gradients (sparse-rows parameters: touched rows). */
double fl_grad_norm(const fl_backend *be, const fl_param_list *ps);
/* The squared norm of the gradients of ps->items[i] with keep[i] != 0 (keep
   NULL: all); the dense ones in one be->sumsq_many call (one device round
   trip), the sparse-rows ones over their touched rows. */
double fl_grad_sumsq(const fl_backend *be, const fl_param_list *ps, const unsigned char *keep);

/* Zeroes every gradient before a step; for sparse-rows parameters only the
   rows touched since the last call (so a step costs O(rows read)), then
   forgets them. */
void fl_zero_grad(const fl_backend *be, fl_param_list *ps);

/* One AdamW step t (1-based) at learning rate lr on grad_scale * grad
   (grad_scale < 1 clips); allocates moments on first use. */
fl_status fl_adamw_step(const fl_backend *be, fl_param_list *ps, const fl_adamw *opt, double lr,
                        float grad_scale, int64_t t, fl_error *err);

#endif
