/*
 * tests/test_task_blimp_data.c — the BLiMP readers (tasks/blimp/blimp_data.c).
 *
 * Specification:
 *  - the release layout: one paradigm per file, UID/field/linguistics_term
 *    read; "syntax/semantics" becomes syntax_semantics; s-selection and
 *    filler_gap_dependency are grouped as BabyLM 2023 groups them; files that
 *    are not .jsonl/.json are ignored;
 *  - the BabyLM 2023 layout (several UIDs in one <phenomenon>.json) gives the
 *    same paradigm and phenomenon names;
 *  - supplement files (no UID) are one task each, newlines inside strings kept;
 *  - a malformed line stops with FILE:LINE (on_error=stop); with skip every
 *    malformed line is counted and the good ones kept — nothing silently lost;
 *    a line is malformed when cJSON cannot parse it, when it is not an object
 *    with both sentences, or when it breaks a rule of RFC 8259 that cJSON
 *    lets through (a key twice: named; a raw control character or invalid
 *    UTF-8 in a string: the byte offset in the file); blank lines, a trailing
 *    one included, are skipped as the corpus reader skips them;
 *  - an empty file is an error (stop) or counted (skip); a BOM and CRLF are
 *    accepted, a last line without newline counts;
 *  - the paradigm filter keeps only the named UIDs (or file stems);
 *  - when shared/data is present: every real BLiMP file reads without a single
 *    skipped line and gives the row counts shared/data/README.md states.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tasks/blimp/blimp_data.c"
#include "../tasks/common/task_util.c"

#define FIX FFNLAB_TEST_SOURCE_DIR "/fixtures/tasks/blimp"

static int64_t count_in(const blimp_set *s, const tu_strtab *t, const char *name, int which) {
    int id = tu_strtab_find(t, name);
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++) {
        const blimp_pair *p = &s->pairs[i];
        int v = which == 0 ? p->paradigm : which == 1 ? p->phenomenon : p->field;
        n += id >= 0 && v == id;
    }
    return n;
}

static void test_release_layout(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, FIX "/release", 0, 0, NULL, &err), &err);
    assert_int_equal(s.n, 6);
    assert_int_equal(s.files, 3); /* README.md is not data */
    assert_int_equal(count_in(&s, &s.paradigms, "anaphor_gender_agreement", 0), 2);
    assert_int_equal(count_in(&s, &s.phenomena, "argument_structure", 1), 3); /* s-selection */
    assert_int_equal(count_in(&s, &s.phenomena, "binding", 1), 1);
    assert_int_equal(count_in(&s, &s.fields, "syntax_semantics", 2), 1);
    assert_int_equal(s.skipped_lines, 0);
    assert_string_equal(s.pairs[0].good, "Katherine can't help herself.");
    assert_string_equal(s.pairs[0].bad, "Katherine can't help himself.");
    blimp_set_free(&s);
}

static void test_babylm_layout(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, FIX "/babylm", 0, 0, NULL, &err), &err);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.paradigms.n, 4);
    assert_int_equal(count_in(&s, &s.phenomena, "argument_structure", 1), 2);
    assert_int_equal(count_in(&s, &s.phenomena, "filler_gap", 1), 2);
    assert_int_equal(s.phenomena.n, 2);
    blimp_set_free(&s);
}

static void test_supplement(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, FIX "/supplement", 1, 0, NULL, &err), &err);
    assert_int_equal(s.n, 3);
    assert_int_equal(count_in(&s, &s.paradigms, "turn_taking", 0), 2);
    assert_int_equal(count_in(&s, &s.paradigms, "hypernym", 0), 1);
    for (int64_t i = 0; i < s.n; i++) assert_int_equal(s.pairs[i].supplement, 1);
    assert_non_null(strchr(s.pairs[1].good, '\n'));
    blimp_set_free(&s);
}

static void test_malformed_stop_names_file_and_line(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    assert_int_equal(blimp_read_path(&s, FIX "/malformed", 0, 0, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "malformed/sv.jsonl:2: not valid JSON"));
    blimp_set_free(&s);
}

static void test_malformed_skip_counts_every_line(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, FIX "/malformed", 0, 1, NULL, &err), &err);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.skipped_lines, 6); /* line 5 and the last are blank: skipped, not malformed */
    assert_int_equal(s.n_notes, BLIMP_MAX_NOTES); /* the first 5 messages are kept */
    assert_non_null(strstr(s.notes[0], "sv.jsonl:2:"));
    assert_non_null(strstr(s.notes[1], "sv.jsonl:4: sentence_bad is missing"));
    assert_non_null(strstr(s.notes[2], "sv.jsonl:6: not a JSON object"));
    assert_non_null(strstr(s.notes[3], "sv.jsonl:7: duplicate key \"sentence_good\""));
    assert_non_null(strstr(s.notes[4], "sv.jsonl:8: raw control character 0x09 in a string at byte 766"));
    blimp_set_free(&s);
    /* on_error=stop names the line and the byte of the file */
    char *dir = ts_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    const char text[] = "\n{\"sentence_good\": \"A \xff.\", \"sentence_bad\": \"B.\"}\n";
    assert_int_equal(ts_write_file(path, text, sizeof text - 1), 0);
    assert_int_equal(blimp_read_path(&s, path, 0, 0, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "bad.jsonl:2: invalid UTF-8 in a string at byte 22"));
    blimp_set_free(&s);
    ts_rmtree(dir);
    free(dir);
}

static void test_empty_file(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    assert_int_equal(blimp_read_path(&s, FIX "/empty", 0, 0, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "nothing.jsonl: empty file"));
    blimp_set_free(&s);
    ts_assert_ok(blimp_read_path(&s, FIX "/empty", 0, 1, NULL, &err), &err);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.empty_files, 1);
    blimp_set_free(&s);
    char *dir = ts_tmpdir();
    assert_int_equal(blimp_read_path(&s, dir, 0, 0, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "no .jsonl or .json files"));
    assert_int_equal(blimp_read_path(&s, "/nonexistent/blimp", 0, 0, NULL, &err), FL_EIO);
    ts_rmtree(dir);
    free(dir);
}

static void test_bom_and_crlf(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, FIX "/crlf/bom.jsonl", 0, 0, NULL, &err), &err);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.pairs[0].good, "I see two cats.");
    assert_string_equal(s.pairs[1].bad, "These dog runs.");
    blimp_set_free(&s);
}

static void test_paradigm_filter(void **state) {
    (void)state;
    fl_error err = {0};
    blimp_set s = {0};
    tu_list only;
    ts_assert_ok(tu_list_split("principle_A_case_2|animate_subject_trans", &only, &err), &err);
    ts_assert_ok(blimp_read_path(&s, FIX "/release", 0, 0, &only, &err), &err);
    assert_int_equal(s.n, 4);
    assert_int_equal(count_in(&s, &s.paradigms, "anaphor_gender_agreement", 0), 0);
    blimp_set_free(&s);
    tu_list_free(&only);
    ts_assert_ok(tu_list_split("filler_gap", &only, &err), &err); /* a BabyLM file stem */
    ts_assert_ok(blimp_read_path(&s, FIX "/babylm", 0, 0, &only, &err), &err);
    assert_int_equal(s.n, 2);
    blimp_set_free(&s);
    tu_list_free(&only);
}

/* ---- the real data, when present ---- */

static int64_t read_count(const char *rel, int supplement) {
    char path[4096];
    if (!ts_shared_data(rel, path, sizeof path)) return -1;
    fl_error err = {0};
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, path, supplement, 0, NULL, &err), &err);
    assert_int_equal(s.skipped_lines, 0);
    int64_t n = s.n;
    blimp_set_free(&s);
    return n;
}

static void test_shared_data_blimp(void **state) {
    (void)state;
    char path[4096];
    if (!ts_shared_data("blimp", path, sizeof path)) skip(); /* shared/data absent: nothing to check */
    fl_error err = {0};
    blimp_set s = {0};
    ts_assert_ok(blimp_read_path(&s, path, 0, 0, NULL, &err), &err);
    assert_int_equal(s.n, 67000);
    assert_int_equal(s.files, 67);
    assert_int_equal(s.paradigms.n, 67);
    assert_int_equal(s.phenomena.n, 12); /* BabyLM's grouping of the 13 linguistics_term values */
    for (int i = 0; i < s.paradigms.n; i++) assert_int_equal(count_in(&s, &s.paradigms, s.paradigms.names[i], 0), 1000);
    assert_int_equal(count_in(&s, &s.fields, "syntax_semantics", 2), 14000);
    blimp_set_free(&s);
    assert_int_equal(read_count("blimp_filtered", 0), 59875);
    /* BabyLM 2023: one file per phenomenon; the README's line counts */
    static const struct { const char *file; int64_t lines; } bl[] = {
        {"anaphor_agreement", 1956}, {"argument_structure", 8248}, {"binding", 6738}, {"control_raising", 4526},
        {"determiner_noun_agreement", 7542}, {"ellipsis", 1732}, {"filler_gap", 6426}, {"irregular_forms", 1965},
        {"island_effects", 2676}, {"npi_licensing", 6586}, {"quantifiers", 3882}, {"subject_verb_agreement", 5535}};
    int64_t total = 0;
    for (size_t i = 0; i < sizeof bl / sizeof bl[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "babylm2023/blimp_filtered/%s.json", bl[i].file);
        assert_int_equal(read_count(rel, 0), bl[i].lines);
        total += bl[i].lines;
    }
    ts_assert_ok(blimp_read_path(&s, strcat(path, "/../babylm2023/blimp_filtered"), 0, 0, NULL, &err), &err);
    assert_int_equal(s.n, total);
    assert_int_equal(s.phenomena.n, 12);
    blimp_set_free(&s);
    static const struct { const char *file; int64_t lines; } sup[] = {
        {"hypernym", 860}, {"qa_congruence_easy", 64}, {"qa_congruence_tricky", 165},
        {"subject_aux_inversion", 4099}, {"turn_taking", 280}};
    for (size_t i = 0; i < sizeof sup / sizeof sup[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "babylm2023/supplement_filtered/%s.json", sup[i].file);
        assert_int_equal(read_count(rel, 1), sup[i].lines);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_layout),
        cmocka_unit_test(test_babylm_layout),
        cmocka_unit_test(test_supplement),
        cmocka_unit_test(test_malformed_stop_names_file_and_line),
        cmocka_unit_test(test_malformed_skip_counts_every_line),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_bom_and_crlf),
        cmocka_unit_test(test_paradigm_filter),
        cmocka_unit_test(test_shared_data_blimp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
