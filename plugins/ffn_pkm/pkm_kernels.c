/*
 * plugins/ffn_pkm/pkm_kernels.c — the product-key memory plugin's own CPU
 * kernels: the sub-keys' gradient, and the grouped value bag and its
 * gradient (see pkm_kernels.h for what each computes and why it is here).
 *
 * Threading follows the CPU backend's rules. Nothing uses atomics, and no
 * result depends on the thread count: the sub-key gradient gives each head
 * half to one thread, the value bag each block of tokens (its output rows),
 * its gradient each value row.
 * Small calls stay on one thread (starting the team costs more than the
 * work). No header beyond the C library: the OpenMP pragmas need none.
 */
#include "pkm_kernels.h"

#include <math.h>    /* fmaf */
#include <string.h>  /* memset */

/* Below this many elements a kernel stays on one thread. */
#define PK_PAR_MIN 32768

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---------------------------------------------------- sub-key gradient */

/* The host's embedding_bag and embedding_bag_backward compute the same, one
   head half per call: as fast on one thread, but ~4-5x slower on two of a
   loaded machine at the bench's shapes (8 halves of 4096 tokens x 32 reads
   x 128 columns: ~45-65 ms here, ~250 ms as 16 host calls). One region for
   all halves spares 16 thread-team starts and barriers, and here dq and dK
   come out of one pass over the reads. */
void pk_subkey_backward(const float *K, const float *q, const float *g, const int32_t *gix, int64_t B,
                        int64_t N, int64_t k, int64_t n_keys, int64_t c, float *dq, float *dK) {
#pragma omp parallel for schedule(dynamic, 1) if (B * N * k * c > PK_PAR_MIN)
    for (int64_t b = 0; b < B; b++) {
        const float *Kb = K + b * n_keys * c;
        float *dKb = dK + b * n_keys * c;
        for (int64_t n = 0; n < N; n++) {
            const float *qn = q + (b * N + n) * c, *gn = g + (b * N + n) * k;
            const int32_t *in = gix + (b * N + n) * k;
            float *dqn = dq + (b * N + n) * c;
            for (int64_t i = 0; i < c; i++) dqn[i] = 0.0f;
            for (int64_t a = 0; a < k; a++) {
                if (in[a] < 0) continue;
                const float ga = gn[a], *kr = Kb + (int64_t)in[a] * c;
                float *dkr = dKb + (int64_t)in[a] * c;
#pragma omp simd
                for (int64_t i = 0; i < c; i++) {
                    dqn[i] += ga * kr[i];
                    dkr[i] += ga * qn[i];
                }
            }
        }
    }
}

/* ---------------------------------------------- grouped embedding bag */

/* Threads in a parallel region (no omp.h: a reduction counts them). */
static int64_t team_size(void) {
    int64_t n = 0;
#pragma omp parallel reduction(+ : n)
    n = 1;
    return n > 0 ? n : 1;
}

#define PK_CHUNK_BYTES (1 << 20)

/* At most this many (chunk, slot) offsets (64 MiB): a tiny forced chunk on a
   large memory would otherwise ask for gigabytes. */
#define PK_MAX_OFFSETS ((int64_t)1 << 23)

int64_t pk_bag_chunk(int64_t N, int64_t k, int64_t S, int64_t D, int64_t forced) {
    if (N < 1) return 1;
    int64_t C;
    if (forced > 0) {
        C = forced;
    } else {
        C = PK_CHUNK_BYTES / (4 * (D > 0 ? D : 1));
        const int64_t reuse = (4 * S + k - 1) / k;
        if (C < reuse) C = reuse;
        if (C < 16) C = 16;
        const int64_t T = team_size(), per_thread = (N + T - 1) / T;
        if (C > per_thread) C = per_thread;
    }
    int64_t max_chunks = PK_MAX_OFFSETS / (S + 1);
    if (max_chunks < 1) max_chunks = 1;
    if ((N + C - 1) / C > max_chunks) C = (N + max_chunks - 1) / max_chunks;
    return C < N ? C : N;
}

/* Why grouping pays: in token order every entry loads a 2 KB-ish value row
   from wherever it lives (L3, or DRAM for a large memory). Grouped, a slot's
   row is loaded once per chunk and stays in L1 while that chunk's entries
   for it stream past; what moves per entry is an output (or gradient) row
   the chunk keeps in L2. Counting sort: one pass to count, one to place
   (off[s] serves as slot s's cursor, then is shifted back). */
void pk_group_chunks(const int32_t *slot, const float *w, int64_t N, int64_t k, int64_t S, int64_t C,
                     int64_t *off, int32_t *tok, float *ws, int32_t *pos) {
    const int64_t nch = (N + C - 1) / C;
#pragma omp parallel for schedule(static) if (N * k > PK_PAR_MIN)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t e0 = c * C * k, e1 = min64(N, (c + 1) * C) * k;
        int64_t *o = off + c * (S + 1);
        memset(o, 0, (size_t)(S + 1) * sizeof *o);
        for (int64_t e = e0; e < e1; e++) o[slot[e] + 1]++;
        o[0] = e0;
        for (int64_t s = 0; s < S; s++) o[s + 1] += o[s];
        for (int64_t e = e0; e < e1; e++) {
            const int64_t i = o[slot[e]]++;
            tok[i] = (int32_t)(e / k);
            ws[i] = w[e];
            pos[i] = (int32_t)e;
        }
        for (int64_t s = S; s > 0; s--) o[s] = o[s - 1];
        o[0] = e0;
    }
}

void pk_bag_forward(const float *V, const int64_t *off, const int32_t *tok, const float *ws, int64_t N,
                    int64_t S, int64_t C, int64_t D, float *out) {
    const int64_t nch = (N + C - 1) / C;
#pragma omp parallel for schedule(dynamic, 1) if (N * D > PK_PAR_MIN)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t *o = off + c * (S + 1);
        memset(out + c * C * D, 0, (size_t)((min64(N, (c + 1) * C) - c * C) * D) * sizeof *out);
        for (int64_t s = 0; s < S; s++) {
            const float *v = V + s * D;
            for (int64_t i = o[s]; i < o[s + 1]; i++) {
                float *y = out + (int64_t)tok[i] * D;
                const float we = ws[i];
#pragma omp simd
                for (int64_t d = 0; d < D; d++) y[d] += we * v[d];
            }
        }
    }
}

/* Returns dot(a, v) and does g += we * a, over D floats. The dot product
   keeps PK_LANES independent partial sums: one running sum would chain every
   add to the previous one and run at the add latency, not its throughput. */
#define PK_LANES 32
static float dot_axpy(const float *a, const float *v, float we, float *g, int64_t D) {
    float acc[PK_LANES];
    for (int u = 0; u < PK_LANES; u++) acc[u] = 0.0f;
    int64_t c = 0;
    for (; c + PK_LANES <= D; c += PK_LANES)
#pragma omp simd
        for (int u = 0; u < PK_LANES; u++) {
            acc[u] = fmaf(a[c + u], v[c + u], acc[u]);
            g[c + u] = fmaf(we, a[c + u], g[c + u]);
        }
    float dot = 0.0f;
    for (; c < D; c++) {
        dot = fmaf(a[c], v[c], dot);
        g[c] = fmaf(we, a[c], g[c]);
    }
    for (int u = 0; u < PK_LANES; u++) dot += acc[u];
    return dot;
}

/* The same for two entries of one slot at once: v is loaded and g is
   updated once for both, which is what the loop's loads and stores are.
   The multiply-adds are explicit fmaf, nested in entry order, so g and each
   dot product round exactly as two dot_axpy calls would: the pairing (which
   depends on the blocks) never shows in the result. */
static void dot_axpy2(const float *a1, const float *a2, const float *v, float w1, float w2, float *g,
                      int64_t D, float *dot1, float *dot2) {
    float acc1[PK_LANES], acc2[PK_LANES];
    for (int u = 0; u < PK_LANES; u++) acc1[u] = acc2[u] = 0.0f;
    int64_t c = 0;
    for (; c + PK_LANES <= D; c += PK_LANES)
#pragma omp simd
        for (int u = 0; u < PK_LANES; u++) {
            acc1[u] = fmaf(a1[c + u], v[c + u], acc1[u]);
            acc2[u] = fmaf(a2[c + u], v[c + u], acc2[u]);
            g[c + u] = fmaf(w2, a2[c + u], fmaf(w1, a1[c + u], g[c + u]));
        }
    float d1 = 0.0f, d2 = 0.0f;
    for (; c < D; c++) {
        d1 = fmaf(a1[c], v[c], d1);
        d2 = fmaf(a2[c], v[c], d2);
        g[c] = fmaf(w2, a2[c], fmaf(w1, a1[c], g[c]));
    }
    for (int u = 0; u < PK_LANES; u++) {
        d1 += acc1[u];
        d2 += acc2[u];
    }
    *dot1 = d1;
    *dot2 = d2;
}

void pk_values_backward(const float *dout, const float *V, const int64_t *off, const int32_t *tok,
                        const float *ws, const int32_t *pos, int64_t N, int64_t S, int64_t C,
                        int64_t D, float *dV, float *dw) {
    const int64_t nch = (N + C - 1) / C;
    /* one team for all chunks (a barrier between chunks, no new team) */
#pragma omp parallel if (off[(nch - 1) * (S + 1) + S] * D > PK_PAR_MIN)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t *o = off + c * (S + 1);
#pragma omp for schedule(dynamic, 16)
        for (int64_t s = 0; s < S; s++) {
            const float *v = V + s * D;
            float *g = dV + s * D;
            int64_t i = o[s];
            for (; i + 1 < o[s + 1]; i += 2)
                dot_axpy2(dout + (int64_t)tok[i] * D, dout + (int64_t)tok[i + 1] * D, v, ws[i], ws[i + 1], g, D,
                          &dw[pos[i]], &dw[pos[i + 1]]);
            if (i < o[s + 1]) dw[pos[i]] = dot_axpy(dout + (int64_t)tok[i] * D, v, ws[i], g, D);
        }
    }
}
