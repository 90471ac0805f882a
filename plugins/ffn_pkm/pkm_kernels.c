/*
 * plugins/ffn_pkm/pkm_kernels.c — the product-key memory plugin's own CPU
 * kernels (see pkm_kernels.h for what each computes and why it is here).
 *
 * Threading follows the CPU backend's rules: rows are independent, so most
 * kernels are one OpenMP loop over rows. Nothing uses atomics, and no result
 * depends on the thread count: reductions over rows (batch-norm statistics,
 * the norms' affine gradients) sum fixed chunks of rows into their own
 * partial rows and add those in chunk order; the grouped value-bag gradient
 * gives each value row to one thread. Small calls stay on one thread
 * (starting the team costs more than the work).
 *
 * Only the public SDK is included (ffnlab/rng.h for the dropout masks); the
 * OpenMP pragmas need no header.
 */
#include "pkm_kernels.h"

#include <math.h>    /* sqrtf, expf, sqrt, fmaf */
#include <string.h>  /* memcpy */

#include "ffnlab/rng.h"  /* fl_rng_uniform */

/* Below this many elements a kernel stays on one thread. */
#define PK_PAR_MIN 32768
/* The option table caps knn here, so the per-token buffers live on the stack. */
#define PK_KNN_MAX 1024

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ------------------------------------------------------- product top-k */

/* The k largest v1[a] + v2[b] (v1, v2 descending) into best[k], bp[k]
   (bp = a << 16 | b: shifts, not divisions, unpack it), best first. A pair with (a+1)(b+1) > k is never needed:
   the (a+1)(b+1) - 1 pairs (a' <= a, b' <= b) other than itself all score at
   least as much, and that is >= k of them. Within row a the sums fall as b
   grows, and across rows v1[a] + v2[0] bounds everything that follows, so
   both loops stop as soon as nothing can enter. Ties keep the pair met first
   (an equal sum never passes one already held). */
static void pair_topk(const float *v1, const float *v2, int k, float *best, int32_t *bp) {
    int cnt = 0;
    for (int a = 0; a < k; a++) {
        if (cnt == k && !(v1[a] + v2[0] > best[k - 1])) break;
        const int nb = k / (a + 1);
        for (int b = 0; b < nb; b++) {
            const float s = v1[a] + v2[b];
            if (cnt == k && !(s > best[k - 1])) break;
            int p = cnt < k ? cnt++ : k - 1;
            for (; p > 0 && best[p - 1] < s; p--) {
                best[p] = best[p - 1];
                bp[p] = bp[p - 1];
            }
            best[p] = s;
            bp[p] = a << 16 | b;
        }
    }
}

void pk_product_topk(const float *v, const int32_t *ix, int64_t N, int H, int k, int64_t n_keys,
                     float *w, int32_t *slot, int32_t *pair) {
    const int64_t hk = (int64_t)H * k;
#pragma omp parallel for schedule(static) if (N * hk > PK_PAR_MIN / 16)
    for (int64_t n = 0; n < N; n++) {
        float best[PK_KNN_MAX];
        int32_t bp[PK_KNN_MAX];
        for (int h = 0; h < H; h++) {
            const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k;
            pair_topk(v + o1, v + o2, k, best, bp);
            const int64_t o = n * hk + (int64_t)h * k;
            /* softmax over the k winners; best[0] is their maximum */
            float sum = 0.0f;
            for (int j = 0; j < k; j++) {
                const float e = expf(best[j] - best[0]);
                w[o + j] = e;
                sum += e;
            }
            const float inv = 1.0f / sum;
            for (int j = 0; j < k; j++) {
                const int a = bp[j] >> 16, b = bp[j] & 0xffff;
                w[o + j] *= inv;
                slot[o + j] = (int32_t)(ix[o1 + a] * n_keys + ix[o2 + b]);
                pair[o + j] = bp[j];
            }
        }
    }
}

void pk_product_topk_backward(const float *ds, const int32_t *pair, const int32_t *ix, int64_t N,
                              int H, int k, float *g, int32_t *gix) {
    const int64_t hk = (int64_t)H * k;
#pragma omp parallel for schedule(static) if (N * hk > PK_PAR_MIN / 4)
    for (int64_t n = 0; n < N; n++) {
        for (int h = 0; h < H; h++) {
            const int64_t o1 = ((int64_t)(2 * h) * N + n) * k, o2 = o1 + N * k;
            for (int a = 0; a < k; a++) {
                g[o1 + a] = g[o2 + a] = 0.0f;
                gix[o1 + a] = gix[o2 + a] = -1;
            }
            const int64_t o = n * hk + (int64_t)h * k;
            for (int j = 0; j < k; j++) {
                const int a = pair[o + j] >> 16, b = pair[o + j] & 0xffff;
                g[o1 + a] += ds[o + j];
                g[o2 + b] += ds[o + j];
                gix[o1 + a] = ix[o1 + a];
                gix[o2 + b] = ix[o2 + b];
            }
        }
    }
}

/* The host's embedding bag and its backward compute the same, one head half
   per call; doing all halves in one region spares 4*heads thread-team starts
   per step, which a loaded machine makes expensive. */
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

/* ---------------------------------------------------------- transposes */

void pk_to_heads(const float *q, int64_t N, int G, int64_t c, float *qt) {
    const int64_t F = (int64_t)G * c;
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int b = 0; b < G; b++)
            memcpy(qt + ((int64_t)b * N + n) * c, q + n * F + (int64_t)b * c, (size_t)c * sizeof *q);
}

void pk_from_heads(const float *qt, int64_t N, int G, int64_t c, float *q) {
    const int64_t F = (int64_t)G * c;
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int b = 0; b < G; b++)
            memcpy(q + n * F + (int64_t)b * c, qt + ((int64_t)b * N + n) * c, (size_t)c * sizeof *q);
}

/* ---------------------------------------------------------- batch norm */

/* Rows [r0, r1) of chunk ch of N rows cut into PK_RED_CHUNKS pieces. */
static void chunk_rows(int64_t N, int ch, int64_t *r0, int64_t *r1) {
    *r0 = N * ch / PK_RED_CHUNKS;
    *r1 = N * (ch + 1) / PK_RED_CHUNKS;
}

/* part[ch][f] = sum over chunk ch's rows of x[n,f] - shift[f] (squared if sq). */
static void column_sums(const float *x, int64_t N, int64_t F, const float *shift, int sq, float *part) {
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int ch = 0; ch < PK_RED_CHUNKS; ch++) {
        int64_t r0, r1;
        chunk_rows(N, ch, &r0, &r1);
        float *p = part + ch * F;
        for (int64_t f = 0; f < F; f++) p[f] = 0.0f;
        for (int64_t n = r0; n < r1; n++) {
            const float *xr = x + n * F;
            if (sq) {
#pragma omp simd
                for (int64_t f = 0; f < F; f++) p[f] += (xr[f] - shift[f]) * (xr[f] - shift[f]);
            } else {
#pragma omp simd
                for (int64_t f = 0; f < F; f++) p[f] += xr[f];
            }
        }
    }
}

/* y = (x - mean) rstd g + b, rows in parallel. */
static void affine_rows(const float *x, int64_t N, int64_t F, const float *mean, const float *rstd,
                        const float *g, const float *b, float *y) {
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * F;
        float *yr = y + n * F;
#pragma omp simd
        for (int64_t f = 0; f < F; f++) yr[f] = (xr[f] - mean[f]) * rstd[f] * g[f] + b[f];
    }
}

/* Column f's total over the chunk partials, in chunk order. */
static double chunk_total(const float *part, int64_t F, int64_t f) {
    double s = 0.0;
    for (int ch = 0; ch < PK_RED_CHUNKS; ch++) s += part[ch * F + f];
    return s;
}

void pk_bn_train(const float *x, int64_t N, int64_t F, const float *g, const float *b, float eps,
                 float momentum, float *y, float *mean, float *rstd, float *run_mean,
                 float *run_var, float *scratch) {
    /* PyTorch updates the running variance with the unbiased estimate */
    const double unbias = N > 1 ? (double)N / (double)(N - 1) : 1.0;
    column_sums(x, N, F, NULL, 0, scratch);
    for (int64_t f = 0; f < F; f++) mean[f] = (float)(chunk_total(scratch, F, f) / (double)N);
    column_sums(x, N, F, mean, 1, scratch); /* two passes: no cancellation */
    for (int64_t f = 0; f < F; f++) {
        const double var = chunk_total(scratch, F, f) / (double)N;
        rstd[f] = (float)(1.0 / sqrt(var + eps));
        if (run_mean) run_mean[f] = (1.0f - momentum) * run_mean[f] + momentum * mean[f];
        if (run_var) run_var[f] = (1.0f - momentum) * run_var[f] + momentum * (float)(var * unbias);
    }
    affine_rows(x, N, F, mean, rstd, g, b, y);
}

void pk_bn_eval(const float *x, int64_t N, int64_t F, const float *g, const float *b, float eps,
                const float *run_mean, const float *run_var, float *y, float *mean, float *rstd) {
    for (int64_t f = 0; f < F; f++) {
        mean[f] = run_mean[f];
        rstd[f] = 1.0f / sqrtf(run_var[f] + eps);
    }
    affine_rows(x, N, F, mean, rstd, g, b, y);
}

/* part1[ch][f] = sum dy, part2[ch][f] = sum dy xh over chunk ch's rows, with
   xh = (x - mean[col]) rstd[col] and col = f (batch norm, group = 0) or the
   row's group statistics (layer norm: mean/rstd indexed n*G + f/c). */
static void affine_grad_sums(const float *x, int64_t N, int64_t F, const float *mean, const float *rstd,
                             int G, int64_t c, const float *dy, float *part1, float *part2) {
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int ch = 0; ch < PK_RED_CHUNKS; ch++) {
        int64_t r0, r1;
        chunk_rows(N, ch, &r0, &r1);
        float *p1 = part1 + ch * F, *p2 = part2 + ch * F;
        for (int64_t f = 0; f < F; f++) p1[f] = p2[f] = 0.0f;
        for (int64_t n = r0; n < r1; n++) {
            const float *xr = x + n * F, *gr = dy + n * F;
            if (G == 0) {
#pragma omp simd
                for (int64_t f = 0; f < F; f++) {
                    p1[f] += gr[f];
                    p2[f] += gr[f] * ((xr[f] - mean[f]) * rstd[f]);
                }
            } else {
                for (int j = 0; j < G; j++) {
                    const float mu = mean[n * G + j], rs = rstd[n * G + j];
                    const int64_t o = (int64_t)j * c;
#pragma omp simd
                    for (int64_t i = 0; i < c; i++) {
                        p1[o + i] += gr[o + i];
                        p2[o + i] += gr[o + i] * ((xr[o + i] - mu) * rs);
                    }
                }
            }
        }
    }
}

/* With xh = (x - mean) rstd: dg = sum dy xh, db = sum dy over rows, and
   with batch statistics dx = g rstd (dy - db/N - xh dg/N) (the mean and
   variance depend on every row); with fixed statistics dx = g rstd dy. */
void pk_bn_backward(const float *x, int64_t N, int64_t F, const float *g, const float *mean,
                    const float *rstd, const float *dy, int batch, float *dx, float *dg, float *db,
                    float *scratch) {
    float *p1 = scratch, *p2 = scratch + PK_RED_CHUNKS * F;
    affine_grad_sums(x, N, F, mean, rstd, 0, 0, dy, p1, p2);
    /* reduce in place into the first row of each part: sums, then means */
    for (int64_t f = 0; f < F; f++) {
        const double s1 = chunk_total(p1, F, f), s2 = chunk_total(p2, F, f);
        db[f] += (float)s1;
        dg[f] += (float)s2;
        p1[f] = batch ? (float)(s1 / (double)N) : 0.0f;
        p2[f] = batch ? (float)(s2 / (double)N) : 0.0f;
    }
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * F, *gr = dy + n * F;
        float *dr = dx + n * F;
#pragma omp simd
        for (int64_t f = 0; f < F; f++) {
            const float xh = (xr[f] - mean[f]) * rstd[f];
            dr[f] = g[f] * rstd[f] * (gr[f] - p1[f] - xh * p2[f]);
        }
    }
}

/* ---------------------------------------------------------- layer norm */

void pk_ln_forward(const float *x, int64_t N, int G, int64_t c, const float *g, const float *b,
                   float eps, float *y, float *mean, float *rstd) {
    const int64_t F = (int64_t)G * c;
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        for (int j = 0; j < G; j++) {
            const int64_t o = n * F + (int64_t)j * c;
            const float *xr = x + o, *gr = g + (int64_t)j * c, *br = b + (int64_t)j * c;
            float *yr = y + o;
            float s = 0.0f, v = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < c; i++) s += xr[i];
            const float mu = s / (float)c;
#pragma omp simd reduction(+ : v)
            for (int64_t i = 0; i < c; i++) v += (xr[i] - mu) * (xr[i] - mu);
            const float rs = 1.0f / sqrtf(v / (float)c + eps);
#pragma omp simd
            for (int64_t i = 0; i < c; i++) yr[i] = (xr[i] - mu) * rs * gr[i] + br[i];
            mean[n * G + j] = mu;
            rstd[n * G + j] = rs;
        }
    }
}

/* Row pass: with xh = (x - mean) rstd and gy = dy g,
   dx = rstd (gy - mean(gy) - xh mean(gy xh)) over each group. Then the
   chunked column sums: dg += sum_rows dy xh, db += sum_rows dy. */
void pk_ln_backward(const float *x, int64_t N, int G, int64_t c, const float *g,
                    const float *mean, const float *rstd, const float *dy, float *dx, float *dg,
                    float *db, float *scratch) {
    const int64_t F = (int64_t)G * c;
#pragma omp parallel for schedule(static) if (N * F > PK_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        for (int j = 0; j < G; j++) {
            const int64_t o = n * F + (int64_t)j * c;
            const float *xr = x + o, *gr = g + (int64_t)j * c, *dyr = dy + o;
            float *dxr = dx + o;
            const float mu = mean[n * G + j], rs = rstd[n * G + j];
            float a = 0.0f, bsum = 0.0f;
#pragma omp simd reduction(+ : a, bsum)
            for (int64_t i = 0; i < c; i++) {
                const float gy = dyr[i] * gr[i];
                a += gy;
                bsum += gy * (xr[i] - mu) * rs;
            }
            a /= (float)c;
            bsum /= (float)c;
#pragma omp simd
            for (int64_t i = 0; i < c; i++) {
                const float xh = (xr[i] - mu) * rs;
                dxr[i] = rs * (dyr[i] * gr[i] - a - xh * bsum);
            }
        }
    }
    float *p1 = scratch, *p2 = scratch + PK_RED_CHUNKS * F;
    affine_grad_sums(x, N, F, mean, rstd, G, c, dy, p1, p2);
    for (int64_t f = 0; f < F; f++) {
        db[f] += (float)chunk_total(p1, F, f);
        dg[f] += (float)chunk_total(p2, F, f);
    }
}

/* ------------------------------------------------------------- dropout */

void pk_dropout(const float *src, float *dst, int64_t n, float p, uint64_t key) {
    const float keep = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static) if (parallel : n > PK_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dst[i] = fl_rng_uniform(key, (uint64_t)i) < p ? 0.0f : src[i] * keep;
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

/* ----------------------------------------------------------- usage */

void pk_usage_add(const int32_t *slot, const float *w, int64_t n, uint64_t *used, double *att) {
    for (int64_t i = 0; i < n; i++) {
        const int32_t s = slot[i];
        used[s >> 6] |= 1ull << (s & 63);
        att[s] += w[i];
    }
}
