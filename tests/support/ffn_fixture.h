/*
 * tests/support/ffn_fixture.h — one FFN plugin layer on the CPU host, built
 * the way the model builds its blocks (core/ffn_layer.h).
 *
 *   ts_ffn t;
 *   ts_assert_ok(ts_ffn_create(&t, "moe", "experts=4,top_k=2", 8, &err), &err);
 *   fl_param *w = ts_ffn_param(&t, "router.weight");
 *   t.L.ffn->forward(t.L.layer, ...);
 *   ts_ffn_free(&t);
 *
 * The layer is layer 0 of TS_FFN_LAYERS with seed TS_FFN_SEED, so its
 * parameters are "transformer.h.0.mlp.*" in t.list. The fixture must not be
 * moved or copied while the layer lives (plugins may keep the host pointer).
 */
#ifndef FFNLAB_TEST_FFN_FIXTURE_H
#define FFNLAB_TEST_FFN_FIXTURE_H

#include "support.h"

#include "backend.h"
#include "ffn_layer.h"
#include "host_table.h"
#include "params.h"

#define TS_FFN_PREFIX "transformer.h.0.mlp."
enum { TS_FFN_SEED = 1234, TS_FFN_LAYERS = 2, TS_FFN_VOCAB = 512 };

typedef struct ts_ffn {
    const fl_backend *be; /* the CPU */
    fl_ops older;         /* ts_ffn_create_older_host: the host's shorter ops table */
    fl_host host;
    fl_param_list list;   /* the layer's parameters (owned here) */
    fl_ffn_layer L;       /* plugin, descriptor, parsed options, layer object */
} ts_ffn;

/* Zeroes t and creates plugin `name` with option text opts (NULL: defaults)
   at width d_model through fl_ffn_layer_create. On failure t.L.layer is NULL
   and err carries fl_ffn_layer_create's message (prefixed "layer 0 ffn
   'NAME'"); ts_ffn_free must still be called. */
fl_status ts_ffn_create(ts_ffn *t, const char *name, const char *opts, int d_model, fl_error *err);
/* ts_ffn_create on a host whose ops table ends at offsetof(fl_ops, first_missing),
   as an older host's does: FL_OPS_HAS is false from that op on. */
fl_status ts_ffn_create_older_host(ts_ffn *t, const char *name, const char *opts, int d_model, size_t first_missing,
                                   fl_error *err);
/* Destroys the layer, unloads the plugin and frees the parameters. */
void ts_ffn_free(ts_ffn *t);

/* Every parameter gradient of the layer zero, and no sparse rows touched:
   the state before a backward that is checked on its own. */
void ts_ffn_zero_grads(ts_ffn *t);

/* The parameter "transformer.h.0.mlp.<rel>" of t's list, or NULL. */
fl_param *ts_ffn_param(const ts_ffn *t, const char *rel);

/* The value of the layer's stat `name` (after a forward, or its initial
   value); fails the test if the layer reports no such stat. */
double ts_ffn_stat(const ts_ffn *t, const char *name);

/* The scope fl_ffn_layer_create gives the plugin (prefix, list, backend,
   seed, n_layers, expert-parallel rank), for tests that call create
   themselves with values or a host that fl_ffn_layer_create cannot pass. */
fl_param_scope ts_ffn_scope(ts_ffn *t);

/* Creates plugin `plugin` with option text opts (NULL: defaults) at width
   d_model, prints the message, and fails the test unless creation fails with
   FL_EINVAL, the message mentions sub, and no layer was made. */
void ts_ffn_expect_option_error(const char *plugin, const char *opts, int d_model, const char *sub);

/* Runs `ffnlab train` on a tiny model (1 MB corpus, vocabulary 512, d_model
   64, 2 layers of 2 heads, context 64, batch 16, lr 3e-3, evaluation every 50
   steps over 8 batches) for `steps` steps with the extra arguments args (the
   FFN spec, warmup, device, ...) and run directory "<dir>/" TS_FFN_E2E_RUN;
   fails the test unless it succeeds and reports "trained STEPS steps:
   validation loss VAL nats/token (unigram entropy UNIGRAM". Prints and stores
   val and unigram; returns dir (ts_rmtree and free it). The thresholds are
   the caller's. */
#define TS_FFN_E2E_RUN "run"
char *ts_ffn_train_e2e(const char *args, int steps, double *val, double *unigram);

#endif
