/*
 * tests/test_prepare.c — corpus + tokenizer → train.bin / val.bin.
 *
 * A small tokenizer is trained on a generated corpus; preparing it must put
 * every document in exactly one shard, followed by <|endoftext|>, with the
 * validation documents chosen by the documented index rule (so the counts
 * are known in advance), decode back to the original documents, and give
 * byte-identical shards whatever the number of threads. A validation
 * fraction outside [0, 1) is refused.
 */
#include "support.h"

#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus.h"
#include "prepare.h"
#include "shard.h"
#include "storygen.h"
#include "tokenizer.h"

typedef struct fixture {
    char *dir;
    fl_corpus corpus;
    fl_tokenizer *tok;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    fl_error err = {0};
    char *text;
    size_t len;
    if (fl_storygen_text(11, 60000, &text, &len, &err) ||
        fl_corpus_parse(text, len, "<storygen>", &f->corpus, &err) ||
        fl_tokenizer_train(f->corpus.docs, f->corpus.lens, f->corpus.n_docs, 400, &f->tok, &err)) {
        print_message("setup: %s\n", err.msg);
        return -1;
    }
    free(text);
    f->dir = ts_tmpdir();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    ts_rmtree(f->dir);
    free(f->dir);
    fl_tokenizer_free(f->tok);
    fl_corpus_free(&f->corpus);
    free(f);
    return 0;
}

static int is_val(size_t i, double fr) { return floor((i + 1) * fr) > floor(i * fr); }

/* Tokens of document i (without the separator). */
static size_t doc_tokens(const fixture *f, size_t i) {
    int32_t *ids;
    size_t n;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_encode(f->tok, f->corpus.docs[i], f->corpus.lens[i], &ids, &n, &err),
                 &err);
    free(ids);
    return n;
}

static void open_shard(const char *dir, const char *name, fl_shard *s) {
    char path[8704];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fl_error err = {0};
    ts_assert_ok(fl_shard_open(path, s, &err), &err);
}

/* Decodes a shard document by document and checks them against the corpus
   documents that belong to this split, in order. */
static void check_split(const fixture *f, const fl_shard *s, double fr, int val) {
    int32_t *ids = malloc(s->n_tokens * sizeof *ids);
    fl_shard_read(s, 0, s->n_tokens, ids);
    int32_t eot = fl_tokenizer_eot(f->tok);
    size_t doc = 0, start = 0;
    for (uint64_t i = 0; i < s->n_tokens; i++) {
        if (ids[i] != eot) continue;
        while (doc < f->corpus.n_docs && is_val(doc, fr) != val) doc++;
        assert_true(doc < f->corpus.n_docs);
        size_t len;
        char *text = fl_tokenizer_decode(f->tok, ids + start, i - start, &len);
        if (len != f->corpus.lens[doc] || memcmp(text, f->corpus.docs[doc], len) != 0)
            fail_msg("%s shard: tokens %zu..%llu do not decode to corpus document %zu",
                     val ? "val" : "train", start, (unsigned long long)i, doc);
        free(text);
        doc++;
        start = i + 1;
    }
    assert_int_equal(start, s->n_tokens); /* the shard ends with a separator */
    while (doc < f->corpus.n_docs && is_val(doc, fr) != val) doc++;
    assert_int_equal(doc, f->corpus.n_docs); /* and no document of this split is missing */
    free(ids);
}

static void test_split_counts(void **state) {
    fixture *f = *state;
    const double fr = 0.1;
    uint64_t n_train = 0, n_val = 0, want_train = 0, want_val = 0;
    size_t val_docs = 0;
    for (size_t i = 0; i < f->corpus.n_docs; i++) {
        size_t n = doc_tokens(f, i) + 1;
        if (is_val(i, fr)) { want_val += n; val_docs++; }
        else want_train += n;
    }
    assert_int_equal(val_docs, (size_t)floor(f->corpus.n_docs * fr));
    fl_error err = {0};
    ts_assert_ok(fl_data_prepare(&f->corpus, f->tok, fr, f->dir, &n_train, &n_val, &err), &err);
    assert_int_equal(n_train, want_train);
    assert_int_equal(n_val, want_val);

    fl_shard tr, va;
    open_shard(f->dir, "train.bin", &tr);
    open_shard(f->dir, "val.bin", &va);
    assert_int_equal(tr.n_tokens, n_train);
    assert_int_equal(va.n_tokens, n_val);
    assert_int_equal(tr.vocab_size, (uint32_t)fl_tokenizer_vocab_size(f->tok));
    assert_int_equal(tr.token_bytes, 2);
    check_split(f, &tr, fr, 0);
    check_split(f, &va, fr, 1);
    fl_shard_close(&tr);
    fl_shard_close(&va);
}

static void test_no_validation(void **state) {
    fixture *f = *state;
    uint64_t n_train = 0, n_val = 1;
    fl_error err = {0};
    ts_assert_ok(fl_data_prepare(&f->corpus, f->tok, 0.0, f->dir, &n_train, &n_val, &err), &err);
    assert_int_equal(n_val, 0);
    fl_shard va;
    open_shard(f->dir, "val.bin", &va);
    assert_int_equal(va.n_tokens, 0);
    fl_shard_close(&va);
}

static void test_same_with_any_thread_count(void **state) {
    fixture *f = *state;
    char d1[4300], d2[4300], p1[4400], p2[4400];
    snprintf(d1, sizeof d1, "%s/t1", f->dir);
    snprintf(d2, sizeof d2, "%s/t4", f->dir);
    fl_error err = {0};
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    ts_assert_ok(fl_data_prepare(&f->corpus, f->tok, 0.05, d1, NULL, NULL, &err), &err);
    omp_set_num_threads(4);
    ts_assert_ok(fl_data_prepare(&f->corpus, f->tok, 0.05, d2, NULL, NULL, &err), &err);
    omp_set_num_threads(saved);
    const char *names[] = {"train.bin", "val.bin"};
    for (int i = 0; i < 2; i++) {
        snprintf(p1, sizeof p1, "%s/%s", d1, names[i]);
        snprintf(p2, sizeof p2, "%s/%s", d2, names[i]);
        size_t n1, n2;
        char *a = ts_read_file(p1, &n1), *b = ts_read_file(p2, &n2);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(n1, n2);
        assert_memory_equal(a, b, n1);
        free(a);
        free(b);
    }
}

static void test_bad_fraction(void **state) {
    fixture *f = *state;
    fl_error err = {0};
    assert_int_equal(fl_data_prepare(&f->corpus, f->tok, 1.0, f->dir, NULL, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "fraction"));
    assert_int_equal(fl_data_prepare(&f->corpus, f->tok, -0.1, f->dir, NULL, NULL, &err), FL_EINVAL);
    assert_int_equal(fl_data_prepare(&f->corpus, f->tok, NAN, f->dir, NULL, NULL, &err), FL_EINVAL);
}

/* The `ffnlab data` front end: generate → prepare, and the minimal pairs. */
static void test_cli(void **state) {
    fixture *f = *state;
    char cmd[20000], corpus[4300], tok[4300], out[4300], pairs[4300];
    snprintf(corpus, sizeof corpus, "%s/stories.txt", f->dir);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", f->dir);
    snprintf(out, sizeof out, "%s/shards", f->dir);
    snprintf(pairs, sizeof pairs, "%s/pairs", f->dir);
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_save(f->tok, tok, &err), &err);
    char *log = NULL;
    assert_int_equal(ts_ffnlab(&log, "data generate --out '%s' --bytes 30000 --seed 3", corpus), 0);
    free(log);
    if (ts_ffnlab(&log, "data prepare --corpus '%s' --tokenizer '%s' --out '%s' --val-fraction 0.2", corpus, tok, out))
        fail_msg("data prepare failed: %s", log);
    free(log);
    fl_shard s;
    open_shard(out, "train.bin", &s);
    assert_true(s.n_tokens > 1000);
    fl_shard_close(&s);
    open_shard(out, "val.bin", &s);
    assert_true(s.n_tokens > 100);
    fl_shard_close(&s);

    assert_int_equal(ts_ffnlab(&log, "data blimp --out '%s' --pairs 7", pairs), 0);
    free(log);
    snprintf(cmd, sizeof cmd, "%s/subject_verb_agreement_builtin.jsonl", pairs);
    size_t len;
    char *data = ts_read_file(cmd, &len);
    assert_non_null(data);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += data[i] == '\n';
    assert_int_equal(lines, 7);
    free(data);

    /* usage errors exit 2, failures exit 1 with one "ffnlab: error:" line */
    assert_int_equal(ts_ffnlab(NULL, "data prepare --corpus '%s'", corpus), 2);
    assert_int_equal(ts_ffnlab(&log, "data fetch nosuchset --dir '%s'", f->dir), 1);
    assert_non_null(strstr(log, "ffnlab: error: unknown data set 'nosuchset'"));
    free(log);
    assert_int_equal(ts_ffnlab(NULL, "data --help"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_split_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_with_any_thread_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_fraction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
