/*
 * tests/test_loader.c — finding, loading and refusing plugins (core/loader.c)
 * and the `ffnlab plugins` command built on it.
 *
 * tests/plugins/ holds one deliberately broken plugin per check the loader
 * makes (built into FFNLAB_TEST_PLUGIN_DIR as <stem>.so, stems like
 * ffn_abimajor so the name-vs-file check is live); each must be refused with
 * the right status and a message naming the file and the specific reason.
 * The real ffn_dense is loaded by name (ctest sets FFNLAB_PLUGIN_PATH to the
 * build's plugin folder) and by path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>     /* snprintf */
#include <stdlib.h>    /* setenv, getenv, free */
#include <string.h>    /* strstr */
#include <sys/stat.h>  /* mkdir */
#include <unistd.h>    /* readlink */

#include "backend.h"   /* fl_backend_cpu */
#include "ffn_layer.h" /* fl_ffn_layer_create */
#include "host_table.h"
#include "loader.h"
#include "support.h"

#define DENSE_PATH FFNLAB_PLUGIN_BUILD_DIR "/ffn_dense.so"

/* The environment the test started with, restored after tests that change it. */
static char g_env_path[8192];
static int g_env_had;

static void env_save(void) {
    const char *p = getenv("FFNLAB_PLUGIN_PATH");
    g_env_had = p != NULL;
    snprintf(g_env_path, sizeof g_env_path, "%s", p ? p : "");
}

static void env_restore(void) {
    if (g_env_had)
        setenv("FFNLAB_PLUGIN_PATH", g_env_path, 1);
    else
        unsetenv("FFNLAB_PLUGIN_PATH");
}

static void assert_contains(const char *text, const char *sub) {
    if (!strstr(text, sub)) fail_msg("\"%s\" lacks \"%s\"", text, sub);
}

/* ------------------------------------------------------------------------ */
/* Good plugins                                                               */
/* ------------------------------------------------------------------------ */

static void check_dense(const fl_plugin *p) {
    const fl_plugin_header *h = p->header;
    assert_non_null(p->handle);
    assert_non_null(h);
    assert_string_equal(h->name, "dense");
    assert_int_equal(h->kind, FL_PLUGIN_FFN);
    assert_int_equal(h->abi_major, FL_FFN_ABI_MAJOR);
    assert_true(h->n_options >= 3);
    const char *base = strrchr(p->path, '/');
    assert_non_null(base);
    assert_string_equal(base, "/ffn_dense.so");
    const fl_ffn_plugin *f = fl_plugin_ffn(p);
    assert_non_null(f->create);
    assert_non_null(f->forward);
    assert_non_null(f->backward);
    assert_non_null(f->destroy);
}

static void test_load_dense_by_name(void **state) {
    (void)state;
    fl_plugin p;
    fl_error err = {0};
    ts_assert_ok(fl_plugin_load("dense", FL_PLUGIN_FFN, &p, &err), &err);
    check_dense(&p);
    fl_plugin_unload(&p);
    assert_null(p.handle);
    ts_assert_ok(fl_plugin_load("dense", 0, &p, &err), &err); /* any kind */
    check_dense(&p);
    fl_plugin_unload(&p);
}

static void test_load_dense_by_path(void **state) {
    (void)state;
    fl_plugin p;
    fl_error err = {0};
    ts_assert_ok(fl_plugin_load(DENSE_PATH, FL_PLUGIN_FFN, &p, &err), &err);
    check_dense(&p);
    assert_string_equal(p.path, DENSE_PATH);
    /* Two loads of one file are two handles on one library. */
    fl_plugin q;
    ts_assert_ok(fl_plugin_load(DENSE_PATH, FL_PLUGIN_FFN, &q, &err), &err);
    assert_ptr_equal(p.header, q.header);
    fl_plugin_unload(&q);
    fl_plugin_unload(&p);
}

/* The first folder of FFNLAB_PLUGIN_PATH wins over the build's folder. */
static void test_search_order(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), copy[4200], path[8400];
    size_t len;
    char *data = ts_read_file(DENSE_PATH, &len);
    assert_non_null(data);
    snprintf(copy, sizeof copy, "%s/ffn_dense.so", dir);
    assert_int_equal(ts_write_file(copy, data, len), 0);
    free(data);
    snprintf(path, sizeof path, "%s::%s", dir, FFNLAB_PLUGIN_BUILD_DIR);
    setenv("FFNLAB_PLUGIN_PATH", path, 1);
    fl_plugin p;
    fl_error err = {0};
    ts_assert_ok(fl_plugin_load("dense", FL_PLUGIN_FFN, &p, &err), &err);
    assert_string_equal(p.path, copy);
    fl_plugin_unload(&p);
    env_restore();
    ts_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------------ */
/* Broken plugins                                                             */
/* ------------------------------------------------------------------------ */

typedef struct broken_case {
    const char *stem;
    fl_status code;
    const char *reason[3]; /* substrings of the message, besides the path */
} broken_case;

static char abi_major_text[64], abi_minor_text[64], abi_old_text[64];

static const broken_case BROKEN[] = {
    {"not_a_plugin", FL_EINVAL, {"not an ffnlab plugin", "symbol ffnlab_plugin_v1 missing"}},
    {"ffn_nosym", FL_EINVAL, {"not an ffnlab plugin", "symbol ffnlab_plugin_v1 missing"}},
    {"ffn_nulldesc", FL_EINVAL, {"returned NULL"}},
    {"ffn_badmagic", FL_EABI, {"magic", "0x12345678"}},
    {"ffn_abimajor", FL_EABI, {abi_major_text, "rebuild the plugin"}},
    {"ffn_abiminor", FL_EABI, {abi_minor_text, "rebuild the plugin"}},
    {"ffn_abiold", FL_EABI, {abi_old_text, "rebuild the plugin"}}, /* 1.x: before plugins owned their kernels */
    {"ffn_smallstruct", FL_EABI, {"struct_size", "smaller"}},
    {"ffn_wrongkind", FL_EINVAL, {"kind", "task", "expected ffn"}},
    {"ffn_badname", FL_EINVAL, {"'other'", "does not match the file name", "ffn_other.so"}},
    {"ffn_nobackward", FL_EINVAL, {"'backward'", "NULL"}},
    {"ffn_baddefault", FL_EINVAL, {"default", "'width'", "out of range"}},
    {"ffn_dupopt", FL_EINVAL, {"'width'", "twice"}},
    {"ffn_badsize", FL_EINVAL, {"size option 'act'", "integer options"}},
};
#define N_BROKEN (sizeof BROKEN / sizeof BROKEN[0])

static int setup_texts(void **state) {
    (void)state;
    env_save();
    snprintf(abi_major_text, sizeof abi_major_text, "ABI version %d.%d found, host supports %d.%d",
             FL_FFN_ABI_MAJOR + 1, FL_FFN_ABI_MINOR, FL_FFN_ABI_MAJOR, FL_FFN_ABI_MINOR);
    snprintf(abi_minor_text, sizeof abi_minor_text, "ABI version %d.%d found, host supports %d.%d",
             FL_FFN_ABI_MAJOR, FL_FFN_ABI_MINOR + 1, FL_FFN_ABI_MAJOR, FL_FFN_ABI_MINOR);
    snprintf(abi_old_text, sizeof abi_old_text, "ABI version 1.3 found, host supports %d.%d", FL_FFN_ABI_MAJOR,
             FL_FFN_ABI_MINOR);
    return 0;
}

static void expect_refused(const char *what, int kind, fl_status code, const char *in_msg,
                           const char *const *reason, int n_reason) {
    fl_plugin p;
    fl_error err = {0};
    fl_status st = fl_plugin_load(what, kind, &p, &err);
    print_message("  %s\n", err.msg);
    if (st != code) fail_msg("%s: status %d, want %d (%s)", what, st, code, err.msg);
    assert_null(p.handle);
    assert_null(p.header);
    assert_null(strchr(err.msg, '\n'));
    assert_contains(err.msg, in_msg);
    for (int i = 0; i < n_reason; i++)
        if (reason[i]) assert_contains(err.msg, reason[i]);
}

static void test_broken_by_path(void **state) {
    (void)state;
    for (size_t i = 0; i < N_BROKEN; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.so", FFNLAB_TEST_PLUGIN_DIR, BROKEN[i].stem);
        expect_refused(path, FL_PLUGIN_FFN, BROKEN[i].code, path, BROKEN[i].reason, 3);
    }
}

/* Found by name through FFNLAB_PLUGIN_PATH, the checks are the same. */
static void test_broken_by_name(void **state) {
    (void)state;
    setenv("FFNLAB_PLUGIN_PATH", FFNLAB_TEST_PLUGIN_DIR, 1);
    for (size_t i = 0; i < N_BROKEN; i++) {
        if (strncmp(BROKEN[i].stem, "ffn_", 4)) continue;
        expect_refused(BROKEN[i].stem + 4, FL_PLUGIN_FFN, BROKEN[i].code, FFNLAB_TEST_PLUGIN_DIR,
                       BROKEN[i].reason, 3);
    }
    env_restore();
}

/* A plugin whose `devices` lacks the host's device loads (its descriptor is
   valid), but a layer of it on that device is refused with one line naming
   the plugin file, the device and the devices it runs on. */
static void test_device_not_supported(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/ffn_gpuonly.so", FFNLAB_TEST_PLUGIN_DIR);
    fl_host h;
    fl_host_init(&h, fl_backend_cpu(), NULL);
    fl_param_list params = {0};
    fl_ffn_layer L;
    fl_error err = {0};
    const fl_ffn_site site = {.d_model = 8, .index = 1, .n_layers = 2, .vocab_size = 64, .seed = 1};
    assert_int_equal(fl_ffn_layer_create(&L, &h, &params, path, &site, &err), FL_EUNSUPPORTED);
    print_message("  %s\n", err.msg);
    assert_null(L.layer);
    assert_null(strchr(err.msg, '\n'));
    assert_contains(err.msg, "layer 1");
    assert_contains(err.msg, path);
    assert_contains(err.msg, "no code for cpu");
    assert_contains(err.msg, "runs on: cuda");
    fl_ffn_layer_destroy(&L);
    fl_params_free(&params, fl_backend_cpu());
}

static void test_wrong_kind_requested(void **state) {
    (void)state;
    const char *reason[] = {"kind", "expected task"};
    expect_refused(DENSE_PATH, FL_PLUGIN_TASK, FL_EINVAL, DENSE_PATH, reason, 2);
}

static void test_not_elf(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4200], empty[4200], sub[4200];
    snprintf(path, sizeof path, "%s/ffn_garbage.so", dir);
    const char text[] = "this is not an ELF file\n";
    assert_int_equal(ts_write_file(path, text, sizeof text - 1), 0);
    const char *reason[] = {"not a plugin", "dlopen failed"};
    expect_refused(path, FL_PLUGIN_FFN, FL_EINVAL, path, reason, 2);
    snprintf(empty, sizeof empty, "%s/ffn_empty.so", dir);
    assert_int_equal(ts_write_file(empty, "", 0), 0);
    expect_refused(empty, FL_PLUGIN_FFN, FL_EINVAL, empty, reason, 2);
    snprintf(sub, sizeof sub, "%s/ffn_folder.so", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    expect_refused(sub, FL_PLUGIN_FFN, FL_EINVAL, sub, reason, 2);
    /* By name, a non-ELF file in the search path is refused the same way. */
    setenv("FFNLAB_PLUGIN_PATH", dir, 1);
    expect_refused("garbage", FL_PLUGIN_FFN, FL_EINVAL, path, reason, 2);
    env_restore();
    ts_rmtree(dir);
    free(dir);
}

static void test_not_found(void **state) {
    (void)state;
    setenv("FFNLAB_PLUGIN_PATH", "/nonexistent/one:" FFNLAB_TEST_PLUGIN_DIR, 1);
    const char *reason[] = {"plugin not found", "searched:", "/nonexistent/one",
                            FFNLAB_TEST_PLUGIN_DIR, FFNLAB_PLUGIN_BUILD_DIR, "/lib/ffnlab/plugins"};
    expect_refused("nosuchplugin", FL_PLUGIN_FFN, FL_EINVAL, "ffn_nosuchplugin", reason, 6);
    expect_refused("nosuchplugin", 0, FL_EINVAL, "task_nosuchplugin", reason, 6);
    env_restore();
    const char *io[] = {"cannot open"};
    expect_refused("/nonexistent/ffn_x.so", FL_PLUGIN_FFN, FL_EIO, "/nonexistent/ffn_x.so", io, 1);
    const char *empty[] = {"empty"};
    expect_refused("", FL_PLUGIN_FFN, FL_EINVAL, "plugin", empty, 1);
}

/* ------------------------------------------------------------------------ */
/* Discovery                                                                  */
/* ------------------------------------------------------------------------ */

/* The order for a bare name: $FFNLAB_PLUGIN_PATH, the install's folder next
   to the running program (<dir of /proc/self/exe>/../lib/ffnlab/plugins),
   then the build tree's folder, since this test runs from its build tree.
   (The installed program, outside any build tree, is test_sdk_out_of_tree's.) */
static void test_search_folders(void **state) {
    (void)state;
    setenv("FFNLAB_PLUGIN_PATH", "/first:/second::/first", 1);
    char **dirs, exe[4096];
    size_t n;
    fl_error err = {0};
    ts_assert_ok(fl_plugin_search_dirs(&dirs, &n, &err), &err);
    for (size_t i = 0; i < n; i++) print_message("searched %zu: %s\n", i, dirs[i]);
    assert_int_equal(n, 4);
    assert_string_equal(dirs[0], "/first");
    assert_string_equal(dirs[1], "/second");
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(len > 0);
    exe[len] = 0;
    *strrchr(exe, '/') = 0; /* this program's folder: build/tests */
    assert_int_equal(strncmp(dirs[2], exe, strlen(exe)), 0);
    assert_contains(dirs[2], "lib/ffnlab/plugins");
    assert_string_equal(dirs[3], FFNLAB_PLUGIN_BUILD_DIR);
    fl_plugin_paths_free(dirs, n);
    unsetenv("FFNLAB_PLUGIN_PATH");
    ts_assert_ok(fl_plugin_search_dirs(&dirs, &n, &err), &err);
    assert_int_equal(n, 2);
    assert_string_equal(dirs[1], FFNLAB_PLUGIN_BUILD_DIR);
    fl_plugin_paths_free(dirs, n);
    env_restore();
}

static int list_has(char **paths, size_t n, const char *suffix) {
    int hits = 0;
    size_t k = strlen(suffix);
    for (size_t i = 0; i < n; i++) {
        size_t m = strlen(paths[i]);
        hits += m >= k && !strcmp(paths[i] + m - k, suffix);
    }
    return hits;
}

static void test_discover(void **state) {
    (void)state;
    setenv("FFNLAB_PLUGIN_PATH", FFNLAB_TEST_PLUGIN_DIR ":" FFNLAB_PLUGIN_BUILD_DIR, 1);
    char **paths;
    size_t n;
    fl_error err = {0};
    ts_assert_ok(fl_plugin_discover(FL_PLUGIN_FFN, &paths, &n, &err), &err);
    assert_int_equal(list_has(paths, n, "/ffn_dense.so"), 1);
    assert_int_equal(list_has(paths, n, "/ffn_abimajor.so"), 1);
    assert_int_equal(list_has(paths, n, "/not_a_plugin.so"), 0);
    /* Loading everything found never crashes: each is loaded or refused with a message. */
    int ok = 0;
    for (size_t i = 0; i < n; i++) {
        fl_plugin p;
        fl_status st = fl_plugin_load(paths[i], FL_PLUGIN_FFN, &p, &err);
        if (st == FL_OK) {
            ok++;
            fl_plugin_unload(&p);
        } else {
            assert_true(st == FL_EINVAL || st == FL_EABI);
            assert_contains(err.msg, paths[i]);
        }
    }
    assert_true(ok >= 1);
    fl_plugin_paths_free(paths, n);

    ts_assert_ok(fl_plugin_discover(FL_PLUGIN_TASK, &paths, &n, &err), &err);
    assert_int_equal(list_has(paths, n, "/ffn_dense.so"), 0);
    fl_plugin_paths_free(paths, n);
    env_restore();
}

/* ------------------------------------------------------------------------ */
/* The `ffnlab plugins` command                                               */
/* ------------------------------------------------------------------------ */

static int run_cli(const char *plugin_path, const char *args, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "FFNLAB_PLUGIN_PATH='%s' '%s' plugins %s", plugin_path,
             ts_ffnlab_bin(), args);
    int rc = ts_run(cmd, out);
    print_message("$ ffnlab plugins %s  (exit %d)\n%s", args, rc, *out);
    return rc;
}

static void test_cli_list(void **state) {
    (void)state;
    char *out;
    assert_int_equal(run_cli(FFNLAB_PLUGIN_BUILD_DIR, "", &out), 0);
    assert_contains(out, "dense");
    assert_contains(out, "ffn");
    assert_contains(out, "1.0");
    assert_contains(out, "GPT-2 MLP");
    assert_contains(out, DENSE_PATH);
    free(out);
    /* Broken files on the path are reported and skipped, not fatal. */
    assert_int_equal(run_cli(FFNLAB_TEST_PLUGIN_DIR ":" FFNLAB_PLUGIN_BUILD_DIR, "", &out), 0);
    assert_contains(out, "dense");
    assert_contains(out, "ffn_abimajor.so");
    assert_contains(out, "ABI version");
    free(out);
}

static void test_cli_show(void **state) {
    (void)state;
    char *out;
    assert_int_equal(run_cli(FFNLAB_PLUGIN_BUILD_DIR, "dense", &out), 0);
    const char *want[] = {"dense", "ffn", "d_ff", "activation", "glu", "gelu|relu|silu",
                          "(derived)", "[1, 1048576]", "true|false", DENSE_PATH};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) assert_contains(out, want[i]);
    free(out);
    assert_int_equal(run_cli("/nonexistent", DENSE_PATH, &out), 0); /* by path */
    assert_contains(out, "d_ff");
    free(out);
}

static void test_cli_errors(void **state) {
    (void)state;
    char *out;
    assert_int_equal(run_cli(FFNLAB_PLUGIN_BUILD_DIR, "nosuchplugin", &out), 1);
    assert_contains(out, "plugin not found");
    assert_contains(out, "nosuchplugin");
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* one line */
    free(out);
    assert_int_equal(run_cli(FFNLAB_PLUGIN_BUILD_DIR, FFNLAB_TEST_PLUGIN_DIR "/ffn_abimajor.so", &out), 1);
    assert_contains(out, "ABI version");
    free(out);
    assert_int_equal(run_cli(FFNLAB_PLUGIN_BUILD_DIR, "a b", &out), 2);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_dense_by_name),
        cmocka_unit_test(test_load_dense_by_path),
        cmocka_unit_test(test_search_order),
        cmocka_unit_test(test_broken_by_path),
        cmocka_unit_test(test_broken_by_name),
        cmocka_unit_test(test_wrong_kind_requested),
        cmocka_unit_test(test_device_not_supported),
        cmocka_unit_test(test_not_elf),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_search_folders),
        cmocka_unit_test(test_discover),
        cmocka_unit_test(test_cli_list),
        cmocka_unit_test(test_cli_show),
        cmocka_unit_test(test_cli_errors),
    };
    return cmocka_run_group_tests(tests, setup_texts, NULL);
}
