/*
 * core/run_load.c — models from configs, and trained runs (see run_load.h).
 */
#include "run_load.h"

#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "checkpoint.h"
#include "error.h"
#include "runfiles.h"

fl_status fl_model_from_config(const fl_config *cfg, const fl_tokenizer *tok, fl_model **out, fl_error *err) {
    const fl_backend *be = NULL;
    fl_status st = fl_backend_select(cfg->device, &be, err);
    return st ? st : fl_model_from_config_on(cfg, tok, be, NULL, out, err);
}

/* cfg's model shape with vocab_size tokens, its per-layer FFN specs written
   into specs (ptrs point at them). */
static fl_status model_config_of(const fl_config *cfg, int32_t vocab_size, const fl_comm *comm,
                                 char (*specs)[FL_SPEC_MAX], const char **ptrs, fl_model_config *mc,
                                 fl_error *err) {
    if (cfg->n_layers < 1 || cfg->n_layers > FL_MAX_LAYERS)
        return fl_fail(err, FL_EINVAL, "n_layers %d is out of range [1, %d]", cfg->n_layers, FL_MAX_LAYERS);
    for (int l = 0; l < cfg->n_layers; l++) {
        fl_status st = fl_config_layer_ffn(cfg, l, specs[l], FL_SPEC_MAX, err);
        if (st) return st;
        ptrs[l] = specs[l];
    }
    *mc = (fl_model_config){.vocab_size = vocab_size, .context = cfg->context, .d_model = cfg->d_model,
                            .n_layers = cfg->n_layers, .n_heads = cfg->n_heads, .ffn_specs = ptrs,
                            .seed = cfg->seed, .comm = comm, .arch = fl_config_arch(cfg),
                            .pad_token = -1, .window = cfg->attention_window};
    return fl_config_local_layers(cfg, &mc->local_layers, err);
}

fl_status fl_model_from_config_on(const fl_config *cfg, const fl_tokenizer *tok, const fl_backend *be,
                                  const fl_comm *comm, fl_model **out, fl_error *err) {
    char specs[FL_MAX_LAYERS][FL_SPEC_MAX];
    const char *ptrs[FL_MAX_LAYERS];
    fl_model_config mc;
    fl_special_ids ids;
    fl_status st = model_config_of(cfg, fl_tokenizer_vocab_size(tok), comm, specs, ptrs, &mc, err);
    if (!st && mc.arch == FL_ARCH_BERT && !(st = fl_tokenizer_encoder_ids(tok, "the tokenizer", &ids, err)))
        mc.pad_token = ids.pad;
    return st ? st : fl_model_create(&mc, be, out, err);
}

fl_status fl_config_model_size(const fl_config *cfg, int32_t vocab_size, const fl_backend *be, const fl_comm *comm,
                               fl_model_size *out, fl_error *err) {
    char specs[FL_MAX_LAYERS][FL_SPEC_MAX];
    const char *ptrs[FL_MAX_LAYERS];
    fl_model_config mc;
    fl_status st = model_config_of(cfg, vocab_size, comm, specs, ptrs, &mc, err);
    return st ? st : fl_model_size_of(&mc, be, out, err);
}

fl_status fl_run_load(const char *dir, const char *device, fl_loaded_run *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    fl_config_defaults(&r->cfg);
    char path[FL_PATH_MAX + 32];
    fl_status st = fl_run_read_config(dir, &r->cfg, err);
    if (!st && device && device[0]) snprintf(r->cfg.device, sizeof r->cfg.device, "%s", device);
    if (!st) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        st = fl_tokenizer_load(path, &r->tok, err);
    }
    if (!st) st = fl_model_from_config(&r->cfg, r->tok, &r->model, err);
    if (!st) {
        snprintf(path, sizeof path, "%s/checkpoint", dir);
        st = fl_checkpoint_load(path, r->model, 0, &r->step, err);
    }
    if (st) fl_run_unload(r);
    return st;
}

void fl_run_unload(fl_loaded_run *r) {
    fl_model_free(r->model);
    fl_tokenizer_free(r->tok);
    r->model = NULL;
    r->tok = NULL;
}
