/*
 * tests/plugins/task_plugin.h — a minimal task plugin with at most one defect,
 * chosen by the file that includes it (as broken_plugin.h does for FFN
 * plugins).
 *
 * The task itself ("echo") exercises the services a real task uses and
 * reports what its options say, so the eval runner can be tested without a
 * long evaluation: it encodes "hello world", scores it with svc->logprobs,
 * and reports
 *   <metric> = value (kind accuracy, n 10), a breakdown over group "item"
 *   (a, b), "tokens" (count) and "logprob" (other);
 * fail=true makes run() fail with "echo: asked to fail".
 * Settings:
 *   TASK_NAME         descriptor name (required)
 *   TASK_ABI_MAJOR    default FL_TASK_ABI_MAJOR
 *   TASK_STRUCT_SIZE  default sizeof(fl_task_plugin)
 *   TASK_RUN          default run; NULL to leave it out
 */
#include <stdlib.h>
#include <string.h>

#include "ffnlab/task.h"

#ifndef TASK_ABI_MAJOR
#define TASK_ABI_MAJOR FL_TASK_ABI_MAJOR
#endif
#ifndef TASK_STRUCT_SIZE
#define TASK_STRUCT_SIZE sizeof(fl_task_plugin)
#endif
#ifndef TASK_RUN
#define TASK_RUN run
#endif

enum { OPT_VALUE, OPT_METRIC, OPT_FAIL, OPT_WORDS, N_OPTIONS };

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_VALUE] = {"value", FL_OPT_FLOAT, "0.5", 0, 1, NULL, "the value to report"},
    [OPT_METRIC] = {"metric", FL_OPT_STRING, "accuracy", 0, -1, NULL, "the metric's name"},
    [OPT_FAIL] = {"fail", FL_OPT_BOOL, "false", 0, -1, NULL, "fail in run()"},
    [OPT_WORDS] = {"words", FL_OPT_STRING, "", 0, -1, NULL, "a list, reported as its item count"},
};

typedef struct echo {
    double value;
    char metric[64];
    int fail, words;
} echo;

static fl_status create(const fl_task_services *svc, const fl_task_config *cfg, void **task, fl_error *err) {
    echo *e = calloc(1, sizeof *e);
    if (!e) return svc->host->error(err, FL_ENOMEM, "out of memory");
    e->value = cfg->values[OPT_VALUE].f;
    strncpy(e->metric, cfg->values[OPT_METRIC].s, sizeof e->metric - 1);
    e->fail = (int)cfg->values[OPT_FAIL].i;
    const char *w = cfg->values[OPT_WORDS].s;
    e->words = w[0] ? 1 : 0;
    for (; *w; w++) e->words += *w == '|';
    *task = e;
    return FL_OK;
}

__attribute__((unused)) static fl_status run(void *task, const fl_task_services *svc, fl_error *err) {
    echo *e = task;
    if (e->fail) return svc->host->error(err, FL_EINVAL, "echo: asked to fail");
    int32_t *ids = NULL;
    size_t n = 0;
    fl_status st = svc->encode(svc, "hello world", 11, &ids, &n, err);
    if (st) return st;
    int32_t seq[64];
    seq[0] = svc->eot;
    for (size_t i = 0; i < n && i < 63; i++) seq[i + 1] = ids[i];
    svc->free(ids);
    int64_t off[2] = {0, (int64_t)(n < 63 ? n : 63) + 1};
    float lp[64];
    fl_token_seqs s = {.tokens = seq, .offsets = off, .n = 1};
    if ((st = svc->logprobs(svc, &s, NULL, 0, lp, err))) return st;
    double total = 0;
    for (int64_t t = 1; t < off[1]; t++) total += lp[t];
    fl_metric ms[] = {
        {.name = e->metric, .kind = FL_METRIC_ACCURACY, .value = e->value, .n = 10},
        {.name = e->metric, .kind = FL_METRIC_ACCURACY, .value = 0.25, .n = 4, .group = "item", .item = "a"},
        {.name = e->metric, .kind = FL_METRIC_ACCURACY, .value = 0.75, .n = 6, .group = "item", .item = "b"},
        {.name = "tokens", .kind = FL_METRIC_COUNT, .value = (double)n},
        {.name = "logprob", .kind = FL_METRIC_OTHER, .value = total, .n = (int64_t)n},
        {.name = "words", .kind = FL_METRIC_COUNT, .value = e->words},
    };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0] && !st; i++) st = svc->metric(svc, &ms[i], err);
    return st;
}

static void destroy(void *task) { free(task); }

static const fl_task_plugin D = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = TASK_ABI_MAJOR, .abi_minor = FL_TASK_ABI_MINOR,
               .struct_size = TASK_STRUCT_SIZE, .kind = FL_PLUGIN_TASK, .name = TASK_NAME, .version = "0.0.1",
               .description = "a test task: reports what its options say", .options = OPTIONS, .n_options = N_OPTIONS},
    .create = create,
    .run = TASK_RUN,
    .destroy = destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &D.header; }
