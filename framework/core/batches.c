/*
 * core/batches.c — training and validation windows (see batches.h).
 */
#include "batches.h"

#include "ffnlab/rng.h"

static void window(const fl_shard *s, uint64_t start, int T, int32_t *x, int32_t *y) {
    int32_t buf[T + 1];
    fl_shard_read(s, start, (uint64_t)T + 1, buf);
    for (int t = 0; t < T; t++) {
        x[t] = buf[t];
        y[t] = buf[t + 1];
    }
}

void fl_batch_train(const fl_shard *s, uint64_t seed, int64_t step, int B, int T, int32_t *x, int32_t *y) {
    uint64_t key = fl_rng_key(seed, "train batches");
    uint64_t span = s->n_tokens - (uint64_t)T; /* valid starts: [0, span) */
    for (int b = 0; b < B; b++) {
        uint64_t start = fl_rng_bits(key, (uint64_t)step * (uint64_t)B + (uint64_t)b) % span;
        window(s, start, T, x + (int64_t)b * T, y + (int64_t)b * T);
    }
}

void fl_batch_eval(const fl_shard *s, int i, int n_batches, int B, int T, int32_t *x, int32_t *y) {
    uint64_t span = s->n_tokens - (uint64_t)T;
    uint64_t n_windows = (uint64_t)n_batches * (uint64_t)B;
    for (int b = 0; b < B; b++) {
        uint64_t w = (uint64_t)i * (uint64_t)B + (uint64_t)b;
        uint64_t start = n_windows > 1 ? (w * (span - 1)) / (n_windows - 1) : 0;
        window(s, start, T, x + (int64_t)b * T, y + (int64_t)b * T);
    }
}
