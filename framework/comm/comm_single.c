/*
 * comm/comm_single.c — the size-1 communicator: every collective is a copy
 * or nothing, so plugins can call the communicator unconditionally.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

static fl_status single_allreduce(const fl_comm *c, fl_tensor *x, fl_error *err) {
    (void)c, (void)x, (void)err;
    return FL_OK; /* the sum over one rank is the value itself */
}

static fl_status single_alltoallv(const fl_comm *c, const void *send, const int64_t *send_counts,
                                  void *recv, const int64_t *recv_counts, size_t row_bytes,
                                  fl_error *err) {
    (void)c, (void)recv_counts, (void)err;
    if (send != recv && send_counts[0] > 0) memmove(recv, send, (size_t)send_counts[0] * row_bytes);
    return FL_OK;
}

static fl_status single_allreduce_group(const fl_comm *c, int group, fl_tensor *x, fl_error *err) {
    (void)c, (void)group, (void)x, (void)err;
    return FL_OK;
}

static fl_status single_broadcast(const fl_comm *c, int group, fl_tensor *x, int root, fl_error *err) {
    (void)c, (void)group, (void)x, (void)root, (void)err;
    return FL_OK; /* the root is this process */
}

static fl_status single_barrier(const fl_comm *c, fl_error *err) {
    (void)c, (void)err;
    return FL_OK;
}

/* The one place the host ends the process itself: a plugin asked for it
   (see fl_comm.abort in host.h). */
static void single_abort(const fl_comm *c, int code, const char *msg) {
    (void)c;
    fprintf(stderr, "ffnlab: error: %s\n", msg && msg[0] ? msg : "unknown error");
    fflush(stderr);
    exit(code ? code : 1);
}

const fl_comm *fl_comm_single(void) {
    static const fl_comm single = {
        .size_of = sizeof(fl_comm), .rank = 0, .size = 1, .ep_rank = 0, .ep_size = 1,
        .impl = NULL, .allreduce_sum = single_allreduce, .alltoallv = single_alltoallv,
        .dp_rank = 0, .dp_size = 1, .allreduce_sum_group = single_allreduce_group,
        .broadcast = single_broadcast, .barrier = single_barrier, .abort = single_abort,
    };
    return &single;
}
