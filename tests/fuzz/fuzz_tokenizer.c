/*
 * tests/fuzz/fuzz_tokenizer.c — a tokenizer.json (Hugging Face layout);
 * one the reader accepts encodes and decodes a sentence.
 */
#include "fuzz_util.h"

#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fl_tokenizer *t = NULL;
    fl_error err = {0};
    if (fl_tokenizer_load(fuzz_file(data, n, ".json"), &t, &err)) return 0;
    static const char text[] = "Once upon a time, a cat sat.<|endoftext|> caf\xc3\xa9 \xf0\x9f\x99\x82";
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!fl_tokenizer_encode(t, text, sizeof text - 1, &ids, &n_ids, &err)) {
        if (fl_tokenizer_check_ids(t, ids, n_ids, &err)) abort(); /* its own ids are known */
        size_t len = 0;
        free(fl_tokenizer_decode(t, ids, n_ids, &len));
    }
    free(ids);
    fl_tokenizer_free(t);
    return 0;
}
