/*
 * core/ffn_layer.h — one FFN plugin layer, loaded and created from a spec.
 *
 * "moe:experts=8,top_k=1" → the plugin library loaded, its options parsed
 * and checked against its descriptor, its parameters declared into a host
 * parameter list under "transformer.h.{i}.mlp.", and its layer object
 * created. The model builds its blocks this way; benchmarks and tests use it
 * to run a layer on its own.
 */
#ifndef FFNLAB_FFN_LAYER_H
#define FFNLAB_FFN_LAYER_H

#include <stdint.h>

#include "ffnlab/ffn.h"
#include "loader.h"
#include "options.h"
#include "params.h"

typedef struct fl_ffn_layer {
    fl_plugin plugin;          /* the library */
    const fl_ffn_plugin *ffn;  /* its descriptor */
    fl_option_set opts;        /* parsed options (valid while the layer lives) */
    void *layer;               /* the plugin's layer object */
    char prefix[64];           /* "transformer.h.3.mlp." */
} fl_ffn_layer;

/* Where a layer sits in its model. */
typedef struct fl_ffn_site {
    int d_model;
    int index, n_layers;       /* block index of n_layers */
    int vocab_size;            /* the model's vocabulary (fl_ffn_config.vocab_size) */
    uint64_t seed;             /* parameters are initialised from it */
} fl_ffn_site;

/* Creates the layer spec describes at site; parameters go into params
   (allocated on h's backend). A plugin that does not run on h's device
   (fl_ffn_plugin.devices) is refused naming the plugin and the device. */
fl_status fl_ffn_layer_create(fl_ffn_layer *L, const fl_host *h, fl_param_list *params, const char *spec,
                              const fl_ffn_site *site, fl_error *err);
/* Destroys the layer object and unloads the plugin (params stay in their list). */
void fl_ffn_layer_destroy(fl_ffn_layer *L);

/* "cpu, cuda": the device kinds in a plugin's `devices` mask ("none" when
   empty). */
void fl_ffn_devices_text(uint32_t mask, char *buf, size_t n);

/* The value of stat `name` after a forward, or `fallback`. */
double fl_ffn_layer_stat(const fl_ffn_layer *L, const char *name, double fallback);

#endif
