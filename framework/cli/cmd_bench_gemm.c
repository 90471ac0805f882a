/*
 * cli/cmd_bench_gemm.c — `ffnlab bench --gemm`: flags in, the table of
 * run/bench_gemm.c's figures out.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "results.h"

static void help(void) {
    printf("usage: ffnlab bench --gemm [--d-model D] [--context T] [--batch B] [--vocab V] [--reps N] [--device D] [--precision P]\n"
           "                          [--activations f32|bf16] [--json FILE]\n\n"
           "Each GEMM of a training step at the bench shape (default d=256, 16x256 tokens, vocab 4096; the FFN is the\n"
           "dense d_ff = 4d): the forward against the two backward products of the same FLOPs, dx and dW, with W stored\n"
           "as the model stores it: [in,out] for attention and the FFN (y = x·W, dx = dy·Wᵀ, dW += xᵀ·dy), [out,in]\n"
           "for the LM head, tied to the token embedding (y = x·Wᵀ, dx = dy·W, dW += dyᵀ·x). On the backend's own gemm\n"
           "op, so the path it picks for each transpose is what is timed. Prints the best ms and GFLOP/s of each over\n"
           "--reps rounds (default 15), each round the three back to back (a shared machine takes a core away now and\n"
           "then: the best round is the kernel's own speed), and each backward product's time as a multiple of its\n"
           "forward's.\n"
           "--activations bf16 (with the bf16 precision): x, each layer's input, stored in bf16 as a bf16 step stores\n"
           "the inputs that only feed GEMMs (attention's qkv, the FFN's projection); default f32, as the step stores\n"
           "the rest (W and the gradients dy are f32 either way: the bf16 precision rounds them for the product).\n");
}

static void print_table(const fl_bench_gemm_result *r, int bf16_x) {
    printf("backend: %s — %s\n", r->backend, r->kernel);
    printf("GEMMs of one training step, %lld tokens (best of %d rounds), x in %s: ms, GFLOP/s, time vs forward\n",
           r->n_rows ? (long long)r->rows[0].tokens : 0LL, r->reps, bf16_x ? "bf16" : "f32");
    printf("  %-10s %5s %5s  %-8s  %-17s%-26s%s\n", "layer", "in", "out", "W", "forward", "dx", "dW");
    for (int i = 0; i < r->n_rows; i++) {
        const fl_bench_gemm_row *w = &r->rows[i];
        printf("  %-10s %5lld %5lld  %-8s  %7.2f %6.1f   ", w->layer, (long long)w->in, (long long)w->out,
               w->w_out_in ? "[out,in]" : "[in,out]", w->ms[FL_GEMM_FWD], w->gflops[FL_GEMM_FWD]);
        for (int p = FL_GEMM_DX; p < FL_GEMM_PRODUCTS; p++)
            printf("%7.2f %6.1f (%.2fx)    ", w->ms[p], w->gflops[p], w->ms[p] / w->ms[FL_GEMM_FWD]);
        printf("\n");
    }
    printf("  W[in,out]: y = x·W, dx = dy·Wᵀ, dW += xᵀ·dy; W[out,in]: y = x·Wᵀ, dx = dy·W, dW += dyᵀ·x\n");
    printf("slowest backward product: %.2fx its forward\n", r->worst_ratio);
}

int fl_cmd_bench_gemm(int argc, char **argv) {
    fl_bench_gemm_opts o = {.shape = {256, 4, 4, 256, 16, 4096, 0, "dense"}, .device = "auto", .reps = 15};
    const char *json = NULL, *precision = "auto";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--gemm")) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return help(), 0;
        if (!v) return fl_cli_usage("bench", "--gemm: unknown or incomplete option '%s'", a);
        if (!strcmp(a, "--d-model")) rc = fl_cli_int("bench", a, v, 1, 1 << 16, &o.shape.d_model);
        else if (!strcmp(a, "--context")) rc = fl_cli_int("bench", a, v, 1, 1 << 20, &o.shape.context);
        else if (!strcmp(a, "--batch")) rc = fl_cli_int("bench", a, v, 1, 1 << 16, &o.shape.batch);
        else if (!strcmp(a, "--vocab")) rc = fl_cli_int("bench", a, v, 1, 1 << 24, &o.shape.vocab);
        else if (!strcmp(a, "--reps")) rc = fl_cli_int("bench", a, v, 1, 64, &o.reps);
        else if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--activations")) {
            if (strcmp(v, "f32") && strcmp(v, "bf16"))
                return fl_cli_usage("bench", "--gemm: --activations '%s' (expected f32 or bf16)", v);
            o.bf16_x = !strcmp(v, "bf16");
        }
        else if (!strcmp(a, "--json")) json = v;
        else return fl_cli_usage("bench", "--gemm: unknown option '%s'", a);
        if (rc) return rc;
        i++;
    }
    int rc = fl_cli_precision("bench", precision);
    if (rc) return rc;
    if (fl_cli_json_target(json)) return 1;
    fl_bench_gemm_result r;
    fl_error err = {0};
    if (fl_bench_gemm(&o, &r, &err)) return fl_cli_report(&err);
    print_table(&r, o.bf16_x);
    return json ? fl_cli_write_json(json, fl_json_bench_gemm(&o, &r)) : 0;
}
