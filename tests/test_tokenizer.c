/*
 * tests/test_tokenizer.c — the byte-level BPE tokenizer (text/tokenizer.h).
 *
 * What must hold, and how it is checked:
 * - decode(encode(x)) == x for any bytes: ASCII, multi-byte UTF-8, invalid
 *   UTF-8 of every kind (lone continuation bytes, truncated sequences,
 *   overlong forms, surrogates, 0xFF, NUL), the empty string, very long
 *   pieces, and a few hundred random byte strings.
 * - "<|endoftext|>" in text is one id, and never learned by training.
 * - An encoder's tokenizer (fl_tokenizer_train_special) has <s>, </s>,
 *   <pad>, <mask> as the last ids within the same vocabulary size, keeps
 *   every other token of the plain one but the last merges, survives a
 *   save/load, and never encodes them from text; the plain tokenizer and
 *   the committed fixture files (made before them) have none of them.
 * - Training is deterministic (same bytes twice, with 1 or 2 threads), breaks
 *   ties by the smaller pair of ids, never merges across pre-token pieces,
 *   and gives exactly the vocabulary size asked for.
 * - save -> load gives the same ids; a loaded file saves back byte-identical.
 * - Files from the Hugging Face library load and give the library's ids
 *   (fixtures from tests/reference/make_tokenizer_fixture.py, which also
 *   checked that the library reads ffnlab's files and agrees on their ids).
 * - Broken or foreign files fail with FL_EINVAL and a message naming the file
 *   (a vocab entry given twice: its key and line; bytes after the JSON).
 * - fl_tokenizer_check_ids names the ids a tokenizer lacks (out of range, or a
 *   hole in a foreign vocab); `tokenizer decode` of such ids says which and
 *   exits 1, printing nothing.
 * - encode is thread-safe on one tokenizer.
 * - `ffnlab tokenizer train|encode|decode` agree with the library calls (train
 *   --arch bert gives an encoder's tokenizer) and
 *   exit 1 on bad files, 2 on bad usage.
 * Apart from the command-line test, no corpus reader is used: the fixture
 * corpus is split here.
 */
#include "support.h"

#include <cjson/cJSON.h>  /* reading the id fixtures, making broken files */
#include <omp.h>          /* omp_set_num_threads: training with 1 and 2 threads */
#include <pthread.h>      /* concurrent encode */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

#define FIXTURES FFNLAB_TEST_SOURCE_DIR "/fixtures/tokenizer"

/* ---- helpers ------------------------------------------------------------ */

typedef struct docs {
    char *text;            /* owned */
    const char *ptr[64];
    size_t len[64];
    size_t n;
} docs;

/* The fixture corpus, split at "<|endoftext|>" lines. */
static void read_corpus(docs *d) {
    size_t len;
    d->text = ts_read_file(FIXTURES "/corpus.txt", &len);
    assert_non_null(d->text);
    d->n = 0;
    const char *sep = "\n" FL_EOT_TEXT "\n";
    char *p = d->text, *end = d->text + len;
    while (p < end && d->n < 64) {
        char *q = strstr(p, sep);
        size_t n = q ? (size_t)(q - p) : (size_t)(end - p);
        d->ptr[d->n] = p;
        d->len[d->n++] = n;
        p += n + (q ? strlen(sep) : 0);
    }
}

static fl_tokenizer *train_corpus(int32_t vocab) {
    docs d;
    read_corpus(&d);
    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_train(d.ptr, d.len, d.n, vocab, &tok, &err), &err);
    free(d.text);
    return tok;
}

static fl_tokenizer *load(const char *path) {
    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_load(path, &tok, &err), &err);
    return tok;
}

/* Encodes s[0..n), checks that decoding gives it back, returns the ids. */
static int32_t *roundtrip(const fl_tokenizer *tok, const char *s, size_t n, size_t *n_ids) {
    int32_t *ids = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_encode(tok, s, n, &ids, n_ids, &err), &err);
    size_t len = 0;
    char *back = fl_tokenizer_decode(tok, ids, *n_ids, &len);
    assert_non_null(back);
    if (len != n || memcmp(back, s, n)) fail_msg("round trip of %zu bytes gave %zu bytes back", n, len);
    assert_int_equal(back[len], 0);
    free(back);
    return ids;
}

static void assert_roundtrip(const fl_tokenizer *tok, const char *s, size_t n) {
    size_t k;
    free(roundtrip(tok, s, n, &k));
}

static void assert_msg_has(const fl_error *err, const char *a, const char *b) {
    if (a && !strstr(err->msg, a)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, a);
    if (b && !strstr(err->msg, b)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, b);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Suite state: one trained tokenizer and the library's, shared by tests. */
typedef struct suite {
    fl_tokenizer *trained;   /* ffnlab-trained on the fixture corpus, vocab 400 */
    fl_tokenizer *hf;        /* hf_tokenizer.json */
    char *dir;               /* scratch directory */
} suite;

static int setup(void **state) {
    suite *s = calloc(1, sizeof *s);
    s->trained = train_corpus(400);
    s->hf = load(FIXTURES "/hf_tokenizer.json");
    s->dir = ts_tmpdir();
    *state = s;
    return 0;
}

static int teardown(void **state) {
    suite *s = *state;
    fl_tokenizer_free(s->trained);
    fl_tokenizer_free(s->hf);
    ts_rmtree(s->dir);
    free(s->dir);
    free(s);
    return 0;
}

/* ---- round trips -------------------------------------------------------- */

static const char *const ASCII[] = {
    "Hello world", "Once upon a time, there was a little girl named Lily.",
    "  two leading, three trailing   ", "tabs\tand\nnewlines\r\n\n", "I'm sure they'll come; we've",
    "numbers 1234567890 3.14", "!!!???...", " ", "a", "\n"};

static void test_roundtrip_ascii(void **state) {
    suite *s = *state;
    for (size_t i = 0; i < sizeof ASCII / sizeof *ASCII; i++) {
        assert_roundtrip(s->trained, ASCII[i], strlen(ASCII[i]));
        assert_roundtrip(s->hf, ASCII[i], strlen(ASCII[i]));
    }
    /* Merges must do something on text like the corpus. */
    size_t n;
    const char *t = "Once upon a time, there was a little girl named Lily.";
    free(roundtrip(s->trained, t, strlen(t), &n));
    assert_true(n < strlen(t) * 2 / 3);
}

static void test_roundtrip_utf8(void **state) {
    suite *s = *state;
    const char *texts[] = {"Café naïve résumé Zürich",
                           "東京は日本の首都です。",
                           "한국어 Привет Γειά",
                           "🙂🎉👍🏽 🇫🇷 👨‍👩‍👧",
                           "\u00a0nbsp\u3000ideographic\u2028line",
                           "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010FFFF"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        assert_roundtrip(s->trained, texts[i], strlen(texts[i]));
        assert_roundtrip(s->hf, texts[i], strlen(texts[i]));
    }
}

static void test_roundtrip_invalid_utf8(void **state) {
    suite *s = *state;
    static const struct {
        const char *s;
        size_t n;
    } cases[] = {
        {"\x80", 1},                    /* lone continuation byte */
        {"abc\x80\xBF def", 9},         /* continuation bytes inside text */
        {"\xE2\x82", 2},                /* truncated 3-byte sequence */
        {"x\xF0\x9F\x99 y", 6},         /* truncated 4-byte sequence */
        {"\xFF\xFE\xFF", 3},            /* bytes never valid */
        {"a\0b\0\0c", 6},               /* NUL bytes */
        {"\xC0\x80 overlong", 10},      /* overlong NUL */
        {"\xED\xA0\x80 surrogate", 12}, /* UTF-16 surrogate */
        {"\xF4\x90\x80\x80 > U+10FFFF", 15},
        {"caf\xE9 latin-1", 12},
        {"\xE2\x82\xAC\xE2\x82 euro then cut", 20},
        {"<|endoftext|>\xFF<|endoftext|>", 27},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_roundtrip(s->trained, cases[i].s, cases[i].n);
        assert_roundtrip(s->hf, cases[i].s, cases[i].n);
    }
    /* An invalid byte is a piece of its own: one byte token. */
    size_t n;
    int32_t *ids = roundtrip(s->trained, "\xFF", 1, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 0xFF);   /* ffnlab numbers byte tokens by byte value */
    free(ids);
}

static void test_roundtrip_empty(void **state) {
    suite *s = *state;
    int32_t *ids = NULL;
    size_t n = 99, len = 99;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_encode(s->trained, "", 0, &ids, &n, &err), &err);
    assert_int_equal(n, 0);
    char *back = fl_tokenizer_decode(s->trained, ids, 0, &len);
    assert_non_null(back);
    assert_int_equal(len, 0);
    assert_string_equal(back, "");
    free(back);
    free(ids);
}

/* Random bytes, biased towards the interesting ones (spaces, high bytes,
   quotes, pieces of "<|endoftext|>"), from a fixed generator. */
static void test_roundtrip_random(void **state) {
    suite *s = *state;
    const char alphabet[] = " \t\n'aeAZ09.<|>\x80\xBF\xC3\xA9\xE2\xF0\x9F\xFF";
    uint64_t x = 88172645463325252ULL;
    char buf[300];
    for (int it = 0; it < 400; it++) {
        size_t n = 0;
        for (; n < (size_t)(it % 97) * 3; n++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[n] = (x >> 40) % 4 ? alphabet[(x >> 8) % (sizeof alphabet - 1)] : (char)(x >> 24);
        }
        if (it % 5 == 0) memcpy(buf + n / 2, FL_EOT_TEXT, n >= 14 ? 13 : 0);
        assert_roundtrip(s->trained, buf, n);
        assert_roundtrip(s->hf, buf, n);
    }
}

static void test_roundtrip_long_pieces(void **state) {
    suite *s = *state;
    size_t n = 200000;
    char *buf = malloc(n);
    const char fills[] = {' ', 'a', '1', '!', '\n'};
    for (size_t f = 0; f < sizeof fills; f++) {
        memset(buf, fills[f], n);
        assert_roundtrip(s->trained, buf, n);
    }
    for (size_t i = 0; i < n; i++) buf[i] = "ab "[i % 3];
    assert_roundtrip(s->hf, buf, n);
    free(buf);
}

/* ---- the special token -------------------------------------------------- */

static void test_eot(void **state) {
    suite *s = *state;
    int32_t eot = fl_tokenizer_eot(s->trained);
    assert_int_equal(eot, fl_tokenizer_vocab_size(s->trained) - 1);
    size_t n;
    int32_t *ids = roundtrip(s->trained, FL_EOT_TEXT, 13, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], eot);
    free(ids);
    ids = roundtrip(s->trained, "end." FL_EOT_TEXT "Once", 21, &n);
    int found = 0;
    for (size_t i = 0; i < n; i++) found += ids[i] == eot;
    assert_int_equal(found, 1);
    free(ids);
    /* Almost the special token is ordinary text. */
    ids = roundtrip(s->trained, "<|endoftext|", 12, &n);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(ids[i], eot);
    free(ids);
    /* The library's file puts it at id 0. */
    assert_int_equal(fl_tokenizer_eot(s->hf), 0);
}

/* ---- training ----------------------------------------------------------- */

static char *save_bytes(const fl_tokenizer *tok, const char *dir, const char *name, size_t *len) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_save(tok, path, &err), &err);
    char *data = ts_read_file(path, len);
    assert_non_null(data);
    return data;
}

static void test_train_deterministic(void **state) {
    suite *s = *state;
    size_t n1, n2, n3;
    char *a = save_bytes(s->trained, s->dir, "a.json", &n1);
    fl_tokenizer *again = train_corpus(400);
    char *b = save_bytes(again, s->dir, "b.json", &n2);
    int threads = omp_get_max_threads();
    omp_set_num_threads(threads > 1 ? 1 : 2);   /* the other thread count */
    fl_tokenizer *other = train_corpus(400);
    omp_set_num_threads(threads);
    char *c = save_bytes(other, s->dir, "c.json", &n3);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, c, n1);
    free(a);
    free(b);
    free(c);
    fl_tokenizer_free(again);
    fl_tokenizer_free(other);
}

static void test_train_vocab_size(void **state) {
    (void)state;
    const int32_t sizes[] = {257, 258, 300, 400, 450};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        fl_tokenizer *tok = train_corpus(sizes[i]);
        assert_int_equal(fl_tokenizer_vocab_size(tok), sizes[i]);
        assert_int_equal(fl_tokenizer_eot(tok), sizes[i] - 1);
        for (int32_t b = 0; b < 256; b++) {   /* ids 0..255 are the bytes */
            size_t len;
            char *t = fl_tokenizer_decode(tok, &b, 1, &len);
            assert_int_equal(len, 1);
            assert_int_equal((unsigned char)t[0], b);
            free(t);
        }
        fl_tokenizer_free(tok);
    }
    /* Too small for bytes + <|endoftext|>. */
    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    const char *doc = "hello";
    size_t len = 5;
    assert_int_equal(fl_tokenizer_train(&doc, &len, 1, 256, &tok, &err), FL_EINVAL);
    assert_null(tok);
    assert_msg_has(&err, "256", NULL);
    /* A corpus that runs out of pairs gives a smaller vocabulary. */
    ts_assert_ok(fl_tokenizer_train(&doc, &len, 1, 1000, &tok, &err), &err);
    assert_int_equal(fl_tokenizer_vocab_size(tok), 256 + 4 + 1);   /* 4 merges make "hello" */
    fl_tokenizer_free(tok);
}

/* Bytes of one id, as a NUL-terminated string (caller frees). */
static char *token_text(const fl_tokenizer *tok, int32_t id) {
    size_t len;
    char *t = fl_tokenizer_decode(tok, &id, 1, &len);
    assert_non_null(t);
    return t;
}

static void test_train_tie_break(void **state) {
    (void)state;
    /* Pieces "ab" and " cd": pairs (a,b), (' ',c), (c,d) all occur once.
       Smaller (left, right) first: (32,99) -> " c", then (97,98) -> "ab"
       (before (" c", d), whose left id is 256), then " cd". */
    const char *doc = "ab cd";
    size_t len = 5;
    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_train(&doc, &len, 1, 260, &tok, &err), &err);
    const char *want[] = {" c", "ab", " cd"};
    for (int i = 0; i < 3; i++) {
        char *t = token_text(tok, 256 + i);
        assert_string_equal(t, want[i]);
        free(t);
    }
    fl_tokenizer_free(tok);
    /* Frequency beats id order: (z, z) occurs 3 times, (' ', z) twice,
       (' ', a) and (a, b) once. */
    const char *docs2[] = {"zz zz zz ab"};
    size_t lens2[] = {strlen(docs2[0])};
    ts_assert_ok(fl_tokenizer_train(docs2, lens2, 1, 258, &tok, &err), &err);
    char *t = token_text(tok, 256);
    assert_string_equal(t, "zz");
    free(t);
    fl_tokenizer_free(tok);
}

static void test_train_piece_boundaries(void **state) {
    (void)state;
    /* "x y" repeated: the pair ("x", " ") spans two pieces and must never
       merge; "<|endoftext|>" must never be learned. */
    char text[4000] = "";
    for (int i = 0; i < 100; i++) strcat(text, "x y" FL_EOT_TEXT "x. ");
    const char *doc = text;
    size_t len = strlen(text);
    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_train(&doc, &len, 1, 400, &tok, &err), &err);
    int32_t eot = fl_tokenizer_eot(tok);
    for (int32_t id = 256; id < fl_tokenizer_vocab_size(tok); id++) {
        if (id == eot) continue;
        char *t = token_text(tok, id);
        if (strstr(t, "x ") || strchr(t, '<') || strchr(t, '|'))
            fail_msg("token %d \"%s\" crosses a piece boundary or learned the special token", id, t);
        free(t);
    }
    fl_tokenizer_free(tok);
}

/* ---- files -------------------------------------------------------------- */

static int32_t *encode(const fl_tokenizer *tok, const char *s, size_t *n) {
    int32_t *ids = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_encode(tok, s, strlen(s), &ids, n, &err), &err);
    return ids;
}

static void assert_same_ids(const fl_tokenizer *a, const fl_tokenizer *b, const char *s) {
    size_t na, nb;
    int32_t *ia = encode(a, s, &na), *ib = encode(b, s, &nb);
    assert_int_equal(na, nb);
    if (na) assert_memory_equal(ia, ib, na * sizeof *ia);
    free(ia);
    free(ib);
}

static void test_encoder_special_tokens(void **state) {
    suite *s = *state;
    docs d;
    read_corpus(&d);
    fl_tokenizer *enc = NULL, *plain = train_corpus(400);
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_train_special(d.ptr, d.len, d.n, 400, FL_ENCODER_SPECIALS, FL_N_ENCODER_SPECIALS, &enc,
                                            &err),
                 &err);
    assert_int_equal(fl_tokenizer_vocab_size(enc), 400);
    assert_int_equal(fl_tokenizer_eot(enc), 395);
    fl_special_ids ids;
    ts_assert_ok(fl_tokenizer_encoder_ids(enc, "enc", &ids, &err), &err);
    assert_true(ids.bos == 396 && ids.sep == 397 && ids.pad == 398 && ids.mask == 399);
    for (int32_t id = 256; id < 395; id++) { /* the same merges as the plain one's first */
        char *a = token_text(enc, id), *b = token_text(plain, id);
        assert_string_equal(a, b);
        free(a), free(b);
    }
    int32_t *ids_text = NULL;
    size_t n = 0;
    ts_assert_ok(fl_tokenizer_encode(enc, "<s> a <mask> </s><pad>", 22, &ids_text, &n, &err), &err);
    for (size_t i = 0; i < n; i++) assert_false(fl_tokenizer_is_special(enc, ids_text[i]));
    free(ids_text);
    char path[4200];
    size_t bytes;
    free(save_bytes(enc, s->dir, "enc.json", &bytes));
    snprintf(path, sizeof path, "%s/enc.json", s->dir);
    fl_tokenizer *back = load(path);
    fl_special_ids again;
    ts_assert_ok(fl_tokenizer_encoder_ids(back, path, &again, &err), &err);
    assert_memory_equal(&ids, &again, sizeof ids);
    assert_int_equal(fl_tokenizer_encoder_ids(plain, "plain", &again, &err), FL_EINVAL);
    fl_tokenizer *fixture = load(FIXTURES "/ffnlab_tokenizer.json");
    assert_int_equal(fl_tokenizer_special_id(fixture, "<mask>"), -1);
    assert_int_equal(fl_tokenizer_special_id(fixture, FL_EOT_TEXT), fl_tokenizer_eot(fixture));
    fl_tokenizer_free(fixture), fl_tokenizer_free(back), fl_tokenizer_free(enc), fl_tokenizer_free(plain);
    free(d.text);
}

static void test_save_load(void **state) {
    suite *s = *state;
    size_t n1, n2;
    char *first = save_bytes(s->trained, s->dir, "t.json", &n1);
    char path[4200];
    snprintf(path, sizeof path, "%s/t.json", s->dir);
    fl_tokenizer *back = load(path);
    assert_int_equal(fl_tokenizer_vocab_size(back), fl_tokenizer_vocab_size(s->trained));
    assert_int_equal(fl_tokenizer_eot(back), fl_tokenizer_eot(s->trained));
    for (size_t i = 0; i < sizeof ASCII / sizeof *ASCII; i++) assert_same_ids(s->trained, back, ASCII[i]);
    assert_same_ids(s->trained, back, "Café 東京 🙂 end." FL_EOT_TEXT "Next");
    char *second = save_bytes(back, s->dir, "t2.json", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(first, second, n1);
    free(first);
    free(second);
    fl_tokenizer_free(back);
}

/* The library's file, saved by ffnlab and loaded again, keeps its ids
   (its numbering is not ffnlab's). */
static void test_resave_foreign(void **state) {
    suite *s = *state;
    size_t n;
    free(save_bytes(s->hf, s->dir, "hf2.json", &n));
    char path[4200];
    snprintf(path, sizeof path, "%s/hf2.json", s->dir);
    fl_tokenizer *back = load(path);
    assert_int_equal(fl_tokenizer_vocab_size(back), fl_tokenizer_vocab_size(s->hf));
    assert_int_equal(fl_tokenizer_eot(back), 0);
    for (size_t i = 0; i < sizeof ASCII / sizeof *ASCII; i++) assert_same_ids(s->hf, back, ASCII[i]);
    assert_same_ids(s->hf, back, "Café 東京 🙂 end." FL_EOT_TEXT "Next");
    fl_tokenizer_free(back);
}

/* Every {text: ids} pair of an id fixture, encoded with tok. */
static void check_id_fixture(const fl_tokenizer *tok, const char *path) {
    char *json = ts_read_file(path, NULL);
    if (!json) fail_msg("cannot read %s (run tests/reference/make_tokenizer_fixture.py)", path);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    int checked = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        size_t n;
        int32_t *ids = roundtrip(tok, e->string, strlen(e->string), &n);
        int ok = (size_t)cJSON_GetArraySize(e) == n;
        for (size_t i = 0; ok && i < n; i++) ok = cJSON_GetArrayItem(e, (int)i)->valueint == ids[i];
        if (!ok) {
            print_message("text \"%s\": got", e->string);
            for (size_t i = 0; i < n; i++) print_message(" %d", ids[i]);
            print_message("\n");
            fail_msg("%s: ids differ from the library's", path);
        }
        free(ids);
        checked++;
    }
    assert_true(checked >= 20);
    cJSON_Delete(root);
    free(json);
}

static void test_hf_fixture(void **state) {
    suite *s = *state;
    check_id_fixture(s->hf, FIXTURES "/hf_ids.json");
    assert_int_equal(fl_tokenizer_vocab_size(s->hf), 400);
}

static void test_ffnlab_fixture(void **state) {
    (void)state;
    fl_tokenizer *tok = load(FIXTURES "/ffnlab_tokenizer.json");
    check_id_fixture(tok, FIXTURES "/ffnlab_ids.json");
    fl_tokenizer_free(tok);
}

/* ---- malformed files ---------------------------------------------------- */

/* Loading text as a tokenizer file must fail with code and a message naming
   the file and containing want. */
static void expect_load_error(const char *dir, const char *name, const char *text, fl_status code,
                              const char *want) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(ts_write_file(path, text, strlen(text)), 0);
    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    fl_status st = fl_tokenizer_load(path, &tok, &err);
    if (st != code) fail_msg("%s: status %d, want %d (msg: %s)", name, (int)st, (int)code, err.msg);
    assert_null(tok);
    assert_msg_has(&err, path, want);
}

/* A small valid file (the trained one), edited by `edit` and returned as text. */
static char *edited(const fl_tokenizer *tok, const char *dir, void (*edit)(cJSON *root)) {
    size_t n;
    char *text = save_bytes(tok, dir, "base.json", &n);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    edit(root);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

static cJSON *model_of(cJSON *root) { return cJSON_GetObjectItemCaseSensitive(root, "model"); }
static cJSON *vocab_of(cJSON *root) { return cJSON_GetObjectItemCaseSensitive(model_of(root), "vocab"); }
static cJSON *merges_of(cJSON *root) { return cJSON_GetObjectItemCaseSensitive(model_of(root), "merges"); }

static void edit_no_model(cJSON *r) { cJSON_DeleteItemFromObjectCaseSensitive(r, "model"); }
static void edit_wordpiece(cJSON *r) {
    cJSON_ReplaceItemInObjectCaseSensitive(model_of(r), "type", cJSON_CreateString("WordPiece"));
}
static void edit_no_vocab(cJSON *r) { cJSON_DeleteItemFromObjectCaseSensitive(model_of(r), "vocab"); }
static void edit_no_merges(cJSON *r) { cJSON_DeleteItemFromObjectCaseSensitive(model_of(r), "merges"); }
static void edit_unknown_merge(cJSON *r) {
    cJSON_AddItemToArray(merges_of(r), cJSON_CreateString("Ġthe zzzunknown"));
}
static void edit_merge_result_missing(cJSON *r) {
    cJSON_AddItemToArray(merges_of(r), cJSON_CreateString("x y"));   /* "xy" is not a token */
}
static void edit_bad_merge_form(cJSON *r) { cJSON_AddItemToArray(merges_of(r), cJSON_CreateNumber(7)); }
static void edit_missing_byte(cJSON *r) { cJSON_DeleteItemFromObjectCaseSensitive(vocab_of(r), "Ċ"); }
static void edit_not_bytelevel(cJSON *r) { cJSON_AddNumberToObject(vocab_of(r), "東", 500); }
static void edit_id_string(cJSON *r) {
    cJSON_ReplaceItemInObjectCaseSensitive(vocab_of(r), "a", cJSON_CreateString("97"));
}
static void edit_id_negative(cJSON *r) {
    cJSON_ReplaceItemInObjectCaseSensitive(vocab_of(r), "a", cJSON_CreateNumber(-1));
}
static void edit_id_fraction(cJSON *r) {
    cJSON_ReplaceItemInObjectCaseSensitive(vocab_of(r), "a", cJSON_CreateNumber(97.5));
}
static void edit_id_huge(cJSON *r) {
    cJSON_ReplaceItemInObjectCaseSensitive(vocab_of(r), "a", cJSON_CreateNumber(1e12));
}
static void edit_id_twice(cJSON *r) {
    cJSON_ReplaceItemInObjectCaseSensitive(vocab_of(r), "a", cJSON_CreateNumber(98));
}
static void edit_dup_key(cJSON *r) { /* cJSON adds a second "a"; its last one would win */
    cJSON_AddNumberToObject(vocab_of(r), "a", 98);
}
static void edit_metaspace(cJSON *r) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "Metaspace");
    cJSON_ReplaceItemInObjectCaseSensitive(r, "pre_tokenizer", p);
}
static void edit_normalizer(cJSON *r) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "NFC");
    cJSON_ReplaceItemInObjectCaseSensitive(r, "normalizer", p);
}
static void edit_added_bad(cJSON *r) {
    cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "added_tokens"), 0);
    cJSON_ReplaceItemInObjectCaseSensitive(a, "id", cJSON_CreateString("x"));
}

static void test_malformed_files(void **state) {
    suite *s = *state;
    const char *d = s->dir;
    const char *nb = "not a byte-level BPE tokenizer.json";
    expect_load_error(d, "text.json", "hello, I am not JSON", FL_EINVAL, "not valid JSON");
    expect_load_error(d, "empty.json", "", FL_EINVAL, "not valid JSON");
    expect_load_error(d, "array.json", "[1, 2, 3]", FL_EINVAL, nb);
    expect_load_error(d, "other.json", "{\"version\": \"1.0\", \"name\": \"x\"}", FL_EINVAL, "no \"model\"");
    expect_load_error(d, "model_str.json", "{\"model\": \"BPE\"}", FL_EINVAL, nb);
    expect_load_error(d, "deep.json", "{\"model\": {\"vocab\": {\"a\": {\"b\": [[[[]]]]}}, \"merges\": []}}",
                      FL_EINVAL, nb);
    /* truncated: the first half of a real file */
    size_t n;
    char *full = save_bytes(s->trained, d, "full.json", &n);
    full[n / 2] = 0;
    expect_load_error(d, "truncated.json", full, FL_EINVAL, "not valid JSON");
    free(full);
    full = save_bytes(s->trained, d, "full.json", &n);
    char *trailing = malloc(n + 8);
    snprintf(trailing, n + 8, "%s{\"x\"", full);
    expect_load_error(d, "trailing.json", trailing, FL_EINVAL, "unexpected bytes after the JSON value");
    free(trailing);
    free(full);

    static const struct {
        const char *name;
        void (*edit)(cJSON *);
        const char *want;
    } cases[] = {
        {"no_model.json", edit_no_model, "no \"model\""},
        {"wordpiece.json", edit_wordpiece, "WordPiece"},
        {"no_vocab.json", edit_no_vocab, "model.vocab"},
        {"no_merges.json", edit_no_merges, "model.merges"},
        {"unknown_merge.json", edit_unknown_merge, "unknown token \"zzzunknown\""},
        {"merge_result.json", edit_merge_result_missing, "not in the vocab"},
        {"merge_form.json", edit_bad_merge_form, "merge"},
        {"missing_byte.json", edit_missing_byte, "byte 0x0A"},
        {"not_bytelevel.json", edit_not_bytelevel, "byte-level alphabet"},
        {"id_string.json", edit_id_string, "\"a\""},
        {"id_negative.json", edit_id_negative, "\"a\""},
        {"id_fraction.json", edit_id_fraction, "\"a\""},
        {"id_huge.json", edit_id_huge, "\"a\""},
        {"id_twice.json", edit_id_twice, "id 98"},
        {"dup_key.json", edit_dup_key, "duplicate key \"a\""},
        {"metaspace.json", edit_metaspace, "Metaspace"},
        {"normalizer.json", edit_normalizer, "normalizer"},
        {"added_bad.json", edit_added_bad, "added token"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = edited(s->trained, d, cases[i].edit);
        expect_load_error(d, cases[i].name, text, FL_EINVAL, cases[i].want);
        free(text);
    }

    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/does/not/exist.json", d);
    assert_int_equal(fl_tokenizer_load(path, &tok, &err), FL_EIO);
    assert_msg_has(&err, path, NULL);
}

/* ---- threads and speed -------------------------------------------------- */

typedef struct job {
    const fl_tokenizer *tok;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    fl_status st;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    fl_error err = {0};
    j->st = fl_tokenizer_encode(j->tok, j->text, j->len, &j->ids, &j->n, &err);
    return NULL;
}

static void test_encode_threads(void **state) {
    (void)state;
    /* A fresh tokenizer, so the threads fill its cache concurrently. */
    fl_tokenizer *tok = load(FIXTURES "/hf_tokenizer.json");
    size_t len;
    char *text = ts_read_file(FIXTURES "/corpus.txt", &len);
    enum { T = 6 };
    job jobs[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        jobs[i] = (job){.tok = tok, .text = text + i, .len = len - i};
        assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    fl_tokenizer *fresh = load(FIXTURES "/hf_tokenizer.json");
    for (int i = 0; i < T; i++) {
        assert_int_equal(jobs[i].st, FL_OK);
        size_t n;
        int32_t *want = NULL;
        fl_error err = {0};
        ts_assert_ok(fl_tokenizer_encode(fresh, text + i, len - i, &want, &n, &err), &err);
        assert_int_equal(jobs[i].n, n);
        assert_memory_equal(jobs[i].ids, want, n * sizeof *want);
        free(want);
        free(jobs[i].ids);
    }
    fl_tokenizer_free(fresh);
    fl_tokenizer_free(tok);
    free(text);
}

static void test_decode_out_of_range(void **state) {
    suite *s = *state;
    const int32_t V = fl_tokenizer_vocab_size(s->trained);
    int32_t ids[] = {-5, 'h', V, 'i', INT32_MAX};
    size_t len;
    char *t = fl_tokenizer_decode(s->trained, ids, 5, &len);
    assert_int_equal(len, 2);
    assert_string_equal(t, "hi");
    free(t);
    fl_error err = {0};
    char want[128];
    assert_int_equal(fl_tokenizer_check_ids(s->trained, ids, 5, &err), FL_EINVAL);
    snprintf(want, sizeof want, "unknown token ids -5, %d, 2147483647 (the tokenizer's ids are 0..%d)", V, V - 1);
    assert_string_equal(err.msg, want);
    ts_assert_ok(fl_tokenizer_check_ids(s->trained, ids + 1, 1, &err), &err);
    int32_t many[12] = {-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, 'a', -11};
    assert_int_equal(fl_tokenizer_check_ids(s->trained, many, 12, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "-7, -8 and 3 more"));
}

/* ---- the command line -------------------------------------------------- */

static void test_cli(void **state) {
    suite *s = *state;
    const char *bin = ts_ffnlab_bin();
    char cmd[16384], path[4200];
    char *out = NULL;
    snprintf(path, sizeof path, "%s/cli.json", s->dir);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --corpus %s/corpus.txt --vocab-size 300 --out %s",
             bin, FIXTURES, path);
    int rc = ts_run(cmd, &out);
    if (rc != 0) fail_msg("%s: exit %d: %s", cmd, rc, out);
    free(out);
    fl_tokenizer *tok = load(path);
    assert_int_equal(fl_tokenizer_vocab_size(tok), 300);

    /* encode prints the library's ids; decode of them gives the text back */
    const char *text = "Once upon a time, Lily's dog\tran.";
    size_t n;
    int32_t *ids = encode(tok, text, &n);
    char want[1024] = "";   /* "ID ID ... ID" */
    for (size_t i = 0; i < n; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), i ? " %d" : "%d", (int)ids[i]);
    char want_line[1100];
    snprintf(want_line, sizeof want_line, "%s\n", want);
    snprintf(cmd, sizeof cmd, "printf 'Once upon a time, Lily'\\''s dog\\tran.' | %s tokenizer encode "
             "--tokenizer %s", bin, path);
    assert_int_equal(ts_run(cmd, &out), 0);
    assert_string_equal(out, want_line);
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenizer decode --tokenizer %s %s", bin, path, want);
    assert_int_equal(ts_run(cmd, &out), 0);
    assert_string_equal(out, text);
    free(out);
    free(ids);
    fl_tokenizer_free(tok);

    /* errors: a file that is not a tokenizer (1), missing options (2) */
    snprintf(cmd, sizeof cmd, "%s tokenizer encode --tokenizer %s/corpus.txt --text x", bin, FIXTURES);
    assert_int_equal(ts_run(cmd, &out), 1);
    if (!strstr(out, "corpus.txt: not valid JSON")) fail_msg("unexpected message: %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --corpus %s/corpus.txt", bin, FIXTURES);
    assert_int_equal(ts_run(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "%s tokenizer decode --tokenizer %s 1 two", bin, path);
    assert_int_equal(ts_run(cmd, NULL), 2);
    /* ids the tokenizer does not have: named, exit 1, no text (the error
       line is all the output: the text of 104 105, "hi", is not printed) */
    snprintf(cmd, sizeof cmd, "echo '104 300 105 70000' | %s tokenizer decode --tokenizer %s", bin, path);
    assert_int_equal(ts_run(cmd, &out), 1);
    char line[sizeof path + 128];
    snprintf(line, sizeof line, "ffnlab: error: %s: unknown token ids 300, 70000 (the tokenizer's ids are 0..299)\n",
             path);
    assert_string_equal(out, line);
    free(out);

    /* --arch bert: an encoder's tokenizer, its four tokens last within the size */
    snprintf(path, sizeof path, "%s/cli-enc.json", s->dir);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --corpus %s/corpus.txt --vocab-size 300 --arch bert --out %s", bin,
             FIXTURES, path);
    rc = ts_run(cmd, &out);
    if (rc != 0) fail_msg("%s: exit %d: %s", cmd, rc, out);
    free(out);
    tok = load(path);
    fl_special_ids sp;
    fl_error err = {0};
    ts_assert_ok(fl_tokenizer_encoder_ids(tok, path, &sp, &err), &err);
    assert_int_equal(fl_tokenizer_vocab_size(tok), 300);
    assert_true(sp.bos == 296 && sp.sep == 297 && sp.pad == 298 && sp.mask == 299);
    fl_tokenizer_free(tok);
    snprintf(cmd, sizeof cmd, "%s tokenizer train --corpus %s/corpus.txt --vocab-size 300 --arch t5 --out %s", bin,
             FIXTURES, path);
    assert_int_equal(ts_run(cmd, &out), 2);
    if (!strstr(out, "--arch t5: expected gpt or bert")) fail_msg("unexpected message: %s", out);
    free(out);
}

/* Prints training and encoding speed on TinyStories (when shared data is
   there); the numbers are for the report, the round trip is checked. */
static void test_speed(void **state) {
    (void)state;
    char path[4096];
    if (!ts_shared_data("tinystories/TinyStories-train.first2MiB.txt", path, sizeof path))
        skip();
    size_t len;
    char *text = ts_read_file(path, &len);
    const char *doc = text;
    fl_tokenizer *tok = NULL;
    fl_error err = {0};
    double t0 = now_s();
    ts_assert_ok(fl_tokenizer_train(&doc, &len, 1, 4096, &tok, &err), &err);
    double t1 = now_s();
    size_t n;
    int32_t *ids = roundtrip(tok, text, len, &n);
    double t2 = now_s();
    print_message("tinystories %.1f MB: train 4096 ids %.2f s; encode+decode %.2f s "
                  "(%zu ids, %.2f bytes/id)\n", len / 1e6, t1 - t0, t2 - t1, n, (double)len / n);
    free(ids);
    fl_tokenizer_free(tok);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_ascii),
        cmocka_unit_test(test_roundtrip_utf8),
        cmocka_unit_test(test_roundtrip_invalid_utf8),
        cmocka_unit_test(test_roundtrip_empty),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_roundtrip_long_pieces),
        cmocka_unit_test(test_eot),
        cmocka_unit_test(test_train_deterministic),
        cmocka_unit_test(test_train_vocab_size),
        cmocka_unit_test(test_train_tie_break),
        cmocka_unit_test(test_train_piece_boundaries),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_encoder_special_tokens),
        cmocka_unit_test(test_resave_foreign),
        cmocka_unit_test(test_hf_fixture),
        cmocka_unit_test(test_ffnlab_fixture),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_encode_threads),
        cmocka_unit_test(test_decode_out_of_range),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
