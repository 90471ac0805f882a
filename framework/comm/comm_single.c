/*
 * comm/comm_single.c — the size-1 communicator: every collective is a copy
 * or nothing, so plugins can call the communicator unconditionally.
 */
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

const fl_comm *fl_comm_single(void) {
    static const fl_comm single = {
        .size_of = sizeof(fl_comm), .rank = 0, .size = 1, .ep_rank = 0, .ep_size = 1,
        .impl = NULL, .allreduce_sum = single_allreduce, .alltoallv = single_alltoallv,
    };
    return &single;
}
