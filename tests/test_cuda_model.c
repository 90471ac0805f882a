/*
 * tests/test_cuda_model.c — the CUDA backend under the framework: plugins,
 * whole models, training and the `ffnlab` program, each against the CPU.
 *
 *   - the dense plugin through a host (fl_host_init with the CUDA backend):
 *     forward y, backward dx and every parameter gradient vs the same layer
 *     on the CPU (same parameter values), plain and gated;
 *   - every FFN plugin spec of tests/conformance/configs.txt (dense, moe,
 *     cnt, pkm, ...) in a 2-layer model: loss and every gradient vs the CPU.
 *     A plugin that refuses the GPU (FL_EUNSUPPORTED: its kernels are CPU
 *     code for now) is reported and skipped, not failed;
 *   - decoding with the KV cache (a prefill, then one token per step) on
 *     every plugin: the logits of each new position vs the CPU's;
 *   - the shared-rows scoring forward (fl_model_forward_shared: sequences
 *     sharing prefixes, of three lengths) on every plugin: the hidden
 *     states of the computed rows and the rows they map to vs the CPU's;
 *   - 50 training steps of a tiny model (random tokens, AdamW, clipping) on
 *     both: the loss curves agree within 2e-3 relative per step with FP32
 *     GEMMs and 3e-2 with TF32 (the default); two GPU runs agree bit for bit;
 *   - `ffnlab train --device cuda`, `generate`, `bench`, `bench --decode`, and `--device auto`
 *     choosing the GPU.
 *
 * Tolerances: normwise ‖gpu − cpu‖ / ‖cpu‖, printed with what was measured:
 * layer outputs and gradients 1e-4 in FP32 mode, 2e-2 in TF32 mode.
 * Exits with 77 (ctest: skipped) without a GPU; FFNLAB_TEST_GPU_AS_CPU=1
 * runs the comparisons with the CPU in the GPU's place (checks this file).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "host_table.h"
#include "loader.h"
#include "model.h"
#include "optim.h"
#include "options.h"
#include "params.h"
#include "support.h"
#ifdef FFNLAB_TEST_CUDA_EMU
#include "cuda_emu_backend.h"
#endif
#ifdef FFNLAB_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

static const fl_backend *CPU, *GPU;
static int g_cuda;

static void set_math(const char *mode) {
#ifdef FFNLAB_TEST_CUDA_EMU
    ts_cuda_emu_set_math(mode);
#endif
#ifdef FFNLAB_HAVE_CUDA
    fl_error err = {0};
    if (g_cuda) ts_assert_ok(fl_cuda_set_math(mode, &err), &err);
#else
    (void)mode;
#endif
}

static void gpu_ok(void) {
    fl_error err = {0};
    if (GPU->sync) ts_assert_ok(GPU->sync(&err), &err);
}

/* host copy of a device tensor (malloc'ed) */
static float *fetch(const fl_backend *be, const fl_tensor *t) {
    size_t bytes = fl_nbytes(t);
    float *h = malloc(bytes + 4);
    be->ops.to_host(h, t, bytes);
    return h;
}

/* ‖a − b‖ / ‖b‖ of two device tensors (a on the GPU, b on the CPU) */
/* ‖g − c‖ / max(‖c‖, floor) */
static double rel_err_floor(const fl_tensor *g, const fl_tensor *c, double floor) {
    float *hg = fetch(GPU, g), *hc = fetch(CPU, c);
    gpu_ok();
    double num = 0, den = 0;
    const int64_t n = fl_numel(c);
    for (int64_t i = 0; i < n; i++) {
        double d = (double)hg[i] - hc[i];
        num += d * d, den += (double)hc[i] * hc[i];
    }
    free(hg), free(hc);
    if (den < floor * floor) den = floor * floor;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel_err(const fl_tensor *g, const fl_tensor *c) { return rel_err_floor(g, c, 0.0); }

static void expect_rel(const fl_tensor *g, const fl_tensor *c, double tol, const char *what) {
    double r = rel_err(g, c);
    print_message("  %-56s rel %.2e (tol %.0e)\n", what, r, tol);
    if (!(r <= tol)) fail_msg("%s: relative error %.3g > %.3g", what, r, tol);
}

/* copies a CPU tensor's values into the matching GPU tensor */
static void copy_to_gpu(const fl_tensor *c, fl_tensor *g) {
    float *h = fetch(CPU, c);
    GPU->ops.from_host(g, h, fl_nbytes(c));
    free(h);
}

/* ------------------------------------------------------------------------ */
/* The dense plugin through a host                                            */
/* ------------------------------------------------------------------------ */

typedef struct layer {
    const fl_backend *be;
    fl_host host;
    fl_plugin plugin;
    const fl_ffn_plugin *ffn;
    fl_param_list list;
    struct fl_param_scope scope;
    fl_option_set set;
    void *obj;
} layer;

enum { V_LAYER = 512 }; /* the vocabulary a layer made alone is told */

static fl_status make_layer(layer *L, const fl_backend *be, const char *name, const char *opts, int d,
                            fl_error *err) {
    memset(L, 0, sizeof *L);
    L->be = be;
    fl_host_init(&L->host, be, NULL);
    fl_status st = fl_plugin_load(name, FL_PLUGIN_FFN, &L->plugin, err);
    if (st) return st;
    L->ffn = fl_plugin_ffn(&L->plugin);
    const fl_plugin_header *h = L->plugin.header;
    if ((st = fl_options_parse(h->options, h->n_options, opts, "--ffn", &L->set, err))) return st;
    L->scope.prefix = "transformer.h.0.mlp.";
    L->scope.list = &L->list;
    L->scope.be = be;
    L->scope.seed = 4321;
    L->scope.n_layers = 2;
    fl_ffn_config cfg = {.d_model = d, .layer_index = 0, .n_layers = 2, .vocab_size = V_LAYER,
                         .values = L->set.values, .scope = &L->scope};
    return L->ffn->create(&L->host, &cfg, &L->obj, err);
}

static void free_layer(layer *L) {
    if (L->obj) L->ffn->destroy(L->obj);
    fl_params_free(&L->list, L->be);
    fl_options_free(&L->set);
    if (L->plugin.handle) fl_plugin_unload(&L->plugin);
}

static fl_tensor dev_typed(const fl_backend *be, int32_t dtype, int64_t r, int64_t c) {
    int64_t shape[2] = {r, c};
    fl_tensor t = fl_wrap(NULL, dtype, be->device, 2, shape);
    t.data = be->alloc(fl_nbytes(&t));
    t.capacity = fl_nbytes(&t);
    return t;
}

static fl_tensor dev(const fl_backend *be, int64_t r, int64_t c) { return dev_typed(be, FL_F32, r, c); }

/* The context a model gives a layer (FFN ABI 2.0): token ids in
   [0, V_LAYER) and positions 0..T-1, [B,T] i32 on be's device. */
static void ctx_ids(const fl_backend *be, int B, int T, fl_tensor *tok, fl_tensor *pos) {
    int32_t *h = malloc((size_t)(2 * B * T) * sizeof *h);
    assert_non_null(h);
    for (int i = 0; i < B * T; i++) h[i] = (int32_t)(fl_rng_bits(13, (uint64_t)i) % V_LAYER), h[B * T + i] = i % T;
    *tok = dev_typed(be, FL_I32, B, T), *pos = dev_typed(be, FL_I32, B, T);
    be->ops.from_host(tok, h, (size_t)(B * T) * sizeof *h);
    be->ops.from_host(pos, h + B * T, (size_t)(B * T) * sizeof *h);
    free(h);
}

static void dense_case(const char *opts, double tol) {
    enum { D = 48, B = 3, T = 11, N = B * T };
    layer c, g;
    fl_error err = {0};
    ts_assert_ok(make_layer(&c, CPU, "dense", opts, D, &err), &err);
    ts_assert_ok(make_layer(&g, GPU, "dense", opts, D, &err), &err);
    assert_int_equal(c.list.n, g.list.n);
    for (int i = 0; i < c.list.n; i++) { /* larger weights than GPT-2's: the nonlinearity matters */
        fl_param *p = &c.list.items[i]->pub;
        CPU->ops.rng_normal(&p->value, fl_rng_key(7, p->name), 0, 0.0f, p->value.ndim == 2 ? 0.3f : 0.2f);
        copy_to_gpu(&p->value, &g.list.items[i]->pub.value);
    }
    fl_tensor xc = dev(CPU, N, D), xg = dev(GPU, N, D), yc = dev(CPU, N, D), yg = dev(GPU, N, D);
    fl_tensor dyc = dev(CPU, N, D), dyg = dev(GPU, N, D), dxc = dev(CPU, N, D), dxg = dev(GPU, N, D);
    CPU->ops.rng_normal(&xc, 11, 0, 0, 1), copy_to_gpu(&xc, &xg);
    CPU->ops.rng_normal(&dyc, 12, 0, 0, 1), copy_to_gpu(&dyc, &dyg);
    fl_tensor tokc, posc, tokg, posg;
    ctx_ids(CPU, B, T, &tokc, &posc), ctx_ids(GPU, B, T, &tokg, &posg);
    fl_ffn_ctx ctxc = {.train = 1, .step = 3, .rng_key = 99, .B = B, .T = T, .tokens = &tokc, .positions = &posc};
    fl_ffn_ctx ctxg = ctxc;
    ctxg.tokens = &tokg, ctxg.positions = &posg;
    ts_assert_ok(c.ffn->forward(c.obj, &ctxc, &xc, &yc, &err), &err);
    ts_assert_ok(g.ffn->forward(g.obj, &ctxg, &xg, &yg, &err), &err);
    char what[128];
    snprintf(what, sizeof what, "dense:%s forward y", opts);
    expect_rel(&yg, &yc, tol, what);
    ts_assert_ok(c.ffn->backward(c.obj, &ctxc, &dyc, &dxc, &err), &err);
    ts_assert_ok(g.ffn->backward(g.obj, &ctxg, &dyg, &dxg, &err), &err);
    snprintf(what, sizeof what, "dense:%s backward dx", opts);
    expect_rel(&dxg, &dxc, tol, what);
    for (int i = 0; i < c.list.n; i++) {
        snprintf(what, sizeof what, "  grad %s", c.list.items[i]->pub.name);
        expect_rel(&g.list.items[i]->pub.grad, &c.list.items[i]->pub.grad, tol, what);
    }
    fl_tensor *ts[] = {&xc, &yc, &dyc, &dxc, &tokc, &posc};
    fl_tensor *tg[] = {&xg, &yg, &dyg, &dxg, &tokg, &posg};
    for (int i = 0; i < 6; i++) CPU->free(ts[i]->data), GPU->free(tg[i]->data);
    free_layer(&c), free_layer(&g);
}

static void test_dense_plugin(void **state) {
    (void)state;
    set_math("fp32");
    dense_case("d_ff=96", 1e-4);
    dense_case("d_ff=80,glu=true,activation=silu", 1e-4);
    dense_case("activation=relu", 1e-4);
    set_math("tf32");
    dense_case("d_ff=96", 2e-2);
    dense_case("d_ff=80,glu=true,activation=gelu", 2e-2);
}

/* ------------------------------------------------------------------------ */
/* Models with every plugin                                                   */
/* ------------------------------------------------------------------------ */

static fl_status make_model(const fl_backend *be, const char *spec, int d, int layers, int heads, int V, int T,
                            fl_model **m, fl_error *err) {
    const char *specs[8];
    for (int l = 0; l < layers; l++) specs[l] = spec;
    fl_model_config mc = {.vocab_size = V, .context = T, .d_model = d, .n_layers = layers, .n_heads = heads,
                          .ffn_specs = specs, .seed = 2024};
    return fl_model_create(&mc, be, m, err);
}

/* Same values on the GPU as on the CPU (init agrees only to the last bits
   of the normal draws). */
static void copy_params(fl_model *c, fl_model *g) {
    assert_int_equal(fl_model_n_params(c), fl_model_n_params(g));
    for (int i = 0; i < fl_model_n_params(c); i++) {
        fl_param *pc = fl_model_param(c, i), *pg = fl_model_param(g, i);
        assert_string_equal(pc->name, pg->name);
        copy_to_gpu(&pc->value, &pg->value);
    }
}

static void random_tokens(int32_t *x, int32_t *y, int n, int V, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        x[i] = (int32_t)(fl_rng_bits(seed, (uint64_t)i) % (uint64_t)V);
        y[i] = i % 13 == 5 ? -1 : (int32_t)(fl_rng_bits(seed + 1, (uint64_t)i) % (uint64_t)V);
    }
}

/* The shape of the plugin comparisons: d_model, layers, heads, vocabulary,
   context, batch. */
enum { MD = 16, ML = 2, MH = 2, MV = 97, MT = 12, MB = 3 };

/* A model of spec on the CPU (*c) and the same on the GPU (*g, parameters
   copied); 0, printed, when either cannot build it: a plugin may refuse the
   GPU (FL_EUNSUPPORTED: its kernels are CPU code for now). */
static int model_pair(const char *spec, fl_model **c, fl_model **g) {
    fl_error err = {0};
    if (make_model(CPU, spec, MD, ML, MH, MV, MT, c, &err)) {
        print_message("  %s: cannot build on the CPU either: %s (skipped)\n", spec, err.msg);
        return 0;
    }
    fl_status st = make_model(GPU, spec, MD, ML, MH, MV, MT, g, &err);
    if (st == FL_EUNSUPPORTED) {
        print_message("  %s: SKIPPED on the GPU: %s\n", spec, err.msg);
        fl_model_free(*c);
        return 0;
    }
    ts_assert_ok(st, &err);
    copy_params(*c, *g);
    return 1;
}

/* Forward + backward of one spec on both; loss and every gradient compared. */
static void model_case(const char *spec, double tol) {
    enum { B = MB, T = MT, V = MV };
    fl_model *c = NULL, *g = NULL;
    fl_error err = {0};
    if (!model_pair(spec, &c, &g)) return;
    int32_t x[B * T], y[B * T];
    random_tokens(x, y, B * T, V, 5);
    double lc = 0, lg = 0;
    ts_assert_ok(fl_model_forward(c, x, y, B, T, 1, 7, &lc, &err), &err);
    ts_assert_ok(fl_model_forward(g, x, y, B, T, 1, 7, &lg, &err), &err);
    print_message("  %-40s loss cpu %.7f gpu %.7f (rel %.1e, tol %.0e)\n", spec, lc, lg, fabs(lg - lc) / fabs(lc), tol);
    assert_true(fabs(lg - lc) <= tol * fabs(lc));
    ts_assert_ok(fl_model_backward(c, &err), &err);
    ts_assert_ok(fl_model_backward(g, &err), &err);
    /* A gradient that is zero in exact arithmetic (a bias in front of a
       batch norm, which removes the mean) holds only rounding on both sides;
       each gradient is compared against at least 1e-3 of the largest one. */
    double largest = 0;
    for (int i = 0; i < fl_model_n_params(c); i++) largest = fmax(largest, sqrt(CPU->sumsq(&fl_model_param(c, i)->grad)));
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < fl_model_n_params(c); i++) {
        fl_param *pc = fl_model_param(c, i), *pg = fl_model_param(g, i);
        double r = rel_err_floor(&pg->grad, &pc->grad, 1e-3 * largest);
        if (!(r <= worst)) worst = r, worst_name = pc->name;
    }
    print_message("  %-40s worst gradient %s rel %.2e (tol %.0e)\n", spec, worst_name, worst, 10 * tol);
    if (!(worst <= 10 * tol)) fail_msg("%s: gradient of %s differs by %.3g", spec, worst_name, worst);
    fl_model_free(c), fl_model_free(g);
}

/* Every spec in tests/conformance/configs.txt, else the plugins' defaults. */
static void test_plugins_in_models(void **state) {
    (void)state;
    char path[4096], *text;
    snprintf(path, sizeof path, "%s/conformance/configs.txt", FFNLAB_TEST_SOURCE_DIR);
    text = ts_read_file(path, NULL);
    if (!text) text = strdup("dense\nmoe\ncnt\npkm\n");
    set_math("fp32");
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64] = "", opts[448] = "";
        if (line[0] == '#' || sscanf(line, "%63s %447s", name, opts) < 1) continue;
        char spec[600];
        snprintf(spec, sizeof spec, "%s%s%s", name, opts[0] ? ":" : "", opts);
        model_case(spec, 1e-4);
    }
    set_math("tf32");
    model_case("dense", 2e-2);
    free(text);
}

/* The logits [B,V] of the new positions after a prefill and after each
   decoding step, GPU vs CPU, FP32 GEMMs: tolerance as for the forward. */
static void decode_case(const char *spec) {
    enum { B = MB, T = MT, V = MV, P = 5 };
    fl_model *c = NULL, *g = NULL;
    fl_error err = {0};
    if (!model_pair(spec, &c, &g)) return;
    int32_t x[B * T], y[B * T];
    random_tokens(x, y, B * T, V, 9);
    ts_assert_ok(fl_model_prefill(c, x, B, P, &err), &err);
    ts_assert_ok(fl_model_prefill(g, x, B, P, &err), &err);
    double worst = 0;
    for (int n = P;; n++) {
        worst = fmax(worst, rel_err(fl_model_logits(g), fl_model_logits(c)));
        if (n == T) break;
        ts_assert_ok(fl_model_decode_step(c, x + n * B, &err), &err); /* any B tokens of the vocabulary */
        ts_assert_ok(fl_model_decode_step(g, x + n * B, &err), &err);
    }
    print_message("  %-40s decode logits, positions %d..%d: worst rel %.2e (tol 1e-4)\n", spec, P, T, worst);
    if (!(worst <= 1e-4)) fail_msg("%s: decoding logits differ by %.3g", spec, worst);
    fl_model_free(c), fl_model_free(g);
}

/* run(spec) for each plugin at its conformance size, with FP32 GEMMs. */
static void each_plugin_fp32(void (*run)(const char *spec)) {
    static const char *const specs[] = {"dense:d_ff=32", "moe:experts=4,top_k=2,d_expert=16",
                                        "cnt:d_ff=64,block=8,rank=4", "pkm:heads=2,k_dim=8,n_keys=8,knn=4"};
    set_math("fp32");
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) run(specs[i]);
    set_math("tf32");
}

static void test_decoding_matches_cpu(void **state) {
    (void)state;
    each_plugin_fp32(decode_case);
}

/* The shared-rows forward: sequence 1 shares 4 rows with sequence 0 and
   is shorter, sequence 2 shares 1 and is padded after 7; hidden states of
   the computed rows GPU vs CPU, FP32 GEMMs. */
static void shared_case(const char *spec) {
    enum { B = MB, T = MT, V = MV };
    fl_model *c = NULL, *g = NULL;
    fl_error err = {0};
    if (!model_pair(spec, &c, &g)) return;
    int32_t x[B * T], y[B * T], same_as[B * T], row_c[B * T], row_g[B * T];
    random_tokens(x, y, B * T, V, 11);
    const int len[B] = {T, 9, 7}, share[B] = {0, 4, 1};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int r = b * T + t;
            if (t < share[b]) x[r] = x[r - T];
            same_as[r] = t >= len[b] ? -1 : t < share[b] ? same_as[r - T] : r;
        }
    ts_assert_ok(fl_model_forward_shared(c, x, same_as, B, T, row_c, &err), &err);
    ts_assert_ok(fl_model_forward_shared(g, x, same_as, B, T, row_g, &err), &err);
    assert_memory_equal(row_c, row_g, sizeof row_c);
    const double r = rel_err(fl_model_hidden(g), fl_model_hidden(c));
    print_message("  %-40s shared forward hidden: rel %.2e (tol 1e-4)\n", spec, r);
    if (!(r <= 1e-4)) fail_msg("%s: shared-forward hidden states differ by %.3g", spec, r);
    fl_model_free(c), fl_model_free(g);
}

static void test_shared_forward_matches_cpu(void **state) {
    (void)state;
    each_plugin_fp32(shared_case);
}

/* ------------------------------------------------------------------------ */
/* Training                                                                   */
/* ------------------------------------------------------------------------ */

enum { TR_STEPS = 50, TR_V = 256, TR_T = 32, TR_B = 4 };

/* TR_STEPS AdamW steps on random batches; losses[step], and the model. */
static void train(const fl_backend *be, fl_model *m, double *losses) {
    fl_error err = {0};
    int32_t x[TR_B * TR_T], y[TR_B * TR_T];
    fl_adamw opt = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    for (int s = 0; s < TR_STEPS; s++) {
        random_tokens(x, y, TR_B * TR_T, TR_V, 100 + (uint64_t)(s % 8)); /* 8 batches, revisited */
        fl_model_zero_grad(m);
        ts_assert_ok(fl_model_forward(m, x, y, TR_B, TR_T, 1, s, &losses[s], &err), &err);
        ts_assert_ok(fl_model_backward(m, &err), &err);
        double norm = fl_grad_norm(be, fl_model_params(m));
        float clip = norm > 1.0 ? (float)(1.0 / norm) : 1.0f;
        double lr = fl_lr_at(s, 5, TR_STEPS, 3e-3, 0.1);
        ts_assert_ok(fl_adamw_step(be, fl_model_params(m), &opt, lr, clip, s + 1, &err), &err);
    }
}

/* heads: 4 (head size 16) takes the cuBLAS attention, 2 (head size 32) the
   flash kernels in tf32 and bf16 */
static void training_case(const char *math, int heads, double tol) {
    set_math(math);
    fl_model *c = NULL, *g = NULL;
    fl_error err = {0};
    ts_assert_ok(make_model(CPU, "dense", 64, 2, heads, TR_V, TR_T, &c, &err), &err);
    ts_assert_ok(make_model(GPU, "dense", 64, 2, heads, TR_V, TR_T, &g, &err), &err);
    copy_params(c, g);
    double lc[TR_STEPS], lg[TR_STEPS], worst = 0;
    train(CPU, c, lc);
    train(GPU, g, lg);
    for (int s = 0; s < TR_STEPS; s++) {
        double r = fabs(lg[s] - lc[s]) / fabs(lc[s]);
        if (r > worst) worst = r;
        if (s % 10 == 0 || s == TR_STEPS - 1)
            print_message("  %s H%d step %2d: loss cpu %.6f gpu %.6f (rel %.1e)\n", math, heads, s + 1, lc[s], lg[s], r);
    }
    print_message("  %s H%d: %d steps, largest per-step relative loss difference %.2e (tol %.0e)\n", math, heads,
                  TR_STEPS, worst, tol);
    assert_true(worst <= tol);
    assert_true(lc[TR_STEPS - 1] < lc[0] - 0.05); /* it did learn something */
    double wp = 0;
    for (int i = 0; i < fl_model_n_params(c); i++) {
        double r = rel_err(&fl_model_param(g, i)->value, &fl_model_param(c, i)->value);
        if (r > wp) wp = r;
    }
    print_message("  %s: largest relative parameter difference after training %.2e\n", math, wp);
    fl_model_free(c), fl_model_free(g);
    set_math("tf32");
}

static void test_training_matches_cpu_fp32(void **state) {
    (void)state;
    training_case("fp32", 4, 2e-3);
}

static void test_training_matches_cpu_tf32(void **state) {
    (void)state;
    training_case("tf32", 4, 3e-2);
}

/* The same with the flash attention kernels (tf32 and bf16 tensor cores) */
static void test_training_matches_cpu_flash(void **state) {
    (void)state;
    training_case("tf32", 2, 3e-2);
    training_case("bf16", 2, 5e-2);
}

/* Two GPU runs from the same start: the same bits (no atomics in sums). */
static void test_training_is_deterministic(void **state) {
    (void)state;
    fl_model *a = NULL, *b = NULL;
    fl_error err = {0};
    ts_assert_ok(make_model(GPU, "dense", 64, 2, 4, TR_V, TR_T, &a, &err), &err);
    ts_assert_ok(make_model(GPU, "dense", 64, 2, 4, TR_V, TR_T, &b, &err), &err);
    double la[TR_STEPS], lb[TR_STEPS];
    train(GPU, a, la);
    train(GPU, b, lb);
    assert_memory_equal(la, lb, sizeof la);
    for (int i = 0; i < fl_model_n_params(a); i++) {
        fl_param *pa = fl_model_param(a, i), *pb = fl_model_param(b, i);
        float *ha = fetch(GPU, &pa->value), *hb = fetch(GPU, &pb->value);
        if (memcmp(ha, hb, fl_nbytes(&pa->value))) fail_msg("%s differs between two identical runs", pa->name);
        free(ha), free(hb);
    }
    print_message("  two GPU runs of %d steps: identical losses and parameters\n", TR_STEPS);
    fl_model_free(a), fl_model_free(b);
}

/* ------------------------------------------------------------------------ */
/* The program                                                                */
/* ------------------------------------------------------------------------ */

static int run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(char **out, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = ts_ffnlab(out, "%s", args);
    print_message("$ ffnlab %s  → exit %d\n", args, rc);
    return rc;
}

#define SMALL "--corpus-bytes 300000 --vocab-size 384 --d-model 64 --n-layers 2 --n-heads 4 --context 64 " \
              "--batch-size 16 --steps 60 --warmup-steps 10 --eval-every 30 --eval-batches 4 --log-every 20 --no-progress"

static void test_cli(void **state) {
    (void)state;
    if (!g_cuda) skip(); /* the program picks its own backend */
    char *dir = ts_tmpdir(), *out = NULL;
    int rc = run(&out, "train " SMALL " --device cuda --run-dir %s/gpu", dir);
    if (rc) fail_msg("train --device cuda failed (%d):\n%s", rc, out);
    print_message("%s", out);
    assert_non_null(strstr(out, "on cuda"));
    double val = 0, uni = 0;
    const char *p = strstr(out, "trained 60 steps: validation loss ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "trained 60 steps: validation loss %lf nats/token (unigram entropy %lf", &val, &uni), 2);
    assert_true(isfinite(val) && val < uni); /* learned beyond unigram statistics */
    free(out);
    rc = run(&out, "generate --run %s/gpu --device cuda --prompt 'Once upon a time' --max-tokens 20 --seed 1", dir);
    if (rc) fail_msg("generate --device cuda failed (%d):\n%s", rc, out);
    assert_non_null(strstr(out, "Once upon a time"));
    free(out);
    /* auto = the GPU, silently */
    rc = run(&out, "train " SMALL " --steps 12 --eval-every 0 --run-dir %s/auto", dir);
    if (rc) fail_msg("train (auto) failed (%d):\n%s", rc, out);
    assert_non_null(strstr(out, "on cuda"));
    assert_null(strstr(out, "no GPU found"));
    free(out);
    rc = run(&out, "bench --device cuda --steps 3 --layers 2");
    if (rc) fail_msg("bench --device cuda failed (%d):\n%s", rc, out);
    print_message("%s", out);
    assert_non_null(strstr(out, "tokens/s"));
    free(out);
    rc = run(&out, "bench --decode --device cuda --layers 1 --context 64 --batch 4 --tokens 16");
    if (rc) fail_msg("bench --decode --device cuda failed (%d):\n%s", rc, out);
    print_message("%s", out);
    assert_non_null(strstr(out, "batch 4: cached "));
    free(out);
    rc = run(&out, "train " SMALL " --device cuda:99 --run-dir %s/bad", dir);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "cuda:99"));
    free(out);
    ts_rmtree(dir);
    free(dir);
}

int main(void) {
    CPU = fl_backend_cpu();
#ifdef FFNLAB_TEST_CUDA_EMU
    g_cuda = ts_gpu_under_test("test_cuda_model_emu", ts_cuda_emu_backend, &GPU);
#else
    g_cuda = ts_gpu_under_test("test_cuda_model", NULL, &GPU);
#endif
    if (g_cuda == 77) return 77; /* ctest: SKIP_RETURN_CODE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_plugin),
        cmocka_unit_test(test_plugins_in_models),
        cmocka_unit_test(test_decoding_matches_cpu),
        cmocka_unit_test(test_shared_forward_matches_cpu),
        cmocka_unit_test(test_training_matches_cpu_fp32),
        cmocka_unit_test(test_training_matches_cpu_tf32),
        cmocka_unit_test(test_training_matches_cpu_flash),
        cmocka_unit_test(test_training_is_deterministic),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
