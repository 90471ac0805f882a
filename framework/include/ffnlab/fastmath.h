/*
 * ffnlab/fastmath.h — float bit tricks and the exp polynomial the CPU
 * kernels share (the CPU backend's softmax and cross-entropy, the cnt
 * plugin's block selection), so a plugin's CPU code computes exp exactly as
 * the host's ops do and vectorises (no libm call per element).
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_FASTMATH_H
#define FFNLAB_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline uint32_t fl_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float fl_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* exp(xc) = p * 2^ni for xc in [-87, 89] (the caller clamps): range
   reduction xc = n ln2 + r, |r| <= ln2/2, then a degree-7 Taylor polynomial
   p ~ exp(r), relative error about 1e-7. Callers apply 2^ni as suits their
   range. */
static inline float fl_exp_core(float xc, int32_t *ni) {
    /* t holds round(xc*log2e) in its low mantissa bits (the 1.5*2^23 shift) */
    const float t = xc * 1.44269504088896341f + 12582912.0f;
    const float n = t - 12582912.0f;
    *ni = (int32_t)(fl_f2u(t) - fl_f2u(12582912.0f));
    float r = xc - n * 0.693145751953125f; /* ln2 in two parts for precision */
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p;
}

#endif
