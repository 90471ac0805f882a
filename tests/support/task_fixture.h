/*
 * tests/support/task_fixture.h — what the task-service suites score with: a
 * small model (d=32, 2 layers, 2 heads, context 48, dense FFNs, seed 3) over
 * a tokenizer of the built-in stories, a task host over both, and the
 * sentences they score.
 */
#ifndef FFNLAB_TASK_FIXTURE_H
#define FFNLAB_TASK_FIXTURE_H

#include <stdint.h>

#include "model.h"
#include "task_host.h"
#include "tokenizer.h"

typedef struct ts_task_fixture {
    fl_tokenizer *tok;
    fl_model *model;
    fl_metric_list metrics;
    fl_task_host th;
    char *dir; /* the host's output folder, a fresh temporary one */
} ts_task_fixture;

/* The fixture for a decoder (FL_ARCH_GPT) or an encoder (FL_ARCH_BERT: the
   tokenizer has the encoder's special tokens, the model pads with <pad>),
   its host running task `name` given as `spec`. Fails the running test on
   an error. */
void ts_task_fixture_init(ts_task_fixture *f, int arch, const char *name, const char *spec);
void ts_task_fixture_free(ts_task_fixture *f);

/* The fixture's model shape over tok's vocabulary (pad: the padding id, -1
   for none). */
fl_model *ts_task_model(const fl_tokenizer *tok, int arch, int32_t pad);

/* Six sentences of 2 to 14 words to score. */
enum { TS_N_SENTENCES = 6 };
extern const char *const ts_sentences[TS_N_SENTENCES];

#endif
