/*
 * run/task_host.c — the services table task plugins receive (see
 * task_host.h and ffnlab/task.h for the contract).
 *
 * The scoring services live beside it: svc->logprobs in task_logprobs.c,
 * svc->masked_logprobs in task_masked.c.
 */
#include "task_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "clock.h"
#include "corpus.h"
#include "error.h"
#include "finetune.h"
#include "fsutil.h"
#include "host_table.h"
#include "log.h"
#include "seq_order.h"
#include "shard.h"
#include "storygen.h"
#include "task_logprobs.h"
#include "task_masked.h"

#define BATCH_TOKENS 8192         /* tokens per forward when the task leaves it to us */
#define BUILTIN_BLIMP_SEED 1337   /* the same pairs as `ffnlab data blimp` */
#define BUILTIN_BLIMP_PAIRS 1000  /* per paradigm, as in BLiMP */

static fl_task_host *host_of(const fl_task_services *s) { return (fl_task_host *)s->impl; }

/* ------------------------------------------------------------ metrics */

static char *dup_or_null(const char *s, int *oom) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

static void rec_free(fl_metric_rec *r) {
    free(r->task), free(r->spec), free(r->name), free(r->subtask), free(r->group), free(r->item), free(r->split);
}

void fl_metric_list_free(fl_metric_list *l) {
    for (size_t i = 0; i < l->n; i++) rec_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

fl_status fl_metric_list_add(fl_metric_list *l, const char *task, const char *spec, const fl_metric *m,
                             fl_error *err) {
    if (!m || !m->name || !m->name[0]) return fl_fail(err, FL_EINVAL, "%s: a metric without a name", task ? task : "task");
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        fl_metric_rec *items = realloc(l->items, cap * sizeof *items);
        if (!items) return fl_fail(err, FL_ENOMEM, "out of memory recording metrics");
        l->items = items, l->cap = cap;
    }
    int oom = 0;
    fl_metric_rec r = {.task = dup_or_null(task, &oom), .spec = dup_or_null(spec, &oom),
                       .name = dup_or_null(m->name, &oom), .subtask = dup_or_null(m->subtask, &oom),
                       .group = dup_or_null(m->group, &oom), .item = dup_or_null(m->item, &oom),
                       .split = dup_or_null(m->split, &oom), .kind = m->kind, .value = m->value, .n = m->n};
    if (oom) {
        rec_free(&r);
        return fl_fail(err, FL_ENOMEM, "out of memory recording metrics");
    }
    l->items[l->n++] = r;
    return FL_OK;
}

/* ------------------------------------------------------------ sequences */

/* Batches of sequences for svc->hidden, longest first: each pads to its
   first member. */
typedef struct batcher {
    const fl_token_seqs *s;
    int64_t *order;
    int64_t pos;
    int32_t max_seqs;          /* 0: fill BATCH_TOKENS */
} batcher;

static fl_status batcher_init(batcher *b, const fl_token_seqs *s, int32_t max_seqs, fl_error *err) {
    b->s = s, b->pos = 0, b->max_seqs = max_seqs;
    b->order = fl_seqs_longest_first(s);
    return b->order ? FL_OK : fl_fail(err, FL_ENOMEM, "out of memory sorting %lld sequences", (long long)s->n);
}

/* The next batch: *idx points at B indices, every row padded to T. The
   first batch rounds its row count up, the others down, so no later batch
   has more tokens than the first: the model's buffers are sized once
   (growing them means fresh, page-faulting memory). */
static int batcher_next(batcher *b, const int64_t **idx, int *B, int *T) {
    if (b->pos >= b->s->n) return 0;
    int64_t t = fl_seq_len(b->s, b->order[b->pos]);
    int64_t fit = b->pos == 0 ? (BATCH_TOKENS + t - 1) / t : BATCH_TOKENS / t;
    int64_t want = b->max_seqs > 0 ? b->max_seqs : (fit > 0 ? fit : 1);
    if (want > b->s->n - b->pos) want = b->s->n - b->pos;
    *idx = b->order + b->pos;
    *B = (int)want, *T = (int)t;
    b->pos += want;
    return 1;
}

/* tokens[B,T], right-padded with pad (pad_of: a decoder never looks right,
   an encoder masks its <pad> keys). */
static void fill_tokens(const fl_token_seqs *s, const int64_t *idx, int B, int T, int32_t pad, int32_t *tok) {
    for (int b = 0; b < B; b++) {
        int64_t n = fl_seq_len(s, idx[b]) < T ? fl_seq_len(s, idx[b]) : T;
        int32_t *row = tok + (size_t)b * T;
        memcpy(row, s->tokens + s->offsets[idx[b]], (size_t)n * sizeof *row);
        for (int64_t t = n; t < T; t++) row[t] = pad;
    }
}

/* ------------------------------------------------------------ services */

static fl_status svc_encode(const fl_task_services *s, const char *text, size_t len, int32_t **ids, size_t *n,
                            fl_error *err) {
    return fl_tokenizer_encode(host_of(s)->tok, text, len, ids, n, err);
}

static char *svc_decode(const fl_task_services *s, const int32_t *ids, size_t n, size_t *len) {
    return fl_tokenizer_decode(host_of(s)->tok, ids, n, len);
}

static void svc_free(void *p) { free(p); }

static fl_status svc_logprobs(const fl_task_services *s, const fl_token_seqs *seqs, const int64_t *from,
                              int32_t batch, float *out, fl_error *err) {
    if (s->arch != FL_TASK_ARCH_GPT)
        return fl_fail(err, FL_EINVAL, "logprobs: the model is an encoder (arch bert), which has no next-token "
                       "probabilities; score it with masked_logprobs");
    return fl_task_score_logprobs(host_of(s)->model, s->eot, seqs, from, batch, out, err);
}

/* What batches are padded with: an encoder's <pad> (its keys are masked),
   a decoder's <|endoftext|> (it never looks right). */
static int32_t pad_of(const fl_task_services *s) { return s->arch == FL_TASK_ARCH_BERT ? s->pad : s->eot; }

static fl_status svc_masked_logprobs(const fl_task_services *s, const fl_token_seqs *seqs, const int32_t *targets,
                                     int32_t batch, float *out, fl_error *err) {
    return fl_task_masked_logprobs(host_of(s)->model, seqs, targets, batch, out, err);
}

static fl_status svc_hidden(const fl_task_services *s, const fl_token_seqs *seqs, int32_t batch, float *out,
                            fl_error *err) {
    fl_task_host *th = host_of(s);
    fl_status st = fl_task_check_seqs(th->model, seqs, err);
    if (st || seqs->n == 0) return st;
    const fl_backend *be = fl_host_backend(fl_model_host(th->model));
    const size_t C = (size_t)s->d_model;
    batcher bt = {0};
    int32_t *tok = NULL;
    float *h = NULL;
    st = batcher_init(&bt, seqs, batch, err);
    const int64_t *idx;
    int B, T;
    while (!st && batcher_next(&bt, &idx, &B, &T)) {
        free(tok), free(h);
        tok = malloc((size_t)B * T * sizeof *tok);
        h = malloc((size_t)B * T * C * sizeof *h);
        if (!tok || !h) {
            st = fl_fail(err, FL_ENOMEM, "out of memory for hidden states");
            break;
        }
        fill_tokens(seqs, idx, B, T, pad_of(s), tok);
        if ((st = fl_model_forward_hidden(th->model, tok, B, T, 0, 0, err))) break;
        be->ops.to_host(h, fl_model_hidden(th->model), (size_t)B * T * C * sizeof *h);
        for (int b = 0; b < B; b++)
            memcpy(out + (size_t)seqs->offsets[idx[b]] * C, h + (size_t)b * T * C,
                   (size_t)fl_seq_len(seqs, idx[b]) * C * sizeof *h);
    }
    free(tok), free(h), free(bt.order);
    return st;
}

static fl_status svc_finetune(const fl_task_services *s, const fl_finetune_opts *o, const fl_ft_data *train,
                              const fl_ft_data *dev, const fl_ft_data *const *predict, int n_predict,
                              int32_t *dev_pred, int32_t *const *predict_out, fl_finetune_result *res,
                              fl_error *err) {
    return fl_finetune_run(host_of(s)->model, pad_of(s), o, train, dev, predict, n_predict, dev_pred, predict_out,
                           res, err);
}

/* A token shard as it is; text encoded document by document, each + eot. */
static fl_status read_shard(const char *path, int32_t vocab, int32_t **ids, size_t *n, fl_error *err) {
    fl_shard sh;
    fl_status st = fl_shard_open(path, &sh, err);
    if (st) return st;
    if ((int64_t)sh.vocab_size > vocab)
        st = fl_fail(err, FL_EINVAL, "%s: shard vocabulary %u is larger than the model's %d", path, sh.vocab_size, vocab);
    if (!st && !(*ids = malloc((size_t)(sh.n_tokens ? sh.n_tokens : 1) * sizeof **ids)))
        st = fl_fail(err, FL_ENOMEM, "%s: out of memory for %llu tokens", path, (unsigned long long)sh.n_tokens);
    if (!st) {
        fl_shard_read(&sh, 0, sh.n_tokens, *ids);
        *n = (size_t)sh.n_tokens;
    }
    fl_shard_close(&sh);
    return st;
}

static fl_status encode_corpus(const fl_task_host *th, const char *path, int32_t **ids, size_t *n, fl_error *err) {
    fl_corpus c = {0};
    fl_status st = fl_corpus_read(path, &c, err);
    size_t cap = 0, len = 0;
    int32_t *all = NULL, eot = fl_tokenizer_eot(th->tok);
    for (size_t d = 0; d < c.n_docs && !st; d++) {
        int32_t *doc = NULL;
        size_t k = 0;
        if ((st = fl_tokenizer_encode(th->tok, c.docs[d], c.lens[d], &doc, &k, err))) break;
        if (len + k + 1 > cap) {
            cap = 2 * (len + k + 1);
            int32_t *grown = realloc(all, cap * sizeof *all);
            if (!grown) st = fl_fail(err, FL_ENOMEM, "%s: out of memory encoding", path);
            else all = grown;
        }
        if (!st) {
            memcpy(all + len, doc, k * sizeof *doc);
            len += k;
            all[len++] = eot;
        }
        free(doc);
    }
    fl_corpus_free(&c);
    if (st) {
        free(all);
        return st;
    }
    *ids = all, *n = len;
    return FL_OK;
}

static fl_status svc_load_tokens(const fl_task_services *s, const char *path, int32_t **ids, size_t *n,
                                 fl_error *err) {
    *ids = NULL, *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(err, FL_EIO, "%s: cannot open", path);
    char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got == sizeof magic && !memcmp(magic, FL_SHARD_MAGIC, sizeof magic))
        return read_shard(path, s->vocab_size, ids, n, err);
    return encode_corpus(host_of(s), path, ids, n, err);
}

static fl_status svc_builtin_data(const fl_task_services *s, const char *name, char *dir, size_t n,
                                  fl_error *err) {
    if (!name || strcmp(name, "blimp"))
        return fl_fail(err, FL_EINVAL, "no built-in data set '%s' (known: blimp)", name ? name : "");
    fl_status st = fl_path_join(dir, n, s->work_dir, "builtin_blimp", err);
    if (!st) st = fl_storygen_blimp(BUILTIN_BLIMP_SEED, BUILTIN_BLIMP_PAIRS, dir, err);
    return st;
}

static fl_status svc_metric(const fl_task_services *s, const fl_metric *m, fl_error *err) {
    fl_task_host *th = host_of(s);
    return fl_metric_list_add(th->sink, th->task, th->spec, m, err);
}

/* An updating line on a terminal (5 per second at most); otherwise a log
   line every 10 s, and always the last one. */
static void svc_progress(const fl_task_services *s, const char *what, int64_t done, int64_t total) {
    fl_task_host *th = host_of(s);
    double t = fl_now_s();
    int last = done >= total;
    if (!last && t - th->progress_t < (th->progress_line ? 0.2 : 10.0)) return;
    th->progress_t = t;
    if (th->progress_line) {
        fprintf(stderr, "\r%s: %s %lld/%lld   %s", th->task ? th->task : "task", what, (long long)done,
                (long long)total, last ? "\n" : "");
        fflush(stderr);
    } else {
        fl_log_info("%s: %s %lld/%lld", th->task ? th->task : "task", what, (long long)done, (long long)total);
    }
}

/* ------------------------------------------------------------ the table */

/* Task ABI 2.1: the architecture, an encoder's special ids and its scorer. */
static fl_status encoder_services(fl_task_services *s, const fl_tokenizer *tok, const fl_model_config *mc,
                                  fl_error *err) {
    fl_special_ids ids = {-1, -1, -1, -1};
    s->arch = mc->arch == FL_ARCH_BERT ? FL_TASK_ARCH_BERT : FL_TASK_ARCH_GPT;
    s->masked_logprobs = svc_masked_logprobs;
    fl_status st = s->arch == FL_TASK_ARCH_BERT ? fl_tokenizer_encoder_ids(tok, "the tokenizer", &ids, err) : FL_OK;
    s->bos = ids.bos, s->sep = ids.sep, s->pad = ids.pad, s->mask = ids.mask;
    return st;
}

fl_status fl_task_host_init(fl_task_host *th, fl_model *m, const fl_tokenizer *tok, const char *run_dir,
                            const char *work_dir, const char *val_shard, fl_metric_list *sink,
                            fl_error *err) {
    memset(th, 0, sizeof *th);
    if (fl_tokenizer_eot(tok) < 0)
        return fl_fail(err, FL_EINVAL, "the tokenizer has no <|endoftext|> token; tasks need it");
    if (fl_tokenizer_vocab_size(tok) > fl_model_cfg(m)->vocab_size)
        return fl_fail(err, FL_EINVAL, "the tokenizer has %d tokens, the model only %d",
                       fl_tokenizer_vocab_size(tok), fl_model_cfg(m)->vocab_size);
    snprintf(th->run_dir, sizeof th->run_dir, "%s", run_dir ? run_dir : "");
    snprintf(th->work_dir, sizeof th->work_dir, "%s", work_dir);
    snprintf(th->val_shard, sizeof th->val_shard, "%s", val_shard ? val_shard : "");
    fl_status st = fl_mkdirs(th->work_dir, err);
    if (st) return st;
    th->model = m, th->tok = tok, th->sink = sink;
    th->progress_line = isatty(STDERR_FILENO);
    const fl_model_config *mc = fl_model_cfg(m);
    fl_task_services *s = &th->svc;
    s->size = sizeof *s;
    s->host = fl_model_host(m);
    s->vocab_size = mc->vocab_size;
    s->context = mc->context;
    s->d_model = mc->d_model;
    s->eot = fl_tokenizer_eot(tok);
    s->run_dir = th->run_dir;
    s->work_dir = th->work_dir;
    s->val_shard = th->val_shard;
    s->impl = th;
    s->encode = svc_encode;
    s->decode = svc_decode;
    s->free = svc_free;
    s->logprobs = svc_logprobs;
    s->hidden = svc_hidden;
    s->finetune = svc_finetune;
    s->load_tokens = svc_load_tokens;
    s->builtin_data = svc_builtin_data;
    s->metric = svc_metric;
    s->progress = svc_progress;
    return encoder_services(s, tok, mc, err);
}

void fl_task_host_set_task(fl_task_host *th, const char *task, const char *spec) {
    th->task = task;
    th->spec = spec;
}
