/*
 * tests/test_cpu_norm_groups_ops.c — the CPU backend's batchnorm and
 * layernorm_groups ops (ffnlab/host.h) against double-precision references
 * and central finite differences of L = sum(y * W) for a random W.
 *
 *   - batchnorm, train: y, the saved mean and rstd, and the running
 *     statistics (PyTorch's rule: momentum toward the batch mean and the
 *     unbiased variance) at 1e-5; NULL running statistics are allowed;
 *   - batchnorm, eval: the running statistics are used and left alone;
 *   - batchnorm_backward after train (batch = 1: the statistics depend on
 *     x) and after eval (batch = 0): dx, dg, db against finite differences,
 *     dg, db accumulated (+=);
 *   - layernorm_groups: y, mean, rstd per (row, group) with the per-column
 *     affine; its backward against finite differences, dg, db accumulated;
 *   - the threaded paths (chunked row reductions) against the double
 *     references, and bit for bit the same for 1 and 3 threads.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "backend.h"


#define EPS 1e-5f

/* The finite-difference loss reads these. */
static fl_tensor gX, gG, gB, gY, gW, gM, gR;
static int gTrain, gGroups;

/* ---------------------------------------------------------- batch norm */

/* Double reference: y[N,Fc], and the batch mean and biased variance. */
static void bn_ref(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, const float *use_mean,
                   const float *use_var, double *y, double *mean, double *var) {
    const int64_t N = x->shape[0], Fc = x->shape[1];
    for (int64_t f = 0; f < Fc; f++) {
        double m = 0, v = 0;
        for (int64_t n = 0; n < N; n++) m += F(x)[n * Fc + f];
        m /= N;
        for (int64_t n = 0; n < N; n++) v += (F(x)[n * Fc + f] - m) * (F(x)[n * Fc + f] - m);
        v /= N;
        mean[f] = m, var[f] = v;
        const double mu = use_mean ? use_mean[f] : m, s2 = use_var ? use_var[f] : v;
        for (int64_t n = 0; n < N; n++)
            y[n * Fc + f] = (F(x)[n * Fc + f] - mu) / sqrt(s2 + EPS) * F(g)[f] + F(b)[f];
    }
}

static void check_batchnorm_forward(int64_t N, int64_t Fc, uint64_t seed) {
    fl_tensor x = f2(N, Fc), g = f1(Fc), b = f1(Fc), y = f2(N, Fc), mean = f1(Fc), rstd = f1(Fc);
    fl_tensor rm = f1(Fc), rv = f1(Fc);
    rnd(&x, seed, -2, 3);
    rnd(&g, seed + 1, 0.5f, 1.5f);
    rnd(&b, seed + 2, -1, 1);
    rnd(&rm, seed + 3, -1, 1);
    rnd(&rv, seed + 4, 0.5f, 2);
    fl_tensor rm0 = clone(&rm), rv0 = clone(&rv);
    double *yr = malloc((size_t)(N * Fc) * sizeof *yr), *mr = malloc((size_t)Fc * sizeof *mr);
    double *vr = malloc((size_t)Fc * sizeof *vr), *rs = malloc((size_t)Fc * sizeof *rs);
    double *rmr = malloc((size_t)Fc * sizeof *rmr), *rvr = malloc((size_t)Fc * sizeof *rvr);
    bn_ref(&x, &g, &b, NULL, NULL, yr, mr, vr);
    for (int64_t f = 0; f < Fc; f++) {
        rs[f] = 1 / sqrt(vr[f] + EPS);
        rmr[f] = 0.75 * F(&rm)[f] + 0.25 * mr[f];
        rvr[f] = 0.75 * F(&rv)[f] + 0.25 * vr[f] * N / (N - 1);
    }
    char what[96];
    tf_ops->batchnorm(&x, &g, &b, EPS, 0.25f, 1, &y, &mean, &rstd, &rm, &rv);
    snprintf(what, sizeof what, "batchnorm train %lldx%lld y", (long long)N, (long long)Fc);
    chk(F(&y), to_f(yr, N * Fc), (size_t)(N * Fc), 1e-5, 1e-5, what);
    chk(F(&mean), to_f(mr, Fc), (size_t)Fc, 1e-5, 1e-6, "batchnorm train mean");
    chk(F(&rstd), to_f(rs, Fc), (size_t)Fc, 1e-5, 1e-6, "batchnorm train rstd");
    chk(F(&rm), to_f(rmr, Fc), (size_t)Fc, 1e-5, 1e-6, "batchnorm running_mean");
    chk(F(&rv), to_f(rvr, Fc), (size_t)Fc, 1e-5, 1e-6, "batchnorm running_var (unbiased)");
    /* no running statistics: the same y */
    fl_tensor y2 = f2(N, Fc);
    tf_ops->batchnorm(&x, &g, &b, EPS, 0.25f, 1, &y2, &mean, &rstd, NULL, NULL);
    assert_memory_equal(y.data, y2.data, fl_nbytes(&y));
    /* eval: the running statistics, untouched */
    fl_tensor rm1 = clone(&rm0), rv1 = clone(&rv0);
    bn_ref(&x, &g, &b, F(&rm1), F(&rv1), yr, mr, vr);
    tf_ops->batchnorm(&x, &g, &b, EPS, 0.25f, 0, &y, &mean, &rstd, &rm1, &rv1);
    snprintf(what, sizeof what, "batchnorm eval %lldx%lld y", (long long)N, (long long)Fc);
    chk(F(&y), to_f(yr, N * Fc), (size_t)(N * Fc), 1e-5, 1e-5, what);
    assert_memory_equal(rm1.data, rm0.data, fl_nbytes(&rm0));
    assert_memory_equal(rv1.data, rv0.data, fl_nbytes(&rv0));
    assert_memory_equal(mean.data, rm0.data, fl_nbytes(&rm0));
    free(yr), free(mr), free(vr), free(rs), free(rmr), free(rvr);
}

static void test_batchnorm_forward(void **state) {
    (void)state;
    check_batchnorm_forward(37, 19, 10);
    check_batchnorm_forward(2, 5, 20);      /* two rows: unbiased factor 2 */
    check_batchnorm_forward(3000, 40, 30);  /* threaded: chunked reductions */
}

/* Train forwards move the running statistics gM, gR (y does not read
   them); eval forwards read them. */
static fl_tensor gMean, gRstd;
static double bn_loss(void) {
    tf_ops->batchnorm(&gX, &gG, &gB, EPS, 0.1f, gTrain, &gY, &gMean, &gRstd, &gM, &gR);
    return dot_d(F(&gY), F(&gW), N_(&gY));
}

static void check_batchnorm_backward(int train) {
    const int64_t N = 13, Fc = 7;
    gX = f2(N, Fc), gG = f1(Fc), gB = f1(Fc), gY = f2(N, Fc), gW = f2(N, Fc), gM = f1(Fc), gR = f1(Fc);
    gTrain = train;
    rnd(&gX, 50, -2, 3);
    rnd(&gG, 51, 0.5f, 1.5f);
    rnd(&gB, 52, -1, 1);
    rnd(&gW, 53, -1, 1);
    rnd(&gM, 54, -1, 1);
    rnd(&gR, 55, 0.5f, 2);
    fl_tensor mean = f1(Fc), rstd = f1(Fc), dx = f2(N, Fc), dg = f1(Fc), db = f1(Fc);
    gMean = f1(Fc), gRstd = f1(Fc);
    tf_ops->batchnorm(&gX, &gG, &gB, EPS, 0.1f, train, &gY, &mean, &rstd, &gM, &gR);
    tf_ops->fill(&dg, 1.0f);
    tf_ops->fill(&db, 1.0f);
    tf_ops->fill(&dx, NAN); /* overwritten */
    tf_ops->batchnorm_backward(&gX, &gG, &mean, &rstd, &gW, train, &dx, &dg, &db);
    for (int64_t f = 0; f < Fc; f++) F(&dg)[f] -= 1.0f, F(&db)[f] -= 1.0f;
    fd_check(train ? "batchnorm_backward train dx" : "batchnorm_backward eval dx", F(&gX), N * Fc, F(&dx), bn_loss);
    fd_check(train ? "batchnorm_backward train dg" : "batchnorm_backward eval dg", F(&gG), Fc, F(&dg), bn_loss);
    fd_check(train ? "batchnorm_backward train db" : "batchnorm_backward eval db", F(&gB), Fc, F(&db), bn_loss);
    if (train) { /* batch statistics: every column of dx sums to 0 */
        for (int64_t f = 0; f < Fc; f++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += F(&dx)[n * Fc + f];
            assert_true(fabs(s) < 1e-4);
        }
    }
}

static void test_batchnorm_backward(void **state) {
    (void)state;
    check_batchnorm_backward(1);
    check_batchnorm_backward(0);
}

/* The threaded reductions against double sums, and 1 vs 3 threads. */
static void test_batchnorm_threads(void **state) {
    (void)state;
    const int64_t N = 4000, Fc = 48;
    fl_tensor x = f2(N, Fc), g = f1(Fc), b = f1(Fc), dy = f2(N, Fc);
    rnd(&x, 60, -1, 2), rnd(&g, 61, 0, 2), rnd(&b, 62, -1, 1), rnd(&dy, 63, -1, 1);
    fl_tensor y[2], mean[2], rstd[2], dx[2], dg[2], db[2];
    const int nt = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        y[r] = f2(N, Fc), mean[r] = f1(Fc), rstd[r] = f1(Fc), dx[r] = f2(N, Fc), dg[r] = f1(Fc), db[r] = f1(Fc);
        omp_set_num_threads(r ? 3 : 1);
        tf_ops->batchnorm(&x, &g, &b, EPS, 0.1f, 1, &y[r], &mean[r], &rstd[r], NULL, NULL);
        tf_ops->batchnorm_backward(&x, &g, &mean[r], &rstd[r], &dy, 1, &dx[r], &dg[r], &db[r]);
    }
    omp_set_num_threads(nt);
    assert_memory_equal(y[0].data, y[1].data, fl_nbytes(&y[0]));
    assert_memory_equal(dx[0].data, dx[1].data, fl_nbytes(&dx[0]));
    assert_memory_equal(dg[0].data, dg[1].data, fl_nbytes(&dg[0]));
    assert_memory_equal(db[0].data, db[1].data, fl_nbytes(&db[0]));
    double dgr[48] = {0}, dbr[48] = {0};
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < Fc; f++) {
            dbr[f] += F(&dy)[n * Fc + f];
            dgr[f] += (double)F(&dy)[n * Fc + f] * (F(&x)[n * Fc + f] - F(&mean[0])[f]) * F(&rstd[0])[f];
        }
    chk(F(&dg[0]), to_f(dgr, Fc), (size_t)Fc, 1e-4, 1e-4, "batchnorm_backward dg threaded");
    chk(F(&db[0]), to_f(dbr, Fc), (size_t)Fc, 1e-5, 1e-4, "batchnorm_backward db threaded");
}

/* ---------------------------------------------------------- layer norm */

/* Double reference of layer norm over G groups of x[N, G*c]. */
static void lng_ref(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *b, double *y, double *mean,
                    double *rstd) {
    const int64_t N = x->shape[0], Fc = x->shape[1], c = Fc / G;
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < G; j++) {
            const float *xr = F(x) + n * Fc + j * c;
            double m = 0, v = 0;
            for (int64_t i = 0; i < c; i++) m += xr[i];
            m /= c;
            for (int64_t i = 0; i < c; i++) v += (xr[i] - m) * (xr[i] - m);
            v /= c;
            mean[n * G + j] = m, rstd[n * G + j] = 1 / sqrt(v + EPS);
            for (int64_t i = 0; i < c; i++)
                y[n * Fc + j * c + i] = (xr[i] - m) * rstd[n * G + j] * F(g)[j * c + i] + F(b)[j * c + i];
        }
}

static void check_layernorm_groups(int64_t N, int G, int64_t c, uint64_t seed) {
    const int64_t Fc = G * c;
    fl_tensor x = f2(N, Fc), g = f1(Fc), b = f1(Fc), y = f2(N, Fc), mean = f1(N * G), rstd = f1(N * G);
    rnd(&x, seed, -2, 3);
    rnd(&g, seed + 1, 0.5f, 1.5f);
    rnd(&b, seed + 2, -1, 1);
    double *yr = malloc((size_t)(N * Fc) * sizeof *yr), *mr = malloc((size_t)(N * G) * sizeof *mr);
    double *rr = malloc((size_t)(N * G) * sizeof *rr);
    lng_ref(&x, G, &g, &b, yr, mr, rr);
    tf_ops->layernorm_groups(&x, G, &g, &b, EPS, &y, &mean, &rstd);
    char what[96];
    snprintf(what, sizeof what, "layernorm_groups %lldx%dx%lld y", (long long)N, G, (long long)c);
    chk(F(&y), to_f(yr, N * Fc), (size_t)(N * Fc), 1e-5, 1e-5, what);
    chk(F(&mean), to_f(mr, N * G), (size_t)(N * G), 1e-5, 1e-6, "layernorm_groups mean");
    chk(F(&rstd), to_f(rr, N * G), (size_t)(N * G), 1e-5, 1e-6, "layernorm_groups rstd");
    free(yr), free(mr), free(rr);
}

static void test_layernorm_groups_forward(void **state) {
    (void)state;
    check_layernorm_groups(9, 3, 7, 70);
    check_layernorm_groups(5, 1, 29, 71);    /* one group: plain layer norm */
    check_layernorm_groups(1000, 8, 32, 72); /* threaded */
}

static double lng_loss(void) {
    tf_ops->layernorm_groups(&gX, gGroups, &gG, &gB, EPS, &gY, &gM, &gR);
    return dot_d(F(&gY), F(&gW), N_(&gY));
}

static void test_layernorm_groups_backward(void **state) {
    (void)state;
    const int64_t N = 6, c = 5;
    gGroups = 3;
    const int64_t Fc = gGroups * c;
    gX = f2(N, Fc), gG = f1(Fc), gB = f1(Fc), gY = f2(N, Fc), gW = f2(N, Fc), gM = f1(N * gGroups), gR = f1(N * gGroups);
    rnd(&gX, 80, -2, 3);
    rnd(&gG, 81, 0.5f, 1.5f);
    rnd(&gB, 82, -1, 1);
    rnd(&gW, 83, -1, 1);
    tf_ops->layernorm_groups(&gX, gGroups, &gG, &gB, EPS, &gY, &gM, &gR);
    fl_tensor dx = f2(N, Fc), dg = f1(Fc), db = f1(Fc);
    tf_ops->fill(&dg, 1.0f);
    tf_ops->fill(&db, 1.0f);
    tf_ops->fill(&dx, NAN);
    tf_ops->layernorm_groups_backward(&gX, gGroups, &gG, &gM, &gR, &gW, &dx, &dg, &db);
    for (int64_t f = 0; f < Fc; f++) F(&dg)[f] -= 1.0f, F(&db)[f] -= 1.0f;
    fd_check("layernorm_groups_backward dx", F(&gX), N * Fc, F(&dx), lng_loss);
    fd_check("layernorm_groups_backward dg", F(&gG), Fc, F(&dg), lng_loss);
    fd_check("layernorm_groups_backward db", F(&gB), Fc, F(&db), lng_loss);
    /* each group's dx sums to 0 (the mean is subtracted per group) */
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < gGroups; j++) {
            double s = 0;
            for (int64_t i = 0; i < c; i++) s += F(&dx)[n * Fc + j * c + i];
            assert_true(fabs(s) < 1e-4);
        }
    /* no parameter gradients: dx alone, the same */
    fl_tensor dx2 = f2(N, Fc);
    tf_ops->layernorm_groups_backward(&gX, gGroups, &gG, &gM, &gR, &gW, &dx2, NULL, NULL);
    assert_memory_equal(dx.data, dx2.data, fl_nbytes(&dx));
}

static void test_layernorm_groups_threads(void **state) {
    (void)state;
    const int64_t N = 2000, c = 16;
    const int G = 4;
    const int64_t Fc = G * c;
    fl_tensor x = f2(N, Fc), g = f1(Fc), b = f1(Fc), dy = f2(N, Fc);
    rnd(&x, 90, -1, 2), rnd(&g, 91, 0, 2), rnd(&b, 92, -1, 1), rnd(&dy, 93, -1, 1);
    fl_tensor y[2], mean[2], rstd[2], dx[2], dg[2], db[2];
    const int nt = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        y[r] = f2(N, Fc), mean[r] = f1(N * G), rstd[r] = f1(N * G), dx[r] = f2(N, Fc), dg[r] = f1(Fc), db[r] = f1(Fc);
        omp_set_num_threads(r ? 3 : 1);
        tf_ops->layernorm_groups(&x, G, &g, &b, EPS, &y[r], &mean[r], &rstd[r]);
        tf_ops->layernorm_groups_backward(&x, G, &g, &mean[r], &rstd[r], &dy, &dx[r], &dg[r], &db[r]);
    }
    omp_set_num_threads(nt);
    assert_memory_equal(y[0].data, y[1].data, fl_nbytes(&y[0]));
    assert_memory_equal(dx[0].data, dx[1].data, fl_nbytes(&dx[0]));
    assert_memory_equal(dg[0].data, dg[1].data, fl_nbytes(&dg[0]));
    assert_memory_equal(db[0].data, db[1].data, fl_nbytes(&db[0]));
    double dgr[64] = {0};
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < Fc; f++) {
            const int64_t j = n * G + f / c;
            dgr[f] += (double)F(&dy)[n * Fc + f] * (F(&x)[n * Fc + f] - F(&mean[0])[j]) * F(&rstd[0])[j];
        }
    chk(F(&dg[0]), to_f(dgr, Fc), (size_t)Fc, 1e-4, 1e-4, "layernorm_groups_backward dg threaded");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_batchnorm_forward, tf_free_all),
        cmocka_unit_test_teardown(test_batchnorm_backward, tf_free_all),
        cmocka_unit_test_teardown(test_batchnorm_threads, tf_free_all),
        cmocka_unit_test_teardown(test_layernorm_groups_forward, tf_free_all),
        cmocka_unit_test_teardown(test_layernorm_groups_backward, tf_free_all),
        cmocka_unit_test_teardown(test_layernorm_groups_threads, tf_free_all),
    };
    return cmocka_run_group_tests(tests, tf_setup_cpu, NULL);
}
