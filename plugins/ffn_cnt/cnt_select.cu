/*
 * plugins/ffn_cnt/cnt_select.cu — the block selection on a GPU (see
 * cnt_select.h; shapes are checked by cnt_select.c); cnt_select_cpu.c is the
 * reference.
 *
 * One thread per (row, block): it walks its B units in order, exactly as the
 * CPU does, so the argmax (first maximum wins) and the per-block sums follow
 * the CPU's order; no atomics, no cross-thread reductions. The Gumbel noise
 * is fl_rng_uniform(key, n*F + j), the same counter as the CPU; log and exp
 * are the accurate logf/expf (the CPU uses ~1e-7 polynomials), so z agrees
 * to an ulp or two and the selection matches except at near-ties. Every
 * launch goes on host->stream.
 */
#include "ffnlab/kernel_cuda.h"
#include "ffnlab/rng.h" /* fl_rng_uniform: __host__ __device__ under nvcc */

#include "cnt_select.h"

static float *f32(const fl_tensor *t) { return (float *)t->data; }
static int32_t *i32(const fl_tensor *t) { return (int32_t *)t->data; }
static int64_t cols(const fl_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

/* z of unit j = (l + noise g) * inv_tau, rounded step by step as the CPU
   does (no fused multiply-add) */
__device__ __forceinline__ float gumbel_z(float l, float noise, float inv_tau, uint64_t key, uint64_t counter) {
    if (noise == 0.0f) return __fmul_rn(l, inv_tau);
    const float g = -logf(-logf(fl_rng_uniform(key, counter)));
    return __fmul_rn(__fadd_rn(l, __fmul_rn(noise, g)), inv_tau);
}

/* out[B] = softmax(v[B]) (out may alias v); returns the first maximum's index */
__device__ __forceinline__ int block_softmax(const float *v, int B, float *out) {
    int k = 0;
    float m = v[0];
    for (int i = 1; i < B; i++)
        if (v[i] > m) m = v[i], k = i;
    float sum = 0.0f;
    for (int i = 0; i < B; i++) {
        out[i] = expf(v[i] - m);
        sum += out[i];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < B; i++) out[i] *= inv;
    return k;
}

/* ------------------------------------------------------------ training */

/* one thread per (row n, block b); e = n*nb + b */
static __global__ void k_block_select(const float *l, const float *a, int64_t N, int64_t F, int B, float noise,
                                      float inv_tau, uint64_t key, int soft, float *s, float *p, int32_t *idx,
                                      float *hm) {
    const int64_t nb = F / B;
    FL_CUDA_LOOP(e, N * nb) {
        const int64_t n = e / nb, c0 = (e % nb) * B, o = n * F + c0; /* first column, first element */
        const float *lr = l + o, *ar = a + o;
        float *sr = s + o, *hr = hm + o, *pr = p ? p + o : nullptr;
        for (int i = 0; i < B; i++) sr[i] = gumbel_z(lr[i], noise, inv_tau, key, (uint64_t)(o + i));
        const int k = block_softmax(sr, B, sr);
        idx[e] = (int32_t)(c0 + k);
        if (pr) block_softmax(lr, B, pr);
        for (int i = 0; i < B; i++) {
            const float mask = soft ? sr[i] : (float)(i == k);
            hr[i] = soft || i == k ? ar[i] * mask * (pr ? pr[i] : 1.0f) : 0.0f;
        }
    }
}

fl_status cnt_block_select_cuda(const fl_host *h, const fl_tensor *l, const fl_tensor *a, int B, float noise,
                                float inv_tau, uint64_t key, int soft, fl_tensor *s, fl_tensor *p, fl_tensor *idx,
                                fl_tensor *hm, fl_error *err) {
    const int64_t F = cols(l), N = fl_numel(l) / F, nb = F / B;
    if (N * nb == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(N * nb), FL_CUDA_THREADS, 0, k_block_select)(
        f32(l), f32(a), N, F, B, noise, inv_tau, key, soft != 0, f32(s), p ? f32(p) : nullptr, i32(idx), f32(hm));
    return fl_cuda_launched(h, "cnt: block_select", err);
}

/* The CPU's two passes per block (cnt_select_cpu.c has the derivation):
   sums of dme = dhm * a against s and p first, then dl and dL/da over dhm. */
static __global__ void k_block_select_backward(const float *a, const float *s, const float *p, const int32_t *idx,
                                               int64_t N, int64_t F, int B, float inv_tau, int soft, float *dhm,
                                               float *dl) {
    const int64_t nb = F / B;
    FL_CUDA_LOOP(e, N * nb) {
        const int64_t c0 = (e % nb) * B, o = (e / nb) * F + c0;
        const int64_t k = idx[e] - c0; /* the selected unit within the block */
        const float *ar = a + o, *sr = s + o, *pr = p ? p + o : nullptr;
        float *gr = dhm + o, *dr = dl + o;
        float dot_s = 0.0f, dot_p = 0.0f;
        for (int i = 0; i < B; i++) {
            const float dme = gr[i] * ar[i];
            const float mk = soft ? sr[i] : (float)(i == k);
            const float pi = pr ? pr[i] : 1.0f;
            dot_s += dme * pi * sr[i];
            if (pr) dot_p += dme * mk * pi;
        }
        for (int i = 0; i < B; i++) {
            const float dme = gr[i] * ar[i];
            const float mk = soft ? sr[i] : (float)(i == k);
            const float pi = pr ? pr[i] : 1.0f;
            float v = inv_tau * sr[i] * (dme * pi - dot_s);
            if (pr) v += pi * (dme * mk - dot_p);
            dr[i] = v;
            gr[i] *= mk * pi;
        }
    }
}

fl_status cnt_block_select_backward_cuda(const fl_host *h, const fl_tensor *a, const fl_tensor *s,
                                         const fl_tensor *p, const fl_tensor *idx, int B, float inv_tau, int soft,
                                         fl_tensor *dhm, fl_tensor *dl, fl_error *err) {
    const int64_t F = cols(a), N = fl_numel(a) / F, nb = F / B;
    if (N * nb == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(N * nb), FL_CUDA_THREADS, 0, k_block_select_backward)(
        f32(a), f32(s), p ? f32(p) : nullptr, i32(idx), N, F, B, inv_tau, soft != 0, f32(dhm), f32(dl));
    return fl_cuda_launched(h, "cnt: block_select_backward", err);
}

/* ------------------------------------------------------------ inference */

static __global__ void k_block_argmax(const float *l, const float *bias, int64_t N, int64_t F, int B, int32_t *idx,
                                      float *pmax) {
    const int64_t nb = F / B;
    FL_CUDA_LOOP(e, N * nb) {
        const int64_t n = e / nb, c0 = (e % nb) * B; /* the block's first column */
        const float *v = l + n * F + c0, *c = bias + c0;
        int k = 0;
        float m = v[0] + c[0];
        for (int i = 1; i < B; i++) {
            const float t = v[i] + c[i];
            if (t > m) m = t, k = i;
        }
        idx[e] = (int32_t)(c0 + k);
        if (pmax) {
            float sum = 0.0f;
            for (int i = 0; i < B; i++) sum += expf(v[i] + c[i] - m);
            pmax[e] = 1.0f / sum;
        }
    }
}

fl_status cnt_block_argmax_cuda(const fl_host *h, const fl_tensor *l, const fl_tensor *bias, int B, fl_tensor *idx,
                                fl_tensor *pmax, fl_error *err) {
    const int64_t F = cols(l), N = fl_numel(l) / F, nb = F / B;
    if (N * nb == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(N * nb), FL_CUDA_THREADS, 0, k_block_argmax)(f32(l), f32(bias), N, F, B, i32(idx),
                                                                                 pmax ? f32(pmax) : nullptr);
    return fl_cuda_launched(h, "cnt: block_argmax", err);
}
