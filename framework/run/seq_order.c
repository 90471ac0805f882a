/*
 * run/seq_order.c — token sequences longest first (see seq_order.h).
 */
#include "seq_order.h"

#include <stdlib.h>

static int longer_first(const void *a, const void *b, void *ctx) {
    const fl_token_seqs *s = ctx;
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b, lx = fl_seq_len(s, x), ly = fl_seq_len(s, y);
    return lx != ly ? (lx < ly) - (lx > ly) : (x > y) - (x < y);
}

int64_t *fl_seqs_longest_first(const fl_token_seqs *s) {
    int64_t *order = malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof *order);
    if (!order) return NULL;
    for (int64_t i = 0; i < s->n; i++) order[i] = i;
    qsort_r(order, (size_t)s->n, sizeof *order, longer_first, (void *)s);
    return order;
}
