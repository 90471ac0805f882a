/*
 * tests/test_shard.c — binary token shards.
 *
 * Round trips at both token widths (uint16 when the vocabulary fits, uint32
 * beyond 65,536), the exact on-disk header, an empty shard, and that every
 * kind of damage is refused at open with FL_EINVAL and a message naming the
 * file and the problem: a truncated header or body, extra bytes, wrong magic,
 * wrong version, a bad token width, a token outside the vocabulary, a
 * vocabulary above the largest int32 token id. The
 * writer refuses out-of-range tokens too, and leaves no file behind.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include "fsutil.h"
#include "shard.h"

typedef struct fixture {
    char *dir;
    char path[4200];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = ts_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/s.bin", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    ts_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void assert_msg_has(const fl_error *err, const char *want) {
    if (!strstr(err->msg, want)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
}

static void round_trip(const char *path, uint32_t vocab, uint32_t want_width) {
    enum { N = 5000 };
    int32_t *tok = malloc(N * sizeof *tok), *back = malloc(N * sizeof *back);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(((uint64_t)i * 2654435761u) % vocab);
    tok[0] = 0;
    tok[N - 1] = (int32_t)vocab - 1; /* both ends of the range */
    fl_error err = {0};
    ts_assert_ok(fl_shard_write(path, tok, N, vocab, &err), &err);
    fl_shard s;
    ts_assert_ok(fl_shard_open(path, &s, &err), &err);
    assert_int_equal(s.n_tokens, N);
    assert_int_equal(s.vocab_size, vocab);
    assert_int_equal(s.token_bytes, want_width);
    assert_int_equal(s.map_len, FL_SHARD_HEADER_BYTES + (size_t)N * want_width);
    fl_shard_read(&s, 0, N, back);
    assert_memory_equal(tok, back, N * sizeof *tok);
    fl_shard_read(&s, 1234, 10, back); /* a window in the middle */
    assert_memory_equal(tok + 1234, back, 10 * sizeof *tok);
    fl_shard_close(&s);
    free(tok);
    free(back);
}

static void test_round_trip_u16(void **state) {
    fixture *f = *state;
    round_trip(f->path, 1024, 2);
    round_trip(f->path, 65536, 2); /* the largest vocabulary that fits 16 bits */
}

static void test_round_trip_u32(void **state) {
    fixture *f = *state;
    round_trip(f->path, 65537, 4);
    round_trip(f->path, 200000, 4);
}

static void test_header_layout(void **state) {
    fixture *f = *state;
    int32_t tok[3] = {1, 258, 7};
    fl_error err = {0};
    ts_assert_ok(fl_shard_write(f->path, tok, 3, 300, &err), &err);
    size_t len;
    unsigned char *b = (unsigned char *)ts_read_file(f->path, &len);
    assert_int_equal(len, 64 + 6);
    assert_memory_equal(b, "FFNLTOK\0", 8);
    const unsigned char want[] = {1, 0, 0, 0, /* version */ 2, 0, 0, 0, /* width */
                                  3, 0, 0, 0, 0, 0, 0, 0, /* n_tokens */ 44, 1, 0, 0 /* 300 */};
    assert_memory_equal(b + 8, want, sizeof want);
    for (int i = 28; i < 64; i++) assert_int_equal(b[i], 0);
    const unsigned char toks[] = {1, 0, 2, 1, 7, 0}; /* little-endian */
    assert_memory_equal(b + 64, toks, sizeof toks);
    free(b);
}

static void test_empty_shard(void **state) {
    fixture *f = *state;
    fl_error err = {0};
    ts_assert_ok(fl_shard_write(f->path, NULL, 0, 512, &err), &err);
    fl_shard s;
    ts_assert_ok(fl_shard_open(f->path, &s, &err), &err);
    assert_int_equal(s.n_tokens, 0);
    fl_shard_close(&s);
}

/* Writes a valid 4-token shard, lets damage() change its bytes, and expects
   open to fail naming the file and containing want. */
static void expect_damage(const char *path, void (*damage)(unsigned char *b, size_t *len),
                          const char *want) {
    int32_t tok[4] = {1, 2, 3, 4};
    fl_error err = {0};
    ts_assert_ok(fl_shard_write(path, tok, 4, 100, &err), &err);
    size_t len;
    unsigned char *b = (unsigned char *)ts_read_file(path, &len);
    b = realloc(b, len + 16);
    memset(b + len, 0, 16);
    damage(b, &len);
    assert_int_equal(ts_write_file(path, b, len), 0);
    free(b);
    fl_shard s;
    fl_status st = fl_shard_open(path, &s, &err);
    if (st != FL_EINVAL) fail_msg("status %d, want FL_EINVAL (msg: %s)", (int)st, err.msg);
    assert_msg_has(&err, path);
    assert_msg_has(&err, want);
    assert_null(s.map);
}

static void cut_body(unsigned char *b, size_t *len) { (void)b; *len -= 3; }
static void cut_header(unsigned char *b, size_t *len) { (void)b; *len = 40; }
static void add_bytes(unsigned char *b, size_t *len) { (void)b; *len += 2; }
static void bad_magic(unsigned char *b, size_t *len) { (void)len; memcpy(b, "GPT2TOK", 7); }
static void bad_version(unsigned char *b, size_t *len) { (void)len; b[8] = 9; }
static void bad_width(unsigned char *b, size_t *len) { (void)len; b[12] = 3; }
/* 4-byte tokens (the 4 tokens read as 2), vocabulary 2^31: token 0x00040003
   fits it, and a token of 2^31 or more would turn negative as an int32 id
   (found by fuzz_shard; tests/fuzz/regressions/fuzz_shard/) */
static void huge_vocab(unsigned char *b, size_t *len) {
    (void)len;
    b[12] = 4, b[16] = 2;
    b[24] = 0, b[25] = 0, b[26] = 0, b[27] = 0x80;
}
static void big_token(unsigned char *b, size_t *len) { (void)len; b[64 + 2 * 2] = 100; } /* == vocab */

static void test_truncated(void **state) {
    fixture *f = *state;
    expect_damage(f->path, cut_body, "truncated");
    expect_damage(f->path, cut_header, "truncated");
    expect_damage(f->path, add_bytes, "4 tokens");
}

static void test_wrong_magic(void **state) {
    fixture *f = *state;
    expect_damage(f->path, bad_magic, "magic");
}

static void test_wrong_version(void **state) {
    fixture *f = *state;
    expect_damage(f->path, bad_version, "version 9");
}

static void test_bad_width(void **state) {
    fixture *f = *state;
    expect_damage(f->path, bad_width, "token width 3");
}

static void test_token_out_of_range(void **state) {
    fixture *f = *state;
    expect_damage(f->path, big_token, "token 100 at position 2");
    expect_damage(f->path, huge_vocab, "vocabulary size 2147483648 is above the largest token id ffnlab takes");
}

static void test_missing_file(void **state) {
    fixture *f = *state;
    fl_shard s;
    fl_error err = {0};
    assert_int_equal(fl_shard_open(f->path, &s, &err), FL_EIO);
    assert_msg_has(&err, f->path);
}

static void test_writer_refuses_bad_tokens(void **state) {
    fixture *f = *state;
    int32_t tok[3] = {1, 300, 2};
    fl_error err = {0};
    assert_int_equal(fl_shard_write(f->path, tok, 3, 300, &err), FL_EINVAL);
    assert_msg_has(&err, "token 300 at position 1");
    tok[1] = -1;
    assert_int_equal(fl_shard_write(f->path, tok, 3, 300, &err), FL_EINVAL);
    /* neither the shard nor its temporary file is left behind */
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_u16, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_u32, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_width, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_refuses_bad_tokens, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
