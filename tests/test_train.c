/*
 * tests/test_train.c — `ffnlab train`, `generate` end to end, as a user runs them.
 *
 * Specification:
 *  - a short run on the built-in corpus learns: validation loss ends well
 *    below the unigram entropy of the training tokens; greedy `generate`
 *    prints the same text with the KV cache as with --no-cache, past the
 *    context (64) too;
 *  - so does an encoder (arch bert): its masked-LM validation loss ends well
 *    below the unigram entropy and its pseudo-log-likelihood beats chance on
 *    the built-in minimal pairs; `generate` refuses it in one line;
 *  - a run paused with --stop-after and continued with --resume logs the very
 *    same losses as an uninterrupted run (bit-identical text);
 *  - SIGINT saves a checkpoint, exits 130, and the run can be resumed;
 *  - a NaN loss stops the run with a message naming the step, and writes no
 *    checkpoint;
 *  - metrics.jsonl lines carry the training tokens, the run's wall time and
 *    every FFN layer's plugin stats (MoE expert load, PKM memory usage) on
 *    training and validation lines; a completed run writes summary.json
 *    (sizes, losses, speeds, memory), whose parameter count is the model's;
 *  - a resumed run cuts metrics.jsonl back to its checkpoint and continues
 *    its wall time;
 *  - an existing run folder is not overwritten without --force;
 *  - a train that fails leaves nothing behind: a bad --tokenizer, --corpus,
 *    --ffn plugin or plugin option is found before anything is written, a
 *    corpus that fails to parse leaves no temporary folder, a run that dies
 *    before its first checkpoint is removed, and the corrected command then
 *    runs; a failed command never changes an existing run folder (--force
 *    replaces it only once the new run has a checkpoint; a failed --resume
 *    writes nothing);
 *  - bad input (unknown config key, corrupt checkpoint, checkpoint of another
 *    shape, invalid UTF-8 or empty corpus) fails with one clear line;
 *  - a given tokenizer sizes the model, and train_config.json records its
 *    vocabulary, not --vocab-size's;
 *  - faults (FFNLAB_TEST_PAUSE stops the process at a named point; README
 *    "Tests"): SIGTERM behaves as SIGINT (checkpoint, exit 128 + 15, and the
 *    resumed run logs the uninterrupted run's losses bit for bit); SIGKILL at
 *    any point of a checkpoint write (half-way through model.safetensors or
 *    optimizer.safetensors, between them, before and after the folder
 *    exchange) leaves a whole checkpoint, of the step before or of the new
 *    one, from which --resume gives the uninterrupted losses; a checkpoint
 *    write that exceeds the file-size limit (a full disk) is one error line
 *    naming the file, keeps the previous checkpoint and leaves no temporary
 *    folder; a run folder that cannot be written (a file in the way, a
 *    read-only file system) is refused before any work;
 *  - a plugin whose create, forward or backward fails is named with its
 *    layer and the call; one that writes NaN stops the run naming its layer.
 */
#include "support.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "safetensors.h"

/* A model small enough that a run takes seconds. */
#define TINY "--corpus-bytes 200000 --vocab-size 320 --d-model 32 --n-layers 1 --n-heads 2 " \
             "--context 32 --batch-size 8 --warmup-steps 2 --eval-every 10 --eval-batches 2 --log-every 1 --no-progress"

#define g_dir ts_suite_dir /* the suite's temporary folder */

/* The "loss" values of metrics.jsonl's training lines, as text. */
static char *losses(const char *run) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    char *text = ts_read_file(path, NULL);
    assert_non_null(text);
    size_t cap = strlen(text) + 1, n = 0;
    char *out = calloc(cap, 1);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *p = strstr(line, "\"loss\":");
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
    int rc = ts_ffnlab(&out, "train --corpus-bytes 1000000 --vocab-size 512 --d-model 64 --n-layers 2 --n-heads 2 "
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

    rc = ts_ffnlab(&out, "generate --run %s/learn --prompt 'Once upon a time' --max-tokens 40 --seed 3", g_dir);
    if (rc) fail_msg("generate failed (%d): %s", rc, out);
    const char *text = out; /* stderr is captured too: skip "ffnlab: ..." notes (e.g. no GPU) */
    while (!strncmp(text, "ffnlab: ", 8) && strchr(text, '\n')) text = strchr(text, '\n') + 1;
    if (strncmp(text, "Once upon a time", 16) != 0) fail_msg("generate printed: %s", out);
    assert_true(strlen(text) > 40); /* it did continue the prompt */
    free(out);

    char *uncached = NULL;
    rc = ts_ffnlab(&out, "generate --run %s/learn --temperature 0 --max-tokens 90", g_dir);
    if (rc) fail_msg("generate failed (%d): %s", rc, out);
    rc = ts_ffnlab(&uncached, "generate --run %s/learn --temperature 0 --max-tokens 90 --no-cache", g_dir);
    if (rc) fail_msg("generate --no-cache failed (%d): %s", rc, uncached);
    print_message("greedy: %s", out);
    assert_string_equal(out, uncached);
    free(out), free(uncached);
}

/* The value of eval.json's result (task, metric) in run folder dir; NAN
   when absent. */
static double eval_value(const char *dir, const char *task, const char *metric) {
    char path[4200];
    snprintf(path, sizeof path, "%s/eval.json", dir);
    cJSON *doc = ts_read_json(path);
    double v = NAN;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "results")) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "task"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "metric"));
        if (t && m && !strcmp(t, task) && !strcmp(m, metric))
            v = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "value"));
    }
    cJSON_Delete(doc);
    return v;
}

/* The encoder learns from masked tokens alone: a short masked-LM run on the
   built-in corpus ends with a validation loss (on the masked positions)
   well below the unigram entropy, what guessing a hidden token without its
   context costs (copying the input cannot get there: the loss counts only
   positions whose input was replaced or kept by chance, test_mlm), and its
   pseudo-log-likelihood beats chance on the built-in minimal pairs (4,000
   pairs: chance is 0.5 +- 0.008). An encoder generates nothing. */
/* Under the sanitizers (scripts/test-sanitize.sh) a step costs ~15x more and
   the 2,500 steps alone would outlast the suite's time limit: there the same
   paths (masked training, PLL scoring, the refusal) run for 100 steps, and
   only the full run's thresholds are left to the regular suite. */
#ifdef FFNLAB_TEST_SANITIZED
#define ENCODER_STEPS 100
#else
#define ENCODER_STEPS 2500
#endif

static void test_encoder_learns(void **state) {
    (void)state;
    char *out, dir[4200];
    snprintf(dir, sizeof dir, "%s/encoder", g_dir);
    int rc = ts_ffnlab(&out, "train --arch bert --corpus-bytes 1000000 --vocab-size 512 --d-model 64 --n-layers 2 "
                             "--n-heads 4 --context 32 --batch-size 32 --steps %d --warmup-steps 50 --lr 3e-3 "
                             "--eval-every 0 --no-progress --run-dir %s --eval-task blimp", ENCODER_STEPS, dir);
    if (rc) fail_msg("train --arch bert failed (%d): %s", rc, out);
    char line[64];
    snprintf(line, sizeof line, "trained %d steps: validation loss ", ENCODER_STEPS);
    const char *p = strstr(out, line);
    if (!p) fail_msg("no final validation line: %s", out);
    double val = 0, unigram = 0;
    assert_int_equal(sscanf(p + strlen(line), "%lf nats/token (unigram entropy %lf", &val, &unigram), 2);
    free(out);
    const double acc = eval_value(dir, "blimp", "accuracy_paradigm_mean");
    print_message("encoder, %d steps: masked-LM validation loss %.4f vs unigram entropy %.4f (ratio %.2f); built-in "
                  "minimal pairs by PLL %.3f\n", ENCODER_STEPS, val, unigram, val / unigram, acc);
#ifndef FFNLAB_TEST_SANITIZED
    assert_true(val < 0.4 * unigram);
    assert_true(acc > 0.56);
#endif
    assert_true(eval_value(dir, "blimp", "pairs") == 4000);
    rc = ts_ffnlab(&out, "generate --run %s --max-tokens 5", dir);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "encoder"));
    free(out);
}

static void test_resume_is_bit_identical(void **state) {
    (void)state;
    char *out;
    int rc = ts_ffnlab(&out, "train " TINY " --steps 24 --run-dir %s/full", g_dir);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    rc = ts_ffnlab(&out, "train " TINY " --steps 24 --stop-after 11 --run-dir %s/paused", g_dir);
    if (rc) fail_msg("train --stop-after failed: %s", out);
    assert_non_null(strstr(out, "stopped after step 11"));
    free(out);
    rc = ts_ffnlab(&out, "train --resume --no-progress --run-dir %s/paused", g_dir);
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

/* The JSON object on each line of run/metrics.jsonl (NULL-terminated array). */
static cJSON **metrics_lines(const char *run, int *n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    char *text = ts_read_file(path, NULL);
    assert_non_null(text);
    cJSON **lines = calloc(4096, sizeof *lines);
    *n = 0;
    for (char *line = strtok(text, "\n"); line && *n < 4095; line = strtok(NULL, "\n")) {
        lines[*n] = cJSON_Parse(line);
        if (!lines[*n]) fail_msg("%s: not JSON: %s", path, line);
        (*n)++;
    }
    free(text);
    return lines;
}

static void free_lines(cJSON **lines, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
    free(lines);
}

static void test_metrics_stats_and_summary(void **state) {
    (void)state;
    char run[4200], *out;
    snprintf(run, sizeof run, "%s/stats", g_dir);
    int rc = ts_ffnlab(&out, "train " TINY " --n-layers 2 --steps 12 --log-every 4 --eval-every 8 --ffn moe:experts=4,top_k=1 "
                              "--ffn-layer 1=pkm:heads=2,n_keys=8,knn=4,k_dim=16 --run-dir %s", run);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    int n;
    cJSON **lines = metrics_lines(run, &n);
    int train_lines = 0, val_lines = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *o = lines[i];
        const int is_val = cJSON_GetObjectItemCaseSensitive(o, "val_loss") != NULL;
        const double step = ts_json_num(o, "step");
        assert_true(ts_json_num(o, "tokens") == step * 8 * 32); /* batch 8, context 32 */
        assert_true(ts_json_num(o, "time_s") >= (i ? ts_json_num(lines[i - 1], "time_s") : 0));
        const cJSON *stats = cJSON_GetObjectItemCaseSensitive(o, "stats");
        const cJSON *moe = cJSON_GetObjectItemCaseSensitive(stats, "h.0"), *pkm = cJSON_GetObjectItemCaseSensitive(stats, "h.1");
        double load = 0;
        for (int e = 0; e < 4; e++) {
            char key[16];
            snprintf(key, sizeof key, "load.%d", e);
            load += ts_json_num(moe, key);
        }
        assert_true(fabs(load - 1.0) < 1e-6); /* each token goes to one of the 4 experts */
        assert_true(ts_json_num(pkm, "memory_usage") > 0 && ts_json_num(pkm, "memory_usage") <= 1);
        train_lines += !is_val, val_lines += is_val;
    }
    assert_int_equal(train_lines, 3); /* steps 4, 8, 12 */
    assert_int_equal(val_lines, 2);   /* step 8, and the final pass */
    free_lines(lines, n);

    char path[4300];
    snprintf(path, sizeof path, "%s/summary.json", run);
    cJSON *sum = ts_read_json(path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(sum, "model");
    const cJSON *training = cJSON_GetObjectItemCaseSensitive(sum, "training");
    const double total = ts_json_num(model, "total_params"), ffn = ts_json_num(model, "ffn_params");
    /* V=320, T=32, C=32, 2 blocks: everything but the FFNs, by hand */
    const double C = 32, rest = 320 * C + 32 * C + 2 * (4 * C + 3 * C * C + 3 * C + C * C + C) + 2 * C;
    assert_true(total == rest + ffn);
    assert_true(ts_json_num(model, "active_params_per_token") < total); /* MoE top-1 of 4, PKM reads 4 of 64 slots */
    assert_true(ts_json_num(training, "steps") == 12 && ts_json_num(training, "tokens") == 12 * 8 * 32);
    assert_true(ts_json_num(training, "tokens_per_s") > 0);
    assert_true(ts_json_num(cJSON_GetObjectItemCaseSensitive(sum, "inference"), "tokens_per_s") > 0);
    assert_true(ts_json_num(cJSON_GetObjectItemCaseSensitive(sum, "memory"), "peak_rss_mib") > 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sum, "config"), "ffn")),
                        "moe:experts=4,top_k=1");
    cJSON_Delete(sum);
}

/* A run stopped after step 6 with lines logged past its checkpoint (as a
   killed run leaves them): --resume drops them and its wall time goes on. */
static void test_resume_cuts_metrics(void **state) {
    (void)state;
    char run[4200], path[4300], *out;
    snprintf(run, sizeof run, "%s/cut", g_dir);
    int rc = ts_ffnlab(&out, "train " TINY " --steps 12 --stop-after 6 --eval-every 0 --run-dir %s", run);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    int n;
    cJSON **lines = metrics_lines(run, &n);
    const double t6 = ts_json_num(lines[n - 1], "time_s");
    free_lines(lines, n);
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "a");
    fputs("{\"step\":7,\"loss\":9,\"time_s\":99}\n{\"step\":8,\"lo", f); /* and a half-written line */
    fclose(f);
    rc = ts_ffnlab(&out, "train --resume --no-progress --run-dir %s", run);
    if (rc) fail_msg("resume failed: %s", out);
    free(out);
    lines = metrics_lines(run, &n);
    assert_int_equal(n, 13); /* steps 1-12, then the final validation pass */
    for (int i = 0; i < 12; i++) {
        assert_true(ts_json_num(lines[i], "step") == i + 1);
        assert_true(ts_json_num(lines[i], "loss") < 9);
        if (i >= 6) assert_true(ts_json_num(lines[i], "time_s") >= t6);
    }
    assert_true(ts_json_num(lines[12], "step") == 12 && ts_json_num(lines[12], "val_loss") > 0);
    free_lines(lines, n);
}

static void test_refuses_to_overwrite_a_run(void **state) {
    (void)state;
    char *out;
    int rc = ts_ffnlab(&out, "train " TINY " --steps 2 --run-dir %s/once", g_dir);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    rc = ts_ffnlab(&out, "train " TINY " --steps 2 --run-dir %s/once", g_dir);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "--force"));
    free(out);
    rc = ts_ffnlab(&out, "train " TINY " --steps 2 --force --run-dir %s/once", g_dir);
    assert_int_equal(rc, 0);
    free(out);
}

/* What `ls -A dir` lists, one name a line ("" for an empty folder). */
static char *listing(const char *dir) {
    char cmd[4400], *out = NULL;
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    assert_int_equal(ts_run(cmd, &out), 0);
    return out;
}

static void test_failed_start_leaves_nothing(void **state) {
    (void)state;
    char parent[4200], bad[4300];
    snprintf(parent, sizeof parent, "%s/fails", g_dir);
    assert_int_equal(mkdir(parent, 0700), 0);
    snprintf(bad, sizeof bad, "%s/bad.jsonl", g_dir);
    assert_int_equal(ts_write_file(bad, "{\"text\": 3}\n", 13), 0);
    const struct {
        const char *flag, *want;
    } causes[] = {
        {"--tokenizer /nonexistent/tokenizer.json", "--tokenizer"},
        {"--corpus /nonexistent/corpus.txt", "--corpus /nonexistent/corpus.txt"},
        {"--ffn nosuchplugin", "ffn_nosuchplugin: plugin not found"},
        {"--ffn dense:d_ff=-3", "'d_ff' = -3"},
        {"--ffn moe:experts=3,top_k=5", "top_k"},   /* refused by the plugin's create */
        {NULL, "bad.jsonl:1"},                      /* found while the folder is being made */
    };
    for (size_t i = 0; i < sizeof causes / sizeof *causes; i++) {
        char flag[4400], *out;
        snprintf(flag, sizeof flag, "%s", causes[i].flag ? causes[i].flag : "");
        if (!causes[i].flag) snprintf(flag, sizeof flag, "--corpus %s", bad);
        int rc = ts_ffnlab(&out, "train " TINY " --steps 2 %s --run-dir %s/run", flag, parent);
        print_message("%s -> %d: %s", flag, rc, out);
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(out, causes[i].want));
        free(out);
        char *ls = listing(parent);
        if (ls[0]) fail_msg("a failed train (%s) left in %s: %s", flag, parent, ls);
        free(ls);
    }
    char *out;
    int rc = ts_ffnlab(&out, "train " TINY " --steps 2 --run-dir %s/run", parent); /* corrected: runs */
    if (rc) fail_msg("the corrected command failed: %s", out);
    free(out);
    char *ls = listing(parent);
    assert_string_equal(ls, "run\n");
    free(ls);
}

static void test_failure_keeps_an_existing_run(void **state) {
    (void)state;
    char run[4200], *out;
    snprintf(run, sizeof run, "%s/kept", g_dir);
    int rc = ts_ffnlab(&out, "train " TINY " --steps 3 --run-dir %s", run);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    char *before = ts_tree_digest(run);
    /* --force with a bad plugin: refused before anything is written */
    rc = ts_ffnlab(&out, "train " TINY " --steps 3 --force --ffn nosuchplugin --run-dir %s", run);
    assert_int_not_equal(rc, 0);
    free(out);
    /* --force, failing after the new folder took its place but before its
       first checkpoint: the old one is put back */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "FFNLAB_PLUGIN_PATH=%s:$FFNLAB_PLUGIN_PATH '%s' train " TINY
             " --steps 20 --force --ffn nan:at_step=2 --run-dir %s", FFNLAB_TEST_PLUGIN_DIR, ts_ffnlab_bin(), run);
    rc = ts_run(cmd, &out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "not finite"));
    free(out);
    /* --resume that cannot load the checkpoint: writes nothing */
    rc = ts_ffnlab(&out, "train " TINY " --steps 6 --d-model 48 --resume --run-dir %s", run);
    assert_int_not_equal(rc, 0);
    free(out);
    char *after = ts_tree_digest(run);
    assert_string_equal(before, after);
    char *ls = listing(g_dir); /* and no temporary or set-aside folder beside it */
    if (strstr(ls, ".kept.")) fail_msg("left beside the run: %s", ls);
    free(ls);
    free(before), free(after);
    /* --force that succeeds replaces it, and leaves nothing beside it */
    rc = ts_ffnlab(&out, "train " TINY " --steps 2 --force --run-dir %s", run);
    if (rc) fail_msg("train --force failed: %s", out);
    free(out);
    ls = listing(g_dir);
    if (strstr(ls, ".kept.")) fail_msg("left beside the run: %s", ls);
    free(ls);
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
    snprintf(path, sizeof path, "%s/nan", g_dir); /* no checkpoint was written, so no folder is left */
    assert_int_equal(access(path, F_OK), -1);
    assert_non_null(strstr(out, "had no checkpoint yet"));
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
    int rc = ts_ffnlab(&out, "train --resume --steps 40 --no-progress --run-dir %s", dir);
    if (rc) fail_msg("resume after SIGINT failed: %s", out);
    free(out);
}

/* The command fails, printing one line that contains `want`. */
static void expect_error(const char *want, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *out;
    int rc = ts_ffnlabv(&out, fmt, ap);
    va_end(ap);
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
    int rc = ts_ffnlab(&out, "train " TINY " --steps 3 --run-dir %s/good", g_dir);
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

/* ---- faults ----------------------------------------------------------------- */

/* The arguments of every fault run and of its uninterrupted reference. */
#define FAULT_RUN TINY " --steps 24 --ckpt-every 4"

/* The losses of FAULT_RUN uninterrupted (run once per suite). */
static const char *reference_losses(void) {
    static char *ref;
    if (ref) return ref;
    char *out, dir[4200];
    snprintf(dir, sizeof dir, "%s/reference", g_dir);
    int rc = ts_ffnlab(&out, "train " FAULT_RUN " --run-dir %s", dir);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    return ref = losses(dir);
}

/* Starts `ffnlab ARGS` with stderr in log; FFNLAB_TEST_PAUSE=pause_at unless
   NULL; RLIMIT_FSIZE of fsize bytes when fsize > 0. Returns its pid. */
static pid_t spawn(const char *pause_at, long fsize, const char *log, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static pid_t spawn(const char *pause_at, long fsize, const char *log, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "exec '%s' %s", ts_ffnlab_bin(), args);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (pause_at) setenv("FFNLAB_TEST_PAUSE", pause_at, 1);
        struct rlimit lim = {(rlim_t)fsize, (rlim_t)fsize};
        if (fsize > 0 && setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(126);
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits (60 s at most) until the process has paused at its test hook. */
static void wait_paused(pid_t pid, const char *log) {
    for (int i = 0; i < 600; i++) {
        char *text = ts_read_file(log, NULL);
        int paused = text && strstr(text, "ffnlab: test hook: paused at ");
        free(text);
        if (paused) return;
        if (waitpid(pid, NULL, WNOHANG) == pid) fail_msg("ffnlab ended before it paused; see %s", log);
        usleep(100000);
    }
    kill(pid, SIGKILL);
    fail_msg("ffnlab did not pause within 60 s; see %s", log);
}

/* How the process ended: its exit status, or 128 + the signal that ended it. */
static int reap(pid_t pid) {
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void expect_in_log(const char *log, const char *want) {
    char *text = ts_read_file(log, NULL);
    if (!text || !strstr(text, want)) fail_msg("%s lacks \"%s\":\n%s", log, want, text ? text : "(no file)");
    free(text);
}

/* The step run/checkpoint holds (its model.safetensors loads: a whole file). */
static long checkpoint_step(const char *run) {
    char path[4300];
    snprintf(path, sizeof path, "%s/checkpoint/model.safetensors", run);
    fl_st_file *f = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_open(path, &f, &err), &err);
    long step = atol(fl_safetensors_meta(f, "step"));
    fl_safetensors_close(f);
    return step;
}

/* --resume of run completes and logs the uninterrupted run's losses. */
static void expect_resumes_exactly(const char *run) {
    char *out;
    int rc = ts_ffnlab(&out, "train --resume --no-progress --run-dir %s", run);
    if (rc) fail_msg("resume of %s failed (%d): %s", run, rc, out);
    free(out);
    char *got = losses(run);
    assert_string_equal(got, reference_losses());
    free(got);
}

static void test_sigterm_is_like_sigint(void **state) {
    (void)state;
    char run[4200], log[4300];
    snprintf(run, sizeof run, "%s/term", g_dir);
    snprintf(log, sizeof log, "%s/term.log", g_dir);
    pid_t pid = spawn("step@11", 0, log, "train " FAULT_RUN " --run-dir %s", run); /* before step 11 */
    wait_paused(pid, log);
    kill(pid, SIGTERM);
    assert_int_equal(reap(pid), 128 + SIGTERM);
    expect_in_log(log, "interrupted by SIGTERM at step 10; checkpoint saved");
    assert_int_equal(checkpoint_step(run), 10);
    expect_resumes_exactly(run);
}

/* SIGKILL at each point of the second checkpoint's write (step 8; the first
   is step 4): what is left is one whole checkpoint, and the run goes on. */
static void test_sigkill_during_checkpoint(void **state) {
    (void)state;
    static const struct {
        const char *point;
        long step; /* what checkpoint/ then holds */
    } POINTS[] = {
        {"safetensors.half@3", 4},      /* half of step 8's model.safetensors written */
        {"checkpoint.model@2", 4},      /* its model written, no optimizer state yet */
        {"safetensors.half@4", 4},      /* half of its optimizer.safetensors */
        {"checkpoint.complete@2", 4},   /* all of checkpoint.tmp/, not yet exchanged */
        {"replace_dir.exchanged@2", 8}, /* exchanged; the old one not yet removed */
    };
    for (size_t i = 0; i < sizeof POINTS / sizeof *POINTS; i++) {
        char run[4200], log[4300];
        snprintf(run, sizeof run, "%s/kill%zu", g_dir, i);
        snprintf(log, sizeof log, "%s/kill%zu.log", g_dir, i);
        pid_t pid = spawn(POINTS[i].point, 0, log, "train " FAULT_RUN " --run-dir %s", run);
        wait_paused(pid, log);
        kill(pid, SIGKILL);
        assert_int_equal(reap(pid), 128 + SIGKILL);
        print_message("killed at %s: checkpoint/ holds step %ld\n", POINTS[i].point, checkpoint_step(run));
        assert_int_equal(checkpoint_step(run), POINTS[i].step);
        expect_resumes_exactly(run);
    }
}

static void test_full_disk_keeps_the_last_checkpoint(void **state) {
    (void)state;
    char run[4200], log[4300], tmp[4300], *out;
    snprintf(run, sizeof run, "%s/full_disk", g_dir);
    snprintf(log, sizeof log, "%s/full_disk.log", g_dir);
    int rc = ts_ffnlab(&out, "train " FAULT_RUN " --stop-after 8 --run-dir %s", run);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    /* files of at most 32 KiB: model.safetensors (~60 KiB) no longer fits */
    pid_t pid = spawn(NULL, 32 << 10, log, "train --resume --no-progress --run-dir %s", run);
    assert_int_equal(reap(pid), 1);
    expect_in_log(log, "ffnlab: error: ");
    expect_in_log(log, "checkpoint.tmp/model.safetensors: write failed: File too large");
    assert_int_equal(checkpoint_step(run), 8);
    snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", run);
    assert_int_equal(access(tmp, F_OK), -1);
    expect_resumes_exactly(run);
}

/* How this machine mounts a read-only file system for one command: `unshare
   -m` (root) or `unshare -rm` (a user namespace); NULL when it cannot. */
static const char *read_only_mounter(void) {
    if (ts_run("unshare -m true 2>/dev/null", NULL) == 0) return "unshare -m";
    if (ts_run("unshare -rm true 2>/dev/null", NULL) == 0) return "unshare -rm";
    return NULL;
}

static void test_unwritable_run_folder_refused_first(void **state) {
    (void)state;
    char file[4200], ro[4200], cmd[16384], *out;
    snprintf(file, sizeof file, "%s/a_file", g_dir);
    ts_write_file(file, "x", 1);
    int rc = ts_ffnlab(&out, "train " TINY " --steps 2 --run-dir %s/run", file);
    if (rc != 1 || !strstr(out, "a_file: not a folder") || strstr(out, "training a"))
        fail_msg("a file in the way: exit %d: %s", rc, out);
    free(out);
    snprintf(ro, sizeof ro, "%s/read_only", g_dir);
    assert_int_equal(mkdir(ro, 0700), 0);
    const char *mounter = read_only_mounter();
    if (geteuid() != 0) { /* permissions bind a user: a folder without w */
        chmod(ro, 0500);
        snprintf(cmd, sizeof cmd, "'%s' train " TINY " --steps 2 --run-dir %s/runs/run", ts_ffnlab_bin(), ro);
    } else if (mounter) { /* root writes anywhere: a read-only file system */
        snprintf(cmd, sizeof cmd, "%s sh -c \"mount -t tmpfs -o ro,size=64k none %s && exec '%s' train " TINY
                 " --steps 2 --run-dir %s/runs/run\"", mounter, ro, ts_ffnlab_bin(), ro);
    } else {
        print_message("root without mount namespaces: no read-only folder to try here\n");
        return;
    }
    rc = ts_run(cmd, &out);
    chmod(ro, 0700);
    if (rc != 1 || !strstr(out, "runs/run: ") || !strstr(out, "read_only: cannot write there: ") || strstr(out, "training a"))
        fail_msg("a read-only folder: exit %d: %s", rc, out);
    free(out);
}

/* ---- plugins that misbehave, a given tokenizer -------------------------------- */

static void test_misbehaving_plugin_named(void **state) {
    (void)state;
    static const struct {
        const char *spec, *want;
    } CASES[] = {
        {"fails:call=create", "layer 1 ffn 'fails' create: deliberate failure"},
        {"fails:call=forward,at_step=3", "layer 1 ffn 'fails' forward: deliberate failure"},
        {"fails:call=backward,at_step=3", "layer 1 ffn 'fails' backward: deliberate failure"},
        {"nan:at_step=3", "layer 1 ffn 'nan' wrote values that are not finite (NaN or inf) at step 3"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        char *out, cmd[8192];
        snprintf(cmd, sizeof cmd, "FFNLAB_PLUGIN_PATH=%s:$FFNLAB_PLUGIN_PATH '%s' train " TINY
                 " --n-layers 2 --steps 8 --ffn-layer 1=%s --run-dir %s/plugin%zu", FFNLAB_TEST_PLUGIN_DIR,
                 ts_ffnlab_bin(), CASES[i].spec, g_dir, i);
        int rc = ts_run(cmd, &out);
        if (rc != 1 || !strstr(out, CASES[i].want)) fail_msg("--ffn-layer 1=%s: exit %d: %s", CASES[i].spec, rc, out);
        free(out);
    }
}

static void test_given_tokenizer_sizes_the_model(void **state) {
    (void)state;
    char corpus[4200], tok[4200], path[4300], *out;
    snprintf(corpus, sizeof corpus, "%s/tok_corpus.txt", g_dir);
    snprintf(tok, sizeof tok, "%s/tok400.json", g_dir);
    int rc = ts_ffnlab(&out, "data generate --out %s --bytes 200000", corpus);
    if (!rc) free(out), rc = ts_ffnlab(&out, "tokenizer train --corpus %s --vocab-size 400 --out %s", corpus, tok);
    if (rc) fail_msg("making a tokenizer failed: %s", out);
    free(out);
    rc = ts_ffnlab(&out, "train " TINY " --steps 2 --tokenizer %s --run-dir %s/tok400", tok, g_dir); /* TINY says 320 */
    if (rc) fail_msg("train failed: %s", out);
    assert_non_null(strstr(out, "vocab_size 400: the tokenizer's (the config said 320)"));
    free(out);
    snprintf(path, sizeof path, "%s/tok400/train_config.json", g_dir);
    cJSON *cfg = ts_read_json(path);
    assert_int_equal(ts_json_num(cfg, "vocab_size"), 400);
    cJSON_Delete(cfg);
    rc = ts_ffnlab(&out, "train --resume --steps 4 --no-progress --run-dir %s/tok400", g_dir);
    if (rc) fail_msg("resume failed: %s", out);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns_below_unigram_entropy),
        cmocka_unit_test(test_encoder_learns),
        cmocka_unit_test(test_resume_is_bit_identical),
        cmocka_unit_test(test_metrics_stats_and_summary),
        cmocka_unit_test(test_resume_cuts_metrics),
        cmocka_unit_test(test_refuses_to_overwrite_a_run),
        cmocka_unit_test(test_nan_loss_stops_naming_the_step),
        cmocka_unit_test(test_failed_start_leaves_nothing),
        cmocka_unit_test(test_failure_keeps_an_existing_run),
        cmocka_unit_test(test_sigint_saves_and_resumes),
        cmocka_unit_test(test_bad_input_is_one_clear_line),
        cmocka_unit_test(test_sigterm_is_like_sigint),
        cmocka_unit_test(test_sigkill_during_checkpoint),
        cmocka_unit_test(test_full_disk_keeps_the_last_checkpoint),
        cmocka_unit_test(test_unwritable_run_folder_refused_first),
        cmocka_unit_test(test_misbehaving_plugin_named),
        cmocka_unit_test(test_given_tokenizer_sizes_the_model),
    };
    return cmocka_run_group_tests_name("train", tests, ts_suite_dir_setup, ts_suite_dir_teardown);
}
