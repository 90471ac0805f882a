/*
 * backends/cpu/cpu_backend.c — the CPU backend's table: memory, the
 * description of the kernel path, the shape-error report, and the fl_ops /
 * fl_backend function pointers wired to the kernels in the other cpu_*.c
 * files (see cpu.h for who provides what).
 *
 * Memory is 64-byte aligned (one cache line, one AVX-512 register) and
 * zeroed, as the backend contract promises.
 */
#include "cpu.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include <oneapi/dnnl/dnnl.h>

#include "cpu_gemm_bf16.h" /* the GEMM precision mode */
#include "log.h"

void cpu_shape_error(const char *op, const char *cond) {
    fl_log(FL_LOG_ERROR, "cpu op %s: shape check failed: %s", op, cond);
    assert(!"cpu op shape check failed (see the log line above)");
}

int cpu_threads(void) { return omp_get_max_threads(); }

static void *cpu_alloc(size_t bytes) {
    /* round up so aligned_alloc's size rule holds and 0 bytes still gives a
       distinct pointer */
    size_t n = (bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

static void cpu_free(void *p) { free(p); }

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "generic";
    }
}

/* "oneDNN 2.6.3 sgemm, ISA avx512_core_amx, 2 OpenMP threads", or in the
   bf16 mode "oneDNN 2.6.3 native bf16, f32 accumulate (matmul
   brg:avx512_core_bf16), ISA ..." or "oneDNN 2.6.3 bf16 inputs, fp32
   arithmetic (sgemm), ISA avx2, ...", with ", weight gradients (Aᵀ·B) on
   OpenBLAS 0.3.21 (Zen), narrow products (N 224-256) on BLIS 0.9.0 (zen3)"
   where cpu_blas.c sends them there. The buffer is rebuilt on each call
   because the thread count and the mode may change. */
static const char *cpu_describe(void) {
    static char line[512];
    const dnnl_version_t *v = dnnl_version();
    const char *gemm = cpu_gemm_is_bf16() ? cpu_bf16_impl() : "sgemm";
    /* sgemm's other libraries, unless the native bf16 matmul does every GEMM */
    char blas[256] = "";
    if (!cpu_gemm_is_bf16() || !cpu_bf16_is_native()) cpu_blas_describe(blas, sizeof blas);
    snprintf(line, sizeof line, "oneDNN %d.%d.%d %s, ISA %s%s, %d OpenMP thread%s", v->major, v->minor, v->patch,
             gemm, isa_name(dnnl_get_effective_cpu_isa()), blas, cpu_threads(), cpu_threads() == 1 ? "" : "s");
    return line;
}

static const fl_backend g_cpu = {
    .name = "cpu",
    .device = {FL_DEVICE_CPU, 0},
    .ops = {
        .size = sizeof(fl_ops),
        .gemm = cpu_gemm,
        .gemm_batched = cpu_gemm_batched,
        .gemm_grouped = cpu_gemm_grouped,
        .gemm_grouped_wgrad = cpu_gemm_grouped_wgrad,
        .add_bias = cpu_add_bias,
        .sum_rows = cpu_sum_rows,
        .activation = cpu_activation,
        .activation_backward = cpu_activation_backward,
        .mul = cpu_mul,
        .axpby = cpu_axpby,
        .fill = cpu_fill,
        .copy = cpu_copy,
        .scale_rows = cpu_scale_rows,
        .row_dot = cpu_row_dot,
        .softmax = cpu_softmax,
        .softmax_backward = cpu_softmax_backward,
        .logsumexp = cpu_logsumexp,
        .topk = cpu_topk,
        .gather_rows = cpu_gather_rows,
        .scatter_add_rows = cpu_scatter_add_rows,
        .embedding_bag = cpu_embedding_bag,
        .embedding_bag_backward = cpu_embedding_bag_backward,
        .layernorm = cpu_layernorm,
        .layernorm_backward = cpu_layernorm_backward,
        .rng_normal = cpu_rng_normal,
        .rng_uniform = cpu_rng_uniform,
        .bucket_sort = cpu_bucket_sort,
        .to_host = cpu_to_host,
        .from_host = cpu_from_host,
        .permute01 = cpu_permute01,
        .dropout = cpu_dropout,
        .hash_ids = cpu_hash_ids,
        .bias_activation = cpu_bias_activation,
        .bias_activation_backward = cpu_bias_activation_backward,
        .bias_activation_grouped = cpu_bias_activation_grouped,
        .bias_activation_grouped_backward = cpu_bias_activation_grouped_backward,
        .batchnorm = cpu_batchnorm,
        .batchnorm_backward = cpu_batchnorm_backward,
        .layernorm_groups = cpu_layernorm_groups,
        .layernorm_groups_backward = cpu_layernorm_groups_backward,
    },
    .alloc = cpu_alloc,
    .free = cpu_free,
    .describe = cpu_describe,
    .embed = cpu_embed,
    .embed_backward = cpu_embed_backward,
    .attention_saved_numel = cpu_attention_saved_numel,
    .attention = cpu_attention,
    .attention_backward = cpu_attention_backward,
    .kv_append = cpu_kv_append,
    .attention_decode = cpu_attention_decode,
    .cross_entropy = cpu_cross_entropy,
    .adamw = cpu_adamw,
    .adamw_rows = cpu_adamw_rows,
    .sumsq = cpu_sumsq,
    .sumsq_many = cpu_sumsq_many,
    .sumsq_rows = cpu_sumsq_rows,
    .zero_rows = cpu_zero_rows,
    .nonfinite = cpu_nonfinite,
};

const fl_backend *fl_backend_cpu(void) { return &g_cpu; }
