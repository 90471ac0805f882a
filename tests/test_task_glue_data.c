/*
 * tests/test_task_glue_data.c — the (Super)GLUE readers and the metrics.
 *
 * Specification:
 *  - every file shape of the GLUE layout reads: headerless CoLA, headed TSVs
 *    (columns by name), a UTF-8 BOM, CRLF, a last line without newline; the
 *    JSONL subsets; SuperGLUE BoolQ (bool labels), nested MultiRC (one example
 *    per answer option), WSC (the pronoun marked *like this*);
 *  - TSV fields are split on tabs only: quotes are literal characters;
 *  - a row with the wrong column count, an unknown label, a header without
 *    the expected columns, an empty file, a JSON line with a key twice: one
 *    line naming FILE:LINE (and the key); with on_error=skip the bad row is
 *    counted, the rest kept; blank lines (only whitespace, a trailing one
 *    included) are skipped in TSV and JSONL files alike;
 *  - BabyLM 2023 files: hidden test labels (-1) are recognised; a split that
 *    mixes hidden and real labels is an error;
 *  - MCC, F1 and accuracy against hand-computed values, including the
 *    degenerate cases (no positives → F1 0; a constant prediction or a
 *    constant truth → MCC 0) and multi-class MCC;
 *  - when shared/data is present: every real GLUE / SuperGLUE / BabyLM file
 *    reads without a skipped line and gives the counts shared/data/README.md
 *    states (rows and label counts).
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tasks/common/task_util.c"
#include "../tasks/glue/glue_data.c"

#define FIX FFNLAB_TEST_SOURCE_DIR "/fixtures/tasks"

static glue_split read_ok(const char *task, const char *path) {
    fl_error err = {0};
    glue_split s;
    ts_assert_ok(glue_read(glue_find(task), path, 0, &s, &err), &err);
    return s;
}

static int64_t label_count(const glue_split *s, int label) {
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++) n += s->ex[i].label == label;
    return n;
}

/* ---- the GLUE layout ---- */

static void test_cola_headerless_quotes_literal(void **state) {
    (void)state;
    glue_split s = read_ok("cola", FIX "/glue/CoLA/train.tsv");
    assert_int_equal(s.n, 18);
    assert_null(s.ex[0].b);
    assert_string_equal(s.ex[2].a, "He said \"yes\" and left.");
    assert_string_equal(s.ex[3].a, "The \"book\" read quickly he.");
    assert_int_equal(s.ex[1].label, 0);
    assert_int_equal(label_count(&s, 1), 9);
    glue_split_free(&s);
    s = read_ok("cola", FIX "/glue/CoLA/dev.tsv"); /* no final newline */
    assert_int_equal(s.n, 6);
    assert_string_equal(s.ex[5].a, "Sat the cat the.");
    glue_split_free(&s);
}

static void test_sst2_and_mrpc(void **state) {
    (void)state;
    glue_split s = read_ok("sst2", FIX "/glue/SST-2/train.tsv");
    assert_int_equal(s.n, 16);
    assert_string_equal(s.ex[0].a, "a \"great\" film"); /* trailing space trimmed, quotes kept */
    glue_split_free(&s);
    s = read_ok("mrpc", FIX "/glue/MRPC/train.tsv"); /* BOM, CRLF */
    assert_int_equal(s.n, 12);
    assert_string_equal(s.ex[0].a, "Amrozi accused his brother, whom he called \"the witness\", of distorting his evidence.");
    assert_string_equal(s.ex[0].b, "Referring to him as only \"the witness\", Amrozi accused his brother of distorting his evidence.");
    assert_int_equal(s.ex[0].label, 1);
    assert_int_equal(s.ex[1].label, 0);
    glue_split_free(&s);
}

static void test_nli_labels(void **state) {
    (void)state;
    glue_split s = read_ok("rte", FIX "/glue/RTE/dev.tsv");
    assert_int_equal(s.n, 4);
    assert_int_equal(s.ex[0].label, 1); /* not_entailment */
    assert_int_equal(s.ex[1].label, 0);
    assert_string_equal(s.ex[0].b, "Christopher Reeve had an accident.");
    glue_split_free(&s);
    s = read_ok("mnli", FIX "/glue/MNLI/train_subset9k.jsonl");
    assert_int_equal(s.n, 12);
    assert_int_equal(label_count(&s, 0), 4);
    assert_int_equal(s.ex[2].label, 2);
    assert_string_equal(s.ex[1].b, "The cat may be old.");
    glue_split_free(&s);
    s = read_ok("qnli", FIX "/glue/QNLI/dev.tsv");
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ex[1].label, 1);
    glue_split_free(&s);
    s = read_ok("qqp", FIX "/glue/QQP/train_subset9k.jsonl"); /* labels as strings */
    assert_int_equal(label_count(&s, 1), 4);
    glue_split_free(&s);
}

static void test_superglue(void **state) {
    (void)state;
    glue_split s = read_ok("boolq", FIX "/glue/BoolQ/train.jsonl");
    assert_int_equal(s.n, 6);
    assert_int_equal(s.ex[0].label, 1); /* true */
    assert_string_equal(s.ex[0].a, "is the sky blue");
    assert_string_equal(s.ex[0].b, "Sky -- The sky is blue.");
    glue_split_free(&s);
    s = read_ok("multirc", FIX "/glue/MultiRC/train.jsonl");
    assert_int_equal(s.n, 5); /* one example per answer option */
    assert_string_equal(s.ex[0].a, "Tom has a red ball. He plays with it.");
    assert_string_equal(s.ex[0].b, "What color is the ball? Red");
    assert_int_equal(s.ex[1].label, 0);
    glue_split_free(&s);
    s = read_ok("wsc", FIX "/glue/WSC/train.jsonl");
    assert_int_equal(s.n, 4);
    assert_non_null(strstr(s.ex[0].a, "his book. *He* should"));
    assert_string_equal(s.ex[0].b, "Mark");
    assert_int_equal(s.ex[1].label, 1);
    glue_split_free(&s);
    s = read_ok("wsc", FIX "/glue/WSC/val.jsonl");
    assert_string_equal(s.ex[0].a, "The trophy does not fit in the suitcase because *it* is too big.");
    glue_split_free(&s);
}

/* ---- broken files ---- */

static void expect_error(const char *task, const char *path, int skip, const char *msg) {
    fl_error err = {0};
    glue_split s;
    assert_int_not_equal(glue_read(glue_find(task), path, skip, &s, &err), FL_OK);
    if (!strstr(err.msg, msg)) fail_msg("expected \"%s\" in: %s", msg, err.msg);
}

static void test_broken_files(void **state) {
    (void)state;
    expect_error("rte", FIX "/glue_bad/columns/RTE/train.tsv", 0, "columns/RTE/train.tsv:3: expected 4 tab-separated columns, found 3");
    expect_error("rte", FIX "/glue_bad/label/RTE/train.tsv", 0, "train.tsv:2: label \"maybe\" is not one of entailment|not_entailment");
    expect_error("rte", FIX "/glue_bad/empty/RTE/train.tsv", 0, "empty file (expected a header line)");
    expect_error("rte", FIX "/glue_bad/header/RTE/train.tsv", 0, "train.tsv:1: the header has no column \"sentence1\"");
    expect_error("rte", FIX "/glue_bad/label/RTE/train.tsv", 1, "no examples (every line was malformed)");
    expect_error("rte", FIX "/babylm_glue/rte.validation.json", 0, "1 of 2 labels are -1");
    expect_error("rte", "/nonexistent/train.tsv", 0, "cannot open");
    fl_error err = {0};
    glue_split s;
    ts_assert_ok(glue_read(glue_find("rte"), FIX "/glue_bad/columns/RTE/train.tsv", 1, &s, &err), &err);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.skipped, 1);
    assert_non_null(strstr(s.notes[0], "train.tsv:3:"));
    glue_split_free(&s);

    expect_error("boolq", FIX "/glue_bad/jsonl/BoolQ/train.jsonl", 0, "BoolQ/train.jsonl:3: duplicate key \"label\"");
    ts_assert_ok(glue_read(glue_find("boolq"), FIX "/glue_bad/jsonl/BoolQ/train.jsonl", 1, &s, &err), &err);
    assert_int_equal(s.n, 1); /* the blank lines 2 and 4 are no examples and no errors */
    assert_int_equal(s.skipped, 1);
    glue_split_free(&s);
    s = read_ok("rte", FIX "/glue_bad/blank/RTE/train.tsv");
    assert_int_equal(s.n, 2);
    assert_int_equal(label_count(&s, 1), 1);
    glue_split_free(&s);
}

static void test_babylm_layout(void **state) {
    (void)state;
    glue_split s = read_ok("cola", FIX "/babylm_glue/cola.test.json");
    assert_int_equal(s.hidden, 1);
    assert_int_equal(s.n, 2);
    glue_split_free(&s);
    s = read_ok("cola", FIX "/babylm_glue/cola.train.json");
    assert_int_equal(s.hidden, 0);
    assert_int_equal(s.n, 8);
    glue_split_free(&s);
    s = read_ok("multirc", FIX "/babylm_glue/multirc.validation.json");
    assert_string_equal(s.ex[0].b, "Who reads? Ann");
    glue_split_free(&s);
    s = read_ok("wsc", FIX "/babylm_glue/wsc.train.json"); /* spans at the top level */
    assert_non_null(strstr(s.ex[0].a, "*He*"));
    glue_split_free(&s);
}

/* ---- metrics ---- */

static void test_metrics_by_hand(void **state) {
    (void)state;
    int32_t pred[] = {1, 1, 0, 0, 1, 0}, gold[] = {1, 0, 0, 0, 1, 1};
    /* tp 2, fp 1, tn 2, fn 1: MCC (2*2 - 1*1)/sqrt(3*3*3*3) = 1/3; F1 4/6 */
    assert_true(fabs(tu_mcc(pred, gold, 6, 2) - 1.0 / 3.0) < 1e-12);
    assert_true(fabs(tu_f1(pred, gold, 6) - 2.0 / 3.0) < 1e-12);
    assert_true(fabs(tu_accuracy(pred, gold, 6) - 4.0 / 6.0) < 1e-12);
    int32_t inv[] = {0, 1, 1, 1, 0, 0};
    assert_true(fabs(tu_mcc(inv, gold, 6, 2) + 1.0) < 1e-12);
    assert_true(fabs(tu_mcc(gold, gold, 6, 2) - 1.0) < 1e-12);
    /* degenerate */
    int32_t ones[] = {1, 1, 1, 1, 1, 1}, zeros[] = {0, 0, 0, 0, 0, 0};
    assert_true(tu_mcc(ones, gold, 6, 2) == 0.0);   /* constant prediction */
    assert_true(tu_mcc(pred, zeros, 6, 2) == 0.0);  /* constant truth */
    assert_true(tu_mcc(zeros, zeros, 6, 2) == 0.0); /* all one class */
    assert_true(tu_f1(zeros, zeros, 6) == 0.0);     /* no positives at all */
    assert_true(tu_f1(zeros, gold, 6) == 0.0);      /* none predicted */
    assert_true(fabs(tu_f1(ones, gold, 6) - 6.0 / 9.0) < 1e-12); /* tp 3, fp 3: 6/(6+3) */
    assert_true(tu_accuracy(pred, gold, 0) == 0.0);
    /* 3 classes: c 3, s 6, p = t = (2,2,2): (18 - 12) / (36 - 12) = 0.25 */
    int32_t p3[] = {0, 1, 2, 0, 1, 2}, g3[] = {0, 1, 2, 1, 2, 0};
    assert_true(fabs(tu_mcc(p3, g3, 6, 3) - 0.25) < 1e-12);
}

static void test_lists(void **state) {
    (void)state;
    fl_error err = {0};
    tu_list l;
    ts_assert_ok(tu_list_split(" cola| sst2 ,,rte|", &l, &err), &err);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[1], "sst2");
    assert_true(tu_list_has(&l, "rte"));
    tu_list_free(&l);
    ts_assert_ok(tu_list_split("", &l, &err), &err);
    assert_int_equal(l.n, 0);
    tu_list_free(&l);
}

/* ---- the real data, when present ---- */

static void check_file(const char *task, const char *rel, int64_t rows, int label, int64_t with_label) {
    char path[4096];
    assert_true(ts_shared_data(rel, path, sizeof path));
    glue_split s = read_ok(task, path);
    if (s.n != rows) fail_msg("%s: %lld examples, README says %lld", rel, (long long)s.n, (long long)rows);
    assert_int_equal(s.skipped, 0);
    if (label >= 0 && label_count(&s, label) != with_label)
        fail_msg("%s: %lld with label %d, README says %lld", rel, (long long)label_count(&s, label), label, (long long)with_label);
    glue_split_free(&s);
}

static void test_shared_data_glue(void **state) {
    (void)state;
    char path[4096];
    if (!ts_shared_data("glue", path, sizeof path)) skip(); /* shared/data absent: nothing to check */
    check_file("cola", "glue/CoLA/train.tsv", 8551, 1, 6023);
    check_file("cola", "glue/CoLA/dev.tsv", 1043, -1, 0);
    check_file("sst2", "glue/SST-2/train.tsv", 67349, 1, 37569);
    check_file("sst2", "glue/SST-2/dev.tsv", 872, -1, 0);
    check_file("mrpc", "glue/MRPC/train.tsv", 3668, 1, 2474);
    check_file("mrpc", "glue/MRPC/dev.tsv", 408, -1, 0);
    check_file("rte", "glue/RTE/train.tsv", 2490, -1, 0);
    check_file("rte", "glue/RTE/dev.tsv", 277, 0, 146);
    check_file("qnli", "glue/QNLI/dev.tsv", 5463, 0, 2702);
    check_file("qnli", "glue/QNLI/train_subset9k.jsonl", 8999, 0, 4523);
    check_file("qnli", "glue/QNLI/train_heldout1k.jsonl", 1000, -1, 0);
    check_file("mnli", "glue/MNLI/train_subset9k.jsonl", 8999, 0, 3061);
    check_file("mnli", "glue/MNLI/train_heldout1k.jsonl", 1000, -1, 0);
    check_file("qqp", "glue/QQP/train_subset9k.jsonl", 8999, 1, 3252);
    check_file("qqp", "glue/QQP/train_heldout1k.jsonl", 1000, -1, 0);
    check_file("boolq", "glue/BoolQ/val.jsonl", 3270, 1, 2033);
    check_file("multirc", "glue/MultiRC/train.jsonl", 27243, -1, 0);
    check_file("multirc", "glue/MultiRC/val.jsonl", 4848, -1, 0);
    check_file("wsc", "glue/WSC/train.jsonl", 554, 1, 259);
    check_file("wsc", "glue/WSC/val.jsonl", 104, 1, 38);
    /* BabyLM 2023 glue_filtered: every file, the README's line counts */
    static const struct { const char *file; int64_t lines; } bl[] = {
        {"boolq.test", 682}, {"boolq.train", 2072}, {"boolq.validation", 723}, {"cola.test", 1030},
        {"cola.train", 8164}, {"cola.validation", 1019}, {"mnli.test", 6577}, {"mnli.test_matched", 6577},
        {"mnli.test_mismatched", 6260}, {"mnli.validation_matched", 6562}, {"mnli.validation_mismatched", 6284},
        {"mnli_mismatched.test", 6260}, {"mrpc.test", 717}, {"mrpc.train", 1579}, {"mrpc.validation", 177},
        {"multirc.test", 1833}, {"multirc.validation", 913}, {"qnli.test", 2207}, {"qnli.validation", 2286},
        {"rte.test", 1141}, {"rte.train", 858}, {"rte.validation", 99}, {"sst2.test", 1028},
        {"sst2.validation", 508}, {"wsc.test", 86}, {"wsc.train", 487}, {"wsc.validation", 83}};
    for (size_t i = 0; i < sizeof bl / sizeof bl[0]; i++) {
        char rel[256], task[32];
        snprintf(rel, sizeof rel, "babylm2023/glue_filtered/%s.json", bl[i].file);
        snprintf(task, sizeof task, "%.*s", (int)strcspn(bl[i].file, "._"), bl[i].file);
        check_file(task, rel, bl[i].lines, -1, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cola_headerless_quotes_literal),
        cmocka_unit_test(test_sst2_and_mrpc),
        cmocka_unit_test(test_nli_labels),
        cmocka_unit_test(test_superglue),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_babylm_layout),
        cmocka_unit_test(test_metrics_by_hand),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_shared_data_glue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
