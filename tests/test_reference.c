/*
 * tests/test_reference.c — the dense model against an independent PyTorch reference.
 *
 * tests/fixtures/gpt_reference.safetensors (made by tests/reference/make_gpt_reference.py,
 * see tests/reference/README.md) holds a tiny GPT-2 (vocab 64, context 8, d_model 16,
 * 2 layers, 2 heads) with large random weights, a batch of tokens and targets, and the
 * float64-exact logits, loss and gradient of every parameter. This suite loads those weights
 * into an fl_model built with the dense plugin on the CPU backend, runs forward and backward,
 * and compares everything at fp32 tolerance, printing the measured error per tensor. The
 * model's parameter set must equal the fixture's exactly (same names, same shapes), so a
 * renamed or re-laid-out parameter fails here with its name.
 *
 * The second test checks initialisation: the fixture's metadata records GPT-2's init rule
 * (normal(0, 0.02), residual projections 0.02/sqrt(2L), biases 0, LayerNorm 1/0) as the
 * empirical mean and std of each parameter of a larger init-only PyTorch model; a fresh
 * fl_model of that shape must match within sampling noise (std within 5%), and constant
 * inits must be exact.
 */
#include <math.h>      /* fabs, sqrt */
#include <stdio.h>     /* snprintf */
#include <stdlib.h>    /* malloc, strtol */
#include <string.h>    /* strncmp */

#include "support.h"   /* CMocka, ts_assert_close, ts_rel_error */

#include <cjson/cJSON.h>  /* init.config */

#include "backend.h"      /* fl_backend_cpu, ops.from_host / to_host */
#include "model.h"        /* fl_model_* */
#include "safetensors.h"  /* fl_safetensors_* */

#define FIXTURE FFNLAB_TEST_SOURCE_DIR "/fixtures/gpt_reference.safetensors"

/* Tolerances (|got - want| <= ATOL + RTOL |want|). The reference is float64-exact; what is
   left is the C model's float32 rounding (measured errors are printed by each run). */
#define LOGITS_RTOL 2e-5
#define LOGITS_ATOL 1e-5
#define GRAD_RTOL 1e-5
#define GRAD_ATOL 5e-7
#define LOSS_RTOL 1e-6

/* ---- helpers ---------------------------------------------------------------------- */

static int meta_int(const fl_st_file *f, const char *key) {
    const char *v = fl_safetensors_meta(f, key);
    if (!v) fail_msg("fixture: metadata %s missing", key);
    return (int)strtol(v, NULL, 10);
}

static double meta_double(const fl_st_file *f, const char *key) {
    const char *v = fl_safetensors_meta(f, key);
    if (!v) fail_msg("fixture: metadata %s missing", key);
    return strtod(v, NULL);
}

static const fl_st_entry *need(const fl_st_file *f, const char *name, int32_t dtype) {
    const fl_st_entry *e = fl_safetensors_find(f, name);
    if (!e) fail_msg("fixture: tensor %s missing", name);
    if (e->dtype != dtype) fail_msg("fixture: tensor %s has dtype %d, want %d", name, e->dtype, dtype);
    return e;
}

static int64_t entry_numel(const fl_st_entry *e) {
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
    return n;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* A device tensor copied into a new host array. */
static float *to_host_f32(const fl_backend *be, const fl_tensor *t) {
    size_t n = (size_t)fl_numel(t);
    float *h = malloc(n * sizeof *h);
    assert_non_null(h);
    be->ops.to_host(h, t, n * sizeof *h);
    return h;
}

/* A fixture entry is a parameter unless it is ref.* or grad.*. */
static int is_param_entry(const char *name) {
    return strncmp(name, "ref.", 4) != 0 && strncmp(name, "grad.", 5) != 0;
}

/* Prints the normwise relative error, the largest absolute difference and the largest
   fraction of the tolerance any element uses. */
static void report_error(const char *what, const float *got, const float *want, size_t n,
                         double rtol, double atol) {
    double maxdiff = 0, used = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > maxdiff) maxdiff = d;
        if (d / (atol + rtol * fabs(want[i])) > used) used = d / (atol + rtol * fabs(want[i]));
    }
    print_message("  %-42s max rel error %.2e, max |diff| %.2e, %4.1f%% of tolerance\n", what,
                  ts_rel_error(got, want, n), maxdiff, 100.0 * used);
}

/* Checks every parameter's gradient against grad.<name>, scaled by `mult`. */
static void compare_grads(fl_model *m, const fl_backend *be, const fl_st_file *f, float mult,
                          int verbose) {
    for (int i = 0; i < fl_model_n_params(m); i++) {
        fl_param *p = fl_model_param(m, i);
        char key[512];
        snprintf(key, sizeof key, "grad.%s", p->name);
        const fl_st_entry *e = need(f, key, FL_F32);
        size_t n = (size_t)fl_numel(&p->grad);
        assert_int_equal(entry_numel(e), (int64_t)n);
        float *want = malloc(n * sizeof *want);
        assert_non_null(want);
        for (size_t j = 0; j < n; j++) want[j] = mult * ((const float *)e->data)[j];
        float *got = to_host_f32(be, &p->grad);
        if (verbose) report_error(key, got, want, n, GRAD_RTOL, mult * GRAD_ATOL);
        ts_assert_close(got, want, n, GRAD_RTOL, mult * GRAD_ATOL, key);
        free(got);
        free(want);
    }
}

/* ---- forward and backward against the reference -------------------------------------- */

static void test_forward_backward_match_reference(void **state) {
    (void)state;
    fl_error err = {0};
    fl_st_file *f = NULL;
    ts_assert_ok(fl_safetensors_open(FIXTURE, &f, &err), &err);

    const fl_backend *be = fl_backend_cpu();
    int L = meta_int(f, "n_layers"), B = meta_int(f, "batch"), T = meta_int(f, "context");
    int V = meta_int(f, "vocab_size");
    assert_true(L >= 1 && L <= 16);
    const char *specs[16];
    for (int l = 0; l < L; l++) specs[l] = "dense";
    fl_model_config mc = {.vocab_size = V, .context = T, .d_model = meta_int(f, "d_model"),
                          .n_layers = L, .n_heads = meta_int(f, "n_heads"), .ffn_specs = specs,
                          .seed = 1};
    fl_model *m = NULL;
    ts_assert_ok(fl_model_create(&mc, be, &m, &err), &err);

    /* The model's parameter set must equal the fixture's: every model parameter is in
       the file with the same shape, and the file holds no parameter the model lacks. */
    char s1[128], s2[128];
    for (int i = 0; i < fl_model_n_params(m); i++) {
        fl_param *p = fl_model_param(m, i);
        const fl_st_entry *e = fl_safetensors_find(f, p->name);
        if (!e) fail_msg("model parameter %s is not in the reference", p->name);
        int same = e->ndim == p->value.ndim && e->dtype == FL_F32 && p->value.dtype == FL_F32;
        for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == p->value.shape[d];
        if (!same) {
            shape_str(s1, sizeof s1, p->value.ndim, p->value.shape);
            shape_str(s2, sizeof s2, e->ndim, e->shape);
            fail_msg("parameter %s: model shape %s, reference shape %s", p->name, s1, s2);
        }
        be->ops.from_host(&p->value, e->data, fl_nbytes(&p->value));
    }
    for (size_t i = 0; i < fl_safetensors_count(f); i++) {
        const fl_st_entry *e = fl_safetensors_at(f, i);
        if (is_param_entry(e->name) && !fl_model_find_param(m, e->name))
            fail_msg("reference parameter %s is not in the model", e->name);
    }

    const fl_st_entry *tok = need(f, "ref.tokens", FL_I32), *tgt = need(f, "ref.targets", FL_I32);
    const fl_st_entry *ref_logits = need(f, "ref.logits", FL_F32);
    assert_int_equal(entry_numel(tok), (int64_t)B * T);
    assert_int_equal(entry_numel(ref_logits), (int64_t)B * T * V);
    const int32_t *tokens = tok->data, *targets = tgt->data;
    double want_loss = ((const float *)need(f, "ref.loss", FL_F32)->data)[0];
    size_t nl = (size_t)B * T * V;

    /* Forward without targets (inference): logits only. */
    double loss = -1;
    ts_assert_ok(fl_model_forward(m, tokens, NULL, B, T, 0, 0, &loss, &err), &err);
    const fl_tensor *lt = fl_model_logits(m);
    assert_non_null(lt);
    assert_int_equal(fl_numel(lt), (int64_t)nl);
    float *got = to_host_f32(be, lt);
    print_message("reference (%d tensors):\n", (int)fl_safetensors_count(f));
    report_error("logits (no targets)", got, ref_logits->data, nl, LOGITS_RTOL, LOGITS_ATOL);
    ts_assert_close(got, ref_logits->data, nl, LOGITS_RTOL, LOGITS_ATOL, "logits (no targets)");
    free(got);

    /* Training forward: loss, and the logits must survive the loss computation. */
    fl_model_zero_grad(m);
    ts_assert_ok(fl_model_forward(m, tokens, targets, B, T, 1, 0, &loss, &err), &err);
    print_message("  %-42s got %.9g want %.9g (rel error %.3g)\n", "loss", loss, want_loss,
                  fabs(loss - want_loss) / want_loss);
    if (!(fabs(loss - want_loss) <= LOSS_RTOL * want_loss))
        fail_msg("loss %.9g, reference %.9g", loss, want_loss);
    if (!(fabs(fl_model_ce_loss(m) - want_loss) <= LOSS_RTOL * want_loss))
        fail_msg("fl_model_ce_loss %.9g, reference %.9g", fl_model_ce_loss(m), want_loss);
    got = to_host_f32(be, fl_model_logits(m));
    report_error("logits (with targets)", got, ref_logits->data, nl, LOGITS_RTOL, LOGITS_ATOL);
    ts_assert_close(got, ref_logits->data, nl, LOGITS_RTOL, LOGITS_ATOL, "logits (with targets)");
    free(got);

    /* Backward: every gradient. */
    ts_assert_ok(fl_model_backward(m, &err), &err);
    compare_grads(m, be, f, 1.0f, 1);

    /* Gradients accumulate: a second forward/backward without zero_grad doubles them. */
    ts_assert_ok(fl_model_forward(m, tokens, targets, B, T, 1, 1, &loss, &err), &err);
    ts_assert_ok(fl_model_backward(m, &err), &err);
    compare_grads(m, be, f, 2.0f, 0);

    fl_model_free(m);
    fl_safetensors_close(f);
}

/* ---- initialisation against GPT-2's rule --------------------------------------------- */

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("fixture: init.config lacks %s", key);
    return v->valueint;
}

static void test_init_matches_gpt2_rule(void **state) {
    (void)state;
    fl_error err = {0};
    fl_st_file *f = NULL;
    ts_assert_ok(fl_safetensors_open(FIXTURE, &f, &err), &err);
    const char *js = fl_safetensors_meta(f, "init.config");
    if (!js) fail_msg("fixture: metadata init.config missing");
    cJSON *cfg = cJSON_Parse(js);
    assert_non_null(cfg);
    int L = json_int(cfg, "n_layers");
    assert_true(L >= 1 && L <= 16);
    const char *specs[16];
    for (int l = 0; l < L; l++) specs[l] = "dense";
    fl_model_config mc = {.vocab_size = json_int(cfg, "vocab_size"),
                          .context = json_int(cfg, "context"),
                          .d_model = json_int(cfg, "d_model"), .n_layers = L,
                          .n_heads = json_int(cfg, "n_heads"), .ffn_specs = specs,
                          .seed = 12345};
    cJSON_Delete(cfg);

    const fl_backend *be = fl_backend_cpu();
    fl_model *m = NULL;
    ts_assert_ok(fl_model_create(&mc, be, &m, &err), &err);
    /* GPT-2 has 4 + 12 L parameters; each must have a recorded rule (names checked below). */
    assert_int_equal(fl_model_n_params(m), 4 + 12 * L);

    print_message("init (%d params, model seed %llu):\n", fl_model_n_params(m),
                  (unsigned long long)mc.seed);
    int bad = 0;
    for (int i = 0; i < fl_model_n_params(m); i++) {
        fl_param *p = fl_model_param(m, i);
        char key[512];
        snprintf(key, sizeof key, "init.kind.%s", p->name);
        const char *kind = fl_safetensors_meta(f, key);
        if (!kind) fail_msg("model parameter %s has no init rule in the reference", p->name);
        snprintf(key, sizeof key, "init.mean.%s", p->name);
        double want_mean = meta_double(f, key);
        snprintf(key, sizeof key, "init.std.%s", p->name);
        double want_std = meta_double(f, key);

        size_t n = (size_t)fl_numel(&p->value);
        float *v = to_host_f32(be, &p->value);
        double sum = 0, ss = 0;
        for (size_t j = 0; j < n; j++) sum += v[j];
        double mean = sum / (double)n;
        for (size_t j = 0; j < n; j++) ss += (v[j] - mean) * (v[j] - mean);
        double sd = sqrt(ss / (double)n);

        if (!strcmp(kind, "normal")) {
            /* std within 5%; mean within 5 sigma of the difference of two sample means */
            double mean_tol = 5.0 * want_std * sqrt(2.0 / (double)n);
            int ok = fabs(sd / want_std - 1.0) <= 0.05 && fabs(mean - want_mean) <= mean_tol;
            print_message("  %-40s std %.6f want %.6f (%+.2f%%), mean %+.2e%s\n", p->name, sd,
                          want_std, 100.0 * (sd / want_std - 1.0), mean, ok ? "" : "  FAILED");
            bad += !ok;
        } else {
            /* constant: every element exactly the recorded value (0 or 1) */
            size_t off = 0;
            for (size_t j = 0; j < n; j++) off += v[j] != (float)want_mean;
            if (off) print_message("  %-40s %zu of %zu values differ from %g  FAILED\n", p->name,
                                   off, n, want_mean);
            bad += off != 0;
        }
        free(v);
    }
    if (bad) fail_msg("%d parameters do not follow GPT-2's init rule", bad);
    fl_model_free(m);
    fl_safetensors_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_backward_match_reference),
        cmocka_unit_test(test_init_matches_gpt2_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
