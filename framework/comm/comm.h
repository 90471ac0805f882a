/*
 * comm/comm.h — communicators: the plugin-visible fl_comm (ffnlab/host.h)
 * and the host-memory collectives the framework itself needs.
 *
 * Three implementations of fl_comm:
 *   single  (comm_single.c) size 1, always built; every collective is a copy
 *                           or nothing, so callers never special-case it.
 *   MPI     (comm_mpi.c)    buffers in host memory: the CPU backend.
 *                           Built with FFNLAB_HAVE_MPI.
 *   NCCL    (comm_nccl.c)   buffers in GPU memory: the CUDA backend. Built
 *                           with FFNLAB_HAVE_NCCL; bootstrapped over MPI
 *                           (rank 0 makes the ncclUniqueId, MPI_Bcast).
 *
 * The world: fl_comm_world() looks at how the process was started. Started
 * by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_SIZE set) with more
 * than one process, it initialises MPI once (finalised at exit); otherwise
 * it is the single communicator and MPI is never touched, so a plain
 * `ffnlab train` needs no MPI at run time even in an MPI build. A build
 * without MPI started as several processes fails with a clear message.
 *
 * fl_comm_open() then lays the expert-parallel groups over the world
 * (contiguous blocks of expert_parallel ranks, see fl_comm in host.h) on
 * the device's kind of memory.
 *
 * Control collectives (fl_comm_sum_f64 ...) work on host memory whatever
 * the communicator: MPI under both MPI and NCCL. They are what the host uses
 * for losses, flags, config hashes and checkpoint gathers; plugins see only
 * fl_comm.
 *
 * Errors: fl_comm_agree() turns a status that may differ between ranks
 * into one every rank shares (the lowest failing rank's message), so a
 * start-up error ends all ranks cleanly. Any other error in a multi-process
 * job goes to fl_comm_fail(), which prints it with the rank and ends the
 * job (MPI_Abort): the other ranks may be waiting in a collective.
 */
#ifndef FFNLAB_COMM_H
#define FFNLAB_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/host.h"

const fl_comm *fl_comm_single(void);

/* Processes this one was started with by a launcher (environment), 1 if
   none; *rank gets this process's rank from the same source (may be NULL). */
int fl_comm_launched_size(int *rank);

/* The world communicator of this process (ep_size 1), opened once. */
fl_status fl_comm_world(const fl_comm **out, fl_error *err);

/* The world laid out in expert-parallel groups of expert_parallel ranks
   (must divide the world size) for buffers on `device`: the single
   communicator for one process, MPI on the CPU, NCCL on CUDA. */
fl_status fl_comm_open(int expert_parallel, fl_device device, const fl_comm **out, fl_error *err);
/* Frees what fl_comm_open made (no-op for the single / world communicator). */
void fl_comm_close(const fl_comm *c);

/* ---- control collectives on host memory (no-ops for one process) ---- */

fl_status fl_comm_sum_f64(const fl_comm *c, int group, double *x, int n, fl_error *err);
/* Element-wise minimum and maximum of n u64 over the world. */
fl_status fl_comm_minmax_u64(const fl_comm *c, const uint64_t *x, uint64_t *min, uint64_t *max,
                             int n, fl_error *err);
/* Element-wise OR of n bytes over a group (unions of row masks). */
fl_status fl_comm_or_u8(const fl_comm *c, int group, uint8_t *x, int64_t n, fl_error *err);
/* `bytes` from every rank of the group, concatenated in group-rank order
   into recv on group rank `root` (recv unused elsewhere). */
fl_status fl_comm_gather_bytes(const fl_comm *c, int group, const void *send, size_t bytes, void *recv,
                               int root, fl_error *err);
fl_status fl_comm_barrier_host(const fl_comm *c, fl_error *err);

/* Every rank passes its own status; every rank gets back the first failing
   rank's status and message (FL_OK if none failed). Collective. */
fl_status fl_comm_agree(const fl_comm *c, fl_status st, fl_error *err);

/* The world rank of this process (0 in one process). */
int fl_comm_world_rank(void);

/* After a failed command in a multi-process job: an error every rank shares
   (from fl_comm_agree) is printed by rank 0 alone and 0 is returned, so all
   ranks exit normally; any other error is printed with its rank and the job
   is ended (does not return). In one process returns 1: the caller reports
   the error as usual. */
int fl_comm_fail(const fl_error *err, int code);

/* Seconds and bytes spent in this process's collectives so far (bench). */
void fl_comm_counters(double *seconds, double *bytes);
void fl_comm_count(double seconds, double bytes);

#ifdef FFNLAB_HAVE_MPI
/* comm_mpi.c: MPI world and groups, and its control collectives. */
fl_status fl_mpi_world(const fl_comm **out, fl_error *err);
fl_status fl_mpi_open(int expert_parallel, const fl_comm **out, fl_error *err);
void fl_mpi_close(const fl_comm *c);
fl_status fl_mpi_sum_f64(const fl_comm *c, int group, double *x, int n, fl_error *err);
fl_status fl_mpi_minmax_u64(const fl_comm *c, const uint64_t *x, uint64_t *min, uint64_t *max, int n,
                            fl_error *err);
fl_status fl_mpi_or_u8(const fl_comm *c, int group, uint8_t *x, int64_t n, fl_error *err);
fl_status fl_mpi_gather_bytes(const fl_comm *c, int group, const void *send, size_t bytes, void *recv,
                              int root, fl_error *err);
fl_status fl_mpi_barrier(const fl_comm *c, fl_error *err);
fl_status fl_mpi_bcast_bytes(const fl_comm *c, void *buf, size_t bytes, int root, fl_error *err);
void fl_mpi_abort(const fl_comm *c, int code, const char *msg);
#endif

#ifdef FFNLAB_HAVE_NCCL
/* comm_nccl.c: NCCL over the GPU this process uses (the CUDA runtime's
   current device), sub-groups as in fl_mpi_open. One process needs no MPI. */
fl_status fl_nccl_open(int expert_parallel, const fl_comm **out, fl_error *err);
void fl_nccl_close(const fl_comm *c);
#endif

#endif
