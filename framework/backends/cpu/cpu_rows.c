/*
 * backends/cpu/cpu_rows.c — row-wise ops of the CPU backend: softmax and its
 * gradient, logsumexp, top-k, gathering and scatter-adding rows, embedding
 * bags, layer norm and its gradient, and the stable bucket sort that groups
 * tokens by expert.
 *
 * Rows are independent, so most ops are one OpenMP loop over rows with a
 * vectorised loop along the row. Ops that add into shared rows (scatter-add,
 * the embedding-bag gradient) split the *columns* over threads instead: no
 * atomics, and the sum order (and so the result) does not depend on the
 * thread count. Reductions over rows (LayerNorm's dg, db) keep one double
 * row per thread and add them in thread order.
 *
 * Index convention (gather, scatter, embedding bag): a negative index is
 * padding (a zero row is read, nothing is written); an index >= the table's
 * rows is a programming error, reported once per call.
 */
#include "cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

/* ------------------------------------------------------------- softmax */

/* y[n] = softmax(x[n]); a row of only -inf gives zeros. y may alias x. */
void cpu_softmax_row(const float *x, float *y, int64_t n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    if (m == -INFINITY) m = 0.0f;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
        y[j] = cpu_expf(x[j] - m);
        s += y[j];
    }
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) y[j] *= inv;
}

/* y[N,M] = softmax over each row of x */
void cpu_softmax(const fl_tensor *x, fl_tensor *y) {
    const int64_t N = cpu_rows(x), M = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && y->dtype == FL_F32 && fl_numel(y) == N * M);
    const float *px = cpu_f32(x);
    float *py = cpu_f32(y);
#pragma omp parallel for schedule(static) if (N * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) cpu_softmax_row(px + i * M, py + i * M, M);
}

/* dx = y (dy - sum_j dy_j y_j) per row; dx may alias dy */
void cpu_softmax_backward(const fl_tensor *y, const fl_tensor *dy, fl_tensor *dx) {
    const int64_t N = cpu_rows(y), M = cpu_cols(y);
    CPU_CHECK(y->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32);
    CPU_CHECK(fl_numel(dy) == N * M && fl_numel(dx) == N * M);
    const float *py = cpu_f32(y), *pdy = cpu_f32(dy);
    float *pdx = cpu_f32(dx);
#pragma omp parallel for schedule(static) if (N * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *yr = py + i * M, *gr = pdy + i * M;
        float *dr = pdx + i * M;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < M; j++) dot += yr[j] * gr[j];
#pragma omp simd
        for (int64_t j = 0; j < M; j++) dr[j] = yr[j] * (gr[j] - dot);
    }
}

/* out[N] = log sum_j exp(x[N,j]); a row of only -inf gives -inf */
void cpu_logsumexp(const fl_tensor *x, fl_tensor *out) {
    const int64_t N = cpu_rows(x), M = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && out->dtype == FL_F32 && fl_numel(out) == N);
    const float *px = cpu_f32(x);
    float *po = cpu_f32(out);
#pragma omp parallel for schedule(static) if (N * M > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *r = px + i * M;
        float m = -INFINITY, s = 0.0f;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < M; j++) m = r[j] > m ? r[j] : m;
        if (m == -INFINITY) {
            po[i] = -INFINITY;
            continue;
        }
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < M; j++) s += cpu_expf(r[j] - m);
        po[i] = m + logf(s);
    }
}

/* ---------------------------------------------------------------- top-k */

/* The order is the strict "(value descending, index ascending)", with
   -0 == +0 (a tie) as in float comparison. Three algorithms, each best in a
   part of the (M, k) range:
   - insertion into a sorted buffer, with a vector scan that skips blocks
     holding nothing above the current k-th value: when k is small beside the
     row (router k = 1..3; vocabulary top-k), O(M + k^2 log(M/k)) on rows in
     random order;
   - rank counting for short rows (PKM sub-keys, M <= 128): each element's
     rank is the number of larger elements, a branch-free O(M^2) vector loop,
     and the winners land straight in their output slot — no sort;
   - a partial quicksort of (value, index) keys for the rest.
   ns per row, one core (AVX2), random rows, against the former insertion
   (k <= 32) / full qsort (k > 32): M=64 k=32 1017 -> 184; M=56 k=42
   2303 -> 167; M=512 k=42 33400 -> 1390; M=50257 k=40 6.0e6 -> 20400.
   A row holding a NaN always takes the insertion, whose rule for it is
   kept (NaN has no place in the order): a NaN met while the buffer has room
   takes the next slot and nothing met later moves above it; one met with
   the buffer full is dropped; once a NaN holds the last slot nothing enters. */

/* Rank counting up to this row length (O(M^2), beats the sort up to here). */
#define TOPK_RANK_MAX 128
/* Elements compared per vector step (rank counting) and per skipped block
   (insertion's scan): whole AVX2 registers, few enough to stay in them. */
#define TOPK_BLOCK 32
/* The quicksort finishes ranges up to this length with insertion sort. */
#define TOPK_ISORT_MAX 16
_Static_assert(TOPK_RANK_MAX % TOPK_BLOCK == 0, "rank counting pads rows to whole blocks");

typedef enum { TOPK_INSERT, TOPK_RANK, TOPK_SELECT } topk_algo;

static topk_algo topk_choose(int64_t M, int k) {
    if (k == 1 || 8 * (int64_t)k * k < M) return TOPK_INSERT;
    return M <= TOPK_RANK_MAX ? TOPK_RANK : TOPK_SELECT;
}

static int topk_has_nan(const float *x, int64_t M) {
    int nan = 0;
#pragma omp simd reduction(| : nan)
    for (int64_t j = 0; j < M; j++) nan |= x[j] != x[j];
    return nan;
}

/* Inserts (xv, j) into the sorted v[n], ix[n] (n < k: one more slot;
   n == k: drops the last), keeping it sorted. Scanning j upwards, an equal
   value never passes one already held. */
static void topk_place(float xv, int64_t j, int n, int k, float *v, int32_t *ix) {
    int p = n < k ? n : k - 1;
    for (; p > 0 && v[p - 1] < xv; p--) {
        v[p] = v[p - 1];
        ix[p] = ix[p - 1];
    }
    v[p] = xv;
    ix[p] = (int32_t)j;
}

/* Whether some x[TOPK_BLOCK] > t: the block would change a full buffer. */
static int topk_block_above(const float *x, float t) {
    int n = 0;
#pragma omp simd reduction(+ : n)
    for (int l = 0; l < TOPK_BLOCK; l++) n += x[l] > t;
    return n;
}

/* k largest of x[M] into v[k], ix[k] by insertion: the first k fill the
   buffer, each later one enters only above its last value. A block is
   skipped only where each of its elements would be. */
static void topk_insert(const float *x, int64_t M, int k, float *v, int32_t *ix) {
    for (int j = 0; j < k; j++) topk_place(x[j], j, j, k, v, ix);
    int64_t j = k;
    for (; j + TOPK_BLOCK <= M; j += TOPK_BLOCK)
        if (topk_block_above(x + j, v[k - 1]))
            for (int l = 0; l < TOPK_BLOCK; l++)
                if (x[j + l] > v[k - 1]) topk_place(x[j + l], j + l, k, k, v, ix);
    for (; j < M; j++)
        if (x[j] > v[k - 1]) topk_place(x[j], j, k, k, v, ix);
}

/* k largest of x[M] (M <= TOPK_RANK_MAX, no NaN) by rank counting.
   g[i] = #{j : x[j] > x[i]} is the rank up to ties; tied elements share g
   and the next g+t-1 slots stay free for them, so placing the elements in
   index order at the first free slot from g gives ties lower index first. */
static void topk_rank(const float *x, int64_t M, int k, float *v, int32_t *ix) {
    float xp[TOPK_RANK_MAX], sv[TOPK_RANK_MAX];
    int32_t g[TOPK_RANK_MAX], si[TOPK_RANK_MAX];
    unsigned char used[TOPK_RANK_MAX] = {0};
    const int m = (int)M, mp = (m + TOPK_BLOCK - 1) / TOPK_BLOCK * TOPK_BLOCK;
    for (int i = 0; i < m; i++) xp[i] = x[i];
    for (int i = m; i < mp; i++) xp[i] = -INFINITY; /* padding lanes, ranks unused */
    for (int b = 0; b < mp; b += TOPK_BLOCK) {
        int32_t acc[TOPK_BLOCK] = {0}; /* kept in registers across the j loop */
        for (int j = 0; j < m; j++) {
            const float xj = xp[j];
            for (int l = 0; l < TOPK_BLOCK; l++) acc[l] += xp[b + l] < xj;
        }
        memcpy(g + b, acc, sizeof acc);
    }
    for (int i = 0; i < m; i++) { /* ranks are a permutation of 0..M-1 */
        int r = g[i];
        while (used[r]) r++;
        used[r] = 1;
        sv[r] = x[i];
        si[r] = i;
    }
    memcpy(v, sv, (size_t)k * sizeof *v);
    memcpy(ix, si, (size_t)k * sizeof *ix);
}

/* A u64 key whose unsigned order is the top-k order: the float's bits made
   monotone (sign flipped for positives, all bits for negatives; -0 as +0)
   above the complemented index. */
static uint64_t topk_key(float f, int64_t j) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if (u == 0x80000000u) u = 0;
    u = u & 0x80000000u ? ~u : u | 0x80000000u;
    return (uint64_t)u << 32 | (uint32_t)~(uint32_t)j;
}

static void key_swap(uint64_t *a, uint64_t *b) {
    const uint64_t t = *a;
    *a = *b;
    *b = t;
}

/* a[n] descending by insertion */
static void key_isort(uint64_t *a, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        const uint64_t t = a[i];
        int64_t p = i;
        for (; p > 0 && a[p - 1] < t; p--) a[p] = a[p - 1];
        a[p] = t;
    }
}

/* Partitions a[n] (n >= 3, distinct keys) around the median of three:
   returns p with a[0,p) > a[p] > a(p,n). The scan swaps unconditionally
   (branch-free: which side a key goes is data, not a jump). */
static int64_t key_partition(uint64_t *a, int64_t n) {
    const int64_t m = n / 2;
    if (a[0] < a[m]) key_swap(a, a + m);
    if (a[m] < a[n - 1]) key_swap(a + m, a + n - 1);
    if (a[0] < a[m]) key_swap(a, a + m);
    key_swap(a + m, a + n - 1);
    const uint64_t pivot = a[n - 1];
    int64_t i = 0;
    for (int64_t j = 0; j < n - 1; j++) {
        const uint64_t t = a[j];
        a[j] = a[i];
        a[i] = t;
        i += t > pivot;
    }
    key_swap(a + i, a + n - 1);
    return i;
}

/* Puts the k largest of a[n] first, descending (the rest: any order).
   Recurses into the smaller side only: depth <= log2(n). */
static void key_top_sort(uint64_t *a, int64_t n, int64_t k) {
    while (n > TOPK_ISORT_MAX) {
        const int64_t p = key_partition(a, n);
        if (p + 1 >= k) { /* the winners are the left side (and the pivot) */
            n = p;
            k = k < n ? k : n;
        } else if (p < n - p - 1) { /* all of the left, the top of the right */
            key_top_sort(a, p, p);
            a += p + 1, n -= p + 1, k -= p + 1;
        } else {
            key_top_sort(a + p + 1, n - p - 1, k - p - 1);
            n = k = p;
        }
    }
    key_isort(a, n);
}

/* k largest of x[M] (no NaN) by partial quicksort; key[M] scratch. */
static void topk_select(const float *x, int64_t M, int k, float *v, int32_t *ix, uint64_t *key) {
    for (int64_t j = 0; j < M; j++) key[j] = topk_key(x[j], j);
    key_top_sort(key, M, k);
    for (int j = 0; j < k; j++) {
        ix[j] = (int32_t)~(uint32_t)key[j];
        v[j] = x[ix[j]];
    }
}

static void topk_row(const float *x, int64_t M, int k, topk_algo algo, float *v, int32_t *ix, uint64_t *key) {
    if (algo == TOPK_INSERT || topk_has_nan(x, M))
        topk_insert(x, M, k, v, ix);
    else if (algo == TOPK_RANK)
        topk_rank(x, M, k, v, ix);
    else
        topk_select(x, M, k, v, ix, key);
}

/* vals[N,k], idx[N,k] i32: the k largest of each row of x[N,M] */
void cpu_topk(const fl_tensor *x, int k, fl_tensor *vals, fl_tensor *idx) {
    const int64_t N = cpu_rows(x), M = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && vals->dtype == FL_F32 && idx->dtype == FL_I32);
    CPU_CHECK(k >= 1 && k <= M && fl_numel(vals) == N * k && fl_numel(idx) == N * k);
    CPU_CHECK(M <= INT32_MAX);
    const topk_algo algo = topk_choose(M, k);
    const float *px = cpu_f32(x);
    float *pv = cpu_f32(vals);
    int32_t *pi = cpu_i32(idx);
#pragma omp parallel if (N * M > CPU_PAR_MIN)
    {
        uint64_t *key = algo == TOPK_SELECT ? malloc((size_t)M * sizeof *key) : NULL;
        /* out of memory: the insertion needs no scratch */
        const topk_algo a = algo == TOPK_SELECT && !key ? TOPK_INSERT : algo;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; i++) topk_row(px + i * M, M, k, a, pv + i * k, pi + i * k, key);
        free(key);
    }
}

/* ---------------------------------------------------- gather / scatter */

/* dst[idx[i],:] += w[i] * src[i / k,:]. Thread t owns columns
   [c0, c1) of every row (multiples of 16 floats: whole cache lines). */
void cpu_scatter_add(const float *src, int64_t k, const int32_t *idx, const float *w,
                     int64_t n_idx, float *dst, int64_t R, int64_t D) {
    int64_t bad = 0;
    const int nt = n_idx * D > CPU_PAR_MIN ? cpu_threads() : 1;
#pragma omp parallel num_threads(nt) reduction(+ : bad)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t c0 = (D * t / T) / 16 * 16;
        const int64_t c1 = t + 1 == T ? D : (D * (t + 1) / T) / 16 * 16;
        for (int64_t e = 0; e < n_idx && c1 > c0; e++) {
            const int32_t r = idx[e];
            if (r < 0 || r >= R) {
                bad += r >= R && t == 0;
                continue;
            }
            const float we = w ? w[e] : 1.0f, *s = src + (e / k) * D;
            float *d = dst + (int64_t)r * D;
#pragma omp simd
            for (int64_t j = c0; j < c1; j++) d[j] += we * s[j];
        }
    }
    if (bad) cpu_shape_error(__func__, "index >= rows of the destination");
}

/* dst[i,:] = src[idx[i],:]; src[R,D], idx[N] i32, dst[N,D] */
void cpu_gather_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst) {
    const int64_t R = cpu_rows(src), D = cpu_cols(src), N = fl_numel(idx);
    CPU_CHECK(src->dtype == dst->dtype && idx->dtype == FL_I32);
    CPU_CHECK(cpu_cols(dst) == D && cpu_rows(dst) == N);
    const int32_t *pi = cpu_i32(idx);
    const size_t row = (size_t)D * fl_dtype_size(src->dtype);
    const char *ps = src->data;
    char *pd = dst->data;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (N * D > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const int32_t r = pi[i];
        if (r >= 0 && r < R)
            memcpy(pd + (size_t)i * row, ps + (size_t)r * row, row);
        else {
            memset(pd + (size_t)i * row, 0, row);
            bad += r >= R;
        }
    }
    if (bad) cpu_shape_error(__func__, "index >= rows of the source");
}

/* dst[idx[i],:] += src[i,:]; src[N,D], idx[N], dst[R,D] */
void cpu_scatter_add_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst) {
    const int64_t N = cpu_rows(src), D = cpu_cols(src);
    CPU_CHECK(src->dtype == FL_F32 && dst->dtype == FL_F32 && idx->dtype == FL_I32);
    CPU_CHECK(fl_numel(idx) == N && cpu_cols(dst) == D);
    cpu_scatter_add(cpu_f32(src), 1, cpu_i32(idx), NULL, N, cpu_f32(dst), cpu_rows(dst), D);
}

/* ------------------------------------------------------- embedding bag */

/* out[i,:] = sum_j w[i,j] table[idx[i,j],:]; table[R,D], idx[N,k], w[N,k] or
   NULL (ones), out[N,D] */
void cpu_embedding_bag(const fl_tensor *table, const fl_tensor *idx, const fl_tensor *w,
                       fl_tensor *out) {
    const int64_t R = cpu_rows(table), D = cpu_cols(table);
    const int64_t N = cpu_rows(out), k = N ? fl_numel(idx) / N : 0;
    CPU_CHECK(table->dtype == FL_F32 && out->dtype == FL_F32 && idx->dtype == FL_I32);
    CPU_CHECK(cpu_cols(out) == D && fl_numel(idx) == N * k);
    CPU_CHECK(!w || (w->dtype == FL_F32 && fl_numel(w) == N * k));
    const float *pt = cpu_f32(table), *pw = w ? cpu_f32(w) : NULL;
    const int32_t *pi = cpu_i32(idx);
    float *po = cpu_f32(out);
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (N * k * D > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float *o = po + i * D;
        memset(o, 0, (size_t)D * sizeof *o);
        for (int64_t j = 0; j < k; j++) {
            const int32_t r = pi[i * k + j];
            if (r < 0 || r >= R) {
                bad += r >= R;
                continue;
            }
            const float wj = pw ? pw[i * k + j] : 1.0f, *t = pt + (int64_t)r * D;
#pragma omp simd
            for (int64_t c = 0; c < D; c++) o[c] += wj * t[c];
        }
    }
    if (bad) cpu_shape_error(__func__, "index >= rows of the table");
}

/* dtable[idx[i,j],:] += w[i,j] dout[i,:] (dtable may be NULL);
   dw[i,j] = dot(dout[i,:], table[idx[i,j],:]) when dw != NULL */
void cpu_embedding_bag_backward(const fl_tensor *dout, const fl_tensor *table,
                                const fl_tensor *idx, const fl_tensor *w, fl_tensor *dtable,
                                fl_tensor *dw) {
    const int64_t R = cpu_rows(table), D = cpu_cols(table);
    const int64_t N = cpu_rows(dout), k = N ? fl_numel(idx) / N : 0;
    CPU_CHECK(dout->dtype == FL_F32 && table->dtype == FL_F32 && idx->dtype == FL_I32);
    CPU_CHECK(cpu_cols(dout) == D && fl_numel(idx) == N * k);
    CPU_CHECK(!w || (w->dtype == FL_F32 && fl_numel(w) == N * k));
    CPU_CHECK(!dtable || (dtable->dtype == FL_F32 && fl_numel(dtable) == R * D));
    CPU_CHECK(!dw || (dw->dtype == FL_F32 && fl_numel(dw) == N * k));
    const float *pd = cpu_f32(dout), *pt = cpu_f32(table);
    const int32_t *pi = cpu_i32(idx);
    if (dtable)
        cpu_scatter_add(pd, k, pi, w ? cpu_f32(w) : NULL, N * k, cpu_f32(dtable), R, D);
    if (!dw) return;
    float *pdw = cpu_f32(dw);
#pragma omp parallel for schedule(static) if (N * k * D > CPU_PAR_MIN)
    for (int64_t e = 0; e < N * k; e++) {
        const int32_t r = pi[e];
        float s = 0.0f;
        if (r >= 0 && r < R) {
            const float *a = pd + (e / k) * D, *t = pt + (int64_t)r * D;
#pragma omp simd reduction(+ : s)
            for (int64_t c = 0; c < D; c++) s += a[c] * t[c];
        }
        pdw[e] = s;
    }
}

/* ----------------------------------------------------------- layernorm */

/* One normalised value: (x - mu) rs g + b (g, b NULL: no affine). The f32
   and the bf16 output loops both call it, so a bf16 y is exactly the f32
   result rounded. */
static inline float ln_value(float x, float mu, float rs, const float *g, const float *b, int64_t j) {
    const float t = (x - mu) * rs;
    return (g ? t * g[j] : t) + (b ? b[j] : 0.0f);
}

/* y[N,D] = (x - mean) rstd g + b per row, rstd = 1/sqrt(biased var + eps);
   y f32 or bf16 (rounded to nearest even) */
void cpu_layernorm(const fl_tensor *x, const fl_tensor *g, const fl_tensor *b, float eps,
                   fl_tensor *y, fl_tensor *mean, fl_tensor *rstd) {
    const int64_t N = cpu_rows(x), D = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && (y->dtype == FL_F32 || y->dtype == FL_BF16));
    CPU_CHECK(fl_numel(y) == N * D && D > 0);
    CPU_CHECK(!g || (g->dtype == FL_F32 && fl_numel(g) == D));
    CPU_CHECK(!b || (b->dtype == FL_F32 && fl_numel(b) == D));
    CPU_CHECK(!mean || (mean->dtype == FL_F32 && fl_numel(mean) == N));
    CPU_CHECK(!rstd || (rstd->dtype == FL_F32 && fl_numel(rstd) == N));
    const float *px = cpu_f32(x), *pg = g ? cpu_f32(g) : NULL, *pb = b ? cpu_f32(b) : NULL;
    float *pm = mean ? cpu_f32(mean) : NULL, *pr = rstd ? cpu_f32(rstd) : NULL;
    float *py = y->dtype == FL_F32 ? cpu_f32(y) : NULL;  /* one of these two */
    uint16_t *ph = y->dtype == FL_BF16 ? y->data : NULL;
#pragma omp parallel for schedule(static) if (N * D > CPU_PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *xr = px + i * D;
        float s = 0.0f, v = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < D; j++) s += xr[j];
        const float mu = s / (float)D;
#pragma omp simd reduction(+ : v)
        for (int64_t j = 0; j < D; j++) v += (xr[j] - mu) * (xr[j] - mu);
        const float rs = 1.0f / sqrtf(v / (float)D + eps);
        if (py) {
            float *yr = py + i * D;
#pragma omp simd
            for (int64_t j = 0; j < D; j++) yr[j] = ln_value(xr[j], mu, rs, pg, pb, j);
        } else {
            uint16_t *yr = ph + i * D;
#pragma omp simd
            for (int64_t j = 0; j < D; j++) yr[j] = cpu_bf16(ln_value(xr[j], mu, rs, pg, pb, j));
        }
        if (pm) pm[i] = mu;
        if (pr) pr[i] = rs;
    }
}

/* One row of the LayerNorm gradient. With xh = (x - mean) rstd and
   gy = dy g: dx = rstd (gy - mean(gy) - xh mean(gy xh)). Adds dy xh and dy
   into the thread's dg, db rows (NULL: skipped). dx may alias dy. */
static void ln_back_row(const float *x, const float *g, float mu, float rs, const float *dy,
                        float *dx, double *dg, double *db, int64_t D) {
    float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
    for (int64_t j = 0; j < D; j++) {
        float gy = g ? dy[j] * g[j] : dy[j];
        a += gy;
        b += gy * (x[j] - mu) * rs;
    }
    a /= (float)D;
    b /= (float)D;
    if (dg)
#pragma omp simd
        for (int64_t j = 0; j < D; j++) dg[j] += (double)(dy[j] * ((x[j] - mu) * rs));
    if (db)
#pragma omp simd
        for (int64_t j = 0; j < D; j++) db[j] += (double)dy[j];
#pragma omp simd
    for (int64_t j = 0; j < D; j++) {
        float xh = (x[j] - mu) * rs, gy = g ? dy[j] * g[j] : dy[j];
        dx[j] = rs * (gy - a - xh * b);
    }
}

/* dx[N,D] overwritten; dg[D], db[D] accumulated (+=) unless NULL */
void cpu_layernorm_backward(const fl_tensor *x, const fl_tensor *g, const fl_tensor *mean,
                            const fl_tensor *rstd, const fl_tensor *dy, fl_tensor *dx,
                            fl_tensor *dg, fl_tensor *db) {
    const int64_t N = cpu_rows(x), D = cpu_cols(x);
    CPU_CHECK(x->dtype == FL_F32 && dy->dtype == FL_F32 && dx->dtype == FL_F32 && D > 0);
    CPU_CHECK(fl_numel(dy) == N * D && fl_numel(dx) == N * D);
    CPU_CHECK(fl_numel(mean) == N && fl_numel(rstd) == N);
    CPU_CHECK(!g || fl_numel(g) == D);
    CPU_CHECK(!dg || fl_numel(dg) == D);
    CPU_CHECK(!db || fl_numel(db) == D);
    const float *px = cpu_f32(x), *pg = g ? cpu_f32(g) : NULL, *pm = cpu_f32(mean);
    const float *pr = cpu_f32(rstd), *pdy = cpu_f32(dy);
    float *pdx = cpu_f32(dx);
    const int nt = N * D > CPU_PAR_MIN ? cpu_threads() : 1;
    double *part = calloc((size_t)nt * 2 * (size_t)D, sizeof *part);
    if (!part) {
        cpu_shape_error(__func__, "out of memory for partial sums");
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        double *mine = part + (int64_t)t * 2 * D; /* [dg | db] of this thread */
        double *pdg = dg ? mine : NULL, *pdb = db ? mine + D : NULL;
        for (int64_t i = N * t / T; i < N * (t + 1) / T; i++)
            ln_back_row(px + i * D, pg, pm[i], pr[i], pdy + i * D, pdx + i * D, pdg, pdb, D);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t j = 0; j < D; j++) {
            double sg = 0, sb = 0;
            for (int k = 0; k < T; k++) {
                sg += part[(int64_t)k * 2 * D + j];
                sb += part[(int64_t)k * 2 * D + D + j];
            }
            if (dg) cpu_f32(dg)[j] += (float)sg;
            if (db) cpu_f32(db)[j] += (float)sb;
        }
    }
    free(part);
}

/* ---------------------------------------------------------- bucket sort */

/* Counting sort of keys[N] in [0, G): perm lists the rows of bucket 0, then
   bucket 1, ..., each in original order; off[G+1] the bucket starts. Keys < 0
   are left out; perm entries past off[G] are -1. Serial: N is tokens x top-k,
   and one pass over it costs less than a thread team. */
void cpu_bucket_sort(const fl_tensor *keys, int G, fl_tensor *perm, int64_t *off) {
    const int64_t N = fl_numel(keys);
    CPU_CHECK(keys->dtype == FL_I32 && perm->dtype == FL_I32 && fl_numel(perm) >= N);
    CPU_CHECK(G >= 0 && off != NULL);
    const int32_t *k = cpu_i32(keys);
    int32_t *p = cpu_i32(perm);
    int64_t bad = 0;
    for (int g = 0; g <= G; g++) off[g] = 0;
    for (int64_t i = 0; i < N; i++) {
        if (k[i] >= G) bad++;
        if (k[i] >= 0 && k[i] < G) off[k[i] + 1]++;
    }
    for (int g = 0; g < G; g++) off[g + 1] += off[g];
    int64_t *next = malloc(((size_t)G + 1) * sizeof *next);
    if (!next) {
        cpu_shape_error(__func__, "out of memory");
        return;
    }
    memcpy(next, off, ((size_t)G + 1) * sizeof *next);
    for (int64_t i = 0; i < N; i++)
        if (k[i] >= 0 && k[i] < G) p[next[k[i]]++] = (int32_t)i;
    for (int64_t i = off[G]; i < N; i++) p[i] = -1;
    free(next);
    if (bad) cpu_shape_error(__func__, "key >= G");
}
