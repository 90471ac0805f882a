/*
 * tests/support/tensor_fixture.h — tensors for backend tests, and the checks
 * every op test makes.
 *
 * Tensors come from one arena on the backend chosen with tf_use() and are all
 * freed by tf_free_all (a CMocka teardown). Data is read and written through
 * F()/I() directly, so these helpers are for host-memory backends (the CPU);
 * a GPU test copies to the CPU first.
 *
 *   fl_tensor x = f2(N, D);  rnd(&x, key, -1, 1);  F(&x)[i] ...
 *   chk(got, want, n, rtol, atol, "what")         compare, printing the error
 *   fd_check("what", x, n, grad, loss)             central finite differences
 */
#ifndef FFNLAB_TENSOR_FIXTURE_H
#define FFNLAB_TENSOR_FIXTURE_H

#include "support.h"

#include "backend.h"
#include "host_table.h"

#define FD_EPS 1e-3f
#define FD_TOL 5e-3 /* relative; the measured errors are printed */

void tf_use(const fl_backend *be);
int tf_free_all(void **state);

/* The backend of tf_use, its ops table, and a host table over it (for a
   plugin's own kernels, which take the host). */
extern const fl_backend *tf_be;
extern const fl_ops *tf_ops;
extern fl_host tf_host;
/* A CMocka group setup: tf_use(the CPU backend). */
int tf_setup_cpu(void **state);

/* A fresh tensor of up to 4 dims (unused dims 1), zeroed. */
fl_tensor tnew(int32_t dtype, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* A copy of t (same shape and dtype). */
fl_tensor clone(const fl_tensor *t);
/* The tensors of a GEMM check C = alpha op(A) op(B) + beta C: A [M,K] (or
   [K,M] when ta), B [K,N] (or [N,K] when tb), C [M,N], random in [-1, 1]
   (keys 1, 2, 3); C all NaN when beta = 0, since it must not be read; C0 a
   copy of C before the product. */
void tf_gemm_inputs(int ta, int tb, int64_t M, int64_t N, int64_t K, float beta, fl_tensor *A, fl_tensor *B,
                    fl_tensor *C, fl_tensor *C0);
/* out[M,N] = alpha op(A) op(B) + beta C0 in double (C0 not read when beta = 0). */
void tf_gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
                 float beta, const float *C0, double *out);
/* tf_ops->gemm on tf_gemm_inputs against tf_gemm_ref: each element within
   a relative 1e-5 or an absolute atol (chk). */
void tf_check_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, double atol);

static inline fl_tensor f1(int64_t n) { return tnew(FL_F32, 1, n, 1, 1, 1); }
static inline fl_tensor f2(int64_t r, int64_t c) { return tnew(FL_F32, 2, r, c, 1, 1); }
static inline fl_tensor f3(int64_t a, int64_t b, int64_t c) { return tnew(FL_F32, 3, a, b, c, 1); }
static inline fl_tensor i1(int64_t n) { return tnew(FL_I32, 1, n, 1, 1, 1); }
static inline fl_tensor i2(int64_t r, int64_t c) { return tnew(FL_I32, 2, r, c, 1, 1); }
static inline float *F(const fl_tensor *t) { return (float *)t->data; }
static inline int32_t *I(const fl_tensor *t) { return (int32_t *)t->data; }
static inline int64_t N_(const fl_tensor *t) { return fl_numel(t); }

/* uniform in [lo, hi) from a test-local stream (not the backend's rng op) */
void rnd(fl_tensor *t, uint64_t key, float lo, float hi);
/* integers in [lo, hi) */
void rnd_idx(fl_tensor *t, uint64_t key, int lo, int hi);
double dot_d(const float *a, const float *b, int64_t n);
/* doubles -> floats in a fresh arena buffer */
float *to_f(const double *d, int64_t n);

/* ts_assert_close, printing the relative error it measured */
void chk(const float *got, const float *want, size_t n, double rtol, double atol, const char *what);
/* Central differences of loss() over x[0..n) against grad; fails above FD_TOL.
   Returns the relative error. */
double fd_check(const char *what, float *x, int64_t n, const float *grad, double (*loss)(void));

#endif
