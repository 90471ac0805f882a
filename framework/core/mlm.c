/*
 * core/mlm.c — RoBERTa's dynamic masking (see mlm.h).
 */
#include "mlm.h"

#include <stdlib.h>

#include "error.h"
#include "ffnlab/rng.h"

fl_status fl_mlm_init(fl_mlm *m, const fl_tokenizer *tok, int32_t vocab_size, double prob, fl_error *err) {
    *m = (fl_mlm){.eot = fl_tokenizer_eot(tok), .vocab_size = vocab_size, .prob = prob};
    fl_status st = fl_tokenizer_encoder_ids(tok, "the tokenizer", &m->ids, err);
    if (st) return st;
    m->special = calloc((size_t)vocab_size, 1);
    m->plain = malloc((size_t)vocab_size * sizeof *m->plain);
    if (!m->special || !m->plain) {
        fl_mlm_free(m);
        return fl_fail(err, FL_ENOMEM, "out of memory for the masking tables");
    }
    /* ids the tokenizer does not define (a model larger than its vocabulary)
       never appear in the data, so a random replacement never picks them */
    const int32_t n_tok = fl_tokenizer_vocab_size(tok);
    for (int32_t id = 0; id < vocab_size; id++) {
        m->special[id] = id >= n_tok || fl_tokenizer_is_special(tok, id);
        if (!m->special[id]) m->plain[m->n_plain++] = id;
    }
    if (!m->n_plain) {
        fl_mlm_free(m);
        return fl_fail(err, FL_EINVAL, "the tokenizer has no ordinary token to mask");
    }
    return FL_OK;
}

void fl_mlm_free(fl_mlm *m) {
    free(m->special);
    free(m->plain);
    m->special = NULL, m->plain = NULL;
}

uint64_t fl_mlm_train_key(uint64_t seed) { return fl_rng_key(seed, "mlm train"); }
uint64_t fl_mlm_val_key(uint64_t seed) { return fl_rng_key(seed, "mlm val"); }

/* One token at counter c: *x masked (or not), and its target. */
static int32_t mask_token(const fl_mlm *m, uint64_t key, uint64_t c, int32_t *x) {
    const int32_t orig = *x;
    if (m->special[orig] || fl_rng_uniform(key, 3 * c) >= m->prob) return -1;
    const float how = fl_rng_uniform(key, 3 * c + 1);
    if (how < 0.8f) *x = m->ids.mask;
    else if (how < 0.9f) *x = m->plain[fl_rng_bits(key, 3 * c + 2) % (uint64_t)m->n_plain];
    return orig;
}

void fl_mlm_batch(const fl_mlm *m, uint64_t key, uint64_t row0, int B, int T, int32_t *x, int32_t *y) {
    for (int b = 0; b < B; b++) {
        int32_t *xr = x + (int64_t)b * T, *yr = y + (int64_t)b * T;
        for (int t = T - 1; t > 0; t--) xr[t] = xr[t - 1] == m->eot ? m->ids.sep : xr[t - 1]; /* <s> + T-1 tokens */
        xr[0] = m->ids.bos;
        const uint64_t row = row0 + (uint64_t)b;
        for (int t = 0; t < T; t++) yr[t] = mask_token(m, key, row * (uint64_t)T + (uint64_t)t, &xr[t]);
    }
}

int64_t fl_mlm_count(const int32_t *y, int b0, int b1, int T) {
    int64_t n = 0;
    for (int64_t i = (int64_t)b0 * T; i < (int64_t)b1 * T; i++) n += y[i] >= 0;
    return n;
}
