/*
 * tests/support/task_fixture.c — see task_fixture.h.
 */
#include "task_fixture.h"

#include <stdlib.h>

#include "backend.h"
#include "story_fixture.h"
#include "support.h"

const char *const ts_sentences[TS_N_SENTENCES] = {
    "The dog likes to run.", "Lily and Tom were happy.", "I see many apples in the big green garden today.",
    "A cat.", "The little bird flies over the tall tree and sings a song.", "Ben saw an old owl.",
};

fl_model *ts_task_model(const fl_tokenizer *tok, int arch, int32_t pad) {
    const char *specs[2] = {"dense", "dense"};
    fl_model_config mc = {.vocab_size = fl_tokenizer_vocab_size(tok), .context = 48, .d_model = 32, .n_layers = 2,
                          .n_heads = 2, .ffn_specs = specs, .seed = 3, .arch = arch, .pad_token = pad};
    fl_model *m = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, fl_backend_cpu(), &m, &err), &err);
    return m;
}

void ts_task_fixture_init(ts_task_fixture *f, int arch, const char *name, const char *spec) {
    fl_error err = {0};
    *f = (ts_task_fixture){0};
    const int encoder = arch == FL_ARCH_BERT;
    f->tok = ts_story_tokenizer(7, 200000, 400, encoder, NULL, NULL);
    int32_t pad = -1;
    if (encoder) {
        fl_special_ids ids;
        ts_assert_ok(fl_tokenizer_encoder_ids(f->tok, "tok", &ids, &err), &err);
        pad = ids.pad;
    }
    f->model = ts_task_model(f->tok, arch, pad);
    f->dir = ts_tmpdir();
    ts_assert_ok(fl_task_host_init(&f->th, f->model, f->tok, "", f->dir, "", &f->metrics, &err), &err);
    fl_task_host_set_task(&f->th, name, spec);
}

void ts_task_fixture_free(ts_task_fixture *f) {
    fl_model_free(f->model);
    fl_tokenizer_free(f->tok);
    fl_metric_list_free(&f->metrics);
    ts_rmtree(f->dir);
    free(f->dir);
}
