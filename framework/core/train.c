/*
 * core/train.c — one training run (see train.h).
 */
#include "train.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batches.h"
#include "checkpoint.h"
#include "corpus.h"
#include "error.h"
#include "fsutil.h"
#include "host.h"
#include "model.h"
#include "optim.h"
#include "prepare.h"
#include "run_load.h"
#include "runfiles.h"
#include "shard.h"
#include "storygen.h"
#include "tokenizer.h"

static volatile sig_atomic_t g_stop;

void fl_train_request_stop(void) { g_stop = 1; }

typedef struct run {
    const fl_config *cfg;
    char dir[FL_PATH_MAX];
    fl_tokenizer *tok;
    fl_shard train, val;
    fl_model *model;
    FILE *metrics;
    int32_t *x, *y;            /* [B,T] host batch */
    double t0;
    int progress_line;         /* 1: rewrite one terminal line */
} run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

/* tokenizer.json and data/{train,val}.bin inside the run folder. */
static fl_status prepare_data(run *r, fl_error *err) {
    const fl_config *cfg = r->cfg;
    char tok_path[FL_PATH_MAX + 32], data_dir[FL_PATH_MAX + 32];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", r->dir);
    snprintf(data_dir, sizeof data_dir, "%s/data", r->dir);
    fl_corpus corpus = {0};
    fl_status st = load_corpus(cfg, &corpus, err);
    if (!st && cfg->tokenizer[0]) st = fl_tokenizer_load(cfg->tokenizer, &r->tok, err);
    if (!st && !cfg->tokenizer[0]) {
        fl_log_info("training a %d-token BPE tokenizer on %zu documents (%.1f MB)", cfg->vocab_size,
                    corpus.n_docs, corpus.bytes / 1e6);
        st = fl_tokenizer_train(corpus.docs, corpus.lens, corpus.n_docs, cfg->vocab_size, &r->tok, err);
    }
    if (!st) st = fl_tokenizer_save(r->tok, tok_path, err);
    uint64_t n_train = 0, n_val = 0;
    if (!st) st = fl_data_prepare(&corpus, r->tok, cfg->val_fraction, data_dir, &n_train, &n_val, err);
    if (!st) fl_log_info("data: %llu training and %llu validation tokens", (unsigned long long)n_train, (unsigned long long)n_val);
    fl_corpus_free(&corpus);
    return st;
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

static fl_status build_model(run *r, fl_error *err) {
    fl_status st = fl_model_from_config(r->cfg, fl_tokenizer_vocab_size(r->tok), &r->model, err);
    if (st) return st;
    const fl_model_config *mc = fl_model_cfg(r->model);
    fl_log_info("model: %.2fM parameters, d_model %d, %d layers, %d heads, context %d, vocab %d, on %s",
                fl_model_n_weights(r->model) / 1e6, mc->d_model, mc->n_layers, mc->n_heads, mc->context,
                mc->vocab_size, fl_host_backend(fl_model_host(r->model))->name);
    return FL_OK;
}

/* ------------------------------------------------------------ steps */

static fl_status eval_loss(run *r, double *loss, fl_error *err) {
    const fl_config *cfg = r->cfg;
    double sum = 0;
    for (int i = 0; i < cfg->eval_batches; i++) {
        fl_batch_eval(&r->val, i, cfg->eval_batches, cfg->batch_size, cfg->context, r->x, r->y);
        double l = 0;
        fl_status st = fl_model_forward(r->model, r->x, r->y, cfg->batch_size, cfg->context, 0, 0, &l, err);
        if (st) return st;
        sum += fl_model_ce_loss(r->model);
    }
    *loss = sum / cfg->eval_batches;
    return FL_OK;
}

typedef struct step_info {
    double loss, ce, lr, grad_norm;
} step_info;

static fl_status train_step(run *r, int64_t step, step_info *si, fl_error *err) {
    const fl_config *cfg = r->cfg;
    const fl_backend *be = fl_host_backend(fl_model_host(r->model));
    fl_batch_train(&r->train, cfg->seed, step, cfg->batch_size, cfg->context, r->x, r->y);
    fl_model_zero_grad(r->model);
    fl_status st = fl_model_forward(r->model, r->x, r->y, cfg->batch_size, cfg->context, 1, step, &si->loss, err);
    if (st == FL_ENUMERIC) return fl_fail(err, FL_ENUMERIC, "training loss is not finite (%g) at step %lld; stopping without saving a checkpoint", si->loss, (long long)step);
    if (st) return st;
    si->ce = fl_model_ce_loss(r->model);
    if ((st = fl_model_backward(r->model, err))) return st;
    fl_param_list *ps = fl_model_params(r->model);
    si->grad_norm = fl_grad_norm(be, ps);
    if (!isfinite(si->grad_norm))
        return fl_fail(err, FL_ENUMERIC, "gradient norm is not finite at step %lld; stopping without saving a checkpoint", (long long)step);
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

static void log_step(run *r, int64_t step, int64_t first, const step_info *si, double tok_s) {
    const fl_config *cfg = r->cfg;
    fl_stat aux[16];
    int n_aux = fl_model_aux_losses(r->model, aux, 16);
    fprintf(r->metrics, "{\"step\": %lld, \"loss\": %.6f, \"ce_loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, \"tokens_per_s\": %.1f, \"time_s\": %.3f",
            (long long)step + 1, si->loss, si->ce, si->lr, si->grad_norm, tok_s, now_s() - r->t0);
    for (int i = 0; i < n_aux && i < 16; i++) fprintf(r->metrics, ", \"aux.%s\": %.6g", aux[i].name, aux[i].value);
    fprintf(r->metrics, "}\n");
    fflush(r->metrics);
    char eta[32];
    double per_step = (now_s() - r->t0) / (double)(step + 1 - first);
    format_eta(eta, sizeof eta, per_step * (double)(cfg->steps - step - 1));
    fprintf(stderr, "%sstep %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s", r->progress_line ? "\r" : "",
            (long long)step + 1, (long long)cfg->steps, si->loss, si->lr, tok_s, eta, r->progress_line ? "   " : "\n");
    fflush(stderr);
}

static void log_val(run *r, int64_t step, double val) {
    fprintf(r->metrics, "{\"step\": %lld, \"val_loss\": %.6f, \"time_s\": %.3f}\n", (long long)step, val, now_s() - r->t0);
    fflush(r->metrics);
    fprintf(stderr, "%sstep %lld: validation loss %.4f\n", r->progress_line ? "\n" : "", (long long)step, val);
}

static fl_status save(run *r, int64_t step, fl_error *err) {
    char dir[FL_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/checkpoint", r->dir);
    return fl_checkpoint_save(dir, r->model, 1, step, fl_tokenizer_eot(r->tok), err);
}

/* ------------------------------------------------------------ the run */

static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C kills at once */
}

static fl_status loop(run *r, int64_t first, int64_t stop_after, fl_train_result *res, fl_error *err) {
    const fl_config *cfg = r->cfg;
    const double tokens_per_step = (double)cfg->batch_size * cfg->context;
    double t_last = now_s();
    int64_t step = first, logged_at = first;
    step_info si = {0};
    fl_status st = FL_OK;
    for (; step < cfg->steps && !st; step++) {
        if (g_stop || (stop_after > 0 && step >= stop_after)) break;
        if ((st = train_step(r, step, &si, err))) break;
        if ((step + 1) % cfg->log_every == 0 || step + 1 == cfg->steps) {
            double t = now_s(), tok_s = tokens_per_step * (double)(step + 1 - logged_at) / (t - t_last);
            res->tokens_per_s = tok_s;
            t_last = t, logged_at = step + 1;
            log_step(r, step, first, &si, tok_s);
        }
        if (cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0 && step + 1 < cfg->steps) {
            double val;
            if ((st = eval_loss(r, &val, err))) break;
            log_val(r, step + 1, val);
        }
        if (cfg->ckpt_every > 0 && (step + 1) % cfg->ckpt_every == 0) st = save(r, step + 1, err);
    }
    res->steps_done = step;
    res->final_train_loss = si.loss;
    if (st) return st;
    if ((st = save(r, step, err))) return st;
    if (step < cfg->steps && !g_stop) return FL_OK; /* --stop-after: a planned pause */
    if (g_stop)
        return fl_fail(err, FL_EINTR, "interrupted at step %lld; checkpoint saved in %s/checkpoint (continue with: ffnlab train --run-dir %s --resume)",
                       (long long)step, r->dir, r->dir);
    if ((st = eval_loss(r, &res->final_val_loss, err))) return st;
    log_val(r, step, res->final_val_loss);
    return FL_OK;
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

static fl_status start(run *r, const fl_train_opts *o, int64_t *first, fl_error *err) {
    const fl_config *cfg = r->cfg;
    fl_status st = fl_run_dir_prepare(r->dir, o->resume, o->force, err);
    if (!st && !o->resume) st = fl_run_write_config(r->dir, cfg, err);
    if (!st) st = setup_tokenizer_and_data(r, o->resume, err);
    if (st) return st;
    if ((st = open_shards(r, err)) || (st = build_model(r, err))) return st;
    *first = 0;
    if (o->resume) {
        char dir[FL_PATH_MAX + 32];
        snprintf(dir, sizeof dir, "%s/checkpoint", r->dir);
        if ((st = fl_checkpoint_load(dir, r->model, 1, first, err))) return st;
        fl_log_info("resuming %s at step %lld", r->dir, (long long)*first);
    }
    char path[FL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    r->metrics = fopen(path, o->resume ? "a" : "w");
    if (!r->metrics) return fl_fail(err, FL_EIO, "%s: cannot open for writing", path);
    size_t n = (size_t)cfg->batch_size * (size_t)cfg->context;
    r->x = malloc(n * sizeof *r->x);
    r->y = malloc(n * sizeof *r->y);
    if (!r->x || !r->y) return fl_fail(err, FL_ENOMEM, "out of memory for a batch");
    return FL_OK;
}

static void finish(run *r) {
    if (r->metrics) fclose(r->metrics);
    fl_model_free(r->model);
    fl_tokenizer_free(r->tok);
    if (r->train.map) fl_shard_close(&r->train);
    if (r->val.map) fl_shard_close(&r->val);
    free(r->x);
    free(r->y);
}

fl_status fl_train_run(const fl_config *cfg, const fl_train_opts *o, fl_train_result *res, fl_error *err) {
    fl_status st = fl_config_validate(cfg, err);
    if (st) return st;
    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
    run r = {.cfg = cfg};
    snprintf(r.dir, sizeof r.dir, "%s", cfg->run_dir);
    r.progress_line = o->progress < 0 ? isatty(STDERR_FILENO) : o->progress;
    memset(res, 0, sizeof *res);
    int64_t first = 0;
    st = start(&r, o, &first, err);
    if (!st) {
        res->unigram_entropy = unigram_entropy(&r.train);
        g_stop = 0;
        void (*old)(int) = signal(SIGINT, on_sigint);
        r.t0 = now_s();
        st = loop(&r, first, o->stop_after, res, err);
        signal(SIGINT, old);
    }
    finish(&r);
    return st;
}
