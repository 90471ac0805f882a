/*
 * tests/test_sweep.c — matched variants and `ffnlab sweep`, as a researcher
 * uses them.
 *
 * Specification:
 *  - --match params gives MoE, CNT and PKM the total FFN parameters of the
 *    dense reference within 1%, --match flops gives MoE and CNT its active
 *    FLOPs per token (inference) within 2%, and an option the variant fixes
 *    (moe:top_k=2, cnt:blocks=8) stays as written; a variant whose plugin has
 *    no free size option, or that cannot reach the target, is one clear
 *    error; --match none leaves the spec as given;
 *  - `sweep --plan` prints every variant's spec and sizes and writes nothing;
 *  - a sweep killed (SIGKILL) while its second cell trains is continued by
 *    the same command: the finished cell is skipped untouched, the
 *    interrupted one resumes from its checkpoint, and its losses equal those
 *    of an uninterrupted sweep; every cell trains on the same shards, and
 *    an evaluated cell's summary.json gains its batch-1 decoding speed;
 *  - a command that changes the recorded experiment (config, --match,
 *    tasks) is refused naming the change; one that adds a seed runs only the
 *    new cells;
 *  - a cell that fails is recorded with its error, the others still run, the
 *    exit status is non-zero, and the next run retries only that cell;
 *  - an encoder sweep (--arch bert) runs every cell, its lm task reports the
 *    masked-LM loss and no decoding speed is measured; `ffnlab report` gives
 *    encoders their own table beside a decoder of the same shape.
 */
#include "support.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "match.h"

#define g_dir ts_suite_dir /* the suite's temporary folder */

/* ------------------------------------------------------------ matching */

/* A layer of width d in a 2-layer model with a 512-token vocabulary. */
static fl_ffn_site site_of(int d, int n_layers) {
    return (fl_ffn_site){.d_model = d, .index = 0, .n_layers = n_layers, .vocab_size = 512, .seed = 1};
}

static fl_matched match(const char *variant, const char *ref, int d, fl_match how) {
    fl_matched m;
    fl_error err = {0};
    const fl_ffn_site site = site_of(d, 2);
    ts_assert_ok(fl_match_ffn(variant, ref, &site, how, fl_backend_cpu(), &m, &err), &err);
    print_message("  %-8s %-28s -> %-52s params %8.0f (ref %8.0f)  flops %9.0f (ref %9.0f)\n", fl_match_name(how),
                  variant, m.spec, m.size.params, m.reference.params, m.size.flops_per_token,
                  m.reference.flops_per_token);
    return m;
}

static double rel(double a, double b) { return fabs(a - b) / b; }

static void test_match_params(void **state) {
    (void)state;
    static const char *const variants[] = {"dense", "moe", "moe:experts=4,top_k=2", "cnt", "cnt:blocks=8", "pkm",
                                           "pkm:heads=2,n_keys=24,knn=8"};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        fl_matched m = match(variants[i], "dense:d_ff=1024", 128, FL_MATCH_PARAMS);
        assert_true(rel(m.size.params, m.reference.params) <= 0.01);
        assert_int_equal(strncmp(m.spec, variants[i], strlen(variants[i])), 0); /* the given options stay */
    }
    /* what the matcher chose is a real layer of that size, not a figure */
    fl_matched m = match("moe:experts=4", "dense:d_ff=1024", 128, FL_MATCH_PARAMS);
    assert_string_equal(m.knob, "d_expert");
    fl_ffn_size direct;
    fl_error err = {0};
    const fl_ffn_site site = site_of(128, 2);
    ts_assert_ok(fl_ffn_size_of(m.spec, &site, fl_backend_cpu(), NULL, &direct, &err), &err);
    assert_true(direct.params == m.size.params);
    assert_true(direct.params == 4.0 * (2 * 128 * m.value + m.value + 128) + 128 * 4); /* experts + router */
}

static void test_match_flops(void **state) {
    (void)state;
    static const char *const variants[] = {"moe:experts=4", "moe:experts=8,top_k=2", "cnt", "cnt:block=16"};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        fl_matched m = match(variants[i], "dense:d_ff=512", 128, FL_MATCH_FLOPS);
        assert_true(rel(m.size.flops_per_token, m.reference.flops_per_token) <= 0.02);
        assert_int_equal(strncmp(m.spec, variants[i], strlen(variants[i])), 0);
    }
}

static void test_match_errors(void **state) {
    (void)state;
    fl_matched m;
    fl_error err = {0};
    const fl_ffn_site site = site_of(64, 1);
    assert_int_equal(fl_match_ffn("dense:d_ff=100", "dense:d_ff=512", &site, FL_MATCH_PARAMS, fl_backend_cpu(), &m, &err),
                     FL_EINVAL);
    print_message("  %s\n", err.msg);
    assert_non_null(strstr(err.msg, "fixes every size option"));
    assert_int_equal(fl_match_ffn("moe:bogus=1", "dense", &site, FL_MATCH_PARAMS, fl_backend_cpu(), &m, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "bogus"));
    assert_int_equal(fl_match_parse("tokens", &(fl_match){0}, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "expected params, flops or none"));
    ts_assert_ok(fl_match_ffn("moe:experts=2", "dense", &site, FL_MATCH_NONE, fl_backend_cpu(), &m, &err), &err);
    assert_string_equal(m.spec, "moe:experts=2");
}

/* ------------------------------------------------------------ the command */

/* A sweep small enough that a cell takes about a second. */
#define TINY "--corpus-bytes 150000 --vocab-size 300 --d-model 32 --n-layers 1 --n-heads 2 --context 32 " \
             "--batch-size 8 --warmup-steps 2 --eval-every 0 --log-every 10 --no-progress --tasks lm"

static int sweep(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sweep(char **out, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return ts_ffnlab(out, "sweep %s", args);
}

static char *read_text(const char *dir, const char *file) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *t = ts_read_file(path, NULL);
    if (!t) fail_msg("cannot read %s", path);
    return t;
}

/* cell's state in DIR/sweep.json */
static char *cell_state(const char *dir, const char *cell) {
    char *text = read_text(dir, "sweep.json");
    cJSON *doc = cJSON_Parse(text), *c;
    free(text);
    char *state = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "cells")) {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name")), cell))
            state = strdup(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "state")));
    }
    cJSON_Delete(doc);
    if (!state) fail_msg("%s/sweep.json has no cell %s", dir, cell);
    return state;
}

static void test_plan_writes_nothing(void **state) {
    (void)state;
    char *out;
    int rc = sweep(&out, TINY " --variants dense,moe:experts=2 --plan --out %s/plan", g_dir);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "moe-experts=2"));
    assert_non_null(strstr(out, "moe:experts=2,d_expert="));
    assert_non_null(strstr(out, "total params"));
    free(out);
    char path[4200];
    snprintf(path, sizeof path, "%s/plan", g_dir);
    assert_int_equal(access(path, F_OK), -1);
}

#define KILLED TINY " --variants dense,moe:experts=2 --steps 400 --ckpt-every 20"

static void test_killed_sweep_resumes(void **state) {
    (void)state;
    char dir[4200], ref[4200], cell2[4300], ck[4400], cmd[8192];
    snprintf(dir, sizeof dir, "%s/killed", g_dir);
    snprintf(ref, sizeof ref, "%s/uninterrupted", g_dir);
    snprintf(cell2, sizeof cell2, "%s/moe-experts=2-s1", dir);
    snprintf(ck, sizeof ck, "%s/checkpoint/model.safetensors", cell2);
    /* start, and kill it hard once the second cell has a checkpoint ("exec":
       the shell becomes ffnlab, so the signal reaches ffnlab itself) */
    snprintf(cmd, sizeof cmd, "exec '%s' sweep " KILLED " --out '%s' >/dev/null 2>&1", ts_ffnlab_bin(), dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int ms = 0; access(ck, F_OK) && ms < 120000; ms += 2) usleep(2000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status)); /* killed, not finished */
    if (access(ck, F_OK)) fail_msg("the second cell never wrote a checkpoint");
    char *state2 = cell_state(dir, "moe-experts=2-s1");
    print_message("killed with cell 2 %s\n", state2);
    assert_string_not_equal(state2, "done");
    free(state2);
    char first[4300];
    snprintf(first, sizeof first, "%s/dense-s1", dir);
    char *before = ts_tree_digest(first);

    char *out;
    int rc = sweep(&out, KILLED " --out '%s'", dir);
    if (rc) fail_msg("rerun failed: %s", out);
    assert_non_null(strstr(out, "cell 1/2 dense-s1: done already"));
    assert_non_null(strstr(out, "1 done before, 1 trained (1 resumed)"));
    free(out);
    char *after = ts_tree_digest(first);
    assert_string_equal(before, after); /* the finished cell was not touched */
    free(before), free(after);

    rc = sweep(&out, KILLED " --out '%s'", ref);
    if (rc) fail_msg("uninterrupted sweep failed: %s", out);
    free(out);
    char ref2[4300];
    snprintf(ref2, sizeof ref2, "%s/moe-experts=2-s1", ref);
    char *a = read_text(cell2, "metrics.jsonl"), *b = read_text(ref2, "metrics.jsonl");
    /* every loss and the final validation loss equal, bit for bit (time_s differs) */
    int lines = 0;
    for (char *pa = a, *pb = b; (pa = strstr(pa, "\"loss\":")) && (pb = strstr(pb, "\"loss\":")); pa++, pb++, lines++)
        assert_true(strtod(pa + 7, NULL) == strtod(pb + 7, NULL));
    assert_int_equal(lines, 40);
    assert_true(strtod(strstr(a, "\"val_loss\":") + 11, NULL) == strtod(strstr(b, "\"val_loss\":") + 11, NULL));
    free(a), free(b);
    /* each evaluated cell's summary has its decoding speed (batch 1, KV cache) */
    char *sum = read_text(cell2, "summary.json");
    cJSON *doc = cJSON_Parse(sum);
    const cJSON *decode = cJSON_GetObjectItemCaseSensitive(doc, "decode");
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(decode, "tokens_per_s")) > 0);
    assert_true(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(decode, "batch")) == 1);
    cJSON_Delete(doc);
    free(sum);
    /* all cells share the sweep's shards */
    char *cfg = read_text(cell2, "train_config.json");
    char want[4400];
    snprintf(want, sizeof want, "\"data_dir\":\t\"%s/data\"", dir);
    if (!strstr(cfg, want) && !strstr(cfg, "/killed/data")) fail_msg("the cell does not train on the sweep's data: %s", cfg);
    free(cfg);
}

static void test_changes_refused_seeds_added(void **state) {
    (void)state;
    char dir[4200], *out;
    snprintf(dir, sizeof dir, "%s/changes", g_dir);
    int rc = sweep(&out, TINY " --variants dense --steps 10 --out '%s'", dir);
    if (rc) fail_msg("sweep failed: %s", out);
    free(out);
    const struct {
        const char *flags, *want;
    } changed[] = {
        {"--steps 12", "the config's steps"},
        {"--steps 10 --match flops", "--match (was params, now flops)"},
        {"--steps 10 --tasks blimp", "the evaluation tasks"},
    };
    for (size_t i = 0; i < sizeof changed / sizeof *changed; i++) {
        rc = sweep(&out, TINY " --variants dense %s --out '%s'", changed[i].flags, dir);
        print_message("%s -> %d: %s", changed[i].flags, rc, out);
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(out, changed[i].want));
        assert_non_null(strstr(out, "run it with another --out"));
        free(out);
    }
    rc = sweep(&out, TINY " --variants dense --steps 10 --seeds 2 --out '%s'", dir);
    if (rc) fail_msg("adding a seed failed: %s", out);
    assert_non_null(strstr(out, "1 done before, 1 trained"));
    free(out);
}

static void test_failed_cell_recorded_and_retried(void **state) {
    (void)state;
    char dir[4200], *out, cmd[8192];
    snprintf(dir, sizeof dir, "%s/fails", g_dir);
    /* the nan test plugin breaks its cell at step 3; dense runs */
    snprintf(cmd, sizeof cmd, "FFNLAB_PLUGIN_PATH=%s:$FFNLAB_PLUGIN_PATH '%s' sweep " TINY
             " --match none --variants nan:at_step=3,dense --steps 10 --out '%s'", FFNLAB_TEST_PLUGIN_DIR,
             ts_ffnlab_bin(), dir);
    int rc = ts_run(cmd, &out);
    print_message("%s", strstr(out, "sweep: 2 cells") ? strstr(out, "sweep: 2 cells") : out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "1 cell failed (nan-at_step=3-s1)"));
    free(out);
    char *s1 = cell_state(dir, "nan-at_step=3-s1"), *s2 = cell_state(dir, "dense-s1");
    assert_string_equal(s1, "failed");
    assert_string_equal(s2, "done");
    free(s1), free(s2);
    char *json = read_text(dir, "sweep.json");
    assert_non_null(strstr(json, "not finite")); /* the cell's error is recorded */
    free(json);
    rc = ts_run(cmd, &out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "cell 2/2 dense-s1: done already"));
    assert_non_null(strstr(out, "cell 1/2 nan-at_step=3-s1 (nan:at_step=3, seed 1): training"));
    free(out);
}

/* 1 when eval.json text has a result of task with that metric. */
static int has_metric(const char *eval, const char *task, const char *metric) {
    cJSON *doc = cJSON_Parse(eval);
    const cJSON *r;
    int found = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "results")) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "task"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "metric"));
        found |= t && m && !strcmp(t, task) && !strcmp(m, metric);
    }
    cJSON_Delete(doc);
    return found;
}

/* An encoder sweep (--arch bert) runs like a decoder's: every cell done,
   the lm task reporting its masked-LM loss, no decoding speed (an encoder
   generates nothing); `ffnlab report` over it and a decoder sweep of the
   same shape gives the encoder its own table, its loss marked masked-LM. */
static void test_encoder_sweep_and_report(void **state) {
    (void)state;
    char enc[4200], dec[4200], rep[4200], *out;
    snprintf(enc, sizeof enc, "%s/encoder", g_dir);
    snprintf(dec, sizeof dec, "%s/decoder", g_dir);
    snprintf(rep, sizeof rep, "%s/report", g_dir);
    int rc = sweep(&out, TINY " --arch bert --variants dense,moe:experts=2 --steps 10 --out '%s'", enc);
    if (rc) fail_msg("encoder sweep failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "2 trained (0 resumed), 2 evaluated"));
    free(out);
    rc = sweep(&out, TINY " --variants dense --steps 10 --out '%s'", dec);
    if (rc) fail_msg("decoder sweep failed (%d): %s", rc, out);
    free(out);
    const char *cells[] = {"dense-s1", "moe-experts=2-s1"};
    for (int i = 0; i < 2; i++) {
        char *st = cell_state(enc, cells[i]), file[200];
        assert_string_equal(st, "done");
        free(st);
        snprintf(file, sizeof file, "%s/eval.json", cells[i]);
        char *eval = read_text(enc, file);
        assert_true(has_metric(eval, "lm", "mlm_loss"));
        assert_false(has_metric(eval, "lm", "perplexity"));
        snprintf(file, sizeof file, "%s/summary.json", cells[i]);
        char *summary = read_text(enc, file);
        assert_null(strstr(summary, "\"decode\""));
        free(eval), free(summary);
    }
    char *summary = read_text(dec, "dense-s1/summary.json");
    assert_non_null(strstr(summary, "\"decode\"")); /* a decoder's still measured */
    free(summary);
    char cmd[13000];
    snprintf(cmd, sizeof cmd, "FFNLAB_GNUPLOT=/nonexistent '%s' report '%s' '%s' --out '%s'", ts_ffnlab_bin(), enc, dec,
             rep);
    rc = ts_run(cmd, &out);
    if (rc) fail_msg("report failed (%d): %s", rc, out);
    print_message("%s", out);
    assert_non_null(strstr(out, "encoder (arch bert), d=32, 1 layer, 2 heads, context 32, vocab 300: 2 variants"));
    assert_non_null(strstr(out, "\nd=32, 1 layer, 2 heads, context 32, vocab 300: 1 variant"));
    free(out);
    char *md = read_text(rep, "report.md");
    assert_non_null(strstr(md, "val loss (masked LM)"));
    free(md);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_params),
        cmocka_unit_test(test_match_flops),
        cmocka_unit_test(test_match_errors),
        cmocka_unit_test(test_plan_writes_nothing),
        cmocka_unit_test(test_killed_sweep_resumes),
        cmocka_unit_test(test_changes_refused_seeds_added),
        cmocka_unit_test(test_failed_cell_recorded_and_retried),
        cmocka_unit_test(test_encoder_sweep_and_report),
    };
    return cmocka_run_group_tests_name("sweep", tests, ts_suite_dir_setup, ts_suite_dir_teardown);
}
