/*
 * tests/support/support.h — helpers shared by every test suite.
 *
 * Include after <cmocka.h>'s prerequisites (stdarg, stddef, stdint, setjmp).
 * ts_assert_close prints the first mismatches, the largest absolute
 * difference and the relative error before failing, so a failing numeric test
 * says where it failed.
 */
#ifndef FFNLAB_TEST_SUPPORT_H
#define FFNLAB_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ffnlab/status.h"

/* Fails the test (printing a report) unless |a-b| <= atol + rtol*|b| everywhere. */
void ts_assert_close(const float *a, const float *b, size_t n, double rtol, double atol,
                     const char *what);

/* Max relative error max|a-b| / max(max|b|, tiny); printed by ts_assert_close. */
double ts_rel_error(const float *a, const float *b, size_t n);

/* x rounded to bf16 bits (nearest, ties to even; NaN stays NaN), as the
   backends round a bf16 output or GEMM input; and bf16 bits widened. */
uint16_t ts_bf16(float x);
float ts_bf16_float(uint16_t h);
/* x rounded to bf16 and back (a value a bf16 tensor can hold) */
static inline float ts_bf16_round(float x) { return ts_bf16_float(ts_bf16(x)); }

/* Activation `act` (fl_activation: identity, GELU in GPT-2's tanh form,
   ReLU, SiLU) of x in double: the reference the ops and plugins are
   checked against. */
double ts_act_ref(int act, double x);

/* Fails the test printing err->msg unless st == FL_OK. */
#define ts_assert_ok(st, err)                                                        \
    do {                                                                             \
        fl_status ts_st_ = (st);                                                     \
        if (ts_st_ != FL_OK) fail_msg("status %d: %s", (int)ts_st_, (err)->msg);    \
    } while (0)

/* The backend a GPU-vs-CPU suite (`suite`, for messages) tests against the
   CPU: `emulated` when given (the CUDA code run on the CPU, *_emu suites),
   else the CPU itself with FFNLAB_TEST_GPU_AS_CPU=1 (checks the suite's own
   logic), else the first GPU. Returns 1 for a real GPU, 0 for a stand-in,
   77 (ctest's skip code, message printed) when there is no GPU. */
struct fl_backend;
int ts_gpu_under_test(const char *suite, const struct fl_backend *(*emulated)(void),
                      const struct fl_backend **gpu);

/* A fresh empty directory under $TMPDIR (or /tmp); removed by ts_rmtree. */
char *ts_tmpdir(void);
void ts_rmtree(const char *dir);

/* One temporary folder for a whole suite: pass these as the group setup and
   teardown of cmocka_run_group_tests; the folder is ts_suite_dir meanwhile. */
extern char *ts_suite_dir;
int ts_suite_dir_setup(void **state);
int ts_suite_dir_teardown(void **state);

/* Whole-file helpers; ts_read_file returns malloc'ed NUL-terminated data. */
int ts_write_file(const char *path, const void *data, size_t len);
char *ts_read_file(const char *path, size_t *len);

/* Runs `cmd` with /bin/sh, capturing stdout and stderr (malloc'ed into *out if
   out != NULL). Returns the exit status (or -1). */
int ts_run(const char *cmd, char **out);
/* ts_run of `ffnlab ARGS`, ARGS formatted as printf does (the shell reads
   them: quote paths). */
int ts_ffnlab(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ts_ffnlabv(char **out, const char *fmt, va_list ap);

/* Every path under dir with the SHA-256 of each file, sorted (malloc'ed):
   two equal digests mean two byte-identical trees. */
char *ts_tree_digest(const char *dir);

/* o[key] as a number; fails the test when it is missing or not a number. */
struct cJSON;
double ts_json_num(const struct cJSON *o, const char *key);
/* The JSON document in the file at path (free with cJSON_Delete); fails the
   test when the file cannot be read or is not JSON. */
struct cJSON *ts_read_json(const char *path);

/* Path of the `ffnlab` binary built with the tests. */
const char *ts_ffnlab_bin(void);

/* Writes the path of shared/data/<rel> into buf; 0 if it does not exist (then
   the caller should skip()). */
int ts_shared_data(const char *rel, char *buf, size_t n);

/* Scales the token and position embeddings and every attention c_attn
   weight of m (a CPU model) by s: attention then prefers some positions
   strongly, so a path that reads a wrong key, position or token moves the
   outputs by O(1), far past round-off. */
struct fl_model;
void ts_sharpen_attention(struct fl_model *m, float s);

#endif
