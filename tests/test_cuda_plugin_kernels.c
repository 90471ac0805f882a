/*
 * tests/test_cuda_plugin_kernels.c — the sparse plugins' own CUDA kernels
 * against their own CPU kernels, step by step: cnt's block selection
 * (plugins/ffn_cnt/cnt_select.h), moe's routing (plugins/ffn_moe/
 * moe_route.h), pkm's product top-k (plugins/ffn_pkm/pkm_topk.h), each
 * called through a host on the CPU backend and a host on the GPU, on the
 * same inputs, including the edge cases their contracts spell out (ties,
 * blocks of one unit, one block, capacity cuts inside and across the GPU's
 * tiles, zero-sum rows, knn = n_keys). Tolerances are stated per family.
 *
 * This suite builds the plugins' kernel sources into itself, with
 * FFNLAB_PLUGIN_CUDA: with nvcc and a GPU (test_cuda_plugin_kernels, label
 * cuda; exit 77 = skipped without one), and with the .cu files compiled for
 * the CPU through tests/support/cuda_emu.h (test_cuda_plugin_kernels_emu,
 * label cpu), which is how a machine without a GPU runs the plugins' CUDA
 * code. FFNLAB_TEST_GPU_AS_CPU=1 puts the CPU in the GPU's place.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "device_pair.h"
#include "ffnlab/rng.h"
#include "host_table.h"
#include "support.h"
#ifdef FFNLAB_TEST_CUDA_EMU
#include "cuda_emu_backend.h"
#endif

#include "cnt_select.h"
#include "moe_route.h"
#include "pkm_topk.h"

/* A host on each backend: HG's device says CUDA, so each plugin step takes
   its CUDA code (for the emulation too, whose memory is the CPU's). */
static fl_host HC, HG;
static fl_error g_err;
static fl_tensor g_scratch_c, g_scratch_g; /* moe_route's own memory per host */

static void ok(fl_status st) { ts_assert_ok(st, &g_err); }

/* ------------------------------------------------------------------------ */
/* cnt: cnt_select.h (cnt_block_select, its backward, cnt_block_argmax).      */
/* Selections bit-identical; the GPU's accurate logf/expf     */
/* against the CPU's ~1e-7 polynomials: p, pmax ≤ 1e-5 relative, s and hm   */
/* 2e-5 (z's rounding), dl 1e-5 + 1e-5 absolute (FMA), dL/da 1e-6.          */
/* ------------------------------------------------------------------------ */

/* The smallest gap between a block's two largest z = (l + noise g) inv_tau
   (double), relative to |z| + 1: the GPU's z differs from the CPU's by about
   1e-7 relative, so the selections must agree only where the gap is larger.
   The inputs are fixed, so this checks the test data, not the op. */
static double min_gap(const pair *l, int B, float noise, float inv_tau, uint64_t key) {
    const int64_t F = (int64_t)l->c.shape[1], N = (int64_t)l->n / F;
    float *h = malloc(l->bytes);
    CPU->ops.to_host(h, &l->c, l->bytes);
    double worst = INFINITY;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < F && B > 1; o += B) {
            double z1 = -INFINITY, z2 = -INFINITY;
            for (int64_t i = o; i < o + B; i++) {
                const double g = noise != 0 ? -log(-log((double)fl_rng_uniform(key, (uint64_t)(n * F + i)))) : 0.0;
                const double z = ((double)h[n * F + i] + noise * g) * inv_tau;
                if (z > z1) z2 = z1, z1 = z;
                else if (z > z2) z2 = z;
            }
            const double gap = (z1 - z2) / (fabs(z1) + 1.0);
            if (gap < worst) worst = gap;
        }
    free(h);
    return worst;
}

static void block_select_case(int64_t N, int64_t F, int B, float noise, float inv_tau, int soft, int with_p) {
    const uint64_t key = 0xb10c + (uint64_t)F;
    pair l = MK2(N, F), a = MK2(N, F), s = MK2(N, F), p = MK2(N, F), hm = MK2(N, F);
    pair ix = mk(FL_I32, 2, N, F / B, 1, 1);
    prandn(&l, 171, 2.0f), prandn(&a, 172, 1.0f);
    const double gap = min_gap(&l, B, noise, inv_tau, key);
    char what[96];
    snprintf(what, sizeof what, "block_select %lldx%lld B=%d%s%s", (long long)N, (long long)F, B,
             soft ? " soft" : " hard", with_p ? " p" : "");
    print_message("  %-44s smallest top-2 gap %.1e (need > 1e-5)\n", what, gap);
    assert_true(gap > 1e-5);
    ok(cnt_block_select(&HC, &l.c, &a.c, B, noise, inv_tau, key, soft, &s.c, with_p ? &p.c : NULL, &ix.c, &hm.c, &g_err));
    ok(cnt_block_select(&HG, &l.g, &a.g, B, noise, inv_tau, key, soft, &s.g, with_p ? &p.g : NULL, &ix.g, &hm.g, &g_err));
    char w2[128];
    /* s = exp(z - max z): an ulp of z (up to ~1e-6 at |z| ~ 10 / tau) is a
       relative error of s; measured ≤ 4e-6 with libm's logf/expf in the
       GPU's place, so rtol 2e-5 */
    snprintf(w2, sizeof w2, "%s idx", what), cmp_exact(&ix, w2);
    snprintf(w2, sizeof w2, "%s s", what), cmp_close(&s, 2e-5, 1e-7, w2);
    if (with_p) snprintf(w2, sizeof w2, "%s p", what), cmp_close(&p, 1e-5, 1e-7, w2);
    snprintf(w2, sizeof w2, "%s hm", what), cmp_close(&hm, 2e-5, 1e-7, w2);

    /* backward on the CPU's forward results, copied to the GPU */
    pair dhm = MK2(N, F), dl = MK2(N, F);
    prandn(&dhm, 173, 1.0f);
    pcopy_to_gpu(&s), pcopy_to_gpu(&p), pcopy_to_gpu(&ix);
    ok(cnt_block_select_backward(&HC, &a.c, &s.c, with_p ? &p.c : NULL, &ix.c, B, inv_tau, soft, &dhm.c, &dl.c, &g_err));
    ok(cnt_block_select_backward(&HG, &a.g, &s.g, with_p ? &p.g : NULL, &ix.g, B, inv_tau, soft, &dhm.g, &dl.g, &g_err));
    /* dl = inv_tau s (dme p - Σ): a difference of sums of B terms, summed in
       the same order but with fused multiply-adds on the GPU: atol 1e-5 */
    snprintf(w2, sizeof w2, "block_select_backward%s%s dl", soft ? " soft" : " hard", with_p ? " p" : "");
    cmp_close(&dl, 1e-5, 1e-5, w2);
    snprintf(w2, sizeof w2, "block_select_backward%s%s da", soft ? " soft" : " hard", with_p ? " p" : "");
    cmp_close(&dhm, 1e-6, 1e-7, w2);
    pfree(&l), pfree(&a), pfree(&s), pfree(&p), pfree(&hm), pfree(&ix), pfree(&dhm), pfree(&dl);
}

static void test_block_select(void **state) {
    (void)state;
    block_select_case(60, 128, 8, 0.1f, 10.0f, 0, 1);  /* the defaults: tau 0.1, noise 0.1 */
    block_select_case(60, 128, 8, 1.0f, 1.0f, 1, 0);   /* soft mask, textbook noise */
    block_select_case(33, 96, 32, 0.5f, 2.0f, 0, 0);
    block_select_case(33, 96, 32, 0.5f, 2.0f, 1, 1);
    block_select_case(17, 64, 64, 1.0f, 1.0f, 0, 1);   /* one block */
    block_select_case(9, 20, 1, 1.0f, 1.0f, 0, 1);     /* blocks of one unit */
    block_select_case(40, 45, 5, 0.0f, 3.0f, 0, 1);    /* no noise: z = l inv_tau on both */
}

static void block_argmax_case(int64_t N, int64_t F, int B, int ties) {
    pair l = MK2(N, F), bias = MK1(F), pm = MK2(N, F / B), ix = mk(FL_I32, 2, N, F / B, 1, 1);
    prandn(&l, 181, 2.0f), prandn(&bias, 182, 1.0f);
    if (ties) { /* integer logits and bias: exact ties, the lower index on both */
        float *h = malloc(l.bytes);
        for (size_t i = 0; i < l.n; i++) h[i] = (float)(fl_rng_bits(183, i) % 3);
        pset(&l, h);
        for (int64_t j = 0; j < F; j++) h[j] = (float)(j % 2);
        pset(&bias, h);
        free(h);
    }
    ok(cnt_block_argmax(&HC, &l.c, &bias.c, B, &ix.c, &pm.c, &g_err));
    ok(cnt_block_argmax(&HG, &l.g, &bias.g, B, &ix.g, &pm.g, &g_err));
    char what[96];
    snprintf(what, sizeof what, "block_argmax %lldx%lld B=%d%s idx", (long long)N, (long long)F, B, ties ? " ties" : "");
    cmp_exact(&ix, what);
    snprintf(what, sizeof what, "block_argmax %lldx%lld B=%d%s pmax", (long long)N, (long long)F, B, ties ? " ties" : "");
    cmp_close(&pm, 1e-5, 1e-7, what);
    GPU->ops.fill(&ix.g, -7.0f);
    ok(cnt_block_argmax(&HG, &l.g, &bias.g, B, &ix.g, NULL, &g_err)); /* without pmax */
    cmp_exact(&ix, "block_argmax without pmax idx");
    pfree(&l), pfree(&bias), pfree(&pm), pfree(&ix);
}

static void test_block_argmax(void **state) {
    (void)state;
    block_argmax_case(300, 256, 8, 0);
    block_argmax_case(300, 256, 8, 1);
    block_argmax_case(7, 99, 33, 0);
    block_argmax_case(5, 64, 64, 1); /* one block */
    block_argmax_case(5, 12, 1, 0);  /* blocks of one: pmax = 1 */
}

/* ------------------------------------------------------------------------ */
/* moe: moe_route.h (moe_route, moe_index, moe_router_backward).             */
/* keys, count, tok, pos and gs bit-identical; gates   */
/* ≤ 1e-6 relative (the same float operations); dlogits 1e-5 relative +    */
/* 1e-6 absolute (a row's dot product summed in another order).              */
/* ------------------------------------------------------------------------ */

/* topv[N,k] uniform in [0, 1), every fifth row all 0 (renorm's zero sums);
   topi[N,k] distinct experts per row (E prime). */
static void moe_choice(int64_t N, int k, int E, uint64_t seed, float *v, int32_t *e) {
    for (int64_t n = 0; n < N; n++) {
        const int first = (int)(fl_rng_bits(seed, (uint64_t)n) % (uint64_t)E);
        const int step = 1 + (int)(fl_rng_bits(seed + 1, (uint64_t)n) % (uint64_t)(E > 1 ? E - 1 : 1));
        for (int j = 0; j < k; j++) {
            v[n * k + j] = n % 5 == 4 ? 0.0f : fl_rng_uniform(seed + 2, (uint64_t)(n * k + j));
            e[n * k + j] = (first + j * step) % E;
        }
    }
}

/* moe_route on both from one choice; N = 0 leaves only count to compare. */
static void moe_route_case(int64_t N, int k, int E, int renorm, int64_t cap, pair *gates, pair *keys) {
    const int64_t R = N ? N : 1;
    float *v = malloc((size_t)(R * k) * sizeof *v);
    int32_t *e = malloc((size_t)(R * k) * sizeof *e);
    moe_choice(R, k, E, (uint64_t)(N * 7 + E), v, e);
    pair topv = MK2(R, k), topi = mk_i32(e, 2, R, k), count = mk(FL_I32, 1, E, 1, 1, 1);
    *gates = MK2(R, k), *keys = mk(FL_I32, 1, R * k, 1, 1, 1);
    pset(&topv, v);
    pfill(keys, 777.0f), pfill(&count, 9.0f);
    fl_tensor *t[] = {&topv.c, &topv.g, &topi.c, &topi.g, &gates->c, &gates->g, &keys->c, &keys->g};
    for (int i = 0; i < 8; i++) t[i]->shape[0] = N * (i >= 6 ? k : 1); /* N may be 0 */
    ok(moe_route(&HC, &topv.c, &topi.c, E, renorm, cap, &gates->c, &keys->c, &count.c, &g_scratch_c, &g_err));
    ok(moe_route(&HG, &topv.g, &topi.g, E, renorm, cap, &gates->g, &keys->g, &count.g, &g_scratch_g, &g_err));
    gpu_ok();
    char what[96];
    snprintf(what, sizeof what, "moe_route N=%lld k=%d E=%d cap=%lld count", (long long)N, k, E, (long long)cap);
    cmp_exact(&count, what);
    if (N > 0) {
        snprintf(what, sizeof what, "moe_route N=%lld k=%d E=%d cap=%lld keys", (long long)N, k, E, (long long)cap);
        cmp_exact(keys, what);
        snprintf(what, sizeof what, "moe_route N=%lld k=%d E=%d renorm=%d gates", (long long)N, k, E, renorm);
        cmp_close(gates, 1e-6, 0.0, what);
    }
    pfree(&topv), pfree(&topi), pfree(&count);
    free(v), free(e);
}

/* Several tiles of 1024 assignments (the GPU's unit) with capacity cuts
   inside and across them; no capacity, none kept, a huge cap; E > 128. */
static void test_moe_route(void **state) {
    (void)state;
    const struct { int64_t N; int k, E, renorm; int64_t cap; } cases[] = {
        {0, 2, 7, 1, 3},       {1, 1, 3, 0, -1},       {97, 1, 7, 0, -1},     {97, 2, 7, 1, 5},
        {97, 3, 7, 1, 0},      {3000, 2, 61, 1, 40},   {5000, 1, 127, 0, 30}, {700, 3, 131, 1, -1},
        {2049, 2, 5, 1, 1000}, {1500, 2, 13, 0, (int64_t)1 << 40},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        pair gates, keys;
        moe_route_case(cases[c].N, cases[c].k, cases[c].E, cases[c].renorm, cases[c].cap, &gates, &keys);
        pfree(&gates), pfree(&keys);
    }
}

/* moe_index of one expert-ordered list (the CPU's route and bucket sort). */
static void moe_index_case(int64_t N, int k, int E, int64_t cap) {
    pair gates, keys;
    moe_route_case(N, k, E, 1, cap, &gates, &keys);
    pair perm = mk(FL_I32, 1, N * k, 1, 1, 1), pos = mk(FL_I32, 2, N, k, 1, 1);
    int64_t off[256];
    CPU->ops.bucket_sort(&keys.c, E, &perm.c, off);
    pcopy_to_gpu(&perm), pcopy_to_gpu(&gates);
    const int64_t M = off[E], R = M ? M : 1;
    pair tok = mk(FL_I32, 1, R, 1, 1, 1), gs = MK1(R);
    pfill(&tok, 555.0f), pfill(&gs, 555.0f), pfill(&pos, 555.0f);
    fl_tensor *t[] = {&tok.c, &tok.g, &gs.c, &gs.g};
    for (int i = 0; i < 4; i++) t[i]->shape[0] = M;
    fl_tensor kc = perm.c, kg = perm.g; /* the M listed rows */
    kc.shape[0] = kg.shape[0] = M;
    ok(moe_index(&HC, &kc, k, &gates.c, &tok.c, &gs.c, &pos.c, &g_err));
    ok(moe_index(&HG, &kg, k, &gates.g, &tok.g, &gs.g, &pos.g, &g_err));
    gpu_ok();
    char what[96];
    snprintf(what, sizeof what, "moe_index N=%lld k=%d E=%d M=%lld pos", (long long)N, k, E, (long long)M);
    cmp_exact(&pos, what);
    if (M > 0) {
        cmp_exact(&tok, "moe_index tok");
        cmp_exact(&gs, "moe_index gs");
    }
    pfree(&gates), pfree(&keys), pfree(&perm), pfree(&pos), pfree(&tok), pfree(&gs);
}

static void test_moe_index(void **state) {
    (void)state;
    moe_index_case(97, 2, 7, -1);
    moe_index_case(97, 3, 7, 9);
    moe_index_case(97, 1, 7, 0); /* all dropped: pos all -1 */
    moe_index_case(3000, 2, 61, 40);
}

/* moe_router_backward on the CPU's softmax, lse, top-k and gates of random
   logits; dlogits starts as NaN (it must be overwritten). */
static void moe_router_backward_case(int64_t N, int E, int k, int renorm, float zc) {
    pair H = MK2(N, E), probs = MK2(N, E), lse = MK1(N), topv = MK2(N, k), gates = MK2(N, k);
    pair topi = mk(FL_I32, 2, N, k, 1, 1), keys = mk(FL_I32, 1, N * k, 1, 1, 1), count = mk(FL_I32, 1, E, 1, 1, 1);
    pair dgate = MK2(N, k), dbal = MK1(E), dl = MK2(N, E);
    prandn(&H, (uint64_t)(300 + E), 1.5f);
    prandn(&dgate, (uint64_t)(301 + E), 1.0f);
    prandn(&dbal, (uint64_t)(302 + E), 0.3f);
    CPU->ops.softmax(&H.c, &probs.c);
    CPU->ops.logsumexp(&H.c, &lse.c);
    CPU->ops.topk(&probs.c, k, &topv.c, &topi.c);
    ok(moe_route(&HC, &topv.c, &topi.c, E, renorm, -1, &gates.c, &keys.c, &count.c, &g_scratch_c, &g_err));
    pcopy_to_gpu(&probs), pcopy_to_gpu(&lse), pcopy_to_gpu(&topv), pcopy_to_gpu(&topi), pcopy_to_gpu(&gates);
    pfill(&dl, NAN);
    ok(moe_router_backward(&HC, &probs.c, &lse.c, &topv.c, &topi.c, &gates.c, &dgate.c, &dbal.c, renorm, zc, &dl.c,
                           &g_err));
    ok(moe_router_backward(&HG, &probs.g, &lse.g, &topv.g, &topi.g, &gates.g, &dgate.g, &dbal.g, renorm, zc, &dl.g,
                           &g_err));
    gpu_ok();
    char what[96];
    snprintf(what, sizeof what, "moe_router_backward N=%lld E=%d k=%d renorm=%d", (long long)N, E, k, renorm);
    cmp_close(&dl, 1e-5, 1e-6, what);
    pair *all[] = {&H, &probs, &lse, &topv, &gates, &topi, &keys, &count, &dgate, &dbal, &dl};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pfree(all[i]);
}

static void test_moe_router_backward(void **state) {
    (void)state;
    for (int k = 1; k <= 3; k++)
        for (int renorm = 0; renorm < 2; renorm++) moe_router_backward_case(257, 8, k, renorm, 0.02f);
    moe_router_backward_case(100, 64, 2, 1, 0.0f);
    moe_router_backward_case(33, 300, 3, 0, 0.01f); /* rows longer than a warp's pass */
}

/* ------------------------------------------------------------------------ */
/* pkm: pkm_topk.h (pkm_product_topk and its backward). pair, slot, gix      */
/* bit-identical (the same float sums and compares); w 1e-5 relative (expf's */
/* last bits); g 1e-6 (the same additions in the same order).               */
/* ------------------------------------------------------------------------ */

static int cmp_desc_f(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* v, ix [2H,N,k]: each row descending (levels > 0: values in 0..levels-1,
   ties everywhere), ix distinct sub-keys in [0, n_keys) */
static void pk_lists(pair *v, pair *ix, int64_t rows, int64_t k, int64_t n_keys, int levels, uint64_t seed) {
    float *hv = malloc(v->bytes + 4);
    int32_t *hi = malloc(ix->bytes + 4), *perm = malloc((size_t)n_keys * sizeof *perm);
    for (int64_t r = 0; r < rows; r++) {
        float *row = hv + r * k;
        for (int64_t a = 0; a < k; a++)
            row[a] = levels ? (float)(fl_rng_bits(seed, (uint64_t)(r * k + a)) % (uint64_t)levels)
                            : fl_rng_normal(seed, (uint64_t)(r * k + a));
        qsort(row, (size_t)k, sizeof *row, cmp_desc_f);
        for (int64_t i = 0; i < n_keys; i++) perm[i] = (int32_t)i;
        for (int64_t a = 0; a < k; a++) {
            const int64_t j = a + (int64_t)(fl_rng_bits(seed + 1, (uint64_t)(r * k + a)) % (uint64_t)(n_keys - a));
            const int32_t t = perm[a];
            perm[a] = perm[j], perm[j] = t;
            hi[r * k + a] = perm[a];
        }
    }
    pset(v, hv), pset(ix, hi);
    free(hv), free(hi), free(perm);
}

static void product_topk_case(int64_t N, int H, int64_t k, int64_t n_keys, int levels) {
    const int64_t hk = H * k;
    pair v = MK3(2 * H, N, k), ix = mk(FL_I32, 3, 2 * H, N, k, 1);
    pair w = MK2(N, hk), slot = mk(FL_I32, 2, N, hk, 1, 1), pr = mk(FL_I32, 2, N, hk, 1, 1);
    pair ds = MK2(N, hk), g = MK3(2 * H, N, k), gix = mk(FL_I32, 3, 2 * H, N, k, 1);
    pk_lists(&v, &ix, 2 * H * N, k, n_keys, levels, (uint64_t)(400 + k));
    prandn(&ds, (uint64_t)(401 + k), 1.0f);
    pfill(&w, NAN), pfill(&g, NAN);
    ok(pkm_product_topk(&HC, &v.c, &ix.c, H, n_keys, &w.c, &slot.c, &pr.c, &g_err));
    ok(pkm_product_topk(&HG, &v.g, &ix.g, H, n_keys, &w.g, &slot.g, &pr.g, &g_err));
    char what[96];
    snprintf(what, sizeof what, "product_topk N=%lld H=%d k=%lld%s pair", (long long)N, H, (long long)k,
             levels ? " ties" : "");
    cmp_exact(&pr, what);
    cmp_exact(&slot, "product_topk slot");
    cmp_close(&w, 1e-5, 1e-7, "product_topk w (softmax)");
    ok(pkm_product_topk_backward(&HC, &ds.c, &pr.c, &ix.c, H, &g.c, &gix.c, &g_err));
    ok(pkm_product_topk_backward(&HG, &ds.g, &pr.g, &ix.g, H, &g.g, &gix.g, &g_err));
    cmp_close(&g, 1e-6, 1e-7, "product_topk_backward g");
    cmp_exact(&gix, "product_topk_backward gix");
    pair *all[] = {&v, &ix, &w, &slot, &pr, &ds, &g, &gix};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pfree(all[i]);
}

static void test_product_topk(void **state) {
    (void)state;
    product_topk_case(300, 4, 32, 64, 0); /* the bench's d=512 layer */
    product_topk_case(257, 4, 14, 56, 0);
    product_topk_case(50, 2, 1, 3, 0);    /* knn = 1 */
    product_topk_case(40, 3, 9, 9, 0);    /* knn = n_keys */
    product_topk_case(100, 2, 12, 20, 3); /* ties everywhere */
    product_topk_case(20, 1, 8, 8, 1);    /* all scores equal */
}

int main(void) {
    CPU = fl_backend_cpu();
#ifdef FFNLAB_TEST_CUDA_EMU
    int g = ts_gpu_under_test("test_cuda_plugin_kernels_emu", ts_cuda_emu_backend, &GPU);
#else
    int g = ts_gpu_under_test("test_cuda_plugin_kernels", NULL, &GPU);
#endif
    if (g == 77) return 77; /* ctest: SKIP_RETURN_CODE */
    fl_host_init(&HC, CPU, NULL);
    fl_host_init(&HG, GPU, NULL);
    if (GPU != CPU) HG.device = (fl_device){FL_DEVICE_CUDA, 0};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_select),
        cmocka_unit_test(test_block_argmax),
        cmocka_unit_test(test_moe_route),
        cmocka_unit_test(test_moe_index),
        cmocka_unit_test(test_moe_router_backward),
        cmocka_unit_test(test_product_topk),
    };
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    HC.tensor_release(&HC, &g_scratch_c);
    HG.tensor_release(&HG, &g_scratch_g);
    return failed;
}
