/*
 * core/run_load.h — building a model from a config, and opening a trained run.
 */
#ifndef FFNLAB_RUN_LOAD_H
#define FFNLAB_RUN_LOAD_H

#include <stdint.h>

#include "config.h"
#include "model.h"
#include "model_size.h"
#include "tokenizer.h"

/* The model a config describes (arch, per-layer FFN specs and attention,
   seed) for tok's vocabulary (an encoder's padding id too: one error line
   when tok lacks the encoder's special tokens), on the backend of
   cfg->device. */
fl_status fl_model_from_config(const fl_config *cfg, const fl_tokenizer *tok, fl_model **out, fl_error *err);
/* The same on backend be (from fl_backend_select) for the ranks of comm
   (expert-sharded; NULL = one process). */
fl_status fl_model_from_config_on(const fl_config *cfg, const fl_tokenizer *tok, const fl_backend *be,
                                  const fl_comm *comm, fl_model **out, fl_error *err);

/* The sizes of cfg's model with vocab_size tokens (fl_model_size_of): every
   layer's FFN plugin loaded, its options parsed and its layer created at
   cfg's shape on be, then freed, so it is also the check of what building
   the model would refuse, done before a run writes anything. */
fl_status fl_config_model_size(const fl_config *cfg, int32_t vocab_size, const fl_backend *be, const fl_comm *comm,
                               fl_model_size *out, fl_error *err);

typedef struct fl_loaded_run {
    fl_config cfg;
    fl_tokenizer *tok;
    fl_model *model;
    int64_t step;              /* of the checkpoint */
} fl_loaded_run;

/* Reads <dir>/train_config.json, tokenizer.json and checkpoint/ (weights
   only). device overrides the run's ("" keeps it). */
fl_status fl_run_load(const char *dir, const char *device, fl_loaded_run *out, fl_error *err);
void fl_run_unload(fl_loaded_run *r);

#endif
