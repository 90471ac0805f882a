/*
 * tasks/blimp/blimp.c — the BLiMP task plugin: zero-shot minimal pairs.
 *
 * A pair is correct when the good sentence gets a higher total
 * log-probability than the bad one (each with <|endoftext|> in front), as in
 * Warstadt et al. (2020); for an encoder (arch bert), a higher
 * pseudo-log-likelihood (blimp_pll.c). Reported:
 *   accuracy_paradigm_mean    mean over paradigms of their accuracy (BLiMP's overall number)
 *   accuracy_phenomenon_mean  mean over the 12 BabyLM 2023 phenomena (BabyLM 2023's number)
 *   accuracy_pairs            all pairs pooled
 *   accuracy per paradigm, per phenomenon, per field (breakdowns)
 *   with supplement=DIR: accuracy per supplement task and their mean (subtask "supplement")
 *   pairs, skipped_lines, empty_files, truncated_pairs (counts)
 * With no data option it scores the built-in grammar's minimal pairs, which
 * the host generates (nothing to download).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blimp.h"
#include "ffnlab/task.h"

enum { OPT_DATA, OPT_SUPPLEMENT, OPT_PARADIGMS, OPT_BATCH, OPT_ON_ERROR, OPT_SCORES, N_OPTIONS };

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_DATA] = {"data", FL_OPT_STRING, "", 0, -1, NULL,
                  "folder (or file) of BLiMP JSON Lines: the release, BabyLM-filtered, or BabyLM 2023 "
                  "per-phenomenon files; empty: the built-in grammar's minimal pairs"},
    [OPT_SUPPLEMENT] = {"supplement", FL_OPT_STRING, "", 0, -1, NULL,
                        "folder of BabyLM supplement tasks (hypernym, qa_congruence_*, ...), reported apart"},
    [OPT_PARADIGMS] = {"paradigms", FL_OPT_STRING, "", 0, -1, NULL,
                       "only these paradigms (UIDs) or files, comma-separated; empty: all"},
    [OPT_BATCH] = {"batch_size", FL_OPT_INT, "0", 0, 65536, NULL,
                   "sentences per forward pass; 0: as many as fit in about 8192 tokens"},
    [OPT_ON_ERROR] = {"on_error", FL_OPT_ENUM, "stop", 0, -1, "stop|skip",
                      "a malformed line stops the task (naming file and line), or is skipped and counted"},
    [OPT_SCORES] = {"scores", FL_OPT_STRING, "", 0, -1, NULL,
                    "file to write every pair's log-probabilities to (TSV: paradigm, index in it, good, bad, "
                    "correct), e.g. to compare two precisions pair by pair; empty: none"},
};

typedef struct task {
    char *data, *supplement, *scores;
    tu_list only;
    int32_t batch;
    int skip;
} task;

static fl_status create(const fl_task_services *svc, const fl_task_config *cfg, void **out, fl_error *err) {
    (void)svc;
    task *t = calloc(1, sizeof *t);
    if (!t) return tu_fail(err, FL_ENOMEM, "out of memory");
    t->data = strdup(cfg->values[OPT_DATA].s ? cfg->values[OPT_DATA].s : "");
    t->supplement = strdup(cfg->values[OPT_SUPPLEMENT].s ? cfg->values[OPT_SUPPLEMENT].s : "");
    t->scores = strdup(cfg->values[OPT_SCORES].s ? cfg->values[OPT_SCORES].s : "");
    t->batch = (int32_t)cfg->values[OPT_BATCH].i;
    t->skip = cfg->values[OPT_ON_ERROR].i == 1;
    fl_status st = !t->data || !t->supplement || !t->scores ? tu_fail(err, FL_ENOMEM, "out of memory")
                                              : tu_list_split(cfg->values[OPT_PARADIGMS].s, &t->only, err);
    if (st) {
        free(t->data), free(t->supplement), free(t->scores), free(t);
        return st;
    }
    *out = t;
    return FL_OK;
}

static void destroy(void *p) {
    task *t = p;
    free(t->data), free(t->supplement), free(t->scores);
    tu_list_free(&t->only);
    free(t);
}

/* ------------------------------------------------------------ reading */

static fl_status check_filter(const task *t, const blimp_set *s, const char *data, fl_error *err) {
    for (int i = 0; i < t->only.n; i++)
        if (tu_strtab_find(&s->paradigms, t->only.items[i]) < 0 && tu_strtab_find(&s->phenomena, t->only.items[i]) < 0)
            return tu_fail(err, FL_EINVAL, "blimp: paradigm '%s' is not in %s", t->only.items[i], data);
    return FL_OK;
}

static fl_status read_all(const fl_task_services *svc, const task *t, blimp_set *s, fl_error *err) {
    char builtin[4096];
    const char *data = t->data;
    fl_status st = FL_OK;
    if (!data[0]) {
        if ((st = svc->builtin_data(svc, "blimp", builtin, sizeof builtin, err))) return st;
        svc->host->log(svc->host, FL_LOG_INFO, "blimp: no data= given; scoring the built-in minimal pairs in %s", builtin);
        data = builtin;
    }
    st = blimp_read_path(s, data, 0, t->skip, t->only.n ? &t->only : NULL, err);
    if (!st) st = check_filter(t, s, data, err);
    if (!st && t->supplement[0]) st = blimp_read_path(s, t->supplement, 1, t->skip, NULL, err);
    if (!st && s->n == 0) st = tu_fail(err, FL_EINVAL, "blimp: no minimal pairs in %s", data);
    for (int i = 0; i < s->n_notes; i++) svc->host->log(svc->host, FL_LOG_WARN, "blimp: skipped %s", s->notes[i]);
    if (s->skipped_lines || s->empty_files)
        svc->host->log(svc->host, FL_LOG_WARN, "blimp: on_error=skip passed over %lld malformed line(s) and %lld empty file(s)",
                       (long long)s->skipped_lines, (long long)s->empty_files);
    return st;
}

/* ------------------------------------------------------------ results */

typedef struct tally {
    int64_t *ok, *n;           /* per index */
    int size;
} tally;

static fl_status tally_init(tally *t, int size, fl_error *err) {
    t->size = size;
    t->ok = calloc((size_t)(size ? size : 1), sizeof *t->ok);
    t->n = calloc((size_t)(size ? size : 1), sizeof *t->n);
    return t->ok && t->n ? FL_OK : tu_fail(err, FL_ENOMEM, "out of memory");
}

static void tally_free(tally *t) { free(t->ok), free(t->n); }

static double rate(int64_t ok, int64_t n) { return n ? (double)ok / (double)n : 0.0; }

/* Mean over the indices that have pairs of their accuracy; *count = how many. */
static double mean_of(const tally *t, int *count) {
    double sum = 0;
    *count = 0;
    for (int i = 0; i < t->size; i++)
        if (t->n[i]) sum += rate(t->ok[i], t->n[i]), (*count)++;
    return *count ? sum / *count : 0.0;
}

static fl_status emit(const fl_task_services *svc, const char *name, int kind, double value, int64_t n,
                      const char *subtask, const char *group, const char *item, fl_error *err) {
    fl_metric m = {.name = name, .kind = kind, .value = value, .n = n, .subtask = subtask, .group = group, .item = item};
    return svc->metric(svc, &m, err);
}

static fl_status emit_group(const fl_task_services *svc, const tally *t, const tu_strtab *names, const char *group,
                            const char *subtask, fl_error *err) {
    fl_status st = FL_OK;
    for (int i = 0; i < t->size && !st; i++)
        if (t->n[i]) st = emit(svc, "accuracy", FL_METRIC_ACCURACY, rate(t->ok[i], t->n[i]), t->n[i], subtask, group, names->names[i], err);
    return st;
}

typedef struct tallies {
    tally paradigm, phenomenon, field, supplement;
    int64_t ok, n;
} tallies;

static fl_status count(const blimp_set *s, const double *good, const double *bad, tallies *t, fl_error *err) {
    fl_status st = tally_init(&t->paradigm, s->paradigms.n, err);
    if (!st) st = tally_init(&t->phenomenon, s->phenomena.n, err);
    if (!st) st = tally_init(&t->field, s->fields.n, err);
    if (!st) st = tally_init(&t->supplement, s->paradigms.n, err);
    for (int64_t i = 0; i < s->n && !st; i++) {
        const blimp_pair *p = &s->pairs[i];
        int ok = good[i] > bad[i];
        if (p->supplement) {
            t->supplement.ok[p->paradigm] += ok, t->supplement.n[p->paradigm]++;
            continue;
        }
        t->paradigm.ok[p->paradigm] += ok, t->paradigm.n[p->paradigm]++;
        t->phenomenon.ok[p->phenomenon] += ok, t->phenomenon.n[p->phenomenon]++;
        t->field.ok[p->field] += ok, t->field.n[p->field]++;
        t->ok += ok, t->n++;
    }
    return st;
}

static fl_status report(const fl_task_services *svc, const blimp_set *s, const tallies *t, int64_t truncated,
                        fl_error *err) {
    int n_par = 0, n_phen = 0, n_sup = 0;
    double par = mean_of(&t->paradigm, &n_par), phen = mean_of(&t->phenomenon, &n_phen);
    double sup = mean_of(&t->supplement, &n_sup);
    fl_status st = FL_OK;
    if (t->n) {
        if (!st) st = emit(svc, "accuracy_paradigm_mean", FL_METRIC_ACCURACY, par, t->n, NULL, NULL, NULL, err);
        if (!st) st = emit(svc, "accuracy_phenomenon_mean", FL_METRIC_ACCURACY, phen, t->n, NULL, NULL, NULL, err);
        if (!st) st = emit(svc, "accuracy_pairs", FL_METRIC_ACCURACY, rate(t->ok, t->n), t->n, NULL, NULL, NULL, err);
        if (!st) st = emit(svc, "paradigms", FL_METRIC_COUNT, n_par, 0, NULL, NULL, NULL, err);
    }
    if (!st && n_sup) st = emit(svc, "accuracy_task_mean", FL_METRIC_ACCURACY, sup, s->n - t->n, "supplement", NULL, NULL, err);
    if (!st) st = emit(svc, "pairs", FL_METRIC_COUNT, (double)s->n, 0, NULL, NULL, NULL, err);
    if (!st) st = emit(svc, "skipped_lines", FL_METRIC_COUNT, (double)s->skipped_lines, 0, NULL, NULL, NULL, err);
    if (!st && s->empty_files) st = emit(svc, "empty_files", FL_METRIC_COUNT, (double)s->empty_files, 0, NULL, NULL, NULL, err);
    if (!st && truncated) st = emit(svc, "truncated_pairs", FL_METRIC_COUNT, (double)truncated, 0, NULL, NULL, NULL, err);
    if (!st) st = emit_group(svc, &t->phenomenon, &s->phenomena, "phenomenon", NULL, err);
    if (!st) st = emit_group(svc, &t->field, &s->fields, "field", NULL, err);
    if (!st) st = emit_group(svc, &t->paradigm, &s->paradigms, "paradigm", NULL, err);
    if (!st) st = emit_group(svc, &t->supplement, &s->paradigms, "task", "supplement", err);
    return st;
}

/* ------------------------------------------------------------ run */

/* One line per pair: paradigm, its index within the paradigm (the file's
   order), log p(good), log p(bad), 1 when good > bad. %.9g round-trips the
   floats' precision, so two files compare exactly. */
static fl_status write_scores(const char *path, const blimp_set *s, const double *good, const double *bad,
                              fl_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return tu_fail(err, FL_EIO, "blimp: cannot write scores=%s", path);
    int64_t *seen = calloc((size_t)s->paradigms.n + 1, sizeof *seen);
    if (!seen) {
        fclose(f);
        return tu_fail(err, FL_ENOMEM, "blimp: out of memory");
    }
    fprintf(f, "paradigm\tindex\tlogp_good\tlogp_bad\tcorrect\n");
    for (int64_t i = 0; i < s->n; i++) {
        const blimp_pair *p = &s->pairs[i];
        fprintf(f, "%s\t%lld\t%.9g\t%.9g\t%d\n", s->paradigms.names[p->paradigm], (long long)seen[p->paradigm]++,
                good[i], bad[i], good[i] > bad[i]);
    }
    free(seen);
    return fclose(f) ? tu_fail(err, FL_EIO, "blimp: cannot write scores=%s", path) : FL_OK;
}

/* An encoder is scored by pseudo-log-likelihood (task ABI 2.1 hosts say so). */
static int is_encoder(const fl_task_services *svc) {
    return FL_TASK_HAS(svc, masked_logprobs) && svc->arch == FL_TASK_ARCH_BERT;
}

static fl_status run(void *p, const fl_task_services *svc, fl_error *err) {
    task *t = p;
    blimp_set s = {0};
    double *good = NULL, *bad = NULL;
    tallies tl = {0};
    int64_t truncated = 0, tokens = 0;
    fl_status st = read_all(svc, t, &s, err);
    if (!st) {
        good = malloc((size_t)s.n * sizeof *good), bad = malloc((size_t)s.n * sizeof *bad);
        if (!good || !bad) st = tu_fail(err, FL_ENOMEM, "blimp: out of memory");
    }
    if (!st && is_encoder(svc)) st = blimp_score_pll(svc, &s, t->batch, good, bad, &truncated, &tokens, err);
    else if (!st) st = blimp_score(svc, &s, t->batch, good, bad, &truncated, &tokens, err);
    if (!st && truncated)
        svc->host->log(svc->host, FL_LOG_WARN, "blimp: %lld pair(s) longer than the context (%d tokens) were cut",
                       (long long)truncated, svc->context);
    if (!st) st = count(&s, good, bad, &tl, err);
    if (!st && t->scores[0]) st = write_scores(t->scores, &s, good, bad, err);
    if (!st) st = report(svc, &s, &tl, truncated, err);
    fl_metric m = {.name = "tokens", .kind = FL_METRIC_COUNT, .value = (double)tokens};
    if (!st) st = svc->metric(svc, &m, err); /* what the scoring cost: sentences' tokens, eot included */
    tally_free(&tl.paradigm), tally_free(&tl.phenomenon), tally_free(&tl.field), tally_free(&tl.supplement);
    free(good), free(bad);
    blimp_set_free(&s);
    return st;
}

static const fl_task_plugin PLUGIN = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_TASK_ABI_MAJOR, .abi_minor = FL_TASK_ABI_MINOR,
               .struct_size = sizeof(fl_task_plugin), .kind = FL_PLUGIN_TASK, .name = "blimp",
               .version = "1.0",
               .description = "BLiMP minimal pairs, zero-shot: accuracy per paradigm, phenomenon and field",
               .options = OPTIONS, .n_options = N_OPTIONS},
    .create = create,
    .run = run,
    .destroy = destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &PLUGIN.header; }
