/*
 * run/finetune.h — classification fine-tuning on a copy of a model.
 *
 * The host side of fl_task_services.finetune (ffnlab/task.h): the pretrained
 * model is copied (fl_model_copy), a linear head W[C,K] + b reads the final
 * hidden state of each sequence's last real token (a decoder's; an
 * encoder's first token, <s>), and AdamW trains the copy
 * and the head together on cross-entropy, with linear warmup and a linear or
 * constant schedule, global-norm clipping, dev evaluation every eval_every
 * steps, patience, and the best dev weights restored before predicting. The
 * pretrained model's parameters are only read.
 *
 * Batches are right-padded with `pad`: a causal model's last real token
 * never sees the pads after it; an encoder masks its trailing <pad> keys
 * (core/model.h), so pass its <pad> id.
 */
#ifndef FFNLAB_FINETUNE_H
#define FFNLAB_FINETUNE_H

#include "ffnlab/task.h"
#include "model.h"

fl_status fl_finetune_run(const fl_model *base, int32_t pad, const fl_finetune_opts *o,
                          const fl_ft_data *train, const fl_ft_data *dev,
                          const fl_ft_data *const *predict, int n_predict, int32_t *dev_pred,
                          int32_t *const *predict_out, fl_finetune_result *res, fl_error *err);

#endif
