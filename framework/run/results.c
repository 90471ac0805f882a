/*
 * run/results.c — the JSON writer of every workflow result (see results.h).
 */
#include "results.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fsutil.h"
#include "git_revision.h" /* generated at build time: FFNLAB_GIT_REVISION */

const char *fl_git_revision(void) { return FFNLAB_GIT_REVISION; }

fl_status fl_json_write_file(const char *path, const cJSON *doc, fl_error *err) {
    char *text = cJSON_Print(doc);
    if (!text) return fl_fail(err, FL_ENOMEM, "out of memory writing %s", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON_Print leaves no final newline: end the file with one */
    fl_status st = fl_write_file_atomic(path, text, n + 1, err);
    cJSON_free(text);
    return st;
}

fl_status fl_json_check_report(const char *path, fl_error *err) {
    fl_status st = fl_check_file_writable(path, err);
    if (st) fl_error_prefix(err, "--json");
    return st;
}

fl_status fl_json_append_line(FILE *f, const cJSON *doc, fl_error *err) {
    char *text = cJSON_PrintUnformatted(doc);
    if (!text) return fl_fail(err, FL_ENOMEM, "out of memory writing a JSON line");
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF && fflush(f) == 0;
    cJSON_free(text);
    return ok ? FL_OK : fl_fail(err, FL_EIO, "cannot write a JSON line: disk full or file closed");
}

/* {"h.0": {"active_params": ..., "load.0": ...}, "h.1": ...} */
static cJSON *layer_stats(const fl_layer_stats *ls) {
    cJSON *o = cJSON_CreateObject();
    for (int l = 0; l < ls->n_layers; l++) {
        if (!ls->n[l]) continue;
        char name[16];
        snprintf(name, sizeof name, "h.%d", l);
        cJSON *layer = cJSON_AddObjectToObject(o, name);
        const fl_stat *s = ls->s + (size_t)l * FL_STATS_MAX;
        for (int i = 0; i < ls->n[l]; i++) cJSON_AddNumberToObject(layer, s[i].name, s[i].value);
    }
    return o;
}

cJSON *fl_json_metrics_line(const fl_metrics_line *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)m->step);
    if (m->is_val) {
        cJSON_AddNumberToObject(o, "val_loss", m->val_loss);
    } else {
        cJSON_AddNumberToObject(o, "loss", m->loss);
        cJSON_AddNumberToObject(o, "ce_loss", m->ce_loss);
        cJSON_AddNumberToObject(o, "lr", m->lr);
        cJSON_AddNumberToObject(o, "grad_norm", m->grad_norm);
        cJSON_AddNumberToObject(o, "tokens_per_s", m->tokens_per_s);
    }
    cJSON_AddNumberToObject(o, "time_s", m->time_s);
    cJSON_AddNumberToObject(o, "tokens", (double)m->tokens);
    for (int i = 0; i < m->n_aux; i++) {
        char key[96];
        snprintf(key, sizeof key, "aux.%s", m->aux[i].name);
        cJSON_AddNumberToObject(o, key, m->aux[i].value);
    }
    if (m->stats) cJSON_AddItemToObject(o, "stats", layer_stats(m->stats));
    return o;
}

cJSON *fl_json_model_size(const fl_model_size *s, const char *const *specs) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "total_params", s->total_params);
    cJSON_AddNumberToObject(o, "active_params_per_token", s->active_params);
    cJSON_AddNumberToObject(o, "flops_per_token", s->flops_per_token);
    cJSON_AddNumberToObject(o, "ffn_params", s->ffn_params);
    cJSON_AddNumberToObject(o, "ffn_active_params_per_token", s->ffn_active_params);
    cJSON_AddNumberToObject(o, "ffn_flops_per_token", s->ffn_flops_per_token);
    cJSON *layers = cJSON_AddArrayToObject(o, "ffn");
    for (int l = 0; l < s->n_layers; l++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "layer", l);
        if (specs) cJSON_AddStringToObject(f, "spec", specs[l]);
        cJSON_AddNumberToObject(f, "params", s->ffn[l].params);
        cJSON_AddNumberToObject(f, "active_params", s->ffn[l].active_params);
        cJSON_AddNumberToObject(f, "flops_per_token", s->ffn[l].flops_per_token);
        cJSON_AddItemToArray(layers, f);
    }
    return o;
}

/* The config as its own JSON (fl_config_to_json), as a cJSON tree. */
static cJSON *config_json(const fl_config *cfg) {
    char *text = fl_config_to_json(cfg);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    return o ? o : cJSON_CreateNull();
}

cJSON *fl_json_run_summary(const fl_run_summary *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ffnlab_version", FFNLAB_VERSION);
    cJSON_AddStringToObject(o, "git_revision", fl_git_revision());
    cJSON_AddItemToObject(o, "config", config_json(s->cfg));
    cJSON_AddItemToObject(o, "model", fl_json_model_size(&s->size, s->ffn_specs));
    cJSON *t = cJSON_AddObjectToObject(o, "training");
    cJSON_AddNumberToObject(t, "steps", (double)s->train.steps_done);
    cJSON_AddNumberToObject(t, "tokens", (double)s->tokens);
    cJSON_AddNumberToObject(t, "seconds", s->seconds);
    cJSON_AddNumberToObject(t, "tokens_per_s", s->train_tokens_per_s);
    cJSON_AddNumberToObject(t, "final_train_loss", s->train.final_train_loss);
    cJSON_AddNumberToObject(t, "final_val_loss", s->train.final_val_loss);
    cJSON_AddNumberToObject(t, "unigram_entropy", s->train.unigram_entropy);
    cJSON *inf = cJSON_AddObjectToObject(o, "inference");
    cJSON_AddNumberToObject(inf, "tokens_per_s", s->inference_tokens_per_s);
    cJSON *mem = cJSON_AddObjectToObject(o, "memory");
    cJSON_AddNumberToObject(mem, "peak_rss_mib", s->peak_rss_mib);
    return o;
}

/* {"d_model": .., "n_layers": .., "n_heads": .., "context": .., "batch": .., "vocab": .., "ffn": ..} */
static cJSON *shape_json(const fl_bench_shape *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "d_model", s->d_model);
    cJSON_AddNumberToObject(o, "n_layers", s->n_layers);
    cJSON_AddNumberToObject(o, "n_heads", s->n_heads);
    cJSON_AddNumberToObject(o, "context", s->context);
    cJSON_AddNumberToObject(o, "batch", s->batch);
    cJSON_AddNumberToObject(o, "vocab", s->vocab);
    cJSON_AddStringToObject(o, "ffn", s->ffn);
    return o;
}

cJSON *fl_json_decode_figure(int batch, int prompt_tokens, int new_tokens, double tokens_per_s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tokens_per_s", tokens_per_s);
    cJSON_AddNumberToObject(o, "batch", batch);
    cJSON_AddNumberToObject(o, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(o, "new_tokens", new_tokens);
    return o;
}

cJSON *fl_json_bench(const fl_bench_opts *o, const fl_bench_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "backend", r->backend);
    cJSON_AddStringToObject(j, "kernel", r->kernel);
    cJSON_AddStringToObject(j, "preset", o->preset ? o->preset : "");
    cJSON_AddItemToObject(j, "shape", shape_json(&o->shape));
    cJSON_AddNumberToObject(j, "sgemm_gflops", r->sgemm_gflops);
    cJSON_AddNumberToObject(j, "train_tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(j, "train_gflops", r->gflops);
    cJSON_AddNumberToObject(j, "flops_per_token", r->flops_per_token);
    cJSON_AddNumberToObject(j, "lm_head_width", (double)r->head_width);
    cJSON_AddNumberToObject(j, "fraction_of_peak", r->sgemm_gflops > 0 ? r->gflops / r->sgemm_gflops : 0);
    cJSON_AddNumberToObject(j, "peak_tflops", r->peak_tflops);
    cJSON_AddStringToObject(j, "peak_assumption", r->peak_what);
    cJSON_AddNumberToObject(j, "mfu", r->mfu);
    if (r->profiled) {
        cJSON_AddNumberToObject(j, "profiled_tokens_per_s", r->profiled_tokens_per_s);
        cJSON *p = cJSON_AddObjectToObject(j, "profile_ms_per_step");
        for (int i = 1; i < FL_PH_COUNT; i++) cJSON_AddNumberToObject(p, fl_profile_name((fl_phase)i), r->profile_ms[i]);
    }
    return j;
}

cJSON *fl_json_bench_gemm(const fl_bench_gemm_opts *o, const fl_bench_gemm_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "backend", r->backend);
    cJSON_AddStringToObject(j, "kernel", r->kernel);
    cJSON_AddNumberToObject(j, "reps", r->reps);
    cJSON_AddItemToObject(j, "shape", shape_json(&o->shape));
    cJSON_AddStringToObject(j, "activations", o->bf16_x ? "bf16" : "f32");
    cJSON *rows = cJSON_AddArrayToObject(j, "layers");
    for (int i = 0; i < r->n_rows; i++) {
        const fl_bench_gemm_row *row = &r->rows[i];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "layer", row->layer);
        cJSON_AddNumberToObject(l, "tokens", (double)row->tokens);
        cJSON_AddNumberToObject(l, "in", (double)row->in);
        cJSON_AddNumberToObject(l, "out", (double)row->out);
        cJSON_AddStringToObject(l, "weights", row->w_out_in ? "out,in" : "in,out");
        for (int p = 0; p < FL_GEMM_PRODUCTS; p++) {
            cJSON *q = cJSON_AddObjectToObject(l, fl_bench_gemm_product_names[p]);
            cJSON_AddNumberToObject(q, "ms", row->ms[p]);
            cJSON_AddNumberToObject(q, "gflops", row->gflops[p]);
            cJSON_AddNumberToObject(q, "time_vs_forward", row->ms[p] / row->ms[FL_GEMM_FWD]);
        }
        cJSON_AddItemToArray(rows, l);
    }
    cJSON_AddNumberToObject(j, "worst_backward_vs_forward", r->worst_ratio);
    return j;
}

/* One FFN layer in one mode: {"d", "spec", "mode"}, the rest to add. */
static cJSON *json_layer_mode(int d, const char *spec, int mode) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "d", d);
    cJSON_AddStringToObject(o, "spec", spec);
    cJSON_AddStringToObject(o, "mode", fl_bench_mode_names[mode]);
    return o;
}

/* --profile: per layer and mode, each host op called: calls, ms and GFLOP
   per plugin call, a GEMM's GFLOP/s; own_ms is what the ops leave. */
static cJSON *json_ffn_profiles(const fl_bench_ffn_result *r) {
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < r->n_profiles; i++) {
        const fl_bench_ffn_profile *p = &r->profiles[i];
        cJSON *o = json_layer_mode(p->d, p->spec, p->mode), *ops = cJSON_CreateArray();
        cJSON_AddNumberToObject(o, "calls", p->calls);
        cJSON_AddNumberToObject(o, "ms", p->ms);
        cJSON_AddNumberToObject(o, "unprofiled_ms", p->unprofiled_ms);
        cJSON_AddNumberToObject(o, "idle_op_us", 1e6 * p->ops.wait_s);
        for (int op = 0; op < FL_OP_COUNT; op++) {
            if (!p->ops.calls[op]) continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "op", fl_op_name(op));
            cJSON_AddNumberToObject(e, "calls", (double)p->ops.calls[op] / p->calls);
            cJSON_AddNumberToObject(e, "ms", 1e3 * p->ops.seconds[op] / p->calls);
            cJSON_AddNumberToObject(e, "gflop", p->ops.flops[op] / p->calls / 1e9);
            if (p->ops.flops[op] > 0) cJSON_AddNumberToObject(e, "gflops", p->ops.flops[op] / p->ops.seconds[op] / 1e9);
            cJSON_AddItemToArray(ops, e);
        }
        cJSON_AddItemToObject(o, "ops", ops);
        cJSON_AddNumberToObject(o, "own_ms", p->own_ms);
        cJSON_AddItemToArray(list, o);
    }
    return list;
}

cJSON *fl_json_bench_ffn(const fl_bench_ffn_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "backend", r->backend);
    cJSON_AddStringToObject(j, "kernel", r->kernel);
    cJSON_AddNumberToObject(j, "reps", r->reps);
    cJSON_AddNumberToObject(j, "tokens", (double)r->tokens);
    cJSON *base = cJSON_AddArrayToObject(j, "dense");
    for (int w = 0; w < r->n_widths; w++) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddNumberToObject(b, "d", r->widths[w].d);
        cJSON_AddStringToObject(b, "spec", r->widths[w].dense_spec);
        for (int m = 0; m < FL_BENCH_MODES; m++) {
            char key[32];
            snprintf(key, sizeof key, "%s_ms", fl_bench_mode_names[m]);
            cJSON_AddNumberToObject(b, key, r->widths[w].dense_ms[m]);
        }
        cJSON_AddItemToArray(base, b);
    }
    cJSON *rows = cJSON_AddArrayToObject(j, "ffn");
    for (int i = 0; i < r->n_rows; i++) {
        const fl_bench_ffn_row *w = &r->rows[i];
        cJSON *o = json_layer_mode(w->d, w->spec, w->mode);
        cJSON_AddNumberToObject(o, "ms", w->ms);
        cJSON_AddNumberToObject(o, "tokens_per_s", w->tokens_per_s);
        cJSON_AddNumberToObject(o, "speedup_equal_params", w->speedup_equal_params);
        if (isfinite(w->speedup_equal_flops)) cJSON_AddNumberToObject(o, "speedup_equal_flops", w->speedup_equal_flops);
        else cJSON_AddNullToObject(o, "speedup_equal_flops");
        cJSON_AddItemToArray(rows, o);
    }
    if (r->n_profiles) cJSON_AddItemToObject(j, "profiles", json_ffn_profiles(r));
    return j;
}

cJSON *fl_json_bench_comm(const fl_bench_comm_opts *o, const fl_bench_comm_result *r) {
    const double tokens = (double)o->shape.batch * o->shape.context;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "processes", r->processes);
    cJSON_AddNumberToObject(j, "expert_parallel", r->expert_parallel);
    cJSON_AddNumberToObject(j, "threads", r->threads);
    cJSON_AddItemToObject(j, "shape", shape_json(&o->shape));
    cJSON *ops = cJSON_AddArrayToObject(j, "collectives");
    for (int i = 0; i < r->n_ops; i++) {
        const fl_bench_comm_op *op = &r->ops[i];
        cJSON *c = cJSON_CreateObject();
        if (op->op == FL_COMM_OP_ALLTOALLV) {
            cJSON_AddStringToObject(c, "op", "alltoallv");
            cJSON_AddNumberToObject(c, "rows_per_rank", (double)op->count);
            cJSON_AddNumberToObject(c, "bytes_to_others", op->bytes_to_others);
            cJSON_AddNumberToObject(c, "ms", op->ms);
            cJSON_AddNumberToObject(c, "gb_per_s", op->gb_per_s);
        } else {
            cJSON_AddStringToObject(c, "op", "allreduce");
            cJSON_AddNumberToObject(c, "floats", (double)op->count);
            cJSON_AddStringToObject(c, "buffer", op->what);
            cJSON_AddNumberToObject(c, "ms", op->ms);
            cJSON_AddNumberToObject(c, "algbw_gb_per_s", op->gb_per_s);
            cJSON_AddNumberToObject(c, "busbw_gb_per_s", op->busbw_gb_per_s);
        }
        cJSON_AddItemToArray(ops, c);
    }
    cJSON_AddNumberToObject(j, "step_ms", r->step_ms);
    cJSON_AddNumberToObject(j, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(j, "us_per_token", r->us_per_token);
    cJSON_AddNumberToObject(j, "comm_ms", r->comm_ms);
    cJSON_AddNumberToObject(j, "comm_max_ms", r->comm_max_ms);
    cJSON_AddNumberToObject(j, "grad_allreduce_ms", r->grad_allreduce_ms);
    cJSON_AddNumberToObject(j, "comm_fraction", r->step_ms > 0 ? r->comm_ms / r->step_ms : 0);
    cJSON_AddNumberToObject(j, "comm_us_per_token", 1e3 * r->comm_ms / tokens);
    return j;
}

cJSON *fl_json_bench_blimp(const fl_eval_bench_opts *o, const fl_eval_bench_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "blimp_pairs", (double)r->pairs);
    cJSON_AddNumberToObject(j, "blimp_tokens", (double)r->tokens);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "pairs_per_s", (double)r->pairs / r->seconds);
    cJSON_AddNumberToObject(j, "tokens_per_s", (double)r->tokens / r->seconds);
    cJSON_AddNumberToObject(j, "untrained_accuracy", r->accuracy);
    cJSON_AddStringToObject(j, "backend", r->backend);
    cJSON_AddStringToObject(j, "kernel", r->kernel);
    fl_bench_shape s = {o->d_model, o->n_layers, o->n_heads, o->context, o->batch, r->vocab, 0, o->ffn};
    cJSON *shape = shape_json(&s);
    cJSON_DeleteItemFromObject(shape, "batch"); /* sentences per forward: not a training batch */
    cJSON_AddNumberToObject(shape, "sentences_per_batch", o->batch);
    cJSON_AddItemToObject(j, "shape", shape);
    return j;
}

cJSON *fl_json_sweep(const fl_sweep_opts *o, const fl_sweep_plan *plan, const fl_sweep_cell_record *cells, int n) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "ffnlab_version", FFNLAB_VERSION);
    cJSON_AddStringToObject(doc, "git_revision", fl_git_revision());
    cJSON *p = cJSON_AddObjectToObject(doc, "plan");
    cJSON_AddItemToObject(p, "config", config_json(&o->base));
    cJSON_AddStringToObject(p, "match", fl_match_name(o->match));
    cJSON_AddStringToObject(p, "reference", o->base.ffn);
    cJSON *vs = cJSON_AddArrayToObject(p, "variants");
    for (int i = 0; i < plan->n_variants; i++) {
        const fl_sweep_variant *v = &plan->v[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", v->name);
        cJSON_AddStringToObject(j, "given", v->given);
        cJSON_AddStringToObject(j, "spec", v->m.spec);
        if (v->m.knob[0]) {
            cJSON_AddStringToObject(j, "matched_option", v->m.knob);
            cJSON_AddNumberToObject(j, "matched_value", (double)v->m.value);
        }
        cJSON *sz = cJSON_AddObjectToObject(j, "sizes");
        cJSON_AddNumberToObject(sz, "total_params", v->total_params);
        cJSON_AddNumberToObject(sz, "active_params_per_token", v->active_params);
        cJSON_AddNumberToObject(sz, "flops_per_token", v->flops_per_token);
        cJSON_AddNumberToObject(sz, "ffn_params", v->m.size.params);
        cJSON_AddNumberToObject(sz, "ffn_active_params_per_token", v->m.size.active_params);
        cJSON_AddNumberToObject(sz, "ffn_flops_per_token", v->m.size.flops_per_token);
        cJSON_AddItemToArray(vs, j);
    }
    cJSON *seeds = cJSON_AddArrayToObject(p, "seeds");
    for (int i = 1; i <= plan->n_seeds; i++) cJSON_AddItemToArray(seeds, cJSON_CreateNumber(i));
    cJSON *tasks = cJSON_AddArrayToObject(p, "tasks");
    for (int i = 0; i < o->n_tasks; i++) cJSON_AddItemToArray(tasks, cJSON_CreateString(o->tasks[i]));
    cJSON *cs = cJSON_AddArrayToObject(doc, "cells");
    for (int i = 0; i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", cells[i].name);
        cJSON_AddStringToObject(c, "variant", cells[i].variant);
        cJSON_AddNumberToObject(c, "seed", cells[i].seed);
        cJSON_AddStringToObject(c, "dir", cells[i].name);
        cJSON_AddStringToObject(c, "state", cells[i].state);
        if (cells[i].error && cells[i].error[0]) cJSON_AddStringToObject(c, "error", cells[i].error);
        cJSON_AddItemToArray(cs, c);
    }
    return doc;
}

cJSON *fl_json_bench_decode(const fl_bench_decode_result *r) {
    const fl_bench_decode_opts *o = &r->opts;
    cJSON *doc = cJSON_CreateObject(), *shape = cJSON_CreateObject(), *rates = cJSON_CreateArray();
    if (!doc || !shape || !rates) {
        cJSON_Delete(doc), cJSON_Delete(shape), cJSON_Delete(rates);
        return NULL;
    }
    cJSON_AddStringToObject(doc, "backend", r->backend);
    cJSON_AddStringToObject(doc, "kernel", r->kernel);
    cJSON_AddStringToObject(doc, "precision", r->precision);
    cJSON_AddNumberToObject(shape, "d_model", o->d_model);
    cJSON_AddNumberToObject(shape, "n_layers", o->n_layers);
    cJSON_AddNumberToObject(shape, "n_heads", o->n_heads);
    cJSON_AddNumberToObject(shape, "context", o->context);
    cJSON_AddNumberToObject(shape, "vocab", o->vocab);
    cJSON_AddStringToObject(shape, "ffn", o->ffn);
    cJSON_AddItemToObject(doc, "shape", shape);
    cJSON_AddNumberToObject(doc, "prompt_tokens", o->prompt_len);
    cJSON_AddNumberToObject(doc, "new_tokens", o->n_new);
    for (int i = 0; i < r->n_rates; i++) {
        const fl_bench_decode_rate *x = &r->rates[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "batch", x->batch);
        cJSON_AddNumberToObject(e, "cached_tokens_per_s", x->cached_tokens_per_s);
        cJSON_AddNumberToObject(e, "uncached_tokens_per_s", x->uncached_tokens_per_s);
        cJSON_AddNumberToObject(e, "speedup", x->cached_tokens_per_s / x->uncached_tokens_per_s);
        cJSON_AddItemToArray(rates, e);
    }
    cJSON_AddItemToObject(doc, "decode", rates);
    return doc;
}
