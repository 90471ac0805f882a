/*
 * tests/conformance/ffn_conformance.c — the contract every FFN plugin must keep.
 *
 * After ggml's test-backend-ops: one program, any plugin. It loads a plugin
 * (by name or path) the way training does, parses a small option spec with
 * the host's parser, creates layers with d_model = 16 on a CPU host (the test
 * build ffnlab-conformance-emu: on the CPU emulation of a CUDA device, see
 * device_under_test) and checks the promises of ffnlab/ffn.h, one CMocka test
 * per promise so a failure names the clause it broke:
 *
 *   descriptor           header fields filled in; every option has help text;
 *                        defaults parse
 *   option_errors        unknown key / out-of-range value / bad choice →
 *                        FL_EINVAL naming the option, before create runs
 *   create               declared parameters: prefixed unique names, positive
 *                        shapes, f32, known flags, finite values, zero grads
 *   create_rejects_bad_shape   d_model = 0 → an error with a message
 *   gradients            backward against central finite differences, for dx
 *                        and every declared parameter (see below)
 *   aux_gradients        the same with R = 0: the aux losses' gradient alone
 *   grad_accumulates     two forward+backward passes double every parameter
 *                        gradient (+=); dx is overwritten, not accumulated
 *   train_determinism    same rng_key → bit-identical y and dx; x and dy are
 *                        not written; y's old contents are not read
 *   eval_determinism     eval mode: bit-identical y whatever the rng_key
 *   eval_follows_parameters  change one value of a parameter between two
 *                        inference forwards → the output of a fresh layer
 *                        with the new values; change it back → the old output
 *   batch_shapes         N may change from call to call (generation, eval)
 *   rejects_bad_shapes   x or dy whose last dimension is not d_model → an
 *                        error with a message, and the layer works after it
 *   aux_losses           named, unique, finite; the count does not depend on max
 *   stats                "active_params" and "flops_per_token" present,
 *                        positive, active ≤ declared, and consistent with a
 *                        measurement: the parameters one token's backward
 *                        touches
 *   model_training       a 1-layer model with the plugin takes AdamW steps
 *                        with finite loss and gradients
 *   checkpoint_round_trip  eval, train, save, load into a model made with
 *                        another seed (and evaluated once before) →
 *                        bit-identical parameters and eval logits
 *   destroy              create/destroy cycles with and without a forward
 *                        (leaks and overruns show in the sanitizer build)
 *
 * Gradient check. loss = Σ y·R (R fixed, random) + Σ the plugin's aux losses,
 * forward in TRAIN mode with a fixed ctx->rng_key, so noisy gating and Gumbel
 * noise are the same in every evaluation. Parameters first get a jitter
 * (normal, std 0.15) so GPT-2's tiny init does not leave every nonlinearity
 * in its linear range, where a wrong derivative would hide. For each tensor up
 * to 24 coordinates are sampled (half where the analytic gradient is largest,
 * half at random) and compared with (L(v+e) - L(v-e)) / 2e, e = 1e-2;
 * relative error = max |analytic - numeric| / max |gradient| over the tensor,
 * tolerance 2e-2.
 *
 * The one allowance: routing (top-k experts, memory slots, controller units)
 * is piecewise constant, and a difference that straddles a switch measures
 * the jump, not a derivative. Such a coordinate is recognised by the
 * difference at e disagreeing with the one at e/2 (a smooth function makes
 * them agree to O(e²)); it is then retried with e/8, and skipped and counted
 * only if that straddles a switch too. The test fails if more than 25% of all
 * sampled coordinates were skipped. A layer whose switches are so dense that
 * every window holds several (PKM with knn = 32 at d_model = 16) is out of
 * reach of finite differences: test it with a smaller configuration.
 *
 * Straight-through estimators (a backward that is deliberately not the
 * derivative of the forward) cannot pass; test such a plugin in the mode
 * whose forward its backward differentiates (cnt: soft_mix=1).
 *
 * Usage: see usage() below; ctest runs it once per plugin under plugins/
 * with the spec from tests/conformance/configs.txt.
 */
#include <stdarg.h>   /* cmocka prerequisites */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>   /* cmocka_unit_test, assert_*, print_message */

#include <float.h>    /* FLT_EPSILON */
#include <math.h>     /* fabs, isfinite, NAN */
#include <stdio.h>    /* snprintf, fprintf */
#include <stdlib.h>   /* calloc, free, getenv */
#include <string.h>   /* strcmp, strstr, memcmp */

#include "backend.h"    /* fl_backend_cpu */
#include "checkpoint.h" /* fl_checkpoint_save, fl_checkpoint_load */
#include "host_table.h"
#include "loader.h"     /* fl_plugin_load */
#include "model.h"      /* fl_model_create and friends */
#include "optim.h"      /* fl_adamw_step */
#include "options.h"    /* fl_options_parse, fl_spec_split */
#include "params.h"     /* fl_param_list, struct fl_param_scope */
#include "support.h"    /* ts_assert_ok, ts_tmpdir, ts_rmtree */
#ifdef FFNLAB_TEST_CUDA_EMU
#include "cuda_emu_backend.h" /* ts_cuda_emu_backend */
#endif

enum {
    D = 16,                /* d_model of every layer created here */
    BATCH = 2, SEQ = 6,    /* the standard batch: N = 12 rows */
    VOCAB = 64,            /* token ids and the model's vocabulary */
    MAX_COORDS = 24,       /* sampled coordinates per tensor */
    MAX_STATS = 64
};

static const float EPS = 1e-2f;          /* finite-difference step */
static const double TOL = 2e-2;          /* relative gradient error allowed */
static const double MAX_SKIPPED = 0.25;  /* fraction of straddling coordinates allowed */
static const float JITTER = 0.15f;       /* std of the noise added to parameters */
static const uint64_t KEY = 0x5eed;      /* the fixed ctx->rng_key */

#define PREFIX "transformer.h.0.mlp."

/* What the command line chose, resolved once in main. */
static struct {
    const fl_backend *be;  /* the device every layer and model runs on */
    char path[4096];       /* the plugin file */
    char name[128];        /* its descriptor name */
    char opts[2048];       /* option text "k=v,..." (may be empty) */
    fl_plugin plugin;      /* loaded for the whole run */
    const fl_ffn_plugin *ffn;
} g;

/* ------------------------------------------------------------------------ */
/* A layer on the CPU host, with one batch                                     */
/* ------------------------------------------------------------------------ */

typedef struct fx {
    const fl_backend *be;
    fl_host host;
    fl_option_set opts;
    fl_param_list params;
    struct fl_param_scope scope;
    void *layer;
    /* the batch: x[N,d], y[N,d], R = dy[N,d], dx[N,d]; tokens/positions [B,T] */
    int64_t B, T, N;
    float *x, *y, *r, *dx;
    int32_t *tokens, *positions;
    fl_tensor tx, ty, tr, tdx, ttok, tpos;
    /* copies a test keeps, freed with the fixture (so a failing assert,
       which leaves the test by longjmp, leaks nothing) */
    float *kept[8];
    int n_kept;
} fx;

static fl_tensor wrap(void *data, int32_t dtype, int64_t d0, int64_t d1, int64_t d2) {
    int64_t shape[3] = {d0, d1, d2};
    return fl_wrap(data, dtype, g.be->device, d2 ? 3 : 2, shape);
}

static void fx_free_batch(fx *f) {
    free(f->x), free(f->y), free(f->r), free(f->dx);
    free(f->tokens), free(f->positions);
    f->x = f->y = f->r = f->dx = NULL;
    f->tokens = f->positions = NULL;
}

/* A batch of B sequences of T tokens: x ~ normal(0,1) (the plugin's input is
   a LayerNorm output), R ~ normal(0,1), token ids and positions. */
static void fx_batch(fx *f, int64_t B, int64_t T, uint64_t seed) {
    fx_free_batch(f);
    f->B = B, f->T = T, f->N = B * T;
    size_t n = (size_t)(f->N * D);
    f->x = malloc(n * sizeof *f->x), f->y = malloc(n * sizeof *f->y);
    f->r = malloc(n * sizeof *f->r), f->dx = malloc(n * sizeof *f->dx);
    f->tokens = malloc((size_t)f->N * sizeof *f->tokens);
    f->positions = malloc((size_t)f->N * sizeof *f->positions);
    assert_true(f->x && f->y && f->r && f->dx && f->tokens && f->positions);
    for (size_t i = 0; i < n; i++) {
        f->x[i] = fl_rng_normal(seed, i);
        f->r[i] = fl_rng_normal(seed + 1, i);
        f->y[i] = f->dx[i] = NAN; /* the plugin must write them, not read them */
    }
    for (int64_t i = 0; i < f->N; i++) {
        f->tokens[i] = (int32_t)(fl_rng_bits(seed + 2, (uint64_t)i) % VOCAB);
        f->positions[i] = (int32_t)(i % T);
    }
    f->tx = wrap(f->x, FL_F32, B, T, D), f->ty = wrap(f->y, FL_F32, B, T, D);
    f->tr = wrap(f->r, FL_F32, B, T, D), f->tdx = wrap(f->dx, FL_F32, B, T, D);
    f->ttok = wrap(f->tokens, FL_I32, B, T, 0), f->tpos = wrap(f->positions, FL_I32, B, T, 0);
}

/* n floats of memory kept until the fixture is freed; a copy of v if given. */
static float *fx_keep(fx *f, const float *v, int64_t n) {
    assert_true(f->n_kept < (int)(sizeof f->kept / sizeof f->kept[0]));
    float *c = malloc((size_t)(n ? n : 1) * sizeof *c);
    assert_non_null(c);
    if (v) memcpy(c, v, (size_t)n * sizeof *c);
    return f->kept[f->n_kept++] = c;
}

/* Frees what was kept after the first `mark` copies. */
static void fx_drop_kept(fx *f, int mark) {
    while (f->n_kept > mark) free(f->kept[--f->n_kept]);
}

/* Parses opts and creates the layer; returns create's status (the layer is
   NULL on failure). */
static fl_status fx_create(fx *f, const char *opts, int d_model, fl_error *err) {
    memset(f, 0, sizeof *f);
    f->be = g.be;
    fl_host_init(&f->host, f->be, NULL);
    const fl_plugin_header *h = g.plugin.header;
    fl_status st = fl_options_parse(h->options, h->n_options, opts, "conformance", &f->opts, err);
    if (st) return st;
    f->scope = (struct fl_param_scope){.prefix = PREFIX, .list = &f->params, .be = f->be,
                                       .seed = 1234, .n_layers = 2};
    fl_ffn_config cfg = {.d_model = d_model, .layer_index = 0, .n_layers = 2, .vocab_size = VOCAB,
                         .values = f->opts.values, .scope = &f->scope};
    st = g.ffn->create(&f->host, &cfg, &f->layer, err);
    if (st) f->layer = NULL;
    return st;
}

static void fx_free(fx *f) {
    fx_drop_kept(f, 0);
    if (f->layer) g.ffn->destroy(f->layer);
    fl_params_free(&f->params, f->be);
    fl_options_free(&f->opts);
    fx_free_batch(f);
}

static int setup_layer(void **state) {
    fx *f = calloc(1, sizeof *f);
    fl_error err = {0};
    if (!f) return -1;
    if (fx_create(f, g.opts, D, &err)) {
        print_error("create failed: %s\n", err.msg);
        fx_free(f);
        free(f);
        return -1;
    }
    fx_batch(f, BATCH, SEQ, 11);
    *state = f;
    return 0;
}

static int teardown_layer(void **state) {
    fx *f = *state;
    if (f) fx_free(f);
    free(f);
    return 0;
}

static fl_ffn_ctx fx_ctx(const fx *f, int train, uint64_t key) {
    fl_ffn_ctx c = {.train = train, .step = 0, .rng_key = key, .B = f->B, .T = f->T,
                    .tokens = &f->ttok, .positions = &f->tpos};
    return c;
}

static void fx_forward(fx *f, int train, uint64_t key) {
    fl_ffn_ctx c = fx_ctx(f, train, key);
    fl_error err = {0};
    ts_assert_ok(g.ffn->forward(f->layer, &c, &f->tx, &f->ty, &err), &err);
}

static void fx_backward(fx *f, int train, uint64_t key) {
    fl_ffn_ctx c = fx_ctx(f, train, key);
    fl_error err = {0};
    ts_assert_ok(g.ffn->backward(f->layer, &c, &f->tr, &f->tdx, &err), &err);
}

static fl_param *param_at(fx *f, int i) { return &f->params.items[i]->pub; }
static float *vals(fl_param *p) { return (float *)p->value.data; }
static float *grads(fl_param *p) { return (float *)p->grad.data; }
static const char *rel_name(const fl_param *p) {
    return strncmp(p->name, PREFIX, strlen(PREFIX)) ? p->name : p->name + strlen(PREFIX);
}

/* Gradients zero and sparse-row marks cleared, as before a training step. */
static void fx_zero_grads(fx *f) {
    for (int i = 0; i < f->params.n; i++) {
        f->be->ops.fill(&param_at(f, i)->grad, 0.0f);
        fl_params_clear_touched(f->params.items[i]);
    }
}

static void fx_jitter(fx *f) {
    for (int i = 0; i < f->params.n; i++) {
        fl_param *p = param_at(f, i);
        uint64_t key = fl_rng_key(77, p->name);
        for (int64_t k = 0; k < fl_numel(&p->value); k++) vals(p)[k] += JITTER * fl_rng_normal(key, (uint64_t)k);
    }
}

static int64_t fx_total_params(fx *f) {
    int64_t n = 0;
    for (int i = 0; i < f->params.n; i++) n += fl_numel(&param_at(f, i)->value);
    return n;
}

static int aux_of(fx *f, fl_stat *out, int max) {
    fl_stat none[1];
    return g.ffn->aux_loss ? g.ffn->aux_loss(f->layer, out ? out : none, max) : 0;
}

static double aux_sum(fx *f) {
    fl_stat s[MAX_STATS];
    int n = aux_of(f, s, MAX_STATS);
    double sum = 0;
    for (int i = 0; i < n && i < MAX_STATS; i++) sum += s[i].value;
    return sum;
}

static int all_finite(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* The value of stat `name` after the last forward, or NAN if absent. */
static double stat_value(fx *f, const char *name) {
    fl_stat s[MAX_STATS];
    int n = g.ffn->stats ? g.ffn->stats(f->layer, s, MAX_STATS) : 0;
    for (int i = 0; i < n && i < MAX_STATS; i++)
        if (s[i].name && !strcmp(s[i].name, name)) return s[i].value;
    return NAN;
}

/* ------------------------------------------------------------------------ */
/* descriptor, option_errors                                                  */
/* ------------------------------------------------------------------------ */

static int is_option_name(const char *s) {
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

static void check_option_entry(const fl_option *o) {
    if (!is_option_name(o->name)) fail_msg("option name '%s' is not [a-z0-9_]+", o->name ? o->name : "(null)");
    if (!o->help || !o->help[0]) fail_msg("option '%s' has no help text", o->name);
    if (o->type < FL_OPT_INT || o->type > FL_OPT_STRING) fail_msg("option '%s': unknown type %d", o->name, o->type);
    if (o->type == FL_OPT_ENUM && (!o->choices || !o->choices[0]))
        fail_msg("enum option '%s' lists no choices", o->name);
}

static void test_descriptor(void **state) {
    (void)state;
    const fl_plugin_header *h = g.plugin.header;
    assert_int_equal(h->magic, FL_PLUGIN_MAGIC);
    assert_int_equal(h->abi_major, FL_FFN_ABI_MAJOR);
    assert_true(h->abi_minor <= FL_FFN_ABI_MINOR);
    assert_int_equal(h->kind, FL_PLUGIN_FFN);
    assert_true(h->struct_size >= offsetof(fl_ffn_plugin, destroy) + sizeof(void (*)(void *)));
    if (!h->name || !h->name[0]) fail_msg("descriptor has no name");
    if (!h->description || !h->description[0]) fail_msg("descriptor has no description");
    if (!h->version || !h->version[0]) fail_msg("descriptor has no version");
    assert_true(h->n_options >= 0);
    if (h->n_options > 0) assert_non_null(h->options);
    assert_true(g.ffn->create && g.ffn->forward && g.ffn->backward && g.ffn->destroy);
    for (int i = 0; i < h->n_options; i++) {
        check_option_entry(&h->options[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(h->options[i].name, h->options[j].name))
                fail_msg("option '%s' listed twice", h->options[i].name);
    }
    fl_option_set set;
    fl_error err = {0};
    ts_assert_ok(fl_options_parse(h->options, h->n_options, NULL, "defaults", &set, &err), &err);
    fl_options_free(&set);
    print_message("  %s %s (ABI %u.%u): %s; %d options\n", h->name, h->version, (unsigned)h->abi_major,
                  (unsigned)h->abi_minor, h->description, (int)h->n_options);
}

/* Parses text; expects FL_EINVAL with `needle` in the message. */
static void expect_parse_error(const char *text, const char *needle) {
    const fl_plugin_header *h = g.plugin.header;
    fl_option_set set;
    fl_error err = {0};
    fl_status st = fl_options_parse(h->options, h->n_options, text, "conformance", &set, &err);
    if (st == FL_OK) {
        fl_options_free(&set);
        fail_msg("options '%s' were accepted; expected FL_EINVAL naming '%s'", text, needle);
    }
    print_message("  %-36s -> %s\n", text, err.msg);
    assert_int_equal(st, FL_EINVAL);
    if (!strstr(err.msg, needle)) fail_msg("the message for '%s' does not name '%s': %s", text, needle, err.msg);
}

/* One value outside the option's own range or choices, or "" if it has none. */
static void bad_value(const fl_option *o, char *buf, size_t n) {
    buf[0] = 0;
    if (o->type == FL_OPT_INT && o->min <= o->max) snprintf(buf, n, "%.0f", o->min - 1);
    else if (o->type == FL_OPT_FLOAT && o->min <= o->max) snprintf(buf, n, "%.17g", o->min - 1.0);
    else if (o->type == FL_OPT_ENUM) snprintf(buf, n, "conformance_no_such_choice");
    else if (o->type == FL_OPT_BOOL) snprintf(buf, n, "maybe");
}

static void test_option_errors(void **state) {
    (void)state;
    char text[4096];
    /* the user's spec plus one unknown key: the whole text is parsed before
       create, so the layer is never built from a half-valid spec */
    snprintf(text, sizeof text, "%s%sconformance_unknown_key=1", g.opts, g.opts[0] ? "," : "");
    expect_parse_error(text, "conformance_unknown_key");
    const fl_plugin_header *h = g.plugin.header;
    for (int i = 0; i < h->n_options; i++) {
        char bad[128];
        bad_value(&h->options[i], bad, sizeof bad);
        if (!bad[0]) continue;
        snprintf(text, sizeof text, "%s=%s", h->options[i].name, bad);
        expect_parse_error(text, h->options[i].name);
    }
}

/* ------------------------------------------------------------------------ */
/* create                                                                     */
/* ------------------------------------------------------------------------ */

static void check_param(fl_param *p, fl_param_list *all, int index) {
    const uint32_t known = FL_PARAM_DECAY | FL_PARAM_RESIDUAL_OUT | FL_PARAM_EXPERT | FL_PARAM_SPARSE_ROWS;
    const char *n = p->name;
    if (strncmp(n, PREFIX, strlen(PREFIX)) || !n[strlen(PREFIX)])
        fail_msg("parameter '%s' is not named " PREFIX "<name>", n);
    for (int j = 0; j < index; j++)
        if (!strcmp(all->items[j]->pub.name, n)) fail_msg("parameter '%s' declared twice", n);
    if (p->value.ndim < 1 || p->value.ndim > FL_MAX_DIMS) fail_msg("%s: ndim %d", n, p->value.ndim);
    for (int d = 0; d < p->value.ndim; d++)
        if (p->value.shape[d] < 1) fail_msg("%s: dimension %d is %lld", n, d, (long long)p->value.shape[d]);
    assert_int_equal(p->value.dtype, FL_F32);
    if (p->flags & ~known) fail_msg("%s: unknown flag bits 0x%x", n, (unsigned)(p->flags & ~known));
    if ((p->flags & FL_PARAM_EXPERT) && (p->shard_offset != 0 || p->global_dim0 != p->value.shape[0]))
        fail_msg("%s: expert shard %lld of %lld in one process", n, (long long)p->shard_offset,
                 (long long)p->global_dim0);
    int64_t k = fl_numel(&p->value);
    if (!all_finite(vals(p), k)) fail_msg("%s: initial value not finite", n);
    for (int64_t i = 0; i < k; i++)
        if (grads(p)[i] != 0.0f) fail_msg("%s: gradient not zero after create", n);
}

static void test_create(void **state) {
    fx *f = *state;
    assert_non_null(f->layer);
    if (f->params.n < 1) fail_msg("create declared no parameters");
    for (int i = 0; i < f->params.n; i++) {
        fl_param *p = param_at(f, i);
        check_param(p, &f->params, i);
        print_message("  %-24s [%lld", rel_name(p), (long long)p->value.shape[0]);
        for (int d = 1; d < p->value.ndim; d++) print_message(",%lld", (long long)p->value.shape[d]);
        print_message("]  flags 0x%x\n", (unsigned)p->flags);
    }
    print_message("  %d parameters, %lld values\n", f->params.n, (long long)fx_total_params(f));
}

static void test_create_rejects_bad_shape(void **state) {
    (void)state;
    fx f;
    fl_error err = {0};
    fl_status st = fx_create(&f, g.opts, 0, &err);
    print_message("  d_model = 0 -> status %d: %s\n", (int)st, err.msg);
    fx_free(&f);
    if (st == FL_OK) fail_msg("create accepted d_model = 0");
    if (!err.msg[0]) fail_msg("create failed without a message");
}

/* ------------------------------------------------------------------------ */
/* gradients                                                                  */
/* ------------------------------------------------------------------------ */

/* loss = Σ y·R + Σ aux after a TRAIN forward with the fixed key. */
static double fx_loss(fx *f) {
    fx_forward(f, 1, KEY);
    double s = 0;
    for (int64_t i = 0; i < f->N * D; i++) s += (double)f->y[i] * f->r[i];
    return s + aux_sum(f);
}

/* Σ |y·R|: the size of the terms whose float rounding is the noise of a
   finite difference. */
static double loss_magnitude(fx *f) {
    fx_forward(f, 1, KEY);
    double s = fabs(aux_sum(f));
    for (int64_t i = 0; i < f->N * D; i++) s += fabs((double)f->y[i] * f->r[i]);
    return s;
}

/* Up to MAX_COORDS distinct indices of [0, n): all if n is small, else half
   where |ana| is largest (a sparse gradient's live part) and half at random
   (where a gradient that should be there might be missing). */
static int pick_coords(const float *ana, int64_t n, uint64_t key, int64_t *out) {
    if (n <= MAX_COORDS) {
        for (int64_t i = 0; i < n; i++) out[i] = i;
        return (int)n;
    }
    int m = 0;
    for (; m < MAX_COORDS / 2; m++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            int taken = 0;
            for (int j = 0; j < m && !taken; j++) taken = out[j] == i;
            if (!taken && (best < 0 || fabsf(ana[i]) > fabsf(ana[best]))) best = i;
        }
        out[m] = best;
    }
    for (uint64_t c = 0; m < MAX_COORDS && c < 1000; c++) {
        int64_t i = (int64_t)(fl_rng_bits(key, c) % (uint64_t)n);
        int taken = 0;
        for (int j = 0; j < m && !taken; j++) taken = out[j] == i;
        if (!taken) out[m++] = i;
    }
    return m;
}

/* Central differences of the loss in *v at steps e and e/2. */
static void central(fx *f, float *v, float e, double *d_e, double *d_half) {
    float keep = *v;
    *v = keep + e;
    double lp = fx_loss(f);
    *v = keep - e;
    double lm = fx_loss(f);
    *v = keep + e / 2;
    double lp2 = fx_loss(f);
    *v = keep - e / 2;
    double lm2 = fx_loss(f);
    *v = keep;
    *d_e = (lp - lm) / (2.0 * e);
    *d_half = (lp2 - lm2) / e;
}

/* The numerical derivative in *v, or 0 (with *num untouched) when every step
   tried straddles a discontinuity: the differences at e and e/2 disagree by
   more than threshold (which grows like the float noise, 1/e). A step 8x
   smaller is tried before giving up, so a coordinate is only skipped when a
   switch lies within EPS/8 of it. */
static int numeric(fx *f, float *v, double threshold, double *num) {
    for (float e = EPS; e >= EPS / 8; e /= 8) {
        double d_e, d_half;
        central(f, v, e, &d_e, &d_half);
        if (fabs(d_e - d_half) <= threshold * (EPS / e)) {
            *num = d_e;
            return 1;
        }
    }
    return 0;
}

typedef struct fd_tally {
    int compared, skipped, failed;
    double worst;
    char worst_name[160];
} fd_tally;

/* Compares the analytic gradient ana of tensor v (n values) with finite
   differences; floor is the noise level of a numerical derivative. */
static void fd_tensor(fx *f, const char *label, float *v, const float *ana, int64_t n, double floor,
                      fd_tally *t) {
    int64_t idx[MAX_COORDS];
    double num[MAX_COORDS];
    int m = pick_coords(ana, n, fl_rng_key(5, label), idx), skipped = 0;
    double scale = floor, maxdiff = 0;
    for (int k = 0; k < m; k++) scale = fmax(scale, fabs(ana[idx[k]]));
    double threshold = fmax(TOL / 2 * scale, floor);
    int straddle[MAX_COORDS];
    for (int k = 0; k < m; k++) {
        straddle[k] = !numeric(f, v + idx[k], threshold, &num[k]);
        skipped += straddle[k];
    }
    for (int k = 0; k < m; k++)
        if (!straddle[k]) scale = fmax(scale, fabs(num[k]));
    int64_t worst_at = -1;
    for (int k = 0; k < m; k++) {
        if (straddle[k]) continue;
        double d = fabs(ana[idx[k]] - num[k]);
        if (!(d <= maxdiff)) maxdiff = d, worst_at = k;
    }
    double rel = maxdiff / scale;
    print_message("  %-26s %2d sampled %2d skipped  rel error %.2e\n", label, m, skipped, rel);
    if (!(rel <= TOL)) {
        print_message("  %-26s worst at [%lld]: analytic %.6g, numeric %.6g\n", label,
                      (long long)idx[worst_at], ana[idx[worst_at]], num[worst_at]);
        t->failed++;
    }
    if (!(rel <= t->worst)) {
        t->worst = rel;
        snprintf(t->worst_name, sizeof t->worst_name, "%s", label);
    }
    t->compared += m - skipped;
    t->skipped += skipped;
}

/* Backward once at the fixture's parameters and R, then every tensor
   against finite differences of fx_loss. */
static void gradient_check(fx *f) {
    fx_zero_grads(f);
    fx_forward(f, 1, KEY);
    fx_backward(f, 1, KEY);
    if (!all_finite(f->dx, f->N * D)) fail_msg("backward left dx not finite (it must overwrite dx)");
    int64_t nx = f->N * D;
    float *dx = fx_keep(f, f->dx, nx);
    double floor = 1e-4 * loss_magnitude(f);
    fd_tally t = {0};
    fd_tensor(f, "dx", f->x, dx, nx, floor, &t);
    for (int i = 0; i < f->params.n; i++) {
        fl_param *p = param_at(f, i);
        if (!all_finite(grads(p), fl_numel(&p->grad))) fail_msg("%s: gradient not finite", p->name);
        fd_tensor(f, rel_name(p), vals(p), grads(p), fl_numel(&p->value), floor, &t);
    }
    int total = t.compared + t.skipped;
    print_message("  worst relative error %.2e (%s); %d of %d coordinates skipped as routing switches\n",
                  t.worst, t.worst_name, t.skipped, total);
    if (t.failed) fail_msg("%d tensor(s) with relative error above %.0e; worst %.3g in %s", t.failed, TOL,
                           t.worst, t.worst_name);
    if (t.skipped > MAX_SKIPPED * total)
        fail_msg("%d of %d finite differences straddled a discontinuity (more than %.0f%%): the forward "
                 "is not piecewise smooth at this scale",
                 t.skipped, total, 100 * MAX_SKIPPED);
}

/* loss = Σ y·R + Σ aux. */
static void test_gradients(void **state) {
    fx *f = *state;
    fx_jitter(f);
    gradient_check(f);
}

/* loss = Σ aux alone (R = 0): next to Σ y·R a small aux loss (a balance
   loss of weight 0.01) hides, so its gradient gets a check of its own. */
static void test_aux_gradients(void **state) {
    fx *f = *state;
    fx_jitter(f);
    fx_forward(f, 1, KEY);
    if (aux_of(f, NULL, 0) == 0) {
        print_message("  no auxiliary losses: nothing to check\n");
        return;
    }
    memset(f->r, 0, (size_t)(f->N * D) * sizeof *f->r);
    gradient_check(f);
}

/* ------------------------------------------------------------------------ */
/* Accumulation and determinism                                               */
/* ------------------------------------------------------------------------ */

static float *snapshot_grads(fx *f) {
    int64_t at = 0;
    float *s = fx_keep(f, NULL, fx_total_params(f));
    for (int i = 0; i < f->params.n; i++) {
        fl_param *p = param_at(f, i);
        memcpy(s + at, grads(p), fl_nbytes(&p->grad));
        at += fl_numel(&p->grad);
    }
    return s;
}

/* Two forward+backward passes (gradient accumulation over micro-batches)
   give twice the gradient of one. */
static void test_grad_accumulates(void **state) {
    fx *f = *state;
    fx_jitter(f);
    fx_zero_grads(f);
    fx_forward(f, 1, KEY);
    fx_backward(f, 1, KEY);
    float *once = snapshot_grads(f);
    float *dx1 = fx_keep(f, f->dx, f->N * D);
    fx_forward(f, 1, KEY);
    fx_backward(f, 1, KEY);
    ts_assert_close(f->dx, dx1, (size_t)(f->N * D), 1e-6, 1e-7, "dx after a second backward (overwritten, not +=)");
    int64_t at = 0;
    for (int i = 0; i < f->params.n; i++) {
        fl_param *p = param_at(f, i);
        int64_t n = fl_numel(&p->grad);
        for (int64_t k = 0; k < n; k++) once[at + k] *= 2;
        char what[200];
        snprintf(what, sizeof what, "%s grad after two passes", rel_name(p));
        ts_assert_close(grads(p), once + at, (size_t)n, 1e-5, 1e-7, what);
        at += n;
    }
}

static void assert_bit_identical(const float *a, const float *b, int64_t n, const char *what) {
    if (!memcmp(a, b, (size_t)n * sizeof *a)) return;
    ts_assert_close(a, b, (size_t)n, 0, 0, what);
    fail_msg("%s: not bit-identical", what); /* e.g. +0 vs -0, NaN payloads */
}

static void test_train_determinism(void **state) {
    fx *f = *state;
    int64_t n = f->N * D;
    float *x0 = fx_keep(f, f->x, n), *r0 = fx_keep(f, f->r, n);
    fx_forward(f, 1, KEY);
    fx_backward(f, 1, KEY);
    float *y1 = fx_keep(f, f->y, n), *dx1 = fx_keep(f, f->dx, n);
    if (!all_finite(y1, n)) fail_msg("y not finite (y starts as NaN: forward must write all of it)");
    for (int64_t i = 0; i < n; i++) f->y[i] = 7.0f, f->dx[i] = -7.0f;
    fx_forward(f, 1, KEY);
    fx_backward(f, 1, KEY);
    assert_bit_identical(f->y, y1, n, "y of a second forward with the same rng_key");
    assert_bit_identical(f->dx, dx1, n, "dx of a second backward with the same rng_key");
    assert_bit_identical(f->x, x0, n, "x after forward and backward (input is const)");
    assert_bit_identical(f->r, r0, n, "dy after backward (input is const)");
}

static void test_eval_determinism(void **state) {
    fx *f = *state;
    int64_t n = f->N * D;
    fx_forward(f, 0, KEY);
    float *y1 = fx_keep(f, f->y, n);
    if (!all_finite(y1, n)) fail_msg("eval y not finite");
    fx_forward(f, 0, KEY);
    assert_bit_identical(f->y, y1, n, "eval y, second forward");
    fx_forward(f, 0, KEY ^ 0x12345);
    assert_bit_identical(f->y, y1, n, "eval y with another rng_key (eval must not be random)");
}

/* Copies every parameter value of `from` into `to` (same plugin, options). */
static void copy_params(fx *to, fx *from) {
    assert_int_equal(to->params.n, from->params.n);
    for (int i = 0; i < from->params.n; i++)
        memcpy(vals(param_at(to, i)), vals(param_at(from, i)), fl_nbytes(&param_at(from, i)->value));
}

/* Eval y of a layer created now with f's current parameters: what f itself
   must compute, whatever it derived from older values. */
static float *fresh_eval(fx *f) {
    fx fresh;
    fl_error err = {0};
    ts_assert_ok(fx_create(&fresh, g.opts, D, &err), &err);
    copy_params(&fresh, f);
    fx_batch(&fresh, f->B, f->T, 11);
    fx_forward(&fresh, 0, KEY);
    float *y = fx_keep(f, fresh.y, f->N * D);
    fx_free(&fresh);
    return y;
}

/* The host changes parameters between forwards (optimizer steps, checkpoint
   loads, weight surgery in analysis tools): a plugin that derives state from
   them for inference (transposed or packed copies) must follow any change,
   even of one value, and its revert. */
static void test_eval_follows_parameters(void **state) {
    fx *f = *state;
    int64_t n = f->N * D;
    int mark = f->n_kept;
    for (int i = 0; i < f->params.n; i++) {
        fl_param *p = param_at(f, i);
        int64_t k = (int64_t)(fl_rng_bits(31, (uint64_t)i) % (uint64_t)fl_numel(&p->value));
        fx_forward(f, 0, KEY);
        float *before = fx_keep(f, f->y, n), keep = vals(p)[k];
        vals(p)[k] = keep + 0.5f;
        fx_forward(f, 0, KEY);
        char what[256];
        snprintf(what, sizeof what, "eval y after %s[%lld] changed (vs a fresh layer)", rel_name(p), (long long)k);
        ts_assert_close(f->y, fresh_eval(f), (size_t)n, 1e-5, 1e-6, what);
        vals(p)[k] = keep;
        fx_forward(f, 0, KEY);
        snprintf(what, sizeof what, "eval y after %s[%lld] changed back", rel_name(p), (long long)k);
        ts_assert_close(f->y, before, (size_t)n, 1e-5, 1e-6, what);
        fx_drop_kept(f, mark);
    }
}

/* N changes: generation runs T = 1, evaluation other batch sizes. */
static void test_batch_shapes(void **state) {
    fx *f = *state;
    static const int64_t shapes[][3] = {{2, 6, 1}, {1, 1, 0}, {3, 7, 1}, {1, 3, 1}, {1, 1, 0}, {4, 5, 0}, {2, 6, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], T = shapes[s][1];
        int train = (int)shapes[s][2];
        fx_batch(f, B, T, 100 + s);
        fx_forward(f, train, KEY + s);
        if (!all_finite(f->y, f->N * D))
            fail_msg("y not finite at B=%lld T=%lld %s", (long long)B, (long long)T, train ? "train" : "eval");
        if (train) {
            fx_backward(f, train, KEY + s);
            if (!all_finite(f->dx, f->N * D)) fail_msg("dx not finite at B=%lld T=%lld", (long long)B, (long long)T);
        }
        print_message("  B=%lld T=%lld %s: ok\n", (long long)B, (long long)T, train ? "train" : "eval");
    }
}

/* A tensor [B,T,d+1] where [B,T,d] belongs: forward and backward refuse it
   (a status and a message; fl_ffn_rows in ffn.h makes the check), neither
   writes anything, and the layer runs a good batch after it. */
static void test_rejects_bad_shapes(void **state) {
    fx *f = *state;
    const int64_t n = f->N * (D + 1);
    float *bad = fx_keep(f, NULL, n), *out = fx_keep(f, NULL, n);
    for (int64_t i = 0; i < n; i++) bad[i] = fl_rng_normal(7, (uint64_t)i), out[i] = 0.5f;
    fl_tensor tbad = wrap(bad, FL_F32, f->B, f->T, D + 1), tout = wrap(out, FL_F32, f->B, f->T, D + 1);
    fl_ffn_ctx c = fx_ctx(f, 1, KEY);
    fl_error err = {0};
    fl_status st = g.ffn->forward(f->layer, &c, &tbad, &tout, &err);
    print_message("  forward, x[%lld,%lld,%d] -> status %d: %s\n", (long long)f->B, (long long)f->T, D + 1, (int)st, err.msg);
    if (st == FL_OK) fail_msg("forward accepted x with last dimension %d (d_model %d)", D + 1, D);
    if (!err.msg[0]) fail_msg("forward refused x without a message");
    fx_forward(f, 1, KEY);
    err = (fl_error){0};
    st = g.ffn->backward(f->layer, &c, &tbad, &tout, &err);
    print_message("  backward, dy[%lld,%lld,%d] -> status %d: %s\n", (long long)f->B, (long long)f->T, D + 1, (int)st, err.msg);
    if (st == FL_OK) fail_msg("backward accepted dy with last dimension %d (d_model %d)", D + 1, D);
    if (!err.msg[0]) fail_msg("backward refused dy without a message");
    for (int64_t i = 0; i < n; i++)
        if (out[i] != 0.5f) fail_msg("a refused call wrote its output (value %lld)", (long long)i);
    fx_backward(f, 1, KEY);
    if (!all_finite(f->dx, f->N * D)) fail_msg("dx not finite after the refused calls");
}

/* ------------------------------------------------------------------------ */
/* aux_loss, stats                                                            */
/* ------------------------------------------------------------------------ */

/* Named figures of an aux_loss/stats function: non-empty unique names,
   finite values, a count that does not depend on max (and max = 0 writes
   nothing). */
static int check_named(fx *f, int (*fn)(void *, fl_stat *, int), const char *what) {
    fl_stat s[MAX_STATS], canary = {"canary", 42.0}, none[1] = {canary};
    int n = fn(f->layer, s, MAX_STATS);
    if (n < 0 || n > MAX_STATS) fail_msg("%s returned %d entries", what, n);
    int n0 = fn(f->layer, none, 0);
    if (n0 != n) fail_msg("%s with max = 0 returned %d, with max = %d returned %d", what, n0, MAX_STATS, n);
    if (none[0].name != canary.name || none[0].value != canary.value) fail_msg("%s wrote past max = 0", what);
    for (int i = 0; i < n; i++) {
        if (!s[i].name || !s[i].name[0]) fail_msg("%s entry %d has no name", what, i);
        if (!isfinite(s[i].value)) fail_msg("%s '%s' is not finite (%g)", what, s[i].name, s[i].value);
        for (int j = 0; j < i; j++)
            if (!strcmp(s[i].name, s[j].name)) fail_msg("%s '%s' reported twice", what, s[i].name);
        print_message("  %s %-22s %.6g\n", what, s[i].name, s[i].value);
    }
    return n;
}

static void test_aux_losses(void **state) {
    fx *f = *state;
    if (!g.ffn->aux_loss) {
        print_message("  aux_loss is NULL (no auxiliary losses)\n");
        return;
    }
    fx_forward(f, 1, KEY);
    check_named(f, g.ffn->aux_loss, "aux (train)");
    fx_forward(f, 0, KEY);
    check_named(f, g.ffn->aux_loss, "aux (eval)");
}

typedef struct touched {
    int64_t all, matrix;  /* parameter values with a non-zero gradient; those in ndim >= 2 */
} touched;

/* The parameters one token's forward+backward reaches: every value with a
   non-zero gradient took part in computing that token's output. */
static int measure_one_token(fx *f, touched *out) {
    fx_batch(f, 1, 1, 21);
    fx_zero_grads(f);
    fx_forward(f, 1, KEY);
    if (!all_finite(f->y, D)) return 0;
    fx_backward(f, 1, KEY);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < f->params.n; i++) {
        fl_param *p = param_at(f, i);
        int64_t nz = 0;
        for (int64_t k = 0; k < fl_numel(&p->grad); k++) nz += grads(p)[k] != 0.0f;
        out->all += nz;
        if (p->value.ndim >= 2) out->matrix += nz;
    }
    return 1;
}

static double required_stat(fx *f, const char *name) {
    double v = stat_value(f, name);
    if (isnan(v)) fail_msg("stats does not report '%s'", name);
    if (!(isfinite(v) && v > 0)) fail_msg("stat '%s' = %g; must be positive", name, v);
    return v;
}

static void test_stats(void **state) {
    fx *f = *state;
    if (!g.ffn->stats) fail_msg("stats is NULL: 'active_params' and 'flops_per_token' are required");
    double total = (double)fx_total_params(f);
    touched t;
    int measured = measure_one_token(f, &t);
    double active1 = required_stat(f, "active_params"), flops1 = required_stat(f, "flops_per_token");
    fx_batch(f, BATCH, SEQ, 11);
    fx_forward(f, 1, KEY);
    check_named(f, g.ffn->stats, "stat");
    double active = required_stat(f, "active_params");
    required_stat(f, "flops_per_token");
    if (active > total * (1 + 1e-9))
        fail_msg("active_params %.0f exceeds the %.0f parameters declared", active, total);
    if (!measured) {
        print_message("  single-token forward not finite: measured comparison skipped\n");
        return;
    }
    print_message("  one token: active_params %.0f, flops_per_token %.0f; its backward touched %lld values "
                  "(%lld in matrices) of %.0f declared\n",
                  active1, flops1, (long long)t.all, (long long)t.matrix, total);
    if (t.all > active1 + 0.5)
        fail_msg("one token's backward touched %lld parameter values, more than active_params = %.0f",
                 (long long)t.all, active1);
    if (t.all == (int64_t)total && active1 != total)
        fail_msg("one token reached every declared parameter (%.0f) but active_params = %.0f", total, active1);
    /* each touched matrix value took part in a multiply-add (2 FLOPs); half
       of that leaves room for elementwise 2-D tensors such as expert biases */
    if (flops1 < (double)t.matrix)
        fail_msg("flops_per_token %.0f is below the %lld matrix values one token used (a multiply-add is 2 FLOPs)",
                 flops1, (long long)t.matrix);
}

/* ------------------------------------------------------------------------ */
/* Inside a model: training steps, checkpoint round trip                      */
/* ------------------------------------------------------------------------ */

/* The models of one test and the checkpoint folder; freed by teardown even
   when an assert leaves the test early. */
typedef struct models {
    fl_model *a, *b;
    char *dir;
} models;

static int setup_models(void **state) {
    *state = calloc(1, sizeof(models));
    return *state ? 0 : -1;
}

static int teardown_models(void **state) {
    models *ms = *state;
    if (!ms) return 0;
    fl_model_free(ms->a);
    fl_model_free(ms->b);
    if (ms->dir) ts_rmtree(ms->dir);
    free(ms->dir);
    free(ms);
    return 0;
}

/* A 1-layer model (vocab 64, context 8, d 16, 2 heads) with the plugin. */
static fl_model *make_model(fl_model **slot, uint64_t seed) {
    char spec[8192];
    snprintf(spec, sizeof spec, "%s%s%s", g.path, g.opts[0] ? ":" : "", g.opts);
    const char *specs[1] = {spec};
    fl_model_config mc = {.vocab_size = VOCAB, .context = 8, .d_model = D, .n_layers = 1, .n_heads = 2,
                          .ffn_specs = specs, .seed = seed};
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, g.be, slot, &err), &err);
    return *slot;
}

static void model_batch(int32_t *x, int32_t *y, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        x[i] = (int32_t)(fl_rng_bits(seed, (uint64_t)i) % VOCAB);
        y[i] = (int32_t)(fl_rng_bits(seed + 1, (uint64_t)i) % VOCAB);
    }
}

static void check_model_grads(fl_model *m) {
    for (int i = 0; i < fl_model_n_params(m); i++) {
        fl_param *p = fl_model_param(m, i);
        if (!all_finite((const float *)p->grad.data, fl_numel(&p->grad)))
            fail_msg("%s: gradient not finite", p->name);
    }
}

/* A few AdamW steps: finite loss, gradients and aux losses. */
static void train_steps(fl_model *m, int steps) {
    int32_t x[2 * 8], y[2 * 8];
    fl_adamw opt = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    fl_error err = {0};
    for (int s = 0; s < steps; s++) {
        double loss = NAN;
        model_batch(x, y, 16, 40 + (uint64_t)s);
        fl_model_zero_grad(m);
        ts_assert_ok(fl_model_forward(m, x, y, 2, 8, 1, s, &loss, &err), &err);
        if (!isfinite(loss)) fail_msg("step %d: loss %g", s, loss);
        fl_stat aux[MAX_STATS];
        int n = fl_model_aux_losses(m, aux, MAX_STATS);
        for (int i = 0; i < n && i < MAX_STATS; i++)
            if (!isfinite(aux[i].value)) fail_msg("step %d: aux loss %s = %g", s, aux[i].name, aux[i].value);
        ts_assert_ok(fl_model_backward(m, &err), &err);
        check_model_grads(m);
        ts_assert_ok(fl_adamw_step(g.be, fl_model_params(m), &opt, 1e-2, 1.0f, s + 1, &err), &err);
        print_message("  step %d: loss %.5f (%d aux)\n", s, loss, n);
    }
}

static void test_model_training(void **state) {
    models *ms = *state;
    train_steps(make_model(&ms->a, 1), 3);
}

static const float *eval_logits(fl_model *m, size_t *n) {
    int32_t x[2 * 8], y[2 * 8];
    model_batch(x, y, 16, 99);
    double loss = 0;
    fl_error err = {0};
    ts_assert_ok(fl_model_forward(m, x, NULL, 2, 8, 0, 3, &loss, &err), &err);
    const fl_tensor *l = fl_model_logits(m);
    *n = (size_t)fl_numel(l);
    return (const float *)l->data;
}

static void test_checkpoint_round_trip(void **state) {
    models *ms = *state;
    fl_error err = {0};
    fl_model *a = make_model(&ms->a, 1), *b = make_model(&ms->b, 2);
    ms->dir = ts_tmpdir();
    size_t n0;
    eval_logits(a, &n0); /* an inference forward before the weights change: */
    eval_logits(b, &n0); /* a plugin must not serve stale derived state after it */
    train_steps(a, 2);   /* moves every parameter away from any init */
    ts_assert_ok(fl_checkpoint_save(ms->dir, a, 0, 2, -1, &err), &err);
    ts_assert_ok(fl_checkpoint_load(ms->dir, b, 0, NULL, &err), &err);
    assert_int_equal(fl_model_n_params(a), fl_model_n_params(b));
    for (int i = 0; i < fl_model_n_params(a); i++) {
        fl_param *pa = fl_model_param(a, i), *pb = fl_model_find_param(b, pa->name);
        if (!pb) fail_msg("%s missing after load", pa->name);
        if (memcmp(pa->value.data, pb->value.data, fl_nbytes(&pa->value)))
            fail_msg("%s differs after load", pa->name);
    }
    size_t na, nb;
    const float *la = eval_logits(a, &na), *lb = eval_logits(b, &nb);
    assert_int_equal(na, nb);
    if (memcmp(la, lb, na * sizeof *la)) {
        print_message("  eval logits differ: does the plugin keep state outside its declared parameters, "
                      "or derive state at the first forward that it does not refresh?\n");
        assert_bit_identical(lb, la, (int64_t)na, "eval logits after a checkpoint round trip");
    }
}

/* ------------------------------------------------------------------------ */
/* destroy                                                                    */
/* ------------------------------------------------------------------------ */

static void test_destroy(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++) {
        fx f;
        fl_error err = {0};
        ts_assert_ok(fx_create(&f, g.opts, D, &err), &err);
        if (i > 0) { /* with saved activations and gradients */
            fx_batch(&f, BATCH, SEQ + i, 7);
            fx_forward(&f, 1, KEY);
            fx_backward(&f, 1, KEY);
        }
        if (i > 1) fx_forward(&f, 0, KEY);
        fx_free(&f);
    }
}

/* ------------------------------------------------------------------------ */
/* main                                                                       */
/* ------------------------------------------------------------------------ */

static int usage(const char *why) {
    fprintf(stderr,
            "ffnlab-conformance: %s\n"
            "usage: ffnlab-conformance PLUGIN [SPEC]\n"
            "  PLUGIN  a plugin name (found like --ffn NAME) or a path to ffn_NAME.so;\n"
            "          PLUGIN:k=v,... is accepted too\n"
            "  SPEC    options of the small layer to test: NAME:k=v,... or k=v,...\n"
            "          (default: the plugin's defaults); layers are created with d_model = %d\n"
            "Environment: FFNLAB_CONFORMANCE_PLUGIN and FFNLAB_CONFORMANCE_SPEC stand in for the\n"
            "arguments; CMocka's own variables (CMOCKA_MESSAGE_OUTPUT, CMOCKA_TEST_ABORT) apply.\n",
            why, D);
    return 2;
}

/* "name:opts" or "opts" → g.opts; a name part must be the plugin's. */
static int set_opts(const char *spec) {
    const char *colon = spec ? strchr(spec, ':') : NULL, *eq = spec ? strchr(spec, '=') : NULL;
    const char *opts = spec;
    if (colon && (!eq || colon < eq)) {
        if ((size_t)(colon - spec) != strlen(g.name) || strncmp(spec, g.name, strlen(g.name))) {
            fprintf(stderr, "ffnlab-conformance: spec '%s' names another plugin than '%s'\n", spec, g.name);
            return 0;
        }
        opts = colon + 1;
    } else if (spec && !eq && !strcmp(spec, g.name)) {
        opts = ""; /* just the name: defaults */
    }
    snprintf(g.opts, sizeof g.opts, "%s", opts ? opts : "");
    return 1;
}

/* Loads the plugin named by arg ("name", "path" or either with ":opts"). */
static int load_plugin(const char *arg, const char **inline_opts) {
    char name[4096];
    fl_error err = {0};
    *inline_opts = NULL;
    if (fl_spec_split(arg, name, sizeof name, inline_opts, &err) ||
        fl_plugin_load(name, FL_PLUGIN_FFN, &g.plugin, &err)) {
        fprintf(stderr, "ffnlab-conformance: %s\n", err.msg);
        return 0;
    }
    g.ffn = fl_plugin_ffn(&g.plugin);
    snprintf(g.path, sizeof g.path, "%s", g.plugin.path);
    snprintf(g.name, sizeof g.name, "%s", g.plugin.header->name);
    return 1;
}

/* The CPU backend; in ffnlab-conformance-emu (a test build, not installed)
   the CUDA backend's kernels emulated on the CPU (tests/support/cuda_emu.h),
   as a CUDA device, so a plugin runs its CUDA code (its .cu files built
   for the emulation too) and the host's CUDA ops. Its memory is the CPU's,
   which is what lets this program read and write tensors directly. */
static const fl_backend *device_under_test(void) {
#ifdef FFNLAB_TEST_CUDA_EMU
    static fl_backend emulated;
    emulated = *ts_cuda_emu_backend();
    emulated.device = (fl_device){FL_DEVICE_CUDA, 0};
    ts_cuda_emu_set_math("fp32"); /* finite differences need fp32 GEMMs */
    return &emulated;
#else
    return fl_backend_cpu();
#endif
}

int main(int argc, char **argv) {
    g.be = device_under_test();
    const char *plugin = argc > 1 ? argv[1] : getenv("FFNLAB_CONFORMANCE_PLUGIN");
    const char *spec = argc > 2 ? argv[2] : getenv("FFNLAB_CONFORMANCE_SPEC");
    if (argc > 3) return usage("too many arguments");
    if (!plugin || !plugin[0] || plugin[0] == '-') return usage("no plugin given");
    const char *inline_opts = NULL;
    if (!load_plugin(plugin, &inline_opts)) return 1;
    if (!set_opts(spec && spec[0] ? spec : inline_opts)) {
        fl_plugin_unload(&g.plugin);
        return 2;
    }
    print_message("conformance of '%s' (%s) with options \"%s\", d_model = %d, on %s\n", g.name, g.path, g.opts, D,
                  g.be->describe());

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test_setup_teardown(test_create, setup_layer, teardown_layer),
        cmocka_unit_test(test_create_rejects_bad_shape),
        cmocka_unit_test_setup_teardown(test_gradients, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_aux_gradients, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_grad_accumulates, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_train_determinism, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_eval_determinism, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_eval_follows_parameters, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_batch_shapes, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_rejects_bad_shapes, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_aux_losses, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_stats, setup_layer, teardown_layer),
        cmocka_unit_test_setup_teardown(test_model_training, setup_models, teardown_models),
        cmocka_unit_test_setup_teardown(test_checkpoint_round_trip, setup_models, teardown_models),
        cmocka_unit_test(test_destroy),
    };
    char group[256];
    snprintf(group, sizeof group, "conformance_%s", g.name);
    int failed = cmocka_run_group_tests_name(group, tests, NULL, NULL);
    fl_plugin_unload(&g.plugin);
    return failed ? 1 : 0;
}
