/*
 * cli/cmd_bench.c — `ffnlab bench`: flags in, run/bench.c's figures out.
 *
 * The default measures whole training steps against the GEMM peak
 * (fl_bench_train); --ffn-only, --comm, --blimp, --gemm and --decode go
 * to their own commands (cmd_bench_ffn.c, cmd_bench_comm.c, cmd_eval.c,
 * cmd_bench_gemm.c, cmd_bench_decode.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "results.h"

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
           "--ffn-only [--only SPEC-PREFIX] [--reps N] [--tokens N] [--device D] [--precision P] [--profile] [--json FILE]:\n"
           "  each FFN plugin alone at the study's shapes (d=256, N=16x256 tokens) and at d=512, against the dense FFN\n"
           "  of equal parameters and of equal active FLOPs. --profile: then each layer and mode as many calls again\n"
           "  with the device synchronised around every host op: ms per call by op (GEMMs' GFLOP/s), and the rest,\n"
           "  the plugin's own code and kernels.\n"
           "--gemm [shape, --reps N, --device, --precision, --json]: each GEMM of a training step, forward against its\n"
           "  two backward products (dx = dy·W, dW += dyᵀ·x) of the same FLOPs; see --gemm --help.\n"
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
    for (int i = 1; i < argc; i++) /* --gemm: each GEMM's backward against its forward (cmd_bench_gemm.c) */
        if (!strcmp(argv[i], "--gemm")) return fl_cmd_bench_gemm(argc, argv);
    for (int i = 1; i < argc; i++) /* --decode: generation tokens/s, KV cache vs none (cmd_bench_decode.c) */
        if (!strcmp(argv[i], "--decode")) return fl_cmd_bench_decode(argc, argv);
    fl_bench_shape s = {256, 4, 4, 256, 16, 4096, 10, "dense"};
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
            if (!strcmp(optarg, "gpt2-small")) s = (fl_bench_shape){768, 12, 12, 1024, 8, 50257, s.steps, s.ffn};
            else if (!strcmp(optarg, "reference")) s = (fl_bench_shape){256, 4, 4, 256, 16, 4096, s.steps, s.ffn};
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
    if (fl_cli_json_target(json)) return 1;
    fl_error err = {0};
    fl_bench_opts o = {.shape = s, .device = device, .preset = preset, .profile = profile};
    fl_bench_result r;
    if (fl_bench_train(&o, &r, &err)) return fl_cli_report(&err);
    printf("backend: %s — %s\n", r.backend, r.kernel);
    if (r.peak_tflops > 0) printf("peak: %s\n", r.peak_what);
    printf("sgemm [%lld x %d] x [%d x %d] (LM head): %.1f GFLOP/s\n", (long long)s.batch * s.context, s.d_model,
           s.d_model, s.vocab, r.sgemm_gflops);
    printf("train step d=%d L=%d H=%d T=%d B=%d V=%d ffn=%s: %.0f tokens/s, %.2f MFLOP/token, %.1f GFLOP/s = %.0f%% of the sgemm peak\n",
           s.d_model, s.n_layers, s.n_heads, s.context, s.batch, s.vocab, s.ffn, r.tokens_per_s, r.flops_per_token / 1e6,
           r.gflops, 100.0 * r.gflops / r.sgemm_gflops);
    if (r.head_width > s.vocab)
        printf("LM head: %lld columns in training (the vocabulary %d padded for the GEMM kernels; FLOPs count %d)\n",
               (long long)r.head_width, s.vocab, s.vocab);
    if (r.peak_tflops > 0)
        printf("MFU: %.1f%% (%.1f TFLOP/s of model FLOPs against %.1f TFLOP/s)\n", 100.0 * r.mfu, r.gflops / 1e3, r.peak_tflops);
    if (r.profiled) {
        fl_profile_print_ms(r.profile_ms, stdout);
        printf("  (profiled steps: %.0f tokens/s, %.0f%% of the unprofiled rate)\n", r.profiled_tokens_per_s,
               100.0 * r.profiled_tokens_per_s / r.tokens_per_s);
    }
    return json ? fl_cli_write_json(json, fl_json_bench(&o, &r)) : 0;
}
