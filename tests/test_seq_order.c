/*
 * tests/test_seq_order.c — fl_seqs_longest_first (run/seq_order.h), the
 * order batched scoring and fine-tuning visit token sequences in:
 *  - every index once, longest sequence first;
 *  - sequences of one length keep their index order (so a run's batches do
 *    not depend on the sort's implementation);
 *  - no sequences is an array of its own, not a lack of memory.
 */
#include <stdlib.h>

#include "seq_order.h"
#include "support.h"

static void test_longest_first_ties_in_index_order(void **state) {
    (void)state;
    /* lengths 3, 1, 3, 5, 1, 3 */
    static const int32_t tokens[16] = {0};
    static const int64_t offsets[] = {0, 3, 4, 7, 12, 13, 16};
    const fl_token_seqs s = {tokens, offsets, 6};
    int64_t *order = fl_seqs_longest_first(&s);
    assert_non_null(order);
    const int64_t want[] = {3, 0, 2, 5, 1, 4};
    for (int i = 0; i < 6; i++) assert_int_equal(order[i], want[i]);
    free(order);
}

static void test_no_sequences(void **state) {
    (void)state;
    static const int64_t offsets[] = {0};
    const fl_token_seqs s = {NULL, offsets, 0};
    int64_t *order = fl_seqs_longest_first(&s);
    assert_non_null(order);
    free(order);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_first_ties_in_index_order),
        cmocka_unit_test(test_no_sequences),
    };
    return cmocka_run_group_tests_name("seq_order", tests, NULL, NULL);
}
