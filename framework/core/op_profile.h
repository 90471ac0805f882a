/*
 * core/op_profile.h — where an FFN plugin's time goes, op by op (`ffnlab
 * bench --ffn-only --profile`). A plugin does its math through host->ops
 * (ffnlab/host.h); fl_op_profile_table fills a table whose every op forwards
 * to the backend's and, while a profile is attached, waits for the device
 * before and after the op and adds the wall time, and a GEMM's FLOPs, to
 * that op. The rest of a plugin call's time is the plugin's own code and
 * kernels. The waits make a profiled call slower than an unprofiled one
 * (the bench prints both). Ops carry no context pointer, so one profile is
 * attached at a time, process-wide, and it counts calls made one at a time
 * (as plugins make them: host ops are not called from inside a parallel loop).
 */
#ifndef FFNLAB_OP_PROFILE_H
#define FFNLAB_OP_PROFILE_H

#include <stdint.h>

#include "ffnlab/host.h"

typedef struct fl_backend fl_backend; /* defined in backends/backend.h */

/* Every field of fl_ops, in its order (op_profile.c checks the count). */
#define FL_OP_NAMES(X)                                                                                      \
    X(gemm) X(gemm_batched) X(gemm_grouped) X(gemm_grouped_wgrad) X(add_bias) X(sum_rows) X(activation)     \
    X(activation_backward) X(mul) X(axpby) X(fill) X(copy) X(scale_rows) X(row_dot) X(softmax)              \
    X(softmax_backward) X(logsumexp) X(topk) X(gather_rows) X(scatter_add_rows) X(embedding_bag)            \
    X(embedding_bag_backward) X(layernorm) X(layernorm_backward) X(rng_normal) X(rng_uniform)               \
    X(bucket_sort) X(to_host) X(from_host) X(permute01) X(dropout) X(batchnorm) X(batchnorm_backward)       \
    X(layernorm_groups) X(layernorm_groups_backward) X(hash_ids) X(bias_activation) X(bias_activation_backward) \
    X(bias_activation_grouped) X(bias_activation_grouped_backward)

typedef enum fl_op_id {
#define FL_OP_ENUM(name) FL_OP_##name,
    FL_OP_NAMES(FL_OP_ENUM)
#undef FL_OP_ENUM
    FL_OP_COUNT
} fl_op_id;

typedef struct fl_op_profile {
    double seconds[FL_OP_COUNT];
    int64_t calls[FL_OP_COUNT];
    double flops[FL_OP_COUNT]; /* the GEMM ops': 2·M·N·K per product; other ops 0 */
    double wait_s;             /* what an op of no work measures: the wait for an
                                  idle device (a GPU round trip; ~0 on the CPU),
                                  the median of 15 at attach, part of each op's time */
} fl_op_profile;

/* *ops = be's ops, each wrapped (an op the backend lacks stays NULL). */
void fl_op_profile_table(const fl_backend *be, fl_ops *ops);
/* Ops called through such a table count into p from now on (p->wait_s is
   measured first); NULL detaches. */
void fl_op_profile_attach(fl_op_profile *p);
/* "gemm_grouped" for FL_OP_gemm_grouped. */
const char *fl_op_name(int op);

#endif
