/*
 * run/eval_json.c — <run>/eval.json: what was measured, on which model.
 *
 *   {"ffnlab_version": "0.1.0", "created": "2024-05-01T12:00:00Z",
 *    "model": {"run_dir": ..., "step": 600, "checkpoint": ".../model.safetensors",
 *              "sha256": "...", "n_params": 1234567, "config": {...the run's config...}},
 *    "tasks": [{"task": "blimp", "spec": "blimp:data=...", "time_s": 61.2}, ...],
 *    "results": [{"task": "blimp", "spec": ..., "metric": "accuracy_paradigm_mean",
 *                 "kind": "accuracy", "value": 0.71, "n": 67000, "time_s": 61.2,
 *                 "subtask"/"group"/"item"/"split": only when set}, ...]}
 *
 * The model is identified by the SHA-256 of its model.safetensors (what
 * `sha256sum` prints), so results can be matched to weights later. An
 * existing eval.json for the same hash keeps the entries of tasks not run
 * this time; for another hash (or a file that does not parse) it is
 * replaced. Written atomically, with cJSON.
 */
#include "eval.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "fsutil.h"
#include "json_strict.h"

/* ------------------------------------------------------------ SHA-256 (FIPS 180-4) */

typedef struct sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} sha256;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(sha256 *s, const uint8_t *p) {
    uint32_t w[64], v[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(v, s->h, sizeof v);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(v[4], 6) ^ ror(v[4], 11) ^ ror(v[4], 25);
        uint32_t t1 = v[7] + S1 + ((v[4] & v[5]) ^ (~v[4] & v[6])) + K256[i] + w[i];
        uint32_t S0 = ror(v[0], 2) ^ ror(v[0], 13) ^ ror(v[0], 22);
        uint32_t t2 = S0 + ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof *v);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) s->h[i] += v[i];
}

static void sha256_init(sha256 *s) {
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memset(s, 0, sizeof *s);
    memcpy(s->h, H0, sizeof H0);
}

static void sha256_add(sha256 *s, const uint8_t *p, size_t n) {
    s->bytes += n;
    while (n) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take, p += take, n -= take;
        if (s->used == 64) sha256_block(s, s->block), s->used = 0;
    }
}

static void sha256_hex(sha256 *s, char hex[65]) {
    uint64_t bits = s->bytes * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha256_add(s, &pad, 1);
    while (s->used != 56) sha256_add(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_add(s, len, 8);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

fl_status fl_sha256_file(const char *path, char hex[65], fl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(err, FL_EIO, "%s: cannot open to hash it", path);
    sha256 s;
    sha256_init(&s);
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sha256_add(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return fl_fail(err, FL_EIO, "%s: read error while hashing", path);
    sha256_hex(&s, hex);
    return FL_OK;
}

/* ------------------------------------------------------------ the document */

static const char *kind_name(int32_t kind) {
    switch (kind) {
    case FL_METRIC_ACCURACY: return "accuracy";
    case FL_METRIC_F1: return "f1";
    case FL_METRIC_MCC: return "mcc";
    case FL_METRIC_PERPLEXITY: return "perplexity";
    case FL_METRIC_BITS: return "bits";
    case FL_METRIC_LOSS: return "loss";
    case FL_METRIC_COUNT: return "count";
    default: return "other";
    }
}

static void add_str_if(cJSON *o, const char *key, const char *v) {
    if (v) cJSON_AddStringToObject(o, key, v);
}

static cJSON *model_json(const fl_eval_target *t, const char *sha, const char *ckpt) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    add_str_if(m, "run_dir", t->run_dir);
    if (t->step >= 0) cJSON_AddNumberToObject(m, "step", (double)t->step);
    if (ckpt[0]) cJSON_AddStringToObject(m, "checkpoint", ckpt);
    if (sha[0]) cJSON_AddStringToObject(m, "sha256", sha);
    cJSON_AddNumberToObject(m, "n_params", (double)fl_model_n_weights(t->model));
    if (t->cfg) {
        char *text = fl_config_to_json(t->cfg);
        cJSON *c = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (c) cJSON_AddItemToObject(m, "config", c);
    }
    return m;
}

static double time_of(const char *spec, const double *times, const char *const *specs, int n) {
    for (int i = 0; i < n; i++)
        if (specs[i] && spec && !strcmp(specs[i], spec)) return times[i];
    return 0;
}

static cJSON *result_json(const fl_metric_rec *r, double time_s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    add_str_if(o, "task", r->task);
    add_str_if(o, "spec", r->spec);
    add_str_if(o, "subtask", r->subtask);
    cJSON_AddStringToObject(o, "metric", r->name);
    cJSON_AddStringToObject(o, "kind", kind_name(r->kind));
    cJSON_AddNumberToObject(o, "value", r->value);
    cJSON_AddNumberToObject(o, "n", (double)r->n);
    add_str_if(o, "group", r->group);
    add_str_if(o, "item", r->item);
    add_str_if(o, "split", r->split);
    cJSON_AddNumberToObject(o, "time_s", time_s);
    return o;
}

static int ran_now(const char *task, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (task && names[i] && !strcmp(task, names[i])) return 1;
    return 0;
}

/* Entries of `arr` in the old document whose task was not run now. */
static void keep_old(cJSON *old, const char *key, cJSON *arr, const char *const *names, int n) {
    cJSON *items = old ? cJSON_GetObjectItemCaseSensitive(old, key) : NULL;
    cJSON *e = NULL;
    cJSON_ArrayForEach(e, items) {
        const cJSON *task = cJSON_GetObjectItemCaseSensitive(e, "task");
        if (cJSON_IsString(task) && !ran_now(task->valuestring, names, n))
            cJSON_AddItemToArray(arr, cJSON_Duplicate(e, 1));
    }
}

/* The previous eval.json if it describes the same weights. */
static cJSON *previous(const char *path, const char *sha) {
    if (!sha[0] || !fl_path_exists(path)) return NULL;
    char *text = NULL;
    size_t len = 0;
    fl_error ignored = {0};
    if (fl_read_file(path, &text, &len, &ignored)) return NULL;
    cJSON *doc = cJSON_ParseWithLength(text, len);
    if (doc && fl_json_strict(text, len, path, 0, 0, &ignored)) cJSON_Delete(doc), doc = NULL;
    free(text);
    const cJSON *old_sha = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "model"), "sha256");
    if (!cJSON_IsString(old_sha) || strcmp(old_sha->valuestring, sha)) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

static void iso_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

fl_status fl_eval_write_json(const char *path, const fl_eval_target *t, const fl_metric_list *ms,
                             const double *task_time, const char *const *task_names,
                             const char *const *task_specs, int n_tasks, fl_error *err) {
    char ckpt[FL_PATH_MAX + 64] = "", sha[65] = "", created[32];
    if (t->run_dir) snprintf(ckpt, sizeof ckpt, "%s/checkpoint/model.safetensors", t->run_dir);
    if (ckpt[0] && fl_path_exists(ckpt)) {
        fl_status st = fl_sha256_file(ckpt, sha, err);
        if (st) return st;
    } else {
        ckpt[0] = 0;
    }
    cJSON *old = previous(path, sha);
    cJSON *doc = cJSON_CreateObject(), *tasks = cJSON_CreateArray(), *results = cJSON_CreateArray();
    iso_now(created, sizeof created);
    cJSON_AddStringToObject(doc, "ffnlab_version", FFNLAB_VERSION);
    cJSON_AddStringToObject(doc, "created", created);
    cJSON_AddItemToObject(doc, "model", model_json(t, sha, ckpt));
    keep_old(old, "tasks", tasks, task_names, n_tasks);
    keep_old(old, "results", results, task_names, n_tasks);
    for (int i = 0; i < n_tasks; i++) {
        cJSON *o = cJSON_CreateObject();
        add_str_if(o, "task", task_names[i]);
        add_str_if(o, "spec", task_specs[i]);
        cJSON_AddNumberToObject(o, "time_s", task_time[i]);
        cJSON_AddItemToArray(tasks, o);
    }
    for (size_t i = 0; i < ms->n; i++)
        cJSON_AddItemToArray(results, result_json(&ms->items[i], time_of(ms->items[i].spec, task_time, task_specs, n_tasks)));
    cJSON_AddItemToObject(doc, "tasks", tasks);
    cJSON_AddItemToObject(doc, "results", results);
    cJSON_Delete(old);
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!text) return fl_fail(err, FL_ENOMEM, "%s: out of memory writing results", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print's NUL becomes the final newline */
    fl_status st = fl_write_file_atomic(path, text, len + 1, err);
    free(text);
    return st;
}
