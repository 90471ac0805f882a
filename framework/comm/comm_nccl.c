/*
 * comm/comm_nccl.c — the NCCL communicator: fl_comm on GPU memory (the CUDA
 * backend). Compiled only with FFNLAB_HAVE_NCCL; needs nothing but device
 * pointers and the CUDA runtime.
 *
 * Bootstrap: for each group (world, expert, replica) group rank 0 makes an
 * ncclUniqueId and MPI_Bcasts it over the matching MPI communicator; every
 * rank then joins with ncclCommInitRank. One process needs no MPI: its
 * three groups are one size-1 NCCL communicator (the 1-GPU smoke test).
 * Control traffic (losses, flags, checkpoint gathers) stays on MPI: the
 * struct below starts with fl_mpi_groups, as comm_mpi.h requires.
 *
 * Device: under a launcher each rank takes GPU local_rank % GPUs before its
 * communicators are made (the model is built after, on the same device).
 *
 * Ordering: the backend's stream is not known here, so each collective
 * first synchronizes the device (the buffers are complete), runs on this
 * communicator's stream, and waits for it (the results are there when the
 * call returns, as with MPI). All-to-all-v is one ncclGroupStart/End of
 * ncclSend/ncclRecv pairs; the rows a rank keeps are a device-to-device copy.
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#include "error.h"

#ifdef FFNLAB_HAVE_MPI
#include "comm_mpi.h"
#endif

typedef struct nccl_comm {
#ifdef FFNLAB_HAVE_MPI
    fl_mpi_groups g;           /* first: control collectives and bootstrap */
#endif
    ncclComm_t world, expert, replica;
    int aliased;               /* one process: the three are one communicator */
    cudaStream_t stream;
    fl_comm pub;
} nccl_comm;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static fl_status nccl_fail(fl_error *err, ncclResult_t r, const char *what) {
    return fl_fail(err, FL_EIO, "NCCL %s failed: %s", what, ncclGetErrorString(r));
}

static fl_status cuda_fail(fl_error *err, cudaError_t e, const char *what) {
    return fl_fail(err, FL_EIO, "CUDA %s failed: %s", what, cudaGetErrorString(e));
}

static ncclComm_t group_of(const fl_comm *c, int group) {
    const nccl_comm *n = c->impl;
    return group == FL_COMM_EXPERT ? n->expert : group == FL_COMM_REPLICA ? n->replica : n->world;
}

static cudaStream_t stream_of(const fl_comm *c) { return ((const nccl_comm *)c->impl)->stream; }

/* Device work before a collective is complete (its inputs are ready). */
static fl_status settle(fl_error *err) {
    cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? FL_OK : cuda_fail(err, e, "synchronize");
}

static fl_status finish(const fl_comm *c, double t0, double bytes, fl_error *err) {
    cudaError_t e = cudaStreamSynchronize(stream_of(c));
    if (e != cudaSuccess) return cuda_fail(err, e, "stream synchronize");
    fl_comm_count(now_s() - t0, bytes);
    return FL_OK;
}

/* ------------------------------------------------------------ fl_comm ops */

static fl_status sum_group(const fl_comm *c, int group, fl_tensor *x, fl_error *err) {
    double t = now_s();
    fl_status st = settle(err);
    if (st) return st;
    size_t n = (size_t)fl_numel(x);
    ncclResult_t r = ncclAllReduce(x->data, x->data, n, ncclFloat, ncclSum, group_of(c, group), stream_of(c));
    if (r != ncclSuccess) return nccl_fail(err, r, "all-reduce");
    return finish(c, t, (double)n * 4, err);
}

static fl_status nccl_allreduce(const fl_comm *c, fl_tensor *x, fl_error *err) {
    return sum_group(c, FL_COMM_WORLD, x, err);
}

static fl_status nccl_alltoallv(const fl_comm *c, const void *send, const int64_t *send_counts, void *recv,
                                const int64_t *recv_counts, size_t row_bytes, fl_error *err) {
    double t = now_s(), bytes = 0;
    fl_status st = settle(err);
    if (st) return st;
    const char *s = send;
    char *d = recv;
    size_t so = 0, ro = 0;
    ncclComm_t comm = group_of(c, FL_COMM_EXPERT);
    cudaStream_t stream = stream_of(c);
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < c->ep_size && r == ncclSuccess; i++) {
        size_t sb = (size_t)send_counts[i] * row_bytes, rb = (size_t)recv_counts[i] * row_bytes;
        if (i == c->ep_rank) {
            if (sb && cudaMemcpyAsync(d + ro, s + so, sb, cudaMemcpyDeviceToDevice, stream) != cudaSuccess)
                r = ncclUnhandledCudaError;
        } else {
            if (sb) r = ncclSend(s + so, sb, ncclChar, i, comm, stream);
            if (rb && r == ncclSuccess) r = ncclRecv(d + ro, rb, ncclChar, i, comm, stream);
            bytes += (double)sb;
        }
        so += sb;
        ro += rb;
    }
    ncclResult_t r2 = ncclGroupEnd();
    if (r != ncclSuccess) return nccl_fail(err, r, "all-to-all-v");
    if (r2 != ncclSuccess) return nccl_fail(err, r2, "all-to-all-v");
    return finish(c, t, bytes, err);
}

static fl_status nccl_broadcast(const fl_comm *c, int group, fl_tensor *x, int root, fl_error *err) {
    double t = now_s();
    fl_status st = settle(err);
    if (st) return st;
    size_t bytes = fl_nbytes(x);
    ncclResult_t r = ncclBroadcast(x->data, x->data, bytes, ncclChar, root, group_of(c, group), stream_of(c));
    if (r != ncclSuccess) return nccl_fail(err, r, "broadcast");
    return finish(c, t, (double)bytes, err);
}

static fl_status nccl_barrier(const fl_comm *c, fl_error *err) {
    fl_status st = settle(err);
#ifdef FFNLAB_HAVE_MPI
    if (!st && c->size > 1) st = fl_mpi_barrier(c, err);
#else
    (void)c;
#endif
    return st;
}

static void nccl_abort(const fl_comm *c, int code, const char *msg) {
#ifdef FFNLAB_HAVE_MPI
    if (c->size > 1) fl_mpi_abort(c, code, msg); /* does not return */
#endif
    fl_comm_single()->abort(c, code, msg);
}

/* ------------------------------------------------------------ bootstrap */

#ifdef FFNLAB_HAVE_MPI
/* One NCCL communicator over the ranks of MPI communicator mc. */
static fl_status join(MPI_Comm mc, ncclComm_t *out, fl_error *err) {
    int r = 0, n = 1;
    MPI_Comm_rank(mc, &r);
    MPI_Comm_size(mc, &n);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t nr = r == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    int ok = nr == ncclSuccess, all_ok = 0;
    /* the root's failure must not leave the others waiting in the bcast */
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, mc);
    if (!all_ok) return fl_fail(err, FL_EIO, "NCCL unique id: %s", ok ? "failed on the group's first rank" : ncclGetErrorString(nr));
    int rc = MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, mc);
    if (rc != MPI_SUCCESS) return fl_mpi_fail(err, rc, "broadcast of the NCCL id");
    nr = ncclCommInitRank(out, n, id, r);
    return nr == ncclSuccess ? FL_OK : nccl_fail(err, nr, "communicator init");
}

/* GPU local_rank % GPUs for this rank. */
static fl_status pick_device(fl_error *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count < 1) return fl_fail(err, FL_EUNSUPPORTED, "NCCL: no GPU visible to this rank");
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!lr) lr = getenv("MPI_LOCALRANKID");
    int local = lr ? atoi(lr) : 0;
    e = cudaSetDevice(local % count);
    return e == cudaSuccess ? FL_OK : cuda_fail(err, e, "set device");
}
#endif

static fl_status open_single(nccl_comm *n, fl_error *err) {
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r == ncclSuccess) r = ncclCommInitRank(&n->world, 1, id, 0);
    if (r != ncclSuccess) return nccl_fail(err, r, "communicator init");
    n->expert = n->replica = n->world;
    n->aliased = 1;
    n->pub.size_of = sizeof n->pub;
    n->pub.size = n->pub.ep_size = n->pub.dp_size = 1;
    return FL_OK;
}

static fl_status open_multi(nccl_comm *n, int expert_parallel, fl_error *err) {
#ifdef FFNLAB_HAVE_MPI
    fl_status st = pick_device(err);
    if (!st) st = fl_mpi_groups_make(expert_parallel, &n->g, err);
    if (st) return st;
    n->g.close = fl_nccl_close;
    fl_mpi_fill_layout(&n->pub, expert_parallel);
    if ((st = join(n->g.world, &n->world, err)) || (st = join(n->g.expert, &n->expert, err)) ||
        (st = join(n->g.replica, &n->replica, err)))
        return st;
    return FL_OK;
#else
    (void)n, (void)expert_parallel;
    return fl_fail(err, FL_EUNSUPPORTED, "NCCL over several processes needs MPI to bootstrap: rebuild with -DFFNLAB_MPI=ON");
#endif
}

fl_status fl_nccl_open(int expert_parallel, const fl_comm **out, fl_error *err) {
    nccl_comm *n = calloc(1, sizeof *n);
    if (!n) return fl_fail(err, FL_ENOMEM, "out of memory for a communicator");
    int multi = fl_comm_launched_size(NULL) > 1;
    fl_status st = multi ? open_multi(n, expert_parallel, err) : open_single(n, err);
    if (!st && !multi && expert_parallel != 1)
        st = fl_fail(err, FL_EINVAL, "expert_parallel %d must divide the 1 process of this job", expert_parallel);
    cudaError_t e = st ? cudaSuccess : cudaStreamCreate(&n->stream);
    if (!st && e != cudaSuccess) st = cuda_fail(err, e, "stream create");
    n->pub.impl = n;
    if (st) {
        fl_nccl_close(&n->pub);
        return st;
    }
#ifdef FFNLAB_HAVE_MPI
    n->g.close = fl_nccl_close;
#endif
    n->pub.allreduce_sum = nccl_allreduce;
    n->pub.alltoallv = nccl_alltoallv;
    n->pub.allreduce_sum_group = sum_group;
    n->pub.broadcast = nccl_broadcast;
    n->pub.barrier = nccl_barrier;
    n->pub.abort = nccl_abort;
    *out = &n->pub;
    return FL_OK;
}

void fl_nccl_close(const fl_comm *c) {
    nccl_comm *n = c->impl;
    if (!n) return;
    if (n->world) ncclCommDestroy(n->world);
    if (!n->aliased) {
        if (n->expert) ncclCommDestroy(n->expert);
        if (n->replica) ncclCommDestroy(n->replica);
    }
    if (n->stream) cudaStreamDestroy(n->stream);
#ifdef FFNLAB_HAVE_MPI
    fl_mpi_groups_free(&n->g);
#endif
    free(n);
}
