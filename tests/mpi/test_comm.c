/*
 * tests/mpi/test_comm.c — the communicators against hand-computed results.
 *
 * Run under `mpirun -np P` (P = 2 and 4 are registered), every rank runs
 * every test; a collective is only correct when every rank's checks pass.
 * With FFNLAB_TEST_COMM=nccl the same tests run on the NCCL communicator
 * with GPU buffers (one GPU per rank; skipped, exit 77, with fewer GPUs).
 *
 * Specification (for every expert_parallel E dividing P, so the groups are
 * exercised at 1, 2 and P ranks):
 *  - layout: ep_rank = rank % E, dp_rank = rank / E, ep_size = E,
 *    dp_size = P / E;
 *  - all-reduce over the world, the expert group and the replica group is
 *    the exact sum of each member's values (small integers: exact in f32);
 *  - all-to-all-v moves rank i's rows for j to j, in rank order, with
 *    counts that include zero (empty sends and receives), rows of an odd
 *    byte width, and a call where nobody sends anything;
 *  - broadcast copies the group root's bytes (any dtype) to every member;
 *  - barrier returns;
 *  - control collectives: f64 sums, byte OR, equal-size gather, and
 *    fl_comm_agree giving every rank the first failing rank's message.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "error.h"

#ifdef FFNLAB_HAVE_NCCL
#include <cuda_runtime.h>
#endif

static int g_nccl;   /* buffers on the GPU, NCCL communicator */
static int g_P = 1;  /* world size */

/* ------------------------------------------------ buffers on either side */

static void *buf_alloc(size_t bytes) {
#ifdef FFNLAB_HAVE_NCCL
    if (g_nccl) {
        void *p = NULL;
        assert_int_equal(cudaMalloc(&p, bytes ? bytes : 1), cudaSuccess);
        return p;
    }
#endif
    void *p = calloc(1, bytes ? bytes : 1);
    assert_non_null(p);
    return p;
}

static void buf_free(void *p) {
#ifdef FFNLAB_HAVE_NCCL
    if (g_nccl) {
        cudaFree(p);
        return;
    }
#endif
    free(p);
}

static void buf_put(void *dst, const void *src, size_t bytes) {
#ifdef FFNLAB_HAVE_NCCL
    if (g_nccl) {
        assert_int_equal(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), cudaSuccess);
        return;
    }
#endif
    memcpy(dst, src, bytes);
}

static void buf_get(void *dst, const void *src, size_t bytes) {
#ifdef FFNLAB_HAVE_NCCL
    if (g_nccl) {
        assert_int_equal(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
        return;
    }
#endif
    memcpy(dst, src, bytes);
}

static fl_tensor tensor_on(void *data, int dtype, int64_t n) {
    fl_device dev = {g_nccl ? FL_DEVICE_CUDA : FL_DEVICE_CPU, 0};
    return fl_wrap(data, dtype, dev, 1, &n);
}

static const fl_comm *open_comm(int E) {
    fl_error err = {0};
    const fl_comm *c = NULL;
    fl_device dev = {g_nccl ? FL_DEVICE_CUDA : FL_DEVICE_CPU, 0};
    ts_assert_ok(fl_comm_open(E, dev, &c, &err), &err);
    assert_non_null(c);
    return c;
}

/* The members (world ranks) of c's group `group`, in group-rank order. */
static int members(const fl_comm *c, int group, int *out) {
    int n = 0;
    for (int r = 0; r < c->size; r++) {
        int in = group == FL_COMM_WORLD ? 1
               : group == FL_COMM_EXPERT ? r / c->ep_size == c->dp_rank
                                         : r % c->ep_size == c->ep_rank;
        if (in) out[n++] = r;
    }
    return n;
}

/* -------------------------------------------------------------- tests */

static void test_layout(void **state) {
    (void)state;
    for (int E = 1; E <= g_P; E++) {
        if (g_P % E) continue;
        const fl_comm *c = open_comm(E);
        assert_int_equal(c->size, g_P);
        assert_int_equal(c->ep_size, E);
        assert_int_equal(c->ep_rank, c->rank % E);
        assert_int_equal(c->dp_rank, c->rank / E);
        assert_int_equal(c->dp_size, g_P / E);
        assert_true(c->size_of >= sizeof(fl_comm));
        fl_comm_close(c);
    }
}

static void check_allreduce(const fl_comm *c, int group) {
    enum { N = 37 };
    float host[N], want[N];
    int who[64], n = members(c, group, who);
    for (int i = 0; i < N; i++) {
        host[i] = (float)(c->rank + 1) + 0.5f * (float)i;
        want[i] = 0;
        for (int k = 0; k < n; k++) want[i] += (float)(who[k] + 1) + 0.5f * (float)i;
    }
    void *d = buf_alloc(sizeof host);
    buf_put(d, host, sizeof host);
    fl_tensor t = tensor_on(d, FL_F32, N);
    fl_error err = {0};
    if (group == FL_COMM_WORLD) ts_assert_ok(c->allreduce_sum(c, &t, &err), &err);
    else ts_assert_ok(c->allreduce_sum_group(c, group, &t, &err), &err);
    buf_get(host, d, sizeof host);
    buf_free(d);
    for (int i = 0; i < N; i++) assert_float_equal(host[i], want[i], 0.0f);
}

static void test_allreduce(void **state) {
    (void)state;
    for (int E = 1; E <= g_P; E++) {
        if (g_P % E) continue;
        const fl_comm *c = open_comm(E);
        check_allreduce(c, FL_COMM_WORLD);
        check_allreduce(c, FL_COMM_EXPERT);
        check_allreduce(c, FL_COMM_REPLICA);
        fl_comm_close(c);
    }
}

/* Rows from group rank i to group rank j: (i + j + salt) % 3 (0 included). */
static int64_t rows_between(int i, int j, int salt) { return (i + j + salt) % 3; }

/* Row k from i to j: `width` bytes of (i*16 + j*4 + k + b) & 0xff. */
static unsigned char row_byte(int i, int j, int64_t k, size_t b) {
    return (unsigned char)((i * 16 + j * 4 + (int)k + (int)b) & 0xff);
}

/* noipa: constant-propagated widths make GCC warn falsely about the fill */
__attribute__((noipa)) static void check_alltoallv(const fl_comm *c, size_t width, int salt, int nobody) {
    const int E = c->ep_size, me = c->ep_rank;
    int64_t sc[64], rc[64], s_tot = 0, r_tot = 0;
    for (int j = 0; j < E; j++) {
        sc[j] = nobody ? 0 : rows_between(me, j, salt);
        rc[j] = nobody ? 0 : rows_between(j, me, salt);
        s_tot += sc[j], r_tot += rc[j];
    }
    unsigned char *send = malloc((size_t)(s_tot + 1) * width), *recv = malloc((size_t)(r_tot + 1) * width);
    assert_true(send && recv);
    size_t at = 0;
    for (int j = 0; j < E; j++)
        for (int64_t k = 0; k < sc[j]; k++)
            for (size_t b = 0; b < width; b++) send[at++] = row_byte(me, j, k, b);
    void *ds = buf_alloc(s_tot * width), *dr = buf_alloc(r_tot * width);
    buf_put(ds, send, s_tot * width);
    fl_error err = {0};
    ts_assert_ok(c->alltoallv(c, ds, sc, dr, rc, width, &err), &err);
    buf_get(recv, dr, r_tot * width);
    at = 0;
    for (int i = 0; i < E; i++)
        for (int64_t k = 0; k < rc[i]; k++)
            for (size_t b = 0; b < width; b++, at++)
                if (recv[at] != row_byte(i, me, k, b))
                    fail_msg("E=%d rank %d: row %lld from group rank %d byte %zu is %d, want %d", E, c->rank,
                             (long long)k, i, b, recv[at], row_byte(i, me, k, b));
    buf_free(ds), buf_free(dr), free(send), free(recv);
}

static void test_alltoallv(void **state) {
    (void)state;
    for (int E = 1; E <= g_P; E++) {
        if (g_P % E) continue;
        const fl_comm *c = open_comm(E);
        for (int salt = 0; salt < 3; salt++) {
            check_alltoallv(c, 4 * 3, salt, 0); /* rows of 3 floats */
            check_alltoallv(c, 5, salt, 0);     /* an odd byte width */
        }
        check_alltoallv(c, 8, 0, 1); /* nobody sends anything */
        fl_comm_close(c);
    }
}

static void check_broadcast(const fl_comm *c, int group, int root) {
    enum { N = 11 };
    int who[64];
    members(c, group, who);
    int32_t host[N];
    for (int i = 0; i < N; i++) host[i] = c->rank * 1000 + i;
    void *d = buf_alloc(sizeof host);
    buf_put(d, host, sizeof host);
    fl_tensor t = tensor_on(d, FL_I32, N);
    fl_error err = {0};
    ts_assert_ok(c->broadcast(c, group, &t, root, &err), &err);
    buf_get(host, d, sizeof host);
    buf_free(d);
    for (int i = 0; i < N; i++) assert_int_equal(host[i], who[root] * 1000 + i);
}

static void test_broadcast_barrier(void **state) {
    (void)state;
    for (int E = 1; E <= g_P; E++) {
        if (g_P % E) continue;
        const fl_comm *c = open_comm(E);
        check_broadcast(c, FL_COMM_WORLD, g_P - 1);
        check_broadcast(c, FL_COMM_EXPERT, E - 1);
        check_broadcast(c, FL_COMM_REPLICA, 0);
        fl_error err = {0};
        ts_assert_ok(c->barrier(c, &err), &err);
        fl_comm_close(c);
    }
}

static void test_control(void **state) {
    (void)state;
    const fl_comm *c = open_comm(g_P >= 2 ? 2 : 1);
    fl_error err = {0};
    /* f64 sums over the world and the expert group */
    double v[2] = {c->rank + 0.25, 1.0};
    ts_assert_ok(fl_comm_sum_f64(c, FL_COMM_WORLD, v, 2, &err), &err);
    assert_float_equal(v[0], g_P * (g_P - 1) / 2.0 + 0.25 * g_P, 0.0);
    assert_float_equal(v[1], g_P, 0.0);
    double e = 1.0;
    ts_assert_ok(fl_comm_sum_f64(c, FL_COMM_EXPERT, &e, 1, &err), &err);
    assert_float_equal(e, c->ep_size, 0.0);
    /* OR of one bit per rank */
    uint8_t mask[8] = {0};
    mask[c->rank % 8] = 1;
    ts_assert_ok(fl_comm_or_u8(c, FL_COMM_WORLD, mask, 8, &err), &err);
    for (int i = 0; i < 8; i++) assert_int_equal(mask[i], i < g_P ? 1 : 0);
    /* gather onto expert-group rank 0 */
    int32_t mine[2] = {c->rank, -c->rank}, all[2 * 64] = {0};
    ts_assert_ok(fl_comm_gather_bytes(c, FL_COMM_EXPERT, mine, sizeof mine, all, 0, &err), &err);
    if (c->ep_rank == 0)
        for (int i = 0; i < c->ep_size; i++) {
            assert_int_equal(all[2 * i], c->rank + i);
            assert_int_equal(all[2 * i + 1], -(c->rank + i));
        }
    /* u64 min/max */
    uint64_t x = (uint64_t)c->rank + 5, lo = 0, hi = 0;
    ts_assert_ok(fl_comm_minmax_u64(c, &x, &lo, &hi, 1, &err), &err);
    assert_int_equal(lo, 5);
    assert_int_equal(hi, 5 + g_P - 1);
    /* agreement: nobody fails, then ranks 1.. fail with their own message */
    assert_int_equal(fl_comm_agree(c, FL_OK, &err), FL_OK);
    fl_status st = FL_OK;
    if (c->rank >= 1) st = fl_fail(&err, FL_EIO, "boom on rank %d", c->rank);
    st = fl_comm_agree(c, st, &err);
    if (g_P > 1) {
        assert_int_equal(st, FL_EIO);
        assert_string_equal(err.msg, "boom on rank 1");
    } else {
        assert_int_equal(st, FL_OK);
    }
    fl_comm_close(c);
}

int main(void) {
    const char *kind = getenv("FFNLAB_TEST_COMM");
    g_nccl = kind && !strcmp(kind, "nccl");
    g_P = fl_comm_launched_size(NULL);
#ifdef FFNLAB_HAVE_NCCL
    int gpus = 0;
    if (g_nccl && (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < g_P)) {
        printf("SKIP: the NCCL communicator test needs one GPU per rank (%d ranks, %d GPUs)\n", g_P, gpus);
        return 77;
    }
#else
    if (g_nccl) {
        printf("SKIP: built without NCCL\n");
        return 77;
    }
#endif
    fl_error err = {0};
    const fl_comm *w = NULL;
    if (fl_comm_world(&w, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_allreduce),
        cmocka_unit_test(test_alltoallv),
        cmocka_unit_test(test_broadcast_barrier),
        cmocka_unit_test(test_control),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
