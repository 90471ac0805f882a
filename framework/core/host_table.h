/*
 * core/host_table.h — filling the fl_host table plugins receive
 * (ffnlab/host.h is the contract).
 */
#ifndef FFNLAB_HOST_TABLE_H
#define FFNLAB_HOST_TABLE_H

#include "ffnlab/host.h"

typedef struct fl_backend fl_backend; /* defined in backends/backend.h */

/* Fills h for backend be and communicator comm (NULL = single process). */
void fl_host_init(fl_host *h, const fl_backend *be, const fl_comm *comm);
const fl_backend *fl_host_backend(const fl_host *h);

#endif
