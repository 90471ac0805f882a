/*
 * comm/comm.h — communicators. One process: fl_comm_single() (size 1).
 * MPI and NCCL implementations come with the distributed issue.
 */
#ifndef FFNLAB_COMM_H
#define FFNLAB_COMM_H

#include "ffnlab/host.h"

const fl_comm *fl_comm_single(void);

#endif
