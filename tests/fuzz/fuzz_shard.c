/*
 * tests/fuzz/fuzz_shard.c — a token shard's header and tokens.
 */
#include "fuzz_util.h"

#include "shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fl_shard s;
    fl_error err = {0};
    if (fl_shard_open(fuzz_file(data, n, ".bin"), &s, &err)) return 0;
    int32_t tok[16];
    uint64_t k = s.n_tokens < 16 ? s.n_tokens : 16;
    if (k) fl_shard_read(&s, s.n_tokens - k, k, tok); /* the last tokens lie inside the file */
    for (uint64_t i = 0; i < k; i++)
        if (tok[i] < 0 || (uint32_t)tok[i] >= s.vocab_size) abort(); /* checked at open */
    fl_shard_close(&s);
    return 0;
}
