/*
 * ffnlab/rng.h — the counter-based random numbers every backend shares.
 *
 * A random value is a pure function of (key, counter): no state, so the CPU,
 * a GPU kernel and a plugin all produce the same numbers for the same element,
 * whatever the thread count or launch shape. Parameter init uses
 * key = hash(seed, parameter name) and counter = element index, which makes a
 * model's initial weights independent of declaration order and device.
 *
 * The mixer is SplitMix64's finaliser applied twice; it passes the usual
 * statistical checks for this use (init, dropout, Gumbel noise), and is not
 * meant for cryptography.
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_RNG_H
#define FFNLAB_RNG_H

#include <math.h>    /* sqrtf, logf, cosf */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__CUDACC__)
#define FL_RNG_FN static inline __host__ __device__
#else
#define FL_RNG_FN static inline
#endif

FL_RNG_FN uint64_t fl_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 64 random bits for element `counter` of stream `key`. */
FL_RNG_FN uint64_t fl_rng_bits(uint64_t key, uint64_t counter) {
    return fl_mix64(fl_mix64(key) ^ counter);
}

/* Uniform in the open interval (0, 1): never 0, so logf() is safe. */
FL_RNG_FN float fl_rng_uniform(uint64_t key, uint64_t counter) {
    uint32_t u = (uint32_t)(fl_rng_bits(key, counter) >> 40); /* 24 bits */
    return ((float)u + 0.5f) * (1.0f / 16777216.0f);
}

/* Standard normal (Box-Muller on two uniforms derived from the counter). */
FL_RNG_FN float fl_rng_normal(uint64_t key, uint64_t counter) {
    float u1 = fl_rng_uniform(key, 2 * counter);
    float u2 = fl_rng_uniform(key, 2 * counter + 1);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

/* A stream key from a seed and a string (FNV-1a over the string, then mixed). */
FL_RNG_FN uint64_t fl_rng_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = name; p && *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
    return fl_mix64(seed ^ fl_mix64(h));
}

#ifdef __cplusplus
}
#endif
#endif
