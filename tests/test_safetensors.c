/*
 * tests/test_safetensors.c — safetensors files, byte for byte.
 *
 * Round trips every dtype and several shapes (scalar, empty, 4-D) with
 * metadata; checks the exact bytes of a small file against the layout the
 * format defines (u64 LE length, space-padded JSON header, data in the given
 * order); parses a written file by hand with cJSON; feeds the reader each
 * kind of broken file (empty, truncated, absurd header length, garbage, bad
 * JSON, bad dtype/shape/offsets, overlaps, holes, a tensor name twice or
 * holding a NUL byte, invalid UTF-8 or \u0000) and expects FL_EINVAL with
 * the path in the message (and the byte offset in the file for a bad name); and checks that writes are atomic: a failed write
 * leaves nothing behind and an overwrite swaps the whole file.
 */
#include "support.h"

#include <dirent.h>  /* counting files a write left behind */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "safetensors.h"

static void assert_msg_has(const fl_error *err, const char *a, const char *b) {
    if (a && !strstr(err->msg, a)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, a);
    if (b && !strstr(err->msg, b)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, b);
}

static size_t count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static uint64_t read_u64le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- fixture: one tensor of every dtype, odd shapes ------------------------ */

static float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.5f, 1e-30f};
static uint16_t bf16[4] = {0x3f80, 0xbf80, 0x4000, 0x7f80};
static int32_t i32[1] = {-123456};
static int64_t i64[4] = {1, -2, INT64_MAX, INT64_MIN};
static uint8_t u8[24];

static size_t fixture(fl_st_entry *e) {
    for (int i = 0; i < 24; i++) u8[i] = (uint8_t)(i * 11);
    fl_st_entry all[] = {
        {"transformer.wte.weight", FL_F32, 2, {2, 3}, f32},
        {"bf", FL_BF16, 1, {4}, bf16},
        {"scalar", FL_I32, 0, {0}, i32},
        {"ids", FL_I64, 2, {2, 2}, i64},
        {"bytes4d", FL_U8, 4, {2, 3, 2, 2}, u8},
        {"empty", FL_F32, 2, {0, 5}, NULL},
    };
    memcpy(e, all, sizeof all);
    return sizeof all / sizeof all[0];
}

static const char *const META[] = {"format", "pt", "ffnlab", "config \"json\" here", NULL};

static size_t entry_bytes(const fl_st_entry *e) {
    size_t n = fl_dtype_size(e->dtype);
    for (int i = 0; i < e->ndim; i++) n *= (size_t)e->shape[i];
    return n;
}

static void test_roundtrip(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fl_st_entry e[8];
    size_t n = fixture(e);
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_write(path, e, n, META, &err), &err);

    fl_st_file *f;
    ts_assert_ok(fl_safetensors_open(path, &f, &err), &err);
    assert_int_equal(fl_safetensors_count(f), n);
    for (size_t i = 0; i < n; i++) {
        const fl_st_entry *g = fl_safetensors_at(f, i);
        assert_string_equal(g->name, e[i].name); /* file order = given order */
        assert_int_equal(g->dtype, e[i].dtype);
        assert_int_equal(g->ndim, e[i].ndim);
        for (int d = 0; d < e[i].ndim; d++) assert_int_equal(g->shape[d], e[i].shape[d]);
        if (entry_bytes(&e[i])) assert_memory_equal(g->data, e[i].data, entry_bytes(&e[i]));
        assert_ptr_equal(fl_safetensors_find(f, e[i].name), g);
    }
    assert_null(fl_safetensors_at(f, n));
    assert_null(fl_safetensors_find(f, "nope"));
    assert_null(fl_safetensors_find(f, "__metadata__"));
    assert_string_equal(fl_safetensors_meta(f, "format"), "pt");
    assert_string_equal(fl_safetensors_meta(f, "ffnlab"), "config \"json\" here");
    assert_null(fl_safetensors_meta(f, "missing"));
    fl_safetensors_close(f);

    /* no tensors, no metadata: still a valid file */
    ts_assert_ok(fl_safetensors_write(path, NULL, 0, NULL, &err), &err);
    ts_assert_ok(fl_safetensors_open(path, &f, &err), &err);
    assert_int_equal(fl_safetensors_count(f), 0);
    assert_null(fl_safetensors_meta(f, "format"));
    fl_safetensors_close(f);
    assert_int_equal(count_files(dir), 1); /* no temp files left */
    ts_rmtree(dir);
    free(dir);
}

/* The exact bytes of a small file: what any safetensors reader expects. */
static void test_exact_bytes(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    float w[2] = {1.0f, -2.0f};
    uint8_t b[3] = {7, 8, 9};
    fl_st_entry e[] = {{"w", FL_F32, 1, {2}, w}, {"b", FL_U8, 2, {1, 3}, b}};
    const char *meta[] = {"format", "pt", NULL};
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_write(path, e, 2, meta, &err), &err);

    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[8,11]}}";
    size_t jlen = strlen(json), hlen = (jlen + 7) / 8 * 8;
    size_t len;
    unsigned char *got = (unsigned char *)ts_read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, 8 + hlen + 11);
    assert_int_equal(read_u64le(got), hlen);
    assert_memory_equal(got + 8, json, jlen);
    for (size_t i = jlen; i < hlen; i++) assert_int_equal(got[8 + i], ' ');
    assert_memory_equal(got + 8 + hlen, w, 8);
    assert_memory_equal(got + 8 + hlen + 8, b, 3);
    free(got);
    ts_rmtree(dir);
    free(dir);
}

/* The fixture file read without our reader: header parsed by cJSON, offsets
   contiguous in the given order, bytes where the offsets say. */
static void test_layout_by_hand(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    fl_st_entry e[8];
    size_t n = fixture(e);
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_write(path, e, n, META, &err), &err);
    size_t len;
    unsigned char *raw = (unsigned char *)ts_read_file(path, &len);
    uint64_t hlen = read_u64le(raw);
    assert_int_equal(hlen % 8, 0);
    assert_true(8 + hlen <= len);
    cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, hlen);
    assert_non_null(h);
    const unsigned char *data = raw + 8 + hlen;
    cJSON *item = h->child;
    assert_string_equal(item->string, "__metadata__");
    assert_string_equal(cJSON_GetObjectItem(item, "format")->valuestring, "pt");
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        item = item->next;
        assert_non_null(item);
        assert_string_equal(item->string, e[i].name);
        cJSON *offs = cJSON_GetObjectItem(item, "data_offsets");
        uint64_t b = (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble;
        uint64_t en = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
        assert_int_equal(b, at);
        assert_int_equal(en - b, entry_bytes(&e[i]));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(item, "shape")), e[i].ndim);
        if (en > b) assert_memory_equal(data + b, e[i].data, en - b);
        at = en;
    }
    assert_null(item->next);
    assert_int_equal(8 + hlen + at, len);
    cJSON_Delete(h);
    free(raw);
    ts_rmtree(dir);
    free(dir);
}

/* ---- corrupt files ----------------------------------------------------------- */

/* A file of: u64 LE `length`, `header` bytes, then `data_len` zero bytes. */
static void write_raw_bytes(const char *path, uint64_t length, const char *header, size_t hl, size_t data_len) {
    unsigned char *buf = calloc(1, 8 + hl + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(length >> (8 * i));
    memcpy(buf + 8, header, hl);
    assert_int_equal(ts_write_file(path, buf, 8 + hl + data_len), 0);
    free(buf);
}

static void write_raw(const char *path, uint64_t length, const char *header, size_t data_len) {
    write_raw_bytes(path, length, header, strlen(header), data_len);
}

/* open must fail with FL_EINVAL naming the path (and want, if given). */
static void expect_corrupt(const char *path, const char *want, const char *want2) {
    fl_st_file *f = (fl_st_file *)1;
    fl_error err = {0};
    fl_status st = fl_safetensors_open(path, &f, &err);
    if (st != FL_EINVAL) fail_msg("status %d, want FL_EINVAL (msg: %s)", (int)st, err.msg);
    assert_null(f);
    if (getenv("FFNLAB_TEST_VERBOSE")) print_message("  %s\n", err.msg);
    assert_msg_has(&err, path, "corrupt safetensors header");
    assert_msg_has(&err, want, want2);
}

/* A header of `json`, with its length right, and data_len data bytes. */
static void expect_bad_header(const char *path, const char *json, size_t data_len, const char *want,
                              const char *want2) {
    write_raw(path, strlen(json), json, data_len);
    expect_corrupt(path, want, want2);
}

/* The same for a header with NUL bytes in it: json is a string literal. */
static void expect_bad_header_bytes(const char *path, const char *json, size_t len, size_t data_len, const char *want,
                                    const char *want2) {
    write_raw_bytes(path, len, json, len, data_len);
    expect_corrupt(path, want, want2);
}
#define expect_bad_header_n(path, lit, data_len, want, want2) \
    expect_bad_header_bytes(path, lit, sizeof lit - 1, data_len, want, want2)

static void test_corrupt_framing(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);

    assert_int_equal(ts_write_file(path, "", 0), 0);
    expect_corrupt(path, "0 bytes", NULL);
    assert_int_equal(ts_write_file(path, "\x10\0\0", 3), 0);
    expect_corrupt(path, "3 bytes", NULL);

    write_raw(path, (uint64_t)1 << 63, "{}", 0);
    expect_corrupt(path, "header length 9223372036854775808", NULL);
    write_raw(path, 1000, "{\"a\":{}}", 0); /* truncated: header runs past the end */
    expect_corrupt(path, "header length 1000 exceeds the 8 bytes", NULL);
    write_raw(path, 0, "", 16);
    expect_corrupt(path, "header length 0", NULL);

    /* garbage: random bytes (the length field is then absurd), and garbage JSON */
    unsigned char junk[4096];
    srand(7);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)rand();
    assert_int_equal(ts_write_file(path, junk, sizeof junk), 0);
    expect_corrupt(path, "header length", NULL);
    for (int i = 0; i < 8; i++) junk[i] = i == 0 ? 100 : 0;
    assert_int_equal(ts_write_file(path, junk, sizeof junk), 0);
    expect_corrupt(path, "invalid JSON", NULL);

    /* the 100 MB header limit, on a sparse file so the test stays small */
    FILE *fp = fopen(path, "wb");
    unsigned char len8[8];
    uint64_t big = 101u * 1000u * 1000u;
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(big >> (8 * i));
    assert_int_equal(fwrite(len8, 1, 8, fp), 8);
    assert_int_equal(ftruncate(fileno(fp), (off_t)(8 + big + 8)), 0);
    fclose(fp);
    expect_corrupt(path, "100 MB", NULL);

    /* a directory is not a file */
    fl_st_file *f;
    fl_error err = {0};
    assert_int_equal(fl_safetensors_open(dir, &f, &err), FL_EINVAL);
    assert_msg_has(&err, dir, NULL);
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    assert_int_equal(fl_safetensors_open(path, &f, &err), FL_EIO);
    assert_msg_has(&err, path, NULL);
    ts_rmtree(dir);
    free(dir);
}

static void test_corrupt_header(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), p[4200];
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
#define T(dt, shape, offs) "{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" offs "}"
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[2]", "[0,8]") "x", 8, "invalid JSON", NULL);
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[2]", "[0,8]") "}  x", 8, "unexpected bytes", NULL);
    expect_bad_header(p, "[1,2,3]", 0, "not a JSON object", NULL);
    expect_bad_header(p, "{\"a\":[1]}", 0, "not an object", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "\"dtype\"", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("5", "[2]", "[0,8]") "}", 8, "\"dtype\"", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F99\"", "[2]", "[0,8]") "}", 8, "unknown dtype \"F99\"", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "2", "[0,8]") "}", 8, "\"shape\"", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[-2]", "[0,8]") "}", 8, "shape[0]", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[1.5]", "[0,8]") "}", 8, "shape[0]", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[1,1,1,1,2]", "[0,8]") "}", 8, "5 dimensions", NULL);
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[2]", "[0]") "}", 8, "data_offsets", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[2]", "[8,0]") "}", 8, "data_offsets", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[2]", "[0,8]") "}", 4, "reach past the 4 bytes", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[3]", "[0,8]") "}", 8, "need 12 bytes", "(tensor \"a\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[99999999999,99999999999]", "[0,8]") "}", 8, "impossibly large", "(tensor \"a\")");
    /* ranges must tile the data area: overlap, hole, uncovered tail */
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[2]", "[0,8]") ",\"b\":" T("\"F32\"", "[2]", "[4,12]") "}", 12,
                      "overlap tensor \"a\"", "(tensor \"b\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[1]", "[0,4]") ",\"b\":" T("\"F32\"", "[1]", "[8,12]") "}", 12,
                      "belong to no tensor", "(tensor \"b\")");
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[1]", "[0,4]") "}", 8, "cover 4 bytes", NULL);
    /* what cJSON lets through (fl_json_strict): a name twice, a raw NUL byte
       that would cut the name, invalid UTF-8, the escape \u0000 */
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[1]", "[0,4]") ",\"a\":" T("\"F32\"", "[1]", "[4,8]") "}", 8,
                      "line 1: duplicate key \"a\"", NULL);
    expect_bad_header(p, "{\"a\":" T("\"F32\"", "[1]", "[0,4]") ",\"\\u0061\":" T("\"F32\"", "[1]", "[4,8]") "}", 8,
                      "duplicate key \"\\u0061\"", NULL);
    expect_bad_header_n(p, "{\"ln_f.weight\0evil\":" T("\"F32\"", "[1]", "[0,4]") "}", 4,
                        "raw control character 0x00 in a string at byte 21", NULL);
    expect_bad_header(p, "{\"ln_f.\xff\":" T("\"F32\"", "[1]", "[0,4]") "}", 4, "invalid UTF-8 in a string at byte 15", NULL);
    expect_bad_header(p, "{\"ln_f\\u0000x\":" T("\"F32\"", "[1]", "[0,4]") "}", 4, "\\u0000", "at byte 14");
    expect_bad_header(p, "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", "\"k\"");
    expect_bad_header(p, "{\"__metadata__\":[]}", 0, "__metadata__", NULL);
#undef T
    ts_rmtree(dir);
    free(dir);
}

/* A foreign file whose header is not padded: tensor bytes land misaligned,
   and the reader must still hand out an aligned, correct array. */
static void test_unaligned_data(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), p[4200];
    snprintf(p, sizeof p, "%s/u.safetensors", dir);
    const char *json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hl = strlen(json);
    if (hl % 4 == 0) fail_msg("fixture header is aligned by accident");
    unsigned char buf[256];
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, json, hl);
    float want[2] = {3.5f, -7.25f};
    memcpy(buf + 8 + hl, want, 8);
    assert_int_equal(ts_write_file(p, buf, 8 + hl + 8), 0);
    fl_st_file *f;
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_open(p, &f, &err), &err);
    const fl_st_entry *x = fl_safetensors_find(f, "x");
    assert_non_null(x);
    assert_int_equal((uintptr_t)x->data % 4, 0);
    assert_true(((const float *)x->data)[0] == 3.5f && ((const float *)x->data)[1] == -7.25f);
    fl_safetensors_close(f);
    ts_rmtree(dir);
    free(dir);
}

/* ---- atomic writes ------------------------------------------------------------ */

static void test_write_errors_leave_nothing(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), p[4200];
    fl_st_entry e[8];
    size_t n = fixture(e);
    fl_error err = {0};

    snprintf(p, sizeof p, "%s/no/such/dir/m.safetensors", dir);
    assert_int_not_equal(fl_safetensors_write(p, e, n, META, &err), FL_OK);
    assert_msg_has(&err, "/no/such/dir/m.safetensors", NULL);
    assert_int_equal(count_files(dir), 0);

    /* bad input is refused before any file is created */
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    fl_st_entry dup[2] = {e[0], e[0]};
    assert_int_equal(fl_safetensors_write(p, dup, 2, NULL, &err), FL_EINVAL);
    assert_msg_has(&err, "given twice", e[0].name);
    fl_st_entry bad = e[0];
    bad.dtype = 42;
    assert_int_equal(fl_safetensors_write(p, &bad, 1, NULL, &err), FL_EINVAL);
    bad = e[0];
    bad.name = "__metadata__";
    assert_int_equal(fl_safetensors_write(p, &bad, 1, NULL, &err), FL_EINVAL);
    bad = e[0];
    bad.shape[0] = -1;
    assert_int_equal(fl_safetensors_write(p, &bad, 1, NULL, &err), FL_EINVAL);
    const char *dupmeta[] = {"k", "1", "k", "2", NULL};
    assert_int_equal(fl_safetensors_write(p, e, n, dupmeta, &err), FL_EINVAL);
    const char *oddmeta[] = {"k", NULL};
    assert_int_equal(fl_safetensors_write(p, e, n, oddmeta, &err), FL_EINVAL);
    assert_int_equal(count_files(dir), 0);

    /* a "directory" that is a file: unwritable even for root */
    char file[4100];
    snprintf(file, sizeof file, "%s/plain", dir);
    assert_int_equal(ts_write_file(file, "x", 1), 0);
    snprintf(p, sizeof p, "%s/m.safetensors", file);
    assert_int_equal(fl_safetensors_write(p, e, n, META, &err), FL_EIO);
    assert_msg_has(&err, file, NULL);
    assert_int_equal(count_files(dir), 1);

    /* an unwritable directory (root ignores permissions, so only as a user) */
    if (geteuid() != 0) {
        char ro[4100];
        snprintf(ro, sizeof ro, "%s/ro", dir);
        assert_int_equal(mkdir(ro, 0500), 0);
        snprintf(p, sizeof p, "%s/m.safetensors", ro);
        assert_int_equal(fl_safetensors_write(p, e, n, META, &err), FL_EIO);
        assert_int_equal(count_files(ro), 0);
        chmod(ro, 0700);
    }
    ts_rmtree(dir);
    free(dir);
}

static void test_overwrite_is_atomic(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), p[4200];
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    float a[2] = {1, 2}, b[3] = {4, 5, 6};
    fl_st_entry ea = {"w", FL_F32, 1, {2}, a}, eb = {"w", FL_F32, 1, {3}, b};
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_write(p, &ea, 1, NULL, &err), &err);
    fl_st_file *old;
    ts_assert_ok(fl_safetensors_open(p, &old, &err), &err);
    struct stat before;
    assert_int_equal(stat(p, &before), 0);

    ts_assert_ok(fl_safetensors_write(p, &eb, 1, NULL, &err), &err);
    struct stat after;
    assert_int_equal(stat(p, &after), 0);
    /* a new file was renamed over the name; the old one, still open, is intact */
    assert_true(before.st_ino != after.st_ino);
    const fl_st_entry *w = fl_safetensors_find(old, "w");
    assert_int_equal(w->shape[0], 2);
    assert_memory_equal(w->data, a, sizeof a);
    fl_safetensors_close(old);

    fl_st_file *cur;
    ts_assert_ok(fl_safetensors_open(p, &cur, &err), &err);
    w = fl_safetensors_find(cur, "w");
    assert_int_equal(w->shape[0], 3);
    assert_memory_equal(w->data, b, sizeof b);
    fl_safetensors_close(cur);
    assert_int_equal(count_files(dir), 1);
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_layout_by_hand),
        cmocka_unit_test(test_corrupt_framing),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_unaligned_data),
        cmocka_unit_test(test_write_errors_leave_nothing),
        cmocka_unit_test(test_overwrite_is_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
