/*
 * tests/test_cuda_flash_emu.cpp — the CUDA flash attention kernels
 * (framework/backends/cuda/cu_flash_attention.cu), run on the CPU through
 * tests/support/cuda_emu.h (compiled in tests/support/cuda_emu_backend.cpp),
 * against the CPU backend's attention, called directly so that the shapes
 * and modes that take the flash path are checked too. It checks
 * what a machine without a GPU can: the tiling, every mask (causal,
 * bidirectional, padded, local, rows that see nothing), the online
 * softmax and its log-sum-exps, both backward kernels, shared-memory layout
 * and alignment, barrier placement (a thread at a different barrier aborts;
 * threads run in both orders), and which shapes take the flash path. The
 * same comparisons run on a real GPU in test_cuda_backend.
 *
 * Tolerances (normwise ‖flash − cpu‖ / ‖cpu‖; gradients twice that): tf32
 * 2e-3, bf16 1e-2 (measured: ≤ 7e-4 and ≤ 4.3e-3, the rounding of the
 * inputs; one wrong mask entry or a lost tile costs far more); log-sum-exps
 * the same figures, absolute, against double sums. Measured figures are
 * printed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_emu.h"

extern "C" {
#include "backend.h"
#include "ffnlab/rng.h"
#include "host_table.h"
#include "support.h"
}

#include "cuda_emu_backend.h"

namespace emu_cuda { /* the kernels and state of tests/support/cuda_emu_backend.cpp */
#include "cu_ops.h"
}
using namespace emu_cuda;

#include <vector>

static const fl_backend *cpu;

static fl_tensor wrap(std::vector<float> &v, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    const int64_t shape[3] = {d0, d1, d2};
    return fl_wrap(v.data(), FL_F32, cpu->device, ndim, shape);
}

static double rel_norm(const std::vector<float> &a, const std::vector<float> &b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (!std::isfinite(a[i])) return INFINITY; /* an entry never written (NaN fill) */
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* A mask case: backend.h's rules, lengths on the host (they are device
   memory to the kernels, which the emulation shares). */
struct mcase {
    int causal;
    int64_t window;
    const int32_t *len; /* [B] or NULL */
};

static int sees(const mcase &mk, int64_t b, int64_t i, int64_t j) {
    if (mk.len && j >= mk.len[b]) return 0;
    if (mk.causal && j > i) return 0;
    return !(mk.window > 0 && llabs(i - j) >= mk.window);
}

/* The log-sum-exp of row i's scores over the keys it sees; +inf for none. */
static double ref_lse(const std::vector<float> &qkv, int64_t T, int64_t C, int64_t hs, int64_t b, int64_t h,
                      int64_t i, const mcase &mk) {
    std::vector<double> s((size_t)T);
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < T; j++) {
        if (!sees(mk, b, i, j)) continue;
        const float *q = &qkv[(size_t)((b * T + i) * 3 * C + h * hs)], *k = &qkv[(size_t)((b * T + j) * 3 * C + C + h * hs)];
        double d = 0;
        for (int64_t c = 0; c < hs; c++) d += (double)q[c] * k[c];
        s[(size_t)j] = d / sqrt((double)hs);
        m = fmax(m, s[(size_t)j]);
    }
    for (int64_t j = 0; j < T; j++)
        if (sees(mk, b, i, j)) sum += exp(s[(size_t)j] - m);
    return sum > 0 ? m + log(sum) : INFINITY;
}

static void check(const char *what, double err, double tol) {
    print_message("  %-48s %.2e  (tol %.0e)\n", what, err, tol);
    if (!(err <= tol)) fail_msg("%s: %.3g > %.3g", what, err, tol);
}

static const mcase CAUSAL = {1, 0, NULL};

/* One shape and mask in the current emulated math mode. */
static void flash_case(int64_t B, int64_t T, int64_t C, int H, double tol, const mcase &mk = CAUSAL) {
    const int64_t N = B * T, hs = C / H;
    assert_true(cu_flash_supported(hs));
    std::vector<float> qkv((size_t)(N * 3 * C)), dy((size_t)(N * C));
    for (size_t i = 0; i < qkv.size(); i++) qkv[i] = fl_rng_normal(7 + (uint64_t)T, i);
    for (size_t i = 0; i < dy.size(); i++) dy[i] = fl_rng_normal(8 + (uint64_t)T, i);
    /* the CPU backend: probabilities, output, gradients */
    std::vector<float> y_ref((size_t)(N * C)), att((size_t)cpu->attention_saved_numel(B, T, C, H)),
        dqkv_ref(qkv.size());
    fl_tensor tq = wrap(qkv, 3, B, T, 3 * C), ty = wrap(y_ref, 3, B, T, C), ta = wrap(att, 1, (int64_t)att.size(), 1, 1),
              tdy = wrap(dy, 3, B, T, C), tdq = wrap(dqkv_ref, 3, B, T, 3 * C);
    std::vector<int32_t> lens(mk.len ? mk.len : (const int32_t *)NULL, mk.len ? mk.len + B : (const int32_t *)NULL);
    const int64_t lshape[1] = {B};
    fl_tensor tl = fl_wrap(lens.data(), FL_I32, cpu->device, 1, lshape);
    const fl_attn_mask cmask = {mk.causal, mk.window, mk.len ? &tl : NULL};
    cpu->attention(&tq, H, &cmask, &ty, &ta);
    cpu->attention_backward(&tq, &ty, &ta, H, &cmask, &tdy, &tdq);
    /* the flash kernels, every output pre-filled with NaN */
    std::vector<float> y((size_t)(N * C), NAN), lse((size_t)(B * H * T), NAN), dqkv(qkv.size(), NAN);
    const fl_attn_rule rule = {mk.causal, mk.window};
    const int32_t *dlen = mk.len ? lens.data() : NULL;
    cu_flash_forward(qkv.data(), B, T, C, H, rule, dlen, y.data(), lse.data());
    cu_flash_backward(qkv.data(), y.data(), lse.data(), dy.data(), B, T, C, H, rule, dlen, dqkv.data());
    char what[128];
    const int len = snprintf(what, sizeof what, "%s B%lld T%lld C%lld H%d %s%s w%lld",
                             g_cu.math == CU_MATH_BF16 ? "bf16" : "tf32", (long long)B, (long long)T, (long long)C, H,
                             mk.causal ? "causal" : "bidi", mk.len ? " padded" : "", (long long)mk.window);
    snprintf(what + len, sizeof what - (size_t)len, " y");
    check(what, rel_norm(y, y_ref), tol);
    double worst = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const double want = ref_lse(qkv, T, C, hs, b, h, i, mk), got = lse[(size_t)((b * H + h) * T + i)];
                const double d = want == INFINITY ? (got == INFINITY ? 0 : INFINITY) : fabs(got - want);
                worst = d <= worst ? worst : d; /* NaN stays */
            }
    snprintf(what + len, sizeof what - (size_t)len, " lse (max abs)");
    check(what, worst, tol);
    snprintf(what + len, sizeof what - (size_t)len, " dqkv");
    check(what, rel_norm(dqkv, dqkv_ref), 2 * tol);
}

static void test_flash_tf32(void **state) {
    (void)state;
    g_cu.math = CU_MATH_TF32;
    flash_case(1, 1, 64, 1, 2e-3);   /* one row */
    flash_case(1, 64, 64, 2, 2e-3);  /* exactly one tile, hs 32 */
    flash_case(2, 130, 128, 2, 2e-3); /* three tiles, the last ragged, hs 64 */
    flash_case(1, 77, 128, 1, 2e-3); /* hs 128 */
}

/* The encoder's and GPT-Neo's masks: bidirectional; padded (a sequence of
   one token, lengths inside and at the end of a tile, a whole tile of
   padding); local windows narrower than a tile, crossing tiles and wider
   than T; bidirectional local with padding, where padded queries far past
   their length see no key (y = 0, lse = +inf). */
static void test_flash_masks(void **state) {
    (void)state;
    static const int32_t len2[2] = {130, 1}, len3[3] = {63, 70, 200};
    const mcase bidi = {0, 0, NULL}, pad = {0, 0, len2}, pad3 = {0, 0, len3};
    const mcase local = {1, 20, NULL}, local_wide = {1, 100, NULL}, local_all = {1, 300, NULL};
    const mcase bidi_local_pad = {0, 30, len3};
    g_cu.math = CU_MATH_TF32;
    flash_case(2, 130, 128, 2, 2e-3, bidi);
    flash_case(2, 130, 128, 2, 2e-3, pad);
    flash_case(3, 200, 64, 2, 2e-3, pad3);
    flash_case(1, 200, 64, 2, 2e-3, local);
    flash_case(1, 200, 64, 1, 2e-3, local_wide);
    flash_case(1, 200, 64, 1, 2e-3, local_all);
    flash_case(3, 200, 64, 2, 2e-3, bidi_local_pad);
    g_cu.math = CU_MATH_BF16;
    flash_case(2, 130, 128, 2, 1e-2, pad);
    flash_case(1, 200, 64, 2, 1e-2, local);
    g_cu.math = CU_MATH_TF32;
}

static void test_flash_bf16(void **state) {
    (void)state;
    g_cu.math = CU_MATH_BF16;
    flash_case(1, 1, 64, 1, 1e-2);
    flash_case(2, 130, 128, 2, 1e-2);
    flash_case(1, 77, 128, 1, 1e-2);
    g_cu.math = CU_MATH_TF32;
}

/* Which shapes and modes take the flash path: head sizes 32/64/128 in the
   tensor-core modes, within the GPU's shared memory per block. */
static void test_flash_supported(void **state) {
    (void)state;
    g_cu.math = CU_MATH_TF32;
    g_cu.prop.sharedMemPerBlockOptin = 232448; /* H100 */
    assert_true(cu_flash_supported(32) && cu_flash_supported(64) && cu_flash_supported(128));
    assert_false(cu_flash_supported(48) || cu_flash_supported(16) || cu_flash_supported(256));
    g_cu.prop.sharedMemPerBlockOptin = 166912; /* A100: tf32 at 128 does not fit, bf16 does */
    assert_true(cu_flash_supported(64));
    assert_false(cu_flash_supported(128));
    g_cu.math = CU_MATH_BF16;
    assert_true(cu_flash_supported(128));
    g_cu.math = CU_MATH_FP32; /* fp32 keeps the exact cuBLAS products */
    assert_false(cu_flash_supported(64));
    g_cu.math = CU_MATH_TF32;
    g_cu.attention_gemm = 1; /* FFNLAB_CUDA_ATTENTION=gemm */
    assert_false(cu_flash_supported(64));
    g_cu.attention_gemm = 0;
    g_cu.prop.sharedMemPerBlockOptin = 232448;
}

int main(void) {
    cpu = fl_backend_cpu();
    ts_cuda_emu_backend(); /* sets up the emulated device state */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flash_supported),
        cmocka_unit_test(test_flash_tf32),
        cmocka_unit_test(test_flash_bf16),
        cmocka_unit_test(test_flash_masks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
