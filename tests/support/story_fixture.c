/* tests/support/story_fixture.c — see story_fixture.h. */
#include "story_fixture.h"

#include <math.h>
#include <stdlib.h>

#include "corpus.h"
#include "storygen.h"
#include "support.h"

fl_tokenizer *ts_story_tokenizer(uint64_t seed, size_t bytes, int vocab, int encoder, int32_t **stream, size_t *n) {
    fl_error err = {0};
    char *text = NULL;
    size_t len = 0;
    fl_corpus c = {0};
    fl_tokenizer *tok = NULL;
    ts_assert_ok(fl_storygen_text(seed, bytes, &text, &len, &err), &err);
    ts_assert_ok(fl_corpus_parse(text, len, "stories", &c, &err), &err);
    const char *const *docs = (const char *const *)c.docs;
    if (encoder)
        ts_assert_ok(fl_tokenizer_train_special(docs, c.lens, c.n_docs, vocab, FL_ENCODER_SPECIALS,
                                                FL_N_ENCODER_SPECIALS, &tok, &err),
                     &err);
    else
        ts_assert_ok(fl_tokenizer_train(docs, c.lens, c.n_docs, vocab, &tok, &err), &err);
    if (stream) ts_assert_ok(fl_tokenizer_encode(tok, text, len, stream, n, &err), &err);
    fl_corpus_free(&c);
    free(text);
    return tok;
}

double ts_log_softmax(const float *row, int V, int32_t target) {
    double mx = row[0], s = 0;
    for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    for (int v = 0; v < V; v++) s += exp(row[v] - mx);
    return row[target] - mx - log(s);
}
