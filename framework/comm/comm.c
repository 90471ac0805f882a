/*
 * comm/comm.c — choosing a communicator, and the control collectives and
 * error agreement every build has (see comm.h). The MPI and NCCL parts are
 * reached only through the FFNLAB_HAVE_* guards below, so a build without
 * them compiles this file unchanged and runs as one process.
 */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#ifdef FFNLAB_HAVE_MPI
#include "comm_mpi.h"
#endif

static const fl_comm *g_world;   /* opened once per process */
static int g_agreed;             /* the error being reported is shared by every rank */
static double g_seconds, g_bytes;

/* ------------------------------------------------------------ the world */

static int env_int(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : -1;
}

int fl_comm_launched_size(int *rank) {
    static const char *sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"};
    static const char *ranks[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK"};
    for (int i = 0; i < 3; i++) {
        int n = env_int(sizes[i]);
        if (n >= 1) {
            if (rank) *rank = env_int(ranks[i]) > 0 ? env_int(ranks[i]) : 0;
            return n;
        }
    }
    if (rank) *rank = 0;
    return 1;
}

fl_status fl_comm_world(const fl_comm **out, fl_error *err) {
    if (g_world) {
        *out = g_world;
        return FL_OK;
    }
    int n = fl_comm_launched_size(NULL);
    if (n <= 1) {
        g_world = fl_comm_single();
    } else {
#ifdef FFNLAB_HAVE_MPI
        fl_status st = fl_mpi_world(&g_world, err);
        if (st) return st;
#else
        return fl_fail(err, FL_EUNSUPPORTED,
                       "this ffnlab was built without MPI, but it was started as one of %d processes (mpirun/srun); "
                       "rebuild with -DFFNLAB_MPI=ON, or run it as a single process",
                       n);
#endif
    }
    *out = g_world;
    return FL_OK;
}

int fl_comm_world_rank(void) { return g_world ? g_world->rank : 0; }

fl_status fl_comm_open(int expert_parallel, fl_device device, const fl_comm **out, fl_error *err) {
    const fl_comm *w = NULL;
    fl_status st = fl_comm_world(&w, err);
    if (st) return st;
    if (expert_parallel < 1 || w->size % expert_parallel)
        return fl_fail(err, FL_EINVAL, "expert_parallel %d must divide the %d processes of this job", expert_parallel,
                       w->size);
    if (w->size == 1) {
        *out = w;
        return FL_OK;
    }
    if (device.kind == FL_DEVICE_CUDA) {
#ifdef FFNLAB_HAVE_NCCL
        return fl_nccl_open(expert_parallel, out, err);
#else
        return fl_fail(err, FL_EUNSUPPORTED, "multi-process runs on the GPU need NCCL: rebuild with -DFFNLAB_NCCL=ON, "
                                             "or run on the CPU (--device cpu)");
#endif
    }
#ifdef FFNLAB_HAVE_MPI
    return fl_mpi_open(expert_parallel, out, err);
#else
    return fl_fail(err, FL_EINTERNAL, "several processes without MPI");
#endif
}

void fl_comm_close(const fl_comm *c) {
    if (!c || c == g_world || c == fl_comm_single()) return;
#ifdef FFNLAB_HAVE_MPI
    const fl_mpi_groups *g = c->impl;
    if (g && g->close) g->close(c);
#elif defined(FFNLAB_HAVE_NCCL)
    fl_nccl_close(c);
#endif
}

/* --------------------------------------------------- control collectives */

/* Every control collective: nothing to do alone; MPI otherwise. */
#ifdef FFNLAB_HAVE_MPI
#define MULTI(c, call) ((c)->size == 1 ? FL_OK : (call))
#else
#define MULTI(c, call) ((c)->size == 1 ? FL_OK : fl_fail(err, FL_EINTERNAL, "several processes without MPI"))
#endif

fl_status fl_comm_sum_f64(const fl_comm *c, int group, double *x, int n, fl_error *err) {
    (void)group, (void)x, (void)n;
    return MULTI(c, fl_mpi_sum_f64(c, group, x, n, err));
}

fl_status fl_comm_minmax_u64(const fl_comm *c, const uint64_t *x, uint64_t *min, uint64_t *max, int n,
                             fl_error *err) {
    if (c->size == 1) {
        memcpy(min, x, (size_t)n * sizeof *x);
        memcpy(max, x, (size_t)n * sizeof *x);
        return FL_OK;
    }
    return MULTI(c, fl_mpi_minmax_u64(c, x, min, max, n, err));
}

fl_status fl_comm_or_u8(const fl_comm *c, int group, uint8_t *x, int64_t n, fl_error *err) {
    (void)group, (void)x, (void)n;
    return MULTI(c, fl_mpi_or_u8(c, group, x, n, err));
}

fl_status fl_comm_gather_bytes(const fl_comm *c, int group, const void *send, size_t bytes, void *recv,
                               int root, fl_error *err) {
    (void)group, (void)root;
    if (c->size == 1) {
        if (bytes) memmove(recv, send, bytes);
        return FL_OK;
    }
    return MULTI(c, fl_mpi_gather_bytes(c, group, send, bytes, recv, root, err));
}

fl_status fl_comm_barrier_host(const fl_comm *c, fl_error *err) { return MULTI(c, fl_mpi_barrier(c, err)); }

/* ---------------------------------------------------------------- errors */

fl_status fl_comm_agree(const fl_comm *c, fl_status st, fl_error *err) {
    if (c->size == 1) return st;
    uint64_t mine = st ? (uint64_t)c->rank : (uint64_t)c->size, first = 0, last = 0;
    fl_error e2 = {0};
    if (fl_comm_minmax_u64(c, &mine, &first, &last, 1, &e2)) {
        *err = e2;
        return e2.code;
    }
    if (first == (uint64_t)c->size) return FL_OK;
    struct {
        int32_t code;
        char msg[FL_ERRMSG_LEN];
    } m = {0};
    if ((uint64_t)c->rank == first) {
        m.code = (int32_t)st;
        memcpy(m.msg, err->msg, sizeof m.msg);
    }
#ifdef FFNLAB_HAVE_MPI
    if (fl_mpi_bcast_bytes(c, &m, sizeof m, (int)first, &e2)) {
        *err = e2;
        return e2.code;
    }
#endif
    err->code = (fl_status)m.code;
    memcpy(err->msg, m.msg, sizeof err->msg);
    err->msg[sizeof err->msg - 1] = 0;
    g_agreed = 1;
    return err->code ? err->code : FL_EINTERNAL;
}

int fl_comm_fail(const fl_error *err, int code) {
    const fl_comm *w = g_world;
    if (!w || w->size == 1) return 1;
    if (g_agreed) {
        if (w->rank == 0) fprintf(stderr, "ffnlab: error: %s\n", err->msg[0] ? err->msg : "unknown error");
        return 0;
    }
    w->abort(w, code, err->msg);
    return 0; /* not reached */
}

/* -------------------------------------------------------------- counters */

void fl_comm_counters(double *seconds, double *bytes) {
    if (seconds) *seconds = g_seconds;
    if (bytes) *bytes = g_bytes;
}

void fl_comm_count(double seconds, double bytes) {
    g_seconds += seconds;
    g_bytes += bytes;
}
