/*
 * backends/cuda/cuda_backend.cu — the CUDA backend's table and its plumbing:
 * choosing and starting the GPU, device memory, the sticky error and the
 * out-of-range flags, scratch buffers, host-array uploads, describe(),
 * sync(), the precision mode and the GPU's datasheet peak for MFU.
 *
 * The kernels live one family per file (cu_*.cu); cu_ops.h declares what
 * each provides, and the table at the end of this file wires them up.
 *
 * Starting: fl_backend_cuda() asks the runtime for the devices, picks one,
 * creates the cuBLAS handle and runs one tiny kernel, so a machine without
 * a driver, without a GPU, or with a GPU this build has no code for fails
 * here with a message instead of at the first op.
 */
#include "cu_common.h"
#include "cu_ops.h"
#include "cuda_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "error.h"
}

cu_state g_cu;

/* 8 MiB of pinned host memory and as much device memory for uploads of host
   arrays (expert offsets' pointers, row lists): far more than a step needs. */
#define CU_RING_BYTES ((size_t)8 << 20)

/* ------------------------------------------------------------ errors */

static void sticky(fl_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sticky(fl_status code, const char *fmt, ...) {
    static unsigned long later;
    char msg[FL_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_cu.sticky) { /* the first error is the one that explains the rest */
        if (++later <= 3) fl_log(FL_LOG_ERROR, "cuda: another error after the first: %s", msg);
        return;
    }
    g_cu.sticky = 1;
    g_cu.sticky_code = code;
    snprintf(g_cu.sticky_msg, sizeof g_cu.sticky_msg, "%s", msg);
    fl_log(FL_LOG_ERROR, "cuda: %s", msg);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cu_ok_rt(cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return 1;
    sticky(e == cudaErrorMemoryAllocation ? FL_ENOMEM : FL_EINTERNAL, "%s:%d: %s: %s: %s",
           base_name(file), line, call, cudaGetErrorName(e), cudaGetErrorString(e));
    return 0;
}

int cu_ok_blas(cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 1;
    sticky(s == CUBLAS_STATUS_ALLOC_FAILED ? FL_ENOMEM : FL_EINTERNAL, "%s:%d: %s: %s: %s",
           base_name(file), line, call, cublasGetStatusName(s), cublasGetStatusString(s));
    return 0;
}

void cu_shape_error(const char *op, const char *cond) {
    fl_log(FL_LOG_ERROR, "cuda op %s: shape check failed: %s", op, cond);
}

/* ------------------------------------------------------------ memory */

static double gib(size_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

/* cudaMalloc of `bytes`; on failure logs how much was asked and how much was
   free, and clears the (non-sticky) runtime error so later checks do not
   pick it up. */
static void *dev_malloc(size_t bytes, const char *what) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaSuccess) return p;
    (void)cudaGetLastError();
    size_t fr = 0, tot = 0;
    (void)cudaMemGetInfo(&fr, &tot);
    fl_log(FL_LOG_ERROR,
           "cuda: %s: out of GPU memory asking for %.2f GiB (%zu bytes); %.2f GiB free of %.2f GiB on %s "
           "(cudaMalloc: %s: %s)",
           what, gib(bytes), bytes, gib(fr), gib(tot), g_cu.prop.name, cudaGetErrorName(e),
           cudaGetErrorString(e));
    return NULL;
}

/* Device memory, zeroed (the contract); 0 bytes still gives a pointer. */
static void *cu_alloc(size_t bytes) {
    size_t n = bytes ? (bytes + 255) / 256 * 256 : 256;
    void *p = dev_malloc(n, "alloc");
    if (p && !CU_OK(cudaMemsetAsync(p, 0, n, g_cu.stream))) {
        (void)cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_free(void *p) {
    if (p) CU_OK(cudaFree(p));
}

void *cu_scratch(int slot, size_t bytes) {
    if (bytes == 0) bytes = 256;
    if (g_cu.scratch_cap[slot] >= bytes) return g_cu.scratch[slot];
    if (g_cu.scratch[slot]) CU_OK(cudaFree(g_cu.scratch[slot])); /* waits for its users */
    g_cu.scratch[slot] = NULL;
    g_cu.scratch_cap[slot] = 0;
    size_t n = bytes + bytes / 4; /* grow with some room: shapes creep up */
    void *p = dev_malloc(n, "scratch");
    if (!p) {
        size_t fr = 0, tot = 0;
        (void)cudaMemGetInfo(&fr, &tot);
        sticky(FL_ENOMEM, "out of GPU memory for %.2f GiB of scratch (%.2f GiB free of %.2f GiB)", gib(n), gib(fr),
               gib(tot));
        return NULL;
    }
    g_cu.scratch[slot] = p;
    g_cu.scratch_cap[slot] = n;
    return p;
}

/* The ring: uploads take consecutive 256-byte-aligned pieces of the pinned
   buffer and of its device twin, copied asynchronously on the stream. When
   the ring is full the stream is drained once (every earlier copy and every
   kernel that read one has finished) and it starts over. */
const void *cu_upload(const void *src, size_t bytes) {
    if (bytes == 0) bytes = 1;
    const size_t need = (bytes + 255) / 256 * 256;
    if (!g_cu.ring_host || need > g_cu.ring_cap) {
        void *p = cu_scratch(CU_SLOT_UPLOAD, bytes);
        if (!p || !CU_OK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice))) return NULL;
        return p;
    }
    if (g_cu.ring_pos + need > g_cu.ring_cap) {
        if (!CU_OK(cudaStreamSynchronize(g_cu.stream))) return NULL;
        g_cu.ring_pos = 0;
    }
    char *h = g_cu.ring_host + g_cu.ring_pos, *d = g_cu.ring_dev + g_cu.ring_pos;
    g_cu.ring_pos += need;
    memcpy(h, src, bytes);
    if (!CU_OK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, g_cu.stream))) return NULL;
    return d;
}

int cu_download(void *dst, const void *src, size_t bytes) {
    if (!bytes) return 1;
    return CU_OK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

/* ------------------------------------------------------------ sync */

static const struct {
    unsigned bit;
    const char *what;
} FLAG_NAMES[] = {
    {CU_FLAG_GATHER, "gather_rows: an index >= the source's rows (a zero row was used)"},
    {CU_FLAG_SCATTER, "scatter_add_rows / embedding_bag_backward: an index >= the destination's rows (skipped)"},
    {CU_FLAG_EMBAG, "embedding_bag / its gradient: an index >= the table's rows (treated as padding)"},
    {CU_FLAG_EMBED, "embed: a token id outside [0, V) (position embedding only)"},
    {CU_FLAG_TARGET, "cross_entropy: a target id >= V (row ignored)"},
    {CU_FLAG_BUCKET, "bucket_sort: a key >= G (left out)"},
    {CU_FLAG_ROWS, "adamw_rows: a row outside [0, rows) (skipped)"},
};

static void *cu_stream(void) { return (void *)g_cu.stream; }

static fl_status cu_sync(fl_error *err) {
    if (!g_cu.sticky) CU_OK(cudaStreamSynchronize(g_cu.stream));
    if (!g_cu.sticky) {
        unsigned f = 0;
        if (cu_download(&f, g_cu.flags, sizeof f) && f) {
            for (size_t i = 0; i < sizeof FLAG_NAMES / sizeof FLAG_NAMES[0]; i++)
                if (f & FLAG_NAMES[i].bit) fl_log(FL_LOG_ERROR, "cuda op %s", FLAG_NAMES[i].what);
            CU_OK(cudaMemsetAsync(g_cu.flags, 0, sizeof f, g_cu.stream));
        }
    }
    if (g_cu.sticky) return fl_fail(err, g_cu.sticky_code, "GPU error: %s", g_cu.sticky_msg);
    return FL_OK;
}

/* ------------------------------------------------------------ describe */

static const char *math_name(int m) { return m == CU_MATH_FP32 ? "fp32" : m == CU_MATH_BF16 ? "bf16" : "tf32"; }

static const char *math_long(int m) {
    switch (m) {
    case CU_MATH_FP32: return "FP32 FMA (no tensor-core rounding)";
    case CU_MATH_BF16: return "BF16 tensor cores (fp32 in/out, inputs rounded to bf16)";
    default: return "TF32 tensor cores (fp32 in/out and accumulation)";
    }
}

static const char *cu_describe(void) {
    static char line[512];
    int rt = 0, drv = 0, blas = 0; /* informational: a failed query leaves 0 */
    (void)cudaRuntimeGetVersion(&rt);
    (void)cudaDriverGetVersion(&drv);
    (void)cublasGetVersion(g_cu.blas, &blas);
    snprintf(line, sizeof line,
             "%s (cuda:%d, sm_%d%d, %d SMs, %.1f GiB), CUDA runtime %d.%d, driver %d.%d, cuBLAS %d.%d.%d, GEMMs: %s, "
             "attention: %s",
             g_cu.prop.name, g_cu.device, g_cu.prop.major, g_cu.prop.minor, g_cu.prop.multiProcessorCount,
             gib(g_cu.prop.totalGlobalMem), rt / 1000, rt % 1000 / 10, drv / 1000, drv % 1000 / 10, blas / 10000,
             blas / 100 % 100, blas % 100, math_long(g_cu.math),
             cu_flash_supported(64) ? "flash kernels (head sizes 32/64/128), else cuBLAS with T x T probabilities"
                                    : "cuBLAS with T x T probabilities");
    return line;
}

/* ------------------------------------------------------------ knobs */

extern "C" fl_status fl_cuda_set_math(const char *mode, fl_error *err) {
    int m;
    if (!strcmp(mode, "tf32")) m = CU_MATH_TF32;
    else if (!strcmp(mode, "fp32")) m = CU_MATH_FP32;
    else if (!strcmp(mode, "bf16")) m = CU_MATH_BF16;
    else return fl_fail(err, FL_EINVAL, "CUDA math mode '%s': expected tf32, fp32 or bf16", mode);
    g_cu.math = m;
    g_cu.compute = m == CU_MATH_FP32   ? CUBLAS_COMPUTE_32F
                   : m == CU_MATH_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                       : CUBLAS_COMPUTE_32F_FAST_TF32;
    return FL_OK;
}

extern "C" const char *fl_cuda_math(void) { return math_name(g_cu.math); }

extern "C" void fl_cuda_set_grouped_loop(int on) { g_cu.grouped_loop = on != 0; }

/* fl_backend.peak_tflops: from the GPU's name (H100 / H200 SXM, H100 PCIe,
   A100, ...) and the math mode; dense (no sparsity) datasheet peaks in
   TFLOP/s: TF32, BF16, FP32. */
static double cu_peak_tflops(const char **what) {
    static const struct {
        const char *match, *not_match, *label;
        double tf32, bf16, fp32;
    } PEAKS[] = {
        {"H200", NULL, "H200 SXM", 494.7, 989.4, 66.9},
        {"GH200", NULL, "GH200", 494.7, 989.4, 66.9},
        {"H100 PCIe", NULL, "H100 PCIe", 378.0, 756.0, 51.2},
        {"H100 NVL", NULL, "H100 NVL", 417.0, 835.0, 60.0},
        {"H100", NULL, "H100 SXM", 494.7, 989.4, 66.9},
        {"H800", "PCIe", "H800 SXM", 494.7, 989.4, 66.9},
        {"A100", NULL, "A100", 156.0, 312.0, 19.5},
        {"L40S", NULL, "L40S", 183.0, 362.0, 91.6},
    };
    static char label[400];
    if (what) *what = "unknown GPU: no datasheet peak";
    if (!g_cu.ready) return 0.0;
    for (size_t i = 0; i < sizeof PEAKS / sizeof PEAKS[0]; i++) {
        if (!strstr(g_cu.prop.name, PEAKS[i].match)) continue;
        if (PEAKS[i].not_match && strstr(g_cu.prop.name, PEAKS[i].not_match)) continue;
        double p = g_cu.math == CU_MATH_FP32 ? PEAKS[i].fp32 : g_cu.math == CU_MATH_BF16 ? PEAKS[i].bf16 : PEAKS[i].tf32;
        snprintf(label, sizeof label, "%s %s dense, datasheet %.1f TFLOP/s (matched '%s' in '%s')", PEAKS[i].label,
                 g_cu.math == CU_MATH_FP32 ? "FP32" : g_cu.math == CU_MATH_BF16 ? "BF16" : "TF32", p,
                 PEAKS[i].match, g_cu.prop.name);
        if (what) *what = label;
        return p;
    }
    return 0.0;
}

/* ------------------------------------------------------------ start */

static __global__ void k_probe(unsigned *flags) {
    if (threadIdx.x == 0 && blockIdx.x == 0) flags[1] = 0x600du;
}

static fl_backend g_backend = {
    .name = "cuda",
    .device = {FL_DEVICE_CUDA, 0},
    .ops = {
        .size = sizeof(fl_ops),
        .gemm = cu_gemm,
        .gemm_batched = cu_gemm_batched,
        .gemm_grouped = cu_gemm_grouped,
        .gemm_grouped_wgrad = cu_gemm_grouped_wgrad,
        .add_bias = cu_add_bias,
        .sum_rows = cu_sum_rows,
        .activation = cu_activation,
        .activation_backward = cu_activation_backward,
        .mul = cu_mul,
        .axpby = cu_axpby,
        .fill = cu_fill,
        .copy = cu_copy,
        .scale_rows = cu_scale_rows,
        .row_dot = cu_row_dot,
        .softmax = cu_softmax,
        .softmax_backward = cu_softmax_backward,
        .logsumexp = cu_logsumexp,
        .topk = cu_topk,
        .gather_rows = cu_gather_rows,
        .scatter_add_rows = cu_scatter_add_rows,
        .embedding_bag = cu_embedding_bag,
        .embedding_bag_backward = cu_embedding_bag_backward,
        .layernorm = cu_layernorm,
        .layernorm_backward = cu_layernorm_backward,
        .rng_normal = cu_rng_normal,
        .rng_uniform = cu_rng_uniform,
        .bucket_sort = cu_bucket_sort,
        .to_host = cu_to_host,
        .from_host = cu_from_host,
        .permute01 = cu_permute01,
        .dropout = cu_dropout,
        .batchnorm = cu_batchnorm,
        .batchnorm_backward = cu_batchnorm_backward,
        .layernorm_groups = cu_layernorm_groups,
        .layernorm_groups_backward = cu_layernorm_groups_backward,
        .hash_ids = cu_hash_ids,
        .bias_activation = cu_bias_activation,
        .bias_activation_backward = cu_bias_activation_backward,
        .bias_activation_grouped = cu_bias_activation_grouped,
        .bias_activation_grouped_backward = cu_bias_activation_grouped_backward,
    },
    .alloc = cu_alloc,
    .free = cu_free,
    .describe = cu_describe,
    .embed = cu_embed,
    .embed_backward = cu_embed_backward,
    .attention_saved_numel = cu_attention_saved_numel,
    .attention = cu_attention,
    .attention_backward = cu_attention_backward,
    .kv_append = cu_kv_append,
    .attention_decode = cu_attention_decode,
    .cross_entropy = cu_cross_entropy,
    .adamw = cu_adamw,
    .adamw_rows = cu_adamw_rows,
    .sumsq = cu_sumsq,
    .sumsq_many = cu_sumsq_many,
    .sumsq_rows = cu_sumsq_rows,
    .zero_rows = cu_zero_rows,
    .nonfinite = cu_nonfinite,
    .sync = cu_sync,
    .stream = cu_stream,
    .peak_tflops = cu_peak_tflops,
    .gemm_align = FL_CUDA_GEMM_ALIGN,
};

/* Everything start() made, released on failure so a later call can retry. */
static void teardown(void) {
    if (g_cu.blas) cublasDestroy(g_cu.blas);
    if (g_cu.flags) cudaFree(g_cu.flags);
    if (g_cu.ring_host) cudaFreeHost(g_cu.ring_host);
    if (g_cu.ring_dev) cudaFree(g_cu.ring_dev);
    (void)cudaGetLastError();
    memset(&g_cu, 0, sizeof g_cu);
}

static fl_status start(int idx, fl_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return fl_fail(err, FL_EUNSUPPORTED, "no usable CUDA GPU: cudaGetDeviceCount: %s: %s", cudaGetErrorName(e),
                       cudaGetErrorString(e));
    }
    if (n == 0) return fl_fail(err, FL_EUNSUPPORTED, "no CUDA GPU on this machine (cudaGetDeviceCount = 0)");
    if (idx < 0 || idx >= n)
        return fl_fail(err, FL_EINVAL, "cuda:%d: this machine has %d GPU%s (cuda:0 .. cuda:%d)", idx, n,
                       n == 1 ? "" : "s", n - 1);
    memset(&g_cu, 0, sizeof g_cu);
    g_cu.device = idx;
    g_cu.stream = 0;
    if ((e = cudaSetDevice(idx)) != cudaSuccess || (e = cudaGetDeviceProperties(&g_cu.prop, idx)) != cudaSuccess) {
        teardown();
        return fl_fail(err, FL_EUNSUPPORTED, "cuda:%d: cannot start the device: %s: %s", idx, cudaGetErrorName(e),
                       cudaGetErrorString(e));
    }
    cublasStatus_t bs = cublasCreate(&g_cu.blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        g_cu.blas = NULL;
        teardown();
        return fl_fail(err, FL_EUNSUPPORTED, "cuda:%d: cublasCreate: %s: %s", idx, cublasGetStatusName(bs),
                       cublasGetStatusString(bs));
    }
    if ((bs = cublasSetStream(g_cu.blas, g_cu.stream)) != CUBLAS_STATUS_SUCCESS) {
        teardown();
        return fl_fail(err, FL_EUNSUPPORTED, "cuda:%d: cublasSetStream: %s", idx, cublasGetStatusString(bs));
    }
    if ((e = cudaMalloc(&g_cu.flags, 2 * sizeof(unsigned))) != cudaSuccess ||
        (e = cudaMemset(g_cu.flags, 0, 2 * sizeof(unsigned))) != cudaSuccess) {
        g_cu.flags = NULL;
        teardown();
        return fl_fail(err, FL_EUNSUPPORTED, "cuda:%d: cannot allocate device memory: %s: %s", idx,
                       cudaGetErrorName(e), cudaGetErrorString(e));
    }
    /* Can this GPU run our kernels? A build without code for its
       architecture fails here ("no kernel image is available"). */
    unsigned probe[2] = {0, 0};
    k_probe<<<1, 32>>>(g_cu.flags);
    if ((e = cudaGetLastError()) != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess ||
        (e = cudaMemcpy(probe, g_cu.flags, sizeof probe, cudaMemcpyDeviceToHost)) != cudaSuccess ||
        probe[1] != 0x600du) {
        teardown();
        return fl_fail(err, FL_EUNSUPPORTED, "cuda:%d (%s, compute capability %d.%d) cannot run this build's kernels: %s",
                       idx, g_cu.prop.name, g_cu.prop.major, g_cu.prop.minor,
                       e != cudaSuccess ? cudaGetErrorString(e) : "the probe kernel wrote nothing");
    }
    /* The upload ring is an optimisation: without pinned memory uploads are
       synchronous copies. */
    if (cudaHostAlloc((void **)&g_cu.ring_host, CU_RING_BYTES, cudaHostAllocDefault) == cudaSuccess &&
        cudaMalloc((void **)&g_cu.ring_dev, CU_RING_BYTES) == cudaSuccess) {
        g_cu.ring_cap = CU_RING_BYTES;
    } else {
        if (g_cu.ring_host) cudaFreeHost(g_cu.ring_host);
        g_cu.ring_host = NULL;
        g_cu.ring_dev = NULL;
        (void)cudaGetLastError();
    }
    const char *math = getenv("FFNLAB_CUDA_MATH");
    fl_error merr = {};
    if (fl_cuda_set_math(math && *math ? math : "tf32", &merr)) {
        fl_log(FL_LOG_WARN, "FFNLAB_CUDA_MATH: %s; using tf32", merr.msg);
        fl_cuda_set_math("tf32", NULL);
    }
    const char *grouped = getenv("FFNLAB_CUDA_GROUPED");
    g_cu.grouped_loop = grouped && !strcmp(grouped, "loop");
    const char *attention = getenv("FFNLAB_CUDA_ATTENTION");
    g_cu.attention_gemm = attention && !strcmp(attention, "gemm");
    g_backend.device.index = idx;
    g_cu.ready = 1;
    return FL_OK;
}

extern "C" fl_status fl_backend_cuda(int device_index, const fl_backend **out, fl_error *err) {
    *out = NULL;
    if (g_cu.ready) {
        if (device_index != g_cu.device)
            return fl_fail(err, FL_EUNSUPPORTED, "cuda:%d: this process already uses cuda:%d (one GPU per process)",
                           device_index, g_cu.device);
        *out = &g_backend;
        return FL_OK;
    }
    fl_status st = start(device_index, err);
    if (st) return st;
    *out = &g_backend;
    return FL_OK;
}
