/*
 * run/sweep.c — variants x seeds, trained and evaluated (see sweep.h).
 */
#include "sweep.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_decode.h"
#include "comm.h"
#include "error.h"
#include "eval.h"
#include "fsutil.h"
#include "json_strict.h"
#include "log.h"
#include "results.h"
#include "run_load.h"
#include "tokenizer.h"
#include "train.h"

/* ------------------------------------------------------------ the plan */

/* "moe:top_k=2,experts=4" → "moe-top_k=2-experts=4": a folder name. */
static void variant_name(const char *spec, char *out, size_t n) {
    size_t k = 0;
    for (const char *p = spec; *p && k + 1 < n; p++) {
        char c = *p;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                   c == '=' || c == '.';
        out[k++] = keep ? c : c == ':' || c == ',' ? '-' : '_';
    }
    out[k] = 0;
}

/* The task specs ';'-joined into cfg->eval_tasks, so fl_eval_check_config
   checks them (they load and parse) before anything runs. */
static fl_status check_tasks(const fl_sweep_opts *o, fl_error *err) {
    fl_config c = o->base;
    c.eval_tasks[0] = 0;
    for (int i = 0; i < o->n_tasks; i++) {
        size_t used = strlen(c.eval_tasks);
        if (snprintf(c.eval_tasks + used, sizeof c.eval_tasks - used, "%s%s", i ? ";" : "", o->tasks[i]) >=
            (int)(sizeof c.eval_tasks - used))
            return fl_fail(err, FL_EINVAL, "--tasks: the task specs are longer than %zu bytes", sizeof c.eval_tasks);
    }
    return fl_eval_check_config(&c, err);
}

fl_status fl_sweep_plan_make(const fl_sweep_opts *o, fl_sweep_plan *plan, fl_error *err) {
    memset(plan, 0, sizeof *plan);
    if (o->n_variants < 1) return fl_fail(err, FL_EINVAL, "sweep: no variants given (e.g. --variants dense,moe)");
    if (o->n_seeds < 1 || o->n_seeds > FL_SWEEP_MAX_SEEDS)
        return fl_fail(err, FL_EINVAL, "sweep: --seeds %d is not in [1, %d]", o->n_seeds, FL_SWEEP_MAX_SEEDS);
    fl_status st = fl_config_validate(&o->base, err);
    if (!st) st = check_tasks(o, err);
    const fl_backend *be = NULL;
    if (!st) st = fl_backend_select(o->base.device, &be, err);
    for (int i = 0; i < o->n_variants && !st; i++) {
        fl_sweep_variant *v = &plan->v[i];
        snprintf(v->given, sizeof v->given, "%s", o->variants[i]);
        variant_name(v->given, v->name, sizeof v->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(plan->v[j].name, v->name))
                return fl_fail(err, FL_EINVAL, "sweep: variants '%s' and '%s' would share the folder name '%s'",
                               plan->v[j].given, v->given, v->name);
        const fl_ffn_site site = {.d_model = o->base.d_model, .index = 0, .n_layers = o->base.n_layers,
                                  .vocab_size = o->base.vocab_size, .seed = 1};
        st = fl_match_ffn(v->given, o->base.ffn, &site, o->match, be, &v->m, err);
        if (st) {
            fl_error_prefix(err, "variant '%s'", v->given);
            break;
        }
        fl_config c = o->base;
        snprintf(c.ffn, sizeof c.ffn, "%s", v->m.spec);
        fl_model_size size;
        if ((st = fl_config_model_size(&c, c.vocab_size, be, NULL, &size, err))) break;
        v->total_params = size.total_params;
        v->active_params = size.active_params;
        v->flops_per_token = size.flops_per_token;
        fl_model_size_free(&size);
        plan->n_variants++;
    }
    plan->n_seeds = o->n_seeds;
    return st;
}

/* ------------------------------------------------------------ cells */

/* A JSON string's text, "" for anything else (a missing key included). */
static const char *str_of(const cJSON *item) {
    const char *t = cJSON_GetStringValue(item);
    return t ? t : "";
}

typedef struct cell {
    char name[128];
    int variant;               /* index into the plan */
    int seed;
    char state[16];            /* pending, trained, done, failed, interrupted */
    char error[FL_ERRMSG_LEN];
} cell;

typedef struct sweep {
    const fl_sweep_opts *o;
    const fl_sweep_plan *plan;
    cell cells[FL_SWEEP_MAX_VARIANTS * FL_SWEEP_MAX_SEEDS];
    int n;
    cJSON *old;                /* the sweep.json found, or NULL */
    char path[FL_PATH_MAX + 32];
    const fl_comm *world;
    char data[FL_PATH_MAX];    /* the shards and tokenizer every cell trains on */
} sweep;

static void cell_dir(const sweep *s, const cell *c, char *out, size_t n) {
    snprintf(out, n, "%s/%s", s->o->out, c->name);
}

static int file_in(const char *dir, const char *name) {
    char p[FL_PATH_MAX + 300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return fl_path_exists(p);
}

/* The recorded state of cell `name` in the old sweep.json ("" if none). */
static const char *old_state(const sweep *s, const char *name) {
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(s->old, "cells"), *c;
    cJSON_ArrayForEach(c, cells) {
        if (!strcmp(str_of(cJSON_GetObjectItemCaseSensitive(c, "name")), name))
            return str_of(cJSON_GetObjectItemCaseSensitive(c, "state"));
    }
    return "";
}

static void make_cells(sweep *s) {
    for (int v = 0; v < s->plan->n_variants; v++)
        for (int seed = 1; seed <= s->plan->n_seeds; seed++) {
            cell *c = &s->cells[s->n++];
            memset(c, 0, sizeof *c);
            snprintf(c->name, sizeof c->name, "%s-s%d", s->plan->v[v].name, seed);
            c->variant = v, c->seed = seed;
            char dir[FL_PATH_MAX + 160];
            cell_dir(s, c, dir, sizeof dir);
            /* what is on disk decides; "done" also needs the evaluation recorded */
            const int trained = file_in(dir, "summary.json");
            snprintf(c->state, sizeof c->state, "%s",
                     trained && !strcmp(old_state(s, c->name), "done") ? "done" : trained ? "trained" : "pending");
        }
}

/* ------------------------------------------------------------ sweep.json */

/* Config fields a cell sets itself or that do not change what is measured. */
static const char *const NOT_COMPARED[] = {"run_dir", "seed", "eval_tasks", "threads", "log_every", "notes"};

/* The base config as JSON without NOT_COMPARED. */
static cJSON *comparable_config(const fl_config *cfg) {
    char *text = fl_config_to_json(cfg);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    for (size_t i = 0; o && i < sizeof NOT_COMPARED / sizeof *NOT_COMPARED; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(o, NOT_COMPARED[i]);
    return o;
}

static const cJSON *old_variant(const sweep *s, const char *name) {
    const cJSON *plan = cJSON_GetObjectItemCaseSensitive(s->old, "plan");
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(plan, "variants")) {
        if (!strcmp(str_of(cJSON_GetObjectItemCaseSensitive(v, "name")), name)) return v;
    }
    return NULL;
}

/* The first key whose value differs between two flat JSON objects. */
static const char *first_difference(const cJSON *a, const cJSON *b) {
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_Compare(x, cJSON_GetObjectItemCaseSensitive(b, x->string), 1)) return x->string;
    }
    cJSON_ArrayForEach(x, b) {
        if (!cJSON_GetObjectItemCaseSensitive(a, x->string)) return x->string;
    }
    return NULL;
}

/* A sweep.json already in DIR must describe the same experiment for every
   cell this command shares with it. */
static fl_status check_compatible(const sweep *s, fl_error *err) {
    const cJSON *plan = cJSON_GetObjectItemCaseSensitive(s->old, "plan");
    if (!cJSON_IsObject(plan))
        return fl_fail(err, FL_EINVAL, "%s: not a sweep file (no \"plan\"); use another --out", s->path);
    cJSON *now = comparable_config(&s->o->base);
    cJSON *then = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(plan, "config"), 1);
    for (size_t i = 0; then && i < sizeof NOT_COMPARED / sizeof *NOT_COMPARED; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(then, NOT_COMPARED[i]);
    const char *key = first_difference(now, then);
    char what[600] = "";
    if (key) snprintf(what, sizeof what, "the config's %s", key);
    const char *match = str_of(cJSON_GetObjectItemCaseSensitive(plan, "match"));
    if (!what[0] && strcmp(match, fl_match_name(s->o->match)))
        snprintf(what, sizeof what, "--match (was %s, now %s)", match, fl_match_name(s->o->match));
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(plan, "tasks");
    int same_tasks = cJSON_GetArraySize(tasks) == s->o->n_tasks;
    for (int i = 0; same_tasks && i < s->o->n_tasks; i++)
        same_tasks = !strcmp(str_of(cJSON_GetArrayItem(tasks, i)), s->o->tasks[i]);
    if (!what[0] && !same_tasks) snprintf(what, sizeof what, "the evaluation tasks");
    for (int v = 0; !what[0] && v < s->plan->n_variants; v++) {
        const cJSON *ov = old_variant(s, s->plan->v[v].name);
        const char *spec = str_of(cJSON_GetObjectItemCaseSensitive(ov, "spec"));
        if (ov && strcmp(spec, s->plan->v[v].m.spec))
            snprintf(what, sizeof what, "variant %s's spec (was %s, now %s)", s->plan->v[v].name, spec,
                     s->plan->v[v].m.spec);
    }
    cJSON_Delete(now);
    cJSON_Delete(then);
    if (!what[0]) return FL_OK;
    return fl_fail(err, FL_EINVAL, "%s: this command changes %s of the sweep recorded there, so its cells would not "
                   "compare; run it with another --out (or remove that folder)", s->path, what);
}

/* The plan and every cell's state, with what the old file had beyond this
   command (other variants and seeds) kept as it was. Rank 0. */
static fl_status write_state(const sweep *s, fl_error *err) {
    if (s->world->rank != 0) return FL_OK;
    fl_sweep_cell_record rec[FL_SWEEP_MAX_VARIANTS * FL_SWEEP_MAX_SEEDS];
    for (int i = 0; i < s->n; i++)
        rec[i] = (fl_sweep_cell_record){.name = s->cells[i].name, .variant = s->plan->v[s->cells[i].variant].name,
                                        .seed = s->cells[i].seed, .state = s->cells[i].state,
                                        .error = s->cells[i].error};
    cJSON *doc = fl_json_sweep(s->o, s->plan, rec, s->n);
    if (!doc) return fl_fail(err, FL_ENOMEM, "out of memory writing %s", s->path);
    cJSON *variants = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "plan"), "variants");
    cJSON *cells = cJSON_GetObjectItemCaseSensitive(doc, "cells");
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s->old, "plan"), "variants")) {
        const char *name = str_of(cJSON_GetObjectItemCaseSensitive(x, "name"));
        int here = 0;
        for (int v = 0; v < s->plan->n_variants && !here; v++) here = !strcmp(s->plan->v[v].name, name);
        if (!here) cJSON_AddItemToArray(variants, cJSON_Duplicate(x, 1));
    }
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(s->old, "cells")) {
        const char *name = str_of(cJSON_GetObjectItemCaseSensitive(x, "name"));
        int here = 0;
        for (int i = 0; i < s->n && !here; i++) here = !strcmp(s->cells[i].name, name);
        if (!here) cJSON_AddItemToArray(cells, cJSON_Duplicate(x, 1));
    }
    fl_status st = fl_json_write_file(s->path, doc, err);
    cJSON_Delete(doc);
    return st;
}

static fl_status read_old(sweep *s, fl_error *err) {
    if (!fl_path_exists(s->path)) return FL_OK;
    char *text = NULL;
    size_t len = 0;
    fl_status st = fl_read_file(s->path, &text, &len, err);
    if (st) return st;
    s->old = cJSON_ParseWithLength(text, len);
    st = s->old ? fl_json_strict(text, len, s->path, 0, 0, err) : FL_OK;
    free(text);
    if (!s->old) return fl_fail(err, FL_EINVAL, "%s: not valid JSON; use another --out", s->path);
    return st ? st : check_compatible(s, err);
}

/* ------------------------------------------------------------ the data */

static int has_data(const char *dir) {
    return file_in(dir, "tokenizer.json") && file_in(dir, "train.bin") && file_in(dir, "val.bin");
}

/* Every cell trains on the same tokens: the base config's --data-dir, or
   DIR/data prepared once (corpus or built-in grammar, tokenizer) from the
   base config, built under a temporary name and renamed when complete.
   Rank 0 prepares; the caller agrees. */
static fl_status prepare_data(sweep *s, fl_error *err) {
    const fl_config *base = &s->o->base;
    if (base->data_dir[0]) {
        snprintf(s->data, sizeof s->data, "%s", base->data_dir);
        return FL_OK;
    }
    if (snprintf(s->data, sizeof s->data, "%s/data", s->o->out) >= (int)sizeof s->data)
        return fl_fail(err, FL_EINVAL, "--out %s: path too long", s->o->out);
    if (s->world->rank != 0 || has_data(s->data)) return FL_OK;
    char tmp[FL_PATH_MAX + 16], tok[FL_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.partial", s->data);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", tmp);
    fl_tokenizer *t = NULL;
    fl_status st = fl_remove_tree(tmp) || fl_remove_tree(s->data) ? fl_fail(err, FL_EIO, "cannot clear %s", tmp) : FL_OK;
    if (!st) st = fl_mkdirs(tmp, err);
    if (!st) st = fl_train_prepare_data(base, tok, tmp, &t, err);
    fl_tokenizer_free(t);
    if (!st && rename(tmp, s->data) != 0) st = fl_fail(err, FL_EIO, "cannot rename %s into place", tmp);
    if (st) fl_remove_tree(tmp);
    return st;
}

/* ------------------------------------------------------------ one cell */

static void set_state(cell *c, const char *state, const fl_error *err) {
    snprintf(c->state, sizeof c->state, "%s", state);
    snprintf(c->error, sizeof c->error, "%s", err ? err->msg : "");
}

static fl_status train_cell(sweep *s, const cell *c, int *resumed, fl_error *err) {
    const fl_sweep_variant *v = &s->plan->v[c->variant];
    fl_config cfg = s->o->base;
    snprintf(cfg.ffn, sizeof cfg.ffn, "%s", v->m.spec);
    cfg.seed = (uint64_t)c->seed;
    cfg.eval_tasks[0] = 0; /* the sweep evaluates each cell itself */
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", s->data);
    if (strcmp(s->data, s->o->base.data_dir)) cfg.tokenizer[0] = 0; /* the sweep's data/ holds the tokenizer */
    char dir[FL_PATH_MAX + 160];
    cell_dir(s, c, dir, sizeof dir);
    if (snprintf(cfg.run_dir, sizeof cfg.run_dir, "%s", dir) >= (int)sizeof cfg.run_dir)
        return fl_fail(err, FL_EINVAL, "%s: path too long", dir);
    char ck[FL_PATH_MAX + 200];
    snprintf(ck, sizeof ck, "%s/checkpoint/model.safetensors", dir);
    *resumed = fl_path_exists(ck);
    fl_train_opts opts = {.resume = *resumed, .force = !*resumed, .progress = s->o->progress};
    fl_train_result res;
    return fl_train_run(&cfg, &opts, &res, err);
}

/* Batch-1 greedy decoding with the KV cache, as summary.json's "decode". */
#define DECODE_PROMPT 16
#define DECODE_TOKENS 256

static fl_status measure_decode(const char *dir, const char *device, fl_error *err) {
    fl_loaded_run run;
    fl_status st = fl_run_load(dir, device, &run, err);
    if (st) return st;
    const int ctx = fl_model_cfg(run.model)->context;
    const int prompt = ctx > 2 * DECODE_PROMPT ? DECODE_PROMPT : 1;
    const int n_new = ctx - prompt < DECODE_TOKENS ? ctx - prompt : DECODE_TOKENS;
    double tok_s = 0;
    st = fl_decode_rate(run.model, 1, prompt, n_new, 1, &tok_s, err);
    fl_run_unload(&run);
    char path[FL_PATH_MAX + 200], *text = NULL;
    snprintf(path, sizeof path, "%s/summary.json", dir);
    size_t len = 0;
    if (!st) st = fl_read_file(path, &text, &len, err);
    cJSON *doc = text ? cJSON_ParseWithLength(text, len) : NULL;
    if (!st && !doc) st = fl_fail(err, FL_EINVAL, "%s: not valid JSON", path);
    if (!st) st = fl_json_strict(text, len, path, 0, 0, err);
    free(text);
    if (!st) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "decode");
        cJSON_AddItemToObject(doc, "decode", fl_json_decode_figure(1, prompt, n_new, tok_s));
        st = fl_json_write_file(path, doc, err);
    }
    cJSON_Delete(doc);
    return st;
}

/* The tasks, then a decoder's decoding speed (an encoder generates
   nothing); rank 0 while the others wait. */
static fl_status eval_cell(sweep *s, const cell *c, fl_error *err) {
    fl_status st = FL_OK;
    if (s->world->rank == 0) {
        char dir[FL_PATH_MAX + 160];
        cell_dir(s, c, dir, sizeof dir);
        fl_eval_opts eo = {.table = stdout};
        if (s->o->n_tasks) st = fl_eval_run_dir(dir, s->o->base.device, s->o->tasks, s->o->n_tasks, &eo, err);
        if (!st && fl_config_arch(&s->o->base) == FL_ARCH_GPT) st = measure_decode(dir, s->o->base.device, err);
    }
    return fl_comm_agree(s->world, st, err);
}

/* Trains (or resumes) and evaluates one cell; its state says how it went. */
static fl_status run_cell(sweep *s, cell *c, int index, fl_sweep_result *r, fl_error *err) {
    const fl_sweep_variant *v = &s->plan->v[c->variant];
    if (!strcmp(c->state, "done")) {
        fl_log_info("sweep: cell %d/%d %s: done already", index + 1, s->n, c->name);
        r->skipped++;
        return FL_OK;
    }
    fl_status st = FL_OK;
    if (strcmp(c->state, "trained")) {
        int resumed = 0;
        fl_log_info("sweep: cell %d/%d %s (%s, seed %d): training", index + 1, s->n, c->name, v->m.spec, c->seed);
        st = train_cell(s, c, &resumed, err);
        if (st == FL_EINTR) {
            set_state(c, "interrupted", err);
            return st;
        }
        if (st) {
            set_state(c, "failed", err);
            return st;
        }
        r->trained++, r->resumed += resumed;
        set_state(c, "trained", NULL);
        if ((st = write_state(s, err))) return st;
    }
    fl_log_info("sweep: cell %d/%d %s: evaluating", index + 1, s->n, c->name);
    if ((st = eval_cell(s, c, err))) {
        set_state(c, "failed", err);
        return st;
    }
    r->evaluated++;
    set_state(c, "done", NULL);
    return FL_OK;
}

fl_status fl_sweep_run(const fl_sweep_opts *o, const fl_sweep_plan *plan, fl_sweep_result *r, fl_error *err) {
    memset(r, 0, sizeof *r);
    sweep *s = calloc(1, sizeof *s);
    if (!s) return fl_fail(err, FL_ENOMEM, "out of memory");
    s->o = o, s->plan = plan;
    fl_status st = fl_comm_world(&s->world, err);
    if (!st && snprintf(s->path, sizeof s->path, "%s/sweep.json", o->out) >= (int)sizeof s->path)
        st = fl_fail(err, FL_EINVAL, "--out %s: path too long", o->out);
    if (!st) st = read_old(s, err);
    if (!st) make_cells(s); /* every rank reads the same files before rank 0 writes */
    if ((st = fl_comm_agree(s->world, st, err))) goto done;
    if (s->world->rank == 0 && !(st = fl_mkdirs(o->out, err))) st = write_state(s, err);
    if (!st) st = prepare_data(s, err);
    if ((st = fl_comm_agree(s->world, st, err))) goto done;
    r->cells = s->n;
    char failed[FL_ERRMSG_LEN] = "";
    for (int i = 0; i < s->n && !st; i++) {
        fl_error cerr = {0};
        fl_status cst = run_cell(s, &s->cells[i], i, r, &cerr);
        if (cst == FL_EINTR) {
            r->interrupted = 1;
            *err = cerr;
            st = cst;
        } else if (cst) {
            r->failed++;
            fl_log_warn("sweep: cell %s failed: %s", s->cells[i].name, cerr.msg);
            size_t used = strlen(failed);
            snprintf(failed + used, sizeof failed - used, "%s%s", used ? ", " : "", s->cells[i].name);
        }
        fl_status wst = write_state(s, err);
        if (!st && wst) st = wst;
    }
    if (!st && r->failed)
        st = fl_fail(err, FL_EINVAL, "sweep: %d cell%s failed (%s); their errors are in %s; run the command again to "
                     "retry them", r->failed, r->failed > 1 ? "s" : "", failed, s->path);
done:
    cJSON_Delete(s->old);
    free(s);
    return st;
}
