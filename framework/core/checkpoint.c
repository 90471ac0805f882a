/*
 * core/checkpoint.c — model/optimizer folders (see checkpoint.h).
 *
 * Multi-process runs write the very file one process writes: replicated
 * parameters are the same on every rank, so rank 0 writes its own; an
 * expert-sharded parameter (FL_PARAM_EXPERT under expert parallelism) is
 * gathered onto rank 0 from the ranks of its expert-parallel group (group 0;
 * the other groups are replicas). Loading reads the file on every rank and
 * keeps each rank's slice of the experts, so a checkpoint loads under any
 * process count and expert_parallel.
 */
#include "checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>  /* config.json */

#include "backend.h"
#include "comm.h"
#include "error.h"
#include "fsutil.h"
#include "host_table.h"
#include "params.h"
#include "safetensors.h"
#include "test_hook.h"

/* The list the model hands to the optimizer: params in model order. */
static fl_param_impl *impl_at(fl_model *m, int i) { return fl_param_impl_of(fl_model_param(m, i)); }

/* Copies one device tensor to a fresh host buffer. */
static void *host_copy(const fl_backend *be, const fl_tensor *t, fl_error *err) {
    size_t bytes = fl_nbytes(t);
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
        fl_fail(err, FL_ENOMEM, "out of memory copying a tensor for a checkpoint");
        return NULL;
    }
    be->ops.to_host(buf, t, bytes);
    return buf;
}

static fl_st_entry entry_for(const char *name, const fl_tensor *t, const void *data) {
    fl_st_entry e = {.name = name, .dtype = t->dtype, .ndim = t->ndim, .data = data};
    for (int d = 0; d < FL_MAX_DIMS; d++) e.shape[d] = t->shape[d];
    return e;
}

/* Is p split over the ranks of c's expert-parallel groups? */
static int is_sharded(const fl_comm *c, const fl_param *p) {
    return (p->flags & FL_PARAM_EXPERT) && c->ep_size > 1;
}

/* t (p's value or a moment) whole in *out on the host of rank 0: a shard
   is gathered over the expert-parallel group (the other ranks send theirs
   and get NULL); *global gets the file's shape. A failure on any rank
   leaves rank 0 in the gather: the caller's error ends the job. */
static fl_status gather_copy(const fl_comm *c, const fl_backend *be, const fl_param *p, const fl_tensor *t,
                             fl_tensor *global, void **out, fl_error *err) {
    *global = *t;
    *out = NULL;
    if (!is_sharded(c, p)) {
        if (c->rank == 0 && !(*out = host_copy(be, t, err))) return err->code;
        return FL_OK;
    }
    global->shape[0] = p->global_dim0;
    void *mine = host_copy(be, t, err);
    void *all = c->rank == 0 ? malloc(fl_nbytes(global)) : NULL;
    fl_status st = mine && (all || c->rank != 0) ? FL_OK : fl_fail(err, FL_ENOMEM, "out of memory gathering %s", p->name);
    if (!st) st = fl_comm_gather_bytes(c, FL_COMM_EXPERT, mine, fl_nbytes(t), all, 0, err);
    free(mine);
    if (st) free(all);
    else *out = all;
    return st;
}

/* which: 0 values, 1 first moments, 2 second moments */
static fl_status write_tensors(const char *path, fl_model *m, int which, int64_t step, fl_error *err) {
    const fl_backend *be = fl_host_backend(fl_model_host(m));
    const fl_comm *c = fl_model_host(m)->comm;
    int n = fl_model_n_params(m);
    fl_st_entry *es = calloc((size_t)n * 2 + 1, sizeof *es); /* +1: the cleanup loop reads one past k */
    void **bufs = calloc((size_t)n * 2 + 1, sizeof *bufs);
    char **names = calloc((size_t)n * 2 + 1, sizeof *names);
    fl_status st = (es && bufs && names) ? FL_OK : fl_fail(err, FL_ENOMEM, "out of memory");
    size_t k = 0;
    for (int i = 0; i < n && !st; i++) {
        fl_param_impl *p = impl_at(m, i);
        for (int mv = 0; mv < (which ? 2 : 1) && !st; mv++) {
            if (which && (st = fl_params_ensure_moments(be, p, err))) break;
            const fl_tensor *t = which == 0 ? &p->pub.value : mv == 0 ? &p->m : &p->v;
            size_t len = strlen(p->pub.name) + 3;
            names[k] = malloc(len);
            if (!names[k]) { st = fl_fail(err, FL_ENOMEM, "out of memory"); break; }
            snprintf(names[k], len, "%s%s", which == 0 ? "" : mv == 0 ? "m." : "v.", p->pub.name);
            fl_tensor whole;
            if ((st = gather_copy(c, be, &p->pub, t, &whole, &bufs[k], err))) break;
            es[k] = entry_for(names[k], &whole, bufs[k]);
            k++;
        }
    }
    char step_s[32];
    snprintf(step_s, sizeof step_s, "%" PRId64, step);
    const char *meta[] = {"format", "pt", "step", step_s, "producer", "ffnlab " FFNLAB_VERSION, NULL};
    if (!st && c->rank == 0) st = fl_safetensors_write(path, es, k, meta, err);
    for (size_t i = 0; i < k + 1 && names; i++) free(names[i]), free(bufs ? bufs[i] : NULL);
    free(es), free(bufs), free(names);
    return st;
}

/* The ffnlab block's attention: the architecture and each layer's kind
   (GPT-Neo's "attention_layers" and "window_size"), which GPT-2's own keys
   cannot say. */
static void add_attention(cJSON *ffn, const fl_model_config *c) {
    cJSON *kinds = cJSON_CreateArray();
    for (int l = 0; l < c->n_layers; l++)
        cJSON_AddItemToArray(kinds, cJSON_CreateString((c->local_layers >> l) & 1 ? "local" : "global"));
    cJSON_AddStringToObject(ffn, "arch", c->arch == FL_ARCH_BERT ? "bert" : "gpt");
    cJSON_AddItemToObject(ffn, "attention_layers", kinds);
    if (c->local_layers) cJSON_AddNumberToObject(ffn, "window_size", c->window);
}

static char *config_json(fl_model *m, int32_t eot) {
    const fl_model_config *c = fl_model_cfg(m);
    cJSON *j = cJSON_CreateObject(), *ffn = cJSON_CreateObject(), *specs = cJSON_CreateArray();
    /* GPT-2's names and layouts either way; only a causal model with global
       attention is a GPT2LMHeadModel (an encoder or a local layer computes
       something else from the same tensors) */
    if (c->arch == FL_ARCH_GPT && !c->local_layers)
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"GPT2LMHeadModel"}, 1));
    if (c->arch == FL_ARCH_BERT) cJSON_AddBoolToObject(j, "is_decoder", 0);
    cJSON_AddStringToObject(j, "model_type", "gpt2");
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "n_positions", c->context);
    cJSON_AddNumberToObject(j, "n_ctx", c->context);
    cJSON_AddNumberToObject(j, "n_embd", c->d_model);
    cJSON_AddNumberToObject(j, "n_layer", c->n_layers);
    cJSON_AddNumberToObject(j, "n_head", c->n_heads);
    cJSON_AddNullToObject(j, "n_inner"); /* 4*n_embd, the dense plugin's default */
    cJSON_AddStringToObject(j, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(j, "layer_norm_epsilon", 1e-5);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
    if (eot >= 0 && c->arch == FL_ARCH_GPT) {
        cJSON_AddNumberToObject(j, "bos_token_id", eot);
        cJSON_AddNumberToObject(j, "eos_token_id", eot);
    }
    if (c->arch == FL_ARCH_BERT) cJSON_AddNumberToObject(j, "pad_token_id", c->pad_token);
    for (int l = 0; l < c->n_layers; l++) cJSON_AddItemToArray(specs, cJSON_CreateString(c->ffn_specs[l]));
    cJSON_AddItemToObject(ffn, "ffn", specs);
    add_attention(ffn, c);
    cJSON_AddStringToObject(ffn, "version", FFNLAB_VERSION);
    cJSON_AddItemToObject(j, "ffnlab", ffn);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

fl_status fl_checkpoint_save(const char *dir, fl_model *m, int with_optimizer, int64_t step,
                             int32_t eot, fl_error *err) {
    const fl_comm *c = fl_model_host(m)->comm;
    if (c->dp_rank != 0) return FL_OK; /* a replica of expert group 0: nothing of its own */
    /* Every file goes into <dir>.tmp, which then replaces dir in one step:
       a checkpoint is all of one step or all of the previous one, never a
       model of one step beside the optimizer state of another. */
    char tmp[4096], path[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= (int)sizeof tmp) return fl_fail(err, FL_EINVAL, "%s: path too long", dir);
    fl_status st = FL_OK;
    if (c->rank == 0 && fl_remove_tree(tmp) != 0) st = fl_fail(err, FL_EIO, "%s: cannot remove a stale copy", tmp);
    if (!st && c->rank == 0) st = fl_mkdirs(tmp, err);
    if (!st) st = fl_path_join(path, sizeof path, tmp, "model.safetensors", err);
    if (!st) st = write_tensors(path, m, 0, step, err);
    if (!st && c->rank == 0) fl_test_pause("checkpoint.model");
    if (!st && with_optimizer && !(st = fl_path_join(path, sizeof path, tmp, "optimizer.safetensors", err)))
        st = write_tensors(path, m, 1, step, err);
    if (st && c->rank == 0) fl_remove_tree(tmp); /* a failed write (a full disk) leaves nothing */
    if (st || c->rank != 0) return st;
    char *cfg = config_json(m, eot);
    if (!cfg) return fl_fail(err, FL_ENOMEM, "out of memory writing config.json");
    if (!(st = fl_path_join(path, sizeof path, tmp, "config.json", err)))
        st = fl_write_file_atomic(path, cfg, strlen(cfg), err);
    free(cfg);
    if (!st) fl_test_pause("checkpoint.complete");
    if (!st) st = fl_replace_dir(tmp, dir, err);
    if (st) fl_remove_tree(tmp);
    return st;
}

/* ------------------------------------------------------------------ load */

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* dst, or this rank's experts shard_offset.. of it when sharded (the file
   holds all global_dim0 of them). */
static fl_status load_one(const char *path, const fl_backend *be, const fl_st_file *f,
                          const char *name, const fl_comm *c, const fl_param *p, fl_tensor *dst,
                          fl_error *err) {
    const fl_st_entry *e = fl_safetensors_find(f, name);
    if (!e) return fl_fail(err, FL_EINVAL, "%s: tensor %s is missing", path, name);
    fl_tensor whole = *dst;
    size_t skip = 0;
    if (is_sharded(c, p)) {
        whole.shape[0] = p->global_dim0;
        skip = (size_t)p->shard_offset * (fl_nbytes(dst) / (size_t)dst->shape[0]);
    }
    int same = e->dtype == FL_F32 && e->ndim == whole.ndim;
    for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == whole.shape[d];
    if (!same) {
        char got[96], want[96];
        shape_text(got, sizeof got, e->ndim, e->shape);
        shape_text(want, sizeof want, whole.ndim, whole.shape);
        return fl_fail(err, FL_EINVAL, "%s: tensor %s has shape %s%s, the model expects %s (f32)", path, name,
                       got, e->dtype == FL_F32 ? "" : " (not f32)", want);
    }
    be->ops.from_host(dst, (const char *)e->data + skip, fl_nbytes(dst));
    return FL_OK;
}

static fl_status read_step(const char *path, const fl_st_file *f, int64_t *step, fl_error *err) {
    const char *s = fl_safetensors_meta(f, "step");
    char *end = NULL;
    long long v = s ? strtoll(s, &end, 10) : -1;
    if (!s || *end || v < 0) return fl_fail(err, FL_EINVAL, "%s: metadata has no valid \"step\"", path);
    *step = v;
    return FL_OK;
}

/* which: 0 values, 1 moments */
static fl_status load_file(const char *path, fl_model *m, int which, int64_t *step, fl_error *err) {
    const fl_backend *be = fl_host_backend(fl_model_host(m));
    const fl_comm *c = fl_model_host(m)->comm;
    fl_st_file *f = NULL;
    fl_status st = fl_safetensors_open(path, &f, err);
    if (st) return st;
    st = read_step(path, f, step, err);
    int n = fl_model_n_params(m);
    size_t expected = 0;
    char name[600];
    for (int i = 0; i < n && !st; i++) {
        fl_param_impl *p = impl_at(m, i);
        if (which == 0) {
            st = load_one(path, be, f, p->pub.name, c, &p->pub, &p->pub.value, err);
            expected++;
            continue;
        }
        if ((st = fl_params_ensure_moments(be, p, err))) break;
        snprintf(name, sizeof name, "m.%s", p->pub.name);
        if (!(st = load_one(path, be, f, name, c, &p->pub, &p->m, err))) {
            snprintf(name, sizeof name, "v.%s", p->pub.name);
            st = load_one(path, be, f, name, c, &p->pub, &p->v, err);
        }
        expected += 2;
    }
    if (!st && fl_safetensors_count(f) != expected)
        st = fl_fail(err, FL_EINVAL, "%s: holds %zu tensors, the model has %zu (a different model?)", path,
                     fl_safetensors_count(f), expected);
    fl_safetensors_close(f);
    return st;
}

fl_status fl_checkpoint_load(const char *dir, fl_model *m, int with_optimizer, int64_t *step,
                             fl_error *err) {
    char path[4096];
    int64_t s_model = 0, s_opt = 0;
    fl_status st = fl_path_join(path, sizeof path, dir, "model.safetensors", err);
    if (!st) st = load_file(path, m, 0, &s_model, err);
    if (!st && with_optimizer && !(st = fl_path_join(path, sizeof path, dir, "optimizer.safetensors", err))) {
        st = load_file(path, m, 1, &s_opt, err);
        if (!st && s_opt != s_model)
            st = fl_fail(err, FL_EINVAL, "%s: optimizer state is from step %lld but the model from step %lld", dir,
                         (long long)s_opt, (long long)s_model);
    }
    if (!st && step) *step = s_model;
    return st;
}
