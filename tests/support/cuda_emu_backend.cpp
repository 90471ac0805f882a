/*
 * tests/support/cuda_emu_backend.cpp — see cuda_emu_backend.h. The CUDA
 * sources are compiled here, inside namespace emu_cuda so that a test
 * linked with the real CUDA backend keeps both, together with the little
 * of cu_common.h's runtime they call (scratch, uploads, error records).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_emu.h"

extern "C" {
#include "backend.h"
#include "cuda_backend.h" /* FL_CUDA_GEMM_ALIGN */
#include "log.h"
}

#include "cuda_emu_backend.h"

namespace emu_cuda {

#include "cu_ops.h"

#include "cu_adamw.cu"
#include "cu_attention.cu"
#include "cu_attention_decode.cu"
#include "cu_bucket_sort.cu"
#include "cu_cross_entropy.cu"
#include "cu_elementwise.cu"
#include "cu_embed.cu"
#include "cu_flash_attention.cu"
#include "cu_gemm.cu"
#include "cu_layernorm.cu"
#include "cu_norm_groups.cu"
#include "cu_norms.cu"
#include "cu_reduce.cu"
#include "cu_rows.cu"
#include "cu_scatter.cu"
#include "cu_softmax.cu"
#include "cu_topk.cu"

cu_state g_cu;

int cu_ok_rt(cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return 1;
    fl_log(FL_LOG_ERROR, "%s:%d: %s failed (emulated)", file, line, call);
    return 0;
}

int cu_ok_blas(cublasStatus_t st, const char *call, const char *file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return 1;
    fl_log(FL_LOG_ERROR, "%s:%d: %s failed (emulated)", file, line, call);
    return 0;
}

void cu_shape_error(const char *op, const char *cond) {
    fl_log(FL_LOG_ERROR, "cuda op %s: shape check failed: %s", op, cond);
}

void *cu_scratch(int slot, size_t bytes) {
    if (bytes > g_cu.scratch_cap[slot]) {
        free(g_cu.scratch[slot]);
        g_cu.scratch[slot] = malloc(bytes);
        g_cu.scratch_cap[slot] = g_cu.scratch[slot] ? bytes : 0;
    }
    return g_cu.scratch[slot];
}

/* A copy the caller may not reuse: kernels run when launched here, but an
   op may upload several arrays before its first launch. */
const void *cu_upload(const void *src, size_t bytes) {
    enum { RING = 16 };
    static void *ring[RING];
    static size_t cap[RING];
    static unsigned next;
    const unsigned i = next++ % RING;
    if (bytes > cap[i]) {
        free(ring[i]);
        ring[i] = malloc(bytes);
        cap[i] = ring[i] ? bytes : 0;
    }
    if (ring[i] && bytes) memcpy(ring[i], src, bytes);
    return ring[i];
}

int cu_download(void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return 1;
}

} // namespace emu_cuda

using namespace emu_cuda;

static fl_backend g_emu;

static const char *emu_describe(void) {
    return "the CUDA backend's code emulated on the CPU (tests/support/cuda_emu.h; cuBLAS and CUB as reference loops)";
}

void ts_cuda_emu_set_math(const char *mode) {
    g_cu.math = !strcmp(mode, "fp32") ? CU_MATH_FP32 : !strcmp(mode, "bf16") ? CU_MATH_BF16 : CU_MATH_TF32;
    g_cu.compute = g_cu.math == CU_MATH_FP32   ? CUBLAS_COMPUTE_32F
                   : g_cu.math == CU_MATH_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                               : CUBLAS_COMPUTE_32F_FAST_TF32;
}

const fl_backend *ts_cuda_emu_backend(void) {
    if (g_emu.name) return &g_emu;
    static unsigned flags[2];
    g_cu.flags = flags;
    g_cu.prop.multiProcessorCount = 2;          /* small grids: grid-stride loops cover the rest */
    g_cu.prop.sharedMemPerBlockOptin = 232448;  /* an H100's */
    ts_cuda_emu_set_math("tf32");
    g_emu = *fl_backend_cpu();
    g_emu.name = "cuda-emulated";
    g_emu.describe = emu_describe;
    g_emu.attention_saved_numel = cu_attention_saved_numel;
    g_emu.attention = cu_attention;
    g_emu.attention_backward = cu_attention_backward;
    g_emu.kv_append = cu_kv_append;
    g_emu.attention_decode = cu_attention_decode;
    g_emu.cross_entropy = cu_cross_entropy;
    g_emu.gemm_align = FL_CUDA_GEMM_ALIGN; /* the model pads its LM head as on a GPU */
    g_emu.adamw = cu_adamw;
    g_emu.adamw_rows = cu_adamw_rows;
    g_emu.sumsq = cu_sumsq;
    g_emu.sumsq_many = cu_sumsq_many;
    g_emu.sumsq_rows = cu_sumsq_rows;
    g_emu.nonfinite = cu_nonfinite;
    g_emu.zero_rows = cu_zero_rows;
    g_emu.embed = cu_embed;
    g_emu.embed_backward = cu_embed_backward;
    fl_ops *o = &g_emu.ops;
    o->gemm = cu_gemm;
    o->gemm_batched = cu_gemm_batched;
    o->gemm_grouped = cu_gemm_grouped;
    o->gemm_grouped_wgrad = cu_gemm_grouped_wgrad;
    o->gather_rows = cu_gather_rows;
    o->scatter_add_rows = cu_scatter_add_rows;
    o->embedding_bag = cu_embedding_bag;
    o->embedding_bag_backward = cu_embedding_bag_backward;
    o->add_bias = cu_add_bias;
    o->activation = cu_activation;
    o->activation_backward = cu_activation_backward;
    o->mul = cu_mul;
    o->axpby = cu_axpby;
    o->fill = cu_fill;
    o->copy = cu_copy;
    o->scale_rows = cu_scale_rows;
    o->softmax = cu_softmax;
    o->softmax_backward = cu_softmax_backward;
    o->logsumexp = cu_logsumexp;
    o->topk = cu_topk;
    o->layernorm = cu_layernorm;
    o->layernorm_backward = cu_layernorm_backward;
    o->rng_normal = cu_rng_normal;
    o->rng_uniform = cu_rng_uniform;
    o->bucket_sort = cu_bucket_sort;
    o->to_host = cu_to_host;
    o->from_host = cu_from_host;
    o->permute01 = cu_permute01;
    o->dropout = cu_dropout;
    o->hash_ids = cu_hash_ids;
    o->bias_activation = cu_bias_activation;
    o->bias_activation_backward = cu_bias_activation_backward;
    o->bias_activation_grouped = cu_bias_activation_grouped;
    o->bias_activation_grouped_backward = cu_bias_activation_grouped_backward;
    o->sum_rows = cu_sum_rows;
    o->row_dot = cu_row_dot;
    o->batchnorm = cu_batchnorm;
    o->batchnorm_backward = cu_batchnorm_backward;
    o->layernorm_groups = cu_layernorm_groups;
    o->layernorm_groups_backward = cu_layernorm_groups_backward;
    return &g_emu;
}
