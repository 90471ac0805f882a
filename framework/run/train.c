/*
 * run/train.c — one training run (see train.h).
 *
 * Multi-process runs (mpirun -np P; README "Multi-process runs"): rank 0
 * prepares the run folder and the data while the others wait, then every
 * rank opens the same shards and builds the same model (experts sharded
 * when expert_parallel > 1). Each step every rank cuts the same global
 * batch and trains on its B/P sequences; core/dist.c averages the
 * gradients, so the replicas take identical optimizer steps. Losses are
 * reduced to the global mean, validation batches are split the same way,
 * and only rank 0 writes metrics, progress and checkpoint files. Start-up
 * errors are agreed between ranks (fl_comm_agree) so all end cleanly; one
 * process runs exactly the code it always did.
 */
#include "train.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "batches.h"
#include "checkpoint.h"
#include "clock.h"
#include "comm.h"
#include "corpus.h"
#include "dist.h"
#include "error.h"
#include "eval.h"
#include "fsutil.h"
#include "host_table.h"
#include "log.h"
#include "mlm.h"
#include "model.h"
#include "optim.h"
#include "prepare.h"
#include "results.h"
#include "run_load.h"
#include "runfiles.h"
#include "shard.h"
#include "stop_signals.h"
#include "storygen.h"
#include "test_hook.h"
#include "tokenizer.h"

typedef struct run {
    const fl_config *cfg;      /* the caller's, or own_cfg */
    fl_config own_cfg;         /* the caller's with the given tokenizer's vocab_size */
    fl_run_dir rd;             /* the run folder's names and state (rank 0 changes it) */
    char dir[FL_PATH_MAX];     /* the folder this rank uses now: rd's temporary one until the commit */
    const fl_backend *be;
    fl_tokenizer *tok;
    fl_shard train, val;
    fl_model *model;
    FILE *metrics;
    int32_t *x, *y;            /* [B,T] host batch */
    double t0;
    int progress_line;         /* 1: rewrite one terminal line */
    const fl_comm *comm;       /* the job's ranks (size 1 alone) */
    fl_dist *dist;             /* gradient averaging when size > 1 */
    int b_local;               /* sequences of the batch this rank trains on */
    int stop_agreed;           /* some rank was asked to stop (multi-process) */
    fl_layer_stats *stats;     /* rank 0: the FFN layers' stats of the last forward */
    double t_before;           /* wall time of the run's earlier sessions (--resume) */
    double eval_tokens_per_s;  /* the last validation pass's throughput */
    fl_model_size size;        /* of the model being trained */
    double step_seconds;       /* time inside training steps this session... */
    int64_t steps_timed;       /* ...and how many: the training throughput */
    int encoder;               /* arch bert: batches are masked (core/mlm.h) */
    fl_mlm mlm;
} run;

/* ------------------------------------------------------------ data */

/* The corpus the run trains on: the given file, or the built-in grammar. */
static fl_status load_corpus(const fl_config *cfg, fl_corpus *c, fl_error *err) {
    if (cfg->corpus[0]) return fl_corpus_read(cfg->corpus, c, err);
    char *text = NULL;
    size_t len = 0;
    fl_status st = fl_storygen_text(cfg->seed, (size_t)cfg->corpus_bytes, &text, &len, err);
    if (!st) st = fl_corpus_parse(text, len, "<built-in corpus>", c, err);
    free(text);
    return st;
}

fl_status fl_train_prepare_data(const fl_config *cfg, const char *tok_path, const char *data_dir, fl_tokenizer **tok,
                                fl_error *err) {
    fl_corpus corpus = {0};
    fl_status st = load_corpus(cfg, &corpus, err);
    if (!st && cfg->tokenizer[0]) st = fl_tokenizer_load(cfg->tokenizer, tok, err);
    if (!st && !cfg->tokenizer[0]) {
        const int bert = fl_config_arch(cfg) == FL_ARCH_BERT; /* it needs <s>, </s>, <pad>, <mask> */
        fl_log_info("training a %d-token BPE tokenizer on %zu documents (%.1f MB)", cfg->vocab_size,
                    corpus.n_docs, corpus.bytes / 1e6);
        st = fl_tokenizer_train_special(corpus.docs, corpus.lens, corpus.n_docs, cfg->vocab_size, FL_ENCODER_SPECIALS,
                                        bert ? FL_N_ENCODER_SPECIALS : 0, tok, err);
    }
    if (!st) st = fl_tokenizer_save(*tok, tok_path, err);
    uint64_t n_train = 0, n_val = 0;
    if (!st) st = fl_data_prepare(&corpus, *tok, cfg->val_fraction, data_dir, &n_train, &n_val, err);
    if (!st) fl_log_info("data: %llu training and %llu validation tokens", (unsigned long long)n_train, (unsigned long long)n_val);
    fl_corpus_free(&corpus);
    return st;
}

/* tokenizer.json and data/{train,val}.bin inside the run folder. */
static fl_status prepare_data(run *r, fl_error *err) {
    char tok_path[FL_PATH_MAX + 32], data_dir[FL_PATH_MAX + 32];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", r->dir);
    snprintf(data_dir, sizeof data_dir, "%s/data", r->dir);
    return fl_train_prepare_data(r->cfg, tok_path, data_dir, &r->tok, err);
}

static fl_status open_shards(run *r, fl_error *err) {
    const fl_config *cfg = r->cfg;
    char dir[FL_PATH_MAX + 32], path[FL_PATH_MAX + 64];
    if (cfg->data_dir[0]) snprintf(dir, sizeof dir, "%s", cfg->data_dir);
    else snprintf(dir, sizeof dir, "%s/data", r->dir);
    snprintf(path, sizeof path, "%s/train.bin", dir);
    fl_status st = fl_shard_open(path, &r->train, err);
    snprintf(path, sizeof path, "%s/val.bin", dir);
    if (!st) st = fl_shard_open(path, &r->val, err);
    if (st) return st;
    const fl_shard *small = r->train.n_tokens < r->val.n_tokens ? &r->train : &r->val;
    if (small->n_tokens < (uint64_t)cfg->context + 1)
        return fl_fail(err, FL_EINVAL, "%s: %s shard has %llu tokens, fewer than context+1 = %d", dir,
                       small == &r->train ? "training" : "validation", (unsigned long long)small->n_tokens,
                       cfg->context + 1);
    if ((int64_t)r->train.vocab_size != fl_tokenizer_vocab_size(r->tok))
        return fl_fail(err, FL_EINVAL, "%s: shards were made with a %u-token vocabulary, the tokenizer has %d", dir,
                       r->train.vocab_size, fl_tokenizer_vocab_size(r->tok));
    return FL_OK;
}

/* H = -Σ p log p over the training shard's token frequencies, in nats. */
static double unigram_entropy(const fl_shard *s) {
    uint64_t *count = calloc(s->vocab_size, sizeof *count);
    if (!count) return NAN;
    int32_t buf[4096];
    for (uint64_t i = 0; i < s->n_tokens; i += 4096) {
        uint64_t n = s->n_tokens - i < 4096 ? s->n_tokens - i : 4096;
        fl_shard_read(s, i, n, buf);
        for (uint64_t k = 0; k < n; k++) count[buf[k]]++;
    }
    double h = 0;
    for (uint32_t v = 0; v < s->vocab_size; v++)
        if (count[v]) {
            double p = (double)count[v] / (double)s->n_tokens;
            h -= p * log(p);
        }
    free(count);
    return h;
}

/* ------------------------------------------------------------ model */

/* The model on the backend and communicator preflight opened, and its sizes. */
static fl_status build_model(run *r, fl_error *err) {
    const int32_t V = fl_tokenizer_vocab_size(r->tok);
    /* the whole model's sizes, not this rank's shard; measured before the
       model exists so its layers are the last ones the plugins created */
    fl_status st = fl_config_model_size(r->cfg, V, r->be, NULL, &r->size, err);
    if (!st) st = fl_model_from_config_on(r->cfg, r->tok, r->be, r->comm, &r->model, err);
    if (!st && r->comm->size > 1) st = fl_dist_create(r->model, &r->dist, err);
    if (!st && r->encoder) st = fl_mlm_init(&r->mlm, r->tok, V, r->cfg->mask_prob, err);
    if (st) return st;
    const fl_model_config *mc = fl_model_cfg(r->model);
    fl_log_info("model: %.2fM parameters (FFN %.2fM), %.2fM active per token, %.2f MFLOP per token at inference; "
                "d_model %d, %d layers, %d heads, context %d, vocab %d, on %s",
                r->size.total_params / 1e6, r->size.ffn_params / 1e6, r->size.active_params / 1e6,
                r->size.flops_per_token / 1e6, mc->d_model, mc->n_layers, mc->n_heads, mc->context, mc->vocab_size,
                r->be->name);
    return FL_OK;
}

/* ------------------------------------------------------------ steps */

/* This rank's rows of the host batch (the whole batch in one process). */
static int32_t *local_rows(const run *r, int32_t *batch) {
    return batch + (int64_t)r->comm->rank * r->b_local * r->cfg->context;
}

/* An encoder's batch r->x, r->y (stream windows) masked in place, its rows
   numbered row0.., and this rank's loss weight P n_rank / n_all, so that
   the mean of the ranks' weighted means is the mean over every masked
   position of the global batch (fl_model_set_loss_weight). */
static void mask_batch(run *r, uint64_t key, uint64_t row0) {
    const int B = r->cfg->batch_size, T = r->cfg->context, b0 = r->comm->rank * r->b_local;
    fl_mlm_batch(&r->mlm, key, row0, B, T, r->x, r->y);
    const int64_t all = fl_mlm_count(r->y, 0, B, T), mine = fl_mlm_count(r->y, b0, b0 + r->b_local, T);
    fl_model_set_loss_weight(r->model, all ? (double)r->comm->size * (double)mine / (double)all : 1.0);
}

/* Validation batches are split over the ranks like training batches; a
   decoder's windows score all their tokens, an encoder's ranks are weighted
   by their masked positions (mask_batch), so the mean of the ranks' means
   is the global mean. */
static fl_status eval_loss(run *r, double *loss, fl_error *err) {
    const fl_config *cfg = r->cfg;
    double sum = 0, t0 = fl_now_s();
    for (int i = 0; i < cfg->eval_batches; i++) {
        fl_batch_eval(&r->val, i, cfg->eval_batches, cfg->batch_size, cfg->context, r->x, r->y);
        if (r->encoder) mask_batch(r, fl_mlm_val_key(cfg->seed), (uint64_t)i * (uint64_t)cfg->batch_size);
        double l = 0;
        fl_status st = fl_model_forward(r->model, local_rows(r, r->x), local_rows(r, r->y), r->b_local,
                                        cfg->context, 0, 0, &l, err);
        if (st) return st;
        sum += fl_model_ce_loss(r->model);
    }
    fl_status st = fl_comm_sum_f64(r->comm, FL_COMM_WORLD, &sum, 1, err);
    *loss = sum / r->comm->size / cfg->eval_batches;
    r->eval_tokens_per_s = (double)cfg->eval_batches * cfg->batch_size * cfg->context / (fl_now_s() - t0);
    return st;
}

typedef struct step_info {
    double loss, ce, lr, grad_norm;
    fl_stat aux[16];           /* the step's auxiliary losses (global means) */
    int n_aux;
} step_info;

/* Loss, cross-entropy and aux losses become means over the ranks; the
   stop request of any rank becomes every rank's. One small all-reduce. */
static fl_status reduce_losses(run *r, step_info *si, fl_error *err) {
    si->n_aux = fl_model_aux_losses(r->model, si->aux, 16);
    if (si->n_aux > 16) si->n_aux = 16;
    if (r->comm->size == 1) return FL_OK;
    double v[19] = {si->loss, si->ce, fl_stop_signal() ? 1.0 : 0.0};
    for (int i = 0; i < si->n_aux; i++) v[3 + i] = si->aux[i].value;
    fl_status st = fl_comm_sum_f64(r->comm, FL_COMM_WORLD, v, 3 + si->n_aux, err);
    const double P = r->comm->size;
    si->loss = v[0] / P, si->ce = v[1] / P, r->stop_agreed = v[2] > 0;
    for (int i = 0; i < si->n_aux; i++) si->aux[i].value = v[3 + i] / P;
    return st;
}

/* The averaged gradients' global norm (plain fl_grad_norm in one process). */
static fl_status sync_and_norm(run *r, fl_param_list *ps, double *norm, fl_error *err) {
    if (!r->dist) {
        *norm = fl_grad_norm(fl_host_backend(fl_model_host(r->model)), ps);
        return FL_OK;
    }
    fl_status st = fl_dist_sync_grads(r->dist, err);
    return st ? st : fl_dist_grad_norm(r->dist, norm, err);
}

static int stop_requested(const run *r) { return r->comm->size > 1 ? r->stop_agreed : fl_stop_signal() != 0; }

static fl_status train_step(run *r, int64_t step, step_info *si, fl_error *err) {
    const fl_config *cfg = r->cfg;
    const fl_backend *be = fl_host_backend(fl_model_host(r->model));
    fl_batch_train(&r->train, cfg->seed, step, cfg->batch_size, cfg->context, r->x, r->y);
    if (r->encoder) mask_batch(r, fl_mlm_train_key(cfg->seed), (uint64_t)step * (uint64_t)cfg->batch_size);
    fl_model_zero_grad(r->model);
    fl_status st = fl_model_forward(r->model, local_rows(r, r->x), local_rows(r, r->y), r->b_local, cfg->context,
                                    1, step, &si->loss, err);
    if (st == FL_ENUMERIC) fl_error_prefix(err, "training stopped without saving a checkpoint");
    if (st) return st;
    si->ce = fl_model_ce_loss(r->model);
    if ((st = fl_model_backward(r->model, err))) return st;
    fl_param_list *ps = fl_model_params(r->model);
    if ((st = reduce_losses(r, si, err)) || (st = sync_and_norm(r, ps, &si->grad_norm, err))) return st;
    if (!isfinite(si->grad_norm)) /* the same averaged norm on every rank: a shared error */
        return fl_comm_agree(r->comm, fl_fail(err, FL_ENUMERIC, "gradient norm is not finite at step %lld; stopping without saving a checkpoint", (long long)step), err);
    float clip = cfg->grad_clip > 0 && si->grad_norm > cfg->grad_clip ? (float)(cfg->grad_clip / si->grad_norm) : 1.0f;
    si->lr = fl_lr_at(step, cfg->warmup_steps, cfg->steps, cfg->lr, cfg->min_lr_ratio);
    fl_adamw opt = {.lr = cfg->lr, .beta1 = cfg->beta1, .beta2 = cfg->beta2, .eps = cfg->adam_eps,
                    .weight_decay = cfg->weight_decay};
    return fl_adamw_step(be, ps, &opt, si->lr, clip, step + 1, err);
}

/* ------------------------------------------------------------ logging */

static void format_eta(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* Wall time of the whole run, earlier sessions included. */
static double run_time(const run *r) { return r->t_before + fl_now_s() - r->t0; }

/* Every layer's plugin stats of the model's last forward into r->stats. */
static const fl_layer_stats *collect_stats(run *r) {
    fl_layer_stats *ls = r->stats;
    ls->n_layers = r->cfg->n_layers;
    for (int l = 0; l < ls->n_layers; l++) {
        void *layer = NULL;
        const fl_ffn_plugin *p = fl_model_ffn(r->model, l, &layer);
        int n = p->stats ? p->stats(layer, ls->s + (size_t)l * FL_STATS_MAX, FL_STATS_MAX) : 0;
        ls->n[l] = n < FL_STATS_MAX ? n : FL_STATS_MAX;
    }
    return ls;
}

static int64_t tokens_after(const run *r, int64_t steps) {
    return steps * (int64_t)r->cfg->batch_size * r->cfg->context;
}

static fl_status write_line(run *r, const fl_metrics_line *m, fl_error *err) {
    cJSON *o = fl_json_metrics_line(m);
    fl_status st = o ? fl_json_append_line(r->metrics, o, err) : fl_fail(err, FL_ENOMEM, "out of memory");
    cJSON_Delete(o);
    if (st) fl_error_prefix(err, "%s/metrics.jsonl", r->dir);
    return st;
}

static fl_status log_step(run *r, int64_t step, int64_t first, const step_info *si, double tok_s, fl_error *err) {
    const fl_config *cfg = r->cfg;
    if (!r->metrics) return FL_OK; /* not rank 0 */
    fl_metrics_line m = {.step = step + 1, .tokens = tokens_after(r, step + 1), .time_s = run_time(r),
                         .loss = si->loss, .ce_loss = si->ce, .lr = si->lr, .grad_norm = si->grad_norm,
                         .tokens_per_s = tok_s, .aux = si->aux, .n_aux = si->n_aux < 16 ? si->n_aux : 16,
                         .stats = collect_stats(r)};
    fl_status st = write_line(r, &m, err);
    char eta[32];
    double per_step = (fl_now_s() - r->t0) / (double)(step + 1 - first);
    format_eta(eta, sizeof eta, per_step * (double)(cfg->steps - step - 1));
    fprintf(stderr, "%sstep %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s", r->progress_line ? "\r" : "",
            (long long)step + 1, (long long)cfg->steps, si->loss, si->lr, tok_s, eta, r->progress_line ? "   " : "\n");
    fflush(stderr);
    return st;
}

/* A validation line: the stats are those of the validation forward (eval
   mode: CNT's inference path, PKM's running batch-norm statistics). */
static fl_status log_val(run *r, int64_t step, double val, fl_error *err) {
    if (!r->metrics) return FL_OK; /* not rank 0 */
    fl_metrics_line m = {.is_val = 1, .step = step, .tokens = tokens_after(r, step), .time_s = run_time(r),
                         .val_loss = val, .stats = collect_stats(r)};
    fl_status st = write_line(r, &m, err);
    fprintf(stderr, "%sstep %lld: validation loss %.4f\n", r->progress_line ? "\n" : "", (long long)step, val);
    return st;
}

static fl_status save(run *r, int64_t step, fl_error *err) {
    char dir[FL_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/checkpoint", r->dir);
    fl_status st = fl_checkpoint_save(dir, r->model, 1, step, fl_tokenizer_eot(r->tok), err);
    if (!st && r->comm->rank == 0) fl_run_dir_keep(&r->rd); /* from now on a failure keeps the folder */
    return st;
}

/* ------------------------------------------------------------ the run */

int fl_train_interrupt_status(void) {
    const int sig = fl_stop_signal();
    return 128 + (sig ? sig : SIGINT);
}

static fl_status loop(run *r, int64_t first, int64_t stop_after, fl_train_result *res, fl_error *err) {
    const fl_config *cfg = r->cfg;
    const double tokens_per_step = (double)cfg->batch_size * cfg->context;
    double t_last = fl_now_s();
    int64_t step = first, logged_at = first;
    step_info si = {0};
    fl_status st = FL_OK;
    for (; step < cfg->steps && !st; step++) {
        fl_test_pause("step");
        if (stop_requested(r) || (stop_after > 0 && step >= stop_after)) break;
        double t_step = fl_now_s();
        if ((st = train_step(r, step, &si, err))) break;
        r->step_seconds += fl_now_s() - t_step, r->steps_timed++;
        if ((step + 1) % cfg->log_every == 0 || step + 1 == cfg->steps) {
            double t = fl_now_s(), tok_s = tokens_per_step * (double)(step + 1 - logged_at) / (t - t_last);
            res->tokens_per_s = tok_s;
            t_last = t, logged_at = step + 1;
            if ((st = log_step(r, step, first, &si, tok_s, err))) break;
        }
        if (cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0 && step + 1 < cfg->steps) {
            double val;
            if ((st = eval_loss(r, &val, err)) || (st = log_val(r, step + 1, val, err))) break;
        }
        if (cfg->ckpt_every > 0 && (step + 1) % cfg->ckpt_every == 0) st = save(r, step + 1, err);
    }
    res->steps_done = step;
    res->final_train_loss = si.loss;
    if (st) return st;
    if ((st = save(r, step, err))) return st;
    if (step < cfg->steps && !stop_requested(r)) return FL_OK; /* --stop-after: a planned pause */
    if (stop_requested(r)) /* every rank stopped at the same step: a shared error */
        return fl_comm_agree(r->comm, fl_fail(err, FL_EINTR, "interrupted%s at step %lld; checkpoint saved in %s/checkpoint (continue with: ffnlab train --run-dir %s --resume)",
                       fl_stop_signal() == SIGTERM ? " by SIGTERM" : "", (long long)step, r->dir, r->dir), err);
    if ((st = eval_loss(r, &res->final_val_loss, err))) return st;
    return log_val(r, step, res->final_val_loss, err);
}

/* The run's tokenizer: the run folder's (resume), the prepared data's, or a
   fresh one from prepare_data(). A copy always ends up in the run folder. */
static fl_status setup_tokenizer_and_data(run *r, int resume, fl_error *err) {
    const fl_config *cfg = r->cfg;
    char path[FL_PATH_MAX + 32], run_copy[FL_PATH_MAX + 32];
    snprintf(run_copy, sizeof run_copy, "%s/tokenizer.json", r->dir);
    if (resume) return fl_tokenizer_load(run_copy, &r->tok, err);
    if (!cfg->data_dir[0]) return prepare_data(r, err);
    if (cfg->tokenizer[0]) snprintf(path, sizeof path, "%s", cfg->tokenizer);
    else snprintf(path, sizeof path, "%s/tokenizer.json", cfg->data_dir);
    fl_status st = fl_tokenizer_load(path, &r->tok, err);
    return st ? st : fl_tokenizer_save(r->tok, run_copy, err);
}

/* Rank 0 alone: the run folder (a new run's under its temporary name), its
   config, the tokenizer and the shards. */
static fl_status prepare_run(run *r, const fl_train_opts *o, fl_error *err) {
    fl_status st = fl_run_dir_begin(&r->rd, o->force, err);
    snprintf(r->dir, sizeof r->dir, "%s", fl_run_dir_path(&r->rd));
    if (!st && !o->resume) st = fl_run_write_config(r->dir, r->cfg, err);
    return st ? st : setup_tokenizer_and_data(r, o->resume, err);
}

/* metrics.jsonl of a resumed run cut back to the checkpoint's step (a run
   killed after its last checkpoint logged steps that will run again, and
   its last line may be half written); *t_before = the run's wall time at
   that step, so time_s goes on from there. */
static fl_status resume_metrics(const char *path, int64_t step, double *t_before, fl_error *err) {
    char *text = NULL;
    size_t len = 0;
    *t_before = 0;
    if (!fl_path_exists(path)) return FL_OK;
    fl_status st = fl_read_file(path, &text, &len, err);
    if (st) return st;
    size_t keep = 0;
    for (char *line = text, *next; line < text + len; line = next) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        next = nl ? nl + 1 : text + len;
        if (!nl) break; /* no newline: a half-written last line */
        cJSON *o = cJSON_ParseWithLength(line, (size_t)(nl - line));
        const cJSON *st_item = cJSON_GetObjectItemCaseSensitive(o, "step");
        const cJSON *t_item = cJSON_GetObjectItemCaseSensitive(o, "time_s");
        int ok = cJSON_IsNumber(st_item) && st_item->valuedouble <= (double)step;
        if (ok && cJSON_IsNumber(t_item)) *t_before = t_item->valuedouble;
        cJSON_Delete(o);
        if (!ok) break;
        keep = (size_t)(next - text);
    }
    if (keep < len) st = fl_write_file_atomic(path, text, keep, err);
    free(text);
    return st;
}

/* The model, resumed from the checkpoint when asked; rank 0's metrics file. */
static fl_status open_model(run *r, const fl_train_opts *o, int64_t *first, fl_error *err) {
    fl_status st = build_model(r, err);
    *first = 0;
    if (!st && o->resume) {
        char dir[FL_PATH_MAX + 64];
        snprintf(dir, sizeof dir, "%s/checkpoint", r->dir);
        if ((st = fl_checkpoint_load(dir, r->model, 1, first, err))) return st;
        fl_log_info("resuming %s at step %lld", r->dir, (long long)*first);
    }
    if (st || r->comm->rank != 0) return st;
    if (!(r->stats = calloc(1, sizeof *r->stats))) return fl_fail(err, FL_ENOMEM, "out of memory");
    char path[FL_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    if (o->resume && (st = resume_metrics(path, *first, &r->t_before, err))) return st;
    r->metrics = fopen(path, o->resume ? "a" : "w");
    if (!r->metrics) return fl_fail(err, FL_EIO, "%s: cannot open for writing", path);
    return FL_OK;
}

/* A file the run will read: one line naming it and the flag when it cannot. */
static fl_status check_readable(const char *path, const char *flag, fl_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return fl_fail(err, FL_EIO, "%s %s: %s", flag, path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return fl_fail(err, FL_EINVAL, "%s %s: not a regular file", flag, path);
    if (access(path, R_OK) != 0) return fl_fail(err, FL_EIO, "%s %s: %s", flag, path, strerror(errno));
    return FL_OK;
}

/* The inputs a new run reads: the tokenizer (loaded; *vocab = its size, 0
   when the run trains its own), the prepared shards, or the corpus
   (readable: reading it is the work itself). */
static fl_status check_inputs(const fl_config *cfg, int32_t *vocab, fl_error *err) {
    char path[FL_PATH_MAX + 32];
    fl_status st = FL_OK;
    const char *tok = cfg->tokenizer;
    if (cfg->data_dir[0]) {
        const char *shards[] = {"train.bin", "val.bin"};
        for (int i = 0; i < 2 && !st; i++) {
            snprintf(path, sizeof path, "%s/%s", cfg->data_dir, shards[i]);
            st = check_readable(path, "--data-dir", err);
        }
        if (!tok[0]) {
            snprintf(path, sizeof path, "%s/tokenizer.json", cfg->data_dir);
            tok = path;
        }
    } else if (cfg->corpus[0]) {
        st = check_readable(cfg->corpus, "--corpus", err);
    }
    if (!st && tok[0]) {
        fl_tokenizer *t = NULL;
        fl_special_ids ids;
        st = fl_tokenizer_load(tok, &t, err);
        if (!st && fl_config_arch(cfg) == FL_ARCH_BERT) st = fl_tokenizer_encoder_ids(t, tok, &ids, err);
        *vocab = st ? 0 : fl_tokenizer_vocab_size(t);
        fl_tokenizer_free(t);
        if (st) fl_error_prefix(err, "%s", cfg->tokenizer[0] ? "--tokenizer" : "--data-dir");
    }
    return st;
}

/* A given tokenizer sizes the model: the config (and so train_config.json)
   says its vocabulary, not --vocab-size's. */
static fl_status take_vocab(run *r, int32_t vocab, fl_error *err) {
    fl_log_info("vocab_size %d: the tokenizer's (the config said %d)", vocab, r->cfg->vocab_size);
    r->own_cfg = *r->cfg;
    r->own_cfg.vocab_size = vocab;
    r->cfg = &r->own_cfg;
    fl_status st = fl_config_validate(r->cfg, err);
    if (st) fl_error_prefix(err, "--tokenizer");
    return st;
}

/* Everything that can be checked before a file is written, on every rank:
   the run folder may be used, the inputs can be read, the backend and the
   communicator open, and every layer's FFN plugin loads, parses its options
   and creates its layer at the model's shape. */
static fl_status preflight(run *r, const fl_train_opts *o, fl_error *err) {
    fl_status st = fl_run_dir_plan(&r->rd, r->cfg->run_dir, o->resume, err);
    if (!st) st = fl_run_dir_check(&r->rd, o->force, err);
    int32_t vocab = 0;
    if (!st && !o->resume) st = check_inputs(r->cfg, &vocab, err);
    if (!st && vocab && vocab != r->cfg->vocab_size) st = take_vocab(r, vocab, err);
    if (!st) st = fl_backend_select(r->cfg->device, &r->be, err);
    if (!st) st = fl_comm_open(r->cfg->expert_parallel, r->be->device, &r->comm, err);
    if (!st) {
        fl_model_size size;
        st = fl_config_model_size(r->cfg, r->cfg->vocab_size, r->be, r->comm, &size, err);
        fl_model_size_free(&size);
    }
    return st;
}

/* Each phase ends with every rank agreeing on its outcome: the others wait
   for rank 0's files, and an error anywhere ends every rank cleanly. The
   new run's folder is renamed into place last, once everything worked. */
static fl_status start(run *r, const fl_train_opts *o, const fl_comm *world, int64_t *first, fl_error *err) {
    fl_status st = preflight(r, o, err);
    if ((st = fl_comm_agree(world, st, err))) return st;
    const fl_config *cfg = r->cfg; /* preflight may have taken the tokenizer's vocab_size */
    if (world->rank == 0) st = prepare_run(r, o, err);
    else snprintf(r->dir, sizeof r->dir, "%s", o->resume ? r->rd.final : r->rd.tmp); /* rank 0's folder */
    if ((st = fl_comm_agree(world, st, err))) return st;
    if (world->rank != 0) st = setup_tokenizer_and_data(r, 1, err); /* rank 0's copy in the run folder */
    if (!st) st = open_shards(r, err);
    if ((st = fl_comm_agree(world, st, err))) return st;
    st = open_model(r, o, first, err);
    size_t n = (size_t)cfg->batch_size * (size_t)cfg->context;
    if (!st && (!(r->x = malloc(n * sizeof *r->x)) || !(r->y = malloc(n * sizeof *r->y))))
        st = fl_fail(err, FL_ENOMEM, "out of memory for a batch");
    if ((st = fl_comm_agree(world, st, err))) return st;
    if (world->rank == 0) st = fl_run_dir_commit(&r->rd, err);
    snprintf(r->dir, sizeof r->dir, "%s", r->rd.final);
    return fl_comm_agree(world, st, err);
}

/* Rank 0, once the run is complete: <run>/summary.json. */
static fl_status write_summary(run *r, const fl_train_result *res, fl_error *err) {
    if (r->comm->rank != 0) return FL_OK;
    char specs[FL_MAX_LAYERS][FL_SPEC_MAX], path[FL_PATH_MAX + 32];
    const char *ptrs[FL_MAX_LAYERS];
    for (int l = 0; l < r->cfg->n_layers; l++) {
        fl_status st = fl_config_layer_ffn(r->cfg, l, specs[l], sizeof specs[l], err);
        if (st) return st;
        ptrs[l] = specs[l];
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* ru_maxrss: KiB on Linux */
    fl_run_summary s = {.cfg = r->cfg, .ffn_specs = ptrs, .size = r->size, .train = *res,
                        .tokens = tokens_after(r, res->steps_done), .seconds = run_time(r),
                        .train_tokens_per_s = r->step_seconds > 0 ? tokens_after(r, r->steps_timed) / r->step_seconds : 0,
                        .inference_tokens_per_s = r->eval_tokens_per_s, .peak_rss_mib = (double)ru.ru_maxrss / 1024.0};
    cJSON *o = fl_json_run_summary(&s);
    snprintf(path, sizeof path, "%s/summary.json", r->dir);
    fl_status st = o ? fl_json_write_file(path, o, err) : fl_fail(err, FL_ENOMEM, "out of memory");
    cJSON_Delete(o);
    return st;
}

static void finish(run *r) {
    if (r->metrics) fclose(r->metrics);
    free(r->stats);
    fl_model_size_free(&r->size);
    fl_dist_free(r->dist);
    fl_mlm_free(&r->mlm);
    fl_model_free(r->model);
    fl_comm_close(r->comm);
    fl_tokenizer_free(r->tok);
    if (r->train.map) fl_shard_close(&r->train);
    if (r->val.map) fl_shard_close(&r->val);
    free(r->x);
    free(r->y);
}

/* FNV-1a: the config's fingerprint, compared between ranks. */
static uint64_t hash_text(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* A multi-process job: the same config on every rank, a batch that splits
   over the ranks, expert groups that divide them. Collective. */
static fl_status check_job(const fl_config *cfg, const fl_comm *world, fl_error *err) {
    if (world->size == 1) return FL_OK;
    char *json = fl_config_to_json(cfg);
    uint64_t h = hash_text(json), lo = 0, hi = 0;
    free(json);
    fl_status st = fl_comm_minmax_u64(world, &h, &lo, &hi, 1, err);
    if (st) return st;
    if (lo != hi)
        st = fl_fail(err, FL_EINVAL, "the %d processes of this job were given different configurations (their config "
                                     "hashes differ); start every rank with the same flags and files", world->size);
    else if (cfg->batch_size % world->size)
        st = fl_fail(err, FL_EINVAL, "batch_size %d does not split over %d processes: make it a multiple of the process count",
                     cfg->batch_size, world->size);
    else if (world->size % cfg->expert_parallel)
        st = fl_fail(err, FL_EINVAL, "expert_parallel %d does not divide the %d processes of this job", cfg->expert_parallel,
                     world->size);
    return fl_comm_agree(world, st, err);
}

/* --threads, else OMP_NUM_THREADS, else the cores shared out among this
   node's ranks (OpenMP alone would give every rank all of them). */
static void set_threads(const fl_config *cfg, const fl_comm *world) {
    if (cfg->threads > 0) {
        omp_set_num_threads(cfg->threads);
        return;
    }
    if (getenv("OMP_NUM_THREADS")) return;
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int ranks_here = local ? atoi(local) : world->size;
    if (world->size == 1 || ranks_here < 2) return;
    int n = omp_get_num_procs() / ranks_here;
    omp_set_num_threads(n > 0 ? n : 1);
}

fl_status fl_train_run(const fl_config *cfg, const fl_train_opts *o, fl_train_result *res, fl_error *err) {
    fl_status st = fl_config_validate(cfg, err);
    if (!st) st = fl_eval_check_config(cfg, err); /* --eval-task typos fail now, not after training */
    if (st) return st;
    const fl_comm *world = NULL;
    if ((st = fl_comm_world(&world, err)) || (st = check_job(cfg, world, err))) return st;
    set_threads(cfg, world);
    if (world->rank != 0) fl_log_set_level(FL_LOG_ERROR); /* rank 0 speaks for the job */
    run r = {.cfg = cfg, .comm = world, .b_local = cfg->batch_size / world->size,
             .encoder = fl_config_arch(cfg) == FL_ARCH_BERT};
    r.progress_line = o->progress < 0 ? isatty(STDERR_FILENO) : o->progress;
    memset(res, 0, sizeof *res);
    int64_t first = 0;
    st = start(&r, o, world, &first, err);
    if (!st) {
        res->unigram_entropy = unigram_entropy(&r.train);
        fl_stop_signals_catch(); /* Ctrl-C, or SIGTERM from a job scheduler: finish the step, save, stop */
        r.t0 = fl_now_s();
        st = loop(&r, first, o->stop_after, res, err);
        fl_stop_signals_release();
        if (!st && res->steps_done >= cfg->steps) st = write_summary(&r, res, err);
        if (!st && res->steps_done >= cfg->steps) /* --eval-task: only once the run is complete */
            st = fl_eval_after_training(r.model, r.tok, r.cfg, res->steps_done, err);
    }
    finish(&r);
    if (st && world->rank == 0 && fl_run_dir_abort(&r.rd))
        fl_log_warn("removed %s: it had no checkpoint yet, so the same command can run again", r.rd.final);
    return st;
}
