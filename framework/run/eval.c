/*
 * run/eval.c — the evaluation runner (see eval.h).
 *
 * Two phases. Prepare: for every spec, load task_<name>.so through the
 * plugin loader (which checks the task ABI), join comma-separated list
 * values, parse the options against the descriptor (the same parser and
 * messages as FFN options) and create the task. Run: each task in order with
 * the services table of one fl_task_host, timing it; its metrics land in one
 * list tagged with the task's name and spec. Then eval.json and the table.
 *
 * A run's eval/ folder (the tasks' work folder) is left only when a task
 * wrote a file there, and an evaluation that fails before any task finished
 * leaves the run folder as it found it (eval/ and what this command put in
 * it removed; eval.json is written only for finished tasks).
 */
#include "eval.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "loader.h"
#include "options.h"
#include "run_load.h"

#define MAX_TASKS 64
#define TABLE_MAX_ITEMS 16   /* breakdowns with more items stay in eval.json only */

typedef struct prepared {
    fl_plugin plugin;
    const fl_task_plugin *desc;
    fl_option_set opts;
    char *joined;              /* the option text after joining lists */
    void *task;
    char name[128];
    const char *spec;
} prepared;

/* ------------------------------------------------------------ specs */

static const fl_option *find_opt(const fl_option *opts, int n, const char *key, size_t len) {
    for (int i = 0; i < n; i++)
        if (opts[i].name && strlen(opts[i].name) == len && !strncmp(opts[i].name, key, len)) return &opts[i];
    return NULL;
}

static const char *skip_blank(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    return p;
}

fl_status fl_eval_join_lists(const fl_option *opts, int n_opts, const char *text, char **out, fl_error *err) {
    size_t len = text ? strlen(text) : 0;
    char *buf = malloc(len + 1);
    if (!buf) return fl_fail(err, FL_ENOMEM, "out of memory parsing a task spec");
    size_t k = 0;
    int in_string = 0; /* the previous item was key=value of a STRING option */
    for (const char *p = text; p && *p;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *b = skip_blank(p, e), *eq = memchr(p, '=', (size_t)(e - p));
        if (b == e) { /* blank item: the parser skips it */
        } else if (!eq && in_string) {
            buf[k++] = '|';
            memcpy(buf + k, b, (size_t)(e - b));
            k += (size_t)(e - b);
        } else {
            if (k) buf[k++] = ',';
            memcpy(buf + k, p, (size_t)(e - p));
            k += (size_t)(e - p);
            const char *key = b, *ke = eq ? eq : e;
            while (ke > key && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
            const fl_option *o = eq ? find_opt(opts, n_opts, key, (size_t)(ke - key)) : NULL;
            in_string = o && o->type == FL_OPT_STRING;
        }
        p = comma ? comma + 1 : e;
    }
    buf[k] = 0;
    *out = buf;
    return FL_OK;
}

/* Loads the plugin of spec and parses its options (everything but create);
   flag names the option in messages ("--task"). */
static fl_status parse_spec(prepared *p, const char *spec, const char *flag, fl_error *err) {
    const char *opt_text = NULL;
    p->spec = spec;
    fl_status st = fl_spec_split(spec, p->name, sizeof p->name, &opt_text, err);
    if (!st) st = fl_plugin_load(p->name, FL_PLUGIN_TASK, &p->plugin, err);
    if (st) return st;
    p->desc = (const fl_task_plugin *)p->plugin.header;
    const fl_plugin_header *h = p->plugin.header;
    char where[192];
    snprintf(where, sizeof where, "%s %s", flag, h->name);
    if ((st = fl_eval_join_lists(h->options, h->n_options, opt_text, &p->joined, err))) return st;
    return fl_options_parse(h->options, h->n_options, p->joined, where, &p->opts, err);
}

static fl_status prepare_one(prepared *p, const char *spec, const fl_task_services *svc, fl_error *err) {
    fl_status st = parse_spec(p, spec, "--task", err);
    if (st) return st;
    char where[192];
    snprintf(where, sizeof where, "--task %s", p->plugin.header->name);
    fl_task_config tc = {.values = p->opts.values, .spec = spec};
    st = p->desc->create(svc, &tc, &p->task, err);
    if (st) fl_error_prefix(err, "%s", where);
    return st;
}

static void release(prepared *p) {
    if (p->task && p->desc) p->desc->destroy(p->task);
    fl_options_free(&p->opts);
    free(p->joined);
    if (p->plugin.handle) fl_plugin_unload(&p->plugin);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------ table */

static void print_row(FILE *f, const fl_metric_rec *r) {
    char metric[256];
    if (r->group) snprintf(metric, sizeof metric, "  %s [%s=%s]", r->name, r->group, r->item ? r->item : "");
    else snprintf(metric, sizeof metric, "%s", r->name);
    fprintf(f, "%-8s %-10s %-44s %12.4f %9lld  %s\n", r->task ? r->task : "-", r->subtask ? r->subtask : "-",
            metric, r->value, (long long)r->n, r->split ? r->split : "");
}

static size_t group_size(const fl_metric_list *ms, const fl_metric_rec *r) {
    size_t n = 0;
    for (size_t i = 0; i < ms->n; i++) {
        const fl_metric_rec *q = &ms->items[i];
        n += q->group && !strcmp(q->group, r->group) && !strcmp(q->spec, r->spec) && !strcmp(q->name, r->name);
    }
    return n;
}

/* Headline metrics, and breakdowns small enough to read. */
static void print_table(FILE *f, const fl_metric_list *ms, size_t first) {
    if (!f || first >= ms->n) return;
    fprintf(f, "%-8s %-10s %-44s %12s %9s  %s\n", "task", "subtask", "metric", "value", "n", "split");
    for (size_t i = first; i < ms->n; i++) {
        const fl_metric_rec *r = &ms->items[i];
        /* a spec with options gets a line of its own: two runs of one task stay apart */
        if ((i == first || strcmp(ms->items[i - 1].spec, r->spec)) && strchr(r->spec, ':'))
            fprintf(f, "# %s\n", r->spec);
        if (!r->group || group_size(ms, r) <= TABLE_MAX_ITEMS) print_row(f, r);
    }
    fflush(f);
}

/* ------------------------------------------------------------ running */

static fl_status run_all(prepared *ps, int n, fl_task_host *th, double *times, int *done, fl_error *err) {
    for (int i = 0; i < n; i++) {
        fl_task_host_set_task(th, ps[i].plugin.header->name, ps[i].spec);
        fl_log_info("task %s: running (%s)", ps[i].plugin.header->name, ps[i].spec);
        double t0 = fl_now_s();
        fl_status st = ps[i].desc->run(ps[i].task, &th->svc, err);
        times[i] = fl_now_s() - t0;
        if (st) {
            fl_error_prefix(err, "task %s", ps[i].plugin.header->name);
            return st;
        }
        fl_log_info("task %s: done in %.1f s", ps[i].plugin.header->name, times[i]);
        *done = i + 1;
    }
    return FL_OK;
}

static fl_status val_shard_of(const fl_eval_target *t, char *out, size_t n, fl_error *err) {
    out[0] = 0;
    char dir[FL_PATH_MAX + 16];
    if (t->cfg && t->cfg->data_dir[0]) snprintf(dir, sizeof dir, "%s", t->cfg->data_dir);
    else if (t->run_dir) snprintf(dir, sizeof dir, "%s/data", t->run_dir);
    else return FL_OK;
    fl_status st = fl_path_join(out, n, dir, "val.bin", err);
    if (!st && !fl_path_exists(out)) out[0] = 0;
    return st;
}

static fl_status output_path(const fl_eval_target *t, const fl_eval_opts *o, char *out, size_t n, fl_error *err) {
    out[0] = 0;
    if (o && o->out_json) {
        snprintf(out, n, "%s", o->out_json);
        return FL_OK;
    }
    return t->run_dir ? fl_path_join(out, n, t->run_dir, "eval.json", err) : FL_OK;
}

/* The tasks' work folder as it was before the command: whether it existed,
   and the names in it then (NUL-separated). */
typedef struct work_before {
    int existed;
    char *names;
    size_t len;
} work_before;

static void work_snapshot(const char *work, work_before *w) {
    memset(w, 0, sizeof *w);
    DIR *d = opendir(work);
    w->existed = d != NULL || fl_path_exists(work);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        size_t k = strlen(e->d_name) + 1;
        char *grown = realloc(w->names, w->len + k);
        if (!grown) break;
        memcpy(grown + w->len, e->d_name, k);
        w->names = grown, w->len += k;
    }
    closedir(d);
}

static int work_had(const work_before *w, const char *name) {
    for (size_t at = 0; at < w->len; at += strlen(w->names + at) + 1)
        if (!strcmp(w->names + at, name)) return 1;
    return 0;
}

/* After the tasks: a failure before any task finished takes back what this
   command added; a folder this command made is removed when it is empty. */
static void work_tidy(const char *work, work_before *w, int failed_before_results) {
    if (failed_before_results) {
        if (!w->existed) {
            fl_remove_tree(work);
        } else {
            DIR *d = opendir(work);
            for (struct dirent *e; d && (e = readdir(d));) {
                char path[FL_PATH_MAX + 300];
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !work_had(w, e->d_name) &&
                    snprintf(path, sizeof path, "%s/%s", work, e->d_name) < (int)sizeof path)
                    fl_remove_tree(path);
            }
            if (d) closedir(d);
        }
    } else if (!w->existed && fl_dir_is_empty(work)) {
        rmdir(work);
    }
    free(w->names);
}

fl_status fl_eval_run(const fl_eval_target *t, const char *const *specs, int n, const fl_eval_opts *o,
                      fl_metric_list *out, fl_error *err) {
    if (n < 1) return fl_fail(err, FL_EINVAL, "no task given (e.g. --task blimp)");
    if (n > MAX_TASKS) return fl_fail(err, FL_EINVAL, "%d tasks given; at most %d at once", n, MAX_TASKS);
    if (!t->run_dir && !t->work_dir) return fl_fail(err, FL_EINVAL, "evaluation needs a run folder or a work folder");
    char work[FL_PATH_MAX + 16], val[FL_PATH_MAX + 32], json[FL_PATH_MAX + 32];
    fl_status st = FL_OK;
    if (t->work_dir) snprintf(work, sizeof work, "%s", t->work_dir);
    else st = fl_path_join(work, sizeof work, t->run_dir, "eval", err);
    if (!st) st = val_shard_of(t, val, sizeof val, err);
    if (!st) st = output_path(t, o, json, sizeof json, err);
    if (!st && json[0]) st = fl_check_file_writable(json, err); /* before the tasks, not after them */
    if (st) return st;
    fl_metric_list local = {0}, *ms = out ? out : &local;
    size_t first = ms->n;
    fl_task_host th;
    prepared ps[MAX_TASKS];
    memset(ps, 0, sizeof ps);
    double times[MAX_TASKS] = {0};
    const char *names[MAX_TASKS] = {0};
    int done = 0;
    work_before before;
    work_snapshot(work, &before); /* a caller's own work folder is left to it */
    st = fl_task_host_init(&th, t->model, t->tok, t->run_dir, work, val, ms, err);
    for (int i = 0; i < n && !st; i++) {
        st = prepare_one(&ps[i], specs[i], &th.svc, err);
        names[i] = ps[i].plugin.header ? ps[i].plugin.header->name : NULL;
    }
    if (!st) st = run_all(ps, n, &th, times, &done, err);
    if (done > 0 && json[0]) {
        fl_error werr = {0};
        fl_status wst = fl_eval_write_json(json, t, ms, times, names, specs, done, &werr);
        if (wst && !st) st = wst, *err = werr;
    }
    if (!st || done > 0) print_table(o ? o->table : NULL, ms, first);
    if (!st && json[0] && o && o->table) fprintf(o->table, "results: %s\n", json);
    for (int i = 0; i < n; i++) release(&ps[i]);
    if (!t->work_dir) work_tidy(work, &before, st && done == 0);
    else free(before.names);
    if (!out) fl_metric_list_free(&local);
    return st;
}

fl_status fl_eval_run_dir(const char *dir, const char *device, const char *const *specs, int n,
                          const fl_eval_opts *o, fl_error *err) {
    fl_loaded_run r;
    fl_status st = fl_run_load(dir, device, &r, err);
    if (st) return st;
    fl_eval_target t = {.model = r.model, .tok = r.tok, .cfg = &r.cfg, .run_dir = dir, .step = r.step};
    st = fl_eval_run(&t, specs, n, o, NULL, err);
    fl_run_unload(&r);
    return st;
}

/* cfg->eval_tasks split at ';' into specs (pointing into *copy, freed by the caller). */
static int split_tasks(const fl_config *cfg, char **copy, const char **specs, fl_error *err) {
    *copy = strdup(cfg->eval_tasks);
    if (!*copy) {
        fl_fail(err, FL_ENOMEM, "out of memory");
        return -1;
    }
    int n = 0;
    for (char *save = NULL, *s = strtok_r(*copy, ";", &save); s && n < MAX_TASKS; s = strtok_r(NULL, ";", &save)) {
        while (*s == ' ') s++;
        if (*s) specs[n++] = s;
    }
    return n;
}

fl_status fl_eval_check_config(const fl_config *cfg, fl_error *err) {
    char *copy = NULL;
    const char *specs[MAX_TASKS];
    int n = cfg->eval_tasks[0] ? split_tasks(cfg, &copy, specs, err) : 0;
    fl_status st = n < 0 ? err->code : FL_OK;
    for (int i = 0; i < n && !st; i++) {
        prepared p = {0};
        st = parse_spec(&p, specs[i], "--eval-task", err);
        release(&p);
    }
    free(copy);
    return st;
}

fl_status fl_eval_after_training(fl_model *m, const fl_tokenizer *tok, const fl_config *cfg, int64_t step,
                                 fl_error *err) {
    if (!cfg->eval_tasks[0]) return FL_OK;
    const fl_comm *comm = fl_model_host(m)->comm;
    if (comm && comm->size > 1) {
        /* each rank holds a part of the model: evaluate the checkpoint in one process instead */
        if (comm->rank == 0)
            fl_log_warn("--eval-task skipped in a %d-process run; run `ffnlab eval --run %s` on the checkpoint",
                        comm->size, cfg->run_dir);
        return FL_OK;
    }
    char *copy = NULL;
    const char *specs[MAX_TASKS];
    int n = split_tasks(cfg, &copy, specs, err);
    if (n < 0) return err->code;
    fl_eval_target t = {.model = m, .tok = tok, .cfg = cfg, .run_dir = cfg->run_dir, .step = step};
    fl_eval_opts o = {.table = stdout};
    fl_status st = n ? fl_eval_run(&t, specs, n, &o, NULL, err) : FL_OK;
    free(copy);
    return st;
}
