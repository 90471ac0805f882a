/*
 * core/model_size.h — how big a model is, and how much of it a token uses.
 *
 * The figures the comparison is about, computed before training (to match
 * variants and print them) and after it (for the run's summary.json):
 *   total_params      every parameter of the model;
 *   active_params     per token at inference: the parameters outside the FFN
 *                     blocks (embeddings included: the tied LM head reads all
 *                     of wte) plus each FFN's own "active_params" stat;
 *   flops_per_token   matmul FLOPs of one token's inference forward (2 per
 *                     multiply-add): attention projections, attention over
 *                     the mean causal prefix (T+1)/2, each FFN's own
 *                     "flops_per_token" stat, the LM head.
 * Each FFN layer is created alone (on the given backend, one at a time) and
 * run once in eval mode on one token, since some layers report different
 * figures for inference than for training (CNT computes only its chosen
 * units). Creating the layers is also the check that every plugin loads,
 * parses its options and accepts the model's shape.
 */
#ifndef FFNLAB_MODEL_SIZE_H
#define FFNLAB_MODEL_SIZE_H

#include "ffn_layer.h"
#include "model.h"

typedef struct fl_ffn_size {
    double params, active_params, flops_per_token;
} fl_ffn_size;

typedef struct fl_model_size {
    double total_params, active_params, flops_per_token;
    double ffn_params, ffn_active_params, ffn_flops_per_token; /* the FFN blocks' share */
    int n_layers;
    fl_ffn_size *ffn;          /* [n_layers], malloc'ed: free with fl_model_size_free */
} fl_model_size;

/* The sizes of the model mc describes (mc->comm may be NULL). A spec that
   fails to load or create is the error fl_model_create would give. */
fl_status fl_model_size_of(const fl_model_config *mc, const fl_backend *be, fl_model_size *out, fl_error *err);
void fl_model_size_free(fl_model_size *s);

/* One FFN layer alone: spec at site (ffn_layer.h). */
fl_status fl_ffn_size_of(const char *spec, const fl_ffn_site *site, const fl_backend *be, const fl_comm *comm,
                         fl_ffn_size *out, fl_error *err);

#endif
