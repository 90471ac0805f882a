/*
 * tests/test_corpus.c — reading corpora: plain text and JSON Lines.
 *
 * Checks the TinyStories layout (separator lines, optional trailing
 * separator, CRLF, blank documents dropped, a UTF-8 byte-order mark at the
 * start dropped in both formats), JSON Lines (blank lines skipped, a bad line
 * named by number: broken JSON, bytes after the object, a key twice, a raw
 * control character in a string, \u0000), the UTF-8 validator on its edge cases
 * (overlongs, surrogates, past U+10FFFF, truncated sequences), that errors
 * name file, line and byte offset, that an empty corpus is an error, and that
 * the real TinyStories sample splits into its 2,316 stories.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus.h"

static void assert_doc(const fl_corpus *c, size_t i, const char *want) {
    if (i >= c->n_docs) fail_msg("doc %zu missing (only %zu)", i, c->n_docs);
    size_t n = strlen(want);
    if (c->lens[i] != n || memcmp(c->docs[i], want, n) != 0)
        fail_msg("doc %zu is \"%.*s\", want \"%s\"", i, (int)c->lens[i], c->docs[i], want);
}

static void assert_msg_has(const fl_error *err, const char *want) {
    if (!strstr(err->msg, want)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
}

static void parse_ok(const char *text, fl_corpus *c) {
    fl_error err = {0};
    ts_assert_ok(fl_corpus_parse(text, strlen(text), "t.txt", c, &err), &err);
}

static void parse_fails(const char *text, size_t len, const char *path, const char *want1,
                        const char *want2) {
    fl_corpus c;
    fl_error err = {0};
    fl_status st = fl_corpus_parse(text, len, path, &c, &err);
    if (st != FL_EINVAL) fail_msg("status %d, want FL_EINVAL (msg: %s)", (int)st, err.msg);
    assert_msg_has(&err, want1);
    if (want2) assert_msg_has(&err, want2);
}

static void test_plain_text(void **state) {
    (void)state;
    fl_corpus c;
    parse_ok("One day, Lily ran.\nShe was happy.\n<|endoftext|>\nTom sang.\n<|endoftext|>\n", &c);
    assert_int_equal(c.n_docs, 2);
    assert_doc(&c, 0, "One day, Lily ran.\nShe was happy.");
    assert_doc(&c, 1, "Tom sang.");
    assert_int_equal(c.bytes, strlen("One day, Lily ran.\nShe was happy.") + strlen("Tom sang."));
    fl_corpus_free(&c);
}

static void test_plain_text_edges(void **state) {
    (void)state;
    fl_corpus c;
    /* no trailing separator; blank and whitespace-only documents dropped;
       blank lines around a story trimmed, a paragraph break inside it kept;
       a line merely containing the marker is text, not a separator */
    parse_ok("<|endoftext|>\n  \n<|endoftext|>\n \nA.\n\nB.\n\n<|endoftext|>\n"
             "say <|endoftext|> now\nC.", &c);
    assert_int_equal(c.n_docs, 2);
    assert_doc(&c, 0, "A.\n\nB.");
    assert_doc(&c, 1, "say <|endoftext|> now\nC.");
    fl_corpus_free(&c);
}

static void test_crlf(void **state) {
    (void)state;
    fl_corpus a, b;
    parse_ok("First line.\r\nSecond.\r\n<|endoftext|>\r\nNext story.\r\n<|endoftext|>\r\n", &a);
    parse_ok("First line.\nSecond.\n<|endoftext|>\nNext story.\n<|endoftext|>\n", &b);
    assert_int_equal(a.n_docs, 2);
    assert_int_equal(b.n_docs, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(a.lens[i], b.lens[i]);
        assert_memory_equal(a.docs[i], b.docs[i], a.lens[i]);
    }
    assert_doc(&a, 0, "First line.\nSecond.");
    fl_corpus_free(&a);
    fl_corpus_free(&b);
}

static void test_jsonl(void **state) {
    (void)state;
    fl_corpus c;
    parse_ok("{\"text\": \"Hello \\u00e9t\\u00e9.\\nBye.\", \"id\": 1}\n\n   \n"
             "{\"id\": 2, \"text\": \"Second\"}\r\n{\"text\": \"\"}\n", &c);
    assert_int_equal(c.n_docs, 2); /* the empty text is dropped */
    assert_doc(&c, 0, "Hello \xc3\xa9t\xc3\xa9.\nBye.");
    assert_doc(&c, 1, "Second");
    fl_corpus_free(&c);
}

static void test_jsonl_bad_lines(void **state) {
    (void)state;
    const char *broken = "{\"text\": \"ok\"}\n\n{\"text\": \"oops\"\n";
    parse_fails(broken, strlen(broken), "c.jsonl", "c.jsonl:3:", "JSON");
    const char *notext = "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n";
    parse_fails(notext, strlen(notext), "c.jsonl", "c.jsonl:2:", "\"text\"");
    const char *number = "{\"text\": 5}\n";
    parse_fails(number, strlen(number), "c.jsonl", "c.jsonl:1:", "\"text\"");
    const char *array = "{\"text\": \"a\"}\n[1, 2]\n";
    parse_fails(array, strlen(array), "c.jsonl", "c.jsonl:2:", "object");
    /* what cJSON lets through */
    const char *trailing = "{\"text\": \"a\"} {\"text\": \"b\"}\n";
    parse_fails(trailing, strlen(trailing), "c.jsonl", "c.jsonl:1:", "unexpected bytes after the JSON value at byte 14");
    const char *dup = "{\"text\": \"a\"}\n{\"text\": \"b\", \"text\": \"c\"}\n";
    parse_fails(dup, strlen(dup), "c.jsonl", "c.jsonl:2: duplicate key \"text\"", NULL);
    const char *ctl = "{\"text\": \"a\"}\n{\"text\": \"b\tc\"}\n";
    parse_fails(ctl, strlen(ctl), "c.jsonl", "c.jsonl:2: raw control character 0x09 in a string at byte 25", NULL);
    const char *nul = "{\"text\": \"cut\\u0000here\"}\n";
    parse_fails(nul, strlen(nul), "c.jsonl", "c.jsonl:1: \\u0000", NULL);
}

/* A byte-order mark is no text: the first story does not start with EF BB
   BF, a BOM'd JSON Lines file is still JSON Lines, and byte offsets in
   messages stay the file's. */
static void test_bom(void **state) {
    (void)state;
    fl_corpus c;
    parse_ok("\xEF\xBB\xBFOnce upon a time.\n<|endoftext|>\nThe end.\n", &c);
    assert_int_equal(c.n_docs, 2);
    assert_doc(&c, 0, "Once upon a time.");
    fl_corpus_free(&c);
    parse_ok("\xEF\xBB\xBF{\"text\": \"Once.\"}\n", &c);
    assert_int_equal(c.n_docs, 1);
    assert_doc(&c, 0, "Once.");
    fl_corpus_free(&c);
    const char bad[] = "\xEF\xBB\xBFOnce \xff.\n";
    parse_fails(bad, sizeof bad - 1, "b.txt", "b.txt:1: invalid UTF-8 at byte 8", NULL);
}

static void test_utf8_check(void **state) {
    (void)state;
    struct { const char *s; size_t bad; } cases[] = {
        {"plain ascii text that is long enough for the fast path", (size_t)-1},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", (size_t)-1}, /* é € 😀 U+10FFFF */
        {"ab\xc0\xaf", 2},               /* overlong '/' */
        {"ab\xc1\xbf", 2},               /* overlong */
        {"ab\xe0\x80\xaf", 2},           /* overlong 3-byte */
        {"ab\xf0\x80\x80\xaf", 2},       /* overlong 4-byte */
        {"ab\xed\xa0\x80", 2},           /* surrogate U+D800 */
        {"ab\xed\xbf\xbf", 2},           /* surrogate U+DFFF */
        {"ab\xf4\x90\x80\x80", 2},       /* U+110000 */
        {"ab\xf5\x80\x80\x80", 2},       /* lead byte past range */
        {"ab\x80 stray continuation", 2},
        {"abc\xe2\x82", 3},              /* cut off at the end */
        {"abc\xe2\x82x", 3},             /* continuation missing */
        {"12345678901234567\xff", 17},   /* after the 8-byte fast path */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].s);
        size_t want = cases[i].bad == (size_t)-1 ? n : cases[i].bad;
        size_t got = fl_utf8_check(cases[i].s, n);
        if (got != want) fail_msg("case %zu: got %zu, want %zu", i, got, want);
    }
}

static void test_invalid_utf8_message(void **state) {
    (void)state;
    const char text[] = "Line one.\nLine two.\nBad \xc0\xaf here.\n<|endoftext|>\n";
    /* byte offset of \xc0: 10 + 10 + 4 = 24, on line 3 */
    parse_fails(text, sizeof text - 1, "s.txt", "s.txt:3:", "invalid UTF-8 at byte 24");
    const char jl[] = "{\"text\": \"ok\"}\n{\"text\": \"x\xed\xa0\x80\"}\n";
    /* second line starts at 15; the surrogate is 11 bytes in */
    parse_fails(jl, sizeof jl - 1, "s.jsonl", "s.jsonl:2:", "invalid UTF-8 at byte 26");
}

static void test_empty_corpus(void **state) {
    (void)state;
    static const char *const EMPTY[] = {"", "\n \n<|endoftext|>\n\n<|endoftext|>\n", "\n\n  \n",
                                        "{\"text\": \"  \"}\n"};
    for (size_t i = 0; i < sizeof EMPTY / sizeof EMPTY[0]; i++)
        parse_fails(EMPTY[i], strlen(EMPTY[i]), "e.txt", "e.txt: empty corpus (no documents)", NULL);
}

static void test_read_file(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/c.jsonl", dir);
    const char *data = "{\"text\": \"one\"}\n{\"text\": \"two\"}";
    assert_int_equal(ts_write_file(path, data, strlen(data)), 0);
    fl_corpus c;
    fl_error err = {0};
    ts_assert_ok(fl_corpus_read(path, &c, &err), &err);
    assert_int_equal(c.n_docs, 2);
    assert_doc(&c, 1, "two");
    fl_corpus_free(&c);

    snprintf(path, sizeof path, "%s/empty.txt", dir);
    assert_int_equal(ts_write_file(path, "", 0), 0);
    assert_int_equal(fl_corpus_read(path, &c, &err), FL_EINVAL);
    assert_msg_has(&err, "empty corpus");

    snprintf(path, sizeof path, "%s/missing.txt", dir);
    assert_int_equal(fl_corpus_read(path, &c, &err), FL_EIO);
    assert_msg_has(&err, "missing.txt");
    ts_rmtree(dir);
    free(dir);
}

static void test_tinystories_sample(void **state) {
    (void)state;
    char path[4096];
    if (!ts_shared_data("tinystories/TinyStories-train.first2MiB.txt", path, sizeof path)) {
        print_message("TinyStories sample not present; skipping\n");
        skip();
    }
    fl_corpus c;
    fl_error err = {0};
    ts_assert_ok(fl_corpus_read(path, &c, &err), &err);
    assert_int_equal(c.n_docs, 2316);
    const char *first = "One day, a little girl named Lily found a needle in her room.";
    assert_true(c.lens[0] > strlen(first));
    assert_memory_equal(c.docs[0], first, strlen(first));
    for (size_t i = 0; i < c.n_docs; i++) {
        assert_true(c.lens[i] > 0);
        /* the blank lines around separators are not part of a story */
        assert_false(c.docs[i][0] == '\n' || c.docs[i][0] == ' ');
        assert_false(c.docs[i][c.lens[i] - 1] == '\n' || c.docs[i][c.lens[i] - 1] == ' ');
        assert_null(memmem(c.docs[i], c.lens[i], "<|endoftext|>", 13));
    }
    fl_corpus_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text),
        cmocka_unit_test(test_plain_text_edges),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_jsonl_bad_lines),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_utf8_check),
        cmocka_unit_test(test_invalid_utf8_message),
        cmocka_unit_test(test_empty_corpus),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_tinystories_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
