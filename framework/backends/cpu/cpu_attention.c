/*
 * backends/cpu/cpu_attention.c — multi-head self-attention of the CPU
 * backend (causal, bidirectional with padding, local), forward and
 * backward, on dnnl_sgemm.
 *
 * qkv[B,T,3C] holds q | k | v, each split into H heads of hs = C/H columns;
 * head h of q starts at column h*hs, of k at C + h*hs, of v at 2C + h*hs, and
 * every row is 3C long, so each head is a strided [T,hs] matrix the sgemm
 * reads in place (no transposes, no copies).
 *
 * The mask (backend.h: fl_attn_mask; key ranges in attn_mask.h): queries go
 * in blocks of BLOCK rows, and block [i0,i1) only multiplies against the
 * keys its rows see, [lo(i0), hi(i1-1)). Causal: keys [0,i1), so the work
 * above the diagonal shrinks to the diagonal blocks (1.25x the exact count
 * at T = 4*BLOCK instead of 2x for a full T x T product); local: about
 * window + BLOCK keys per block, whatever T; padding: none past the
 * sequence's length. Entries the mask hides are exact zeros in P.
 *
 * Threading: one (b,h) pair per thread, each sgemm on its thread; with fewer
 * pairs than threads the pairs run in turn and oneDNN threads each product
 * (CPU_FOR_EACH: not inside an inactive parallel region).
 *
 * Decoding (kv_append, attention_decode): the KV cache keeps each head's keys
 * and values as contiguous [S,hs] matrices, k_cache/v_cache[B,H,S,hs]. One new
 * query per sequence makes attention two matrix-vector products per head
 * (scores = K q, out = Pᵀ V), too small for a GEMM call to pay: plain loops,
 * one (b,h) pair per thread.
 */
#include "cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "attn_mask.h" /* the mask's key ranges, shared with CUDA */
#include "attn_shapes.h" /* the ops' shape checks, shared with CUDA */

#define BLOCK 64

/* Zeroes a [rows, cols] block with row stride ld. */
static void zero_block(float *p, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t i = 0; i < rows; i++) memset(p + i * ld, 0, (size_t)cols * sizeof *p);
}

/* The mask of one sequence: the rules and its real keys. */
typedef struct seq_mask {
    fl_attn_rule r;
    int64_t len;
} seq_mask;

/* Sequence b's mask (NULL mask: causal, no padding). */
static seq_mask mask_of(const fl_attn_mask *mask, int64_t b, int64_t T) {
    seq_mask m = {{1, 0}, T};
    if (!mask) return m;
    m.r.causal = mask->causal, m.r.window = mask->window;
    if (mask->lengths) m.len = fl_attn_max(0, fl_attn_min(T, cpu_i32(mask->lengths)[b]));
    return m;
}

/* Row i of P over keys [0,T): softmax of the scores in the keys it sees,
   exact zeros elsewhere (all zeros when it sees none). */
static void masked_softmax_row(float *row, const seq_mask *m, int64_t i, int64_t T) {
    const int64_t lo = fl_attn_lo(m->r, i), hi = fl_attn_max(lo, fl_attn_hi(m->r, i, m->len));
    if (hi > lo) cpu_softmax_row(row + lo, row + lo, hi - lo);
    memset(row, 0, (size_t)lo * sizeof *row);
    memset(row + hi, 0, (size_t)(T - hi) * sizeof *row);
}

/* One head: P[T,T] = masked softmax(scale q kᵀ), o[T,hs] = P v. q, k, v
   rows are 3C apart, o rows C apart. Query block [i0,i1) multiplies only
   against its keys [klo,khi) (attn_mask.h). */
static void head_forward(const fl_attn_dims *d, const seq_mask *m, const float *q, float *P, float *o) {
    const int64_t T = d->T, ld = 3 * d->C, hs = d->hs;
    const float *k = q + d->C, *v = q + 2 * d->C;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int64_t i0 = 0; i0 < T; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < T ? i0 + BLOCK : T, n = i1 - i0;
        const int64_t klo = fl_attn_lo(m->r, i0), khi = fl_attn_hi(m->r, i1 - 1, m->len), w = khi - klo;
        if (w > 0) cpu_sgemm(0, 1, n, w, hs, scale, q + i0 * ld, ld, k + klo * ld, ld, 0.0f, P + i0 * T + klo, T);
        for (int64_t i = i0; i < i1; i++) masked_softmax_row(P + i * T, m, i, T);
        if (w > 0) cpu_sgemm(0, 0, n, hs, w, 1.0f, P + i0 * T + klo, T, v + klo * ld, ld, 0.0f, o + i0 * d->C, d->C);
        else zero_block(o + i0 * d->C, n, hs, d->C);
    }
}

/* The CPU keeps the probabilities: B*H*T*T values. */
int64_t cpu_attention_saved_numel(int64_t B, int64_t T, int64_t C, int n_head) {
    (void)C;
    return B * n_head * T * T;
}

/* out[B,T,C], att[B,H,T,T] (zeros where the mask hides a key) */
void cpu_attention(const fl_tensor *qkv, int n_head, const fl_attn_mask *mask, fl_tensor *out, fl_tensor *att) {
    fl_attn_dims d;
    CPU_CHECK(qkv->dtype == FL_F32 && fl_attn_dims_of(qkv, n_head, &d) && fl_attn_mask_ok(mask, d.B));
    CPU_CHECK(out->dtype == FL_F32 && fl_numel(out) == d.B * d.T * d.C);
    CPU_CHECK(att->dtype == FL_F32 && fl_numel(att) == d.B * d.H * d.T * d.T);
    const int64_t BH = d.B * d.H;
    const float *pq = cpu_f32(qkv);
    float *pa = cpu_f32(att), *po = cpu_f32(out);
    CPU_FOR_EACH(BH >= cpu_threads() && BH > 1, bh, BH, {
        const int64_t b = bh / d.H, h = bh % d.H;
        const seq_mask m = mask_of(mask, b, d.T);
        head_forward(&d, &m, pq + b * d.T * 3 * d.C + h * d.hs, pa + bh * d.T * d.T,
                     po + b * d.T * d.C + h * d.hs);
    });
}

/* dS rows [i0,i1) over the block's keys [klo, klo+w) (row stride w):
   overwritten from dP with the softmax gradient. P is exactly zero where
   the mask hides a key, so p (dP - dot) is zero there too. */
static void softmax_grad_rows(const float *P, float *dS, int64_t i0, int64_t i1, int64_t T, int64_t klo, int64_t w) {
    for (int64_t i = i0; i < i1; i++) {
        const float *p = P + i * T + klo;
        float *g = dS + (i - i0) * w, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < w; j++) dot += p[j] * g[j];
#pragma omp simd
        for (int64_t j = 0; j < w; j++) g[j] = p[j] * (g[j] - dot);
    }
}

/* One head backward. dq, dk, dv (rows 3C apart) are zeroed first, then
   per query block, over its keys [klo,khi):
     dP = dO vᵀ,  dS = softmax grad,  dq = scale dS k,
     dk += scale dSᵀ q,  dv += Pᵀ dO.
   dS is a [BLOCK, T] scratch of this thread. */
static void head_backward(const fl_attn_dims *d, const seq_mask *m, const float *q, const float *P, const float *dout,
                          float *dq, float *dS) {
    const int64_t T = d->T, C = d->C, ld = 3 * C, hs = d->hs;
    const float *k = q + C, *v = q + 2 * C;
    float *dk = dq + C, *dv = dq + 2 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    zero_block(dq, T, hs, ld);
    zero_block(dk, T, hs, ld);
    zero_block(dv, T, hs, ld);
    for (int64_t i0 = 0; i0 < T; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < T ? i0 + BLOCK : T, n = i1 - i0;
        const int64_t klo = fl_attn_lo(m->r, i0), w = fl_attn_hi(m->r, i1 - 1, m->len) - klo;
        if (w <= 0) continue; /* no key: dq stays zero */
        cpu_sgemm(0, 1, n, w, hs, 1.0f, dout + i0 * C, C, v + klo * ld, ld, 0.0f, dS, w);
        softmax_grad_rows(P, dS, i0, i1, T, klo, w);
        cpu_sgemm(0, 0, n, hs, w, scale, dS, w, k + klo * ld, ld, 0.0f, dq + i0 * ld, ld);
        cpu_sgemm(1, 0, w, hs, n, scale, dS, w, q + i0 * ld, ld, 1.0f, dk + klo * ld, ld);
        cpu_sgemm(1, 0, w, hs, n, 1.0f, P + i0 * T + klo, T, dout + i0 * C, C, 1.0f, dv + klo * ld, ld);
    }
}

/* dqkv[B,T,3C] overwritten from dout[B,T,C], qkv and the saved att (the
   probabilities make out unnecessary here) */
void cpu_attention_backward(const fl_tensor *qkv, const fl_tensor *out, const fl_tensor *att,
                            int n_head, const fl_attn_mask *mask, const fl_tensor *dout, fl_tensor *dqkv) {
    (void)out;
    fl_attn_dims d;
    CPU_CHECK(qkv->dtype == FL_F32 && fl_attn_dims_of(qkv, n_head, &d) && fl_attn_mask_ok(mask, d.B));
    CPU_CHECK(att->dtype == FL_F32 && fl_numel(att) == d.B * d.H * d.T * d.T);
    CPU_CHECK(dout->dtype == FL_F32 && fl_numel(dout) == d.B * d.T * d.C);
    CPU_CHECK(dqkv->dtype == FL_F32 && fl_numel(dqkv) == fl_numel(qkv));
    const int64_t BH = d.B * d.H, blk = d.T < BLOCK ? d.T : BLOCK;
    const int nt = cpu_threads();
    float *scratch = malloc((size_t)nt * (size_t)(blk * d.T) * sizeof *scratch);
    if (!scratch) {
        cpu_shape_error(__func__, "out of memory for the attention scratch");
        return;
    }
    const float *pq = cpu_f32(qkv), *pa = cpu_f32(att), *pdo = cpu_f32(dout);
    float *pdq = cpu_f32(dqkv);
    CPU_FOR_EACH(BH >= nt && BH > 1, bh, BH, {
        const int64_t b = bh / d.H, h = bh % d.H;
        const int64_t qo = b * d.T * 3 * d.C + h * d.hs;
        const seq_mask m = mask_of(mask, b, d.T);
        float *dS = scratch + (int64_t)omp_get_thread_num() * blk * d.T;
        head_backward(&d, &m, pq + qo, pa + bh * d.T * d.T, pdo + b * d.T * d.C + h * d.hs, pdq + qo, dS);
    });
    free(scratch);
}

/* ------------------------------------------------------------- decoding */

/* k_cache/v_cache[b,h,pos+i,:] = k/v of qkv row (b,i), for n = rows/B positions */
void cpu_kv_append(const fl_tensor *qkv, int64_t pos, fl_tensor *k_cache, fl_tensor *v_cache) {
    fl_kv_dims d;
    int64_t n;
    CPU_CHECK(fl_kv_append_dims(qkv, pos, k_cache, v_cache, &d, &n));
    const float *src = cpu_f32(qkv);
    float *pk = cpu_f32(k_cache), *pv = cpu_f32(v_cache);
    const size_t bytes = (size_t)d.hs * sizeof *pk;
#pragma omp parallel for collapse(2) schedule(static) if (d.B * n * d.C > CPU_PAR_MIN)
    for (int64_t b = 0; b < d.B; b++)
        for (int64_t h = 0; h < d.H; h++)
            for (int64_t i = 0; i < n; i++) {
                const float *k = src + (b * n + i) * 3 * d.C + d.C + h * d.hs;
                const int64_t at = ((b * d.H + h) * d.S + pos + i) * d.hs;
                memcpy(pk + at, k, bytes);
                memcpy(pv + at, k + d.C, bytes); /* v follows k by C columns */
            }
}

/* One head of one sequence: o[hs] = softmax(scale K q)ᵀ V over the t cached
   rows of K, V [t,hs]; s is t floats of scratch. */
static void head_decode(const float *q, const float *K, const float *V, int64_t t, int64_t hs, float *s,
                        float *o) {
    const float scale = 1.0f / sqrtf((float)hs);
    for (int64_t j = 0; j < t; j++) {
        const float *k = K + j * hs;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t e = 0; e < hs; e++) dot += q[e] * k[e];
        s[j] = scale * dot;
    }
    cpu_softmax_row(s, s, t);
    memset(o, 0, (size_t)hs * sizeof *o);
    for (int64_t j = 0; j < t; j++) {
        const float p = s[j], *v = V + j * hs;
#pragma omp simd
        for (int64_t e = 0; e < hs; e++) o[e] += p * v[e];
    }
}

/* out[B,C] from q (qkv[B,1,3C]'s first C columns) over cache positions
   [t0,t): all of them, or the last window */
void cpu_attention_decode(const fl_tensor *qkv, const fl_tensor *k_cache, const fl_tensor *v_cache,
                          int64_t t, int64_t window, fl_tensor *out) {
    fl_kv_dims d;
    CPU_CHECK(fl_kv_decode_dims(qkv, k_cache, v_cache, t, out, &d) && window >= 0);
    const int64_t t0 = fl_kv_window_start(t, window);
    t -= t0; /* from here: the keys attended, positions t0.. */
    const int64_t BH = d.B * d.H;
    const int parallel = BH > 1 && BH * t * d.hs >= CPU_PAR_MIN;
    const int nt = parallel ? cpu_threads() : 1;
    float *scratch = malloc((size_t)nt * (size_t)t * sizeof *scratch);
    if (!scratch) {
        cpu_shape_error(__func__, "out of memory for the attention scores");
        return;
    }
    const float *pq = cpu_f32(qkv), *pk = cpu_f32(k_cache), *pv = cpu_f32(v_cache);
    float *po = cpu_f32(out);
#pragma omp parallel for schedule(static) num_threads(nt) if (parallel)
    for (int64_t bh = 0; bh < BH; bh++) {
        const int64_t b = bh / d.H, h = bh % d.H, at = (bh * d.S + t0) * d.hs;
        head_decode(pq + b * 3 * d.C + h * d.hs, pk + at, pv + at, t, d.hs,
                    scratch + (int64_t)omp_get_thread_num() * t, po + b * d.C + h * d.hs);
    }
    free(scratch);
}
