/*
 * run/bench.h — the measurements `ffnlab bench` makes, as workflows: each
 * takes its options, measures, and fills a result struct; the CLI prints it
 * and run/results.c writes it as JSON (--json FILE).
 *
 *   fl_bench_train  whole training steps of a model against the GEMM peak
 *                   (run/bench.c)
 *   fl_bench_ffn    one FFN layer alone, sparse against dense of equal
 *                   parameters and of equal active FLOPs (run/bench_ffn.c)
 *   fl_bench_comm   collectives and their share of a multi-process training
 *                   step (run/bench_comm.c)
 *   fl_bench_gemm   each GEMM of a training step, forward against its two
 *                   backward products (run/bench_gemm.c)
 * Inputs are random tokens: throughput does not depend on the text.
 */
#ifndef FFNLAB_BENCH_H
#define FFNLAB_BENCH_H

#include <stdint.h>

#include "ffnlab/status.h"
#include "op_profile.h"
#include "profile.h"

/* A model shape to time. */
typedef struct fl_bench_shape {
    int d_model, n_layers, n_heads, context, batch, vocab, steps;
    const char *ffn;
} fl_bench_shape;

/* ---------------------------------------------------------- training steps */

typedef struct fl_bench_opts {
    fl_bench_shape shape;
    const char *device;        /* "auto", "cpu", "cuda[:N]" */
    const char *preset;        /* the name the shape came from (for the record) */
    int profile;               /* time each phase too (as many steps again) */
} fl_bench_opts;

typedef struct fl_bench_result {
    char backend[32], kernel[256];
    double peak_tflops;        /* the GPU's datasheet peak for the precision, 0 on a CPU */
    char peak_what[160];
    double sgemm_gflops;       /* the LM head's GEMM alone: the practical peak */
    double tokens_per_s, flops_per_token, gflops, mfu;
    int64_t head_width;        /* the LM head's columns in training (fl_model_head_width) */
    int profiled;
    double profiled_tokens_per_s;
    double profile_ms[FL_PH_COUNT]; /* per step, by phase */
} fl_bench_result;

fl_status fl_bench_train(const fl_bench_opts *o, fl_bench_result *r, fl_error *err);

/* ---------------------------------------------------------- one FFN layer */

enum { FL_BENCH_FWD, FL_BENCH_FWD_BWD, FL_BENCH_INFER, FL_BENCH_MODES };
extern const char *const fl_bench_mode_names[FL_BENCH_MODES]; /* "forward", "fwd+bwd", "inference" */

typedef struct fl_bench_ffn_opts {
    const char *device;
    const char *only;          /* only cases whose spec starts with this (NULL: all) */
    int reps;                  /* timed calls per measurement (median), 1..32 */
    int64_t tokens;            /* rows per call: sequences of 256 */
    int profile;               /* also time every host op the layers call (op_profile.h) */
} fl_bench_ffn_opts;

#define FL_BENCH_FFN_MAX_ROWS 64
typedef struct fl_bench_ffn_row {
    int d;
    char spec[96];
    int mode;                  /* FL_BENCH_* */
    double ms, tokens_per_s;
    double speedup_equal_params; /* dense d_ff = 4d (4096 at d=256) time / this time */
    double speedup_equal_flops;  /* dense of this layer's active FLOPs / this; NAN when not defined */
} fl_bench_ffn_row;

typedef struct fl_bench_ffn_width {
    int d;
    char dense_spec[64];
    double dense_ms[FL_BENCH_MODES];
} fl_bench_ffn_width;

/* --profile: one layer in one mode, `calls` more calls with the device
   synchronised around every host op. What the ops do not account for is the
   plugin's own code and kernels. */
#define FL_BENCH_FFN_MAX_PROFILES 40
typedef struct fl_bench_ffn_profile {
    int d;
    char spec[96];
    int mode;
    int calls;
    double ms;                 /* per call, profiled */
    double unprofiled_ms;      /* the mode's median without the waits */
    double own_ms;             /* per call, outside the host ops: the plugin's own code and kernels */
    fl_op_profile ops;         /* summed over the calls */
} fl_bench_ffn_profile;

typedef struct fl_bench_ffn_result {
    char backend[32], kernel[256];
    int reps;
    int64_t tokens;
    fl_bench_ffn_width widths[2];
    int n_widths;
    fl_bench_ffn_row rows[FL_BENCH_FFN_MAX_ROWS];
    int n_rows;
    fl_bench_ffn_profile profiles[FL_BENCH_FFN_MAX_PROFILES]; /* the dense baselines and the cases */
    int n_profiles;
} fl_bench_ffn_result;

fl_status fl_bench_ffn(const fl_bench_ffn_opts *o, fl_bench_ffn_result *r, fl_error *err);

/* ---------------------------------------------------------- GEMMs */

/* A linear layer y[N,out] from x[N,in] has three products of 2·N·in·out
   FLOPs: the forward, the input gradient dx and the weight gradient dW.
   Which transposes they are depends on how W is stored: [in,out] (GPT-2's
   Conv1D weights: attention and the FFN plugins) gives y = x·W (A·B),
   dx = dy·Wᵀ (A·Bᵀ), dW += xᵀ·dy (Aᵀ·B); [out,in] (the LM head, tied to
   the token embedding [vocab,d]) gives y = x·Wᵀ, dx = dy·W, dW += dyᵀ·x. */
enum { FL_GEMM_FWD, FL_GEMM_DX, FL_GEMM_DW, FL_GEMM_PRODUCTS };
extern const char *const fl_bench_gemm_product_names[FL_GEMM_PRODUCTS]; /* "forward", "dx", "dW" */

typedef struct fl_bench_gemm_opts {
    fl_bench_shape shape;      /* d_model, context x batch tokens, vocab; ffn ignored (dense d_ff = 4d) */
    const char *device;
    int reps;                  /* timed rounds (the best counts), 1..64 */
    int bf16_x;                /* x (each layer's input) stored in bf16, as a bf16 step stores an
                                  input that only feeds GEMMs; needs the bf16 precision */
} fl_bench_gemm_opts;

#define FL_BENCH_GEMM_LAYERS 5
typedef struct fl_bench_gemm_row {
    const char *layer;         /* "qkv", "attn proj", "ffn fc", "ffn proj", "lm head" */
    int64_t tokens, in, out;
    int w_out_in;              /* W stored [out,in] (the LM head), else [in,out] */
    double ms[FL_GEMM_PRODUCTS], gflops[FL_GEMM_PRODUCTS];
} fl_bench_gemm_row;

typedef struct fl_bench_gemm_result {
    char backend[32], kernel[256];
    int reps;
    fl_bench_gemm_row rows[FL_BENCH_GEMM_LAYERS];
    int n_rows;
    double worst_ratio;        /* the slowest backward product's time over its forward's */
} fl_bench_gemm_result;

fl_status fl_bench_gemm(const fl_bench_gemm_opts *o, fl_bench_gemm_result *r, fl_error *err);

/* ---------------------------------------------------------- communication */

typedef struct fl_bench_comm_opts {
    fl_bench_shape shape;      /* global batch; ffn an MoE spec */
    int expert_parallel;       /* 0: all the processes */
    const char *json;          /* the file rank 0 writes the figures to, or NULL:
                                  checked before anything is measured */
} fl_bench_comm_opts;

enum { FL_COMM_OP_ALLTOALLV, FL_COMM_OP_ALLREDUCE };
#define FL_BENCH_COMM_MAX_OPS 8
typedef struct fl_bench_comm_op {
    int op;                    /* FL_COMM_OP_* */
    int64_t count;             /* all-to-all-v: rows per rank; all-reduce: floats */
    int row_floats;            /* all-to-all-v: floats per row */
    const char *what;          /* all-reduce: which buffer */
    double bytes, bytes_to_others, ms, gb_per_s, busbw_gb_per_s;
} fl_bench_comm_op;

typedef struct fl_bench_comm_result {
    int rank, processes, expert_parallel, threads;
    fl_bench_comm_op ops[FL_BENCH_COMM_MAX_OPS];
    int n_ops;
    double step_ms, tokens_per_s, us_per_token, comm_ms, comm_max_ms, grad_allreduce_ms;
} fl_bench_comm_result;

/* Collective: every rank of the job calls it; rank 0's result is the job's. */
fl_status fl_bench_comm(const fl_bench_comm_opts *o, fl_bench_comm_result *r, fl_error *err);

#endif
