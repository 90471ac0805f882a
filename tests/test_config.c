/*
 * tests/test_config.c — the configuration table and its three sources.
 *
 * Checks that the defaults (the tiny model `ffnlab train` runs with no
 * arguments) are valid, that every shipped config in configs/ loads and
 * validates, that each kind of bad input (unknown key, wrong type, fractional
 * integer, out of range, broken JSON, a key given twice, a raw control
 * character or invalid UTF-8 in a string, junk in a flag) fails with
 * FL_EINVAL and a message naming the source and the key (its line, or the
 * byte offset), that --ffn-layer appends and the
 * last override of a layer wins, and that to_json → apply_json reproduces the
 * struct byte for byte.
 */
#include "support.h"

#include <glob.h>    /* the shipped configs */
#include <math.h>    /* nextafter */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "model.h" /* FL_ARCH_GPT, FL_ARCH_BERT */

/* Fails printing the message unless it contains every given substring. */
static void assert_msg_has(const fl_error *err, const char *a, const char *b) {
    if (a && !strstr(err->msg, a)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, a);
    if (b && !strstr(err->msg, b)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, b);
}

/* apply_json on defaults must fail with FL_EINVAL, leave the config as it
   was, and mention want1 and want2. */
static void expect_json_error(const char *json, const char *want1, const char *want2) {
    fl_config c, before;
    fl_error err = {0};
    fl_config_defaults(&c);
    memcpy(&before, &c, sizeof c);
    fl_status st = fl_config_apply_json(&c, json, "cfg/x.json", &err);
    if (st != FL_EINVAL) fail_msg("%s: status %d, want FL_EINVAL (msg: %s)", json, (int)st, err.msg);
    assert_msg_has(&err, "cfg/x.json: ", want1);
    assert_msg_has(&err, want2, NULL);
    assert_memory_equal(&c, &before, sizeof c);
}

static void expect_set_error(const char *name, const char *value, const char *want1,
                             const char *want2) {
    fl_config c, before;
    fl_error err = {0};
    fl_config_defaults(&c);
    memcpy(&before, &c, sizeof c);
    fl_status st = fl_config_set(&c, name, value, &err);
    if (st != FL_EINVAL)
        fail_msg("--%s %s: status %d, want FL_EINVAL (msg: %s)", name, value, (int)st, err.msg);
    assert_msg_has(&err, want1, want2);
    assert_memory_equal(&c, &before, sizeof c);
}

/* ---- defaults and shipped configs ------------------------------------------ */

static void test_defaults_valid(void **state) {
    (void)state;
    fl_config c;
    fl_error err = {0};
    fl_config_defaults(&c);
    ts_assert_ok(fl_config_validate(&c, &err), &err);
    assert_int_equal(c.vocab_size, 1024);
    assert_int_equal(c.context, 128);
    assert_int_equal(c.d_model, 128);
    assert_int_equal(c.n_layers, 4);
    assert_int_equal(c.n_heads, 4);
    assert_string_equal(c.ffn, "dense");
    assert_string_equal(c.ffn_layers, "");
    assert_string_equal(c.corpus, "");
    assert_int_equal(c.corpus_bytes, 3000000);
    assert_true(c.val_fraction == 0.05);
    assert_int_equal(c.batch_size, 16);
    assert_int_equal(c.steps, 600);
    assert_true(c.lr == 3e-3);
    assert_true(c.min_lr_ratio == 0.1);
    assert_int_equal(c.warmup_steps, 50);
    assert_true(c.weight_decay == 0.1 && c.beta1 == 0.9 && c.beta2 == 0.95);
    assert_true(c.adam_eps == 1e-8 && c.grad_clip == 1.0);
    assert_true(c.seed == 1337);
    assert_int_equal(c.eval_every, 100);
    assert_int_equal(c.eval_batches, 16);
    assert_int_equal(c.ckpt_every, 0);
    assert_int_equal(c.log_every, 10);
    assert_int_equal(c.threads, 0);
    assert_string_equal(c.device, "auto");
    assert_string_equal(c.run_dir, "runs/tiny");
}

/* fl_config_defaults ignores errors (it cannot report them), so check here
   that every default text is accepted by the flag parser, and that the table
   covers the struct. */
static void test_table_well_formed(void **state) {
    (void)state;
    size_t n;
    const fl_cfg_field *f = fl_config_fields(&n);
    assert_true(n >= 30);
    size_t at = 0; /* fields are in declaration order: no overlap, gaps only padding */
    for (size_t i = 0; i < n; i++) {
        fl_config c;
        fl_error err = {0};
        fl_config_defaults(&c);
        fl_status st = fl_config_set(&c, f[i].name, f[i].def, &err);
        if (st) fail_msg("default of %s (\"%s\") rejected: %s", f[i].name, f[i].def, err.msg);
        assert_non_null(f[i].help);
        assert_true(!strcmp(f[i].group, "model") || !strcmp(f[i].group, "data") ||
                    !strcmp(f[i].group, "optim") || !strcmp(f[i].group, "run"));
        if (f[i].offset < at || f[i].offset - at >= 8)
            fail_msg("field %s at offset %zu: previous field ends at %zu", f[i].name, f[i].offset, at);
        at = f[i].offset + f[i].size;
    }
    assert_true(at <= sizeof(fl_config) && sizeof(fl_config) - at < 8);
}

static void test_config_files_valid(void **state) {
    (void)state;
    glob_t g;
    assert_int_equal(glob(FFNLAB_SOURCE_DIR "/configs/*.json", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 3);
    int saw_small = 0, saw_seed = 0, saw_encoder = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        fl_config c;
        fl_error err = {0};
        fl_config_defaults(&c);
        ts_assert_ok(fl_config_load_json(&c, g.gl_pathv[i], &err), &err);
        ts_assert_ok(fl_config_validate(&c, &err), &err);
        if (strstr(g.gl_pathv[i], "/small.json")) {
            saw_small = 1; /* the benchmark shape MEASUREMENTS.md quotes */
            assert_int_equal(c.d_model, 256);
            assert_int_equal(c.n_layers, 4);
            assert_int_equal(c.n_heads, 4);
            assert_int_equal(c.context, 256);
            assert_int_equal(c.batch_size, 16);
            assert_int_equal(c.vocab_size, 4096);
        }
        if (strstr(g.gl_pathv[i], "/base.json")) {
            assert_int_equal(c.d_model, 512);
            assert_int_equal(c.n_layers, 8);
            assert_int_equal(c.n_heads, 8);
            assert_int_equal(c.context, 256);
        }
        if (strstr(g.gl_pathv[i], "/seed.json")) { /* the study's decoder */
            saw_seed = 1;
            assert_int_equal(c.d_model, 256);
            assert_int_equal(c.n_layers, 2);
            assert_int_equal(c.n_heads, 4);
            assert_int_equal(c.context, 512);
            assert_int_equal(c.vocab_size, 10000);
            assert_string_equal(c.ffn, "dense:d_ff=4096");
            assert_non_null(strstr(c.notes, "Differences from the study"));
            uint64_t local = 0; /* GPT-Neo's alternation: layer 0 global, layer 1 local over 256 */
            ts_assert_ok(fl_config_local_layers(&c, &local, &err), &err);
            assert_int_equal(local, 2);
            assert_int_equal(c.attention_window, 256);
            assert_int_equal(fl_config_arch(&c), FL_ARCH_GPT);
        }
        if (strstr(g.gl_pathv[i], "/seed-encoder.json")) { /* the study's encoder: the decoder's shape */
            saw_encoder = 1;
            assert_int_equal(fl_config_arch(&c), FL_ARCH_BERT);
            assert_true(c.d_model == 256 && c.n_layers == 2 && c.n_heads == 4 && c.context == 512);
            assert_int_equal(c.vocab_size, 10000);
            assert_string_equal(c.ffn, "dense:d_ff=4096");
            uint64_t local = 1;
            ts_assert_ok(fl_config_local_layers(&c, &local, &err), &err);
            assert_int_equal(local, 0); /* RoBERTa attends globally */
            assert_true(fabs(c.mask_prob - 0.15) < 1e-12);
        }
    }
    globfree(&g);
    assert_true(saw_small && saw_seed && saw_encoder);
}

/* --config NAME finds configs/NAME.json (here: the source tree's, since the
   test runs elsewhere); a path is used as given; an unknown name is one line
   naming the places searched. */
static void test_config_by_name(void **state) {
    (void)state;
    char path[4200];
    fl_error err = {0};
    ts_assert_ok(fl_config_resolve("seed", path, sizeof path, &err), &err);
    const size_t n = strlen(path);
    assert_true(n > 17 && !strcmp(path + n - 17, "configs/seed.json"));
    ts_assert_ok(fl_config_resolve(FFNLAB_SOURCE_DIR "/configs/tiny.json", path, sizeof path, &err), &err);
    assert_string_equal(path, FFNLAB_SOURCE_DIR "/configs/tiny.json");
    assert_int_equal(fl_config_resolve("nosuch", path, sizeof path, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "--config nosuch: no such file, and no nosuch.json in configs"));
    assert_int_equal(fl_config_resolve("/nonexistent/x.json", path, sizeof path, &err), FL_EINVAL);
}

/* ---- JSON errors ----------------------------------------------------------- */

static void test_json_unknown_key(void **state) {
    (void)state;
    expect_json_error("{\"n_layer\": 3}", "unknown key \"n_layer\"", "did you mean \"n_layers\"");
    expect_json_error("{\"learning_rate_xyz\": 3}", "unknown key \"learning_rate_xyz\"",
                      "known keys: vocab_size, context");
}

static void test_json_wrong_type(void **state) {
    (void)state;
    expect_json_error("{\"lr\": \"fast\"}", "key \"lr\": expected a number", "got a string");
    expect_json_error("{\"d_model\": true}", "key \"d_model\": expected an integer", NULL);
    expect_json_error("{\"ffn\": 3}", "key \"ffn\": expected a string", NULL);
    expect_json_error("{\"ffn_layers\": [\"0=moe\", 4]}", "key \"ffn_layers\"", "element 1");
    expect_json_error("{\"seed\": null}", "key \"seed\"", "got null");
}

static void test_json_not_integral(void **state) {
    (void)state;
    expect_json_error("{\"steps\": 1.5}", "key \"steps\": expected an integer", "1.5");
    expect_json_error("{\"seed\": 2.5}", "key \"seed\"", "integer");
    /* a seed past 2^53 as a number would be silently rounded */
    expect_json_error("{\"seed\": 12345678901234567890}", "key \"seed\"", "string");
}

static void test_json_out_of_range(void **state) {
    (void)state;
    expect_json_error("{\"n_layers\": 0}", "key \"n_layers\" = 0 is out of range [1, 64]", NULL);
    expect_json_error("{\"n_heads\": 65}", "key \"n_heads\" = 65 is out of range", NULL);
    expect_json_error("{\"lr\": 0}", "key \"lr\" = 0 is out of range (0, 10]", NULL);
    expect_json_error("{\"val_fraction\": 0.75}", "key \"val_fraction\"", "(0, 0.5]");
    expect_json_error("{\"vocab_size\": 100}", "key \"vocab_size\" = 100", "[257, 1048576]");
    expect_json_error("{\"steps\": 1e30}", "key \"steps\" = 1e+30 is out of range", NULL);
    expect_json_error("{\"beta2\": 1}", "key \"beta2\" = 1 is out of range [0, 1)", NULL);
    expect_json_error("{\"device\": \"gpu\"}", "key \"device\"", "\"gpu\"");
    expect_json_error("{\"ffn\": \"\"}", "key \"ffn\"", "empty");
}

static void test_json_syntax(void **state) {
    (void)state;
    expect_json_error("{\"lr\": 1,,}", "invalid JSON near byte", "line 1");
    expect_json_error("{\n  \"lr\": 1\n  \"steps\": 2\n}", "invalid JSON near byte", "line 3");
    expect_json_error("", "invalid JSON near byte 0", NULL);
    expect_json_error("{\"lr\": 1} trailing", "invalid JSON", NULL);
    expect_json_error("[1, 2]", "expected a JSON object", NULL);
}

/* What cJSON lets through: the last "n_layers" would silently win. */
static void test_json_strict(void **state) {
    (void)state;
    expect_json_error("{\"n_layers\": 2,\n \"d_model\": 64,\n \"n_layers\": 12}", "line 3: duplicate key \"n_layers\"", NULL);
    expect_json_error("{\"ffn\": \"dense\", \"\\u0066fn\": \"moe\"}", "duplicate key", NULL);
    expect_json_error("{\"notes\": \"a\tb\"}", "raw control character 0x09 in a string at byte 12", NULL);
    expect_json_error("{\"notes\": \"caf\xe9\"}", "invalid UTF-8 in a string at byte 14", NULL);
    expect_json_error("{\"ffn\": \"dense\\u0000moe\"}", "\\u0000", NULL);
}

static void test_json_applies_and_loads(void **state) {
    (void)state;
    fl_config c;
    fl_error err = {0};
    fl_config_defaults(&c);
    ts_assert_ok(fl_config_apply_json(&c,
                                      "{\"d_model\": 64, \"lr\": 1e-3, \"steps\": 1000000000000,"
                                      " \"seed\": \"18446744073709551615\", \"device\": \"cuda:1\","
                                      " \"ffn_layers\": \"3=pkm:heads=4;0=dense\"}",
                                      "x", &err),
                 &err);
    assert_int_equal(c.d_model, 64);
    assert_true(c.lr == 1e-3);
    assert_true(c.steps == 1000000000000LL);
    assert_true(c.seed == UINT64_MAX);
    assert_string_equal(c.device, "cuda:1");
    assert_string_equal(c.ffn_layers, "3=pkm:heads=4;0=dense");
    /* an array sets the list, replacing what was there */
    ts_assert_ok(fl_config_apply_json(&c, "{\"ffn_layers\": [\"1=moe:experts=8\", \"2=pkm\"]}", "x", &err),
                 &err);
    assert_string_equal(c.ffn_layers, "1=moe:experts=8;2=pkm");

    /* from a file: missing file is an I/O error naming it; errors name the path */
    char *dir = ts_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/missing.json", dir);
    assert_int_equal(fl_config_load_json(&c, path, &err), FL_EIO);
    assert_msg_has(&err, path, NULL);
    snprintf(path, sizeof path, "%s/bad.json", dir);
    const char *bad = "{\"n_heads\": \"four\"}";
    assert_int_equal(ts_write_file(path, bad, strlen(bad)), 0);
    assert_int_equal(fl_config_load_json(&c, path, &err), FL_EINVAL);
    assert_msg_has(&err, path, "key \"n_heads\": expected an integer");
    ts_rmtree(dir);
    free(dir);
}

/* ---- flags ------------------------------------------------------------------ */

static void test_set_from_text(void **state) {
    (void)state;
    fl_config c;
    fl_error err = {0};
    fl_config_defaults(&c);
    ts_assert_ok(fl_config_set(&c, "d_model", "256", &err), &err);
    ts_assert_ok(fl_config_set(&c, "n-heads", "8", &err), &err); /* dashes also accepted */
    ts_assert_ok(fl_config_set(&c, "lr", "6e-4", &err), &err);
    ts_assert_ok(fl_config_set(&c, "steps", "1e4", &err), &err); /* exact integer in e-notation */
    ts_assert_ok(fl_config_set(&c, "seed", "18446744073709551615", &err), &err);
    ts_assert_ok(fl_config_set(&c, "device", "cpu", &err), &err);
    ts_assert_ok(fl_config_set(&c, "corpus", "data/stories.txt", &err), &err);
    assert_int_equal(c.d_model, 256);
    assert_int_equal(c.n_heads, 8);
    assert_true(c.lr == 6e-4);
    assert_int_equal(c.steps, 10000);
    assert_true(c.seed == UINT64_MAX);
    assert_string_equal(c.device, "cpu");
    assert_string_equal(c.corpus, "data/stories.txt");
    ts_assert_ok(fl_config_validate(&c, &err), &err);

    expect_set_error("lr", "3e-3x", "--lr: \"3e-3x\" is not a number", NULL);
    expect_set_error("lr", "nan", "--lr", "not a number");
    expect_set_error("lr", "", "--lr", "not a number");
    expect_set_error("steps", "12abc", "--steps: \"12abc\" is not an integer", NULL);
    expect_set_error("steps", "1.5", "--steps", "not an integer");
    expect_set_error("n_layers", "0", "--n-layers: 0 is out of range [1, 64]", NULL);
    expect_set_error("context", "99999999999999999999", "--context", "out of range");
    expect_set_error("seed", "-1", "--seed", "not an integer");
    expect_set_error("seed", "18446744073709551616", "--seed", "not an integer");
    expect_set_error("device", "gpu", "--device", "\"gpu\"");
    expect_set_error("device", "cuda:", "--device", NULL);
    expect_set_error("lrr", "1", "unknown option --lrr", "did you mean --lr?");
    expect_set_error("d_modle", "1", "unknown option --d_modle", "--d-model");
    expect_set_error("ffn_layer", "pkm", "--ffn-layer: \"pkm\" is not LAYER=SPEC", NULL);
    expect_set_error("ffn_layer", "x=pkm", "--ffn-layer:", "LAYER=SPEC");
    expect_set_error("ffn_layer", "3=", "--ffn-layer:", "LAYER=SPEC");

    char longv[2000];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    expect_set_error("corpus", longv, "--corpus", "longer than the 1023 allowed");
}

/* ---- ffn_layers ---------------------------------------------------------------- */

static void expect_layer(const fl_config *c, int layer, const char *want) {
    char out[FL_SPEC_MAX];
    fl_error err = {0};
    ts_assert_ok(fl_config_layer_ffn(c, layer, out, sizeof out, &err), &err);
    assert_string_equal(out, want);
}

static void test_ffn_layers(void **state) {
    (void)state;
    fl_config c;
    fl_error err = {0};
    fl_config_defaults(&c);
    ts_assert_ok(fl_config_set(&c, "ffn", "moe:experts=4", &err), &err);
    ts_assert_ok(fl_config_set(&c, "ffn_layer", "3=pkm:heads=4", &err), &err);
    ts_assert_ok(fl_config_set(&c, "ffn_layers", "1=moe:experts=8,top_k=2", &err), &err);
    ts_assert_ok(fl_config_set(&c, "ffn-layer", " 3 = dense ", &err), &err);
    assert_string_equal(c.ffn_layers, "3=pkm:heads=4;1=moe:experts=8,top_k=2; 3 = dense ");
    ts_assert_ok(fl_config_validate(&c, &err), &err);
    expect_layer(&c, 0, "moe:experts=4");
    expect_layer(&c, 1, "moe:experts=8,top_k=2");
    expect_layer(&c, 2, "moe:experts=4");
    expect_layer(&c, 3, "dense"); /* the last override of layer 3 wins */

    char small[4];
    assert_int_equal(fl_config_layer_ffn(&c, 1, small, sizeof small, &err), FL_EINVAL);
    assert_int_equal(fl_config_layer_ffn(&c, 4, small, sizeof small, &err), FL_EINVAL);
    assert_int_equal(fl_config_layer_ffn(&c, -1, small, sizeof small, &err), FL_EINVAL);

    /* an override for a layer the model does not have */
    ts_assert_ok(fl_config_set(&c, "n_layers", "3", &err), &err);
    assert_int_equal(fl_config_validate(&c, &err), FL_EINVAL);
    assert_msg_has(&err, "ffn_layers", "names layer 3, but n_layers = 3");

    /* a malformed list written into the struct directly */
    fl_config_defaults(&c);
    snprintf(c.ffn_layers, sizeof c.ffn_layers, "1=dense;oops");
    assert_int_equal(fl_config_validate(&c, &err), FL_EINVAL);
    assert_msg_has(&err, "\"oops\"", "LAYER=SPEC");
    assert_int_equal(fl_config_layer_ffn(&c, 0, small, sizeof small, &err), FL_EINVAL);
}

static void test_validate_cross_field(void **state) {
    (void)state;
    fl_config c;
    fl_error err = {0};
    fl_config_defaults(&c);
    c.d_model = 130;
    assert_int_equal(fl_config_validate(&c, &err), FL_EINVAL);
    assert_msg_has(&err, "d_model = 130", "n_heads = 4");
    fl_config_defaults(&c);
    c.warmup_steps = 700;
    assert_int_equal(fl_config_validate(&c, &err), FL_EINVAL);
    assert_msg_has(&err, "warmup_steps = 700", "steps = 600");
    fl_config_defaults(&c);
    c.n_heads = 0; /* range first: never divide by zero */
    assert_int_equal(fl_config_validate(&c, &err), FL_EINVAL);
    assert_msg_has(&err, "n_heads = 0 is out of range", NULL);
    fl_config_defaults(&c);
    c.lr = -1;
    assert_int_equal(fl_config_validate(&c, &err), FL_EINVAL);
    assert_msg_has(&err, "lr = -1", NULL);
    fl_config_defaults(&c);
    memset(c.device, 'x', sizeof c.device); /* no NUL */
    assert_int_equal(fl_config_validate(&c, &err), FL_EINVAL);
    assert_msg_has(&err, "device", "NUL");
}

/* ---- JSON output ---------------------------------------------------------------- */

static void roundtrip(const fl_config *c1) {
    char *json = fl_config_to_json(c1);
    assert_non_null(json);
    fl_config c2;
    fl_error err = {0};
    fl_config_defaults(&c2);
    c2.d_model = 8; /* every field is written, so whatever c2 held is overwritten */
    snprintf(c2.ffn_layers, sizeof c2.ffn_layers, "0=something");
    ts_assert_ok(fl_config_apply_json(&c2, json, "roundtrip", &err), &err);
    if (memcmp(c1, &c2, sizeof c2) != 0) fail_msg("round trip differs; JSON was:\n%s", json);
    free(json);
}

static void test_json_roundtrip(void **state) {
    (void)state;
    fl_config c;
    fl_error err = {0};
    fl_config_defaults(&c);
    roundtrip(&c);

    c.lr = 0.1 + 0.2; /* 0.30000000000000004: cJSON's 15-digit printing would lose it */
    c.beta2 = nextafter(0.95, 1.0);
    c.weight_decay = 1e-300;
    c.min_lr_ratio = 1.0 / 3.0;
    c.val_fraction = 0.5;
    c.steps = 999999999999LL;
    c.corpus_bytes = 1099511627775LL;
    c.warmup_steps = 123456789012LL;
    c.seed = UINT64_MAX; /* past 2^53: written as a string */
    ts_assert_ok(fl_config_set(&c, "corpus", "dir with \"quotes\"/\xc3\xbcn\xc3\xaf" "code\t.txt", &err), &err);
    ts_assert_ok(fl_config_set(&c, "ffn_layer", "2=pkm:heads=4,knn=14", &err), &err);
    ts_assert_ok(fl_config_set(&c, "ffn_layer", "0=moe", &err), &err);
    ts_assert_ok(fl_config_validate(&c, &err), &err);
    roundtrip(&c);

    /* the seed: a number while a JSON number holds it exactly, else a string */
    const uint64_t seeds[] = {0, 9007199254740992ULL, 9007199254740993ULL, UINT64_MAX};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        c.seed = seeds[i];
        roundtrip(&c);
        char *json = fl_config_to_json(&c);
        cJSON *root = cJSON_Parse(json);
        assert_non_null(root);
        cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "seed");
        assert_true(seeds[i] <= 9007199254740992ULL ? cJSON_IsNumber(s) : cJSON_IsString(s));
        /* every field appears */
        size_t n;
        const fl_cfg_field *f = fl_config_fields(&n);
        for (size_t k = 0; k < n; k++) assert_non_null(cJSON_GetObjectItemCaseSensitive(root, f[k].name));
        cJSON_Delete(root);
        free(json);
    }
}

static void test_print_help(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fl_config_print_help(f);
    fclose(f);
    const char *want[] = {"Model:", "Data:", "Optimisation:", "Run:", "--d-model N", "--ffn-layer L=SPEC",
                          "--lr X", "default: 3e-3", "range (0, 10]", "--run-dir PATH",
                          "default: \"runs/tiny\""};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(buf, want[i])) fail_msg("help lacks \"%s\":\n%s", want[i], buf);
    /* groups in order: model fields come before optimiser fields */
    assert_true(strstr(buf, "--d-model") < strstr(buf, "--lr "));
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_table_well_formed),
        cmocka_unit_test(test_config_files_valid),
        cmocka_unit_test(test_config_by_name),
        cmocka_unit_test(test_json_unknown_key),
        cmocka_unit_test(test_json_wrong_type),
        cmocka_unit_test(test_json_not_integral),
        cmocka_unit_test(test_json_out_of_range),
        cmocka_unit_test(test_json_syntax),
        cmocka_unit_test(test_json_strict),
        cmocka_unit_test(test_json_applies_and_loads),
        cmocka_unit_test(test_set_from_text),
        cmocka_unit_test(test_ffn_layers),
        cmocka_unit_test(test_validate_cross_field),
        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_print_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
