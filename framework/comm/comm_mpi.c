/*
 * comm/comm_mpi.c — the MPI communicator: fl_comm on host memory (the CPU
 * backend), plus the control collectives every multi-process communicator
 * uses (see comm.h).
 *
 * MPI is initialised the first time fl_mpi_world() runs (MPI_THREAD_FUNNELED:
 * OpenMP threads compute, only the main thread calls MPI) and finalised at
 * exit. Groups are MPI_Comm_split of the world: colour rank / E gives the
 * expert-parallel groups, colour rank % E the replica groups.
 *
 * Counts passed to MPI are ints; a buffer is sent as rows of a contiguous
 * row datatype (all-to-all-v) or in chunks of at most 2^30 elements
 * (all-reduce, broadcast), so no count overflows whatever the tensor size.
 */
#include "comm_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"

#define CHUNK ((int64_t)1 << 30)

typedef struct mpi_comm {
    fl_mpi_groups g;           /* first: see comm_mpi.h */
    fl_comm pub;
} mpi_comm;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

fl_status fl_mpi_fail(fl_error *err, int rc, const char *what) {
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return fl_fail(err, FL_EIO, "MPI %s failed: %s", what, text);
}

MPI_Comm fl_mpi_group(const fl_comm *c, int group) {
    const fl_mpi_groups *g = (const fl_mpi_groups *)c->impl;
    return group == FL_COMM_EXPERT ? g->expert : group == FL_COMM_REPLICA ? g->replica : g->world;
}

/* ------------------------------------------------------------ fl_comm ops */

static fl_status sum_f32(const fl_comm *c, int group, fl_tensor *x, fl_error *err) {
    double t = now_s();
    float *p = x->data;
    int64_t n = fl_numel(x);
    for (int64_t i = 0; i < n; i += CHUNK) {
        int k = (int)(n - i < CHUNK ? n - i : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, p + i, k, MPI_FLOAT, MPI_SUM, fl_mpi_group(c, group));
        if (rc != MPI_SUCCESS) return fl_mpi_fail(err, rc, "all-reduce");
    }
    fl_comm_count(now_s() - t, (double)n * 4);
    return FL_OK;
}

static fl_status mpi_allreduce(const fl_comm *c, fl_tensor *x, fl_error *err) {
    return sum_f32(c, FL_COMM_WORLD, x, err);
}

static fl_status mpi_allreduce_group(const fl_comm *c, int group, fl_tensor *x, fl_error *err) {
    return sum_f32(c, group, x, err);
}

/* Row counts and displacements as MPI ints, checked. */
static fl_status to_int_counts(const int64_t *counts, int n, int *out, int *displ, fl_error *err) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (counts[i] < 0 || counts[i] > INT_MAX || at > INT_MAX)
            return fl_fail(err, FL_EINVAL, "all-to-all-v: row count %lld (at row %lld) does not fit MPI's int",
                           (long long)counts[i], (long long)at);
        out[i] = (int)counts[i];
        displ[i] = (int)at;
        at += counts[i];
    }
    return FL_OK;
}

static fl_status mpi_alltoallv(const fl_comm *c, const void *send, const int64_t *send_counts, void *recv,
                               const int64_t *recv_counts, size_t row_bytes, fl_error *err) {
    double t = now_s();
    const int n = c->ep_size;
    int *buf = malloc(4 * (size_t)n * sizeof *buf);
    if (!buf) return fl_fail(err, FL_ENOMEM, "all-to-all-v: out of memory");
    int *sc = buf, *sd = buf + n, *rc = buf + 2 * n, *rd = buf + 3 * n;
    fl_status st = to_int_counts(send_counts, n, sc, sd, err);
    if (!st) st = to_int_counts(recv_counts, n, rc, rd, err);
    if (!st && (row_bytes == 0 || row_bytes > INT_MAX))
        st = fl_fail(err, FL_EINVAL, "all-to-all-v: row of %zu bytes", row_bytes);
    MPI_Datatype row;
    if (!st) {
        MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
        MPI_Type_commit(&row);
        /* MPI forbids aliasing send and receive buffers; callers pass two */
        int r = MPI_Alltoallv(send, sc, sd, row, recv, rc, rd, row, fl_mpi_group(c, FL_COMM_EXPERT));
        MPI_Type_free(&row);
        if (r != MPI_SUCCESS) st = fl_mpi_fail(err, r, "all-to-all-v");
    }
    double bytes = 0;
    for (int i = 0; i < n && !st; i++)
        if (i != c->ep_rank) bytes += (double)send_counts[i] * (double)row_bytes;
    free(buf);
    if (!st) fl_comm_count(now_s() - t, bytes);
    return st;
}

static fl_status bcast(MPI_Comm comm, void *data, size_t bytes, int root, fl_error *err) {
    char *p = data;
    for (size_t i = 0; i < bytes; i += (size_t)CHUNK) {
        int k = (int)(bytes - i < (size_t)CHUNK ? bytes - i : (size_t)CHUNK);
        int rc = MPI_Bcast(p + i, k, MPI_BYTE, root, comm);
        if (rc != MPI_SUCCESS) return fl_mpi_fail(err, rc, "broadcast");
    }
    return FL_OK;
}

static fl_status mpi_broadcast(const fl_comm *c, int group, fl_tensor *x, int root, fl_error *err) {
    double t = now_s();
    fl_status st = bcast(fl_mpi_group(c, group), x->data, fl_nbytes(x), root, err);
    fl_comm_count(now_s() - t, (double)fl_nbytes(x));
    return st;
}

/* Waits for req without spinning: the ranks waiting at start-up while rank
   0 trains the tokenizer must leave it the cores (MPI's own wait polls). */
static int wait_gently(MPI_Request *req) {
    int done = 0, rc = MPI_SUCCESS;
    for (long i = 0; rc == MPI_SUCCESS && !done; i++) {
        rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (!done && i > 100) nanosleep(&(struct timespec){0, 500000}, NULL); /* 0.5 ms */
    }
    return rc;
}

fl_status fl_mpi_barrier(const fl_comm *c, fl_error *err) {
    MPI_Request req;
    int rc = MPI_Ibarrier(fl_mpi_group(c, FL_COMM_WORLD), &req);
    if (rc == MPI_SUCCESS) rc = wait_gently(&req);
    return rc == MPI_SUCCESS ? FL_OK : fl_mpi_fail(err, rc, "barrier");
}

void fl_mpi_abort(const fl_comm *c, int code, const char *msg) {
    fprintf(stderr, "ffnlab: error: rank %d: %s\n", c->rank, msg && msg[0] ? msg : "unknown error");
    fflush(stderr);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    abort(); /* MPI_Abort does not return; never fall through */
}

/* ------------------------------------------------------ world and groups */

static void finalize_at_exit(void) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

static fl_status init_once(fl_error *err) {
    int ready = 0;
    MPI_Initialized(&ready);
    if (ready) return FL_OK;
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return fl_mpi_fail(err, rc, "initialisation");
    /* errors come back as codes, so they become fl_error messages */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    atexit(finalize_at_exit);
    return FL_OK;
}

void fl_mpi_fill_layout(fl_comm *c, int expert_parallel) {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    c->size_of = sizeof *c;
    c->rank = rank;
    c->size = size;
    c->ep_size = expert_parallel;
    c->ep_rank = rank % expert_parallel;
    c->dp_size = size / expert_parallel;
    c->dp_rank = rank / expert_parallel;
}

static void fill_ops(fl_comm *c) {
    c->allreduce_sum = mpi_allreduce;
    c->alltoallv = mpi_alltoallv;
    c->allreduce_sum_group = mpi_allreduce_group;
    c->broadcast = mpi_broadcast;
    c->barrier = fl_mpi_barrier;
    c->abort = fl_mpi_abort;
}

fl_status fl_mpi_world(const fl_comm **out, fl_error *err) {
    static mpi_comm world;
    static int made;
    if (!made) {
        fl_status st = init_once(err);
        if (st) return st;
        world.g = (fl_mpi_groups){.world = MPI_COMM_WORLD, .expert = MPI_COMM_SELF, .replica = MPI_COMM_WORLD};
        fl_mpi_fill_layout(&world.pub, 1);
        fill_ops(&world.pub);
        world.pub.impl = &world;
        made = 1;
    }
    *out = &world.pub;
    return FL_OK;
}

fl_status fl_mpi_groups_make(int expert_parallel, fl_mpi_groups *g, fl_error *err) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    g->world = MPI_COMM_WORLD;
    int rc = MPI_Comm_split(MPI_COMM_WORLD, rank / expert_parallel, rank, &g->expert);
    if (rc != MPI_SUCCESS) return fl_mpi_fail(err, rc, "split into expert groups");
    rc = MPI_Comm_split(MPI_COMM_WORLD, rank % expert_parallel, rank, &g->replica);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&g->expert);
        return fl_mpi_fail(err, rc, "split into replica groups");
    }
    MPI_Comm_set_errhandler(g->expert, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(g->replica, MPI_ERRORS_RETURN);
    g->owned = 1;
    return FL_OK;
}

void fl_mpi_groups_free(fl_mpi_groups *g) {
    if (!g->owned) return;
    MPI_Comm_free(&g->expert);
    MPI_Comm_free(&g->replica);
    g->owned = 0;
}

fl_status fl_mpi_open(int expert_parallel, const fl_comm **out, fl_error *err) {
    mpi_comm *m = calloc(1, sizeof *m);
    if (!m) return fl_fail(err, FL_ENOMEM, "out of memory for a communicator");
    fl_status st = fl_mpi_groups_make(expert_parallel, &m->g, err);
    if (st) {
        free(m);
        return st;
    }
    m->g.close = fl_mpi_close;
    fl_mpi_fill_layout(&m->pub, expert_parallel);
    fill_ops(&m->pub);
    m->pub.impl = m;
    *out = &m->pub;
    return FL_OK;
}

void fl_mpi_close(const fl_comm *c) {
    mpi_comm *m = c->impl;
    fl_mpi_groups_free(&m->g);
    free(m);
}

/* ---------------------------------------------------- control collectives */

fl_status fl_mpi_sum_f64(const fl_comm *c, int group, double *x, int n, fl_error *err) {
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, fl_mpi_group(c, group));
    return rc == MPI_SUCCESS ? FL_OK : fl_mpi_fail(err, rc, "all-reduce");
}

fl_status fl_mpi_minmax_u64(const fl_comm *c, const uint64_t *x, uint64_t *min, uint64_t *max, int n,
                            fl_error *err) {
    /* used where ranks may wait long (start-up agreement): waits gently */
    MPI_Comm w = fl_mpi_group(c, FL_COMM_WORLD);
    MPI_Request req;
    int rc = MPI_Iallreduce(x, min, n, MPI_UINT64_T, MPI_MIN, w, &req);
    if (rc == MPI_SUCCESS) rc = wait_gently(&req);
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(x, max, n, MPI_UINT64_T, MPI_MAX, w);
    return rc == MPI_SUCCESS ? FL_OK : fl_mpi_fail(err, rc, "all-reduce");
}

fl_status fl_mpi_or_u8(const fl_comm *c, int group, uint8_t *x, int64_t n, fl_error *err) {
    for (int64_t i = 0; i < n; i += CHUNK) {
        int k = (int)(n - i < CHUNK ? n - i : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, x + i, k, MPI_UINT8_T, MPI_BOR, fl_mpi_group(c, group));
        if (rc != MPI_SUCCESS) return fl_mpi_fail(err, rc, "all-reduce");
    }
    return FL_OK;
}

fl_status fl_mpi_gather_bytes(const fl_comm *c, int group, const void *send, size_t bytes, void *recv,
                              int root, fl_error *err) {
    if (bytes > INT_MAX) return fl_fail(err, FL_EINVAL, "gather of %zu bytes per rank: too large for MPI", bytes);
    int rc = MPI_Gather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, root, fl_mpi_group(c, group));
    return rc == MPI_SUCCESS ? FL_OK : fl_mpi_fail(err, rc, "gather");
}

fl_status fl_mpi_bcast_bytes(const fl_comm *c, void *buf, size_t bytes, int root, fl_error *err) {
    return bcast(fl_mpi_group(c, FL_COMM_WORLD), buf, bytes, root, err);
}
