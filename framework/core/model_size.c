/*
 * core/model_size.c — parameter and FLOP counts of a model (see model_size.h).
 */
#include "model_size.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ffn_layer.h"
#include "host_table.h"

/* stat `name` of the layer's last forward, or fallback. */
static double layer_stat(const fl_ffn_layer *L, const char *name, double fallback) {
    return fl_ffn_layer_stat(L, name, fallback);
}

/* One eval-mode forward on one token (zeros; token id 0 at position 0), so
   the layer reports its inference figures. Skipped in a multi-process job,
   where an expert-sharded forward is a collective. */
static fl_status one_token(const fl_host *h, fl_ffn_layer *L, int d_model, fl_error *err) {
    if (h->comm->size > 1) return FL_OK;
    fl_tensor x = {0}, y = {0}, ids = {0};
    int64_t shape[2] = {1, d_model}, one[2] = {1, 1};
    fl_status st = h->tensor_ensure(h, &x, FL_F32, 2, shape, err);
    if (!st) st = h->tensor_ensure(h, &y, FL_F32, 2, shape, err);
    if (!st) st = h->tensor_ensure(h, &ids, FL_I32, 2, one, err);
    if (!st) {
        h->ops->fill(&x, 0.0f);
        h->ops->fill(&ids, 0.0f);
        fl_ffn_ctx ctx = {.train = 0, .B = 1, .T = 1, .tokens = &ids, .positions = &ids};
        st = L->ffn->forward(L->layer, &ctx, &x, &y, err);
    }
    h->tensor_release(h, &x);
    h->tensor_release(h, &y);
    h->tensor_release(h, &ids);
    return st;
}

fl_status fl_ffn_size_of(const char *spec, const fl_ffn_site *site, const fl_backend *be, const fl_comm *comm,
                         fl_ffn_size *out, fl_error *err) {
    fl_host h;
    fl_host_init(&h, be, comm);
    fl_param_list params = {0};
    fl_ffn_layer L;
    memset(out, 0, sizeof *out);
    fl_status st = fl_ffn_layer_create(&L, &h, &params, spec, site, err);
    if (!st) st = one_token(&h, &L, site->d_model, err);
    if (!st) {
        for (int i = 0; i < params.n; i++) out->params += (double)fl_numel(&params.items[i]->pub.value);
        out->active_params = layer_stat(&L, "active_params", out->params);
        out->flops_per_token = layer_stat(&L, "flops_per_token", 0);
    }
    fl_ffn_layer_destroy(&L);
    fl_params_free(&params, be);
    return st;
}

fl_status fl_model_size_of(const fl_model_config *mc, const fl_backend *be, fl_model_size *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    const double C = mc->d_model, V = mc->vocab_size, T = mc->context, L = mc->n_layers;
    if (mc->n_layers < 1 || !mc->ffn_specs) return fl_fail(err, FL_EINVAL, "model: no layers or no FFN specs");
    if (!(out->ffn = calloc((size_t)mc->n_layers, sizeof *out->ffn)))
        return fl_fail(err, FL_ENOMEM, "out of memory sizing the model");
    out->n_layers = mc->n_layers;
    fl_status st = FL_OK;
    for (int l = 0; l < mc->n_layers && !st; l++) { /* one layer at a time: at most one layer's memory */
        fl_ffn_size *f = &out->ffn[l];
        const fl_ffn_site site = {.d_model = mc->d_model, .index = l, .n_layers = mc->n_layers,
                                  .vocab_size = mc->vocab_size, .seed = 1};
        st = fl_ffn_size_of(mc->ffn_specs[l] ? mc->ffn_specs[l] : "dense", &site, be, mc->comm, f, err);
        out->ffn_params += f->params;
        out->ffn_active_params += f->active_params;
        out->ffn_flops_per_token += f->flops_per_token;
    }
    if (st) {
        fl_model_size_free(out);
        return st;
    }
    /* wte, wpe; per block ln_1, c_attn, c_proj, ln_2; ln_f */
    const double rest = V * C + T * C + L * (2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C) + 2 * C;
    out->total_params = rest + out->ffn_params;
    out->active_params = rest + out->ffn_active_params;
    double attn = 0; /* q·k and att·v: 2 * 2 * C per key a query sees */
    for (int l = 0; l < mc->n_layers; l++)
        attn += 4 * C * fl_attn_mean_keys((int64_t)T, mc->arch == FL_ARCH_GPT, (mc->local_layers >> l) & 1 ? mc->window : 0);
    out->flops_per_token = L * 2 * (3 * C * C + C * C) + attn + out->ffn_flops_per_token + 2 * C * V;
    return FL_OK;
}

void fl_model_size_free(fl_model_size *s) {
    free(s->ffn);
    s->ffn = NULL;
}
