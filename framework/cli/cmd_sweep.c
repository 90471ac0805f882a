/*
 * cli/cmd_sweep.c — `ffnlab sweep`: flags in, run/sweep.c's plan and cells
 * out.
 *
 *   ffnlab sweep --config tiny --variants dense,moe,cnt,pkm --match params \
 *                --seeds 3 --tasks blimp,lm --out DIR [--plan] [--FIELD VALUE ...]
 *
 * Every config field is a flag as for `ffnlab train` (--steps, --corpus,
 * --data-dir, ...) and applies to every cell.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "job.h"
#include "sweep.h"
#include "train.h" /* fl_train_interrupt_status */

static void help(void) {
    printf("usage: ffnlab sweep [--config NAME|FILE] --variants SPEC,... [--variant SPEC ...] [--match params|flops|none]\n"
           "                    [--seeds N] [--tasks TASK,...] [--task SPEC ...] [--out DIR] [--plan] [--no-progress]\n"
           "                    [--FIELD VALUE ...]\n\n"
           "Trains every variant x seed into DIR/<variant>-s<seed>/ (ordinary run folders), evaluates each with the\n"
           "tasks, and records the plan and each cell's state in DIR/sweep.json. Run the same command again to skip\n"
           "finished cells, resume an interrupted one from its checkpoint and retry failed ones.\n\n"
           "  --config NAME|FILE  base config (tiny, small, base, seed, seed-encoder: configs/NAME.json); its ffn is the reference\n"
           "  --variants LIST     FFN specs, comma-separated: dense,moe,cnt:blocks=32,pkm:knn=28 (an item key=value\n"
           "                      continues the spec before it: moe:top_k=2,experts=4 is one variant)\n"
           "  --variant SPEC      one more variant (repeatable)\n"
           "  --match MODE        params (default): each variant's FFN parameters equal the reference's within 1%%;\n"
           "                      flops: its active FLOPs per token at inference within 2%%; none: specs as given.\n"
           "                      An option the spec fixes is kept; the plugin's first free size option is set.\n"
           "  --seeds N           seeds 1..N per variant (default 1)\n"
           "  --tasks LIST        evaluation tasks, comma-separated (blimp,lm); a spec with options: --task SPEC\n"
           "  --task SPEC         one more task (repeatable), e.g. blimp:data=DIR,supplement=DIR\n"
           "  --out DIR           the sweep folder (default runs/sweep)\n"
           "  --plan              print the matched variants and their sizes, then stop\n"
           "  --FIELD VALUE       any config field, as for ffnlab train (--steps 2000, --corpus FILE, --data-dir DIR)\n");
}

/* "a,b:k=1,j=2,c" → specs a | b:k=1,j=2 | c (an item with '=' but no ':'
   continues the previous spec's options). Specs point into *copy. */
static int split_specs(const char *flag, const char *list, const char **specs, int *n, int max, char **copy) {
    if (!(*copy = strdup(list))) return fl_cli_usage("sweep", "out of memory");
    char *start = NULL;
    for (char *p = *copy, *next; p; p = next) {
        next = strchr(p, ',');
        if (next) *next++ = 0;
        int continues = strchr(p, '=') && !strchr(p, ':');
        if (continues && start) {
            p[-1] = ','; /* put the comma back: this item is the previous spec's option */
            continue;
        }
        if (!*p) return fl_cli_usage("sweep", "%s: empty item in '%s'", flag, list);
        if (*n == max) return fl_cli_usage("sweep", "%s: at most %d", flag, max);
        specs[(*n)++] = start = p;
    }
    return 0;
}

typedef struct sweep_args {
    fl_sweep_opts o;
    int plan_only;
    char *copies[64];
    int n_copies;
} sweep_args;

static int parse(int argc, char **argv, sweep_args *a, fl_error *err) {
    fl_sweep_opts *o = &a->o;
    const char *config = NULL;
    for (int i = 1; i < argc; i++) /* the base config first: flags apply over it */
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9)) config = argv[i] + 9;
    fl_config_defaults(&o->base);
    if (config && fl_cli_load_config(config, &o->base, err)) return fl_cli_report(err);
    for (int i = 1; i < argc; i++) {
        char name[128];
        const char *val;
        if (!fl_cli_flag_name(argv[i], name, sizeof name, &val)) return fl_cli_usage("sweep", "unexpected argument '%s'", argv[i]);
        if (!strcmp(name, "help")) return help(), -1;
        if (!strcmp(name, "plan")) { a->plan_only = 1; continue; }
        if (!strcmp(name, "progress")) { o->progress = 1; continue; }
        if (!strcmp(name, "no_progress")) { o->progress = 0; continue; }
        if (!val && i + 1 >= argc) return fl_cli_usage("sweep", "%s needs a value", argv[i]);
        const char *v = val ? val : argv[++i];
        int rc = 0;
        const int list = !strcmp(name, "variants") || !strcmp(name, "variant") || !strcmp(name, "tasks");
        if (!strcmp(name, "config")) continue;
        if (list && a->n_copies == 64) return fl_cli_usage("sweep", "too many --variants/--tasks options");
        if (!strcmp(name, "tasks") && strchr(v, ':'))
            return fl_cli_usage("sweep", "--tasks takes plain task names (blimp,lm); give a task with options as --task %s", v);
        if (!strcmp(name, "variants") || !strcmp(name, "variant"))
            rc = split_specs("--variants", v, o->variants, &o->n_variants, FL_SWEEP_MAX_VARIANTS, &a->copies[a->n_copies++]);
        else if (!strcmp(name, "tasks"))
            rc = split_specs("--tasks", v, o->tasks, &o->n_tasks, FL_SWEEP_MAX_TASKS, &a->copies[a->n_copies++]);
        else if (!strcmp(name, "task")) {
            if (o->n_tasks == FL_SWEEP_MAX_TASKS) return fl_cli_usage("sweep", "at most %d tasks", FL_SWEEP_MAX_TASKS);
            o->tasks[o->n_tasks++] = v;
        } else if (!strcmp(name, "match")) {
            if (fl_match_parse(v, &o->match, err)) return fl_cli_usage("sweep", "%s", err->msg);
        } else if (!strcmp(name, "seeds")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > FL_SWEEP_MAX_SEEDS) return fl_cli_usage("sweep", "--seeds: '%s' is not in [1, %d]", v, FL_SWEEP_MAX_SEEDS);
            o->n_seeds = (int)n;
        } else if (!strcmp(name, "out")) {
            o->out = v;
        } else if (fl_config_set(&o->base, name, v, err)) {
            return fl_cli_report(err);
        }
        if (rc) return rc;
    }
    return 0;
}

static void print_plan(const fl_sweep_opts *o, const fl_sweep_plan *p) {
    printf("sweep: %d variant%s x %d seed%s = %d cells into %s; match %s against %s (d_model %d, %d layers)\n",
           p->n_variants, p->n_variants > 1 ? "s" : "", p->n_seeds, p->n_seeds > 1 ? "s" : "", p->n_variants * p->n_seeds,
           o->out, fl_match_name(o->match), o->base.ffn, o->base.d_model, o->base.n_layers);
    const int flops = o->match == FL_MATCH_FLOPS;
    int wn = 7, ws = 4;
    for (int i = 0; i < p->n_variants; i++) {
        if ((int)strlen(p->v[i].name) > wn) wn = (int)strlen(p->v[i].name);
        if ((int)strlen(p->v[i].m.spec) > ws) ws = (int)strlen(p->v[i].m.spec);
    }
    printf("  %-*s  %-*s %11s %11s %9s %12s %12s %12s\n", wn, "variant", ws, "spec", "FFN params", "FFN FLOPs",
           flops ? "FLOPs vs" : "params vs", "total params", "active/token", "FLOPs/token");
    for (int i = 0; i < p->n_variants; i++) {
        const fl_sweep_variant *v = &p->v[i];
        const double got = flops ? v->m.size.flops_per_token : v->m.size.params;
        const double ref = flops ? v->m.reference.flops_per_token : v->m.reference.params;
        printf("  %-*s  %-*s %10.3fM %10.3fM %+8.2f%% %11.3fM %11.3fM %11.3fM\n", wn, v->name, ws, v->m.spec,
               v->m.size.params / 1e6, v->m.size.flops_per_token / 1e6, 100.0 * (got - ref) / ref,
               v->total_params / 1e6, v->active_params / 1e6, v->flops_per_token / 1e6);
    }
    printf("  (FFN figures are one layer's; FLOPs per token at inference; reference %s: %.3fM parameters, %.3fM FLOPs)\n",
           o->base.ffn, p->n_variants ? p->v[0].m.reference.params / 1e6 : 0, p->n_variants ? p->v[0].m.reference.flops_per_token / 1e6 : 0);
}

int fl_cmd_sweep(int argc, char **argv) {
    sweep_args a = {.o = {.out = "runs/sweep", .match = FL_MATCH_PARAMS, .n_seeds = 1, .progress = -1}};
    fl_error err = {0};
    int rc = parse(argc, argv, &a, &err);
    if (!rc && (rc = fl_job_request_precision(a.o.base.precision, &err) ? fl_cli_report(&err) : 0) == 0) {
        fl_sweep_plan *plan = malloc(sizeof *plan);
        fl_sweep_result r;
        if (!plan) rc = fl_cli_report(&(fl_error){FL_ENOMEM, "out of memory"});
        else if (fl_sweep_plan_make(&a.o, plan, &err)) rc = fl_job_should_report(&err, 1) ? fl_cli_report(&err) : 1;
        else {
            if (fl_job_rank() == 0) print_plan(&a.o, plan);
            if (!a.plan_only && fl_sweep_run(&a.o, plan, &r, &err)) {
                rc = err.code == FL_EINTR ? fl_train_interrupt_status() : 1;
                if (fl_job_should_report(&err, rc)) fl_cli_report(&err);
            } else if (!a.plan_only && fl_job_rank() == 0) {
                printf("sweep: %d cells: %d done before, %d trained (%d resumed), %d evaluated; %s/sweep.json\n", r.cells,
                       r.skipped, r.trained, r.resumed, r.evaluated, a.o.out);
            }
        }
        free(plan);
    }
    for (int i = 0; i < a.n_copies; i++) free(a.copies[i]);
    return rc < 0 ? 0 : rc;
}
