/*
 * tests/mpi/test_dist_train.c — `mpirun -np P ffnlab train` against the
 * one-process run, as a user runs it (this program starts mpirun itself).
 *
 * Specification:
 *  - data parallel: the same global batch trained for 4 steps with P = 1,
 *    2 and 4 gives the same losses (relative 2e-5) and the same parameters
 *    and AdamW moments (|a - b| <= 2e-5 + 1e-4 |b|); the reduction order
 *    differs, so the match is to float tolerance, not bit for bit
 *    (observed: 40 times inside it);
 *  - an encoder (arch bert), whose ranks mask different numbers of
 *    positions: P = 2 matches P = 1 the same way;
 *  - sparse-row parameters (PKM values): P = 2 matches P = 1 the same way;
 *  - expert parallel: an MoE model (4 experts, top-2, with its balance
 *    loss) trained with P = 2 / E = 2, P = 4 / E = 4 and P = 4 / E = 2 (data
 *    and expert parallel together) matches the one-process run the same way;
 *  - checkpoints: the 4-rank expert-parallel checkpoint loads in one
 *    process (--resume, nothing left to train) and gives the same
 *    validation loss; a one-process run paused with --stop-after continues
 *    on 2 ranks with the losses of the uninterrupted run;
 *  - failures: an error on one rank ends the job with that rank's message
 *    (no hang: each job runs under `timeout`); a rank killed (SIGKILL)
 *    mid-run ends the whole job within 30 s with a line naming the rank,
 *    and the last checkpoint loads and trains on in one process; ranks given different
 *    configs, a batch that does not split over the ranks, and experts that
 *    do not split over expert_parallel stop at start-up with one clear line.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* adam_eps 1e-6 rather than 1e-8: with 1e-8 AdamW turns round-off in a
   gradient that is ~0 (|g| ~ 1e-10, either sign) into an update of ~1% of
   a full LR step, a property of AdamW, not of the distribution. */
#define MODEL "--device cpu --vocab-size 320 --d-model 32 --n-layers 2 --n-heads 2 --context 32 --batch-size 8 " \
              "--warmup-steps 1 --eval-every 0 --eval-batches 2 --log-every 1 --no-progress --threads 1 --steps 4 " \
              "--adam-eps 1e-6"
#define MOE "--ffn moe:experts=4,top_k=2"
#define PKM "--ffn-layer 1=pkm:heads=2,n_keys=32,k_dim=32,knn=8,query_norm=layernorm"
#define LOSS_RTOL 2e-5
#define PARAM_RTOL 1e-4
#define PARAM_ATOL 2e-5

static char *g_dir;    /* this run's scratch folder */
static char g_data[4096]; /* "--data-dir ... --tokenizer ...": the shards every run shares */

/* Runs `ffnlab train ARGS` on np ranks (0: no mpirun) with a time limit, so
   a hang fails instead of blocking ctest. Output in *out. */
static int train(char **out, int np, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int train(char **out, int np, const char *fmt, ...) {
    char args[4096], cmd[10000], launch[512] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (np > 0) snprintf(launch, sizeof launch, "%s -np %d ", FFNLAB_MPIRUN, np);
    snprintf(cmd, sizeof cmd, "timeout 120 %s'%s' train %s", launch, ts_ffnlab_bin(), args);
    int rc = ts_run(cmd, out);
    if (rc == 124) fail_msg("hung (killed after 120 s): %s\n%s", cmd, *out);
    return rc;
}

static void train_ok(int np, const char *args, const char *run) {
    char *out = NULL;
    int rc = train(&out, np, "%s %s --run-dir %s/%s", args, g_data, g_dir, run);
    if (rc) fail_msg("train on %d ranks failed (%d): %s", np, rc, out);
    free(out);
}

/* The "loss" of each training line of metrics.jsonl. */
static int losses(const char *run, double *out, int max) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", g_dir, run);
    char *text = ts_read_file(path, NULL);
    assert_non_null(text);
    int n = 0;
    for (char *p = text; (p = strstr(p, "\"loss\":")) && n < max; p++) out[n++] = strtod(p + 7, NULL);
    free(text);
    return n;
}

static void assert_same_losses(const char *a, const char *b) {
    double la[64], lb[64];
    int na = losses(a, la, 64), nb = losses(b, lb, 64);
    assert_int_equal(na, nb);
    assert_true(na > 0);
    for (int i = 0; i < na; i++)
        if (fabs(la[i] - lb[i]) > LOSS_RTOL * fabs(lb[i]))
            fail_msg("%s vs %s: step %d loss %.7f vs %.7f", a, b, i + 1, la[i], lb[i]);
}

/* Every tensor of a's checkpoint (model or optimizer) equals b's. */
static void assert_same_file(const char *a, const char *b, const char *file) {
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s/%s/checkpoint/%s", g_dir, a, file);
    snprintf(pb, sizeof pb, "%s/%s/checkpoint/%s", g_dir, b, file);
    fl_st_file *fa = NULL, *fb = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_open(pa, &fa, &err), &err);
    ts_assert_ok(fl_safetensors_open(pb, &fb, &err), &err);
    assert_int_equal(fl_safetensors_count(fa), fl_safetensors_count(fb));
    for (size_t i = 0; i < fl_safetensors_count(fa); i++) {
        const fl_st_entry *ea = fl_safetensors_at(fa, i), *eb = fl_safetensors_find(fb, ea->name);
        if (!eb) fail_msg("%s: %s is missing", pb, ea->name);
        assert_int_equal(ea->ndim, eb->ndim);
        size_t n = 1;
        for (int d = 0; d < ea->ndim; d++) {
            assert_int_equal(ea->shape[d], eb->shape[d]);
            n *= (size_t)ea->shape[d];
        }
        char what[700];
        snprintf(what, sizeof what, "%s: %s", file, ea->name);
        ts_assert_close(ea->data, eb->data, n, PARAM_RTOL, PARAM_ATOL, what);
    }
    fl_safetensors_close(fa);
    fl_safetensors_close(fb);
}

static void assert_same_run(const char *a, const char *b) {
    assert_same_losses(a, b);
    assert_same_file(a, b, "model.safetensors");
    assert_same_file(a, b, "optimizer.safetensors");
}

/* "validation loss X" of the final line of a train run's output. */
static double final_val_loss(const char *out) {
    const char *p = strstr(out, "trained ");
    p = p ? strstr(p, "validation loss ") : NULL;
    if (!p) fail_msg("no final validation loss in: %s", out);
    return strtod(p + 16, NULL);
}

static int contains(const char *out, const char *what) { return out && strstr(out, what) != NULL; }

/* ------------------------------------------------------------------- setup */

static int setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir();
    char *out = NULL;
    /* the shards and tokenizer every run below shares */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' train --corpus-bytes 200000 %s --steps 1 --run-dir %s/data_run", ts_ffnlab_bin(),
             MODEL, g_dir);
    int rc = ts_run(cmd, &out);
    if (rc) fprintf(stderr, "preparing data failed: %s\n", out);
    free(out);
    snprintf(g_data, sizeof g_data, "--data-dir %s/data_run/data --tokenizer %s/data_run/tokenizer.json", g_dir, g_dir);
    return rc;
}

static int teardown(void **state) {
    (void)state;
    ts_rmtree(g_dir);
    free(g_dir);
    return 0;
}

/* -------------------------------------------------------------------- tests */

static void test_data_parallel_matches_one_process(void **state) {
    (void)state;
    train_ok(0, MODEL, "dp1");
    train_ok(2, MODEL, "dp2");
    train_ok(4, MODEL, "dp4");
    assert_same_run("dp2", "dp1");
    assert_same_run("dp4", "dp1");
}

/* An encoder's ranks mask different numbers of positions; weighted by
   their share (train.c), their averaged gradient is that of the global
   batch's mean over every masked position, as in one process. */
static void test_encoder_data_parallel(void **state) {
    (void)state;
    for (int np = 0; np <= 2; np += 2) { /* each prepares the same corpus and tokenizer (with <s> ... <mask>) */
        char *out = NULL;
        int rc = train(&out, np, "%s --arch bert --corpus-bytes 200000 --run-dir %s/enc%d", MODEL, g_dir, np);
        if (rc) fail_msg("encoder on %d ranks failed (%d): %s", np, rc, out);
        free(out);
    }
    assert_same_run("enc2", "enc0");
}

/* PKM's values are FL_PARAM_SPARSE_ROWS: each rank touches other rows, so
   the touched rows are united before the all-reduce. (Its default
   batchnorm query normalisation uses per-rank batch statistics, so the
   exact comparison uses layernorm.) */
static void test_sparse_rows_data_parallel(void **state) {
    (void)state;
    train_ok(0, MODEL " " PKM, "pkm1");
    train_ok(2, MODEL " " PKM, "pkm2");
    assert_same_run("pkm2", "pkm1");
}

static void test_resume_on_another_process_count(void **state) {
    (void)state;
    char *out = NULL;
    int rc = train(&out, 0, "%s %s --stop-after 2 --run-dir %s/pause", MODEL, g_data, g_dir);
    if (rc) fail_msg("paused run failed (%d): %s", rc, out);
    free(out);
    rc = train(&out, 2, "%s %s --resume --run-dir %s/pause", MODEL, g_data, g_dir);
    if (rc) fail_msg("resume on 2 ranks failed (%d): %s", rc, out);
    free(out);
    assert_same_run("pause", "dp1"); /* dp1: the uninterrupted run of the test before */
}

static void test_expert_parallel_matches_one_process(void **state) {
    (void)state;
    train_ok(0, MODEL " " MOE, "ep1");
    train_ok(2, MODEL " " MOE " --expert-parallel 2", "ep2");
    train_ok(4, MODEL " " MOE " --expert-parallel 4", "ep4");
    train_ok(4, MODEL " " MOE " --expert-parallel 2", "ep4x2");
    assert_same_run("ep2", "ep1");
    assert_same_run("ep4", "ep1");
    assert_same_run("ep4x2", "ep1");
}

static void test_expert_checkpoint_loads_in_one_process(void **state) {
    (void)state;
    char *out = NULL;
    int rc = train(&out, 4, "%s %s --expert-parallel 4 --run-dir %s/ck4", MODEL " " MOE, g_data, g_dir);
    if (rc) fail_msg("4-rank run failed (%d): %s", rc, out);
    double v4 = final_val_loss(out);
    free(out);
    /* nothing left to train: the one-process run loads, saves and evaluates */
    rc = train(&out, 0, "%s %s --expert-parallel 1 --resume --run-dir %s/ck4", MODEL " " MOE, g_data, g_dir);
    if (rc) fail_msg("1-process load failed (%d): %s", rc, out);
    double v1 = final_val_loss(out);
    free(out);
    if (fabs(v1 - v4) > LOSS_RTOL * fabs(v4)) fail_msg("validation loss %.7f on 1 rank, %.7f on 4", v1, v4);
}

static void test_rank_error_ends_the_job(void **state) {
    (void)state;
    char *out = NULL;
    int rc = train(&out, 2, "%s --ffn '%s:rank=1,at_step=1' %s --run-dir %s/fail", MODEL, FFNLAB_RANKFAIL_PLUGIN,
                   g_data, g_dir);
    assert_int_not_equal(rc, 0);
    if (!contains(out, "rank 1: ") || !contains(out, "deliberate failure on rank 1 at step 1"))
        fail_msg("the failing rank's message is missing: %s", out);
    free(out);
}

/* Rank 1 killed in step 5 (after the checkpoint of step 4). Open MPI's
   mpirun ends the other ranks and names the killed one. */
static void test_rank_killed_ends_the_job(void **state) {
    (void)state;
    char *out = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = train(&out, 2, "%s --steps 40 --ckpt-every 2 --ffn '%s:rank=1,at_step=5,kill=true' %s --run-dir %s/killed",
                   MODEL, FFNLAB_RANKFAIL_PLUGIN, g_data, g_dir);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    print_message("rank 1 killed: the job ended after %.1f s with exit %d\n", secs, rc);
    assert_int_not_equal(rc, 0);
    if (secs > 30) fail_msg("the job took %.0f s to end", secs);
    if (!contains(out, "rank 1") || !contains(out, "signal 9")) fail_msg("no line names the killed rank: %s", out);
    if (contains(out, "step 7/40")) fail_msg("rank 0 trained on alone: %s", out);
    free(out);
    char path[4200];
    snprintf(path, sizeof path, "%s/killed/checkpoint/model.safetensors", g_dir);
    fl_st_file *f = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_open(path, &f, &err), &err);
    assert_string_equal(fl_safetensors_meta(f, "step"), "4");
    fl_safetensors_close(f);
    /* one process is rank 0: the plugin kills nothing, the run completes */
    rc = train(&out, 0, "--resume --no-progress --run-dir %s/killed", g_dir);
    if (rc) fail_msg("resume of the killed job's checkpoint failed (%d): %s", rc, out);
    free(out);
}

static void test_start_up_errors(void **state) {
    (void)state;
    char *out = NULL;
    /* two ranks, two seeds (MPMD launch) */
    char cmd[10000];
    snprintf(cmd, sizeof cmd, "timeout 120 %s -np 1 '%s' train %s %s --seed 1 --run-dir %s/mm : -np 1 '%s' train %s %s --seed 2 --run-dir %s/mm",
             FFNLAB_MPIRUN, ts_ffnlab_bin(), MODEL, g_data, g_dir, ts_ffnlab_bin(), MODEL, g_data, g_dir);
    int rc = ts_run(cmd, &out);
    if (rc == 0 || rc == 124 || !contains(out, "different configurations")) fail_msg("mismatched configs (%d): %s", rc, out);
    free(out);
    rc = train(&out, 4, "%s %s --batch-size 6 --run-dir %s/split", MODEL, g_data, g_dir);
    if (rc == 0 || !contains(out, "batch_size 6 does not split over 4 processes")) fail_msg("batch split (%d): %s", rc, out);
    free(out);
    rc = train(&out, 2, "%s --ffn moe:experts=3 --expert-parallel 2 %s --run-dir %s/odd", MODEL, g_data, g_dir);
    if (rc == 0 || !contains(out, "experts do not split evenly over expert_parallel = 2")) fail_msg("expert split (%d): %s", rc, out);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_parallel_matches_one_process),
        cmocka_unit_test(test_encoder_data_parallel),
        cmocka_unit_test(test_sparse_rows_data_parallel),
        cmocka_unit_test(test_resume_on_another_process_count),
        cmocka_unit_test(test_expert_parallel_matches_one_process),
        cmocka_unit_test(test_expert_checkpoint_loads_in_one_process),
        cmocka_unit_test(test_rank_error_ends_the_job),
        cmocka_unit_test(test_rank_killed_ends_the_job),
        cmocka_unit_test(test_start_up_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
