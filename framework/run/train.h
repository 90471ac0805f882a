/*
 * run/train.h — a training run, from config to checkpoints.
 *
 * fl_train_run does the whole job `ffnlab train` promises: prepares the data
 * (built-in corpus or a given one → tokenizer → token shards, all inside the
 * run folder unless given), builds the model, trains with AdamW + warmup/cosine
 * + clipping, logs metrics.jsonl, evaluates on the validation shard, and writes
 * checkpoints. A run folder holds:
 *   train_config.json  the full ffnlab config of the run (what --resume reads)
 *   tokenizer.json     the tokenizer (Hugging Face layout)
 *   data/              train.bin, val.bin token shards (unless data_dir given)
 *   metrics.jsonl      one JSON object per logged step / validation pass
 *   checkpoint/        model.safetensors, optimizer.safetensors, config.json
 */
#ifndef FFNLAB_TRAIN_H
#define FFNLAB_TRAIN_H

#include <stdint.h>

#include "config.h"

typedef struct fl_train_opts {
    int resume;        /* continue from <run_dir>/checkpoint */
    int force;         /* overwrite an existing run folder */
    int progress;      /* -1 auto (terminal → one updating line), 0 plain lines, 1 updating line */
    int64_t stop_after;/* > 0: checkpoint and stop once this step is done (resume later) */
} fl_train_opts;

typedef struct fl_train_result {
    int64_t steps_done;
    double final_train_loss;
    double final_val_loss;
    double unigram_entropy;    /* of the training shard, nats/token: a baseline */
    double tokens_per_s;
} fl_train_result;

fl_status fl_train_run(const fl_config *cfg, const fl_train_opts *opts, fl_train_result *res,
                       fl_error *err);

/* Asks a running fl_train_run to checkpoint and stop (async-signal-safe). */
void fl_train_request_stop(void);

#endif
