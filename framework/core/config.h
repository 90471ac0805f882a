/*
 * core/config.h — the training configuration: one table, three sources.
 *
 * Every field is described once in a table (name, type, default, range,
 * help). The same table drives: JSON config files (configs/NAME.json; an unknown
 * key, a wrong type or an out-of-range value is an error naming file and key),
 * command-line flags (`--d-model 256` sets d_model: underscores become dashes;
 * every field is a flag), the run folder's config.json, and `ffnlab train
 * --help`. Precedence: defaults < JSON file < flags.
 */
#ifndef FFNLAB_CONFIG_H
#define FFNLAB_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "ffnlab/status.h"

#define FL_MAX_LAYERS 64
#define FL_PATH_MAX 1024
#define FL_SPEC_MAX 512

typedef struct fl_config {
    /* model */
    int32_t vocab_size;        /* tokenizer vocabulary (trained when no tokenizer given) */
    int32_t context;           /* T */
    int32_t d_model;
    int32_t n_layers;
    int32_t n_heads;
    char ffn[FL_SPEC_MAX];     /* FFN spec for every layer: "dense" or "moe:experts=8" */
    char ffn_layers[FL_SPEC_MAX * 4]; /* per-layer overrides "3=pkm:heads=4;0=dense", ';'-joined */
    char arch[8];              /* "gpt" (causal decoder, next-token loss) or "bert" (encoder, masked LM) */
    char attention[FL_SPEC_MAX]; /* layer kinds "global" / "local", comma-separated, cycled over the layers */
    int32_t attention_window;  /* keys a local layer's query sees */
    /* data */
    char corpus[FL_PATH_MAX];  /* text or JSONL corpus; "" = the built-in story grammar */
    int64_t corpus_bytes;      /* size of the built-in corpus to generate */
    char tokenizer[FL_PATH_MAX]; /* tokenizer.json to use; "" = train one on the corpus */
    char data_dir[FL_PATH_MAX];  /* prepared shards (train.bin, val.bin); "" = prepare into the run */
    double val_fraction;
    /* optimisation */
    int32_t batch_size;        /* sequences per step */
    int64_t steps;
    double lr;                 /* peak learning rate */
    double min_lr_ratio;       /* cosine floor as a fraction of lr */
    int64_t warmup_steps;
    double weight_decay;
    double beta1, beta2, adam_eps;
    double grad_clip;          /* global norm; 0 = off */
    double mask_prob;          /* bert: fraction of tokens the masked-LM objective hides */
    uint64_t seed;
    /* bookkeeping */
    int64_t eval_every;        /* steps between validation passes */
    int32_t eval_batches;
    int64_t ckpt_every;        /* steps between checkpoints (0 = only at the end) */
    int64_t log_every;
    int32_t threads;           /* 0 = all cores */
    char device[32];           /* "auto", "cpu", "cuda", "cuda:N" */
    char precision[8];         /* GEMM precision: "auto", "fp32", "bf16", "tf32" (GPU) */
    char run_dir[FL_PATH_MAX];
    char eval_tasks[FL_SPEC_MAX * 4]; /* task specs run after training, ';'-joined (--eval-task repeats) */
    /* distribution (multi-process runs under mpirun) */
    int32_t expert_parallel;   /* ranks that split each MoE layer's experts (divides the processes) */
    char notes[FL_SPEC_MAX * 4]; /* free text kept with the run (e.g. how a config differs from a paper's) */
} fl_config;

typedef enum fl_cfg_type { FL_CFG_INT, FL_CFG_INT64, FL_CFG_U64, FL_CFG_DOUBLE, FL_CFG_STRING } fl_cfg_type;

typedef struct fl_cfg_field {
    const char *name;          /* JSON key; flag is "--" + name with '_' → '-' */
    int type;                  /* fl_cfg_type */
    size_t offset;             /* offsetof(fl_config, field) */
    size_t size;               /* sizeof the field (string capacity) */
    const char *def;           /* default as text */
    double min, max;           /* numeric range (inclusive) */
    const char *group;         /* "model", "data", "optim", "run" */
    const char *help;
    int flags;                 /* FL_CFG_OPEN_MIN | FL_CFG_OPEN_MAX | FL_CFG_NONEMPTY */
} fl_cfg_field;

/* fl_cfg_field.flags: a bound that is exclusive ("lr in (0, 10]"), a string
   that may not be empty. */
#define FL_CFG_OPEN_MIN 1
#define FL_CFG_OPEN_MAX 2
#define FL_CFG_NONEMPTY 4

/* The table, and its length. */
const fl_cfg_field *fl_config_fields(size_t *n);

void fl_config_defaults(fl_config *c);
/* Where a --config argument points: an existing file as it is, else a name
   ("tiny", "seed") looked up as NAME.json in ./configs, then in the install
   beside the program (<prefix>/share/ffnlab/configs), then in the source tree
   this ffnlab was built from. One line naming the places when none has it. */
fl_status fl_config_resolve(const char *arg, char *path, size_t n, fl_error *err);
/* Applies a JSON object file over c. */
fl_status fl_config_load_json(fl_config *c, const char *path, fl_error *err);
/* Applies a JSON object given as text (where: name for messages). */
fl_status fl_config_apply_json(fl_config *c, const char *json, const char *where, fl_error *err);
/* Sets one field from text (a flag's value). "ffn_layers" appends. */
fl_status fl_config_set(fl_config *c, const char *name, const char *value, fl_error *err);
/* Checks cross-field rules (d_model % n_heads, ranges, ...). */
fl_status fl_config_validate(const fl_config *c, fl_error *err);
/* The whole config as a JSON object (malloc'ed text). */
char *fl_config_to_json(const fl_config *c);
/* --help text for every field, grouped. */
void fl_config_print_help(FILE *f);

/* FL_ARCH_GPT or FL_ARCH_BERT (core/model.h) for c->arch (validated). */
int fl_config_arch(const fl_config *c);
/* Bit l set when layer l is local (c->attention cycled over the layers);
   an entry other than global/local is one error line. */
fl_status fl_config_local_layers(const fl_config *c, uint64_t *out, fl_error *err);

/* The FFN spec of layer i (ffn_layers override, else ffn), into out. */
fl_status fl_config_layer_ffn(const fl_config *c, int layer, char *out, size_t n, fl_error *err);

#endif
