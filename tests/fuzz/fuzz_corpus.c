/*
 * tests/fuzz/fuzz_corpus.c — a corpus: plain text with <|endoftext|> lines
 * or JSON Lines with a "text" field (chosen by content, as ffnlab does).
 */
#include "fuzz_util.h"

#include "corpus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fl_corpus c;
    fl_error err = {0};
    if (fl_corpus_parse((const char *)data, n, "fuzz.txt", &c, &err)) return 0;
    size_t bytes = 0;
    for (size_t i = 0; i < c.n_docs; i++) {
        if (fl_utf8_check(c.docs[i], c.lens[i]) != c.lens[i]) abort(); /* documents are valid UTF-8 */
        bytes += c.lens[i];
    }
    if (bytes != c.bytes) abort();
    fl_corpus_free(&c);
    return 0;
}
