/*
 * core/dist.h — data-parallel gradients: what a training step adds when
 * several processes train one model (see "Multi-process runs" in README).
 *
 * Every rank runs the same model on its slice of the global batch; after
 * backward, fl_dist_sync_grads makes every gradient what one process would
 * have computed on the whole batch:
 *   - replicated parameters: summed over all ranks (one all-reduce of one
 *     fused buffer), times 1/P;
 *   - expert shards (FL_PARAM_EXPERT under expert parallelism): summed over
 *     the replicas holding the same experts (one all-reduce over that
 *     sub-group), times 1/P — each rank's loss is the mean over its own
 *     tokens, i.e. P times its share of the global mean, and the experts'
 *     gradients already hold every token routed to them within their group;
 *   - sparse-row parameters: the touched rows of all ranks are united first,
 *     so the optimizer updates the same rows everywhere; only those rows
 *     travel.
 * The 1/P weighting is exact when every rank's slice has the same number of
 * scored tokens, which holds for training windows (every target is scored).
 *
 * Afterwards every rank holds identical replicated gradients, so identical
 * AdamW steps keep the replicas identical without ever sending weights.
 */
#ifndef FFNLAB_DIST_H
#define FFNLAB_DIST_H

#include "model.h"

typedef struct fl_dist fl_dist;

/* For a model whose host->comm has more than one rank. */
fl_status fl_dist_create(fl_model *m, fl_dist **out, fl_error *err);
void fl_dist_free(fl_dist *d);

/* After backward, before the gradient norm and the optimizer. Collective. */
fl_status fl_dist_sync_grads(fl_dist *d, fl_error *err);

/* The global gradient norm (after sync): replicated parameters counted
   once, expert shards summed over their expert-parallel group. Collective. */
fl_status fl_dist_grad_norm(fl_dist *d, double *norm, fl_error *err);

/* Floats sent per step by the last sync: world all-reduce, replica all-reduce. */
void fl_dist_sizes(const fl_dist *d, int64_t *world, int64_t *replica);

#endif
