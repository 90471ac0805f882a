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
 *                      (fl_metrics_line; written by run/results.c)
 *   checkpoint/        model.safetensors, optimizer.safetensors, config.json
 *   summary.json       once the run is complete: sizes, losses, speeds,
 *                      memory (fl_run_summary)
 */
#ifndef FFNLAB_TRAIN_H
#define FFNLAB_TRAIN_H

#include <stdint.h>

#include "config.h"
#include "ffnlab/ffn.h"   /* fl_stat */
#include "model_size.h"

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
/* The exit status for a run that ended with FL_EINTR: 128 + the signal that
   stopped it, as a shell reports a process that signal ended (130 for
   Ctrl-C, 143 for SIGTERM); SIGINT's when this process saw none (another
   rank did). */
int fl_train_interrupt_status(void);

/* Every FFN layer's plugin stats of one forward: layer l's n[l] figures
   in s[l * FL_STATS_MAX ...]. */
#define FL_STATS_MAX 96
typedef struct fl_layer_stats {
    int n_layers;
    int n[FL_MAX_LAYERS];
    fl_stat s[FL_MAX_LAYERS * FL_STATS_MAX];
} fl_layer_stats;

/* One line of metrics.jsonl: a training step (is_val 0) or a validation
   pass (is_val 1). tokens: training tokens seen; time_s: wall time of the
   run so far, resumes included. */
typedef struct fl_metrics_line {
    int is_val;
    int64_t step, tokens;
    double time_s;
    double loss, ce_loss, lr, grad_norm, tokens_per_s; /* training lines */
    const fl_stat *aux;
    int n_aux;
    double val_loss;                                   /* validation lines */
    const fl_layer_stats *stats;                       /* NULL: none */
} fl_metrics_line;

/* What summary.json records about a completed run. */
typedef struct fl_run_summary {
    const fl_config *cfg;
    const char *const *ffn_specs;  /* [n_layers] each layer's spec */
    fl_model_size size;
    fl_train_result train;
    int64_t tokens;                /* training tokens of the whole run */
    double seconds;                /* wall time of the whole run (resumes included) */
    double train_tokens_per_s;     /* inside training steps (no validation, no start-up) */
    double inference_tokens_per_s; /* eval-mode forward (validation passes) */
    double peak_rss_mib;           /* this process's peak resident memory */
} fl_run_summary;

/* What a new run prepares from cfg's corpus (the given file, or the built-in
   grammar's from cfg->seed) and tokenizer (cfg->tokenizer, or a BPE of
   vocab_size trained on the corpus): the tokenizer saved to tok_path (and
   returned in *tok) and train.bin / val.bin written into data_dir, the layout
   --data-dir reads. */
struct fl_tokenizer;
fl_status fl_train_prepare_data(const fl_config *cfg, const char *tok_path, const char *data_dir,
                                struct fl_tokenizer **tok, fl_error *err);

#endif
