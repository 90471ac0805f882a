/*
 * tests/support/tensor_fixture.c — see tensor_fixture.h.
 */
#include "tensor_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ALLOCS 4096
const fl_backend *tf_be;
const fl_ops *tf_ops;
fl_host tf_host;
static void *g_allocs[MAX_ALLOCS];
static int g_n_allocs;

void tf_use(const fl_backend *be) {
    tf_be = be;
    tf_ops = &be->ops;
    fl_host_init(&tf_host, be, NULL);
}

int tf_setup_cpu(void **state) {
    (void)state;
    tf_use(fl_backend_cpu());
    return 0;
}

int tf_free_all(void **state) {
    (void)state;
    for (int i = 0; i < g_n_allocs; i++) tf_be->free(g_allocs[i]);
    g_n_allocs = 0;
    return 0;
}

fl_tensor tnew(int32_t dtype, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const int64_t shape[4] = {d0, d1, d2, d3};
    fl_tensor t = fl_wrap(NULL, dtype, tf_be->device, ndim, shape);
    t.data = tf_be->alloc(fl_nbytes(&t));
    assert_non_null(t.data);
    assert_true(g_n_allocs < MAX_ALLOCS);
    g_allocs[g_n_allocs++] = t.data;
    return t;
}

fl_tensor clone(const fl_tensor *t) {
    fl_tensor c = tnew(t->dtype, t->ndim, t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
    memcpy(c.data, t->data, fl_nbytes(t));
    return c;
}

void rnd(fl_tensor *t, uint64_t key, float lo, float hi) {
    for (int64_t i = 0; i < N_(t); i++) F(t)[i] = lo + (hi - lo) * fl_rng_uniform(key, (uint64_t)i);
}

void rnd_idx(fl_tensor *t, uint64_t key, int lo, int hi) {
    for (int64_t i = 0; i < N_(t); i++)
        I(t)[i] = lo + (int)(fl_rng_uniform(key, (uint64_t)i) * (float)(hi - lo));
}

double dot_d(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

float *to_f(const double *d, int64_t n) {
    fl_tensor t = f1(n);
    for (int64_t i = 0; i < n; i++) F(&t)[i] = (float)d[i];
    return F(&t);
}

void chk(const float *got, const float *want, size_t n, double rtol, double atol, const char *what) {
    print_message("  %-34s rel error %.2e\n", what, ts_rel_error(got, want, n));
    ts_assert_close(got, want, n, rtol, atol, what);
}

double fd_check(const char *what, float *x, int64_t n, const float *grad, double (*loss)(void)) {
    float *fd = malloc((size_t)n * sizeof *fd);
    for (int64_t i = 0; i < n; i++) {
        const float x0 = x[i];
        x[i] = x0 + FD_EPS;
        const float xp = x[i]; /* the step actually taken, after rounding */
        const double lp = loss();
        x[i] = x0 - FD_EPS;
        const float xm = x[i];
        const double lm = loss();
        x[i] = x0;
        fd[i] = (float)((lp - lm) / ((double)xp - (double)xm));
    }
    const double rel = ts_rel_error(grad, fd, (size_t)n);
    print_message("  %-34s FD rel error %.2e\n", what, rel);
    if (!(rel < FD_TOL)) ts_assert_close(grad, fd, (size_t)n, FD_TOL, FD_TOL, what);
    free(fd);
    return rel;
}

void tf_gemm_inputs(int ta, int tb, int64_t M, int64_t N, int64_t K, float beta, fl_tensor *A, fl_tensor *B,
                    fl_tensor *C, fl_tensor *C0) {
    *A = ta ? f2(K, M) : f2(M, K);
    *B = tb ? f2(N, K) : f2(K, N);
    *C = f2(M, N);
    rnd(A, 1, -1, 1);
    rnd(B, 2, -1, 1);
    rnd(C, 3, -1, 1);
    if (beta == 0.0f)
        for (int64_t i = 0; i < M * N; i++) F(C)[i] = NAN;
    *C0 = clone(C);
}

void tf_gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
                 float beta, const float *C0, double *out) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
            out[i * N + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C0[i * N + j]);
        }
}

void tf_check_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, double atol) {
    fl_tensor A, B, C, C0;
    tf_gemm_inputs(ta, tb, M, N, K, beta, &A, &B, &C, &C0);
    double *ref = malloc((size_t)(M * N) * sizeof *ref);
    tf_gemm_ref(ta, tb, M, N, K, alpha, F(&A), F(&B), beta, F(&C0), ref);
    tf_ops->gemm(ta, tb, alpha, &A, &B, beta, &C);
    char what[96];
    snprintf(what, sizeof what, "gemm t%d%d %lldx%lldx%lld a=%g b=%g", ta, tb, (long long)M, (long long)N, (long long)K,
             alpha, beta);
    chk(F(&C), to_f(ref, M * N), (size_t)(M * N), 1e-5, atol, what);
    free(ref);
}
