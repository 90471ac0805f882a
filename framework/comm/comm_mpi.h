/*
 * comm/comm_mpi.h — private to comm/: the MPI state every multi-process
 * communicator starts with (the NCCL one too, which bootstraps over MPI and
 * sends its host-memory control traffic through it). A communicator's impl
 * points at a struct whose first member is fl_mpi_groups.
 */
#ifndef FFNLAB_COMM_MPI_H
#define FFNLAB_COMM_MPI_H

#include <mpi.h>

#include "comm.h"

typedef struct fl_mpi_groups {
    MPI_Comm world;            /* every rank of the job */
    MPI_Comm expert;           /* this rank's expert-parallel group */
    MPI_Comm replica;          /* the ranks holding the same experts */
    int owned;                 /* expert/replica made by MPI_Comm_split: free them */
    void (*close)(const fl_comm *c); /* what fl_comm_close calls; NULL for the world */
} fl_mpi_groups;

/* The MPI communicator of group FL_COMM_WORLD / EXPERT / REPLICA of c. */
MPI_Comm fl_mpi_group(const fl_comm *c, int group);

/* Splits the world into the groups of expert_parallel ranks (collective). */
fl_status fl_mpi_groups_make(int expert_parallel, fl_mpi_groups *g, fl_error *err);
void fl_mpi_groups_free(fl_mpi_groups *g);

/* Fills the rank/size fields of c for expert_parallel (not the functions). */
void fl_mpi_fill_layout(fl_comm *c, int expert_parallel);

/* One line for an MPI error code. */
fl_status fl_mpi_fail(fl_error *err, int rc, const char *what);

#endif
