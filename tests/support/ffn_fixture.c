/*
 * tests/support/ffn_fixture.c — see ffn_fixture.h.
 */
#include "ffn_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fl_status create_on(ts_ffn *t, const char *name, const char *opts, int d_model, size_t ops_size,
                           fl_error *err) {
    memset(t, 0, sizeof *t);
    t->be = fl_backend_cpu();
    fl_host_init(&t->host, t->be, NULL);
    if (ops_size < sizeof t->older) {
        t->older = t->be->ops;
        t->older.size = (uint32_t)ops_size;
        t->host.ops = &t->older;
    }
    char spec[1024];
    snprintf(spec, sizeof spec, "%s%s%s", name, opts ? ":" : "", opts ? opts : "");
    const fl_ffn_site site = {.d_model = d_model, .index = 0, .n_layers = TS_FFN_LAYERS, .vocab_size = TS_FFN_VOCAB,
                              .seed = TS_FFN_SEED};
    return fl_ffn_layer_create(&t->L, &t->host, &t->list, spec, &site, err);
}

fl_status ts_ffn_create(ts_ffn *t, const char *name, const char *opts, int d_model, fl_error *err) {
    return create_on(t, name, opts, d_model, sizeof(fl_ops), err);
}

fl_status ts_ffn_create_older_host(ts_ffn *t, const char *name, const char *opts, int d_model, size_t first_missing,
                                   fl_error *err) {
    return create_on(t, name, opts, d_model, first_missing, err);
}

void ts_ffn_free(ts_ffn *t) {
    fl_ffn_layer_destroy(&t->L);
    fl_params_free(&t->list, t->be);
}

void ts_ffn_zero_grads(ts_ffn *t) {
    for (int i = 0; i < t->list.n; i++) {
        t->be->ops.fill(&t->list.items[i]->pub.grad, 0.0f);
        fl_params_clear_touched(t->list.items[i]);
    }
}

fl_param *ts_ffn_param(const ts_ffn *t, const char *rel) {
    char full[256];
    snprintf(full, sizeof full, TS_FFN_PREFIX "%s", rel);
    for (int i = 0; i < t->list.n; i++)
        if (!strcmp(t->list.items[i]->pub.name, full)) return &t->list.items[i]->pub;
    return NULL;
}

double ts_ffn_stat(const ts_ffn *t, const char *name) {
    fl_stat s[256];
    int n = t->L.ffn->stats ? t->L.ffn->stats(t->L.layer, s, 256) : 0;
    for (int i = 0; i < n && i < 256; i++)
        if (!strcmp(s[i].name, name)) return s[i].value;
    fail_msg("no stat %s", name);
    return 0;
}

fl_param_scope ts_ffn_scope(ts_ffn *t) {
    fl_param_scope s = {.prefix = TS_FFN_PREFIX, .list = &t->list, .be = t->be, .seed = TS_FFN_SEED,
                        .n_layers = TS_FFN_LAYERS, .ep_rank = t->host.comm->ep_rank,
                        .ep_size = t->host.comm->ep_size};
    return s;
}

void ts_ffn_expect_option_error(const char *plugin, const char *opts, int d_model, const char *sub) {
    ts_ffn t;
    fl_error err = {0};
    fl_status st = ts_ffn_create(&t, plugin, opts, d_model, &err);
    print_message("  %-32s -> %s\n", opts ? opts : "(defaults)", err.msg);
    assert_int_equal(st, FL_EINVAL);
    if (!strstr(err.msg, sub)) fail_msg("'%s' does not mention '%s'", err.msg, sub);
    assert_null(t.L.layer);
    ts_ffn_free(&t);
}

char *ts_ffn_train_e2e(const char *args, int steps, double *val, double *unigram) {
    char *dir = ts_tmpdir(), *out = NULL;
    int rc = ts_ffnlab(&out,
                       "train --corpus-bytes 1000000 --vocab-size 512 --d-model 64 --n-layers 2 --n-heads 2 "
                       "--context 64 --batch-size 16 --steps %d --lr 3e-3 --eval-every 50 --eval-batches 8 "
                       "--no-progress %s --run-dir %s/" TS_FFN_E2E_RUN,
                       steps, args, dir);
    if (rc) fail_msg("train failed (%d): %s", rc, out);
    char head[64];
    snprintf(head, sizeof head, "trained %d steps: validation loss ", steps);
    const char *p = strstr(out, head);
    if (!p) fail_msg("no '%s' in: %s", head, out);
    *val = *unigram = 0;
    assert_int_equal(sscanf(p + strlen(head), "%lf nats/token (unigram entropy %lf", val, unigram), 2);
    print_message("  validation loss %.4f vs unigram entropy %.4f (ratio %.2f)\n", *val, *unigram,
                  *val / *unigram);
    free(out);
    return dir;
}
