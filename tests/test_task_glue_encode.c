/*
 * tests/test_task_glue_encode.c — how the glue task lays out an example for
 * the model it fine-tunes (tasks/glue/glue.c, encode_example).
 *
 * Specification:
 *  - a decoder's example is <|endoftext|> a <|endoftext|> b (b absent: no
 *    second separator);
 *  - an encoder's (task ABI 2.1, arch bert) is RoBERTa's: <s> a </s>, and
 *    <s> a </s></s> b </s> for a pair, so the host's classifier reads <s>;
 *  - both cut the longer segment first until the whole fits max_len,
 *    counting their own special tokens;
 *  - a host of task ABI 2.0 (its table ends before arch) gets the decoder's
 *    layout whatever lies past its table.
 *
 * The services are a stub: encode maps each byte to its value, so the ids
 * read back as the text.
 */
#include "support.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../tasks/common/task_util.c"
#include "../tasks/glue/glue.c"
#include "../tasks/glue/glue_data.c"

enum { EOT = 300, BOS = 301, SEP = 302, PAD = 303, MASK = 304 };

static fl_status stub_encode(const fl_task_services *s, const char *text, size_t len, int32_t **ids, size_t *n,
                             fl_error *err) {
    (void)s, (void)err;
    *ids = malloc((len ? len : 1) * sizeof **ids);
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return FL_OK;
}

static void stub_free(void *p) { free(p); }

static fl_task_services stub(int arch, uint32_t size) {
    fl_task_services s = {.size = size, .eot = EOT, .encode = stub_encode, .free = stub_free, .arch = arch,
                          .bos = BOS, .sep = SEP, .pad = PAD, .mask = MASK};
    return s;
}

/* The example's ids written as text: bytes as themselves, specials by name. */
static void layout(const fl_task_services *svc, const char *a, const char *b, int32_t max_len, char *out, size_t n) {
    tu_seqs s;
    fl_error err = {0};
    ts_assert_ok(tu_seqs_init(&s, &err), &err);
    glue_example e = {.a = (char *)a, .b = (char *)b, .label = 0};
    ts_assert_ok(encode_example(svc, &e, max_len, &s, &err), &err);
    assert_int_equal(s.n, 1);
    size_t k = 0;
    out[0] = 0;
    for (int64_t i = 0; i < s.n_tokens && k < n; i++) {
        const int32_t t = s.tokens[i];
        const char *name = t == EOT ? "<eot>" : t == BOS ? "<s>" : t == SEP ? "</s>" : NULL;
        k += name ? (size_t)snprintf(out + k, n - k, "%s", name) : (size_t)snprintf(out + k, n - k, "%c", (char)t);
    }
    tu_seqs_free(&s);
}

static void test_decoder_layout(void **state) {
    (void)state;
    const fl_task_services svc = stub(FL_TASK_ARCH_GPT, sizeof(fl_task_services));
    char got[256];
    layout(&svc, "ab", "cd", 128, got, sizeof got);
    assert_string_equal(got, "<eot>ab<eot>cd");
    layout(&svc, "ab", NULL, 128, got, sizeof got);
    assert_string_equal(got, "<eot>ab");
    layout(&svc, "abcdefgh", "xyz", 8, got, sizeof got); /* 2 separators + 6 words: a cut to 3 */
    assert_string_equal(got, "<eot>abc<eot>xyz");
}

static void test_encoder_layout(void **state) {
    (void)state;
    const fl_task_services svc = stub(FL_TASK_ARCH_BERT, sizeof(fl_task_services));
    char got[256];
    layout(&svc, "ab", "cd", 128, got, sizeof got);
    assert_string_equal(got, "<s>ab</s></s>cd</s>");
    layout(&svc, "ab", NULL, 128, got, sizeof got);
    assert_string_equal(got, "<s>ab</s>");
    layout(&svc, "abcdefgh", "xyz", 10, got, sizeof got); /* 4 specials + 6 words */
    assert_string_equal(got, "<s>abc</s></s>xyz</s>");
    layout(&svc, "abcdefgh", NULL, 5, got, sizeof got);
    assert_string_equal(got, "<s>abc</s>");
}

static void test_abi_20_host_gets_the_decoder_layout(void **state) {
    (void)state;
    const fl_task_services svc = stub(FL_TASK_ARCH_BERT, (uint32_t)offsetof(fl_task_services, arch));
    char got[256];
    layout(&svc, "ab", "cd", 128, got, sizeof got);
    assert_string_equal(got, "<eot>ab<eot>cd");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_layout),
        cmocka_unit_test(test_encoder_layout),
        cmocka_unit_test(test_abi_20_host_gets_the_decoder_layout),
    };
    return cmocka_run_group_tests_name("glue encoding", tests, NULL, NULL);
}
