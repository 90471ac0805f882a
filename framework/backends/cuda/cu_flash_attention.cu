/*
 * backends/cuda/cu_flash_attention.cu — fused masked attention (causal,
 * bidirectional with padding, local: backend.h's fl_attn_mask) on tensor
 * cores (FlashAttention-2's algorithm): forward and backward without the
 * T x T probability matrix in device memory. Forward keeps one log-sum-exp
 * per row; backward recomputes the probabilities tile by tile from it.
 *
 * Layout as in cu_attention.cu: qkv[B,T,3C] holds q | k | v, head h of q at
 * columns h*hs.., of k at C + h*hs, of v at 2C + h*hs; y[B,T,C];
 * lse[B,H,T]. One thread block of 4 warps works on one (b, h) and one tile
 * of 64 rows (queries, or keys in dK/dV); each warp owns 16 of them. The
 * products run on WMMA fragments (16x16 tiles) in the backend's precision
 * (tf32: 16x16x8 on fp32 tiles; bf16: 16x16x16 on bf16 tiles), always with
 * fp32 accumulation; softmax, the running max/sum and every reduction are
 * fp32. Fragments are only loaded from and stored to shared memory, so the
 * code never depends on their register layout; per-row work between products
 * is done by lane pairs (2 lanes per row, even/odd columns).
 *
 *   forward, per query tile i, over the key tiles its rows see:
 *     S = q kᵀ (scaled), m' = max(m, rowmax S), P = exp(S - m'),
 *     l = l e^(m-m') + rowsum P,  O = O e^(m-m') + P v;   y = O / l,
 *     lse = m + log l
 *   backward, with D = rowsum(dy ∘ y) (k_rowdot) and P = exp(S - lse):
 *     dP = dy vᵀ, dS = P ∘ (dP - D);
 *     dV = Σ_i Pᵀ dy, dK = scale Σ_i dSᵀ q   (a block per key tile, over the
 *                                           query tiles that see it)
 *     dQ = scale Σ_j dS k                   (a block per query tile, over
 *                                           its key tiles)
 * Two backward kernels instead of one with atomics: every sum has a fixed
 * order, so runs repeat bit for bit (the backend's promise), at the price
 * of computing S and dP twice.
 *
 * The mask: a key the query does not see (attn_mask.h: fl_attn_sees; and
 * rows past T) gets P = 0, and whole tiles no row of a block sees are
 * skipped: [lo(first row), hi(last row)) bounds the key tiles of a query
 * tile, [qlo(first key), qhi(last real key)) the query tiles of a key tile.
 * So a local layer costs about window + 64 keys per query tile, whatever T,
 * and padding costs nothing past a sequence's length. A row's running max
 * stays -inf until its first seen key (alpha is then 1, not exp(-inf +
 * inf)); a row that sees no key at all gets y = 0 and lse = +inf, so its
 * backward probabilities exp(S - lse) are 0.
 */
#include "cu_ops.h"

#ifndef FFNLAB_CUDA_EMULATE /* the emulation has its own WMMA and bf16 */
#include <cuda_bf16.h>
#include <mma.h>
#endif

using namespace nvcuda;

#define FA_TILE 64  /* rows of a query or key tile */
#define FA_THREADS 128

/* The tensor-core element: how tiles are stored in shared memory and
   which WMMA shape multiplies them. PAD keeps rows off the same banks while
   the leading dimensions stay the multiples WMMA needs (16 bytes). */
struct fa_tf32 {
    typedef float elem;
    typedef wmma::precision::tf32 frag;
    static constexpr int K = 8, PAD = 4;
    static __device__ __forceinline__ elem from(float x) { return x; }
    template <class F> static __device__ __forceinline__ void round(F &f) {
        for (int i = 0; i < f.num_elements; i++) f.x[i] = wmma::__float_to_tf32(f.x[i]);
    }
};
struct fa_bf16 {
    typedef __nv_bfloat16 elem;
    typedef __nv_bfloat16 frag;
    static constexpr int K = 16, PAD = 8;
    static __device__ __forceinline__ elem from(float x) { return __float2bfloat16_rn(x); }
    template <class F> static __device__ __forceinline__ void round(F &) {}
};

/* Shared memory, in bytes from the start. Forward: three element tiles
   [64][LDE] (q, k, v), the f32 scores [64][LDS], the element probabilities
   [64][LDP], the f32 output accumulator [64][LDO], then the running max and
   sum per row. Backward: four element tiles (q, dy, k, v), two f32 tiles
   (S, dP), two element tiles (P, dS), then lse and D per row. */
template <class M, int HS> struct fa_smem {
    typedef typename M::elem E;
    static constexpr int LDE = HS + M::PAD, LDS = FA_TILE + 4, LDP = FA_TILE + M::PAD, LDO = HS + 4;
    static constexpr size_t TE = (size_t)FA_TILE * LDE * sizeof(E), TS = (size_t)FA_TILE * LDS * 4,
                            TP = (size_t)FA_TILE * LDP * sizeof(E), TO = (size_t)FA_TILE * LDO * 4,
                            TR = 2 * FA_TILE * 4;
    static constexpr size_t F_S = 3 * TE, F_P = F_S + TS, F_O = F_P + TP, F_ROWS = F_O + TO, FWD = F_ROWS + TR;
    static constexpr size_t B_S = 4 * TE, B_P = B_S + 2 * TS, B_ROWS = B_P + 2 * TP, BWD = B_ROWS + TR;
};

/* dst[64][ld] = src rows r < rows (row stride lds), zeros below; as elements. */
template <class M, int HS>
static __device__ void fa_load(typename M::elem *dst, int ld, const float *src, int64_t lds, int rows) {
    for (int i = threadIdx.x; i < FA_TILE * HS; i += FA_THREADS) {
        const int r = i / HS, c = i % HS;
        dst[r * ld + c] = M::from(r < rows ? src[(int64_t)r * lds + c] : 0.0f);
    }
}

/* One warp: C[16][64] = A[16][HS] B[64][HS]ᵀ (A, B element tiles, C f32). */
template <class M, int HS>
static __device__ void fa_abt(const typename M::elem *A, int lda, const typename M::elem *B, int ldb, float *C,
                              int ldc) {
    for (int n = 0; n < FA_TILE / 16; n++) {
        wmma::fragment<wmma::accumulator, 16, 16, M::K, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < HS; k += M::K) {
            wmma::fragment<wmma::matrix_a, 16, 16, M::K, typename M::frag, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, M::K, typename M::frag, wmma::col_major> b;
            wmma::load_matrix_sync(a, A + k, lda);
            wmma::load_matrix_sync(b, B + n * 16 * ldb + k, ldb); /* Bᵀ: column-major B */
            M::round(a), M::round(b);
            wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(C + n * 16, acc, ldc, wmma::mem_row_major);
    }
}

/* The 16 x HS accumulator of one warp, HS/16 fragments. */
template <class M, int HS> struct fa_acc {
    wmma::fragment<wmma::accumulator, 16, 16, M::K, float> f[HS / 16];
    __device__ void zero() {
        for (int n = 0; n < HS / 16; n++) wmma::fill_fragment(f[n], 0.0f);
    }
    __device__ void load(const float *src, int ld) {
        for (int n = 0; n < HS / 16; n++) wmma::load_matrix_sync(f[n], src + n * 16, ld, wmma::mem_row_major);
    }
    /* src[16][HS] = scale * acc */
    __device__ void store(float *dst, int ld, float scale) {
        for (int n = 0; n < HS / 16; n++) {
            for (int i = 0; i < f[n].num_elements; i++) f[n].x[i] *= scale;
            wmma::store_matrix_sync(dst + n * 16, f[n], ld, wmma::mem_row_major);
        }
    }
    /* acc += A[16][64] B[64][HS] (element tiles) */
    __device__ void mma(const typename M::elem *A, int lda, const typename M::elem *B, int ldb) {
        for (int k = 0; k < FA_TILE; k += M::K) {
            wmma::fragment<wmma::matrix_a, 16, 16, M::K, typename M::frag, wmma::row_major> a;
            wmma::load_matrix_sync(a, A + k, lda);
            M::round(a);
            for (int n = 0; n < HS / 16; n++) {
                wmma::fragment<wmma::matrix_b, 16, 16, M::K, typename M::frag, wmma::row_major> b;
                wmma::load_matrix_sync(b, B + k * ldb + n * 16, ldb);
                M::round(b);
                wmma::mma_sync(f[n], a, b, f[n]);
            }
        }
    }
};

/* Writes a block's [64][HS] f32 result (stage, row stride HS) to rows
   r < rows of dst (row stride ldd). */
template <int HS>
static __device__ void fa_write(float *dst, int64_t ldd, const float *stage, int rows) {
    for (int i = threadIdx.x; i < FA_TILE * HS; i += FA_THREADS) {
        const int r = i / HS, c = i % HS;
        if (r < rows) dst[(int64_t)r * ldd + c] = stage[i];
    }
}

static __device__ __forceinline__ int fa_min(int a, int b) { return a < b ? a : b; }

/* Real keys of sequence b: lengths[b] clamped to [0,T], or T. */
static __device__ __forceinline__ int fa_len(const int32_t *lengths, int b, int T) {
    return lengths ? (int)fl_attn_max(0, fl_attn_min(T, lengths[b])) : T;
}

/* The 64-aligned start of the tile holding x. */
static __device__ __forceinline__ int fa_tile_floor(int64_t x) { return (int)(x - x % FA_TILE); }

/* grid (query tiles, B*H); y[B,T,C], lse[B,H,T] */
template <class M, int HS>
static __global__ void __launch_bounds__(FA_THREADS)
    k_flash_forward(const float *qkv, int T, int C, int H, float scale, fl_attn_rule rule, const int32_t *lengths,
                    float *y, float *lse) {
    typedef fa_smem<M, HS> L;
    typedef typename M::elem E;
    CU_DYNAMIC_SMEM(smem);
    E *Qs = (E *)smem, *Ks = Qs + FA_TILE * L::LDE, *Vs = Ks + FA_TILE * L::LDE;
    float *S = (float *)(smem + L::F_S), *O = (float *)(smem + L::F_O);
    E *P = (E *)(smem + L::F_P);
    float *row_m = (float *)(smem + L::F_ROWS), *row_l = row_m + FA_TILE;
    const int qt = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t ld = 3 * (int64_t)C;
    const float *base = qkv + (int64_t)b * T * ld + (int64_t)h * HS;
    const int q0 = qt * FA_TILE, len = fa_len(lengths, b, T);
    const int k_end = (int)fl_attn_hi(rule, fa_min(q0 + FA_TILE, T) - 1, len); /* keys of this tile's rows */
    fa_load<M, HS>(Qs, L::LDE, base + (int64_t)q0 * ld, ld, fa_min(FA_TILE, T - q0));
    for (int i = threadIdx.x; i < FA_TILE * L::LDO; i += FA_THREADS) O[i] = 0.0f;
    if (threadIdx.x < FA_TILE) row_m[threadIdx.x] = -INFINITY, row_l[threadIdx.x] = 0.0f;
    /* this lane's row of the softmax step and its column parity */
    const int r = warp * 16 + (lane >> 1), half = lane & 1, qi = q0 + r;
    float *Sw = S + warp * 16 * L::LDS, *Ow = O + warp * 16 * L::LDO;
    E *Pw = P + warp * 16 * L::LDP;
    fa_acc<M, HS> acc;
    for (int k0 = fa_tile_floor(fl_attn_lo(rule, q0)); k0 < k_end; k0 += FA_TILE) {
        __syncthreads(); /* the last tile's k, v are read; the init is done */
        fa_load<M, HS>(Ks, L::LDE, base + C + (int64_t)k0 * ld, ld, fa_min(FA_TILE, T - k0));
        fa_load<M, HS>(Vs, L::LDE, base + 2 * C + (int64_t)k0 * ld, ld, fa_min(FA_TILE, T - k0));
        __syncthreads();
        fa_abt<M, HS>(Qs + warp * 16 * L::LDE, L::LDE, Ks, L::LDE, Sw, L::LDS);
        __syncwarp();
        const float *srow = S + r * L::LDS;
        float mx = -INFINITY;
        for (int c = half; c < FA_TILE; c += 2)
            if (qi < T && fl_attn_sees(rule, qi, k0 + c, len)) mx = fmaxf(mx, srow[c] * scale);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_old = row_m[r], m_new = fmaxf(m_old, mx);
        const float alpha = m_new == -INFINITY ? 1.0f : expf(m_old - m_new); /* no key seen yet: nothing to scale */
        float sum = 0.0f;
        for (int c = half; c < FA_TILE; c += 2) {
            const float p = qi < T && fl_attn_sees(rule, qi, k0 + c, len) ? expf(srow[c] * scale - m_new) : 0.0f;
            P[r * L::LDP + c] = M::from(p);
            sum += p;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        for (int c = half; c < HS; c += 2) O[r * L::LDO + c] *= alpha;
        __syncwarp(); /* both lanes have read row_m[r], row_l[r] */
        if (!half) row_m[r] = m_new, row_l[r] = row_l[r] * alpha + sum;
        __syncwarp(); /* P and the rescaled O rows are written */
        acc.load(Ow, L::LDO);
        acc.mma(Pw, L::LDP, Vs, L::LDE);
        acc.store(Ow, L::LDO, 1.0f);
        __syncwarp();
    }
    if (qi < T) {
        const float l = row_l[r];
        float *yr = y + ((int64_t)b * T + qi) * C + (int64_t)h * HS;
        for (int c = half; c < HS; c += 2) yr[c] = l > 0.0f ? O[r * L::LDO + c] / l : 0.0f;
        if (!half) lse[(int64_t)bh * T + qi] = l > 0.0f ? row_m[r] + logf(l) : INFINITY;
    }
}

/* D[b,h,t] = sum_c dy[b,t,h*hs+c] y[b,t,h*hs+c]: a warp per (b, t, h). */
static __global__ void k_rowdot(const float *dy, const float *y, int64_t BT, int64_t T, int64_t C, int H, int hs,
                                float *D) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= BT * H) return;
    const int64_t bt = row / H, h = row % H;
    const float *a = dy + bt * C + h * hs, *o = y + bt * C + h * hs;
    float s = 0.0f;
    for (int c = lane; c < hs; c += 32) s += a[c] * o[c];
    s = cu_warp_sum(s);
    if (!lane) D[((bt / T) * H + h) * T + bt % T] = s;
}

/* Per lane pair: P = exp(scale S - lse) (masked) and dS = P (dP - D) for
   row r of the block's [64][64] tiles S and dP, even or odd columns (half).
   Row r stands for index `fixed`, column c for `moving0 + c`; query_fixed
   says whether the rows are queries (dQ: lse and D indexed by row) or keys
   (dK/dV: by column). P may be NULL (dQ needs only dS). */
template <class M>
static __device__ void fa_probs(const float *S, const float *dP, int lds, int r, int half, int fixed, int moving0,
                                int query_fixed, int T, fl_attn_rule rule, int len, float scale, const float *lse,
                                const float *D, typename M::elem *P, typename M::elem *dS, int ldp) {
    for (int c = half; c < FA_TILE; c += 2) {
        const int other = moving0 + c;
        const int q = query_fixed ? fixed : other, key = query_fixed ? other : fixed;
        const int st = query_fixed ? r : c; /* whose lse and D */
        float p = 0.0f, ds = 0.0f;
        if (q < T && fl_attn_sees(rule, q, key, len)) {
            p = expf(S[r * lds + c] * scale - lse[st]);
            ds = p * (dP[r * lds + c] - D[st]);
        }
        if (P) P[r * ldp + c] = M::from(p);
        dS[r * ldp + c] = M::from(ds);
    }
}

/* A backward block's shared tiles and its head's rows: q of head (b, h) at
   qh, k at qh + C, v at qh + 2C (rows ld = 3C apart), dy rows C apart,
   dqkv laid out as qkv. */
template <class M, int HS> struct fa_bwd {
    typedef fa_smem<M, HS> L;
    typedef typename M::elem E;
    E *q, *dy, *k, *v, *P, *dS;
    float *S, *dP, *lse, *D; /* lse, D: of the query tile's rows */
    const float *qh, *dyh, *lse_g, *D_g;
    float *dqh;
    int64_t ld, bh;
    int T, C, len;             /* len: the sequence's real keys */
    fl_attn_rule rule;
    /* this lane's row of the per-row steps, its column parity, its warp's first row */
    int r, half, w16;

    __device__ fa_bwd(unsigned char *smem, const float *qkv, const float *dyp, const float *lse_, const float *D_,
                      float *dqkv, int T_, int C_, int H, fl_attn_rule rule_, const int32_t *lengths)
        : lse_g(lse_), D_g(D_), T(T_), C(C_), rule(rule_) {
        q = (E *)smem, dy = q + FA_TILE * L::LDE, k = dy + FA_TILE * L::LDE, v = k + FA_TILE * L::LDE;
        S = (float *)(smem + L::B_S), dP = S + FA_TILE * L::LDS;
        P = (E *)(smem + L::B_P), dS = P + FA_TILE * L::LDP;
        lse = (float *)(smem + L::B_ROWS), D = lse + FA_TILE;
        bh = blockIdx.y, ld = 3 * (int64_t)C;
        const int64_t b = bh / H, h = bh % H;
        len = fa_len(lengths, (int)b, T);
        qh = qkv + b * T * ld + h * HS, dqh = dqkv + b * T * ld + h * HS, dyh = dyp + b * T * C + h * HS;
        r = (threadIdx.x >> 5) * 16 + ((threadIdx.x & 31) >> 1), half = threadIdx.x & 1, w16 = (threadIdx.x >> 5) * 16;
    }
    /* q, dy, lse and D of the query tile at q0 */
    __device__ void load_queries(int q0) {
        const int n = fa_min(FA_TILE, T - q0);
        fa_load<M, HS>(q, L::LDE, qh + q0 * ld, ld, n);
        fa_load<M, HS>(dy, L::LDE, dyh + (int64_t)q0 * C, C, n);
        if (threadIdx.x < FA_TILE) {
            const int i = q0 + threadIdx.x;
            lse[threadIdx.x] = i < T ? lse_g[bh * T + i] : 0.0f;
            D[threadIdx.x] = i < T ? D_g[bh * T + i] : 0.0f;
        }
    }
    /* k and v of the key tile at k0 */
    __device__ void load_keys(int k0) {
        const int n = fa_min(FA_TILE, T - k0);
        fa_load<M, HS>(k, L::LDE, qh + C + k0 * ld, ld, n);
        fa_load<M, HS>(v, L::LDE, qh + 2 * C + k0 * ld, ld, n);
    }
    /* This warp's rows of S = A Bᵀ and dP = A2 B2ᵀ (A, A2 the block's row tiles) */
    __device__ void products(const E *A, const E *B, const E *A2, const E *B2) {
        fa_abt<M, HS>(A + w16 * L::LDE, L::LDE, B, L::LDE, S + w16 * L::LDS, L::LDS);
        fa_abt<M, HS>(A2 + w16 * L::LDE, L::LDE, B2, L::LDE, dP + w16 * L::LDS, L::LDS);
        __syncwarp();
    }
    /* Rows row0.. of a [64][HS] result: acc (scaled) staged through the q and
       dy tiles, then written to column `col` of dqkv. The caller's tiles are
       all read once this is called. */
    __device__ void write(fa_acc<M, HS> &acc, float scale, int row0, int64_t col) {
        float *stage = (float *)q;
        __syncthreads();
        acc.store(stage + w16 * HS, HS, scale);
        __syncthreads();
        fa_write<HS>(dqh + row0 * ld + col, ld, stage, fa_min(FA_TILE, T - row0));
    }
};

/* grid (key tiles, B*H): dK, dV of one key tile, over the query tiles
   that see its keys (none for a tile of padding: zeros). */
template <class M, int HS>
static __global__ void __launch_bounds__(FA_THREADS)
    k_flash_dkv(const float *qkv, const float *dy, const float *lse, const float *D, int T, int C, int H,
                float scale, fl_attn_rule rule, const int32_t *lengths, float *dqkv) {
    CU_DYNAMIC_SMEM(smem);
    fa_bwd<M, HS> t(smem, qkv, dy, lse, D, dqkv, T, C, H, rule, lengths);
    typedef fa_smem<M, HS> L;
    const int k0 = blockIdx.x * FA_TILE, k_last = fa_min(k0 + FA_TILE, t.len) - 1; /* the last real key */
    const int q_end = k_last < k0 ? 0 : (int)fl_attn_qhi(rule, k_last, t.len, T);
    t.load_keys(k0);
    fa_acc<M, HS> dK, dV;
    dK.zero(), dV.zero();
    for (int q0 = fa_tile_floor(fl_attn_qlo(rule, k0)); q0 < q_end; q0 += FA_TILE) {
        __syncthreads(); /* the last query tile is read */
        t.load_queries(q0);
        __syncthreads();
        t.products(t.k, t.q, t.v, t.dy); /* Sᵀ[key][q], dPᵀ[key][q] */
        fa_probs<M>(t.S, t.dP, L::LDS, t.r, t.half, k0 + t.r, q0, 0, T, rule, t.len, scale, t.lse, t.D, t.P, t.dS,
                    L::LDP);
        __syncwarp();
        dV.mma(t.P + t.w16 * L::LDP, L::LDP, t.dy, L::LDE); /* dV += Pᵀ dy */
        dK.mma(t.dS + t.w16 * L::LDP, L::LDP, t.q, L::LDE); /* dK += dSᵀ q */
    }
    t.write(dK, scale, k0, C);
    t.write(dV, 1.0f, k0, 2 * (int64_t)C);
}

/* grid (query tiles, B*H): dQ of one query tile, over the key tiles its
   rows see. */
template <class M, int HS>
static __global__ void __launch_bounds__(FA_THREADS)
    k_flash_dq(const float *qkv, const float *dy, const float *lse, const float *D, int T, int C, int H,
               float scale, fl_attn_rule rule, const int32_t *lengths, float *dqkv) {
    CU_DYNAMIC_SMEM(smem);
    fa_bwd<M, HS> t(smem, qkv, dy, lse, D, dqkv, T, C, H, rule, lengths);
    typedef fa_smem<M, HS> L;
    const int q0 = blockIdx.x * FA_TILE, k_end = (int)fl_attn_hi(rule, fa_min(q0 + FA_TILE, T) - 1, t.len);
    t.load_queries(q0);
    fa_acc<M, HS> dQ;
    dQ.zero();
    for (int k0 = fa_tile_floor(fl_attn_lo(rule, q0)); k0 < k_end; k0 += FA_TILE) {
        __syncthreads(); /* the last key tile is read; the query tile is loaded */
        t.load_keys(k0);
        __syncthreads();
        t.products(t.q, t.k, t.dy, t.v); /* S[q][key], dP[q][key] */
        fa_probs<M>(t.S, t.dP, L::LDS, t.r, t.half, q0 + t.r, k0, 1, T, rule, t.len, scale, t.lse, t.D, NULL, t.dS,
                    L::LDP);
        __syncwarp();
        dQ.mma(t.dS + t.w16 * L::LDP, L::LDP, t.k, L::LDE); /* dQ += dS k */
    }
    t.write(dQ, scale, q0, 0);
}

/* ------------------------------------------------------------- launches */

/* Shared memory above 48 KiB must be asked for per kernel, once: the
   flash kernels of one (M, HS) ask through one call. */
template <class M, int HS> static int fa_prepare(void) {
    static int ready; /* per instantiation */
    typedef fa_smem<M, HS> L;
    if (!ready)
        ready = CU_OK(cudaFuncSetAttribute(k_flash_forward<M, HS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)L::FWD)) &&
                CU_OK(cudaFuncSetAttribute(k_flash_dkv<M, HS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)L::BWD)) &&
                CU_OK(cudaFuncSetAttribute(k_flash_dq<M, HS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)L::BWD));
    return ready;
}

template <class M, int HS>
static void forward_hs(const float *qkv, int64_t B, int64_t T, int64_t C, int H, fl_attn_rule rule,
                       const int32_t *lengths, float *y, float *lse) {
    typedef fa_smem<M, HS> L;
    if (!fa_prepare<M, HS>()) return;
    dim3 grid((unsigned)((T + FA_TILE - 1) / FA_TILE), (unsigned)(B * H));
    CU_LAUNCH(grid, FA_THREADS, L::FWD, k_flash_forward<M, HS>)(qkv, (int)T, (int)C, H, 1.0f / sqrtf((float)HS),
                                                                rule, lengths, y, lse);
    CU_LAUNCHED("k_flash_forward");
}

template <class M, int HS>
static void backward_hs(const float *qkv, const float *lse, const float *D, const float *dy, int64_t B, int64_t T,
                        int64_t C, int H, fl_attn_rule rule, const int32_t *lengths, float *dqkv) {
    typedef fa_smem<M, HS> L;
    if (!fa_prepare<M, HS>()) return;
    dim3 grid((unsigned)((T + FA_TILE - 1) / FA_TILE), (unsigned)(B * H));
    const float scale = 1.0f / sqrtf((float)HS);
    CU_LAUNCH(grid, FA_THREADS, L::BWD, k_flash_dkv<M, HS>)(qkv, dy, lse, D, (int)T, (int)C, H, scale, rule, lengths,
                                                            dqkv);
    if (!CU_LAUNCHED("k_flash_dkv")) return;
    CU_LAUNCH(grid, FA_THREADS, L::BWD, k_flash_dq<M, HS>)(qkv, dy, lse, D, (int)T, (int)C, H, scale, rule, lengths,
                                                           dqkv);
    CU_LAUNCHED("k_flash_dq");
}

template <class M, int HS> static size_t smem_max(void) {
    return fa_smem<M, HS>::FWD > fa_smem<M, HS>::BWD ? fa_smem<M, HS>::FWD : fa_smem<M, HS>::BWD;
}

template <class M> static size_t smem_need(int64_t hs) {
    return hs == 32 ? smem_max<M, 32>() : hs == 64 ? smem_max<M, 64>() : hs == 128 ? smem_max<M, 128>() : 0;
}

/* The flash kernels exist for head sizes 32, 64 and 128 in the tensor-core
   modes (fp32 mode keeps the exact cuBLAS products) and need their shared
   memory to fit this GPU's per-block limit (a tf32 head of 128 needs 200
   KiB: an H100 has it, an A100 does not). */
int cu_flash_supported(int64_t hs) {
    if (g_cu.attention_gemm || g_cu.math == CU_MATH_FP32) return 0;
    const size_t need = g_cu.math == CU_MATH_BF16 ? smem_need<fa_bf16>(hs) : smem_need<fa_tf32>(hs);
    return need > 0 && need <= (size_t)g_cu.prop.sharedMemPerBlockOptin;
}

#define FA_DISPATCH(M, fn, args)                  \
    switch (hs) {                                 \
    case 32: fn<M, 32> args; break;               \
    case 64: fn<M, 64> args; break;               \
    default: fn<M, 128> args; break;              \
    }

void cu_flash_forward(const float *qkv, int64_t B, int64_t T, int64_t C, int H, fl_attn_rule rule,
                      const int32_t *lengths, float *y, float *lse) {
    const int64_t hs = C / H;
    if (g_cu.math == CU_MATH_BF16) FA_DISPATCH(fa_bf16, forward_hs, (qkv, B, T, C, H, rule, lengths, y, lse))
    else FA_DISPATCH(fa_tf32, forward_hs, (qkv, B, T, C, H, rule, lengths, y, lse))
}

void cu_flash_backward(const float *qkv, const float *y, const float *lse, const float *dy, int64_t B, int64_t T,
                       int64_t C, int H, fl_attn_rule rule, const int32_t *lengths, float *dqkv) {
    const int64_t hs = C / H, rows = B * T * H;
    float *D = (float *)cu_scratch(CU_SLOT_ATTENTION, (size_t)rows * sizeof(float));
    if (!D) return;
    CU_LAUNCH(cu_row_blocks(rows, CU_THREADS / 32), CU_THREADS, 0, k_rowdot)(dy, y, B * T, T, C, H, (int)hs, D);
    if (!CU_LAUNCHED("k_rowdot")) return;
    if (g_cu.math == CU_MATH_BF16) FA_DISPATCH(fa_bf16, backward_hs, (qkv, lse, D, dy, B, T, C, H, rule, lengths, dqkv))
    else FA_DISPATCH(fa_tf32, backward_hs, (qkv, lse, D, dy, B, T, C, H, rule, lengths, dqkv))
}
