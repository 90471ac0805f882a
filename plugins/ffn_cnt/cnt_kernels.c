/*
 * plugins/ffn_cnt/cnt_kernels.c — the controller FFN's own CPU kernels (see
 * cnt_kernels.h for what each computes; each is a host op candidate).
 *
 * Two kinds of work live here. The selection kernels touch every logit once
 * (N * d_ff values) and are dominated by the Gumbel noise, two logarithms per
 * value, so log and exp are inlined polynomials that vectorise instead of a
 * libm call per element. The sparse inference kernels are the reason the
 * layer exists: per token they touch n_blocks columns of W1 and rows of W2
 * picked at random from their blocks, so they walk tokens in tiles and blocks
 * in groups, keeping one tile of x (or y) and one group's candidate rows in
 * L2 while every token of the tile is served from them; streaming the whole
 * of W1 or W2 for each token instead would make memory, not arithmetic, the
 * limit, and the sparse path slower than the dense GEMM.
 */
#include "cnt_kernels.h"

#include <string.h>  /* memcpy */

#include "ffnlab/rng.h"  /* fl_rng_uniform, fl_mix64 */

/* Below this many elements a loop stays on one thread. */
#define PAR_MIN 32768

/* ------------------------------------------------------------------------ */
/* Inlined math                                                               */
/* ------------------------------------------------------------------------ */

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* log(x) for positive normal x (all the Gumbel transform feeds it): x =
   m 2^e with m in [sqrt(1/2), sqrt(2)), then Cephes' logf polynomial in
   m - 1; relative error about 1e-7. Integer selects only, so it vectorises. */
static inline float cnt_logf(float x) {
    const uint32_t u = f2u(x);
    const uint32_t mant = u & 0x7fffffu;
    const uint32_t big = 0u - (uint32_t)(mant > 0x3504f3u); /* m > sqrt(2): halve it */
    const float m = u2f(mant | (big & 0x3f000000u) | (~big & 0x3f800000u));
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

/* exp(x) for x <= 0 (softmax after subtracting the block maximum): clamped
   at -87 so 2^n stays a normal number (exp(-87) ~ 1.6e-38 stands in for
   anything smaller: a softmax term that small is zero to f32 anyway).
   Range reduction x = n ln2 + r, degree-7 Taylor: relative error ~1e-7. */
static inline float cnt_expf_neg(float x) {
    uint32_t u = f2u(x);
    u = u > 0xc2ae0000u ? 0xc2ae0000u : u; /* -87 as bits: integer clamp, no branch */
    const float xc = u2f(u);
    const float t = xc * 1.44269504088896341f + 12582912.0f; /* round(x log2 e) */
    const float n = t - 12582912.0f;
    const int32_t ni = (int32_t)(f2u(t) - f2u(12582912.0f));
    float r = xc - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * u2f((uint32_t)(ni + 127) << 23);
}

/* ------------------------------------------------------------------------ */
/* Selection                                                                  */
/* ------------------------------------------------------------------------ */

/* out[B] = softmax(v[B]); returns the index of the maximum (lower on ties). */
static inline int64_t block_softmax(const float *v, int64_t B, float *out) {
    int64_t k = 0;
    float m = v[0];
    for (int64_t i = 1; i < B; i++)
        if (v[i] > m) m = v[i], k = i;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < B; i++) {
        out[i] = cnt_expf_neg(v[i] - m);
        sum += out[i];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t i = 0; i < B; i++) out[i] *= inv;
    return k;
}

void cnt_select_train(int64_t N, int64_t F, int64_t B, float noise, float inv_tau, uint64_t key,
                      int soft, const float *l, const float *a, float *s, float *p, int32_t *idx,
                      float *hm) {
    const int64_t nb = F / B;
#pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *lr = l + n * F, *ar = a + n * F;
        float *sr = s + n * F, *hr = hm + n * F, *pr = p ? p + n * F : NULL;
        const uint64_t base = (uint64_t)(n * F);
        /* z = (l + noise g) / tau, written into s and normalised in place below */
        if (noise != 0.0f) {
#pragma omp simd
            for (int64_t j = 0; j < F; j++)
                sr[j] = (lr[j] - noise * cnt_logf(-cnt_logf(fl_rng_uniform(key, base + (uint64_t)j)))) * inv_tau;
        } else {
#pragma omp simd
            for (int64_t j = 0; j < F; j++) sr[j] = lr[j] * inv_tau;
        }
        for (int64_t b = 0; b < nb; b++) {
            const int64_t o = b * B;
            const int64_t k = block_softmax(sr + o, B, sr + o);
            idx[n * nb + b] = (int32_t)(o + k);
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
void cnt_select_backward(int64_t N, int64_t F, int64_t B, float inv_tau, int soft,
                         const float *a, const float *s, const float *p, const int32_t *idx,
                         float *dhm, float *dl) {
    const int64_t nb = F / B;
#pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *ar = a + n * F, *sr = s + n * F, *pr = p ? p + n * F : NULL;
        float *gr = dhm + n * F, *dr = dl + n * F;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t o = b * B, k = idx[n * nb + b] - o;
            float dot_s = 0.0f, dot_p = 0.0f;
            for (int64_t i = 0; i < B; i++) {
                const float dme = gr[o + i] * ar[o + i];
                const float mk = soft ? sr[o + i] : (float)(i == k);
                const float pi = pr ? pr[o + i] : 1.0f;
                dot_s += dme * pi * sr[o + i];
                dot_p += pr ? dme * mk * pi : 0.0f;
            }
            for (int64_t i = 0; i < B; i++) {
                const float dme = gr[o + i] * ar[o + i];
                const float mk = soft ? sr[o + i] : (float)(i == k);
                const float pi = pr ? pr[o + i] : 1.0f;
                float v = inv_tau * sr[o + i] * (dme * pi - dot_s);
                if (pr) v += pi * (dme * mk - dot_p);
                dr[o + i] = v;
                gr[o + i] *= mk * pi;
            }
        }
    }
}

void cnt_block_argmax(int64_t N, int64_t F, int64_t B, const float *l, const float *bias,
                      int32_t *idx, float *pmax) {
    const int64_t nb = F / B;
#pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *lr = l + n * F;
        for (int64_t b = 0; b < nb; b++) {
            const float *v = lr + b * B, *c = bias + b * B;
            int64_t k = 0;
            float m = v[0] + c[0];
            for (int64_t i = 1; i < B; i++) {
                const float t = v[i] + c[i];
                if (t > m) m = t, k = i;
            }
            idx[n * nb + b] = (int32_t)(b * B + k);
            if (pmax) {
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int64_t i = 0; i < B; i++) sum += cnt_expf_neg(v[i] + c[i] - m);
                pmax[n * nb + b] = 1.0f / sum;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Sparse inference                                                           */
/* ------------------------------------------------------------------------ */

/* The sparse pair is memory-bound unless each loaded value feeds several
   multiply-adds, so both kernels work on (token tile) x (group of GROUP
   blocks) x (chunk of CNT_CHUNK columns of d):
   - they read the weights packed chunk-major (cnt_pack), so one chunk of a
     group's candidate rows is one contiguous run (GROUP * B * CNT_CHUNK
     floats: 16 KB at B = 8) that stays in L1 while every token of the tile
     passes, because tokens of a tile pick among the same few units. (Slices
     of plain rows d floats apart would alias into a few cache sets when d
     is a power of two, and thrash: measured slower than no chunking.)
   - one load of x (gather_dot) feeds GROUP dot products, and a chunk of y
     (gather_axpy) stays in registers across the AXPY_GROUP rows added to it;
   - the tile of x or y rows (TILE * d floats) stays in L2 across groups.
   Written with GCC vector extensions (8 floats: one AVX register, two SSE
   ones), so it compiles everywhere and vectorises without intrinsics. */
#ifndef TILE
#define TILE 128
#endif
#define GROUP 8
#define CH CNT_CHUNK

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Vectors move through memcpy (unaligned loads and stores) and helpers take
   them by pointer, never by value: without AVX enabled (a Debug build) a
   by-value 32-byte vector would change the calling convention (-Wpsabi). */
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v8f))
#define STORE8(p, v) memcpy((p), &(v), sizeof(v8f))

#if defined(__clang__)
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

/* [a0+a1, a2+a3, b0+b1, b2+b3, a4+a5, a6+a7, b4+b5, b6+b7], as AVX's hadd */
#define HADD(a, b) (SHUFFLE(a, b, 0, 2, 8, 10, 4, 6, 12, 14) + SHUFFLE(a, b, 1, 3, 9, 11, 5, 7, 13, 15))

/* out lane j = the sum of the 8 lanes of a[j]: a transpose-and-add tree, 7
   adds for 8 sums instead of 8 separate reductions */
static inline void hsum8(const v8f *a, v8f *out) {
    const v8f s01 = HADD(a[0], a[1]), s23 = HADD(a[2], a[3]);
    const v8f s45 = HADD(a[4], a[5]), s67 = HADD(a[6], a[7]);
    const v8f q0 = HADD(s01, s23), q1 = HADD(s45, s67);
    *out = SHUFFLE(q0, q1, 0, 1, 2, 3, 8, 9, 10, 11) + SHUFFLE(q0, q1, 4, 5, 6, 7, 12, 13, 14, 15);
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

int64_t cnt_packed_size(int64_t F, int64_t d) { return F * ((d + CH - 1) / CH) * CH; }

void cnt_pack(int64_t F, int64_t d, const float *w, int transposed, float *packed) {
    const int64_t nc = (d + CH - 1) / CH, ub = 64, nu = (F + ub - 1) / ub;
#pragma omp parallel for schedule(static) collapse(2) if (F * d > PAR_MIN)
    for (int64_t c = 0; c < nc; c++)
        for (int64_t bu = 0; bu < nu; bu++) {
            const int64_t len = min64(CH, d - c * CH), u1 = min64(bu * ub + ub, F);
            float *pc = packed + c * F * CH;
            if (transposed) /* w[d,F]: a [len, 64] block turned into [64, CH] */
                for (int64_t k = 0; k < CH; k++)
                    for (int64_t u = bu * ub; u < u1; u++)
                        pc[u * CH + k] = k < len ? w[(c * CH + k) * F + u] : 0.0f;
            else /* w[F,d]: row slices copied */
                for (int64_t u = bu * ub; u < u1; u++)
                    for (int64_t k = 0; k < CH; k++) pc[u * CH + k] = k < len ? w[u * d + c * CH + k] : 0.0f;
        }
}

/* h[n, g..g+GROUP) += the dot products of x[n, c0..c0+len) with the GROUP
   selected units' slices of chunk pc */
static inline void dot_group(const float *xc, const float *pc, const int32_t *ir, int64_t len,
                             float *hr) {
    const float *w[GROUP];
    for (int j = 0; j < GROUP; j++) w[j] = pc + (int64_t)ir[j] * CH;
    v8f acc[GROUP] = {{0}}, xv, wv, sums, hv;
    const int64_t len8 = len & ~(int64_t)7;
    for (int64_t c = 0; c < len8; c += 8) {
        LOAD8(xv, xc + c);
        for (int j = 0; j < GROUP; j++) {
            LOAD8(wv, w[j] + c);
            acc[j] += xv * wv;
        }
    }
    hsum8(acc, &sums);
    for (int64_t c = len8; c < len; c++) /* d not a multiple of 8 */
        for (int j = 0; j < GROUP; j++) sums[j] += xc[c] * w[j][c];
    LOAD8(hv, hr);
    hv += sums;
    STORE8(hr, hv);
}

void cnt_gather_dot(int64_t N, int64_t d, int64_t F, int64_t nb, const float *x, const float *p1,
                    const int32_t *idx, const float *b1, float *h) {
    const int64_t tiles = (N + TILE - 1) / TILE, full = nb - nb % GROUP;
#pragma omp parallel for schedule(static) if (N * nb * d > PAR_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t n0 = t * TILE, n1 = min64(n0 + TILE, N);
        for (int64_t i = n0 * nb; i < n1 * nb; i++) h[i] = b1[idx[i]];
        for (int64_t g = 0; g < full; g += GROUP)
            for (int64_t c0 = 0; c0 < d; c0 += CH) {
                const float *pc = p1 + (c0 / CH) * F * CH;
                const int64_t len = min64(CH, d - c0);
                for (int64_t n = n0; n < n1; n++)
                    dot_group(x + n * d + c0, pc, idx + n * nb + g, len, h + n * nb + g);
            }
        for (int64_t n = n0; n < n1 && full < nb; n++) /* the last, partial group */
            for (int64_t j = full; j < nb; j++) {
                const int64_t u = idx[n * nb + j];
                float s = 0.0f;
                for (int64_t c0 = 0; c0 < d; c0 += CH) {
                    const float *xc = x + n * d + c0, *w = p1 + (c0 / CH) * F * CH + u * CH;
                    const int64_t len = min64(CH, d - c0);
#pragma omp simd reduction(+ : s)
                    for (int64_t c = 0; c < len; c++) s += xc[c] * w[c];
                }
                h[n * nb + j] += s;
            }
    }
}

/* y[n, c0..c0+CH) += Σ_{j<gn} h[n, g+j] W2[idx[n, g+j], c0..c0+CH), the y
   chunk held in registers across the gn rows; pc is the packed chunk */
static inline void axpy_group(const float *hr, const float *pc, const int32_t *ir, int64_t gn,
                              float *yc) {
    v8f acc[CH / 8], wv;
    for (int k = 0; k < CH / 8; k++) LOAD8(acc[k], yc + 8 * k);
    for (int64_t j = 0; j < gn; j++) {
        const float *w = pc + (int64_t)ir[j] * CH;
        const v8f hb = (v8f){0} + hr[j];
        for (int k = 0; k < CH / 8; k++) {
            LOAD8(wv, w + 8 * k);
            acc[k] += hb * wv;
        }
    }
    for (int k = 0; k < CH / 8; k++) STORE8(yc + 8 * k, acc[k]);
}

/* The same for a last chunk of len < CH columns, over all blocks. */
static inline void axpy_rest(const float *hr, const float *pc, const int32_t *ir, int64_t nb,
                             int64_t len, float *yc) {
    for (int64_t j = 0; j < nb; j++) {
        const float *w = pc + (int64_t)ir[j] * CH, hj = hr[j];
#pragma omp simd
        for (int64_t c = 0; c < len; c++) yc[c] += hj * w[c];
    }
}

/* Blocks whose rows are added into one register-held chunk of y before it
   goes back to memory: more than GROUP, because here the group only sets
   how often y is re-read and re-written (measured best at 32: 25% faster
   than 8; the group's slices, 64 KB at B = 8, then come from L2). */
#define AXPY_GROUP 32

void cnt_gather_axpy(int64_t N, int64_t d, int64_t F, int64_t nb, const float *h,
                     const int32_t *idx, const float *p2, const float *b2, float *y) {
    const int64_t tiles = (N + TILE - 1) / TILE;
#pragma omp parallel for schedule(static) if (N * nb * d > PAR_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t n0 = t * TILE, n1 = min64(n0 + TILE, N);
        for (int64_t n = n0; n < n1; n++) memcpy(y + n * d, b2, (size_t)d * sizeof *y);
        for (int64_t c0 = 0; c0 < d; c0 += CH) {
            const float *pc = p2 + (c0 / CH) * F * CH;
            const int64_t len = min64(CH, d - c0);
            if (len < CH) {
                for (int64_t n = n0; n < n1; n++) axpy_rest(h + n * nb, pc, idx + n * nb, nb, len, y + n * d + c0);
                continue;
            }
            for (int64_t g = 0; g < nb; g += AXPY_GROUP)
                for (int64_t n = n0; n < n1; n++)
                    axpy_group(h + n * nb + g, pc, idx + n * nb + g, min64(AXPY_GROUP, nb - g),
                               y + n * d + c0);
        }
    }
}

/* Two wrapping 32-bit sums of (bits ^ i K) * M, M odd: for a fixed position
   the term is a bijection of the value's bits, so changing any single value
   always changes both sums; unrelated rewrites collide with probability
   about 2^-64. 32-bit lanes, so it vectorises (one pass at memory speed). */
uint64_t cnt_fingerprint(const float *w, int64_t n) {
    uint32_t s1 = 0, s2 = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s1, s2) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const uint32_t b = f2u(w[i]), k = (uint32_t)i;
        s1 += (b ^ (k * 0x9e3779b9u)) * 0x85ebca6bu;
        s2 += (b ^ (k * 0x7feb352du)) * 0xc2b2ae35u;
    }
    return ((uint64_t)s1 << 32 | s2) ^ (uint64_t)n;
}
