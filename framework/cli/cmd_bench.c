/*
 * cli/bench.c — `ffnlab bench`: training throughput against the GEMM peak.
 *
 * Two figures, measured in the same invocation so machine noise cancels in
 * their ratio: (1) one sgemm of the model's largest shape (the LM head,
 * [B*T, d] x [d, V]) as the practical peak of this machine, and (2) whole
 * training steps (forward, backward, AdamW) of the dense model, as tokens/s
 * and achieved GFLOP/s. Inputs are random tokens: throughput does not depend
 * on the text.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "error.h"
#ifdef FFNLAB_HAVE_CUDA
#include "cuda/cuda_backend.h" /* fl_cuda_peak_tflops: the datasheet peak for MFU */
#endif
#include "host.h"
#include "model.h"
#include "optim.h"
#include "profile.h"

typedef struct bench_shape {
    int d_model, n_layers, n_heads, context, batch, vocab, steps;
    const char *ffn;
} bench_shape;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GFLOP/s of C[M,N] = A[M,K]·B[N,K]ᵀ, best of several repetitions. */
static double gemm_gflops(const fl_backend *be, int64_t M, int64_t N, int64_t K) {
    fl_host h;
    fl_host_init(&h, be, NULL);
    fl_tensor A = {0}, B = {0}, C = {0};
    int64_t sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
    if (h.tensor_ensure(&h, &A, FL_F32, 2, sa, NULL) || h.tensor_ensure(&h, &B, FL_F32, 2, sb, NULL) ||
        h.tensor_ensure(&h, &C, FL_F32, 2, sc, NULL))
        return 0;
    be->ops.rng_normal(&A, 1, 0, 0, 1);
    be->ops.rng_normal(&B, 2, 0, 0, 1);
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        if (be->sync) be->sync(NULL); /* a GPU runs ops asynchronously: time whole products */
        double t = now_s();
        be->ops.gemm(0, 1, 1.0f, &A, &B, 0.0f, &C);
        if (be->sync) be->sync(NULL);
        t = now_s() - t;
        if (rep > 0 && t < best) best = t; /* rep 0 warms up */
    }
    h.tensor_release(&h, &A), h.tensor_release(&h, &B), h.tensor_release(&h, &C);
    return 2.0 * (double)M * (double)N * (double)K / best / 1e9;
}

/* One training step (zero grad, forward, backward, AdamW), its phases
   marked in prof when given. */
static fl_status train_step(const fl_backend *be, fl_model *m, const bench_shape *s, const int32_t *x,
                            const int32_t *y, int step, fl_profile *prof, fl_error *err) {
    static const fl_adamw opt = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    double loss;
    fl_profile_mark(prof, FL_PH_OPTIMIZER);
    fl_model_zero_grad(m);
    fl_status st = fl_model_forward(m, x, y, s->batch, s->context, 1, step, &loss, err);
    if (!st) st = fl_model_backward(m, err);
    fl_profile_mark(prof, FL_PH_OPTIMIZER);
    if (!st) st = fl_adamw_step(be, fl_model_params(m), &opt, 1e-4, 1.0f, step + 1, err);
    fl_profile_mark(prof, FL_PH_NONE);
    return st;
}

/* Tokens/s of full training steps; with prof, as many steps again with
   their phases timed (and the profiled tokens/s in *prof_tok_s). */
static fl_status train_rate(const fl_backend *be, const bench_shape *s, double *tok_s, double *flops_tok,
                            fl_profile *prof, double *prof_tok_s, fl_error *err) {
    const char *specs[64];
    for (int l = 0; l < s->n_layers; l++) specs[l] = s->ffn;
    fl_model_config mc = {.vocab_size = s->vocab, .context = s->context, .d_model = s->d_model,
                          .n_layers = s->n_layers, .n_heads = s->n_heads, .ffn_specs = specs, .seed = 1};
    fl_model *m = NULL;
    fl_status st = fl_model_create(&mc, be, &m, err);
    if (st) return st;
    size_t n = (size_t)s->batch * (size_t)s->context;
    int32_t *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; x && y && i < n; i++) x[i] = (int32_t)(fl_rng_bits(7, i) % (uint64_t)s->vocab), y[i] = (int32_t)(fl_rng_bits(8, i) % (uint64_t)s->vocab);
    double t0 = 0;
    int step = 0;
    for (; step < s->steps + 2 && !st && x && y; step++) {
        if (step == 2) t0 = now_s(); /* two warm-up steps: allocation, JIT */
        st = train_step(be, m, s, x, y, step, NULL, err);
    }
    if (!x || !y) st = fl_fail(err, FL_ENOMEM, "out of memory");
    if (!st) {
        *tok_s = (double)n * s->steps / (now_s() - t0);
        *flops_tok = fl_model_flops_per_token(m, s->context);
    }
    if (!st && prof) {
        fl_model_set_profile(m, prof);
        t0 = now_s();
        for (int i = 0; i < s->steps && !st; i++, step++) st = train_step(be, m, s, x, y, step, prof, err);
        *prof_tok_s = (double)n * s->steps / (now_s() - t0);
        fl_model_set_profile(m, NULL);
    }
    free(x), free(y);
    fl_model_free(m);
    return st;
}

static void help(void) {
    printf("usage: ffnlab bench [--device D] [--preset NAME] [--steps N] [--d-model D] [--layers L] [--heads H] [--context T] [--batch B] [--vocab V] [--ffn SPEC] [--precision P] [--profile] [--json FILE]\n\n"
           "Defaults: the reference shape d=256, 4 layers, 4 heads, context 256, batch 16, vocab 4096, dense FFN, 10 steps.\n"
           "--preset reference | gpt2-small (d=768, 12 layers, 12 heads, context 1024, vocab 50257, batch 8); later flags override it.\n"
           "--device auto (default: the first GPU of a CUDA build, else the CPU), cpu, cuda or cuda:N. On a GPU it also\n"
           "prints MFU: model FLOPs/s against the GPU's datasheet peak for the GEMM precision (FFNLAB_CUDA_MATH).\n"
           "--precision fp32 | bf16 (CPU, default fp32), tf32 | fp32 | bf16 (GPU, default tf32): the GEMM precision of\n"
           "the whole bench; the backend line names the kernel path.\n"
           "Prints the GEMM kernel path, the sgemm GFLOP/s of the model's largest matmul (the practical peak),\n"
           "and training tokens/s and GFLOP/s of the whole step, with their ratio to that peak.\n"
           "--profile: then as many steps again with the device synchronised at every phase boundary (embedding,\n"
           "  norms, qkv, attention, projection, FFN, LM head, loss, their backwards, optimizer): ms/step per phase.\n"
           "--comm (under mpirun -np P): communication bandwidth and its share of a training step; see --comm --help.\n"
           "--blimp[=DIR]: BLiMP scoring speed (pairs/s) of a fresh model of this shape; see --blimp --help.\n"
           "--ffn-only [--only SPEC-PREFIX] [--reps N] [--tokens N] [--device D] [--precision P] [--json FILE]: each\n"
           "  FFN plugin alone at the study's shapes (d=256, N=16x256 tokens) and at d=512, against the dense FFN of\n"
           "  equal parameters and of equal active FLOPs.\n"
           "--decode [--ffn SPEC] [--batch B] [--tokens N] [--prompt N] [shape, --device, --precision, --json]: greedy\n"
           "  decoding tokens/s of a fresh model, with the KV cache and without, at batch 1 and B; see --decode --help.\n");
}

int fl_cmd_bench(int argc, char **argv) {
    for (int i = 1; i < argc; i++) /* --comm: the multi-process figures (bench_comm.c) */
        if (!strcmp(argv[i], "--comm")) return fl_cmd_bench_comm(argc, argv);
    for (int i = 1; i < argc; i++) /* --blimp: BLiMP scoring speed (cmd_eval.c) */
        if (!strncmp(argv[i], "--blimp", 7)) return fl_cmd_bench_blimp(argc, argv);
    for (int i = 1; i < argc; i++) /* --ffn-only: one FFN layer, sparse vs dense (bench_ffn.c) */
        if (!strcmp(argv[i], "--ffn-only")) return fl_cmd_bench_ffn(argc, argv);
    for (int i = 1; i < argc; i++) /* --decode: generation tokens/s, KV cache vs none (cmd_bench_decode.c) */
        if (!strcmp(argv[i], "--decode")) return fl_cmd_bench_decode(argc, argv);
    bench_shape s = {256, 4, 4, 256, 16, 4096, 10, "dense"};
    const char *json = NULL, *device = "auto", *preset = "reference";
    static const struct option longopts[] = {
        {"steps", 1, 0, 's'}, {"d-model", 1, 0, 'd'}, {"layers", 1, 0, 'l'}, {"heads", 1, 0, 'H'},
        {"context", 1, 0, 't'}, {"batch", 1, 0, 'b'}, {"vocab", 1, 0, 'v'}, {"ffn", 1, 0, 'f'},
        {"json", 1, 0, 'j'}, {"device", 1, 0, 'D'}, {"preset", 1, 0, 'P'}, {"precision", 1, 0, 'p'},
        {"profile", 0, 0, 'F'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int profile = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int *field = c == 's' ? &s.steps : c == 'd' ? &s.d_model : c == 'l' ? &s.n_layers : c == 'H' ? &s.n_heads
                   : c == 't' ? &s.context : c == 'b' ? &s.batch : c == 'v' ? &s.vocab : NULL;
        if (field) {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1 << 20) return fl_cli_usage("bench", "%s: '%s' is not a positive integer", argv[optind - 2], optarg);
            *field = (int)v;
        } else if (c == 'P') {
            preset = optarg;
            if (!strcmp(optarg, "gpt2-small")) s = (bench_shape){768, 12, 12, 1024, 8, 50257, s.steps, s.ffn};
            else if (!strcmp(optarg, "reference")) s = (bench_shape){256, 4, 4, 256, 16, 4096, s.steps, s.ffn};
            else return fl_cli_usage("bench", "--preset '%s': expected reference or gpt2-small", optarg);
        } else if (c == 'D') device = optarg;
        else if (c == 'p') {
            if (fl_cli_precision("bench", optarg)) return 2;
        }
        else if (c == 'f') s.ffn = optarg;
        else if (c == 'F') profile = 1;
        else if (c == 'j') json = optarg;
        else if (c == 'h') return help(), 0;
        else return fl_cli_usage("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (s.n_layers > 64) return fl_cli_usage("bench", "--layers must be at most 64");
    fl_error err = {0};
    const fl_backend *be = NULL;
    if (fl_backend_select(device, &be, &err)) return fl_cli_report(&err);
    printf("backend: %s — %s\n", be->name, be->describe());
    double peak_tflops = 0; /* the GPU's datasheet peak, for MFU */
    const char *peak_what = "";
#ifdef FFNLAB_HAVE_CUDA
    if (be->device.kind == FL_DEVICE_CUDA) {
        peak_tflops = fl_cuda_peak_tflops(&peak_what);
        printf("peak: %s\n", peak_what);
    }
#endif
    const int64_t N = (int64_t)s.batch * s.context;
    double peak = gemm_gflops(be, N, s.vocab, s.d_model);
    printf("sgemm [%lld x %d] x [%d x %d] (LM head): %.1f GFLOP/s\n", (long long)N, s.d_model, s.d_model, s.vocab, peak);
    double tok_s = 0, flops_tok = 0, prof_tok_s = 0;
    fl_profile prof;
    fl_profile_init(&prof, be);
    if (train_rate(be, &s, &tok_s, &flops_tok, profile ? &prof : NULL, &prof_tok_s, &err)) return fl_cli_report(&err);
    double gflops = tok_s * flops_tok / 1e9;
    printf("train step d=%d L=%d H=%d T=%d B=%d V=%d ffn=%s: %.0f tokens/s, %.2f MFLOP/token, %.1f GFLOP/s = %.0f%% of the sgemm peak\n",
           s.d_model, s.n_layers, s.n_heads, s.context, s.batch, s.vocab, s.ffn, tok_s, flops_tok / 1e6, gflops,
           100.0 * gflops / peak);
    const double mfu = peak_tflops > 0 ? gflops / (peak_tflops * 1e3) : 0;
    if (peak_tflops > 0) printf("MFU: %.1f%% (%.1f TFLOP/s of model FLOPs against %.1f TFLOP/s)\n", 100.0 * mfu, gflops / 1e3, peak_tflops);
    if (profile) {
        fl_profile_print(&prof, s.steps, stdout);
        printf("  (profiled steps: %.0f tokens/s, %.0f%% of the unprofiled rate)\n", prof_tok_s, 100.0 * prof_tok_s / tok_s);
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) return fl_cli_report(&(fl_error){FL_EIO, "cannot write the --json file"});
        fprintf(f, "{\"backend\": \"%s\", \"kernel\": \"%s\", \"sgemm_gflops\": %.2f, \"train_tokens_per_s\": %.1f, "
                   "\"train_gflops\": %.2f, \"flops_per_token\": %.0f, \"fraction_of_peak\": %.4f, \"preset\": \"%s\", "
                   "\"peak_tflops\": %.1f, \"peak_assumption\": \"%s\", \"mfu\": %.4f, \"shape\": {\"d_model\": %d, "
                   "\"n_layers\": %d, \"n_heads\": %d, \"context\": %d, \"batch\": %d, \"vocab\": %d, \"ffn\": \"%s\"}",
                be->name, be->describe(), peak, tok_s, gflops, flops_tok, gflops / peak, preset, peak_tflops, peak_what, mfu,
                s.d_model, s.n_layers, s.n_heads, s.context, s.batch, s.vocab, s.ffn);
        if (profile) {
            fprintf(f, ", \"profiled_tokens_per_s\": %.1f, \"profile_ms_per_step\": {", prof_tok_s);
            for (int i = 1; i < FL_PH_COUNT; i++)
                fprintf(f, "%s\"%s\": %.4f", i > 1 ? ", " : "", fl_profile_name((fl_phase)i), 1e3 * prof.seconds[i] / s.steps);
            fputc('}', f);
        }
        fputs("}\n", f);
        fclose(f);
    }
    return 0;
}
