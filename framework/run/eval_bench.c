/*
 * run/eval_bench.c — `ffnlab bench --blimp`: how fast BLiMP is scored.
 *
 * Runs the real blimp task plugin (reading, tokenizing, batching, scoring,
 * tallying: everything `ffnlab eval --task blimp` does) on a freshly
 * initialised model of the benchmark shape. Throughput does not depend on the
 * weights, only on the shape and on how many tokens the sentences become, so
 * the tokenizer matters: give the one the real runs use (--tokenizer), or a
 * byte-level BPE of the requested size is trained on the built-in corpus.
 * Reports pairs/s and tokens/s over the task's whole wall time.
 */
#include "eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "corpus.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "storygen.h"

static fl_status bench_tokenizer(const fl_eval_bench_opts *o, fl_tokenizer **tok, fl_error *err) {
    if (o->tokenizer && o->tokenizer[0]) return fl_tokenizer_load(o->tokenizer, tok, err);
    char *text = NULL;
    size_t len = 0;
    fl_corpus c = {0};
    fl_status st = fl_storygen_text(1337, 3000000, &text, &len, err);
    if (!st) st = fl_corpus_parse(text, len, "<built-in corpus>", &c, err);
    if (!st) st = fl_tokenizer_train(c.docs, c.lens, c.n_docs, o->vocab, tok, err);
    fl_corpus_free(&c);
    free(text);
    return st;
}

static double metric(const fl_metric_list *ms, const char *name) {
    for (size_t i = 0; i < ms->n; i++)
        if (!ms->items[i].group && !ms->items[i].subtask && !strcmp(ms->items[i].name, name)) return ms->items[i].value;
    return 0;
}

fl_status fl_eval_bench_blimp(const fl_eval_bench_opts *o, fl_eval_bench_result *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    fl_tokenizer *tok = NULL;
    fl_model *m = NULL;
    fl_metric_list ms = {0};
    char work[] = "/tmp/ffnlab-bench-XXXXXX", spec[4200];
    if (!mkdtemp(work)) return fl_fail(err, FL_EIO, "cannot create a temporary folder in /tmp");
    fl_status st = bench_tokenizer(o, &tok, err);
    if (!st) {
        const char *specs[64];
        for (int l = 0; l < o->n_layers && l < 64; l++) specs[l] = o->ffn;
        fl_model_config mc = {.vocab_size = fl_tokenizer_vocab_size(tok), .context = o->context, .d_model = o->d_model,
                              .n_layers = o->n_layers, .n_heads = o->n_heads, .ffn_specs = specs, .seed = 1};
        const fl_backend *be = NULL;
        st = fl_backend_select(o->device ? o->device : "auto", &be, err);
        if (!st) {
            snprintf(r->backend, sizeof r->backend, "%s", be->name);
            snprintf(r->kernel, sizeof r->kernel, "%s", be->describe());
            st = fl_model_create(&mc, be, &m, err);
        }
    }
    if (!st) {
        snprintf(spec, sizeof spec, "blimp:batch_size=%d%s%s", o->batch, o->data ? ",data=" : "", o->data ? o->data : "");
        const char *specs[1] = {spec};
        fl_eval_target t = {.model = m, .tok = tok, .work_dir = work, .step = -1};
        fl_eval_opts eo = {.out_json = "", .table = NULL};
        double t0 = fl_now_s();
        st = fl_eval_run(&t, specs, 1, &eo, &ms, err);
        r->seconds = fl_now_s() - t0;
    }
    if (!st) {
        r->pairs = (int64_t)metric(&ms, "pairs");
        r->tokens = (int64_t)metric(&ms, "tokens");
        r->accuracy = metric(&ms, "accuracy_paradigm_mean");
        r->vocab = fl_tokenizer_vocab_size(tok);
    }
    fl_metric_list_free(&ms);
    fl_model_free(m);
    fl_tokenizer_free(tok);
    if (fl_remove_tree(work) != 0) fl_log_warn("could not remove %s", work);
    return st;
}
