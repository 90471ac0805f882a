/*
 * plugins/ffn_cnt/cnt_select_cpu.c — the block selection on the CPU (see
 * cnt_select.h; shapes are checked by cnt_select.c): Gumbel-softmax
 * selection of one unit per block of B units and its straight-through
 * backward (training), and the block argmax (inference).
 *
 * The training selection touches every logit once and is dominated by the
 * Gumbel noise, two logarithms per value, so log and exp are inlined
 * polynomials that vectorise instead of a libm call per element (exp's is
 * the host's own, ffnlab/fastmath.h, as its softmax computes it).
 */
#include "cnt_select.h"

#include "ffnlab/fastmath.h" /* fl_f2u, fl_u2f, fl_exp_core */
#include "ffnlab/rng.h"      /* fl_rng_uniform */

/* Below this many elements a step stays on one thread. */
#define PAR_MIN 32768

static float *f32(const fl_tensor *t) { return (float *)t->data; }
static int32_t *i32(const fl_tensor *t) { return (int32_t *)t->data; }
static int64_t cols(const fl_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

/* ------------------------------------------------------------------ math */

/* log(x) for positive normal x (all the Gumbel transform feeds it): x =
   m 2^e with m in [sqrt(1/2), sqrt(2)), then Cephes' logf polynomial in
   m - 1; relative error about 1e-7. Integer selects only, so it vectorises. */
static inline float bs_logf(float x) {
    const uint32_t u = fl_f2u(x);
    const uint32_t mant = u & 0x7fffffu;
    const uint32_t big = 0u - (uint32_t)(mant > 0x3504f3u); /* m > sqrt(2): halve it */
    const float m = fl_u2f(mant | (big & 0x3f000000u) | (~big & 0x3f800000u));
    const float e = (float)((int32_t)(u >> 23) - 127 + (int32_t)(big & 1u));
    const float f = m - 1.0f, z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return f + y + 0.693359375f * e;
}

/* exp(x) for x <= 0 (softmax after subtracting the block maximum). Unlike
   the CPU backend's exp it clamps at -87 instead of flushing to 0 (exp(-87) ~ 1.6e-38
   stands in for anything smaller: a softmax term that small is zero to f32
   anyway) and skips the NaN and overflow tails, which x <= 0 never needs;
   kept as the plugin had it so selections and gradients stay bit-identical.
   fl_exp_core does the rest (relative error ~1e-7). */
static inline float bs_expf_neg(float x) {
    uint32_t u = fl_f2u(x);
    u = u > 0xc2ae0000u ? 0xc2ae0000u : u; /* -87 as bits: integer clamp, no branch */
    int32_t ni;
    const float p = fl_exp_core(fl_u2f(u), &ni);
    return p * fl_u2f((uint32_t)(ni + 127) << 23);
}

/* out[B] = softmax(v[B]) (out may alias v); returns the index of the
   maximum (lower on ties). */
static inline int64_t block_softmax(const float *v, int64_t B, float *out) {
    int64_t k = 0;
    float m = v[0];
    for (int64_t i = 1; i < B; i++)
        if (v[i] > m) m = v[i], k = i;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < B; i++) {
        out[i] = bs_expf_neg(v[i] - m);
        sum += out[i];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t i = 0; i < B; i++) out[i] *= inv;
    return k;
}

/* -------------------------------------------------------- training */

/* z[F] = (l + noise g) * inv_tau for row n, g the Gumbel noise of counter
   n*F + j; z is the row of s, normalised in place afterwards. */
static void gumbel_logits(const float *lr, int64_t n, int64_t F, float noise, float inv_tau,
                          uint64_t key, float *z) {
    const uint64_t base = (uint64_t)(n * F);
    if (noise != 0.0f) {
#pragma omp simd
        for (int64_t j = 0; j < F; j++)
            z[j] = (lr[j] - noise * bs_logf(-bs_logf(fl_rng_uniform(key, base + (uint64_t)j)))) * inv_tau;
    } else {
#pragma omp simd
        for (int64_t j = 0; j < F; j++) z[j] = lr[j] * inv_tau;
    }
}

/* l, a, s, hm [N,F] (p [N,F] or NULL), idx [N,F/B] i32 */
void cnt_block_select_cpu(const fl_tensor *l, const fl_tensor *a, int B, float noise, float inv_tau,
                      uint64_t key, int soft, fl_tensor *s, fl_tensor *p, fl_tensor *idx,
                      fl_tensor *hm) {
    const int64_t F = cols(l), N = fl_numel(l) / F, nb = F / B;
    const float *pl = f32(l), *pa = f32(a);
    float *ps = f32(s), *pp = p ? f32(p) : NULL, *ph = f32(hm);
    int32_t *pi = i32(idx);
#pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *lr = pl + n * F, *ar = pa + n * F;
        float *sr = ps + n * F, *hr = ph + n * F, *pr = pp ? pp + n * F : NULL;
        gumbel_logits(lr, n, F, noise, inv_tau, key, sr);
        for (int64_t b = 0; b < nb; b++) {
            const int64_t o = b * B;
            const int64_t k = block_softmax(sr + o, B, sr + o);
            pi[n * nb + b] = (int32_t)(o + k);
            if (pr) block_softmax(lr + o, B, pr + o);
            if (soft) {
#pragma omp simd
                for (int64_t i = 0; i < B; i++) hr[o + i] = ar[o + i] * sr[o + i] * (pr ? pr[o + i] : 1.0f);
            } else {
                for (int64_t i = 0; i < B; i++) hr[o + i] = 0.0f;
                hr[o + k] = ar[o + k] * (pr ? pr[o + k] : 1.0f);
            }
        }
    }
}

/* Per block, with dme = dL/d(mask * p) = dhm * a, mask = s (soft) or the
   one-hot (hard; its value, while its gradient goes to s: straight through):
     dL/ds = dme * p            → dl = (1/tau) s * (ds - Σ ds·s)   (z = (l+g)/tau)
     dL/dp = dme * mask         → dl += p * (dp - Σ dp·p)           (with p only)
     dL/da = dhm * mask * p     → written over dhm
   Two passes over the block: the sums first, then every output, so no
   scratch is needed whatever the block size. */
void cnt_block_select_backward_cpu(const fl_tensor *a, const fl_tensor *s, const fl_tensor *p,
                               const fl_tensor *idx, int B, float inv_tau, int soft,
                               fl_tensor *dhm, fl_tensor *dl) {
    const int64_t F = cols(a), N = fl_numel(a) / F, nb = F / B;
    const float *pa = f32(a), *ps = f32(s), *pp = p ? f32(p) : NULL;
    const int32_t *pi = i32(idx);
    float *pg = f32(dhm), *pd = f32(dl);
#pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *ar = pa + n * F, *sr = ps + n * F, *pr = pp ? pp + n * F : NULL;
        float *gr = pg + n * F, *dr = pd + n * F;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t o = b * B, k = pi[n * nb + b] - o;
            float dot_s = 0.0f, dot_p = 0.0f;
            for (int64_t i = 0; i < B; i++) {
                const float dme = gr[o + i] * ar[o + i];
                const float mk = soft ? sr[o + i] : (float)(i == k);
                const float pi_ = pr ? pr[o + i] : 1.0f;
                dot_s += dme * pi_ * sr[o + i];
                dot_p += pr ? dme * mk * pi_ : 0.0f;
            }
            for (int64_t i = 0; i < B; i++) {
                const float dme = gr[o + i] * ar[o + i];
                const float mk = soft ? sr[o + i] : (float)(i == k);
                const float pi_ = pr ? pr[o + i] : 1.0f;
                float v = inv_tau * sr[o + i] * (dme * pi_ - dot_s);
                if (pr) v += pi_ * (dme * mk - dot_p);
                dr[o + i] = v;
                gr[o + i] *= mk * pi_;
            }
        }
    }
}

/* -------------------------------------------------------- inference */

/* l [N,F], bias [F], idx [N,F/B] i32, pmax [N,F/B] or NULL */
void cnt_block_argmax_cpu(const fl_tensor *l, const fl_tensor *bias, int B, fl_tensor *idx,
                      fl_tensor *pmax) {
    const int64_t F = cols(l), N = fl_numel(l) / F, nb = F / B;
    const float *pl = f32(l), *pb = f32(bias);
    int32_t *pi = i32(idx);
    float *pm = pmax ? f32(pmax) : NULL;
#pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *lr = pl + n * F;
        for (int64_t b = 0; b < nb; b++) {
            const float *v = lr + b * B, *c = pb + b * B;
            int64_t k = 0;
            float m = v[0] + c[0];
            for (int64_t i = 1; i < B; i++) {
                const float t = v[i] + c[i];
                if (t > m) m = t, k = i;
            }
            pi[n * nb + b] = (int32_t)(b * B + k);
            if (pm) {
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int64_t i = 0; i < B; i++) sum += bs_expf_neg(v[i] + c[i] - m);
                pm[n * nb + b] = 1.0f / sum;
            }
        }
    }
}
