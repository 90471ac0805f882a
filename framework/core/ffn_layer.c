/*
 * core/ffn_layer.c — FFN plugin layers from specs (see ffn_layer.h).
 */
#include "ffn_layer.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "host.h"

fl_status fl_ffn_layer_create(fl_ffn_layer *L, const fl_host *h, fl_param_list *params,
                              const char *spec, int d_model, int index, int n_layers,
                              uint64_t seed, fl_error *err) {
    memset(L, 0, sizeof *L);
    char name[128], where[192];
    const char *opts = NULL;
    fl_status st = fl_spec_split(spec, name, sizeof name, &opts, err);
    if (st) return st;
    if ((st = fl_plugin_load(name, FL_PLUGIN_FFN, &L->plugin, err))) return st;
    L->ffn = fl_plugin_ffn(&L->plugin);
    snprintf(where, sizeof where, "layer %d ffn '%s'", index, name);
    const fl_plugin_header *hd = L->plugin.header;
    if ((st = fl_options_parse(hd->options, hd->n_options, opts, where, &L->opts, err))) return st;
    snprintf(L->prefix, sizeof L->prefix, "transformer.h.%d.mlp.", index);
    fl_param_scope scope = {.prefix = L->prefix, .list = params, .be = fl_host_backend(h),
                            .seed = seed, .n_layers = n_layers,
                            .ep_rank = h->comm->ep_rank, .ep_size = h->comm->ep_size};
    fl_ffn_config fc = {.d_model = d_model, .layer_index = index, .n_layers = n_layers,
                        .values = L->opts.values, .scope = &scope};
    st = L->ffn->create(h, &fc, &L->layer, err);
    if (st) {
        L->layer = NULL;
        fl_error_prefix(err, "%s", where);
    }
    return st;
}

void fl_ffn_layer_destroy(fl_ffn_layer *L) {
    if (L->layer && L->ffn) L->ffn->destroy(L->layer);
    fl_options_free(&L->opts);
    if (L->plugin.handle) fl_plugin_unload(&L->plugin);
    memset(L, 0, sizeof *L);
}

double fl_ffn_layer_stat(const fl_ffn_layer *L, const char *name, double fallback) {
    fl_stat s[96];
    int n = L->ffn->stats ? L->ffn->stats(L->layer, s, 96) : 0;
    for (int i = 0; i < n && i < 96; i++)
        if (!strcmp(s[i].name, name)) return s[i].value;
    return fallback;
}
