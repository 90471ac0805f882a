/*
 * ffnlab/host.h — every service the host hands to a plugin, in one table.
 *
 * A plugin never links the framework, a BLAS, CUDA or MPI. It receives a
 * `const fl_host *` at create time and does everything through it:
 *
 *   host->ops     math on the current device (CPU or GPU): GEMMs, activations,
 *                 softmax, top-k, sort, gather/scatter, norms, RNG fills,
 *                 integer keys ... generic ops only: the steps that belong
 *                 to one kind of layer are that plugin's own kernels
 *   host->device, host->stream, host->act_dtype
 *                 what a plugin's own kernels need: the device kind and id,
 *                 the CUDA stream every op runs on (opaque here), the dtype
 *                 for activations that only feed GEMMs
 *   host->param   declare a parameter; the host allocates value and gradient,
 *                 initialises it, and owns it (optimizer, clipping, checkpoint
 *                 and sharding then work for every plugin unchanged)
 *   host->comm    the communicator (size 1 in a single process; never NULL)
 *   host->tensor_ensure / tensor_release   scratch and saved activations
 *   host->log / host->error                 logging and error messages
 *
 * Within a major version the tables are append-only: a new service is a new
 * field at the end, and `size` lets either side see which fields exist. All tensors passed to ops
 * live on host->device; f32 unless a comment says otherwise. Ops do not fail
 * on valid input; a shape mismatch is a programming error that the CPU
 * backend reports through host->log and the debug build asserts on.
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_HOST_H
#define FFNLAB_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/rng.h"
#include "ffnlab/status.h"
#include "ffnlab/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FL_HOST_ABI_VERSION 2

/* ------------------------------------------------------------------------ */
/* Options: a plugin registers its tunables; the host parses "k=v,k=v".      */
/* ------------------------------------------------------------------------ */

typedef enum fl_option_type {
    FL_OPT_INT = 0,    /* integer; range [min, max] */
    FL_OPT_FLOAT = 1,  /* real; range [min, max] */
    FL_OPT_BOOL = 2,   /* true/false/1/0/yes/no */
    FL_OPT_ENUM = 3,   /* one of `choices` ("gelu|relu|silu") */
    FL_OPT_STRING = 4  /* free text (paths, lists) */
} fl_option_type;

typedef struct fl_option {
    const char *name;
    int32_t type;              /* fl_option_type */
    const char *def;           /* default as text; NULL = "derived by the plugin" */
    double min, max;           /* inclusive range for INT/FLOAT (min > max: none) */
    const char *choices;       /* ENUM only: '|'-separated */
    const char *help;          /* one sentence, shown by `ffnlab plugins NAME` */
} fl_option;

/* A parsed option value, in the order of the descriptor's option array. */
typedef struct fl_value {
    int32_t set;        /* 1 if the user gave it, 0 if it is the default */
    int32_t present;    /* 1 if a value exists (given or a non-NULL default) */
    int64_t i;          /* INT, BOOL (0/1), ENUM (index into choices) */
    double f;           /* FLOAT (also INT as a double) */
    const char *s;      /* the text as given or defaulted; valid during create */
} fl_value;

/* ------------------------------------------------------------------------ */
/* Parameters: declared by plugins, owned by the host.                        */
/* ------------------------------------------------------------------------ */

typedef enum fl_init_kind {
    FL_INIT_ZEROS = 0,
    FL_INIT_ONES = 1,
    FL_INIT_NORMAL = 2,   /* normal(0, std) */
    FL_INIT_UNIFORM = 3   /* uniform(-bound, +bound) */
} fl_init_kind;

enum {
    FL_PARAM_DECAY = 1u << 0,         /* AdamW weight decay applies (matrices) */
    FL_PARAM_RESIDUAL_OUT = 1u << 1,  /* output projection into the residual:
                                         init std scaled by 1/sqrt(2 * n_layers) */
    /* Dim 0 indexes experts (any layer's, not only the moe plugin's).
       Under --expert-parallel E the E ranks of an expert group each hold
       shape[0] / E consecutive rows: fl_param.value and .grad have only
       those rows, shard_offset says which (global row shard_offset + r is
       local row r) and global_dim0 how many in all (shape[0] must divide
       by E, or create fails). Every rank of the group sees every token of
       its own batch; getting a token to the rank that holds its expert is
       the plugin's job, through host->comm->alltoallv. Such a parameter's
       gradient is summed over the replicas holding the same rows (not over
       the group), the others' over all ranks; checkpoints gather the rows,
       so a run resumes on another process count. */
    FL_PARAM_EXPERT = 1u << 2,
    FL_PARAM_SPARSE_ROWS = 1u << 3    /* only rows marked with param_touch_rows
                                         get gradients and optimizer updates */
};

typedef struct fl_param_spec {
    const char *name;          /* relative, e.g. "c_fc.weight"; the host
                                  prefixes "transformer.h.{i}.mlp." */
    int32_t ndim;
    int64_t shape[FL_MAX_DIMS];
    int32_t init;              /* fl_init_kind */
    float init_scale;          /* std (NORMAL) or bound (UNIFORM) */
    uint32_t flags;            /* FL_PARAM_* */
    float lr_scale;            /* multiplies the run's LR; 0 means 1 */
    float lr;                  /* if > 0: a fixed LR of its own (PKM values) */
} fl_param_spec;

typedef struct fl_param {
    const char *name;          /* full checkpoint name */
    fl_tensor value;           /* [shape] on host->device, initialised */
    fl_tensor grad;            /* same shape; zeroed by the host before each
                                  step; backward accumulates (+=) into it */
    uint32_t flags;
    int64_t shard_offset;      /* FL_PARAM_EXPERT: first global expert held here */
    int64_t global_dim0;       /* FL_PARAM_EXPERT: experts in total */
} fl_param;

/* ------------------------------------------------------------------------ */
/* Ops: math on the host's device.                                            */
/* ------------------------------------------------------------------------ */

typedef enum fl_activation {
    FL_ACT_IDENTITY = 0,
    FL_ACT_GELU = 1,     /* tanh approximation, as GPT-2 */
    FL_ACT_RELU = 2,
    FL_ACT_SILU = 3,
    FL_ACT_SOFTPLUS = 4  /* log(1 + e^x) (x past 20: x); derivative sigmoid.
                            Hosts whose ops table has moe_route know it. */
} fl_activation;

typedef struct fl_ops {
    uint32_t size;     /* sizeof(fl_ops) of the host that filled it */

    /* The gemm family (gemm, gemm_batched, gemm_grouped, gemm_grouped_wgrad)
       takes its inputs A and B (W, dY) as FL_F32 or FL_BF16, each on its
       own; C (dW) is always FL_F32, accumulated in f32. In the bf16
       precision mode (--precision bf16) a BF16 input is used as it is and
       an F32 one is rounded to bf16 (nearest even) first; in the fp32 (and
       GPU tf32) modes a BF16 input is widened to f32, which is exact, and
       the product is computed in that mode. So a plugin may keep an
       activation that only feeds GEMMs in bf16 (host->act_dtype) and pass
       it on unchanged. Hosts older than act_dtype take F32 only. */

    /* C[M,N] = alpha * op(A) op(B) + beta * C, row-major 2-D tensors;
       op(A) is A[M,K] or, with transA, A[K,M] transposed. With beta = 0,
       C is not read (NaN in it does not propagate). */
    void (*gemm)(int transA, int transB, float alpha, const fl_tensor *A,
                 const fl_tensor *B, float beta, fl_tensor *C);

    /* Batched: A[b], B[b], C[b] for b < shape[0] of 3-D tensors. */
    void (*gemm_batched)(int transA, int transB, float alpha, const fl_tensor *A,
                         const fl_tensor *B, float beta, fl_tensor *C);

    /* Grouped (MoE experts): rows off[g]..off[g+1] of A[N,K] times W[g];
       W[G,K,M] (or [G,M,K] with transW); C[N,M]. off is a host array of G+1
       row offsets, off[0] = 0, off[G] = N. */
    void (*gemm_grouped)(int transW, float alpha, const fl_tensor *A,
                         const fl_tensor *W, const int64_t *off, int G,
                         float beta, fl_tensor *C);

    /* Grouped weight gradient: dW[g] = alpha * A_g^T dY_g + beta * dW[g];
       A[N,K], dY[N,M], dW[G,K,M]. */
    void (*gemm_grouped_wgrad)(float alpha, const fl_tensor *A, const fl_tensor *dY,
                               const int64_t *off, int G, float beta, fl_tensor *dW);

    /* y[N,M] += b[M] */
    void (*add_bias)(fl_tensor *y, const fl_tensor *b);
    /* out[M] = beta * out + sum over rows of x[N,M]  (bias gradient) */
    void (*sum_rows)(const fl_tensor *x, float beta, fl_tensor *out);

    /* y = act(x) elementwise (y may alias x). y may be FL_BF16 (x F32, no
       aliasing then): the f32 result rounded to nearest even. */
    void (*activation)(int act, const fl_tensor *x, fl_tensor *y);
    /* dx = dy * act'(x) elementwise (dx may alias dy); beta: dx = that + beta*dx
       is NOT supported — dx is overwritten */
    void (*activation_backward)(int act, const fl_tensor *x, const fl_tensor *dy,
                                fl_tensor *dx);

    /* out = a * b elementwise (out may alias either). out may be FL_BF16
       (a, b F32, no aliasing then): the f32 product rounded to nearest even. */
    void (*mul)(const fl_tensor *a, const fl_tensor *b, fl_tensor *out);
    /* y = alpha * x + beta * y */
    void (*axpby)(float alpha, const fl_tensor *x, float beta, fl_tensor *y);
    /* x = v everywhere (any dtype; v converted) */
    void (*fill)(fl_tensor *x, float v);
    /* dst = src, same numel and dtype */
    void (*copy)(const fl_tensor *src, fl_tensor *dst);

    /* y[N,M] = x[N,M] * s[N] (row r scaled by s[r]; y may alias x) */
    void (*scale_rows)(const fl_tensor *x, const fl_tensor *s, fl_tensor *y);
    /* out[N] = sum_j a[N,j] * b[N,j] */
    void (*row_dot)(const fl_tensor *a, const fl_tensor *b, fl_tensor *out);

    /* y[N,M] = softmax over each row of x (numerically stable; a row of
       all -inf gives zeros) */
    void (*softmax)(const fl_tensor *x, fl_tensor *y);
    /* dx = y * (dy - sum_j dy_j y_j), per row */
    void (*softmax_backward)(const fl_tensor *y, const fl_tensor *dy, fl_tensor *dx);
    /* out[N] = log sum_j exp(x[N,j]) */
    void (*logsumexp)(const fl_tensor *x, fl_tensor *out);

    /* Per row of x[N,M]: the k largest values (descending; ties → lower
       index first) into vals[N,k] f32 and their column indices idx[N,k] i32. */
    void (*topk)(const fl_tensor *x, int k, fl_tensor *vals, fl_tensor *idx);

    /* dst[i,:] = src[idx[i],:]; src[R,D], idx[N] i32, dst[N,D]. A negative
       index is padding: that row of dst is zero. */
    void (*gather_rows)(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst);
    /* dst[idx[i],:] += src[i,:]; duplicates in idx accumulate; negative
       indices are skipped */
    void (*scatter_add_rows)(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst);

    /* out[i,:] = sum_j w[i,j] * table[idx[i,j],:]; table[R,D], idx[N,k] i32,
       w[N,k] f32 (NULL: all ones), out[N,D]; negative indices are padding */
    void (*embedding_bag)(const fl_tensor *table, const fl_tensor *idx,
                          const fl_tensor *w, fl_tensor *out);
    /* dtable[idx[i,j],:] += w[i,j] * dout[i,:] (dtable may be NULL); if
       dw != NULL also dw[i,j] = dot(dout[i,:], table[idx[i,j],:]) */
    void (*embedding_bag_backward)(const fl_tensor *dout, const fl_tensor *table,
                                   const fl_tensor *idx, const fl_tensor *w,
                                   fl_tensor *dtable, fl_tensor *dw);

    /* y[N,D] = (x - mean) * rstd * g + b over each row, eps inside the sqrt;
       g, b may be NULL (no affine); mean[N], rstd[N] saved for backward
       (may be NULL when no backward follows). y may be FL_BF16 (the f32
       result rounded to nearest even); mean and rstd stay F32, and the
       backward reads x, never y, so it is the same either way. */
    void (*layernorm)(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b,
                      float eps, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd);
    /* dx (overwritten); dg, db accumulated (+=) unless NULL */
    void (*layernorm_backward)(const fl_tensor *x, const fl_tensor *g,
                               const fl_tensor *mean, const fl_tensor *rstd,
                               const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg,
                               fl_tensor *db);

    /* Fill with fl_rng_normal(key, offset + i) * std + mean, or with
       fl_rng_uniform(key, offset + i) * (hi - lo) + lo (see ffnlab/rng.h). */
    void (*rng_normal)(fl_tensor *x, uint64_t key, uint64_t offset, float mean, float std);
    void (*rng_uniform)(fl_tensor *x, uint64_t key, uint64_t offset, float lo, float hi);

    /* Stable bucket sort of keys[N] i32 in [0, G): perm[N] i32 lists the rows
       of bucket 0 then bucket 1 ... in original order; off (host, G+1) gets
       the bucket offsets. Rows whose key is < 0 are left out (off[G] < N)
       and perm[off[G]..N) is -1. */
    void (*bucket_sort)(const fl_tensor *keys, int G, fl_tensor *perm, int64_t *off);

    /* Copies between host memory and a device tensor (bytes from the start). */
    void (*to_host)(void *dst, const fl_tensor *src, size_t bytes);
    void (*from_host)(fl_tensor *dst, const void *src, size_t bytes);

    /* ---- layouts, regularisation, norms ---- */

    /* y[B,A,C] = x[A,B,C]: the first two of three dims swapped (C = 1: a
       matrix transpose; [N,G,c] <-> [G,N,c]: head-major layouts). x and y
       need only hold A*B*C values; y must not alias x. */
    void (*permute01)(const fl_tensor *x, int64_t A, int64_t B, int64_t C, fl_tensor *y);

    /* Inverted dropout: y[i] = x[i] / (1 - p), or 0 where
       fl_rng_uniform(key, i) < p (i the flat index; y may alias x). Backward
       is the same call on the gradient with the same key. */
    void (*dropout)(const fl_tensor *x, float p, uint64_t key, fl_tensor *y);

    /* Batch norm of x[N,F] over its rows. train: per-column batch mean and
       biased variance, rstd = 1/sqrt(var + eps), saved in mean[F], rstd[F];
       run_mean, run_var (unless NULL) move toward the batch mean and the
       unbiased variance by `momentum` (PyTorch's BatchNorm1d rule).
       Not train: mean = run_mean, rstd from run_var. y = (x - mean) rstd g + b. */
    void (*batchnorm)(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps,
                      float momentum, int train, fl_tensor *y, fl_tensor *mean,
                      fl_tensor *rstd, fl_tensor *run_mean, fl_tensor *run_var);
    /* dx[N,F] (overwritten); dg, db accumulated. batch = 1 after a train
       forward (mean and rstd depend on x), 0 after an eval one. */
    void (*batchnorm_backward)(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean,
                               const fl_tensor *rstd, const fl_tensor *dy, int batch,
                               fl_tensor *dx, fl_tensor *dg, fl_tensor *db);
    /* Layer norm of each group of c = F/G columns of x[N,F] (one group per
       head), then a per-column affine g[F], b[F]; mean, rstd [N*G] saved. */
    void (*layernorm_groups)(const fl_tensor *x, int G, const fl_tensor *g, const fl_tensor *b,
                             float eps, fl_tensor *y, fl_tensor *mean, fl_tensor *rstd);
    /* dx (overwritten); dg, db accumulated. */
    void (*layernorm_groups_backward)(const fl_tensor *x, int G, const fl_tensor *g,
                                      const fl_tensor *mean, const fl_tensor *rstd,
                                      const fl_tensor *dy, fl_tensor *dx, fl_tensor *dg,
                                      fl_tensor *db);

    /* ---- integer keys on the device (a router that never leaves it) ---- */

    /* out[i] = h(seed, ids[i]) mod buckets: ids[N] i32 (any shape), out the
       same shape i32, buckets >= 1; h is fl_rng_bits (ffnlab/rng.h), so the
       same id gets the same key on every device and run, and keys spread
       evenly over the buckets. A hash layer's expert of each token is
       hash_ids(ctx->tokens, seed, E); bucket_sort then groups the rows. */
    void (*hash_ids)(const fl_tensor *ids, uint64_t seed, int64_t buckets, fl_tensor *out);

    /* ---- a layer's bias and activation in one pass ---- */

    /* y[N,M] = act(x[N,M] + b[M]): add_bias then activation in one pass
       over x, which is left as it is (its backward reads x and b). y may be
       FL_BF16 (the f32 result rounded to nearest even; x F32). */
    void (*bias_activation)(int act, const fl_tensor *x, const fl_tensor *b, fl_tensor *y);
    /* dx = dy * act'(x + b) elementwise (dx may alias dy, and is
       overwritten), and unless db is NULL, db[M] += the sum over rows of
       dx: bias_activation's gradients in one pass. */
    void (*bias_activation_backward)(int act, const fl_tensor *x, const fl_tensor *b, const fl_tensor *dy,
                                     fl_tensor *dx, fl_tensor *db);

    /* ---- the same per group of rows (MoE experts), one call for all ---- */

    /* bias_activation with a bias row per group: rows off[g]..off[g+1] of
       x[N,M] take b[g] (b[G,M]); off as gemm_grouped's (host, G+1 offsets,
       off[G] = N). With FL_ACT_IDENTITY and y aliasing x: a grouped add_bias.
       One op, where a loop of bias_activation would be G (on a GPU: G
       launches for rows that the grouped GEMMs just wrote in one). */
    void (*bias_activation_grouped)(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off, int G,
                                    fl_tensor *y);
    /* Its gradients: dx = dy * act'(x + b[g]) on group g's rows (dx may
       alias dy), and unless db is NULL, db[g] (db[G,M]) += the sum of group
       g's rows of dx; an empty group adds nothing. With FL_ACT_IDENTITY and dx
       aliasing dy: the grouped bias gradient. */
    void (*bias_activation_grouped_backward)(int act, const fl_tensor *x, const fl_tensor *b, const int64_t *off,
                                             int G, const fl_tensor *dy, fl_tensor *dx, fl_tensor *db);
} fl_ops;

/* Whether a host's ops table has `field` (a table newer than the plugin's
   major version is only ever longer). */
#define FL_OPS_HAS(ops, field) \
    ((ops)->size >= offsetof(fl_ops, field) + sizeof((ops)->field) && (ops)->field != NULL)

/* ------------------------------------------------------------------------ */
/* Communicator: what expert parallelism needs. Size 1 in one process.       */
/* ------------------------------------------------------------------------ */

typedef struct fl_comm {
    uint32_t size_of;  /* sizeof(fl_comm) of the host that filled it */
    int32_t rank;
    int32_t size;
    int32_t ep_rank;   /* rank within this process's expert-parallel group */
    int32_t ep_size;   /* experts of a layer are split over ep_size ranks */
    void *impl;
    /* In-place sum over all ranks (f32). */
    fl_status (*allreduce_sum)(const struct fl_comm *c, fl_tensor *x, fl_error *err);
    /* All-to-all-v within the expert-parallel group: send[i] rows of `send`
       (in rank order) go to group rank i; recv receives recv_counts[i] rows
       from rank i. Counts are rows of `row_bytes` bytes; host arrays. */
    fl_status (*alltoallv)(const struct fl_comm *c, const void *send,
                           const int64_t *send_counts, void *recv,
                           const int64_t *recv_counts, size_t row_bytes, fl_error *err);

    /* ---- appended with multi-process runs (check size_of before use) ---- */

    /* P = size ranks form P / ep_size data-parallel replicas of one expert
       layout: ranks g*ep_size .. g*ep_size + ep_size-1 are expert-parallel
       group g (they split the experts), and the ranks with the same ep_rank
       hold the same experts (the "replica" group). */
    int32_t dp_rank;   /* this rank's replica index = rank / ep_size */
    int32_t dp_size;   /* replicas of each expert = size / ep_size */
    /* In-place f32 sum over one group (FL_COMM_WORLD, FL_COMM_EXPERT, or
       FL_COMM_REPLICA); x on host->device. */
    fl_status (*allreduce_sum_group)(const struct fl_comm *c, int group, fl_tensor *x,
                                     fl_error *err);
    /* x (any dtype, on host->device) from group rank `root` to every rank
       of the group. */
    fl_status (*broadcast)(const struct fl_comm *c, int group, fl_tensor *x, int root,
                           fl_error *err);
    /* Returns once every rank has entered it. */
    fl_status (*barrier)(const struct fl_comm *c, fl_error *err);
    /* Prints "ffnlab: error: rank R: msg" on stderr and ends every rank of
       the job with exit status `code` (MPI_Abort); does not return. For the
       rare case where a plugin cannot return an error and must not go on:
       a returned fl_status is always preferred (the host then aborts). */
    void (*abort)(const struct fl_comm *c, int code, const char *msg);
} fl_comm;

/* Groups of allreduce_sum_group / broadcast. */
enum { FL_COMM_WORLD = 0, FL_COMM_EXPERT = 1, FL_COMM_REPLICA = 2 };

/* ------------------------------------------------------------------------ */
/* The host table.                                                            */
/* ------------------------------------------------------------------------ */

enum { FL_LOG_ERROR = 0, FL_LOG_WARN = 1, FL_LOG_INFO = 2, FL_LOG_DEBUG = 3 };

typedef struct fl_host fl_host;

/* Opaque: where declared parameters go (one per layer being created). */
typedef struct fl_param_scope fl_param_scope;

struct fl_host {
    uint32_t abi_version;      /* FL_HOST_ABI_VERSION of the host */
    uint32_t size;             /* sizeof(fl_host) of the host */
    fl_device device;          /* where every tensor, op and kernel of this host
                                  runs: kind (FL_DEVICE_CPU, FL_DEVICE_CUDA) and
                                  GPU ordinal */
    /* CUDA: the cudaStream_t (as a void *) the host's ops are queued on, in
       order; a plugin's own kernels launch on it, so they run between the
       ops before and after them without a synchronisation. NULL means the
       legacy default stream; always NULL on the CPU. */
    void *stream;
    /* The dtype a plugin may store activations in that only feed GEMMs
       (the input of a projection and of its weight gradient): FL_BF16 when
       the run's GEMM precision is bf16, else FL_F32. Those GEMMs read a
       BF16 input as is instead of rounding an f32 copy, so storing it in
       bf16 halves its memory traffic and loses nothing the GEMM would have
       kept. Anything else (what an op other than a GEMM reads, what goes
       back to the host) stays F32. */
    int32_t act_dtype;         /* fl_dtype */
    const fl_ops *ops;
    const fl_comm *comm;

    /* printf-style log line; level FL_LOG_* */
    void (*log)(const fl_host *h, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Writes a one-line message into err (if not NULL) and returns code. */
    fl_status (*error)(fl_error *err, fl_status code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Declares a parameter of the layer being created. Returns a handle whose
       value (initialised) and grad (zero) stay valid until the model is
       destroyed, or NULL with err set. */
    fl_param *(*param)(const fl_host *h, fl_param_scope *scope,
                       const fl_param_spec *spec, fl_error *err);

    /* Makes t an owned tensor of the given dtype and shape on host->device,
       reallocating only when its capacity is too small. Contents undefined.
       It is also a plugin kernel's scratch memory: the host's allocator, on
       the device, kept by the plugin between calls. */
    fl_status (*tensor_ensure)(const fl_host *h, fl_tensor *t, int32_t dtype, int ndim,
                               const int64_t *shape, fl_error *err);
    /* Frees an owned tensor (no-op for views and zeroed structs). */
    void (*tensor_release)(const fl_host *h, fl_tensor *t);

    /* FL_PARAM_SPARSE_ROWS: marks rows idx[*] i32 (any shape) as touched in
       this step, so the optimizer updates them. */
    void (*param_touch_rows)(const fl_host *h, fl_param *p, const fl_tensor *idx);

    void *impl;                /* host-private */

    /* ---- fields appended in later 2.x versions go here (FL_HOST_HAS) ---- */
};

/* Whether a host table has `field` (appended in a later minor version). */
#define FL_HOST_HAS(h, field) ((h)->size >= offsetof(fl_host, field) + sizeof((h)->field))

#ifdef __cplusplus
}
#endif
#endif
