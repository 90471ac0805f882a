/*
 * tests/test_cpu_model_kernels.c — the CPU backend's model-only kernels
 * (fl_backend in backends/backend.h): embedding and its gradient,
 * attention forward/backward under every mask (causal, bidirectional,
 * padded, local, and together), decoding attention over a KV cache
 * (kv_append, attention_decode, global and local), the fused
 * cross-entropy, AdamW (whole tensors and
 * selected rows), sumsq and the NaN/inf check.
 *
 * References are naive double-precision loops; gradients are also checked
 * against a central finite difference of L = sum(out * w) (fp32 inputs,
 * eps = 1e-3, L summed in double), printing the relative error.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_fixture.h"

#include "backend.h"

static const fl_backend *be;

static int setup(void **state) {
    (void)state;
    be = fl_backend_cpu();
    tf_use(be);
    return 0;
}

/* ---------------------------------------------------------- embedding */

static void test_embed(void **state) {
    (void)state;
    const int64_t V = 11, T = 5, C = 13, B = 3, N = B * T;
    fl_tensor wte = f2(V, C), wpe = f2(T + 2, C), x = f2(N, C);
    fl_tensor tok = tnew(FL_I32, 2, B, T, 1, 1);
    rnd(&wte, 1, -1, 1);
    rnd(&wpe, 2, -1, 1);
    rnd_idx(&tok, 3, 0, (int)V);
    fl_tensor wpe_T = fl_rows(&wpe, 0, T); /* the model passes the first T rows */
    be->embed(&wte, &wpe_T, &tok, &x);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            assert_float_equal(F(&x)[n * C + c],
                               F(&wte)[I(&tok)[n] * C + c] + F(&wpe)[(n % T) * C + c], 0);
    /* backward accumulates into non-zero gradients */
    fl_tensor dx = f2(N, C), dwte = f2(V, C), dwpe = f2(T, C);
    rnd(&dx, 4, -1, 1);
    rnd(&dwte, 5, -1, 1);
    rnd(&dwpe, 6, -1, 1);
    double rte[11 * 13], rpe[5 * 13];
    for (int64_t i = 0; i < V * C; i++) rte[i] = F(&dwte)[i];
    for (int64_t i = 0; i < T * C; i++) rpe[i] = F(&dwpe)[i];
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            rte[I(&tok)[n] * C + c] += F(&dx)[n * C + c];
            rpe[(n % T) * C + c] += F(&dx)[n * C + c];
        }
    be->embed_backward(&dx, &tok, &dwte, &dwpe);
    chk(F(&dwte), to_f(rte, V * C), (size_t)(V * C), 1e-6, 1e-6, "embed_backward dwte");
    chk(F(&dwpe), to_f(rpe, T * C), (size_t)(T * C), 1e-6, 1e-6, "embed_backward dwpe");
}

/* ---------------------------------------------------------- attention */

/* A mask as the references see it, written out here from backend.h's
   definition (not from attn_mask.h, so the kernels' ranges are checked). */
typedef struct tmask {
    const char *name;
    int causal;
    int64_t window;          /* 0: none */
    const int32_t *len;      /* [B] real keys per sequence, or NULL */
} tmask;

static int sees(const tmask *mk, int64_t b, int64_t i, int64_t j) {
    if (mk->len && j >= mk->len[b]) return 0;
    if (mk->causal && j > i) return 0;
    return !(mk->window > 0 && llabs(i - j) >= mk->window);
}

/* The backend's view of mk: lengths as an i32 tensor (freed by the caller). */
static fl_attn_mask be_mask(const tmask *mk, int64_t B, fl_tensor *lens) {
    fl_attn_mask m = {.causal = mk->causal, .window = mk->window, .lengths = NULL};
    if (mk->len) {
        *lens = tnew(FL_I32, 1, B, 1, 1, 1);
        memcpy(lens->data, mk->len, (size_t)B * sizeof *mk->len);
        m.lengths = lens;
    }
    return m;
}

/* out[B,T,C], att[B,H,T,T] in double from qkv[B,T,3C]; a row that sees no
   key has zero probabilities and output */
static void attn_ref(const float *qkv, int64_t B, int64_t T, int64_t C, int64_t H, const tmask *mk, double *out,
                     double *att) {
    const int64_t hs = C / H;
    const double scale = 1 / sqrt((double)hs);
    memset(att, 0, (size_t)(B * H * T * T) * sizeof *att);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const float *q = qkv + (b * T + i) * 3 * C + h * hs;
                double *p = att + ((b * H + h) * T + i) * T, m = -INFINITY, s = 0;
                for (int64_t j = 0; j < T; j++) {
                    if (!sees(mk, b, i, j)) continue;
                    const float *k = qkv + (b * T + j) * 3 * C + C + h * hs;
                    double d = 0;
                    for (int64_t e = 0; e < hs; e++) d += (double)q[e] * k[e];
                    p[j] = d * scale;
                    m = fmax(m, p[j]);
                }
                for (int64_t j = 0; j < T; j++)
                    if (sees(mk, b, i, j)) s += (p[j] = exp(p[j] - m));
                for (int64_t j = 0; j < T; j++) p[j] = sees(mk, b, i, j) ? p[j] / s : 0;
                for (int64_t e = 0; e < hs; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < T; j++) o += p[j] * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + e];
                    out[(b * T + i) * C + h * hs + e] = o;
                }
            }
}

/* dqkv in double from dout, given the reference att (zero where hidden) */
static void attn_back_ref(const float *qkv, const double *att, const float *dout, int64_t B,
                          int64_t T, int64_t C, int64_t H, double *dqkv) {
    const int64_t hs = C / H;
    const double scale = 1 / sqrt((double)hs);
    double *dp = malloc((size_t)T * sizeof *dp);
    memset(dqkv, 0, (size_t)(B * T * 3 * C) * sizeof *dqkv);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const double *p = att + ((b * H + h) * T + i) * T;
                const float *go = dout + (b * T + i) * C + h * hs;
                double dot = 0;
                for (int64_t j = 0; j < T; j++) {
                    const int64_t vj = (b * T + j) * 3 * C + 2 * C + h * hs;
                    dp[j] = 0;
                    for (int64_t e = 0; e < hs; e++) {
                        dp[j] += (double)go[e] * qkv[vj + e];
                        dqkv[vj + e] += p[j] * go[e];
                    }
                    dot += p[j] * dp[j];
                }
                const int64_t qi = (b * T + i) * 3 * C + h * hs;
                for (int64_t j = 0; j < T; j++) {
                    const double ds = p[j] * (dp[j] - dot) * scale;
                    const int64_t kj = (b * T + j) * 3 * C + C + h * hs;
                    for (int64_t e = 0; e < hs; e++) {
                        dqkv[qi + e] += ds * qkv[kj + e];
                        dqkv[kj + e] += ds * qkv[qi + e];
                    }
                }
            }
    free(dp);
}

static void check_attention(int64_t B, int64_t T, int64_t H, int64_t hs, const tmask *mk) {
    const int64_t C = H * hs;
    fl_tensor qkv = f3(B, T, 3 * C), out = f3(B, T, C), dout = f3(B, T, C), lens;
    fl_tensor att = tnew(FL_F32, 4, B, H, T, T), dqkv = f3(B, T, 3 * C);
    const fl_attn_mask bm = be_mask(mk, B, &lens);
    rnd(&qkv, 10 + T, -2, 2);
    rnd(&dout, 11 + T, -1, 1);
    double *ro = malloc((size_t)(B * T * C) * sizeof *ro);
    double *ra = malloc((size_t)(B * H * T * T) * sizeof *ra);
    double *rd = malloc((size_t)(B * T * 3 * C) * sizeof *rd);
    attn_ref(F(&qkv), B, T, C, H, mk, ro, ra);
    for (int64_t i = 0; i < fl_numel(&dqkv); i++) F(&dqkv)[i] = NAN; /* overwritten */
    for (int64_t i = 0; i < fl_numel(&att); i++) F(&att)[i] = NAN;   /* every entry written */
    be->attention(&qkv, (int)H, &bm, &out, &att);
    assert_int_equal(be->attention_saved_numel(B, T, C, (int)H), fl_numel(&att));
    be->attention_backward(&qkv, &out, &att, (int)H, &bm, &dout, &dqkv);
    attn_back_ref(F(&qkv), ra, F(&dout), B, T, C, H, rd);
    char what[128];
    const int len = snprintf(what, sizeof what, "attention %s B%lld T%lld H%lld hs%lld", mk->name,
                             (long long)B, (long long)T, (long long)H, (long long)hs);
    snprintf(what + len, sizeof what - (size_t)len, " out");
    chk(F(&out), to_f(ro, B * T * C), (size_t)(B * T * C), 1e-5, 1e-5, what);
    snprintf(what + len, sizeof what - (size_t)len, " att");
    chk(F(&att), to_f(ra, B * H * T * T), (size_t)(B * H * T * T), 1e-5, 1e-6, what);
    snprintf(what + len, sizeof what - (size_t)len, " dqkv");
    chk(F(&dqkv), to_f(rd, B * T * 3 * C), (size_t)(B * T * 3 * C), 1e-4, 1e-5, what);
    /* probabilities: rows summing to 1 (0 for a row that sees nothing),
       exact zeros wherever the mask hides a key */
    for (int64_t r = 0; r < B * H * T; r++) {
        const int64_t b = r / (H * T), i = r % T;
        double s = 0;
        int any = 0;
        for (int64_t j = 0; j < T; j++) {
            if (!sees(mk, b, i, j)) assert_true(F(&att)[r * T + j] == 0.0f);
            s += F(&att)[r * T + j], any |= sees(mk, b, i, j);
        }
        assert_true(fabs(s - any) < 1e-5);
    }
    free(ro);
    free(ra);
    free(rd);
}

static const int32_t LEN2[2] = {9, 4}, LEN3[3] = {130, 1, 67};

static void test_attention_reference(void **state) {
    (void)state;
    const tmask causal = {"causal", 1, 0, NULL}, bidi = {"bidirectional", 0, 0, NULL};
    check_attention(1, 1, 1, 4, &causal);
    check_attention(1, 9, 1, 5, &causal);   /* one pair: oneDNN threads each product */
    check_attention(2, 13, 3, 4, &causal);  /* pairs over threads */
    check_attention(2, 70, 2, 8, &causal);  /* two query blocks of 64 */
    check_attention(1, 130, 2, 3, &causal); /* three blocks, ragged */
    check_attention(2, 13, 3, 4, &bidi);
    check_attention(1, 130, 2, 3, &bidi);
}

/* An encoder's padding (keys past each sequence's length hidden, padded
   queries still attending the real keys; a sequence of one token, one of
   none), local windows (causal and bidirectional, narrower than a block and
   wider, windows crossing block edges) and all of them together, where
   padded queries far past the length see no key at all. */
static void test_attention_masks(void **state) {
    (void)state;
    const tmask pad = {"padded", 0, 0, LEN2}, pad3 = {"padded", 0, 0, LEN3};
    const tmask local5 = {"local 5", 1, 5, NULL}, local70 = {"local 70", 1, 70, NULL};
    const tmask blocal = {"bidirectional local 7", 0, 7, NULL}, all = {"padded local 3", 0, 3, LEN2};
    const tmask clocal = {"causal padded local 40", 1, 40, LEN3};
    static const int32_t empty[2] = {0, 13};
    const tmask none = {"padded, one empty", 0, 0, empty};
    check_attention(2, 13, 3, 4, &pad);
    check_attention(3, 130, 2, 3, &pad3);
    check_attention(2, 13, 3, 4, &local5);
    check_attention(1, 200, 2, 3, &local70);
    check_attention(2, 70, 2, 4, &blocal);
    check_attention(2, 13, 3, 4, &all);
    check_attention(3, 130, 2, 3, &clocal);
    check_attention(2, 13, 1, 4, &none);
}

static fl_tensor gQKV, gOut, gAtt, gW;
static int g_heads;
static const fl_attn_mask *g_mask;
static double attn_loss(void) {
    be->attention(&gQKV, g_heads, g_mask, &gOut, &gAtt);
    return dot_d(F(&gOut), F(&gW), fl_numel(&gOut));
}

/* Gradients against finite differences: causal (mask NULL, the default),
   bidirectional with padding (the encoder's mask), and local. */
static void grad_case(const char *what, const tmask *mk) {
    const int64_t B = 2, T = 7, H = 2, hs = 3, C = H * hs;
    fl_tensor lens;
    const tmask causal = {"causal", 1, 0, NULL};
    const fl_attn_mask bm = be_mask(mk ? mk : &causal, B, &lens);
    g_heads = (int)H, g_mask = mk ? &bm : NULL;
    gQKV = f3(B, T, 3 * C), gOut = f3(B, T, C), gW = f3(B, T, C);
    gAtt = tnew(FL_F32, 4, B, H, T, T);
    rnd(&gQKV, 20, -1.5f, 1.5f);
    rnd(&gW, 21, -1, 1);
    fl_tensor dqkv = f3(B, T, 3 * C);
    attn_loss();
    be->attention_backward(&gQKV, &gOut, &gAtt, (int)H, g_mask, &gW, &dqkv);
    fd_check(what, F(&gQKV), fl_numel(&gQKV), F(&dqkv), attn_loss);
    if (!mk || !mk->len) return;
    /* padded keys pass no gradient to k and v: they are never looked at */
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = mk->len[b]; j < T; j++)
            for (int64_t c = C; c < 3 * C; c++) assert_true(F(&dqkv)[(b * T + j) * 3 * C + c] == 0.0f);
}

static void test_attention_grad(void **state) {
    (void)state;
    static const int32_t len[2] = {7, 4};
    const tmask pad = {"padded", 0, 0, len}, local = {"local", 1, 3, NULL};
    grad_case("attention_backward dqkv (causal)", NULL);
    grad_case("attention_backward dqkv (bidirectional, padded)", &pad);
    grad_case("attention_backward dqkv (local 3)", &local);
}

/* Local attention against global on the same inputs: identical (bit for
   bit) when the window covers the sequence; otherwise rows whose window
   reaches back to key 0 (i < window) are identical and the rows beyond it
   differ. */
static void test_attention_local_vs_global(void **state) {
    (void)state;
    const int64_t B = 1, T = 150, H = 2, hs = 4, C = H * hs, W = 100;
    fl_tensor qkv = f3(B, T, 3 * C), glob = f3(B, T, C), loc = f3(B, T, C), att = tnew(FL_F32, 4, B, H, T, T);
    rnd(&qkv, 40, -2, 2);
    const fl_attn_mask g = {.causal = 1}, wide = {.causal = 1, .window = T}, narrow = {.causal = 1, .window = W};
    be->attention(&qkv, (int)H, &g, &glob, &att);
    be->attention(&qkv, (int)H, &wide, &loc, &att);
    assert_memory_equal(F(&glob), F(&loc), (size_t)(T * C) * sizeof(float));
    be->attention(&qkv, (int)H, &narrow, &loc, &att);
    for (int64_t i = 0; i < T; i++) {
        const int same = !memcmp(F(&glob) + i * C, F(&loc) + i * C, (size_t)C * sizeof(float));
        if (i < W) assert_true(same);
        else assert_false(same);
    }
}

/* ----------------------------------------------------------- decoding */

/* The cache [B,H,S,hs] filled from qkv[B,T,3C] as a prompt of T-1 tokens
   (one append of T-1 positions) and a step (one append of the last row at
   pos T-1), then the last row's attention over all T positions (or the last
   window of them): it must be row T-1 of the full causal (local)
   attention, in double. Cache rows past T stay NaN: they are never read. */
static void check_attention_decode(int64_t B, int64_t T, int64_t H, int64_t hs, int64_t window) {
    const int64_t C = H * hs, S = T + 3;
    fl_tensor qkv = f3(B, T, 3 * C), prompt = f3(B, T - 1, 3 * C), last = f3(B, 1, 3 * C), out = f2(B, C);
    fl_tensor k = tnew(FL_F32, 4, B, H, S, hs), v = tnew(FL_F32, 4, B, H, S, hs);
    rnd(&qkv, 30 + T, -2, 2);
    for (int64_t b = 0; b < B; b++) {
        memcpy(F(&prompt) + b * (T - 1) * 3 * C, F(&qkv) + b * T * 3 * C, (size_t)((T - 1) * 3 * C) * sizeof(float));
        memcpy(F(&last) + b * 3 * C, F(&qkv) + (b * T + T - 1) * 3 * C, (size_t)(3 * C) * sizeof(float));
    }
    for (int64_t i = 0; i < N_(&k); i++) F(&k)[i] = F(&v)[i] = NAN;
    if (T > 1) be->kv_append(&prompt, 0, &k, &v);
    be->kv_append(&last, T - 1, &k, &v);
    for (int64_t b = 0; b < B; b++) /* the cache holds k, v exactly, head by head */
        for (int64_t h = 0; h < H; h++)
            for (int64_t j = 0; j < S; j++)
                for (int64_t e = 0; e < hs; e++) {
                    const float *src = F(&qkv) + (b * T + j) * 3 * C + C + h * hs + e;
                    const int64_t at = ((b * H + h) * S + j) * hs + e;
                    if (j < T) assert_true(F(&k)[at] == src[0] && F(&v)[at] == src[C]);
                    else assert_true(isnan(F(&k)[at]) && isnan(F(&v)[at]));
                }
    for (int64_t i = 0; i < N_(&out); i++) F(&out)[i] = NAN; /* overwritten */
    be->attention_decode(&last, &k, &v, T, window, &out);
    double *ro = malloc((size_t)(B * T * C) * sizeof *ro), *ra = malloc((size_t)(B * H * T * T) * sizeof *ra);
    double *want = malloc((size_t)(B * C) * sizeof *want);
    const tmask mk = {"causal", 1, window, NULL};
    attn_ref(F(&qkv), B, T, C, H, &mk, ro, ra);
    for (int64_t b = 0; b < B; b++) memcpy(want + b * C, ro + (b * T + T - 1) * C, (size_t)C * sizeof *want);
    char what[96];
    snprintf(what, sizeof what, "attention_decode B%lld t%lld H%lld hs%lld window %lld", (long long)B, (long long)T,
             (long long)H, (long long)hs, (long long)window);
    chk(F(&out), to_f(want, B * C), (size_t)(B * C), 1e-5, 1e-5, what);
    free(ro), free(ra), free(want);
}

static void test_attention_decode_reference(void **state) {
    (void)state;
    check_attention_decode(1, 1, 1, 4, 0);   /* the first position: only itself */
    check_attention_decode(2, 13, 3, 4, 0);
    check_attention_decode(3, 70, 2, 5, 0);  /* a head size no vector width divides */
    check_attention_decode(4, 300, 4, 16, 0); /* pairs over threads */
    check_attention_decode(2, 13, 3, 4, 5);  /* a local layer: the last 5 positions */
    check_attention_decode(2, 13, 3, 4, 13); /* a window as long as the text: all of it */
    check_attention_decode(1, 1, 1, 4, 1);
}

/* ------------------------------------------------------ cross-entropy */

static fl_tensor gL, gTg;
static double ce_loss(void) { return be->cross_entropy(&gL, gL.shape[1], &gTg, NULL, 0.0f, NULL); }

static void test_cross_entropy(void **state) {
    (void)state;
    const int64_t N = 13, V = 37;
    gL = f2(N, V), gTg = tnew(FL_I32, 1, N, 1, 1, 1);
    rnd(&gL, 30, -4, 4);
    rnd_idx(&gTg, 31, 0, (int)V);
    I(&gTg)[2] = -1, I(&gTg)[7] = -5; /* ignored rows */
    for (int64_t j = 0; j < V; j++) F(&gL)[5 * V + j] += 500.0f; /* stability */
    double ref = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < N; i++) {
        if (I(&gTg)[i] < 0) continue;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < V; j++) m = fmax(m, F(&gL)[i * V + j]);
        for (int64_t j = 0; j < V; j++) s += exp(F(&gL)[i * V + j] - m);
        ref += m + log(s) - F(&gL)[i * V + I(&gTg)[i]];
        cnt++;
    }
    ref /= cnt;
    int64_t count = -1;
    fl_tensor dl = f2(N, V);
    rnd(&dl, 32, -1, 1); /* garbage: overwritten, ignored rows zeroed */
    const double loss = be->cross_entropy(&gL, V, &gTg, &dl, 1.0f / (float)cnt, &count);
    print_message("  cross_entropy loss %.9f, reference %.9f\n", loss, ref);
    assert_int_equal(count, cnt);
    assert_true(fabs(loss - ref) < 1e-6 * fabs(ref));
    for (int64_t j = 0; j < V; j++) assert_true(F(&dl)[2 * V + j] == 0 && F(&dl)[7 * V + j] == 0);
    fd_check("cross_entropy dlogits", F(&gL), N * V, F(&dl), ce_loss);
    /* in place (dlogits = logits) gives the same numbers; scale is linear */
    fl_tensor in = f2(N, V), d2 = f2(N, V);
    memcpy(in.data, gL.data, fl_nbytes(&gL));
    const double l2 = be->cross_entropy(&in, V, &gTg, &in, 2.5f, NULL);
    be->cross_entropy(&gL, V, &gTg, &d2, 2.5f, NULL);
    assert_true(l2 == loss);
    chk(F(&in), F(&d2), (size_t)(N * V), 0, 0, "cross_entropy in place");
    for (int64_t i = 0; i < N * V; i++) F(&d2)[i] /= 2.5f * (float)cnt;
    chk(F(&d2), F(&dl), (size_t)(N * V), 1e-6, 1e-8, "cross_entropy scale");
    /* rows padded to W > V columns (an LM head padded to an aligned width):
       the padding is never read, gets zero gradients, and the rest is the
       unpadded result bit for bit */
    const int64_t W = V + 11;
    fl_tensor pl = f2(N, W), pd = f2(N, W);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < W; j++) F(&pl)[i * W + j] = j < V ? F(&gL)[i * V + j] : (j % 2 ? NAN : 1e30f);
    rnd(&pd, 33, -1, 1);
    int64_t pcount = -1;
    assert_true(be->cross_entropy(&pl, V, &gTg, &pd, 2.5f, &pcount) == loss);
    assert_int_equal(pcount, cnt);
    for (int64_t i = 0; i < N; i++) {
        assert_memory_equal(F(&pd) + i * W, F(&in) + i * V, (size_t)V * sizeof(float));
        for (int64_t j = V; j < W; j++) assert_true(F(&pd)[i * W + j] == 0.0f);
    }
    /* no counted rows: loss 0, count 0 */
    for (int64_t i = 0; i < N; i++) I(&gTg)[i] = -1;
    assert_true(be->cross_entropy(&gL, V, &gTg, NULL, 1.0f, &count) == 0.0);
    assert_int_equal(count, 0);
}

/* --------------------------------------------------------------- adamw */

static void test_adamw(void **state) {
    (void)state;
    const int64_t R = 37, D = 29, n = R * D; /* > one 256 block, ragged */
    const float lr = 0.01f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    fl_tensor p = f2(R, D), g = f2(R, D), m = f2(R, D), v = f2(R, D);
    rnd(&p, 40, -1, 1);
    double *rp = malloc((size_t)n * sizeof *rp), *rm = calloc((size_t)n, sizeof *rm),
           *rv = calloc((size_t)n, sizeof *rv);
    for (int64_t i = 0; i < n; i++) rp[i] = F(&p)[i];
    for (int64_t t = 1; t <= 5; t++) {
        rnd(&g, 41 + (uint64_t)t, -1, 1);
        be->adamw(&p, &g, &m, &v, lr, b1, b2, eps, wd, 1.0f, t);
        for (int64_t i = 0; i < n; i++) { /* the textbook update, one element at a time */
            const double gi = F(&g)[i];
            rm[i] = b1 * rm[i] + (1 - b1) * gi;
            rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
            const double mh = rm[i] / (1 - pow(b1, (double)t));
            const double vh = rv[i] / (1 - pow(b2, (double)t));
            rp[i] -= lr * (mh / (sqrt(vh) + eps) + wd * rp[i]);
        }
    }
    chk(F(&p), to_f(rp, n), (size_t)n, 1e-5, 1e-6, "adamw param");
    chk(F(&m), to_f(rm, n), (size_t)n, 1e-5, 1e-7, "adamw m");
    chk(F(&v), to_f(rv, n), (size_t)n, 1e-5, 1e-8, "adamw v");
    /* rows: only rows 4 and 1 move, exactly as whole-tensor AdamW would move them */
    fl_tensor p2 = f2(R, D), m2 = f2(R, D), v2 = f2(R, D);
    memcpy(p2.data, p.data, fl_nbytes(&p));
    memcpy(m2.data, m.data, fl_nbytes(&m));
    memcpy(v2.data, v.data, fl_nbytes(&v));
    const int32_t rows[2] = {4, 1};
    be->adamw_rows(&p2, &g, &m2, &v2, rows, 2, lr, b1, b2, eps, wd, 1.0f, 6);
    be->adamw(&p, &g, &m, &v, lr, b1, b2, eps, wd, 1.0f, 6);
    for (int64_t r = 0; r < R; r++) {
        const int moved = r == 4 || r == 1;
        for (int64_t c = 0; c < D; c++) {
            const int64_t i = r * D + c;
            if (moved)
                assert_true(F(&p2)[i] == F(&p)[i] && F(&m2)[i] == F(&m)[i] &&
                            F(&v2)[i] == F(&v)[i]);
            else
                assert_true(F(&p2)[i] != F(&p)[i] || F(&g)[i] == 0);
        }
    }
    /* grad_scale s is the same as stepping on s * grad */
    fl_tensor g3 = f2(R, D), p3 = f2(R, D), m3 = f2(R, D), v3 = f2(R, D);
    for (int64_t i = 0; i < n; i++) F(&g3)[i] = 0.25f * F(&g)[i];
    memcpy(p3.data, p.data, fl_nbytes(&p));
    memcpy(p2.data, p.data, fl_nbytes(&p));
    memset(m2.data, 0, fl_nbytes(&m2));
    memset(v2.data, 0, fl_nbytes(&v2));
    be->adamw(&p2, &g, &m2, &v2, lr, b1, b2, eps, wd, 0.25f, 1);
    be->adamw(&p3, &g3, &m3, &v3, lr, b1, b2, eps, wd, 1.0f, 1);
    chk(F(&p2), F(&p3), (size_t)n, 1e-6, 1e-9, "adamw grad_scale param");
    chk(F(&m2), F(&m3), (size_t)n, 1e-6, 1e-9, "adamw grad_scale m");
    free(rp);
    free(rm);
    free(rv);
}

/* --------------------------------------------------- sumsq, nonfinite */

static void test_sumsq_nonfinite(void **state) {
    (void)state;
    const int64_t n = 100001;
    fl_tensor x = f1(n);
    rnd(&x, 50, -3, 3);
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)F(&x)[i] * F(&x)[i];
    const double s = be->sumsq(&x);
    print_message("  sumsq rel error %.2e\n", fabs(s - ref) / ref);
    assert_true(fabs(s - ref) < 1e-12 * ref);
    assert_int_equal(be->nonfinite(&x), 0);
    F(&x)[7] = 3.0e38f;
    assert_int_equal(be->nonfinite(&x), 0);
    const int64_t where[] = {0, 1, 12345, n - 2, n - 1};
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t w = 0; w < sizeof where / sizeof *where; w++)
        for (size_t b = 0; b < 3; b++) {
            const float keep = F(&x)[where[w]];
            F(&x)[where[w]] = bad[b];
            assert_int_equal(be->nonfinite(&x), 1);
            F(&x)[where[w]] = keep;
        }
    /* over listed rows only; zero_rows clears exactly those rows */
    fl_tensor x2 = f2(50, 7);
    rnd(&x2, 51, -2, 2);
    const int32_t rows[3] = {3, 49, 0};
    double rref = 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 7; c++) rref += (double)F(&x2)[rows[r] * 7 + c] * F(&x2)[rows[r] * 7 + c];
    assert_true(fabs(be->sumsq_rows(&x2, rows, 3) - rref) < 1e-12 * rref);
    const double total = be->sumsq(&x2);
    be->zero_rows(&x2, rows, 3);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 7; c++) assert_true(F(&x2)[rows[r] * 7 + c] == 0.0f);
    assert_true(fabs(be->sumsq(&x2) - (total - rref)) < 1e-9 * total);
    /* several tensors at once: the sum of their sums (an empty list is 0) */
    fl_tensor y = f1(5);
    rnd(&y, 52, -1, 1);
    const fl_tensor *list[] = {&x, &x2, &y};
    const double each = be->sumsq(&x) + be->sumsq(&x2) + be->sumsq(&y), many = be->sumsq_many(list, 3);
    assert_true(fabs(many - each) <= 1e-12 * each);
    assert_true(be->sumsq_many(list, 0) == 0.0);
    fl_tensor small = f1(3);
    assert_int_equal(be->nonfinite(&small), 0);
    F(&small)[2] = -NAN;
    assert_int_equal(be->nonfinite(&small), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_embed, tf_free_all),
        cmocka_unit_test_teardown(test_attention_reference, tf_free_all),
        cmocka_unit_test_teardown(test_attention_masks, tf_free_all),
        cmocka_unit_test_teardown(test_attention_grad, tf_free_all),
        cmocka_unit_test_teardown(test_attention_local_vs_global, tf_free_all),
        cmocka_unit_test_teardown(test_attention_decode_reference, tf_free_all),
        cmocka_unit_test_teardown(test_cross_entropy, tf_free_all),
        cmocka_unit_test_teardown(test_adamw, tf_free_all),
        cmocka_unit_test_teardown(test_sumsq_nonfinite, tf_free_all),
    };
    return cmocka_run_group_tests_name("cpu_model_kernels", tests, setup, NULL);
}
