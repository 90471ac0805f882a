/*
 * core/optim.c — AdamW, schedule, clipping (see optim.h).
 */
#include "optim.h"

#include <math.h>
#include <stdlib.h>

#include "backend.h"
#include "error.h"

double fl_lr_at(int64_t step, int64_t warmup, int64_t total, double lr, double min_ratio) {
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    if (total <= warmup) return lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1) progress = 1;
    double cosine = 0.5 * (1.0 + cos(M_PI * progress));
    return lr * (min_ratio + (1.0 - min_ratio) * cosine);
}

/* A sparse-rows parameter as [rows, row length]. */
static fl_tensor as_rows(const fl_tensor *t) {
    return fl_view2(t, t->shape[0], fl_numel(t) / t->shape[0]);
}

double fl_grad_sumsq(const fl_backend *be, const fl_param_list *ps, const unsigned char *keep) {
    const fl_tensor **dense = malloc((size_t)(ps->n > 0 ? ps->n : 1) * sizeof *dense);
    double sum = 0;
    int nd = 0;
    for (int i = 0; i < ps->n; i++) {
        const fl_param_impl *p = ps->items[i];
        if (keep && !keep[i]) continue;
        if (p->pub.flags & FL_PARAM_SPARSE_ROWS) { /* other rows' gradients are zero */
            fl_tensor g = as_rows(&p->pub.grad);
            sum += be->sumsq_rows(&g, p->rows, p->n_rows_touched);
        } else if (dense) {
            dense[nd++] = &p->pub.grad;
        } else {
            sum += be->sumsq(&p->pub.grad); /* no memory for the list: one by one */
        }
    }
    if (nd) sum += be->sumsq_many(dense, nd);
    free(dense);
    return sum;
}

double fl_grad_norm(const fl_backend *be, const fl_param_list *ps) { return sqrt(fl_grad_sumsq(be, ps, NULL)); }

void fl_zero_grad(const fl_backend *be, fl_param_list *ps) {
    for (int i = 0; i < ps->n; i++) {
        fl_param_impl *p = ps->items[i];
        if (p->pub.flags & FL_PARAM_SPARSE_ROWS) { /* only rows touched since the last zeroing */
            fl_tensor g = as_rows(&p->pub.grad);
            be->zero_rows(&g, p->rows, p->n_rows_touched);
            fl_params_clear_touched(p);
        } else {
            be->ops.fill(&p->pub.grad, 0.0f);
        }
    }
}

fl_status fl_adamw_step(const fl_backend *be, fl_param_list *ps, const fl_adamw *opt, double lr,
                        float grad_scale, int64_t t, fl_error *err) {
    for (int i = 0; i < ps->n; i++) {
        fl_param_impl *p = ps->items[i];
        fl_status st = fl_params_ensure_moments(be, p, err);
        if (st) return st;
        double plr = p->lr_fixed > 0 ? p->lr_fixed : lr * p->lr_scale;
        float wd = (p->pub.flags & FL_PARAM_DECAY) ? (float)opt->weight_decay : 0.0f;
        if (p->pub.flags & FL_PARAM_SPARSE_ROWS) {
            fl_tensor v2 = as_rows(&p->pub.value), g2 = as_rows(&p->pub.grad);
            fl_tensor m2 = as_rows(&p->m), s2 = as_rows(&p->v);
            be->adamw_rows(&v2, &g2, &m2, &s2, p->rows, p->n_rows_touched, (float)plr, (float)opt->beta1,
                           (float)opt->beta2, (float)opt->eps, wd, grad_scale, t);
        } else {
            be->adamw(&p->pub.value, &p->pub.grad, &p->m, &p->v, (float)plr, (float)opt->beta1,
                      (float)opt->beta2, (float)opt->eps, wd, grad_scale, t);
        }
    }
    /* once per step: wait for the device and surface a GPU error (CUDA) */
    return be->sync ? be->sync(err) : FL_OK;
}
