/*
 * core/ffn_layer.c — FFN plugin layers from specs (see ffn_layer.h).
 */
#include "ffn_layer.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "ffnlab/ffn.h"
#include "host_table.h"

static const char *device_name(int kind) { return kind == FL_DEVICE_CPU ? "cpu" : kind == FL_DEVICE_CUDA ? "cuda" : "?"; }

void fl_ffn_devices_text(uint32_t mask, char *buf, size_t n) {
    buf[0] = 0;
    for (int k = FL_DEVICE_CPU; k <= FL_DEVICE_CUDA; k++)
        if (mask & FL_DEVICE_BIT(k))
            snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? ", " : "", device_name(k));
    if (!buf[0]) snprintf(buf, n, "none");
}

fl_status fl_ffn_layer_create(fl_ffn_layer *L, const fl_host *h, fl_param_list *params, const char *spec,
                              const fl_ffn_site *site, fl_error *err) {
    memset(L, 0, sizeof *L);
    char name[128], where[192];
    const char *opts = NULL;
    fl_status st = fl_spec_split(spec, name, sizeof name, &opts, err);
    if (st) return st;
    if ((st = fl_plugin_load(name, FL_PLUGIN_FFN, &L->plugin, err))) return st;
    L->ffn = fl_plugin_ffn(&L->plugin);
    snprintf(where, sizeof where, "layer %d ffn '%s'", site->index, name);
    if (!(L->ffn->devices & FL_DEVICE_BIT(h->device.kind))) {
        char has[64];
        fl_ffn_devices_text(L->ffn->devices, has, sizeof has);
        return fl_fail(err, FL_EUNSUPPORTED, "%s: the plugin (%s) has no code for %s; it runs on: %s (a plugin built "
                       "without its CUDA sources runs on the CPU only)", where, L->plugin.path,
                       device_name(h->device.kind), has);
    }
    const fl_plugin_header *hd = L->plugin.header;
    if ((st = fl_options_parse(hd->options, hd->n_options, opts, where, &L->opts, err))) return st;
    snprintf(L->prefix, sizeof L->prefix, "transformer.h.%d.mlp.", site->index);
    fl_param_scope scope = {.prefix = L->prefix, .list = params, .be = fl_host_backend(h),
                            .seed = site->seed, .n_layers = site->n_layers,
                            .ep_rank = h->comm->ep_rank, .ep_size = h->comm->ep_size};
    fl_ffn_config fc = {.d_model = site->d_model, .layer_index = site->index, .n_layers = site->n_layers,
                        .vocab_size = site->vocab_size, .values = L->opts.values, .scope = &scope};
    st = L->ffn->create(h, &fc, &L->layer, err);
    if (st) {
        L->layer = NULL;
        fl_error_prefix(err, "%s create", where);
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
