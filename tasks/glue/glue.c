/*
 * tasks/glue/glue.c — the (Super)GLUE task plugin: fine-tune and score.
 *
 * For each task in tasks=: read train and dev (and, in the BabyLM layout,
 * test), encode each example as <|endoftext|> a <|endoftext|> b (an encoder:
 * <s> a </s></s> b </s>; truncating the longer segment first to max_len),
 * and hand them to the host's
 * fine-tuning service: a copy of the model plus a classification head, AdamW,
 * dev evaluation every eval_every steps with patience, the best dev weights
 * kept. Defaults follow the BabyLM 2023 pipeline (lr 5e-5, batch 64, up to 10
 * epochs, eval every 200 steps, patience 10, max length 128, seed 12).
 *
 * Reported per task (subtask = the task's name; MNLI also "mnli_mm"): the
 * standard metric(s) — MCC for CoLA, F1 and accuracy for MRPC and QQP,
 * accuracy for the rest (MultiRC per answer option, as BabyLM scores it) —
 * on the reported split, the same metrics of the majority-class baseline
 * (the train set's most frequent label) on that split, the train size used,
 * and where the kept weights came from (best_step, epochs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffnlab/task.h"
#include "glue.h"

enum {
    OPT_TASKS, OPT_DATA, OPT_LAYOUT, OPT_LR, OPT_BATCH, OPT_EPOCHS, OPT_MAX_LEN, OPT_SEED, OPT_MAX_TRAIN,
    OPT_EVAL_EVERY, OPT_PATIENCE, OPT_WD, OPT_WARMUP, OPT_SCHEDULE, OPT_CLIP, OPT_MAX_STEPS, OPT_ON_ERROR, N_OPTIONS
};

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_TASKS] = {"tasks", FL_OPT_STRING, "cola|sst2|mrpc|qqp|mnli|qnli|rte|boolq|multirc|wsc", 0, -1, NULL,
                   "tasks to run, comma-separated: cola sst2 mrpc qqp mnli (matched + mismatched) qnli rte boolq multirc wsc"},
    [OPT_DATA] = {"data", FL_OPT_STRING, "", 0, -1, NULL,
                  "root folder: GLUE layout (CoLA/train.tsv, ...) or BabyLM's glue_filtered (cola.train.json, ...)"},
    [OPT_LAYOUT] = {"layout", FL_OPT_ENUM, "glue", 0, -1, "glue|babylm",
                    "glue: released TSV/JSONL files per task folder; babylm: <task>.<split>.json files"},
    [OPT_LR] = {"lr", FL_OPT_FLOAT, "5e-5", 1e-9, 1, NULL, "peak learning rate"},
    [OPT_BATCH] = {"batch_size", FL_OPT_INT, "64", 1, 4096, NULL, "examples per step"},
    [OPT_EPOCHS] = {"epochs", FL_OPT_INT, "10", 1, 1000, NULL, "passes over the training set at most"},
    [OPT_MAX_LEN] = {"max_len", FL_OPT_INT, "128", 3, 1 << 20, NULL,
                     "tokens per example at most (and at most the model's context)"},
    [OPT_SEED] = {"seed", FL_OPT_INT, "12", 0, 2147483647, NULL, "head initialisation, shuffling, train subsampling"},
    [OPT_MAX_TRAIN] = {"max_train", FL_OPT_INT, "0", 0, 1e12, NULL,
                       "use at most this many training examples, a seeded random subset (0 = all)"},
    [OPT_EVAL_EVERY] = {"eval_every", FL_OPT_INT, "200", 0, 1e12, NULL, "steps between dev evaluations (0 = each epoch)"},
    [OPT_PATIENCE] = {"patience", FL_OPT_INT, "10", 0, 1e6, NULL,
                      "stop after this many dev evaluations without improvement (0 = never)"},
    [OPT_WD] = {"weight_decay", FL_OPT_FLOAT, "0", 0, 10, NULL, "AdamW weight decay (matrices)"},
    [OPT_WARMUP] = {"warmup_ratio", FL_OPT_FLOAT, "0", 0, 1, NULL, "fraction of the steps with linear warmup"},
    [OPT_SCHEDULE] = {"schedule", FL_OPT_ENUM, "linear", 0, -1, "linear|constant", "LR after warmup: linear decay to 0, or constant"},
    [OPT_CLIP] = {"grad_clip", FL_OPT_FLOAT, "1.0", 0, 1e6, NULL, "global gradient-norm clipping (0 = off)"},
    [OPT_MAX_STEPS] = {"max_steps", FL_OPT_INT, "0", 0, 1e12, NULL, "stop each fine-tune after this many steps (0 = epochs decide)"},
    [OPT_ON_ERROR] = {"on_error", FL_OPT_ENUM, "stop", 0, -1, "stop|skip",
                      "a malformed line stops the task (naming file and line), or is skipped and counted"},
};

typedef struct task {
    tu_list tasks;
    char *data;
    int babylm, skip;
    int64_t max_train;
    fl_finetune_opts ft;
} task;

/* ------------------------------------------------------------ options */

/* "mnli_mm"/"mnli-mm" mean MNLI (which reports both); unknown names fail. */
static fl_status check_tasks(tu_list *l, fl_error *err) {
    for (int i = 0; i < l->n; i++) {
        if (!strcmp(l->items[i], "mnli_mm") || !strcmp(l->items[i], "mnli-mm")) l->items[i] = "mnli";
        if (!strcmp(l->items[i], "sst-2")) l->items[i] = "sst2";
        if (!glue_find(l->items[i]))
            return tu_fail(err, FL_EINVAL, "--task glue: unknown task '%s' (known: %s)", l->items[i], glue_names());
        for (int j = 0; j < i; j++)
            if (!strcmp(l->items[i], l->items[j])) return tu_fail(err, FL_EINVAL, "--task glue: '%s' listed twice", l->items[i]);
    }
    return l->n ? FL_OK : tu_fail(err, FL_EINVAL, "--task glue: tasks= is empty");
}

static fl_status create(const fl_task_services *svc, const fl_task_config *cfg, void **out, fl_error *err) {
    const fl_value *v = cfg->values;
    if (!v[OPT_DATA].s || !v[OPT_DATA].s[0])
        return tu_fail(err, FL_EINVAL, "--task glue: data=DIR is required (the GLUE files, or BabyLM's glue_filtered with layout=babylm)");
    task *t = calloc(1, sizeof *t);
    if (!t) return tu_fail(err, FL_ENOMEM, "out of memory");
    fl_status st = tu_list_split(v[OPT_TASKS].s, &t->tasks, err);
    if (!st) st = check_tasks(&t->tasks, err);
    if (!st && !(t->data = strdup(v[OPT_DATA].s))) st = tu_fail(err, FL_ENOMEM, "out of memory");
    if (st) {
        tu_list_free(&t->tasks), free(t);
        return st;
    }
    t->babylm = v[OPT_LAYOUT].i == 1;
    t->skip = v[OPT_ON_ERROR].i == 1;
    t->max_train = v[OPT_MAX_TRAIN].i;
    int32_t max_len = (int32_t)(v[OPT_MAX_LEN].i < svc->context ? v[OPT_MAX_LEN].i : svc->context);
    t->ft = (fl_finetune_opts){.lr = v[OPT_LR].f, .batch_size = (int32_t)v[OPT_BATCH].i, .epochs = (int32_t)v[OPT_EPOCHS].i,
                               .max_steps = v[OPT_MAX_STEPS].i, .max_len = max_len, .seed = (uint64_t)v[OPT_SEED].i,
                               .eval_every = v[OPT_EVAL_EVERY].i, .patience = (int32_t)v[OPT_PATIENCE].i,
                               .weight_decay = v[OPT_WD].f, .warmup_ratio = v[OPT_WARMUP].f,
                               .schedule = v[OPT_SCHEDULE].i == 1 ? FL_FT_CONSTANT : FL_FT_LINEAR,
                               .grad_clip = v[OPT_CLIP].f};
    *out = t;
    return FL_OK;
}

static void destroy(void *p) {
    task *t = p;
    tu_list_free(&t->tasks);
    free(t->data);
    free(t);
}

/* ------------------------------------------------------------ files */

typedef struct files {
    char train[4096], dev[4096], test[4096], dev_mm[4096], test_mm[4096];
    const char *dev_split;     /* "dev", "heldout" or "validation" */
} files;

static int first_existing(const char *root, const char *dir, const char *const *names, int n, char *out, size_t len) {
    for (int i = 0; i < n && names[i]; i++) {
        snprintf(out, len, "%s/%s/%s", root, dir, names[i]);
        if (tu_exists(out)) return 1;
    }
    out[0] = 0;
    return 0;
}

static void babylm_path(const char *root, const char *task, const char *split, char *out, size_t len) {
    snprintf(out, len, "%s/%s.%s.json", root, task, split);
    if (!tu_exists(out)) out[0] = 0;
}

static fl_status find_glue(const task *t, const glue_def *d, files *f, fl_error *err) {
    if (!first_existing(t->data, d->glue_dir, d->train, 3, f->train, sizeof f->train))
        return tu_fail(err, FL_EIO, "glue %s: no training file in %s/%s (looked for %s%s%s)", d->name, t->data, d->glue_dir,
                       d->train[0], d->train[1] ? " or " : "", d->train[1] ? d->train[1] : "");
    if (!first_existing(t->data, d->glue_dir, d->dev, 3, f->dev, sizeof f->dev))
        return tu_fail(err, FL_EIO, "glue %s: no dev file in %s/%s (looked for %s%s%s)", d->name, t->data, d->glue_dir,
                       d->dev[0], d->dev[1] ? " or " : "", d->dev[1] ? d->dev[1] : "");
    first_existing(t->data, d->glue_dir, d->dev_mm, 2, f->dev_mm, sizeof f->dev_mm);
    f->dev_split = strstr(f->dev, "heldout") ? "heldout" : "dev";
    return FL_OK;
}

static fl_status find_babylm(const task *t, const glue_def *d, files *f, fl_error *err) {
    babylm_path(t->data, d->name, "train", f->train, sizeof f->train);
    babylm_path(t->data, d->name, d->bl_dev, f->dev, sizeof f->dev);
    babylm_path(t->data, d->name, d->bl_test, f->test, sizeof f->test);
    if (d->bl_dev_mm) babylm_path(t->data, d->name, d->bl_dev_mm, f->dev_mm, sizeof f->dev_mm);
    if (d->bl_test_mm) babylm_path(t->data, d->name, d->bl_test_mm, f->test_mm, sizeof f->test_mm);
    f->dev_split = "validation";
    if (!f->train[0])
        return tu_fail(err, FL_EIO, "glue %s: %s/%s.train.json not found (BabyLM 2023's large train files may be "
                                    "missing; layout=glue reads the released files)", d->name, t->data, d->name);
    if (!f->dev[0]) return tu_fail(err, FL_EIO, "glue %s: %s/%s.%s.json not found", d->name, t->data, d->name, d->bl_dev);
    return FL_OK;
}

/* ------------------------------------------------------------ encoding */

typedef struct encoded {
    tu_seqs seqs;
    int32_t *labels;
    int64_t n;
} encoded;

/* A decoder's <eot> a <eot> b; an encoder's <s> a </s> or <s> a </s></s> b
   </s> (RoBERTa's: the host classifies from <s>); the longer segment cut
   first until it fits max_len. */
static fl_status encode_example(const fl_task_services *svc, const glue_example *e, int32_t max_len, tu_seqs *s,
                                fl_error *err) {
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    fl_status st = svc->encode(svc, e->a, strlen(e->a), &a, &na, err);
    if (!st && e->b) st = svc->encode(svc, e->b, strlen(e->b), &b, &nb, err);
    const int enc = FL_TASK_HAS(svc, masked_logprobs) && svc->arch == FL_TASK_ARCH_BERT;
    if (!st) {
        const int32_t seps[2] = {svc->sep, svc->sep};
        const size_t fixed = enc ? (e->b ? 4 : 2) : (e->b ? 2 : 1);
        while (fixed + na + nb > (size_t)max_len && (na || nb)) {
            if (na >= nb) na--;
            else nb--;
        }
        const int32_t *dec_parts[4] = {&svc->eot, a, &svc->eot, b}, *enc_parts[5] = {&svc->bos, a, seps, b, seps};
        const size_t dec_lens[4] = {1, na, 1, nb}, enc_lens[5] = {1, na, e->b ? 2 : 1, nb, 1};
        st = enc ? tu_seqs_add(s, enc_parts, enc_lens, e->b ? 5 : 3, err)
                 : tu_seqs_add(s, dec_parts, dec_lens, e->b ? 4 : 2, err);
    }
    svc->free(a), svc->free(b);
    return st;
}

/* Examples idx[0..n) (all when idx is NULL) of split. */
static fl_status encode_split(const fl_task_services *svc, const glue_split *sp, const int64_t *idx, int64_t n,
                              int32_t max_len, encoded *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    out->n = n;
    out->labels = malloc((size_t)(n ? n : 1) * sizeof *out->labels);
    fl_status st = out->labels ? tu_seqs_init(&out->seqs, err) : tu_fail(err, FL_ENOMEM, "glue: out of memory");
    for (int64_t i = 0; i < n && !st; i++) {
        const glue_example *e = &sp->ex[idx ? idx[i] : i];
        out->labels[i] = e->label;
        st = encode_example(svc, e, max_len, &out->seqs, err);
    }
    return st;
}

static void encoded_free(encoded *e) {
    tu_seqs_free(&e->seqs);
    free(e->labels);
    memset(e, 0, sizeof *e);
}

/* A seeded random subset of max examples, in file order. */
static int64_t *subsample(int64_t n, int64_t max, uint64_t seed, int64_t *kept) {
    int64_t k = max > 0 && max < n ? max : n;
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    uint64_t key = fl_rng_key(seed, "glue.subsample");
    for (int64_t i = 0; i < k && k < n; i++) { /* partial Fisher–Yates: the first k are the sample */
        int64_t j = i + (int64_t)(fl_rng_bits(key, (uint64_t)i) % (uint64_t)(n - i));
        int64_t tmp = idx[i];
        idx[i] = idx[j], idx[j] = tmp;
    }
    for (int64_t i = 1; i < k; i++) /* insertion sort back into file order (k is small when it matters) */
        for (int64_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
            int64_t tmp = idx[j];
            idx[j] = idx[j - 1], idx[j - 1] = tmp;
        }
    *kept = k;
    return idx;
}

/* ------------------------------------------------------------ metrics */

static double dev_score(void *user, const int32_t *pred, const int32_t *gold, int64_t n) {
    const glue_def *d = user;
    if (d->metric == GLUE_MCC) return tu_mcc(pred, gold, n, d->n_classes);
    if (d->metric == GLUE_F1_ACC) return tu_f1(pred, gold, n);
    return tu_accuracy(pred, gold, n);
}

typedef struct report_ctx {
    const fl_task_services *svc;
    const glue_def *d;
    const char *subtask;
} report_ctx;

static fl_status emit(const report_ctx *c, const char *name, int kind, double value, int64_t n, const char *split,
                      fl_error *err) {
    fl_metric m = {.name = name, .kind = kind, .value = value, .n = n, .subtask = c->subtask, .split = split};
    return c->svc->metric(c->svc, &m, err);
}

/* The task's metrics of pred against gold, names prefixed (e.g. "majority_"). */
static fl_status emit_scores(const report_ctx *c, const char *prefix, const int32_t *pred, const int32_t *gold, int64_t n,
                             const char *split, fl_error *err) {
    char name[64];
    fl_status st = FL_OK;
    if (c->d->metric == GLUE_MCC) {
        snprintf(name, sizeof name, "%smcc", prefix);
        st = emit(c, name, FL_METRIC_MCC, tu_mcc(pred, gold, n, c->d->n_classes), n, split, err);
    }
    if (!st && c->d->metric == GLUE_F1_ACC) {
        snprintf(name, sizeof name, "%sf1", prefix);
        st = emit(c, name, FL_METRIC_F1, tu_f1(pred, gold, n), n, split, err);
    }
    if (!st && c->d->metric != GLUE_MCC) {
        snprintf(name, sizeof name, "%saccuracy", prefix);
        st = emit(c, name, FL_METRIC_ACCURACY, tu_accuracy(pred, gold, n), n, split, err);
    }
    return st;
}

static int32_t majority(const int32_t *labels, int64_t n, int K) {
    int64_t count[8] = {0};
    for (int64_t i = 0; i < n; i++)
        if (labels[i] >= 0 && labels[i] < 8) count[labels[i]]++;
    int32_t best = 0;
    for (int k = 1; k < K && k < 8; k++)
        if (count[k] > count[best]) best = k;
    return best;
}

/* Model scores and the majority baseline on one labelled split. */
static fl_status score_split(const report_ctx *c, const int32_t *pred, const encoded *gold, int32_t maj, const char *split,
                             fl_error *err) {
    int32_t *base = malloc((size_t)(gold->n ? gold->n : 1) * sizeof *base);
    if (!base) return tu_fail(err, FL_ENOMEM, "glue: out of memory");
    for (int64_t i = 0; i < gold->n; i++) base[i] = maj;
    fl_status st = emit_scores(c, "", pred, gold->labels, gold->n, split, err);
    if (!st) st = emit_scores(c, "majority_", base, gold->labels, gold->n, split, err);
    free(base);
    return st;
}

/* Predictions of a split without labels, for submission: one per line. */
static fl_status write_predictions(const fl_task_services *svc, const char *name, const char *split, const int32_t *pred,
                                   int64_t n, fl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/glue_%s_%s_predictions.txt", svc->work_dir, name, split);
    FILE *f = fopen(path, "w");
    if (!f) return tu_fail(err, FL_EIO, "%s: cannot write", path);
    for (int64_t i = 0; i < n; i++) fprintf(f, "%d\n", pred[i]);
    int bad = fclose(f) != 0;
    if (bad) return tu_fail(err, FL_EIO, "%s: write failed", path);
    svc->host->log(svc->host, FL_LOG_INFO, "glue %s: %s labels are hidden; predictions written to %s", name, split, path);
    return FL_OK;
}

/* ------------------------------------------------------------ one task */

enum { S_TRAIN, S_DEV, S_TEST, S_DEV_MM, S_TEST_MM, N_SPLITS };

typedef struct job {
    const task *t;
    const glue_def *d;
    files f;
    glue_split raw[N_SPLITS];
    encoded enc[N_SPLITS];
    int32_t *pred[N_SPLITS];
    int64_t train_used, skipped;
    fl_finetune_result res;
} job;

static const char *path_of(job *j, int s) {
    const char *p[N_SPLITS] = {j->f.train, j->f.dev, j->f.test, j->f.dev_mm, j->f.test_mm};
    return p[s];
}

static fl_status load(const fl_task_services *svc, job *j, fl_error *err) {
    fl_status st = j->t->babylm ? find_babylm(j->t, j->d, &j->f, err) : find_glue(j->t, j->d, &j->f, err);
    for (int s = 0; s < N_SPLITS && !st; s++) {
        if (!path_of(j, s)[0]) continue;
        st = glue_read(j->d, path_of(j, s), j->t->skip, &j->raw[s], err);
        j->skipped += j->raw[s].skipped;
        for (int k = 0; k < j->raw[s].n_notes; k++)
            svc->host->log(svc->host, FL_LOG_WARN, "glue %s: skipped %s", j->d->name, j->raw[s].notes[k]);
    }
    if (!st && j->raw[S_TRAIN].hidden) st = tu_fail(err, FL_EINVAL, "%s: training labels are hidden (-1)", j->f.train);
    if (!st && j->raw[S_DEV].hidden) st = tu_fail(err, FL_EINVAL, "%s: dev labels are hidden (-1)", j->f.dev);
    return st;
}

static fl_status encode_all(const fl_task_services *svc, job *j, fl_error *err) {
    int64_t *idx = subsample(j->raw[S_TRAIN].n, j->t->max_train, j->t->ft.seed, &j->train_used);
    if (!idx) return tu_fail(err, FL_ENOMEM, "glue: out of memory");
    fl_status st = encode_split(svc, &j->raw[S_TRAIN], idx, j->train_used, j->t->ft.max_len, &j->enc[S_TRAIN], err);
    free(idx);
    for (int s = S_DEV; s < N_SPLITS && !st; s++) {
        if (!j->raw[s].n) continue;
        st = encode_split(svc, &j->raw[s], NULL, j->raw[s].n, j->t->ft.max_len, &j->enc[s], err);
        if (!st && !(j->pred[s] = malloc((size_t)j->raw[s].n * sizeof *j->pred[s])))
            st = tu_fail(err, FL_ENOMEM, "glue: out of memory");
    }
    return st;
}

static fl_status finetune(const fl_task_services *svc, job *j, fl_error *err) {
    fl_finetune_opts o = j->t->ft;
    o.n_classes = j->d->n_classes, o.dev_score = dev_score, o.user = (void *)j->d, o.name = j->d->name;
    fl_ft_data train = {tu_seqs_view(&j->enc[S_TRAIN].seqs), j->enc[S_TRAIN].labels};
    fl_ft_data dev = {tu_seqs_view(&j->enc[S_DEV].seqs), j->enc[S_DEV].labels};
    fl_ft_data extra[N_SPLITS];
    const fl_ft_data *sets[N_SPLITS];
    int32_t *outs[N_SPLITS];
    int n = 0;
    for (int s = S_TEST; s < N_SPLITS; s++)
        if (j->enc[s].n) {
            extra[n] = (fl_ft_data){tu_seqs_view(&j->enc[s].seqs), NULL};
            sets[n] = &extra[n], outs[n++] = j->pred[s];
        }
    svc->host->log(svc->host, FL_LOG_INFO, "glue %s: fine-tuning on %lld examples, selecting on %lld (%s)", j->d->name,
                   (long long)j->train_used, (long long)j->raw[S_DEV].n, j->f.dev_split);
    return svc->finetune(svc, &o, &train, &dev, sets, n, j->pred[S_DEV], outs, &j->res, err);
}

/* One split's results: scored when labelled, written out when hidden. */
static fl_status report_split(const fl_task_services *svc, job *j, int s, const char *subtask, const char *split,
                              int32_t maj, fl_error *err) {
    if (!j->enc[s].n) return FL_OK;
    report_ctx c = {svc, j->d, subtask};
    if (!j->raw[s].hidden) return score_split(&c, j->pred[s], &j->enc[s], maj, split, err);
    return write_predictions(svc, subtask, split, j->pred[s], j->enc[s].n, err);
}

static fl_status report(const fl_task_services *svc, job *j, fl_error *err) {
    const glue_def *d = j->d;
    int32_t maj = majority(j->enc[S_TRAIN].labels, j->enc[S_TRAIN].n, d->n_classes);
    const char *mm = !strcmp(d->name, "mnli") ? "mnli_mm" : d->name;
    report_ctx c = {svc, d, d->name};
    fl_status st = report_split(svc, j, S_DEV, d->name, j->f.dev_split, maj, err);
    if (!st) st = report_split(svc, j, S_TEST, d->name, "test", maj, err);
    if (!st) st = report_split(svc, j, S_DEV_MM, mm, j->t->babylm ? "validation" : "dev", maj, err);
    if (!st) st = report_split(svc, j, S_TEST_MM, mm, "test", maj, err);
    if (!st) st = emit(&c, "train_examples", FL_METRIC_COUNT, (double)j->train_used, 0, NULL, err);
    if (!st) st = emit(&c, "best_step", FL_METRIC_OTHER, (double)j->res.best_step, 0, NULL, err);
    if (!st) st = emit(&c, "epochs", FL_METRIC_OTHER, j->res.epochs, 0, NULL, err);
    if (!st && j->res.truncated) st = emit(&c, "truncated", FL_METRIC_COUNT, (double)j->res.truncated, 0, NULL, err);
    if (!st && j->t->skip) st = emit(&c, "skipped_lines", FL_METRIC_COUNT, (double)j->skipped, 0, NULL, err);
    return st;
}

static fl_status run_one(const fl_task_services *svc, const task *t, const glue_def *d, fl_error *err) {
    job j = {.t = t, .d = d};
    fl_status st = load(svc, &j, err);
    if (!st) st = encode_all(svc, &j, err);
    if (!st) st = finetune(svc, &j, err);
    if (!st) st = report(svc, &j, err);
    for (int s = 0; s < N_SPLITS; s++) {
        glue_split_free(&j.raw[s]);
        encoded_free(&j.enc[s]);
        free(j.pred[s]);
    }
    return st;
}

static fl_status run(void *p, const fl_task_services *svc, fl_error *err) {
    task *t = p;
    fl_status st = FL_OK;
    for (int i = 0; i < t->tasks.n && !st; i++) {
        st = run_one(svc, t, glue_find(t->tasks.items[i]), err);
        if (!st) svc->progress(svc, "tasks fine-tuned", i + 1, t->tasks.n); /* not just before its error */
    }
    return st;
}

static const fl_task_plugin PLUGIN = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_TASK_ABI_MAJOR, .abi_minor = FL_TASK_ABI_MINOR,
               .struct_size = sizeof(fl_task_plugin), .kind = FL_PLUGIN_TASK, .name = "glue",
               .version = "1.0",
               .description = "(Super)GLUE fine-tuning: CoLA SST-2 MRPC QQP MNLI QNLI RTE BoolQ MultiRC WSC",
               .options = OPTIONS, .n_options = N_OPTIONS},
    .create = create,
    .run = run,
    .destroy = destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &PLUGIN.header; }
