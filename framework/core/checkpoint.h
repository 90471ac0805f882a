/*
 * core/checkpoint.h — saving and restoring a model (and its optimizer).
 *
 * A checkpoint is a folder:
 *   model.safetensors      every parameter under its GPT-2 name (f32)
 *   optimizer.safetensors  AdamW moments "m.<name>" / "v.<name>" (training only)
 *   config.json            Hugging Face GPT-2 config, plus an "ffnlab" block
 *                          naming each layer's FFN spec
 * Both safetensors carry the step in their metadata; a restore checks that
 * they agree, that every tensor exists with the model's exact shape, and that
 * the file holds no tensor the model lacks. Every file is written atomically.
 */
#ifndef FFNLAB_CHECKPOINT_H
#define FFNLAB_CHECKPOINT_H

#include <stdint.h>

#include "model.h"

/* eot: the tokenizer's <|endoftext|> id (bos/eos in config.json), or -1. */
fl_status fl_checkpoint_save(const char *dir, fl_model *m, int with_optimizer, int64_t step,
                             int32_t eot, fl_error *err);
/* step may be NULL. with_optimizer: also restore AdamW moments. */
fl_status fl_checkpoint_load(const char *dir, fl_model *m, int with_optimizer, int64_t *step,
                             fl_error *err);

#endif
