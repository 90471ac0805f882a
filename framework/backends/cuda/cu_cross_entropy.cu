/*
 * backends/cuda/cu_cross_entropy.cu — the fused LM-head cross-entropy: the
 * loss of logits[N,W] against targets[N] and, in the same kernel, dlogits =
 * scale * (softmax - onehot), which may overwrite the logits in place. The
 * classes are each row's first V columns; the other W - V (an LM head
 * padded to an aligned width) are not read, and get zero gradients.
 *
 * A block of 256 threads per row (V is a vocabulary). One read pass keeps a
 * running (max, sum of exp) per thread — the online softmax — merged across
 * the block; a second pass writes dlogits. Every thread reads x[target]
 * before the block's first barrier, so the in-place write cannot change it.
 * Per-row losses (double) go to scratch, and one block adds them in a fixed
 * order: the loss does not depend on scheduling. The mean comes back to the
 * host with one small copy (the op's only synchronisation).
 */
#include "cu_ops.h"

/* Merges (m2, s2) into (m, s): sums of exp(x - m) over two sets. */
__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    /* s * 0 rather than 0 for an empty side: a NaN seen before any number
       must survive the merge, so a NaN logit gives a NaN loss (the CPU's). */
    const float mn = fmaxf(m, m2);
    if (mn == -INFINITY) {
        s = s + s2;
        return;
    }
    const float a = m == -INFINITY ? s * 0.0f : s * expf(m - mn);
    const float b = m2 == -INFINITY ? s2 * 0.0f : s2 * expf(m2 - mn);
    m = mn;
    s = a + b;
}

static __global__ void k_cross_entropy(const float *x, const int32_t *targets, float *dl, float scale, int64_t V,
                                       int64_t W, double *row_loss, unsigned *flags) {
    __shared__ float sm[32], ss[32];
    const int64_t row = blockIdx.x;
    const int t = threadIdx.x, lane = t & 31, wid = t >> 5, nw = blockDim.x >> 5;
    const float *xr = x + row * W;
    float *dr = dl ? dl + row * W : NULL;
    if (dr)
        for (int64_t j = V + t; j < W; j += blockDim.x) dr[j] = 0.0f; /* padding: never read */
    const int32_t tg = targets[row];
    if (tg < 0 || tg >= V) { /* ignored row: no loss, zero gradient */
        if (t == 0) {
            row_loss[row] = 0.0;
            if (tg >= V) atomicOr(flags, CU_FLAG_TARGET);
        }
        if (dr)
            for (int64_t j = t; j < V; j += blockDim.x) dr[j] = 0.0f;
        return;
    }
    const float xt = xr[tg];
    float m = -INFINITY, s = 0.0f;
    for (int64_t j = t; j < V; j += blockDim.x) {
        const float v = xr[j];
        if (v > m) {
            s = (m == -INFINITY ? s * 0.0f : s * expf(m - v)) + 1.0f;
            m = v;
        } else if (v != -INFINITY) { /* -inf adds nothing (and -inf - -inf would be NaN) */
            s += expf(v - m);        /* v = NaN lands here: s becomes NaN, as on the CPU */
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    if (lane == 0) sm[wid] = m, ss[wid] = s;
    __syncthreads();
    m = lane < nw ? sm[lane] : -INFINITY;
    s = lane < nw ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    if (t == 0) row_loss[row] = (double)m + log((double)s) - (double)xt;
    if (!dr) return;
    const float k = scale / s;
    for (int64_t j = t; j < V; j += blockDim.x) {
        const float p = expf(xr[j] - m) * k;
        dr[j] = j == tg ? p - scale : p;
    }
}

/* out[0] = sum of row_loss, out[1] = rows counted (one block, fixed order) */
static __global__ void k_ce_total(const double *row_loss, const int32_t *targets, int64_t N, int64_t V,
                                  double *out) {
    __shared__ double sm[32];
    double s = 0.0, c = 0.0;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
        const int32_t tg = targets[i];
        if (tg >= 0 && tg < V) s += row_loss[i], c += 1.0;
    }
    s = cu_block_sum_d(s, sm);
    c = cu_block_sum_d(c, sm);
    if (threadIdx.x == 0) out[0] = s, out[1] = c;
}

double cu_cross_entropy(const fl_tensor *logits, int64_t V, const fl_tensor *targets, fl_tensor *dlogits,
                        float scale, int64_t *count) {
    const int64_t N = cu_rows(logits), W = cu_cols(logits);
    if (count) *count = 0;
    CU_CHECK(logits->dtype == FL_F32 && targets->dtype == FL_I32 && fl_numel(targets) == N, NAN);
    CU_CHECK(!dlogits || (dlogits->dtype == FL_F32 && fl_numel(dlogits) == N * W), NAN);
    CU_CHECK(V > 0 && V <= W && N < INT32_MAX, NAN);
    if (N == 0) return 0.0;
    double *scratch = (double *)cu_scratch(CU_SLOT_REDUCE, (size_t)(N + 2) * sizeof(double));
    if (!scratch) return NAN;
    double *out = scratch + N;
    CU_LAUNCH((unsigned)N, CU_THREADS, 0, k_cross_entropy)(cu_f32(logits), cu_i32(targets),
                                                                 dlogits ? cu_f32(dlogits) : NULL, scale, V, W,
                                                                 scratch, g_cu.flags);
    if (!CU_LAUNCHED("k_cross_entropy")) return NAN;
    CU_LAUNCH(1, 1024, 0, k_ce_total)(scratch, cu_i32(targets), N, V, out);
    if (!CU_LAUNCHED("k_ce_total")) return NAN;
    double host[2] = {0.0, 0.0};
    if (!cu_download(host, out, sizeof host)) return NAN;
    const int64_t cnt = (int64_t)host[1];
    if (count) *count = cnt;
    return cnt ? host[0] / (double)cnt : 0.0;
}
