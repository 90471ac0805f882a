/*
 * run/results.h — every JSON file ffnlab's workflows write, in one place.
 *
 * A workflow returns plain C structs (train.h, bench.h, ...); the functions
 * here turn one into a cJSON object, and fl_json_write_file /
 * fl_json_append_line put it on disk. So the field names of every results
 * file are defined once, next to each other, and no JSON is written by hand.
 */
#ifndef FFNLAB_RESULTS_H
#define FFNLAB_RESULTS_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "bench.h"
#include "bench_decode.h"
#include "eval.h"
#include "sweep.h"
#include "train.h"

/* doc pretty-printed to path, atomically (temp file, fsync, rename). */
fl_status fl_json_write_file(const char *path, const cJSON *doc, fl_error *err);
/* Before the work that fills it: FL_OK when fl_json_write_file can write
   the --json report at path, else why (prefixed "--json"). */
fl_status fl_json_check_report(const char *path, fl_error *err);
/* doc on one line of f (JSON Lines), flushed. */
fl_status fl_json_append_line(FILE *f, const cJSON *doc, fl_error *err);

/* The git revision ffnlab was built from ("unknown" outside a checkout). */
const char *fl_git_revision(void);

cJSON *fl_json_metrics_line(const fl_metrics_line *m);
cJSON *fl_json_model_size(const fl_model_size *s, const char *const *specs);
cJSON *fl_json_run_summary(const fl_run_summary *s);
/* summary.json's "decode": {"tokens_per_s", "batch", "prompt_tokens", "new_tokens"}
   (greedy, KV cache; added by a sweep once the cell is evaluated). */
cJSON *fl_json_decode_figure(int batch, int prompt_tokens, int new_tokens, double tokens_per_s);

/* One cell of a sweep as sweep.json records it. */
typedef struct fl_sweep_cell_record {
    const char *name, *variant, *state, *error;
    int seed;
} fl_sweep_cell_record;
cJSON *fl_json_sweep(const fl_sweep_opts *o, const fl_sweep_plan *plan, const fl_sweep_cell_record *cells, int n);

cJSON *fl_json_bench(const fl_bench_opts *o, const fl_bench_result *r);
cJSON *fl_json_bench_ffn(const fl_bench_ffn_result *r);
cJSON *fl_json_bench_gemm(const fl_bench_gemm_opts *o, const fl_bench_gemm_result *r);
cJSON *fl_json_bench_comm(const fl_bench_comm_opts *o, const fl_bench_comm_result *r);
cJSON *fl_json_bench_blimp(const fl_eval_bench_opts *o, const fl_eval_bench_result *r);
/* {"backend", "kernel", "precision", "shape": {...}, "prompt_tokens", "new_tokens",
    "decode": [{"batch", "cached_tokens_per_s", "uncached_tokens_per_s", "speedup"}]} */
cJSON *fl_json_bench_decode(const fl_bench_decode_result *r);

#endif
