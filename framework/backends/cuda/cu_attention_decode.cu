/*
 * backends/cuda/cu_attention_decode.cu — attention for decoding with a KV
 * cache: append the new positions' keys and values, then attend one query
 * per sequence over the cache (backend.h: kv_append, attention_decode).
 *
 * The cache is k_cache/v_cache[B,H,S,hs]: each head's keys and values are
 * contiguous [S,hs] matrices, so one head's work reads t*hs consecutive
 * floats of each. One new query per sequence is two matrix-vector products
 * per head, far too small for cuBLAS calls to pay (2H launches per layer and
 * step); one kernel does the whole layer, a block per (b,h), over keys j of
 * the cache's positions 0..t-1 (a local layer: the last window of them):
 *
 *   s[j] = scale q·k_j       a warp per key, lanes over hs (coalesced)
 *   p[j] = exp(s[j] - max)   the block's max and sum (cu_block_max/_sum)
 *   part[w,:] = Σ p[j] v_j   warp w over keys j ≡ w (mod warps), lanes over
 *                            hs; then out = Σ_w part[w,:] / Σ p, in warp order
 *
 * s and part live in global scratch (t + warps*hs floats per pair), so no
 * context length or head size is too large for shared memory. Everything is
 * fp32 FMAs in a fixed order: no tensor cores (the products are vectors), no
 * atomics, the same bits on every run.
 */
#include "cu_ops.h"
#include "attn_shapes.h" /* the ops' shape checks, shared with the CPU */

#define DECODE_THREADS 256
#define DECODE_WARPS (DECODE_THREADS / 32)

/* K/V[b,h,pos+i,e] = k/v of qkv row (b,i), column h*hs+e; a thread per value */
static __global__ void k_kv_append(const float *qkv, int64_t pos, int64_t n, fl_kv_dims d, float *K, float *V) {
    CU_LOOP(x, d.B * n * d.C) {
        const int64_t b = x / (n * d.C), i = x / d.C % n, c = x % d.C;
        const int64_t at = ((b * d.H + c / d.hs) * d.S + pos + i) * d.hs + c % d.hs;
        const float *k = qkv + (b * n + i) * 3 * d.C + d.C + c;
        K[at] = k[0];
        V[at] = k[d.C]; /* v follows k by C columns */
    }
}

void cu_kv_append(const fl_tensor *qkv, int64_t pos, fl_tensor *k_cache, fl_tensor *v_cache) {
    fl_kv_dims d;
    int64_t n;
    CU_CHECK(fl_kv_append_dims(qkv, pos, k_cache, v_cache, &d, &n));
    if (n * d.C == 0) return;
    CU_LAUNCH(cu_grid(d.B * n * d.C), CU_THREADS, 0, k_kv_append)(cu_f32(qkv), pos, n, d, cu_f32(k_cache),
                                                                 cu_f32(v_cache));
    CU_LAUNCHED("k_kv_append");
}

/* out[b, h*hs..] for pair blockIdx.x = b*H + h, over the t cached
   positions from t0; scratch: t + DECODE_WARPS*hs floats per pair */
static __global__ void __launch_bounds__(DECODE_THREADS)
    k_attention_decode(const float *qkv, const float *K, const float *V, fl_kv_dims d, int64_t t0, int64_t t,
                       float scale, float *scratch, float *out) {
    __shared__ float sm[32];
    const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, hs = d.hs;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *q = qkv + b * 3 * d.C + h * hs, *Kh = K + (bh * d.S + t0) * hs, *Vh = V + (bh * d.S + t0) * hs;
    float *s = scratch + bh * (t + DECODE_WARPS * hs), *part = s + t;
    float m = -INFINITY;
    for (int64_t j = warp; j < t; j += DECODE_WARPS) { /* s = scale K q */
        float dot = 0.0f;
        for (int64_t e = lane; e < hs; e += 32) dot += q[e] * Kh[j * hs + e];
        dot = scale * cu_warp_sum(dot);
        if (lane == 0) s[j] = dot;
        m = fmaxf(m, dot);
    }
    m = cu_block_max(m, sm); /* its barriers publish s */
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < t; j += DECODE_THREADS) {
        const float p = expf(s[j] - m);
        s[j] = p;
        sum += p;
    }
    sum = cu_block_sum(sum, sm); /* and p */
    for (int64_t e = lane; e < hs; e += 32) { /* this warp's share of Σ p v */
        float acc = 0.0f;
        for (int64_t j = warp; j < t; j += DECODE_WARPS) acc += s[j] * Vh[j * hs + e];
        part[warp * hs + e] = acc;
    }
    __syncthreads();
    const float inv = 1.0f / sum; /* sum >= 1: the max's own term */
    for (int64_t e = threadIdx.x; e < hs; e += DECODE_THREADS) {
        float o = 0.0f;
        for (int w = 0; w < DECODE_WARPS; w++) o += part[w * hs + e];
        out[b * d.C + h * hs + e] = o * inv;
    }
}

void cu_attention_decode(const fl_tensor *qkv, const fl_tensor *k_cache, const fl_tensor *v_cache, int64_t t,
                         int64_t window, fl_tensor *out) {
    fl_kv_dims d;
    CU_CHECK(fl_kv_decode_dims(qkv, k_cache, v_cache, t, out, &d) && window >= 0);
    if (d.C == 0) return;
    const int64_t t0 = fl_kv_window_start(t, window); /* a local layer: the last window positions */
    t -= t0;
    const int64_t per_pair = t + DECODE_WARPS * d.hs;
    float *scratch = (float *)cu_scratch(CU_SLOT_ATTENTION, (size_t)(d.B * d.H * per_pair) * sizeof(float));
    if (!scratch) return;
    const float scale = 1.0f / sqrtf((float)d.hs);
    CU_LAUNCH((unsigned)(d.B * d.H), DECODE_THREADS, 0, k_attention_decode)(
        cu_f32(qkv), cu_f32(k_cache), cu_f32(v_cache), d, t0, t, scale, scratch, cu_f32(out));
    CU_LAUNCHED("k_attention_decode");
}
