/*
 * ffnlab/task.h — the evaluation task plugin ABI.
 *
 * A task measures a trained model: zero-shot minimal pairs (BLiMP), fine-tuned
 * classification ((Super)GLUE), held-out perplexity, or yours. A task plugin
 * exports ffnlab_plugin_v1() (see ffnlab/plugin.h) returning a
 * `const fl_task_plugin *` cast to its header, kind FL_PLUGIN_TASK, in a file
 * named task_<name>.so. `ffnlab eval --task NAME:k=v,...` and
 * `ffnlab train --eval-task ...` run it. Lifecycle, once per --task:
 *
 *   create    the host has already parsed the user's options against the
 *             descriptor; check combinations, copy what you keep (the value
 *             strings live only during create), open nothing expensive yet.
 *             A list the user wrote with commas (tasks=cola,sst2) arrives
 *             in a STRING option joined by '|' ("cola|sst2").
 *             Every task of a command is created before any runs, so a typo in
 *             the last --task fails before an hour of fine-tuning.
 *   run       read data, use the model through the services table below, and
 *             report results with svc->metric(). A failure returns fl_status
 *             with one line naming file and line (or option) in err.
 *   destroy   free the task's memory.
 *
 * Tasks never link the framework: everything about the model comes through
 * fl_task_services, so a new task is a new folder with one C file. Token
 * sequences go in as one flat array plus offsets (fl_token_seqs); the host
 * batches them (sorting by length, padding each batch to its longest member,
 * leaving pads out of every score), so a task hands over as many sequences as
 * it likes at once.
 *
 * Results are named numbers with a kind (fl_metric): "accuracy" of kind
 * FL_METRIC_ACCURACY, "mcc", "f1", "perplexity", a count of skipped lines ...
 * A metric with group == NULL is a headline number; one with a group is a
 * per-item breakdown (group "paradigm", item "adjunct_island"). subtask names
 * a part of a multi-part task ("cola", "mnli_mm"). The host writes every
 * metric to <run>/eval.json and prints the headline ones.
 *
 * Conventions: for a decoder (svc->arch FL_TASK_ARCH_GPT), <|endoftext|>
 * (svc->eot) marks the beginning of a text, joins the two sentences of a
 * pair, and pads batches. An encoder (FL_TASK_ARCH_BERT, task ABI 2.1) reads
 * RoBERTa's layout: <s> text </s>, a pair as <s> a </s></s> b </s>, pads with
 * <pad>; it has no next-token probabilities (svc->logprobs refuses it) but
 * predicts masked tokens (svc->masked_logprobs). All functions that can fail
 * return fl_status and write one line into err. The services are not
 * thread-safe: call them from the thread that called run().
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_TASK_H
#define FFNLAB_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/host.h"
#include "ffnlab/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2.0: the host table (ffnlab/host.h, FL_HOST_ABI_VERSION 2) a task gets in
   its context changed layout with FFN ABI 2.0; a 1.x task is refused:
   rebuild it against these headers.
   2.1: encoders (arch bert): fl_task_services gained arch, the encoder's
   special ids and masked_logprobs (appended; check svc->size, or
   FL_TASK_HAS(svc, field), before reading them). */
#define FL_TASK_ABI_MAJOR 2
#define FL_TASK_ABI_MINOR 1

/* ------------------------------------------------------------------------ */
/* Results                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum fl_metric_kind {
    FL_METRIC_ACCURACY = 1,    /* fraction correct, [0, 1], higher is better */
    FL_METRIC_F1 = 2,          /* binary F1 of the positive class (label 1), [0, 1] */
    FL_METRIC_MCC = 3,         /* Matthews correlation coefficient, [-1, 1] */
    FL_METRIC_PERPLEXITY = 4,  /* exp(mean negative log-likelihood), lower is better */
    FL_METRIC_BITS = 5,        /* bits per token or per byte (the name says), lower is better */
    FL_METRIC_LOSS = 6,        /* mean negative log-likelihood in nats, lower is better */
    FL_METRIC_COUNT = 7,       /* a number of items: examples used, lines skipped */
    FL_METRIC_OTHER = 8        /* anything else: a step, a log-probability */
} fl_metric_kind;

typedef struct fl_metric {
    const char *name;          /* "accuracy", "mcc", "majority_accuracy", ... */
    int32_t kind;              /* fl_metric_kind */
    double value;
    int64_t n;                 /* items behind the value (pairs, examples, tokens); 0 = n/a */
    const char *subtask;       /* NULL, or the part of the task ("cola", "mnli_mm") */
    const char *group;         /* NULL for a headline; else the breakdown axis ("paradigm") */
    const char *item;          /* with group: which one ("adjunct_island") */
    const char *split;         /* NULL, or the data split it was measured on ("dev", "test") */
} fl_metric;

/* ------------------------------------------------------------------------ */
/* Token sequences                                                            */
/* ------------------------------------------------------------------------ */

/* n sequences back to back: sequence i is tokens[offsets[i] .. offsets[i+1]).
   Each must hold 1 .. svc->context tokens, every id in [0, vocab_size). */
typedef struct fl_token_seqs {
    const int32_t *tokens;
    const int64_t *offsets;    /* [n + 1], offsets[0] = 0, non-decreasing */
    int64_t n;
} fl_token_seqs;

/* The number of tokens of sequence i. */
static inline int64_t fl_seq_len(const fl_token_seqs *s, int64_t i) { return s->offsets[i + 1] - s->offsets[i]; }

/* Sequences with a class label each (labels NULL: predict only). */
typedef struct fl_ft_data {
    fl_token_seqs seqs;
    const int32_t *labels;     /* [seqs.n] in [0, n_classes), or NULL */
} fl_ft_data;

/* ------------------------------------------------------------------------ */
/* Fine-tuning                                                                */
/* ------------------------------------------------------------------------ */

enum { FL_FT_LINEAR = 0, FL_FT_CONSTANT = 1 };

/* A classification fine-tune: a COPY of the model plus a linear head
   W[d_model, n_classes] + b on the final hidden state (ln_f output) of each
   sequence's last token (an encoder's: its first, <s>), cross-entropy, AdamW
   over every parameter of the copy and the head. The pretrained model is
   never modified. */
typedef struct fl_finetune_opts {
    int32_t n_classes;         /* >= 2 */
    double lr;                 /* peak learning rate */
    int32_t batch_size;        /* sequences per step */
    int32_t epochs;            /* passes over train at most */
    int64_t max_steps;         /* > 0: stop after this many steps even mid-epoch */
    int32_t max_len;           /* longer sequences keep their first max_len tokens */
    uint64_t seed;             /* head init and shuffling */
    int64_t eval_every;        /* steps between dev evaluations; 0 = once per epoch */
    int32_t patience;          /* stop after this many evaluations without a better
                                  dev score; 0 = never stop early */
    double weight_decay;       /* AdamW, matrices only */
    double warmup_ratio;       /* fraction of the planned steps with linear warmup */
    int32_t schedule;          /* FL_FT_LINEAR (decay to 0 at the planned end) or FL_FT_CONSTANT */
    double grad_clip;          /* global gradient norm; 0 = off */
    /* Dev score for model selection, higher is better; NULL = accuracy. */
    double (*dev_score)(void *user, const int32_t *pred, const int32_t *gold, int64_t n);
    void *user;
    const char *name;          /* shown in progress lines ("cola") */
} fl_finetune_opts;

typedef struct fl_finetune_result {
    double best_dev_score;     /* of the weights kept (the best evaluation) */
    int64_t best_step;         /* step of that evaluation */
    int64_t steps;             /* optimizer steps done */
    double epochs;             /* passes over train done (fractional) */
    int32_t stopped_early;     /* 1 when patience ended training */
    double train_loss;         /* mean training loss over the last evaluation interval */
    int64_t truncated;         /* sequences (train, dev, predict) cut to max_len */
} fl_finetune_result;

/* ------------------------------------------------------------------------ */
/* The services the host gives a task                                         */
/* ------------------------------------------------------------------------ */

typedef struct fl_task_services fl_task_services;

enum { FL_TASK_ARCH_GPT = 0, FL_TASK_ARCH_BERT = 1 };

/* 1 when the host's table has `field` (it was appended at or before the
   host's minor version). */
#define FL_TASK_HAS(svc, field) \
    ((svc)->size >= offsetof(fl_task_services, field) + sizeof((svc)->field))

struct fl_task_services {
    uint32_t size;             /* sizeof(fl_task_services) of the host; fields are appended */
    const fl_host *host;       /* log, error, ops: the same table FFN plugins get */
    int32_t vocab_size;
    int32_t context;           /* longest sequence the model takes */
    int32_t d_model;
    int32_t eot;               /* <|endoftext|>: beginning of text, separator, padding */
    const char *run_dir;       /* the run folder being evaluated ("" if none) */
    const char *work_dir;      /* an existing folder the task may write into */
    const char *val_shard;     /* the run's validation token shard ("" if none) */
    void *impl;                /* host-private */

    /* --- tokenizer --- */
    /* ids (free with svc->free) for text[0..len); "<|endoftext|>" in the
       text is the eot id. */
    fl_status (*encode)(const fl_task_services *s, const char *text, size_t len, int32_t **ids,
                        size_t *n, fl_error *err);
    /* Bytes for ids (NUL-terminated, free with svc->free), NULL when out of memory. */
    char *(*decode)(const fl_task_services *s, const int32_t *ids, size_t n, size_t *len);
    /* Frees memory returned by encode, decode and load_tokens. */
    void (*free)(void *p);

    /* --- scoring --- */
    /* Per-token log-probabilities (natural log): out[offsets[i] + t] =
       log p(tokens[t] | tokens[0..t)) of sequence i for t >= max(1, from[i]);
       0 for the first token and for t < from[i] (the LM head is not run
       there: pass from[i] > 1 to skip a prefix whose scores are known).
       from may be NULL. batch: sequences per forward (0: the host's choice,
       about 8192 tokens). out has offsets[n] entries. */
    fl_status (*logprobs)(const fl_task_services *s, const fl_token_seqs *seqs, const int64_t *from,
                          int32_t batch, float *out, fl_error *err);
    /* Final hidden states (the ln_f output, what the LM head reads) of every
       token: out[(offsets[i] + t) * d_model + c]. */
    fl_status (*hidden)(const fl_task_services *s, const fl_token_seqs *seqs, int32_t batch,
                        float *out, fl_error *err);

    /* --- fine-tuning (see fl_finetune_opts) --- */
    /* Trains on train, evaluates dev every eval_every steps (keeping the
       weights of the best dev score), then writes the kept model's
       predictions: dev_pred[dev->seqs.n], and predict_out[j][predict[j]->seqs.n]
       for each of n_predict further sets (labels not needed there). */
    fl_status (*finetune)(const fl_task_services *s, const fl_finetune_opts *o,
                          const fl_ft_data *train, const fl_ft_data *dev,
                          const fl_ft_data *const *predict, int n_predict, int32_t *dev_pred,
                          int32_t *const *predict_out, fl_finetune_result *res, fl_error *err);

    /* --- data --- */
    /* Tokens of a file: an ffnlab token shard (magic "FFNLTOK"), or a text /
       JSON Lines corpus encoded with the run's tokenizer, every document
       followed by eot. *ids freed with svc->free. */
    fl_status (*load_tokens)(const fl_task_services *s, const char *path, int32_t **ids, size_t *n,
                             fl_error *err);
    /* Writes a built-in data set the host can generate ("blimp": minimal
       pairs of the built-in story grammar, BLiMP JSON Lines) into a folder
       under work_dir, and puts that folder's path into dir. */
    fl_status (*builtin_data)(const fl_task_services *s, const char *name, char *dir, size_t n,
                              fl_error *err);

    /* --- results and progress --- */
    /* Records one result (strings are copied). */
    fl_status (*metric)(const fl_task_services *s, const fl_metric *m, fl_error *err);
    /* "what: done/total" on the terminal (an updating line) or the log. */
    void (*progress)(const fl_task_services *s, const char *what, int64_t done, int64_t total);

    /* --- appended in task ABI 2.1: encoders --- */
    int32_t arch;              /* FL_TASK_ARCH_GPT (a causal LM) or FL_TASK_ARCH_BERT (a masked LM) */
    int32_t bos, sep, pad, mask; /* an encoder's <s>, </s>, <pad>, <mask>; -1 for a decoder */
    /* A masked LM's predictions: out[k] = log p(targets[k] | the sequence
       holding position k) for every k with targets[k] >= 0 (k indexes the
       flat tokens array, like targets and out; the input there is usually
       <mask>), 0 elsewhere. Sequences are batched by length and padded with
       <pad>, which the encoder masks, so a score never depends on the
       batch. The pseudo-log-likelihood of a sentence (Salazar et al. 2020)
       is the sum over its tokens of this score with that one token masked:
       one sequence per token (see tasks/blimp/blimp_pll.c). batch:
       sequences per forward (0: about 8192 tokens). FL_EINVAL for a
       decoder. */
    fl_status (*masked_logprobs)(const fl_task_services *s, const fl_token_seqs *seqs, const int32_t *targets,
                                 int32_t batch, float *out, fl_error *err);
};

/* ------------------------------------------------------------------------ */
/* The descriptor                                                             */
/* ------------------------------------------------------------------------ */

typedef struct fl_task_config {
    const fl_value *values;    /* one per descriptor option, same order */
    const char *spec;          /* the --task text as given, for messages */
} fl_task_config;

typedef struct fl_task_plugin {
    fl_plugin_header header;   /* kind = FL_PLUGIN_TASK */

    fl_status (*create)(const fl_task_services *svc, const fl_task_config *cfg, void **task,
                        fl_error *err);
    fl_status (*run)(void *task, const fl_task_services *svc, fl_error *err);
    void (*destroy)(void *task);
} fl_task_plugin;

#ifdef __cplusplus
}
#endif
#endif
