/*
 * tests/support/device_pair.h — one tensor on two backends, for the
 * GPU-vs-CPU suites (test_cuda_backend, test_cuda_plugin_kernels): the
 * suite sets CPU and GPU (ts_gpu_under_test), builds pairs, runs the same
 * step on both sides and compares them with the cmp_* checks, which print
 * the error measured and fail the test past the tolerance given.
 */
#ifndef FFNLAB_TEST_DEVICE_PAIR_H
#define FFNLAB_TEST_DEVICE_PAIR_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* The two backends compared: the reference (the CPU backend) and the one
   under test (the GPU, an emulation of it, or the CPU standing in). */
extern const fl_backend *CPU, *GPU;

typedef struct pair {
    fl_tensor c, g; /* the CPU side, the GPU side */
    size_t n, bytes;
} pair;

/* A tensor of `shape` from be->alloc (fails the test when it fails). */
fl_tensor talloc(const fl_backend *be, int dtype, int ndim, const int64_t *shape);
/* A pair of shape d0 x d1 x d2 x d3 (ndim dims), contents undefined. */
pair mk(int dtype, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
#define MK1(n0) mk(FL_F32, 1, n0, 1, 1, 1)
#define MK2(n0, n1) mk(FL_F32, 2, n0, n1, 1, 1)
#define MK3(n0, n1, n2) mk(FL_F32, 3, n0, n1, n2, 1)
/* An i32 pair holding v on both sides. */
pair mk_i32(const int32_t *v, int ndim, int64_t d0, int64_t d1);
void pfree(pair *p);

/* Both sides from one host array / normal(0, scale) values / one value. */
void pset(pair *p, const void *host);
void prandn(pair *p, uint64_t seed, float scale);
void pfill(pair *p, float v);
/* The CPU side copied over the GPU side (so both read one input). */
void pcopy_to_gpu(pair *p);

/* Waits for the GPU; a device error fails the test. */
void gpu_ok(void);
/* Host copies of both sides (malloc'ed; the caller frees them). */
void pget(const pair *p, void **c, void **g);

/* f32: ‖g − c‖₂ / ‖c‖₂ ≤ tol, non-finite values equal in place; returns
   the figure. */
double cmp_norm(const pair *p, double tol, const char *what);
/* f32: |g − c| ≤ atol + rtol |c| everywhere (NaN = NaN). */
void cmp_close(const pair *p, double rtol, double atol, const char *what);
/* Any dtype: bit-identical. */
void cmp_exact(const pair *p, const char *what);

#endif
