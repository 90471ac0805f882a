/*
 * backends/cuda/cu_embed.cu — token + position embedding and its gradient.
 *
 *   x[n,:] = wte[tokens[n],:] + wpe[n % T,:]        tokens[B,T] i32, x[N,C]
 *   dwte[tokens[n],:] += dx[n,:]                    (cu_scatter_add: sorted,
 *                                                    deterministic)
 *   dwpe[t,:] += sum_b dx[b*T + t,:]                (a thread per (t, c),
 *                                                    batch rows in order)
 */
#include "cu_ops.h"

/* T of tokens[B,T] (a 1-D tokens tensor is one sequence) */
static int64_t seq_len(const fl_tensor *tokens) {
    return tokens->ndim >= 2 ? tokens->shape[tokens->ndim - 1] : fl_numel(tokens);
}

static __global__ void k_embed(const float *wte, const float *wpe, const int32_t *tok, float *x, int64_t N,
                               int64_t T, int64_t C, int64_t V, unsigned *flags) {
    CU_LOOP(e, N * C) {
        const int64_t n = e / C, c = e % C;
        const int32_t t = tok[n];
        const float p = wpe[(n % T) * C + c];
        if (t < 0 || t >= V) { /* a bad token: position only, reported by sync() */
            if (c == 0) atomicOr(flags, CU_FLAG_EMBED);
            x[e] = p;
        } else {
            x[e] = wte[(int64_t)t * C + c] + p;
        }
    }
}

void cu_embed(const fl_tensor *wte, const fl_tensor *wpe, const fl_tensor *tokens, fl_tensor *x) {
    const int64_t N = fl_numel(tokens), T = seq_len(tokens), C = cu_cols(wte), V = cu_rows(wte);
    CU_CHECK(tokens->dtype == FL_I32 && wte->dtype == FL_F32 && wpe->dtype == FL_F32);
    CU_CHECK(cu_cols(wpe) == C && cu_rows(wpe) >= T);
    CU_CHECK(x->dtype == FL_F32 && fl_numel(x) == N * C);
    if (N * C == 0) return;
    CU_LAUNCH(cu_grid(N * C), CU_THREADS, 0, k_embed)(cu_f32(wte), cu_f32(wpe), cu_i32(tokens), cu_f32(x), N,
                                                            T, C, V, g_cu.flags);
    CU_LAUNCHED("k_embed");
}

static __global__ void k_embed_dwpe(const float *dx, float *dwpe, int64_t N, int64_t T, int64_t C) {
    CU_LOOP(e, T * C) {
        const int64_t t = e / C, c = e % C;
        float acc = dwpe[e];
        for (int64_t n = t; n < N; n += T) acc += dx[n * C + c];
        dwpe[e] = acc;
    }
}

void cu_embed_backward(const fl_tensor *dx, const fl_tensor *tokens, fl_tensor *dwte, fl_tensor *dwpe) {
    const int64_t N = fl_numel(tokens), T = seq_len(tokens), C = cu_cols(dwte);
    CU_CHECK(tokens->dtype == FL_I32 && dx->dtype == FL_F32 && fl_numel(dx) == N * C);
    CU_CHECK(dwte->dtype == FL_F32 && dwpe->dtype == FL_F32);
    CU_CHECK(cu_cols(dwpe) == C && cu_rows(dwpe) >= T);
    if (N * C == 0) return;
    cu_scatter_add(cu_f32(dx), 1, cu_i32(tokens), NULL, N, cu_f32(dwte), cu_rows(dwte), C, CU_FLAG_EMBED);
    CU_LAUNCH(cu_grid(T * C), CU_THREADS, 0, k_embed_dwpe)(cu_f32(dx), cu_f32(dwpe), N, T, C);
    CU_LAUNCHED("k_embed_dwpe");
}
