/*
 * tests/mpi/test_nccl_smoke.c — the NCCL communicator on one GPU.
 *
 * A communicator of size 1 (no MPI, no launcher) must still run every
 * collective on device buffers: all-reduce leaves the values unchanged,
 * all-to-all-v copies the rows a rank sends itself (and nothing for an
 * empty send), broadcast and barrier return. Skips (exit 77) without a GPU.
 */
#include "support.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#include "comm.h"

static void test_size_one_collectives(void **state) {
    (void)state;
    fl_error err = {0};
    const fl_comm *c = NULL;
    ts_assert_ok(fl_nccl_open(1, &c, &err), &err);
    assert_int_equal(c->size, 1);
    assert_int_equal(c->ep_size, 1);
    enum { N = 1000 };
    float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)i * 0.25f - 7.0f;
    float *a = NULL, *b = NULL;
    assert_int_equal(cudaMalloc((void **)&a, sizeof host), cudaSuccess);
    assert_int_equal(cudaMalloc((void **)&b, sizeof host), cudaSuccess);
    assert_int_equal(cudaMemcpy(a, host, sizeof host, cudaMemcpyHostToDevice), cudaSuccess);
    int64_t n = N;
    fl_tensor t = fl_wrap(a, FL_F32, (fl_device){FL_DEVICE_CUDA, 0}, 1, &n);
    ts_assert_ok(c->allreduce_sum(c, &t, &err), &err);
    ts_assert_ok(c->allreduce_sum_group(c, FL_COMM_REPLICA, &t, &err), &err);
    ts_assert_ok(c->broadcast(c, FL_COMM_WORLD, &t, 0, &err), &err);
    assert_int_equal(cudaMemcpy(back, a, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(back, host, sizeof host);
    /* 250 rows of 4 floats to itself */
    int64_t rows = N / 4;
    ts_assert_ok(c->alltoallv(c, a, &rows, b, &rows, 4 * sizeof(float), &err), &err);
    assert_int_equal(cudaMemcpy(back, b, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(back, host, sizeof host);
    int64_t none = 0;
    ts_assert_ok(c->alltoallv(c, a, &none, b, &none, 4 * sizeof(float), &err), &err);
    ts_assert_ok(c->barrier(c, &err), &err);
    cudaFree(a);
    cudaFree(b);
    fl_comm_close(c);
}

int main(void) {
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < 1) {
        printf("SKIP: no GPU for the NCCL smoke test\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_size_one_collectives)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
