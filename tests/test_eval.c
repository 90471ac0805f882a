/*
 * tests/test_eval.c — `ffnlab eval`, `train --eval-task` and the task loader,
 * end to end as a user runs them.
 *
 * Specification:
 *  - the loader refuses a broken task plugin (ABI major, struct size, missing
 *    run(), name not the file's, wrong kind) with one line naming file and
 *    reason;
 *  - `ffnlab eval --run DIR --task SPEC` writes DIR/eval.json (task, spec,
 *    metric, kind, value, n, time, the checkpoint step and the SHA-256 of
 *    model.safetensors, the run's config) and prints a table; a list option
 *    may be written with commas (words=a,b,c);
 *  - results of tasks not run again are kept for the same weights;
 *  - a bad spec (unknown task or option, value out of range) fails before any
 *    task runs; a failing task is one line (its prefix said once, no progress
 *    line of the failed task before it), and the tasks before it are saved;
 *  - an evaluation that fails before any task finished leaves the run folder
 *    byte-identical, and eval/ exists only when a task wrote a file there;
 *  - blimp reads the release, BabyLM and supplement layouts through the CLI,
 *    stops at a malformed line with FILE:LINE, or skips and counts it;
 *  - glue fine-tunes on the GLUE-layout and BabyLM-layout fixtures and reports
 *    each task's metric, its majority baseline and the train size; hidden
 *    test labels give a predictions file;
 *  - `ffnlab train --eval-task blimp --eval-task lm` evaluates at the end;
 *  - a model trained briefly on the built-in corpus beats chance by a wide
 *    margin on the built-in minimal pairs; a freshly initialised one does not.
 */
#include "support.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "loader.h"

#define FIX FFNLAB_TEST_SOURCE_DIR "/fixtures/tasks"
#define ECHO FFNLAB_TEST_PLUGIN_DIR "/task_echo.so"
/* A model small enough that a run takes seconds. */
#define TINY "--corpus-bytes 200000 --vocab-size 320 --d-model 32 --n-layers 1 --n-heads 2 " \
             "--context 48 --batch-size 8 --warmup-steps 2 --eval-every 0 --eval-batches 2 --log-every 5 --no-progress"

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir();
    char *out;
    int rc = ts_ffnlab(&out, "train " TINY " --steps 12 --run-dir %s/tiny", g_dir);
    if (rc) fprintf(stderr, "setup: train failed: %s\n", out);
    free(out);
    return rc;
}

static int teardown(void **state) {
    (void)state;
    ts_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static int str_eq(const cJSON *o, const char *key, const char *want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return want ? cJSON_IsString(v) && !strcmp(v->valuestring, want) : v == NULL;
}

/* The result entry of task/metric (subtask/group/item/split NULL = absent). */
static const cJSON *find_result(const cJSON *doc, const char *task, const char *metric, const char *subtask,
                                const char *item, const char *split) {
    const cJSON *r = NULL;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "results")) {
        if (str_eq(r, "task", task) && str_eq(r, "metric", metric) && str_eq(r, "subtask", subtask) &&
            str_eq(r, "item", item) && (!split || str_eq(r, "split", split)))
            return r;
    }
    return NULL;
}

static double value_of(const cJSON *doc, const char *task, const char *metric, const char *subtask, const char *item,
                       const char *split) {
    const cJSON *r = find_result(doc, task, metric, subtask, item, split);
    if (!r) fail_msg("no result %s/%s/%s/%s in eval.json", task, subtask ? subtask : "-", metric, item ? item : "-");
    return cJSON_GetObjectItemCaseSensitive(r, "value")->valuedouble;
}

static cJSON *eval_json(const char *run) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/eval.json", g_dir, run);
    return ts_read_json(path);
}

/* ---- the loader ---- */

static void expect_refused(const char *file, int kind, fl_status code, const char *a, const char *b) {
    fl_plugin p;
    fl_error err = {0};
    assert_int_equal(fl_plugin_load(file, kind, &p, &err), code);
    if (!strstr(err.msg, file) || !strstr(err.msg, a) || (b && !strstr(err.msg, b)))
        fail_msg("%s: unexpected message: %s", file, err.msg);
}

static void test_loader_refuses_broken_tasks(void **state) {
    (void)state;
    char newer[64], older[64], host[64];
    snprintf(newer, sizeof newer, "ABI version %d.%d found", FL_TASK_ABI_MAJOR + 1, FL_TASK_ABI_MINOR);
    snprintf(older, sizeof older, "ABI version 1.%d found", FL_TASK_ABI_MINOR);
    snprintf(host, sizeof host, "host supports %d.%d", FL_TASK_ABI_MAJOR, FL_TASK_ABI_MINOR);
    expect_refused(FFNLAB_TEST_PLUGIN_DIR "/task_abimajor.so", FL_PLUGIN_TASK, FL_EABI, newer, host);
    expect_refused(FFNLAB_TEST_PLUGIN_DIR "/task_abiold.so", FL_PLUGIN_TASK, FL_EABI, older, host);
    expect_refused(FFNLAB_TEST_PLUGIN_DIR "/task_smallstruct.so", FL_PLUGIN_TASK, FL_EABI, "struct_size", "smaller");
    expect_refused(FFNLAB_TEST_PLUGIN_DIR "/task_norun.so", FL_PLUGIN_TASK, FL_EINVAL, "'run'", "NULL");
    expect_refused(FFNLAB_TEST_PLUGIN_DIR "/task_badname.so", FL_PLUGIN_TASK, FL_EINVAL, "does not match the file name", "task_other.so");
    expect_refused(ECHO, FL_PLUGIN_FFN, FL_EINVAL, "wrong plugin kind", "says task, expected ffn");
    fl_plugin p;
    fl_error err = {0};
    ts_assert_ok(fl_plugin_load(ECHO, FL_PLUGIN_TASK, &p, &err), &err);
    assert_string_equal(p.header->name, "echo");
    fl_plugin_unload(&p);
    ts_assert_ok(fl_plugin_load("blimp", FL_PLUGIN_TASK, &p, &err), &err); /* by name, on the search path */
    fl_plugin_unload(&p);
}

static void test_join_lists(void **state) {
    (void)state;
    static const fl_option opts[] = {{"tasks", FL_OPT_STRING, "", 0, -1, NULL, ""}, {"lr", FL_OPT_FLOAT, "1", 0, 1, NULL, ""}};
    fl_error err = {0};
    char *out = NULL;
    ts_assert_ok(fl_eval_join_lists(opts, 2, "tasks=cola,sst2, rte,lr=3e-5", &out, &err), &err);
    assert_string_equal(out, "tasks=cola|sst2|rte,lr=3e-5");
    free(out);
    ts_assert_ok(fl_eval_join_lists(opts, 2, "lr=1,oops", &out, &err), &err); /* not after a string: left for the parser */
    assert_string_equal(out, "lr=1,oops");
    free(out);
}

/* ---- ffnlab eval ---- */

static void test_eval_writes_json_and_table(void **state) {
    (void)state;
    char *out;
    int rc = ts_ffnlab(&out, "eval --run %s/tiny --task " ECHO ":value=0.75,words=a,b,c", g_dir);
    if (rc) fail_msg("eval failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "accuracy"));
    assert_non_null(strstr(out, "0.7500"));
    assert_non_null(strstr(out, "[item=b]"));
    free(out);
    cJSON *doc = eval_json("tiny");
    const cJSON *r = find_result(doc, "echo", "accuracy", NULL, NULL, NULL);
    assert_non_null(r);
    assert_true(fabs(cJSON_GetObjectItemCaseSensitive(r, "value")->valuedouble - 0.75) < 1e-12);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(r, "n")->valueint, 10);
    assert_true(str_eq(r, "kind", "accuracy"));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r, "time_s")));
    assert_true(str_eq(r, "spec", ECHO ":value=0.75,words=a,b,c"));
    assert_true(fabs(value_of(doc, "echo", "accuracy", NULL, "b", NULL) - 0.75) < 1e-12);
    assert_true(value_of(doc, "echo", "words", NULL, NULL, NULL) == 3);   /* a,b,c joined into one list */
    assert_true(value_of(doc, "echo", "tokens", NULL, NULL, NULL) >= 1);
    assert_true(value_of(doc, "echo", "logprob", NULL, NULL, NULL) < 0);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(doc, "model");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(model, "step")->valueint, 12);
    char path[4096], sha[65];
    fl_error err = {0};
    snprintf(path, sizeof path, "%s/tiny/checkpoint/model.safetensors", g_dir);
    ts_assert_ok(fl_sha256_file(path, sha, &err), &err);
    assert_true(str_eq(model, "sha256", sha));
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(model, "config"), "d_model")->valueint, 32);
    cJSON_Delete(doc);
    /* the hash is the file's SHA-256, as sha256sum prints it */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    if (ts_run(cmd, &out) == 0) assert_int_equal(strncmp(out, sha, 64), 0);
    free(out);
}

static void test_sha256_known_values(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4096], sha[65];
    fl_error err = {0};
    snprintf(path, sizeof path, "%s/abc", dir);
    assert_int_equal(ts_write_file(path, "abc", 3), 0);
    ts_assert_ok(fl_sha256_file(path, sha, &err), &err);
    assert_string_equal(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(ts_write_file(path, "", 0), 0);
    ts_assert_ok(fl_sha256_file(path, sha, &err), &err);
    assert_string_equal(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ts_rmtree(dir);
    free(dir);
}

static void test_eval_keeps_other_tasks(void **state) {
    (void)state;
    char *out;
    int rc = ts_ffnlab(&out, "eval --run %s/tiny --task lm --task " ECHO ":value=0.5", g_dir);
    if (rc) fail_msg("eval failed (%d): %s", rc, out);
    free(out);
    rc = ts_ffnlab(&out, "eval --run %s/tiny --task " ECHO ":value=0.25", g_dir);
    if (rc) fail_msg("eval failed (%d): %s", rc, out);
    free(out);
    cJSON *doc = eval_json("tiny");
    assert_true(fabs(value_of(doc, "echo", "accuracy", NULL, NULL, NULL) - 0.25) < 1e-12); /* replaced */
    double ppl = value_of(doc, "lm", "perplexity", NULL, NULL, NULL);                        /* kept */
    assert_true(ppl > 1 && ppl < 400);
    int n_echo = 0;
    const cJSON *r = NULL;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "results")) n_echo += str_eq(r, "task", "echo");
    assert_int_equal(n_echo, 6); /* one run's worth, not two */
    cJSON_Delete(doc);
}

static void expect_eval_error(const char *args, int code, const char *a, const char *b) {
    char *out;
    int rc = ts_ffnlab(&out, "eval --run %s/tiny %s", g_dir, args);
    if (rc != code || !strstr(out, a) || (b && !strstr(out, b)))
        fail_msg("ffnlab eval %s: exit %d (want %d), output:\n%s", args, rc, code, out);
    free(out);
}

static void test_eval_errors(void **state) {
    (void)state;
    expect_eval_error("--task nosuch", 1, "task_nosuch: plugin not found", NULL);
    expect_eval_error("--task " ECHO ":bogus=1", 1, "--task echo: unknown option 'bogus'", "known: value, metric, fail, words");
    expect_eval_error("--task " ECHO ":value=2", 1, "--task echo", "out of range");
    expect_eval_error("", 2, "no --task given", NULL);
    expect_eval_error("--task glue", 1, "data=DIR is required", NULL);
    /* a results file that cannot be written is found before any task runs */
    expect_eval_error("--out /no/such/folder/e.json --task " ECHO ":fail=true", 1, "/no/such/folder/e.json: cannot create", NULL);
    expect_eval_error("--task glue:data=" FIX "/glue,tasks=cola,nope", 1, "unknown task 'nope'", NULL);
    char newer[64]; /* the plugin says the next major with this header's minor */
    snprintf(newer, sizeof newer, "ABI version %d.%d found", FL_TASK_ABI_MAJOR + 1, FL_TASK_ABI_MINOR);
    expect_eval_error("--task " FFNLAB_TEST_PLUGIN_DIR "/task_abimajor.so", 1, newer, NULL);
    /* a spec error stops everything before the first task runs */
    char path[4096];
    snprintf(path, sizeof path, "%s/tiny/eval.json", g_dir);
    remove(path);
    expect_eval_error("--task " ECHO " --task " ECHO ":value=7", 1, "out of range", NULL);
    snprintf(path, sizeof path, "%s/tiny/eval.json", g_dir);
    FILE *f = fopen(path, "r");
    assert_null(f);
    /* a task failing at run time: one line; the tasks before it are saved */
    expect_eval_error("--task " ECHO ":value=0.5 --task " ECHO ":fail=true", 1, "task echo: echo: asked to fail", NULL);
    cJSON *doc = eval_json("tiny");
    assert_true(fabs(value_of(doc, "echo", "accuracy", NULL, NULL, NULL) - 0.5) < 1e-12);
    cJSON_Delete(doc);
    char *out;
    assert_int_equal(ts_ffnlab(&out, "eval --run %s/nonexistent --task blimp", g_dir), 1);
    assert_non_null(strstr(out, "nonexistent"));
    free(out);
    /* a plugin that names its flag in its message: said once, not twice */
    assert_int_equal(ts_ffnlab(&out, "eval --run %s/tiny --task lm:stride=100", g_dir), 1);
    if (!strstr(out, "error: --task lm: stride 100 must be below the context (48)") || strstr(out, "--task lm: --task lm"))
        fail_msg("unexpected message: %s", out);
    free(out);
    /* a GLUE file refused: no "fine-tuned 1/1" progress line before the error */
    char glue[4300], cmd[9000];
    snprintf(glue, sizeof glue, "%s/glue_late/RTE", g_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp " FIX "/glue/RTE/dev.tsv %s/", glue, glue);
    assert_int_equal(ts_run(cmd, NULL), 0);
    snprintf(glue, sizeof glue, "%s/glue_late/RTE/train.tsv", g_dir);
    static const char bad_label[] = "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n";
    assert_int_equal(ts_write_file(glue, bad_label, sizeof bad_label - 1), 0);
    assert_int_equal(ts_ffnlab(&out, "eval --run %s/tiny --task glue:data=%s/glue_late,tasks=rte", g_dir, g_dir), 1);
    if (!strstr(out, "train.tsv:2: label \"maybe\"") || strstr(out, "fine-tuned")) fail_msg("unexpected output: %s", out);
    free(out);
}

static void test_failed_eval_changes_nothing(void **state) {
    (void)state;
    char run[4200], eval_dir[4300], *out;
    snprintf(run, sizeof run, "%s/untouched", g_dir);
    snprintf(eval_dir, sizeof eval_dir, "%s/eval", run);
    int rc = ts_ffnlab(&out, "train " TINY " --steps 2 --run-dir %s", run);
    if (rc) fail_msg("train failed: %s", out);
    free(out);
    /* a task that writes no file leaves no eval/ folder */
    assert_int_equal(ts_ffnlab(&out, "eval --run %s --task lm", run), 0);
    free(out);
    assert_int_equal(access(eval_dir, F_OK), -1);
    static const char *const failing[] = {
        "--task blimp:data=/nonexistent",             /* fails while running */
        "--task " ECHO ":fail=true",                  /* fails while running */
        "--task lm --task " ECHO ":value=7",          /* a bad spec: nothing runs */
    };
    for (int pass = 0; pass < 2; pass++) { /* without eval/, then with one a task made */
        char *before = ts_tree_digest(run);
        for (size_t i = 0; i < sizeof failing / sizeof *failing; i++) {
            rc = ts_ffnlab(&out, "eval --run %s %s", run, failing[i]);
            print_message("eval %s -> %d\n", failing[i], rc);
            assert_int_not_equal(rc, 0);
            free(out);
            char *after = ts_tree_digest(run);
            if (strcmp(before, after)) fail_msg("eval %s changed the run folder:\n%s\nbecame\n%s", failing[i], before, after);
            free(after);
        }
        free(before);
        if (!pass) { /* the built-in pairs are a file a task writes into eval/ */
            assert_int_equal(ts_ffnlab(&out, "eval --run %s --task blimp", run), 0);
            free(out);
            assert_int_equal(access(eval_dir, F_OK), 0);
        }
    }
}

/* ---- the built-in tasks through the CLI ---- */

static void test_blimp_layouts_and_errors(void **state) {
    (void)state;
    char *out;
    int rc = ts_ffnlab(&out, "eval --run %s/tiny --out %s/blimp.json --task blimp:data=" FIX "/blimp/release,supplement=" FIX
                             "/blimp/supplement --task blimp:data=" FIX "/blimp/babylm,paradigms=causative,wh_questions_object_gap",
                       g_dir, g_dir);
    if (rc) fail_msg("eval blimp failed (%d): %s", rc, out);
    free(out);
    char path[4096];
    snprintf(path, sizeof path, "%s/blimp.json", g_dir);
    cJSON *doc = ts_read_json(path);
    int paradigms = 0, phenomena = 0, fields = 0, supplement = 0;
    const cJSON *r = NULL;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "results")) {
        paradigms += str_eq(r, "group", "paradigm");
        phenomena += str_eq(r, "group", "phenomenon");
        fields += str_eq(r, "group", "field");
        supplement += str_eq(r, "subtask", "supplement") && str_eq(r, "group", "task");
    }
    assert_int_equal(paradigms, 3 + 2);
    assert_int_equal(phenomena, 3 + 2);
    assert_int_equal(fields, 3 + 1); /* both BabyLM paradigms are syntax */
    assert_int_equal(supplement, 2);
    const cJSON *pairs = NULL;
    cJSON_ArrayForEach(pairs, cJSON_GetObjectItemCaseSensitive(doc, "results"))
        if (str_eq(pairs, "metric", "pairs")) break;
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(pairs, "value")->valueint, 9); /* 6 release + 3 supplement */
    double acc = value_of(doc, "blimp", "accuracy_paradigm_mean", NULL, NULL, NULL);
    assert_true(acc >= 0 && acc <= 1);
    cJSON_Delete(doc);
    expect_eval_error("--task blimp:data=" FIX "/blimp/malformed", 1, "malformed/sv.jsonl:2: not valid JSON", NULL);
    expect_eval_error("--task blimp:data=" FIX "/blimp/release,paradigms=nope", 1, "paradigm 'nope' is not in", NULL);
    rc = ts_ffnlab(&out, "eval --run %s/tiny --task blimp:data=" FIX "/blimp/malformed,on_error=skip", g_dir);
    if (rc) fail_msg("eval blimp on_error=skip failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "sv.jsonl:4: sentence_bad is missing")); /* every skipped line is logged */
    free(out);
    doc = eval_json("tiny");
    assert_true(value_of(doc, "blimp", "skipped_lines", NULL, NULL, NULL) == 6); /* lines 2, 4, 6-9; the blank ones are no lines */
    assert_true(value_of(doc, "blimp", "pairs", NULL, NULL, NULL) == 2);
    cJSON_Delete(doc);
}

static void test_glue_fixtures(void **state) {
    (void)state;
    char *out;
    int rc = ts_ffnlab(&out, "eval --run %s/tiny --task glue:data=" FIX "/glue,tasks=cola,mrpc,mnli,qnli,boolq,multirc,wsc,"
                             "batch_size=4,max_steps=4,eval_every=2,lr=1e-3",
                       g_dir);
    if (rc) fail_msg("eval glue failed (%d): %s", rc, out);
    free(out);
    cJSON *doc = eval_json("tiny");
    double mcc = value_of(doc, "glue", "mcc", "cola", NULL, "dev");
    assert_true(mcc >= -1 && mcc <= 1);
    assert_true(value_of(doc, "glue", "majority_mcc", "cola", NULL, "dev") == 0); /* a constant prediction */
    assert_true(value_of(doc, "glue", "train_examples", "cola", NULL, NULL) == 18);
    value_of(doc, "glue", "f1", "mrpc", NULL, "dev");
    assert_true(value_of(doc, "glue", "majority_f1", "mrpc", NULL, "dev") == 0); /* train labels tie: class 0, no positives */
    assert_true(fabs(value_of(doc, "glue", "majority_accuracy", "mrpc", NULL, "dev") - 0.5) < 1e-9);
    value_of(doc, "glue", "accuracy", "mnli", NULL, "heldout"); /* no official dev here: the held-out part */
    value_of(doc, "glue", "accuracy", "qnli", NULL, "dev");
    value_of(doc, "glue", "accuracy", "multirc", NULL, "dev");
    value_of(doc, "glue", "accuracy", "wsc", NULL, "dev");
    assert_true(value_of(doc, "glue", "train_examples", "multirc", NULL, NULL) == 5);
    cJSON_Delete(doc);
    /* BabyLM layout: validation selects; hidden test labels → a predictions file */
    rc = ts_ffnlab(&out, "eval --run %s/tiny --task glue:data=" FIX "/babylm_glue,layout=babylm,tasks=cola,batch_size=4,"
                         "max_steps=2,max_train=5",
                   g_dir);
    if (rc) fail_msg("eval glue babylm failed (%d): %s", rc, out);
    free(out);
    doc = eval_json("tiny");
    value_of(doc, "glue", "mcc", "cola", NULL, "validation");
    assert_null(find_result(doc, "glue", "mcc", "cola", NULL, "test"));
    assert_true(value_of(doc, "glue", "train_examples", "cola", NULL, NULL) == 5);
    cJSON_Delete(doc);
    char path[4096];
    snprintf(path, sizeof path, "%s/tiny/eval/glue_cola_test_predictions.txt", g_dir);
    char *preds = ts_read_file(path, NULL);
    assert_non_null(preds);
    assert_true(strlen(preds) == 4); /* two labels, one per line */
    free(preds);
    expect_eval_error("--task glue:data=" FIX "/babylm_glue,layout=babylm,tasks=sst2", 1, "sst2.train.json not found", NULL);
}

static void test_train_runs_eval_tasks(void **state) {
    (void)state;
    char *out;
    /* a bad --eval-task fails before training starts */
    int rc = ts_ffnlab(&out, "train " TINY " --steps 6 --run-dir %s/typo --eval-task blimp:bogus=1", g_dir);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "--eval-task blimp: unknown option 'bogus'"));
    assert_null(strstr(out, "step 1"));
    free(out);
    rc = ts_ffnlab(&out, "train " TINY " --steps 6 --run-dir %s/withtasks --eval-task blimp --eval-task lm:max_tokens=500", g_dir);
    if (rc) fail_msg("train --eval-task failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "accuracy_paradigm_mean"));
    free(out);
    cJSON *doc = eval_json("withtasks");
    value_of(doc, "blimp", "accuracy_paradigm_mean", NULL, NULL, NULL);
    assert_true(value_of(doc, "lm", "tokens", NULL, NULL, NULL) == 499);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "model"), "config");
    assert_true(str_eq(cfg, "eval_tasks", "blimp;lm:max_tokens=500"));
    cJSON_Delete(doc);
}

/* ---- learning shows ---- */

#define LEARN "--corpus-bytes 1000000 --vocab-size 512 --d-model 64 --n-layers 2 --n-heads 4 --context 32 " \
              "--batch-size 32 --warmup-steps 30 --lr 1e-2 --eval-every 0 --no-progress"

static double builtin_blimp(const char *run, const char *train_args) {
    char *out;
    int rc = ts_ffnlab(&out, "train " LEARN " %s --run-dir %s/%s --eval-task blimp", train_args, g_dir, run);
    if (rc) fail_msg("train %s failed (%d): %s", run, rc, out);
    free(out);
    cJSON *doc = eval_json(run);
    double acc = value_of(doc, "blimp", "accuracy_paradigm_mean", NULL, NULL, NULL);
    print_message("%s: built-in minimal pairs, mean paradigm accuracy %.3f\n", run, acc);
    cJSON_Delete(doc);
    return acc;
}

static void test_trained_model_beats_chance(void **state) {
    (void)state;
    double fresh = builtin_blimp("fresh", "--steps 1 --warmup-steps 0 --lr 1e-12");
    double trained = builtin_blimp("trained", "--steps 600");
    assert_true(fresh > 0.35 && fresh < 0.62);
    assert_true(trained > 0.66);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader_refuses_broken_tasks),
        cmocka_unit_test(test_join_lists),
        cmocka_unit_test(test_sha256_known_values),
        cmocka_unit_test(test_eval_writes_json_and_table),
        cmocka_unit_test(test_eval_keeps_other_tasks),
        cmocka_unit_test(test_eval_errors),
        cmocka_unit_test(test_failed_eval_changes_nothing),
        cmocka_unit_test(test_blimp_layouts_and_errors),
        cmocka_unit_test(test_glue_fixtures),
        cmocka_unit_test(test_train_runs_eval_tasks),
        cmocka_unit_test(test_trained_model_beats_chance),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
