/*
 * tests/support/support.c — see support.h.
 */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "model.h"

double ts_rel_error(const float *a, const float *b, size_t n) {
    double maxdiff = 0, maxref = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > maxdiff || isnan(d)) maxdiff = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return maxdiff / maxref;
}

uint16_t ts_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float ts_bf16_float(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

double ts_act_ref(int act, double x) {
    switch (act) {
    case FL_ACT_GELU: return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case FL_ACT_RELU: return x > 0 ? x : 0;
    case FL_ACT_SILU: return x / (1.0 + exp(-x));
    default: return x;
    }
}

void ts_assert_close(const float *a, const float *b, size_t n, double rtol, double atol,
                     const char *what) {
    size_t bad = 0, worst = 0;
    double maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs(b[i]))) {
            if (bad < 5) print_message("%s[%zu]: got %.8g, want %.8g (diff %.3g)\n", what, i, a[i], b[i], d);
            bad++;
        }
        if (!(d <= maxdiff)) { maxdiff = d; worst = i; }
    }
    if (bad) {
        fail_msg("%s: %zu of %zu values differ; largest diff %.3g at %zu, rel error %.3g", what, bad,
                 n, maxdiff, worst, ts_rel_error(a, b, n));
    }
}

char *ts_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/ffnlab-test-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

char *ts_suite_dir;

int ts_suite_dir_setup(void **state) {
    (void)state;
    ts_suite_dir = ts_tmpdir();
    return 0;
}

int ts_suite_dir_teardown(void **state) {
    (void)state;
    ts_rmtree(ts_suite_dir);
    free(ts_suite_dir);
    ts_suite_dir = NULL;
    return 0;
}

void ts_rmtree(const char *dir) {
    if (!dir || strncmp(dir, "/tmp/", 5) != 0) return; /* never outside /tmp */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
}

int ts_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

char *ts_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int ts_run(const char *cmd, char **out) {
    char full[8192];
    snprintf(full, sizeof full, "(%s) 2>&1 </dev/null", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf; else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *ts_ffnlab_bin(void) { return FFNLAB_BIN; }

int ts_ffnlabv(char **out, const char *fmt, va_list ap) {
    char args[7000], cmd[8192];
    vsnprintf(args, sizeof args, fmt, ap);
    snprintf(cmd, sizeof cmd, "'%s' %s", ts_ffnlab_bin(), args);
    return ts_run(cmd, out);
}

int ts_ffnlab(char **out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int rc = ts_ffnlabv(out, fmt, ap);
    va_end(ap);
    return rc;
}

int ts_shared_data(const char *rel, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", FFNLAB_SHARED_DATA, rel);
    struct stat st;
    return stat(buf, &st) == 0;
}

int ts_gpu_under_test(const char *suite, const fl_backend *(*emulated)(void), const fl_backend **gpu) {
    const char *as_cpu = getenv("FFNLAB_TEST_GPU_AS_CPU");
    int real = 0;
    if (emulated) {
        *gpu = emulated();
    } else if (as_cpu && !strcmp(as_cpu, "1")) {
        *gpu = fl_backend_cpu();
        print_message("FFNLAB_TEST_GPU_AS_CPU=1: the CPU backend stands in for the GPU (checks this test's logic)\n");
    } else {
        fl_error err = {0};
        if (fl_backend_cuda(0, gpu, &err) != FL_OK) {
            printf("%s: skipped: %s\n", suite, err.msg);
            return 77;
        }
        real = 1;
    }
    print_message("GPU: %s\n", (*gpu)->describe());
    return real;
}

char *ts_tree_digest(const char *dir) {
    char cmd[4400], *out = NULL;
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -print | LC_ALL=C sort && find . -type f -exec sha256sum {} + | LC_ALL=C sort",
             dir);
    if (ts_run(cmd, &out) != 0) fail_msg("cannot list %s: %s", dir, out ? out : "");
    return out;
}

void ts_sharpen_attention(fl_model *m, float s) {
    const fl_backend *be = fl_backend_cpu();
    for (int i = 0; i < fl_model_n_params(m); i++) {
        fl_param *p = fl_model_param(m, i);
        if (!strstr(p->name, "wte.") && !strstr(p->name, "wpe.") && !strstr(p->name, ".attn.c_attn.weight")) continue;
        const size_t n = (size_t)fl_numel(&p->value);
        float *h = malloc(n * sizeof *h);
        assert_non_null(h);
        be->ops.to_host(h, &p->value, n * sizeof *h);
        for (size_t k = 0; k < n; k++) h[k] *= s;
        be->ops.from_host(&p->value, h, n * sizeof *h);
        free(h);
    }
}

cJSON *ts_read_json(const char *path) {
    char *text = ts_read_file(path, NULL);
    if (!text) fail_msg("%s: cannot read", path);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    if (!doc) fail_msg("%s: not JSON", path);
    return doc;
}

double ts_json_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("JSON: \"%s\" is missing or not a number", key);
    return v->valuedouble;
}
