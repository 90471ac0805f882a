/*
 * tests/test_sdk_out_of_tree.c — the SDK as a third-party plugin author uses it.
 *
 * What a user outside this tree does, end to end, in a temporary folder:
 *   1. `cmake --install <this build> --prefix TMP/prefix` (ffnlab, the
 *      plugins, the SDK headers, the CMake package, ffnlab-conformance);
 *      then the install is moved to TMP/moved: a relocated install finds
 *      its own plugins from its own folder, with no environment variable
 *      and without the build tree (`ffnlab plugins` lists the folders it
 *      searched, and this build's is not among them), and trains 5 steps;
 *   2. configure examples/ffn_template against it with
 *      CMAKE_PREFIX_PATH=TMP/prefix (find_package(ffnlab) must resolve to the
 *      install, not to this source tree) and build ffn_template.so, with
 *      its own kernel for the CPU (units.c) and, when CMake finds a CUDA
 *      compiler, for CUDA (units.cu);
 *   3. `TMP/prefix/bin/ffnlab plugins PATH` loads and describes it (the
 *      devices it runs on: cpu, plus cuda when units.cu was built);
 *   4. the installed ffnlab-conformance passes on it, directly and through
 *      the ctest test ffnlab_add_conformance_test() registered;
 *   5. `ffnlab train --ffn PATH:...` trains a tiny model 20 steps with it,
 *      logging its auxiliary loss;
 *   6. `cmake --install` of the template into the same prefix, and
 *      `ffnlab train --ffn template:...` finds it by name.
 * Every installed program runs with FFNLAB_PLUGIN_PATH unset.
 * Each step is one CMocka test; a step fails with the command's output.
 * Skips when cmake is not available.
 */
#include "support.h"

#include <stdio.h>    /* snprintf */
#include <stdlib.h>   /* free */
#include <string.h>   /* strstr */
#include <unistd.h>   /* access */

#ifndef FFNLAB_CMAKE
#define FFNLAB_CMAKE "cmake"
#endif
#ifndef FFNLAB_CTEST
#define FFNLAB_CTEST "ctest"
#endif
#ifndef FFNLAB_BUILD_DIR
#define FFNLAB_BUILD_DIR ""
#endif
#ifndef FFNLAB_C_COMPILER
#define FFNLAB_C_COMPILER "cc"
#endif

/* The installed programs run as a user's would: no plugin path set (ctest
   sets one for the build's own tests). */
#define NO_ENV "env -u FFNLAB_PLUGIN_PATH "

/* The options the conformance run uses: small, with noise and the aux loss on. */
#define TEMPLATE_OPTS "d_ff=32,k=8,noise=0.1,act_l2=0.01"

/* A model small enough that 20 steps take seconds. */
#define TINY "--corpus-bytes 200000 --vocab-size 320 --d-model 32 --n-layers 1 --n-heads 2 " \
             "--context 32 --batch-size 8 --warmup-steps 2 --eval-every 10 --eval-batches 2 "  \
             "--log-every 5 --no-progress"

static struct {
    char *dir;               /* the temporary folder */
    char prefix[4200];       /* dir/prefix, then dir/moved: the install */
    char build[4200];        /* dir/template: the out-of-tree build */
    char plugin[4300];       /* build/plugins/ffn_template.so */
    int installed, built;    /* steps that succeeded, for the later ones */
    int cuda;                /* the template build found a CUDA compiler */
    char *out;               /* the last command's output (freed by the next) */
} g;

static int setup(void **state) {
    (void)state;
    g.dir = ts_tmpdir();
    snprintf(g.prefix, sizeof g.prefix, "%s/prefix", g.dir);
    snprintf(g.build, sizeof g.build, "%s/template", g.dir);
    snprintf(g.plugin, sizeof g.plugin, "%s/plugins/ffn_template.so", g.build);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ts_rmtree(g.dir);
    free(g.dir);
    free(g.out);
    return 0;
}

static int have_cmake(void) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --version", FFNLAB_CMAKE);
    return FFNLAB_BUILD_DIR[0] && ts_run(cmd, NULL) == 0;
}

/* print_message formats into a fixed buffer: long text goes in pieces. */
static void print_long(const char *text) {
    for (size_t n = strlen(text), at = 0; at < n; at += 1000) print_message("%.1000s", text + at);
    print_message("\n");
}

/* Runs cmd; fails the test with its output unless it exits 0. Returns the
   output, owned by g (valid until the next command). */
static const char *must_run(const char *what, const char *cmd) {
    free(g.out);
    g.out = NULL;
    int rc = ts_run(cmd, &g.out);
    if (rc != 0) {
        print_message("$ %s\n", cmd);
        print_long(g.out ? g.out : "");
        fail_msg("%s failed with status %d", what, rc);
    }
    return g.out ? g.out : "";
}

static void expect_in(const char *out, const char *needle, const char *what) {
    if (!strstr(out, needle)) {
        print_long(out);
        fail_msg("%s: output lacks \"%s\"", what, needle);
    }
}

static void test_install(void **state) {
    (void)state;
    if (!have_cmake()) skip();
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s' --install '%s' --prefix '%s'", FFNLAB_CMAKE, FFNLAB_BUILD_DIR, g.prefix);
    must_run("cmake --install", cmd);
    static const char *const files[] = {"bin/ffnlab", "bin/ffnlab-conformance", "include/ffnlab/ffn.h",
                                        "lib/cmake/ffnlab/ffnlabConfig.cmake",
                                        "lib/cmake/ffnlab/ffnlabPluginFunctions.cmake",
                                        "lib/ffnlab/plugins/ffn_dense.so"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", g.prefix, files[i]);
        if (access(path, F_OK)) fail_msg("the install lacks %s", files[i]);
    }
    g.installed = 1;
}

/* The install moved elsewhere still finds its own plugins, relative to its
   program, and never looks in this build tree. */
static void test_relocated(void **state) {
    (void)state;
    if (!have_cmake()) skip();
    if (!g.installed) fail_msg("needs the install step");
    char moved[4200], cmd[9000], want[4400];
    snprintf(moved, sizeof moved, "%s/moved", g.dir);
    if (rename(g.prefix, moved)) fail_msg("could not move %s to %s", g.prefix, moved);
    snprintf(g.prefix, sizeof g.prefix, "%s", moved);
    snprintf(cmd, sizeof cmd, NO_ENV "'%s/bin/ffnlab' plugins", g.prefix);
    const char *out = must_run("ffnlab plugins (moved install)", cmd);
    snprintf(want, sizeof want, "searched: %s/lib/ffnlab/plugins\n", g.prefix);
    expect_in(out, want, "ffnlab plugins names the install's folder");
    snprintf(want, sizeof want, "%s/lib/ffnlab/plugins/ffn_dense.so", g.prefix);
    expect_in(out, want, "ffnlab plugins lists the install's dense plugin");
    if (strstr(out, FFNLAB_BUILD_DIR "/")) {
        print_long(out);
        fail_msg("the installed ffnlab searched the build tree %s", FFNLAB_BUILD_DIR);
    }
    snprintf(cmd, sizeof cmd, NO_ENV "'%s/bin/ffnlab' train " TINY " --steps 5 --run-dir '%s/run-moved'", g.prefix,
             g.dir);
    expect_in(must_run("ffnlab train (moved install)", cmd), "trained 5 steps", "ffnlab train");
}

static void test_build_template(void **state) {
    (void)state;
    if (!have_cmake()) skip();
    if (!g.installed) fail_msg("needs the install step");
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "'%s' -S '%s/examples/ffn_template' -B '%s' -DCMAKE_PREFIX_PATH='%s' "
             "-DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER='%s'",
             FFNLAB_CMAKE, FFNLAB_SOURCE_DIR, g.build, g.prefix, FFNLAB_C_COMPILER);
    /* CMake enabled CUDA (the template's CMakeLists does when it finds nvcc) */
    g.cuda = strstr(must_run("configuring examples/ffn_template", cmd), "The CUDA compiler identification is") != NULL;
    /* find_package(ffnlab) resolved to the install, not to anything else */
    char cache[4400], want[4400];
    snprintf(cache, sizeof cache, "%s/CMakeCache.txt", g.build);
    snprintf(want, sizeof want, "ffnlab_DIR:PATH=%s/lib/cmake/ffnlab", g.prefix);
    char *text = ts_read_file(cache, NULL);
    assert_non_null(text);
    int found = strstr(text, want) != NULL;
    free(text);
    if (!found) fail_msg("find_package(ffnlab) did not use the install at %s", g.prefix);
    snprintf(cmd, sizeof cmd, "'%s' --build '%s'", FFNLAB_CMAKE, g.build);
    const char *out = must_run("building examples/ffn_template", cmd);
    /* its own kernel: units.c always, units.cu when CMake found a CUDA
       compiler (then the plugin links the CUDA runtime) */
    expect_in(out, "units.c.o", "the template's CPU kernel");
    if (g.cuda) {
        expect_in(out, "Building CUDA object CMakeFiles/ffn_template.dir/units.cu.o", "the template's CUDA kernel");
        print_message("  built with its CUDA kernel (units.cu)\n");
    } else {
        print_message("  no CUDA compiler: built for the CPU only\n");
    }
    if (strstr(out, "warning:")) {
        print_long(out);
        fail_msg("the template builds with warnings");
    }
    if (access(g.plugin, F_OK)) fail_msg("no %s after the build", g.plugin);
    g.built = 1;
}

static void test_plugins_lists_it(void **state) {
    (void)state;
    if (!have_cmake()) skip();
    if (!g.built) fail_msg("needs the template build");
    char cmd[9000];
    snprintf(cmd, sizeof cmd, NO_ENV "'%s/bin/ffnlab' plugins '%s'", g.prefix, g.plugin);
    const char *out = must_run("ffnlab plugins PATH", cmd);
    expect_in(out, "template", "ffnlab plugins");
    expect_in(out, "ABI", "ffnlab plugins");
    expect_in(out, "act_l2", "ffnlab plugins (options)");
    expect_in(out, g.cuda ? "devices  cpu, cuda" : "devices  cpu", "ffnlab plugins (devices)");
}

static void test_conformance(void **state) {
    (void)state;
    if (!have_cmake()) skip();
    if (!g.built) fail_msg("needs the template build");
    char cmd[9000];
    snprintf(cmd, sizeof cmd, NO_ENV "'%s/bin/ffnlab-conformance' '%s' 'template:" TEMPLATE_OPTS "'", g.prefix,
             g.plugin);
    const char *out = must_run("ffnlab-conformance", cmd);
    expect_in(out, "[  PASSED  ]", "ffnlab-conformance");
    if (strstr(out, "[  FAILED  ]")) {
        print_long(out);
        fail_msg("ffnlab-conformance reports a failed test");
    }
    /* the same through the test ffnlab_add_conformance_test() registered */
    snprintf(cmd, sizeof cmd, "'%s' --test-dir '%s' --output-on-failure", FFNLAB_CTEST, g.build);
    out = must_run("ctest in the template build", cmd);
    expect_in(out, "conformance_template", "ctest");
}

static void test_trains_with_it(void **state) {
    (void)state;
    if (!have_cmake()) skip();
    if (!g.built) fail_msg("needs the template build");
    char cmd[9000], metrics[4400];
    snprintf(cmd, sizeof cmd, NO_ENV "'%s/bin/ffnlab' train " TINY " --steps 20 --ffn '%s:k=16,act_l2=0.01' --run-dir '%s/run'",
             g.prefix, g.plugin, g.dir);
    expect_in(must_run("ffnlab train --ffn PATH", cmd), "trained 20 steps", "ffnlab train");
    snprintf(metrics, sizeof metrics, "%s/run/metrics.jsonl", g.dir);
    char *text = ts_read_file(metrics, NULL);
    assert_non_null(text);
    int logged = strstr(text, "\"aux.act_l2\"") != NULL;
    free(text);
    if (!logged) fail_msg("metrics.jsonl lacks \"aux.act_l2\" (the plugin's aux loss, logged by name)");
}

/* Installed next to ffnlab's own plugins, the template is found by name. */
static void test_installed_by_name(void **state) {
    (void)state;
    if (!have_cmake()) skip();
    if (!g.built) fail_msg("needs the template build");
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s' --install '%s' --prefix '%s'", FFNLAB_CMAKE, g.build, g.prefix);
    must_run("cmake --install of the template", cmd);
    snprintf(cmd, sizeof cmd, NO_ENV "'%s/bin/ffnlab' train " TINY " --steps 5 --ffn 'template:k=16' --run-dir '%s/run-by-name'",
             g.prefix, g.dir);
    expect_in(must_run("ffnlab train --ffn template (installed)", cmd), "trained 5 steps", "ffnlab train");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install),          cmocka_unit_test(test_relocated),
        cmocka_unit_test(test_build_template),   cmocka_unit_test(test_plugins_lists_it),
        cmocka_unit_test(test_conformance),      cmocka_unit_test(test_trains_with_it),
        cmocka_unit_test(test_installed_by_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
