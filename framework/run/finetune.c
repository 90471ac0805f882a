/*
 * run/finetune.c — classification fine-tuning on a copy of a model (see
 * finetune.h).
 *
 * One step, for a batch of B sequences padded to T tokens:
 *
 *   hidden = copy.forward_hidden(tokens)                  hidden[B*T, C]
 *   H      = hidden[the classified token of each sequence] H[B, C]
 *            (a decoder's last real token, the only one that saw the
 *            whole sequence; an encoder's first, <s>, as in RoBERTa)
 *   logits = H · W + b                                    logits[B, K]
 *   loss   = mean cross-entropy(logits, labels)
 *   dW += Hᵀ·dlogits;  db += Σ dlogits;  dH = dlogits · Wᵀ
 *   dhidden = dH scattered back to those rows (zeros elsewhere)
 *   copy.backward_hidden(dhidden);  clip;  AdamW(copy + head)
 *
 * The head lives in its own parameter list, so the optimizer, clipping and
 * the snapshot of the best dev weights treat it like any model parameter.
 * Shuffling and the head's initialisation come from the seed alone, so a
 * fine-tune is reproducible.
 */
#include "finetune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "host_table.h"
#include "log.h"
#include "optim.h"
#include "params.h"
#include "seq_order.h"

typedef struct ft {
    const fl_finetune_opts *o;
    const fl_backend *be;
    const fl_host *h;
    fl_model *m;               /* the copy being trained */
    fl_param_list head;        /* classifier.weight [C,K], classifier.bias [K] */
    fl_param *W, *b;
    int C, K, Tmax, Bmax;
    int32_t pad;
    int first;                 /* an encoder: classify from the first token */
    int32_t *tok, *last, *lab; /* host batch: [Bmax*Tmax], [Bmax] (the classified rows), [Bmax] */
    float *logits_h;           /* [Bmax*K] */
    fl_tensor last_d, lab_d, H, logits, dH, dhid;
    fl_tensor *snap;           /* best dev weights: model params, then head */
    int n_snap, have_snap;
    int64_t truncated;
} ft;

/* ------------------------------------------------------------ helpers */

static int64_t eff_len(const ft *f, const fl_token_seqs *s, int64_t i) {
    int64_t n = fl_seq_len(s, i);
    return n < f->Tmax ? n : f->Tmax;
}

static fl_status check_data(const ft *f, const fl_ft_data *d, const char *what, int need_labels,
                            int64_t *truncated, fl_error *err) {
    const fl_token_seqs *s = &d->seqs;
    if (s->n < 1) return fl_fail(err, FL_EINVAL, "fine-tune %s: the %s set is empty", f->o->name, what);
    if (need_labels && !d->labels)
        return fl_fail(err, FL_EINVAL, "fine-tune %s: the %s set has no labels", f->o->name, what);
    for (int64_t i = 0; i < s->n; i++) {
        if (fl_seq_len(s, i) < 1)
            return fl_fail(err, FL_EINVAL, "fine-tune %s: %s sequence %lld is empty", f->o->name, what, (long long)i);
        if (fl_seq_len(s, i) > f->Tmax) (*truncated)++;
        if (d->labels && (d->labels[i] < 0 || d->labels[i] >= f->K))
            return fl_fail(err, FL_EINVAL, "fine-tune %s: %s label %d of sequence %lld is not in [0, %d)",
                           f->o->name, what, d->labels[i], (long long)i, f->K);
    }
    return FL_OK;
}

static fl_status check_opts(const fl_finetune_opts *o, fl_error *err) {
    const char *name = o->name ? o->name : "task";
    if (o->n_classes < 2) return fl_fail(err, FL_EINVAL, "fine-tune %s: n_classes %d < 2", name, o->n_classes);
    if (!(o->lr > 0) || o->batch_size < 1 || o->epochs < 1 || o->max_len < 1 || o->eval_every < 0 ||
        o->patience < 0 || o->warmup_ratio < 0 || o->warmup_ratio > 1 || o->weight_decay < 0 || o->grad_clip < 0)
        return fl_fail(err, FL_EINVAL,
                       "fine-tune %s: bad settings (lr %g, batch %d, epochs %d, max_len %d, eval_every %lld, "
                       "patience %d, warmup_ratio %g)", name, o->lr, o->batch_size, o->epochs, o->max_len,
                       (long long)o->eval_every, o->patience, o->warmup_ratio);
    return FL_OK;
}

static fl_status ensure2(ft *f, fl_tensor *t, int dtype, int64_t d0, int64_t d1, fl_error *err) {
    int64_t shape[2] = {d0, d1};
    return f->h->tensor_ensure(f->h, t, dtype, d1 ? 2 : 1, shape, err);
}

/* ------------------------------------------------------------ setup */

static fl_param *head_param(ft *f, const char *name, int64_t d0, int64_t d1, int init, unsigned flags,
                            fl_error *err) {
    fl_param_spec s = {.name = name, .ndim = d1 ? 2 : 1, .shape = {d0, d1 ? d1 : 1, 1, 1}, .init = init,
                       .init_scale = 0.02f, .flags = flags};
    return fl_params_add(&f->head, f->be, name, &s, f->o->seed, 0, err);
}

static fl_status setup(ft *f, const fl_model *base, fl_error *err) {
    const fl_model_config *mc = fl_model_cfg(base);
    f->be = fl_host_backend(fl_model_host(base));
    f->C = mc->d_model;
    f->K = f->o->n_classes;
    f->Tmax = f->o->max_len < mc->context ? f->o->max_len : mc->context;
    f->Bmax = f->o->batch_size;
    fl_status st = fl_model_copy(base, &f->m, err);
    if (st) return st;
    f->h = fl_model_host(f->m);
    if (!(f->W = head_param(f, "classifier.weight", f->C, f->K, FL_INIT_NORMAL, FL_PARAM_DECAY, err)) ||
        !(f->b = head_param(f, "classifier.bias", f->K, 0, FL_INIT_ZEROS, 0, err)))
        return err->code;
    size_t bt = (size_t)f->Bmax * (size_t)f->Tmax;
    f->tok = malloc(bt * sizeof *f->tok);
    f->last = malloc((size_t)f->Bmax * sizeof *f->last);
    f->lab = malloc((size_t)f->Bmax * sizeof *f->lab);
    f->logits_h = malloc((size_t)f->Bmax * (size_t)f->K * sizeof *f->logits_h);
    f->n_snap = fl_model_n_params(f->m) + f->head.n;
    f->snap = calloc((size_t)f->n_snap, sizeof *f->snap);
    if (!f->tok || !f->last || !f->lab || !f->logits_h || !f->snap)
        return fl_fail(err, FL_ENOMEM, "fine-tune %s: out of memory", f->o->name);
    return FL_OK;
}

static void teardown(ft *f) {
    if (f->h) {
        fl_tensor *ts[] = {&f->last_d, &f->lab_d, &f->H, &f->logits, &f->dH, &f->dhid};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) f->h->tensor_release(f->h, ts[i]);
        for (int i = 0; f->snap && i < f->n_snap; i++) f->h->tensor_release(f->h, &f->snap[i]);
    }
    if (f->be) fl_params_free(&f->head, f->be);
    fl_model_free(f->m);
    free(f->tok), free(f->last), free(f->lab), free(f->logits_h), free(f->snap);
}

/* Parameter i of the copy, then of the head: what is optimised and snapshot. */
static fl_param *any_param(ft *f, int i) {
    int nm = fl_model_n_params(f->m);
    return i < nm ? fl_model_param(f->m, i) : &f->head.items[i - nm]->pub;
}

static fl_status snapshot(ft *f, int restore, fl_error *err) {
    for (int i = 0; i < f->n_snap; i++) {
        fl_param *p = any_param(f, i);
        if (restore) {
            f->be->ops.copy(&f->snap[i], &p->value);
            continue;
        }
        fl_status st = f->h->tensor_ensure(f->h, &f->snap[i], FL_F32, p->value.ndim, p->value.shape, err);
        if (st) return st;
        f->be->ops.copy(&p->value, &f->snap[i]);
    }
    f->have_snap = 1;
    return FL_OK;
}

/* ------------------------------------------------------------ forward */

/* tokens[B,T] right-padded; last[b] = row of b's classified token (its last
   real one, or an encoder's first). Returns T. */
static int fill_batch(ft *f, const fl_token_seqs *s, const int64_t *idx, int B) {
    int T = 1;
    for (int b = 0; b < B; b++) {
        int64_t n = eff_len(f, s, idx[b]);
        if (n > T) T = (int)n;
    }
    for (int b = 0; b < B; b++) {
        int64_t n = eff_len(f, s, idx[b]);
        int32_t *row = f->tok + (size_t)b * T;
        memcpy(row, s->tokens + s->offsets[idx[b]], (size_t)n * sizeof *row);
        for (int64_t t = n; t < T; t++) row[t] = f->pad;
        f->last[b] = (int32_t)(b * T + (f->first ? 0 : n - 1));
    }
    return T;
}

/* logits[B,K] = hidden[last] · W + b */
static fl_status head_forward(ft *f, int B, int T, int train, int64_t step, fl_error *err) {
    fl_status st = fl_model_forward_hidden(f->m, f->tok, B, T, train, step, err);
    if (!st) st = ensure2(f, &f->last_d, FL_I32, B, 0, err);
    if (!st) st = ensure2(f, &f->H, FL_F32, B, f->C, err);
    if (!st) st = ensure2(f, &f->logits, FL_F32, B, f->K, err);
    if (st) return st;
    const fl_ops *o = &f->be->ops;
    o->from_host(&f->last_d, f->last, (size_t)B * sizeof *f->last);
    o->gather_rows(fl_model_hidden(f->m), &f->last_d, &f->H);
    o->gemm(0, 0, 1.0f, &f->H, &f->W->value, 0.0f, &f->logits); /* [B,C]·[C,K] */
    o->add_bias(&f->logits, &f->b->value);
    return FL_OK;
}

/* ------------------------------------------------------------ predict */

static int32_t argmax(const float *x, int K) {
    int32_t best = 0;
    for (int k = 1; k < K; k++)
        if (x[k] > x[best]) best = k;
    return best;
}

static fl_status predict(ft *f, const fl_token_seqs *s, int32_t *pred, fl_error *err) {
    int64_t *idx = fl_seqs_longest_first(s); /* each batch pads little */
    if (!idx) return fl_fail(err, FL_ENOMEM, "fine-tune %s: out of memory", f->o->name);
    fl_status st = FL_OK;
    for (int64_t i = 0; i < s->n && !st; i += f->Bmax) {
        int B = (int)(s->n - i < f->Bmax ? s->n - i : f->Bmax);
        int T = fill_batch(f, s, idx + i, B);
        if ((st = head_forward(f, B, T, 0, 0, err))) break;
        f->be->ops.to_host(f->logits_h, &f->logits, (size_t)B * f->K * sizeof(float));
        for (int b = 0; b < B; b++) pred[idx[i + b]] = argmax(f->logits_h + (size_t)b * f->K, f->K);
    }
    free(idx);
    return st;
}

static double accuracy(const int32_t *pred, const int32_t *gold, int64_t n) {
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) ok += pred[i] == gold[i];
    return n ? (double)ok / (double)n : 0.0;
}

static double dev_score(const ft *f, const int32_t *pred, const fl_ft_data *dev) {
    const fl_finetune_opts *o = f->o;
    return o->dev_score ? o->dev_score(o->user, pred, dev->labels, dev->seqs.n)
                        : accuracy(pred, dev->labels, dev->seqs.n);
}

/* ------------------------------------------------------------ training */

static double lr_at(const fl_finetune_opts *o, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return o->lr * (double)(step + 1) / (double)warmup;
    if (o->schedule == FL_FT_CONSTANT || total <= warmup) return o->lr;
    double left = (double)(total - step) / (double)(total - warmup);
    return o->lr * (left > 0 ? left : 0);
}

/* Backward of the head and into the copy; leaves gradients accumulated. */
static fl_status head_backward(ft *f, int B, int T, fl_error *err) {
    const fl_ops *o = &f->be->ops;
    fl_status st = ensure2(f, &f->dH, FL_F32, B, f->C, err);
    if (!st) st = ensure2(f, &f->dhid, FL_F32, (int64_t)B * T, f->C, err);
    if (st) return st;
    const fl_tensor *dl = &f->logits; /* cross_entropy wrote dlogits over the logits */
    o->gemm(1, 0, 1.0f, &f->H, dl, 1.0f, &f->W->grad);      /* [C,B]·[B,K] */
    o->sum_rows(dl, 1.0f, &f->b->grad);
    o->gemm(0, 1, 1.0f, dl, &f->W->value, 0.0f, &f->dH);    /* [B,K]·[C,K]ᵀ */
    o->fill(&f->dhid, 0.0f);
    o->scatter_add_rows(&f->dH, &f->last_d, &f->dhid);
    return fl_model_backward_hidden(f->m, &f->dhid, err);
}

static fl_status train_step(ft *f, const fl_ft_data *train, const int64_t *idx, int B, int64_t step,
                            double lr, double *loss, fl_error *err) {
    const fl_finetune_opts *o = f->o;
    int T = fill_batch(f, &train->seqs, idx, B);
    for (int b = 0; b < B; b++) f->lab[b] = train->labels[idx[b]];
    fl_status st = head_forward(f, B, T, 1, step, err);
    if (!st) st = ensure2(f, &f->lab_d, FL_I32, B, 0, err);
    if (st) return st;
    f->be->ops.from_host(&f->lab_d, f->lab, (size_t)B * sizeof *f->lab);
    int64_t count = 0;
    *loss = f->be->cross_entropy(&f->logits, f->K, &f->lab_d, &f->logits, 1.0f / (float)B, &count);
    if (!isfinite(*loss))
        return fl_fail(err, FL_ENUMERIC, "fine-tune %s: loss is %g at step %lld", o->name, *loss, (long long)step);
    if ((st = head_backward(f, B, T, err))) return st;
    fl_param_list *mp = fl_model_params(f->m);
    double gm = fl_grad_norm(f->be, mp), gh = fl_grad_norm(f->be, &f->head);
    double norm = sqrt(gm * gm + gh * gh);
    if (!isfinite(norm))
        return fl_fail(err, FL_ENUMERIC, "fine-tune %s: gradient norm is not finite at step %lld", o->name, (long long)step);
    float clip = o->grad_clip > 0 && norm > o->grad_clip ? (float)(o->grad_clip / norm) : 1.0f;
    fl_adamw opt = {.lr = o->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = o->weight_decay};
    st = fl_adamw_step(f->be, mp, &opt, lr, clip, step + 1, err);
    if (!st) st = fl_adamw_step(f->be, &f->head, &opt, lr, clip, step + 1, err);
    fl_model_zero_grad(f->m);
    fl_zero_grad(f->be, &f->head);
    return st;
}

static void shuffle(int64_t *perm, int64_t n, uint64_t seed, int epoch) {
    uint64_t key = fl_rng_key(seed, "finetune.shuffle");
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(fl_rng_bits(key, ((uint64_t)epoch << 40) + (uint64_t)i) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

typedef struct progress {
    int64_t step, planned, best_step, bad_evals;
    double best, loss_sum;
    int64_t loss_n;
} progress;

/* One dev evaluation: keeps the weights when the score improves. Returns
   1 in *stop when patience has run out. */
static fl_status evaluate(ft *f, const fl_ft_data *dev, int32_t *pred, progress *p, int *stop,
                          fl_finetune_result *res, fl_error *err) {
    fl_status st = predict(f, &dev->seqs, pred, err);
    if (st) return st;
    double score = dev_score(f, pred, dev);
    res->train_loss = p->loss_n ? p->loss_sum / (double)p->loss_n : NAN;
    if (!f->have_snap || score > p->best) {
        p->best = score, p->best_step = p->step, p->bad_evals = 0;
        if ((st = snapshot(f, 0, err))) return st;
    } else {
        p->bad_evals++;
    }
    fl_log_info("%s: step %lld/%lld, train loss %.4f, dev %.4f (best %.4f at step %lld)", f->o->name,
                (long long)p->step, (long long)p->planned, res->train_loss, score, p->best, (long long)p->best_step);
    p->loss_sum = 0, p->loss_n = 0;
    *stop = f->o->patience > 0 && p->bad_evals >= f->o->patience;
    return FL_OK;
}

static fl_status train_loop(ft *f, const fl_ft_data *train, const fl_ft_data *dev, int32_t *dev_pred,
                            fl_finetune_result *res, fl_error *err) {
    const fl_finetune_opts *o = f->o;
    const int64_t n = train->seqs.n, per_epoch = (n + f->Bmax - 1) / f->Bmax;
    progress p = {.planned = per_epoch * o->epochs, .best = -INFINITY};
    if (o->max_steps > 0 && o->max_steps < p.planned) p.planned = o->max_steps;
    const int64_t warmup = (int64_t)(o->warmup_ratio * (double)p.planned + 0.5);
    const int64_t every = o->eval_every > 0 ? o->eval_every : per_epoch;
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    if (!perm) return fl_fail(err, FL_ENOMEM, "fine-tune %s: out of memory", o->name);
    fl_status st = FL_OK;
    int stop = 0;
    for (int epoch = 0; epoch < o->epochs && !stop && !st; epoch++) {
        shuffle(perm, n, o->seed, epoch);
        for (int64_t i = 0; i < n && !stop && !st; i += f->Bmax) {
            int B = (int)(n - i < f->Bmax ? n - i : f->Bmax);
            double loss = 0;
            st = train_step(f, train, perm + i, B, p.step, lr_at(o, p.step, warmup, p.planned), &loss, err);
            p.step++, p.loss_sum += loss, p.loss_n++;
            if (!st && (p.step % every == 0 || p.step == p.planned)) {
                st = evaluate(f, dev, dev_pred, &p, &stop, res, err);
                res->stopped_early = stop;
            }
            if (p.step >= p.planned) stop = 1;
        }
    }
    free(perm);
    res->steps = p.step;
    res->epochs = (double)p.step / (double)per_epoch;
    res->best_dev_score = p.best;
    res->best_step = p.best_step;
    return st;
}

fl_status fl_finetune_run(const fl_model *base, int32_t pad, const fl_finetune_opts *o,
                          const fl_ft_data *train, const fl_ft_data *dev,
                          const fl_ft_data *const *predict_sets, int n_predict, int32_t *dev_pred,
                          int32_t *const *predict_out, fl_finetune_result *res, fl_error *err) {
    memset(res, 0, sizeof *res);
    fl_status st = check_opts(o, err);
    if (st) return st;
    ft f = {.o = o, .pad = pad, .first = fl_model_cfg(base)->arch == FL_ARCH_BERT};
    fl_finetune_opts named = *o;
    if (!named.name) named.name = "task";
    f.o = &named;
    st = setup(&f, base, err);
    if (!st) st = check_data(&f, train, "train", 1, &res->truncated, err);
    if (!st) st = check_data(&f, dev, "dev", 1, &res->truncated, err);
    for (int j = 0; j < n_predict && !st; j++) st = check_data(&f, predict_sets[j], "predict", 0, &res->truncated, err);
    if (!st) st = train_loop(&f, train, dev, dev_pred, res, err);
    if (!st) st = snapshot(&f, 1, err); /* the best dev weights */
    if (!st) st = predict(&f, &dev->seqs, dev_pred, err);
    for (int j = 0; j < n_predict && !st; j++) st = predict(&f, &predict_sets[j]->seqs, predict_out[j], err);
    teardown(&f);
    return st;
}
