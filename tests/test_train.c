/*
 * tests/test_train.c — `ffnlab train`, `generate` end to end, as a user runs them.
 *
 * Specification:
 *  - a short run on the built-in corpus learns: validation loss ends well
 *    below the unigram entropy of the training tokens;
 *  - a run paused with --stop-after and continued with --resume logs the very
 *    same losses as an uninterrupted run (bit-identical text);
 *  - SIGINT saves a checkpoint, exits 130, and the run can be resumed;
 *  - a NaN loss stops the run with a message naming the step, and writes no
 *    checkpoint;
 *  - an existing run folder is not overwritten without --force;
 *  - bad input (unknown config key, corrupt checkpoint, checkpoint of another
 *    shape, invalid UTF-8 or empty corpus) fails with one clear line.
 */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A model small enough that a run takes seconds. */
#define TINY "--corpus-bytes 200000 --vocab-size 320 --d-model 32 --n-layers 1 --n-heads 2 " \
             "--context 32 --batch-size 8 --warmup-steps 2 --eval-every 10 --eval-batches 2 --log-every 1 --no-progress"

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ts_rmtree(g_dir);
    free(g_dir);
    return 0;
}

/* Runs `ffnlab ARGS`; returns the exit code, output in *out. */
static int ffnlab(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ffnlab(char **out, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s", ts_ffnlab_bin(), args);
    return ts_run(cmd, out);
}

/* The "loss" values of metrics.jsonl's training lines, as text. */
static char *losses(const char *run) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    char *text = ts_read_file(path, NULL);
    assert_non_null(text);
    size_t cap = strlen(text) + 1, n = 0;
    char *out = calloc(cap, 1);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *p = strstr(line, "\"loss\": ");
        if (!p) continue;
        char *e = strchr(p, ',');
        n += (size_t)snprintf(out + n, cap - n, "%.*s\n", (int)(e - p), p);
    }
    free(text);
    return out;
}

static void test_learns_below_unigram_entropy(void **state) {
    (void)state;
    char *out;
    int rc = ffnlab(&out, "train --corpus-bytes 1000000 --vocab-size 512 --d-model 64 --n-layers 2 --n-heads 2 "
                          "--context 64 --batch-size 16 --steps 250 --warmup-steps 20 --lr 3e-3 --eval-every 50 "
                          "--eval-batches 8 --no-progress --run-dir %s/learn", g_dir);
    if (rc) fail_msg("train failed (%d): %s", rc, out);
    const char *p = strstr(out, "trained 250 steps: validation loss ");
    assert_non_null(p);
    double val = 0, unigram = 0;
    assert_int_equal(sscanf(p, "trained 250 steps: validation loss %lf nats/token (unigram entropy %lf", &val, &unigram), 2);
    print_message("validation loss %.4f vs unigram entropy %.4f (ratio %.2f)\n", val, unigram, val / unigram);
    assert_true(val < 0.6 * unigram);
    free(out);

    rc = ffnlab(&out, "generate --run %s/learn --prompt 'Once upon a time' --max-tokens 40 --seed 3", g_dir);
    if (rc) fail_msg("generate failed (%d): %s", rc, out);
    const char *text = out; /* stderr is captured too: skip "ffnlab: ..." notes (e.g. no GPU) */
    while (!strncmp(text, "ffnlab: ", 8) && strchr(text, '\n')) text = strchr(text, '\n') + 1;
    if (strncmp(text, "Once upon a time", 16) != 0) fail_msg("generate printed: %s", out);
    assert_true(strlen(text) > 40); /* it did continue the prompt */
    free(out);
}

static void test_resume_is_bit_identical(void **state) {
    (void)state;
    char *out;
    int rc = ffnlab(&out, "train " TINY " --steps 24 --run-dir %s/full", g_dir);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    rc = ffnlab(&out, "train " TINY " --steps 24 --stop-after 11 --run-dir %s/paused", g_dir);
    if (rc) fail_msg("train --stop-after failed: %s", out);
    assert_non_null(strstr(out, "stopped after step 11"));
    free(out);
    rc = ffnlab(&out, "train --resume --no-progress --run-dir %s/paused", g_dir);
    if (rc) fail_msg("train --resume failed: %s", out);
    free(out);
    char full[4096], paused[4096];
    snprintf(full, sizeof full, "%s/full", g_dir);
    snprintf(paused, sizeof paused, "%s/paused", g_dir);
    char *a = losses(full), *b = losses(paused);
    assert_true(strlen(a) > 24 * 8);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void test_refuses_to_overwrite_a_run(void **state) {
    (void)state;
    char *out;
    int rc = ffnlab(&out, "train " TINY " --steps 2 --run-dir %s/once", g_dir);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    rc = ffnlab(&out, "train " TINY " --steps 2 --run-dir %s/once", g_dir);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "--force"));
    free(out);
    rc = ffnlab(&out, "train " TINY " --steps 2 --force --run-dir %s/once", g_dir);
    assert_int_equal(rc, 0);
    free(out);
}

static void test_nan_loss_stops_naming_the_step(void **state) {
    (void)state;
    char *out, cmd[8192];
    snprintf(cmd, sizeof cmd, "FFNLAB_PLUGIN_PATH=%s:$FFNLAB_PLUGIN_PATH '%s' train " TINY
             " --steps 20 --ffn nan:at_step=4 --run-dir %s/nan", FFNLAB_TEST_PLUGIN_DIR, ts_ffnlab_bin(), g_dir);
    int rc = ts_run(cmd, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "not finite"));
    assert_non_null(strstr(out, "step 4"));
    char path[4096];
    snprintf(path, sizeof path, "%s/nan/checkpoint/model.safetensors", g_dir);
    assert_int_equal(access(path, F_OK), -1);
    free(out);
}

static void test_sigint_saves_and_resumes(void **state) {
    (void)state;
    char dir[4096], log[4200];
    snprintf(dir, sizeof dir, "%s/sig", g_dir);
    snprintf(log, sizeof log, "%s/sig.log", g_dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        freopen(log, "w", stderr);
        freopen("/dev/null", "w", stdout);
        execl(ts_ffnlab_bin(), "ffnlab", "train", "--corpus-bytes", "200000", "--vocab-size", "320", "--d-model", "32",
              "--n-layers", "1", "--n-heads", "2", "--context", "32", "--batch-size", "8", "--steps", "100000",
              "--warmup-steps", "2", "--eval-every", "0", "--log-every", "1", "--no-progress", "--run-dir", dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 600; i++) { /* wait until it is stepping (at most 60 s) */
        char *text = ts_read_file(log, NULL);
        int stepping = text && strstr(text, "step 3/");
        free(text);
        if (stepping) break;
        usleep(100000);
    }
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    char *text = ts_read_file(log, NULL);
    assert_non_null(strstr(text, "checkpoint saved"));
    free(text);
    char *out;
    int rc = ffnlab(&out, "train --resume --steps 40 --no-progress --run-dir %s", dir);
    if (rc) fail_msg("resume after SIGINT failed: %s", out);
    free(out);
}

/* The command fails, printing one line that contains `want`. */
static void expect_error(const char *want, const char *fmt, ...) {
    char args[4096], full[8300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out;
    snprintf(full, sizeof full, "'%s' %s", ts_ffnlab_bin(), args);
    int rc = ts_run(full, &out);
    if (rc == 0 || !strstr(out, want)) fail_msg("expected failure mentioning '%s'; got %d: %s", want, rc, out);
    assert_non_null(strstr(out, "ffnlab: error: "));
    free(out);
}

static void test_bad_input_is_one_clear_line(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/bad.json", g_dir);
    ts_write_file(path, "{\"d_model\": 32, \"colour\": 3}", 28);
    expect_error("colour", "train --config %s --run-dir %s/badcfg", path, g_dir);

    snprintf(path, sizeof path, "%s/bad_utf8.txt", g_dir);
    ts_write_file(path, "Once upon a time\n\xff\xfe there\n<|endoftext|>\n", 40);
    expect_error("invalid UTF-8", "train " TINY " --steps 2 --corpus %s --run-dir %s/badutf", path, g_dir);

    snprintf(path, sizeof path, "%s/empty.txt", g_dir);
    ts_write_file(path, "", 0);
    expect_error("empty", "train " TINY " --steps 2 --corpus %s --run-dir %s/empty", path, g_dir);

    /* a good run to damage */
    char *out;
    int rc = ffnlab(&out, "train " TINY " --steps 3 --run-dir %s/good", g_dir);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    expect_error("the model expects", "train " TINY " --steps 3 --d-model 48 --run-dir %s/good --resume --steps 6", g_dir);
    snprintf(path, sizeof path, "%s/good/checkpoint/model.safetensors", g_dir);
    size_t len = 0;
    char *bytes = ts_read_file(path, &len);
    bytes[0] ^= 0x7f; /* corrupt the header length */
    bytes[5] = 0x40;
    ts_write_file(path, bytes, len);
    free(bytes);
    expect_error("model.safetensors", "generate --run %s/good --max-tokens 3", g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns_below_unigram_entropy),
        cmocka_unit_test(test_resume_is_bit_identical),
        cmocka_unit_test(test_refuses_to_overwrite_a_run),
        cmocka_unit_test(test_nan_loss_stops_naming_the_step),
        cmocka_unit_test(test_sigint_saves_and_resumes),
        cmocka_unit_test(test_bad_input_is_one_clear_line),
    };
    return cmocka_run_group_tests_name("train", tests, setup, teardown);
}
