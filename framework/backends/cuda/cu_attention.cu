/*
 * backends/cuda/cu_attention.cu — multi-head self-attention (causal,
 * bidirectional with padding, local: backend.h's fl_attn_mask), forward
 * and backward: the fused flash kernels (cu_flash_attention.cu) where they
 * apply — head sizes 32/64/128 in the tf32 and bf16 modes — and otherwise
 * cuBLAS strided-batched GEMMs around two row kernels, described here. The
 * choice depends only on the head size, the math mode and the GPU, so the
 * model sizes `saved` for the same path the ops then take.
 *
 * qkv[B,T,3C] holds q | k | v, each split into H heads of hs = C/H columns;
 * head h of q starts at column h*hs, of k at C + h*hs, of v at 2C + h*hs,
 * rows 3C apart. So for a fixed head, the B sequences are matrices [T,hs]
 * with row stride 3C, T*3C apart: one strided-batched GEMM per head covers
 * the whole batch, reading q, k, v in place (no permute copies). This path
 * keeps the probabilities att[B,H,T,T] for backward (fp32 mode: the exact
 * products; FFNLAB_CUDA_ATTENTION=gemm forces it for comparisons).
 *
 * Forward, per head h (batched over b):
 *     S = q kᵀ / sqrt(hs)                 into att[b,h]        (GEMM)
 *     P = masked softmax of S's rows      in place; zeros where the mask hides a key
 *     y = P v                             into out[b,:,h*hs..] (GEMM)
 * Backward, per head h, with dS a [B,T,T] scratch reused across heads:
 *     dP = dy vᵀ                                               (GEMM)
 *     dS = P (dP - rowsum(P dP))          in place
 *     dq = dS k / sqrt(hs), dk = dSᵀ q / sqrt(hs), dv = Pᵀ dy  (GEMMs, beta 0:
 *                                          every column of dqkv is written)
 * The GEMMs compute the full T x T products; the mask is applied by the
 * softmax row kernel (P is exactly zero where a key is hidden, so dS = P (dP
 * - rowsum) is too, and the products with them are exact; attn_mask.h
 * gives each row's keys).
 */
#include "attn_shapes.h" /* the ops' shape checks, shared with the CPU */
#include "cu_ops.h"

/* Row (b,h,i) of att[B,H,T,T]: softmax over the keys [lo,hi) row i sees
   in place, zeros elsewhere (all zeros when it sees none). A warp per row. */
static __global__ void k_masked_softmax(float *att, int64_t rows, int64_t H, int64_t T, fl_attn_rule rule,
                                        const int32_t *lengths) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int64_t i = row % T, len = lengths ? fl_attn_max(0, fl_attn_min(T, lengths[row / (H * T)])) : T;
    const int64_t lo = fl_attn_lo(rule, i), hi = fl_attn_hi(rule, i, len);
    float *p = att + row * T;
    float m = -INFINITY;
    for (int64_t j = lo + lane; j < hi; j += 32) m = fmaxf(m, p[j]);
    m = cu_warp_max(m);
    if (m == -INFINITY) m = 0.0f;
    float s = 0.0f;
    for (int64_t j = lo + lane; j < hi; j += 32) s += expf(p[j] - m);
    s = cu_warp_sum(s);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int64_t j = lane; j < T; j += 32) p[j] = j >= lo && j < hi ? expf(p[j] - m) * inv : 0.0f;
}

/* The mask's rules and lengths as the kernels take them (NULL: causal). */
static fl_attn_rule rule_of(const fl_attn_mask *mask) {
    fl_attn_rule r = {1, 0};
    if (mask) r.causal = mask->causal, r.window = mask->window;
    return r;
}

static const int32_t *lengths_of(const fl_attn_mask *mask) {
    return mask && mask->lengths ? cu_i32(mask->lengths) : NULL;
}

static int uses_flash(int64_t C, int n_head) { return C % n_head == 0 && cu_flash_supported(C / n_head); }

/* flash: one log-sum-exp per row [B,H,T]; else the probabilities [B,H,T,T] */
int64_t cu_attention_saved_numel(int64_t B, int64_t T, int64_t C, int n_head) {
    return uses_flash(C, n_head) ? B * n_head * T : B * n_head * T * T;
}

/* out[B,T,C], att[B,H,T,T] (zeros where the mask hides a key) */
static void gemm_forward(const fl_attn_dims &d, const fl_tensor *qkv, const fl_attn_mask *mask, fl_tensor *out,
                         fl_tensor *att) {
    const int64_t T = d.T, C = d.C, H = d.H, hs = d.hs, TT = T * T;
    const float scale = 1.0f / sqrtf((float)hs);
    const float *q = cu_f32(qkv);
    float *A = cu_f32(att), *y = cu_f32(out);
    /* S[b,h] = scale q kᵀ: row-major [T,T] = [T,hs] [T,hs]ᵀ */
    for (int64_t h = 0; h < H; h++)
        cu_gemm_rm(0, 1, T, T, hs, scale, q + h * hs, 3 * C, T * 3 * C, q + C + h * hs, 3 * C, T * 3 * C, 0.0f,
                   A + h * TT, T, H * TT, d.B);
    const int64_t rows = d.B * H * T;
    CU_LAUNCH(cu_row_blocks(rows, CU_THREADS / 32), CU_THREADS, 0, k_masked_softmax)(A, rows, H, T, rule_of(mask),
                                                                                       lengths_of(mask));
    if (!CU_LAUNCHED("k_masked_softmax")) return;
    /* y[b,:,h] = P v: row-major [T,hs] = [T,T] [T,hs], rows C apart */
    for (int64_t h = 0; h < H; h++)
        cu_gemm_rm(0, 0, T, hs, T, 1.0f, A + h * TT, T, H * TT, q + 2 * C + h * hs, 3 * C, T * 3 * C, 0.0f,
                   y + h * hs, C, T * C, d.B);
}

/* dS rows (B*T of them, head h): dS = P (dP - sum_j P dP). P is exactly
   zero where the mask hides a key, so dS is too: no mask needed here. */
static __global__ void k_softmax_grad(const float *att, float *dS, int64_t B, int64_t H, int64_t h, int64_t T) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= B * T) return;
    const int64_t b = row / T, i = row % T;
    const float *p = att + ((b * H + h) * T + i) * T;
    float *g = dS + row * T;
    float dot = 0.0f;
    for (int64_t j = lane; j < T; j += 32) dot += p[j] * g[j];
    dot = cu_warp_sum(dot);
    for (int64_t j = lane; j < T; j += 32) g[j] = p[j] * (g[j] - dot);
}

/* dqkv[B,T,3C] overwritten from dout[B,T,C], qkv and the saved att */
static void gemm_backward(const fl_attn_dims &d, const fl_tensor *qkv, const fl_tensor *att, const fl_tensor *dout,
                          fl_tensor *dqkv) {
    const int64_t B = d.B, T = d.T, C = d.C, H = d.H, hs = d.hs, TT = T * T;
    const float scale = 1.0f / sqrtf((float)hs);
    float *dS = (float *)cu_scratch(CU_SLOT_ATTENTION, (size_t)(B * TT) * sizeof(float));
    if (!dS) return;
    const float *q = cu_f32(qkv), *P = cu_f32(att), *dy = cu_f32(dout);
    float *dq = cu_f32(dqkv);
    for (int64_t h = 0; h < H; h++) {
        const float *qh = q + h * hs, *kh = q + C + h * hs, *vh = q + 2 * C + h * hs;
        const float *Ph = P + h * TT, *dyh = dy + h * hs;
        float *dqh = dq + h * hs, *dkh = dq + C + h * hs, *dvh = dq + 2 * C + h * hs;
        /* dP = dy vᵀ: [T,T] = [T,hs] [T,hs]ᵀ */
        cu_gemm_rm(0, 1, T, T, hs, 1.0f, dyh, C, T * C, vh, 3 * C, T * 3 * C, 0.0f, dS, T, TT, B);
        CU_LAUNCH(cu_row_blocks(B * T, CU_THREADS / 32), CU_THREADS, 0, k_softmax_grad)(P, dS, B, H, h, T);
        if (!CU_LAUNCHED("k_softmax_grad")) return;
        /* dq = scale dS k: [T,hs] = [T,T] [T,hs] */
        cu_gemm_rm(0, 0, T, hs, T, scale, dS, T, TT, kh, 3 * C, T * 3 * C, 0.0f, dqh, 3 * C, T * 3 * C, B);
        /* dk = scale dSᵀ q: [T,hs] = [T,T]ᵀ [T,hs] */
        cu_gemm_rm(1, 0, T, hs, T, scale, dS, T, TT, qh, 3 * C, T * 3 * C, 0.0f, dkh, 3 * C, T * 3 * C, B);
        /* dv = Pᵀ dy: [T,hs] = [T,T]ᵀ [T,hs] */
        cu_gemm_rm(1, 0, T, hs, T, 1.0f, Ph, T, H * TT, dyh, C, T * C, 0.0f, dvh, 3 * C, T * 3 * C, B);
    }
}

void cu_attention(const fl_tensor *qkv, int n_head, const fl_attn_mask *mask, fl_tensor *out, fl_tensor *saved) {
    fl_attn_dims d;
    CU_CHECK(qkv->dtype == FL_F32 && fl_attn_dims_of(qkv, n_head, &d) && fl_attn_mask_ok(mask, d.B));
    CU_CHECK(out->dtype == FL_F32 && fl_numel(out) == d.B * d.T * d.C);
    CU_CHECK(saved->dtype == FL_F32 && fl_numel(saved) == cu_attention_saved_numel(d.B, d.T, d.C, n_head));
    if (d.B * d.T == 0) return;
    if (uses_flash(d.C, n_head))
        cu_flash_forward(cu_f32(qkv), d.B, d.T, d.C, n_head, rule_of(mask), lengths_of(mask), cu_f32(out),
                         cu_f32(saved));
    else gemm_forward(d, qkv, mask, out, saved);
}

void cu_attention_backward(const fl_tensor *qkv, const fl_tensor *out, const fl_tensor *saved, int n_head,
                           const fl_attn_mask *mask, const fl_tensor *dout, fl_tensor *dqkv) {
    fl_attn_dims d;
    CU_CHECK(qkv->dtype == FL_F32 && fl_attn_dims_of(qkv, n_head, &d) && fl_attn_mask_ok(mask, d.B));
    CU_CHECK(out->dtype == FL_F32 && fl_numel(out) == d.B * d.T * d.C);
    CU_CHECK(saved->dtype == FL_F32 && fl_numel(saved) == cu_attention_saved_numel(d.B, d.T, d.C, n_head));
    CU_CHECK(dout->dtype == FL_F32 && fl_numel(dout) == d.B * d.T * d.C);
    CU_CHECK(dqkv->dtype == FL_F32 && fl_numel(dqkv) == fl_numel(qkv));
    if (d.B * d.T == 0) return;
    if (uses_flash(d.C, n_head))
        cu_flash_backward(cu_f32(qkv), cu_f32(out), cu_f32(saved), cu_f32(dout), d.B, d.T, d.C, n_head,
                          rule_of(mask), lengths_of(mask), cu_f32(dqkv));
    else gemm_backward(d, qkv, saved, dout, dqkv);
}
