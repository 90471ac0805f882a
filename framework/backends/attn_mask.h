/*
 * backends/attn_mask.h — the key ranges of an attention mask (backend.h:
 * fl_attn_mask), written once for the CPU loops and the CUDA kernels (host
 * and device), so both backends mask exactly the same entries.
 *
 * Every rule of the mask (causal, window, padding) keeps a contiguous run of
 * keys per query, and the run only moves right as the query does:
 *
 *   query i sees keys [fl_attn_lo(r, i), fl_attn_hi(r, i, len))
 *   key j is seen by queries [fl_attn_qlo(r, j), fl_attn_qhi(r, j, len, T))
 *
 * so a block of queries [i0, i1) needs keys [lo(i0), hi(i1-1)) and nothing
 * else, which is how the kernels skip whole tiles: a local layer's work
 * grows with the window, not with T. The range may be empty (lo >= hi).
 */
#ifndef FFNLAB_ATTN_MASK_H
#define FFNLAB_ATTN_MASK_H

#include <stdint.h>

#ifdef __CUDACC__
#define FL_ATTN_FN static inline __host__ __device__
#else
#define FL_ATTN_FN static inline
#endif

/* The two rules that do not depend on the sequence (by value into kernels). */
typedef struct fl_attn_rule {
    int causal;
    int64_t window; /* 0: none */
} fl_attn_rule;

FL_ATTN_FN int64_t fl_attn_max(int64_t a, int64_t b) { return a > b ? a : b; }
FL_ATTN_FN int64_t fl_attn_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* First key query i sees. */
FL_ATTN_FN int64_t fl_attn_lo(fl_attn_rule r, int64_t i) {
    return r.window > 0 ? fl_attn_max(0, i - r.window + 1) : 0;
}

/* One past the last key query i sees, of a sequence with len real keys
   (len = T without padding). */
FL_ATTN_FN int64_t fl_attn_hi(fl_attn_rule r, int64_t i, int64_t len) {
    int64_t hi = len;
    if (r.causal) hi = fl_attn_min(hi, i + 1);
    else if (r.window > 0) hi = fl_attn_min(hi, i + r.window);
    return hi;
}

/* First query that sees key j. */
FL_ATTN_FN int64_t fl_attn_qlo(fl_attn_rule r, int64_t j) {
    if (r.causal) return j;
    return r.window > 0 ? fl_attn_max(0, j - r.window + 1) : 0;
}

/* One past the last query that sees key j (none when j is padding). */
FL_ATTN_FN int64_t fl_attn_qhi(fl_attn_rule r, int64_t j, int64_t len, int64_t T) {
    if (j >= len) return fl_attn_qlo(r, j);
    return r.window > 0 ? fl_attn_min(T, j + r.window) : T;
}

/* Does query i see key j? */
FL_ATTN_FN int fl_attn_sees(fl_attn_rule r, int64_t i, int64_t j, int64_t len) {
    return j >= fl_attn_lo(r, i) && j < fl_attn_hi(r, i, len);
}

#endif
