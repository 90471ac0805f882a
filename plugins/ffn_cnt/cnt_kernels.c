/*
 * plugins/ffn_cnt/cnt_kernels.c — the controller FFN's own CPU kernels for
 * inference (see cnt_kernels.h for what each computes): the sparse pair and
 * the weight fingerprint. The block selection they follow is a host op
 * (block_argmax; the CPU backend's cpu_block_select.c).
 *
 * The sparse kernels are the reason the layer exists: per token they touch
 * n_blocks columns of W1 and rows of W2 picked at random from their blocks,
 * so they walk tokens in tiles and blocks in groups, keeping one tile of x
 * (or y) and one group's candidate rows in L2 while every token of the tile
 * is served from them; streaming the whole of W1 or W2 for each token
 * instead would make memory, not arithmetic, the limit, and the sparse path
 * slower than the dense GEMM. The host's embedding_bag ops compute the same
 * pair one token at a time; the plugin uses them on other devices.
 */
#include "cnt_kernels.h"

#include <string.h>  /* memcpy */

/* Below this many elements a loop stays on one thread. */
#define PAR_MIN 32768

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
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

/* Vectors move through v8fu, the same vector with 4-byte alignment that may
   alias floats: one unaligned load or store each. (memcpy into a v8f made GCC
   copy through the stack in 16-byte halves, and the 32-byte reload of two
   16-byte stores misses store forwarding: measured 17% of gather_axpy.)
   Helpers take vectors by pointer, never by value: without AVX enabled (a
   Debug build) a by-value 32-byte vector would change the calling
   convention (-Wpsabi). */
typedef float v8fu __attribute__((vector_size(32), aligned(4), may_alias));
#define LOAD8(v, p) ((v) = *(const v8fu *)(p))
#define STORE8(p, v) (*(v8fu *)(p) = (v))

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

/* dst[r, 0..len) = src[r, 0..len) for `rows` rows, ld floats apart; the
   full-chunk case has a constant size, so the copy is inlined, not a call. */
static inline void copy_rows(float *dst, int64_t dst_ld, const float *src, int64_t src_ld,
                             int64_t rows, int64_t len) {
    if (len == CH)
        for (int64_t r = 0; r < rows; r++) memcpy(dst + r * dst_ld, src + r * src_ld, CH * sizeof *dst);
    else
        for (int64_t r = 0; r < rows; r++) memcpy(dst + r * dst_ld, src + r * src_ld, (size_t)len * sizeof *dst);
}

void cnt_gather_dot(int64_t N, int64_t d, int64_t F, int64_t nb, const float *x, const float *p1,
                    const int32_t *idx, const float *b1, float *h) {
    const int64_t tiles = (N + TILE - 1) / TILE, full = nb - nb % GROUP;
#pragma omp parallel for schedule(dynamic, 1) if (N * nb * d > PAR_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t n0 = t * TILE, n1 = min64(n0 + TILE, N);
        float xs[TILE * CH]; /* the tile's chunk of x, rows CH apart */
        for (int64_t i = n0 * nb; i < n1 * nb; i++) h[i] = b1[idx[i]];
        for (int64_t c0 = 0; c0 < d; c0 += CH) {
            const float *pc = p1 + (c0 / CH) * F * CH;
            const int64_t len = min64(CH, d - c0);
            copy_rows(xs, CH, x + n0 * d + c0, d, n1 - n0, len);
            for (int64_t g = 0; g < full; g += GROUP)
                for (int64_t n = n0; n < n1; n++)
                    dot_group(xs + (n - n0) * CH, pc, idx + n * nb + g, len, h + n * nb + g);
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
#pragma omp parallel for schedule(dynamic, 1) if (N * nb * d > PAR_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t n0 = t * TILE, n1 = min64(n0 + TILE, N);
        float ys[TILE * CH]; /* the tile's chunk of y, rows CH apart */
        for (int64_t c0 = 0; c0 < d; c0 += CH) {
            const float *pc = p2 + (c0 / CH) * F * CH;
            const int64_t len = min64(CH, d - c0);
            copy_rows(ys, CH, b2 + c0, 0, n1 - n0, len); /* b2 in every row */
            if (len < CH)
                for (int64_t n = n0; n < n1; n++) axpy_rest(h + n * nb, pc, idx + n * nb, nb, len, ys + (n - n0) * CH);
            else
                for (int64_t g = 0; g < nb; g += AXPY_GROUP)
                    for (int64_t n = n0; n < n1; n++)
                        axpy_group(h + n * nb + g, pc, idx + n * nb + g, min64(AXPY_GROUP, nb - g),
                                   ys + (n - n0) * CH);
            copy_rows(y + n0 * d + c0, d, ys, CH, n1 - n0, len);
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
