/*
 * tests/test_bench_comm.c — `ffnlab bench --comm` (run/bench_comm.c), end to
 * end at a small shape.
 *
 * One process (ctest test_bench_comm):
 *  - it prints that there are no collectives, and one training step line;
 *    its JSON says 1 process, no collectives, no time in them, and step
 *    figures that agree with each other (tokens/s and us/token from the
 *    step time and the global batch);
 *  - bad flags are one line and exit status 2; a --json file that cannot be
 *    written is refused (one line, status 1) before anything is measured.
 * Two processes (`test_bench_comm --mpi`, ctest mpi_bench_comm, MPI builds;
 * this program starts mpirun itself, each run under `timeout`):
 *  - the all-to-all-v and all-reduce lines and the step line with
 *    expert_parallel 2; the JSON says 2 processes and has the five
 *    collectives, each with a positive time;
 *  - a --json file that cannot be written, and a batch that does not split
 *    over the ranks, end every rank at once: a non-zero exit and the error
 *    printed once (by rank 0), nothing measured.
 * Speed itself is a benchmark, not a test: nothing here asserts a time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fsutil.h" /* fl_dir_is_empty */
#include "support.h"

#define SHAPE "--d-model 32 --layers 1 --heads 2 --context 16 --batch 4 --vocab 64 --steps 2"

/* `[mpirun -np np] ffnlab bench --comm SHAPE args` (np 0: no mpirun) */
static int bench_comm(int np, const char *args, char **out) {
    char cmd[8192], launch[1024] = "";
#ifdef FFNLAB_MPIRUN
    if (np > 0) snprintf(launch, sizeof launch, "%s -np %d ", FFNLAB_MPIRUN, np);
#endif
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 timeout 120 %s'%s' bench --comm " SHAPE " %s", launch,
             ts_ffnlab_bin(), args);
    const int rc = ts_run(cmd, out);
    if (rc == 124) fail_msg("hung (killed after 120 s): %s\n%s", cmd, out ? *out : "");
    return rc;
}

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

/* The step figures of a report: positive, and consistent with the step
   time and the global batch of SHAPE (4 x 16 tokens). */
static void check_step(const cJSON *doc, int processes) {
    assert_true(ts_json_num(doc, "processes") == processes);
    assert_true(ts_json_num(doc, "expert_parallel") == processes);
    const double ms = ts_json_num(doc, "step_ms"), tps = ts_json_num(doc, "tokens_per_s");
    assert_true(ms > 0);
    assert_true(fabs(tps - 64 / (ms * 1e-3)) <= 1e-9 * tps);
    assert_true(fabs(ts_json_num(doc, "us_per_token") - 1e3 * ms / 64) <= 1e-9 * 1e3 * ms / 64);
    /* the mean over ranks is at most the slowest rank's, which is kept in
       whole microseconds (truncated): to within 1 us */
    const double comm = ts_json_num(doc, "comm_ms");
    assert_true(comm >= 0 && comm <= ts_json_num(doc, "comm_max_ms") + 1e-3);
}

/* bench --comm on np ranks (0: no mpirun) writing a report: its output
   into *out, the report parsed */
static cJSON *run_reporting(int np, char **out) {
    char *dir = ts_tmpdir(), path[4200], args[4300];
    snprintf(path, sizeof path, "%s/c.json", dir);
    snprintf(args, sizeof args, "--json '%s'", path);
    const int rc = bench_comm(np, args, out);
    if (rc) fail_msg("bench --comm (np %d) failed (%d): %s", np, rc, *out);
    cJSON *doc = ts_read_json(path);
    ts_rmtree(dir);
    free(dir);
    return doc;
}

static void test_one_process(void **state) {
    (void)state;
    char *out = NULL;
    cJSON *doc = run_reporting(0, &out);
    assert_non_null(strstr(out, "communication: 1 process, expert_parallel 1"));
    assert_non_null(strstr(out, "collectives: none in one process"));
    assert_non_null(strstr(out, "training step (expert_parallel 1): "));
    free(out);
    check_step(doc, 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "collectives")), 0);
    assert_true(ts_json_num(doc, "comm_ms") == 0);
    cJSON_Delete(doc);
}

static void test_bad_flags_are_usage_errors(void **state) {
    (void)state;
    const char *bad[] = {"--layers 0", "--layers 65", "--steps x", "--batch", "--frobnicate 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        const int rc = bench_comm(0, bad[i], &out);
        print_message("  %s -> %d: %s", bad[i], rc, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, "ffnlab bench"));
        assert_int_equal(count(out, "\n"), 1);
        free(out);
    }
}

/* The report is written last: a place it cannot go is found first. */
static void test_unwritable_json_refused_first(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), args[4200], *out = NULL;
    const char *where[][2] = {{"/no/such/folder/c.json", "cannot create"}, {dir, "is a folder"}};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "--json '%s'", where[i][0]);
        const int rc = bench_comm(0, args, &out);
        print_message("  --json %s -> %d: %s", where[i][0], rc, out);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "ffnlab: error: --json: "));
        assert_non_null(strstr(out, where[i][1]));
        assert_int_equal(count(out, "\n"), 1); /* nothing measured before it */
        free(out);
    }
    assert_true(fl_dir_is_empty(dir)); /* the check's temporary file is gone */
    ts_rmtree(dir);
    free(dir);
}

#ifdef FFNLAB_MPIRUN
static void test_two_processes(void **state) {
    (void)state;
    char *out = NULL;
    cJSON *doc = run_reporting(2, &out);
    assert_int_equal(count(out, "communication: 2 processes, expert_parallel 2"), 1); /* rank 0 speaks */
    assert_int_equal(count(out, "  all-to-all-v "), 3);
    assert_int_equal(count(out, "  all-reduce "), 2);
    assert_non_null(strstr(out, "training step (expert_parallel 2): "));
    free(out);
    check_step(doc, 2);
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(doc, "collectives");
    assert_int_equal(cJSON_GetArraySize(ops), 5);
    const cJSON *op;
    cJSON_ArrayForEach(op, ops) assert_true(ts_json_num(op, "ms") > 0);
    cJSON_Delete(doc);
}

/* An error every rank meets at start-up ends the job: one line from rank
   0, not one per rank, and no rank left waiting in a collective. */
static void test_two_processes_stop_together(void **state) {
    (void)state;
    const char *cases[][2] = {{"--json /no/such/folder/c.json", "ffnlab: error: --json: /no/such/folder/c.json: cannot create"},
                              {"--batch 3", "--batch 3 does not split over 2 processes"}};
    for (int i = 0; i < 2; i++) {
        char *out = NULL;
        const int rc = bench_comm(2, cases[i][0], &out);
        print_message("  2 ranks, %s -> %d: %s", cases[i][0], rc, out);
        assert_int_not_equal(rc, 0);
        assert_int_equal(count(out, cases[i][1]), 1);
        assert_null(strstr(out, "communication: "));
        free(out);
    }
}
#endif

int main(int argc, char **argv) {
    const struct CMUnitTest one[] = {
        cmocka_unit_test(test_one_process),
        cmocka_unit_test(test_bad_flags_are_usage_errors),
        cmocka_unit_test(test_unwritable_json_refused_first),
    };
#ifdef FFNLAB_MPIRUN
    const struct CMUnitTest two[] = {
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_two_processes_stop_together),
    };
    if (argc > 1 && !strcmp(argv[1], "--mpi")) return cmocka_run_group_tests_name("bench_comm_mpi", two, NULL, NULL);
#endif
    (void)argc, (void)argv;
    return cmocka_run_group_tests_name("bench_comm", one, NULL, NULL);
}
