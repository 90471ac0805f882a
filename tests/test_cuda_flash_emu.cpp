/*
 * tests/test_cuda_flash_emu.cpp — the CUDA flash attention kernels
 * (framework/backends/cuda/cu_flash_attention.cu), run on the CPU through
 * tests/support/cuda_emu.h (compiled in tests/support/cuda_emu_backend.cpp),
 * against the CPU backend's attention, called directly so that the shapes
 * and modes that take the flash path are checked too. It checks
 * what a machine without a GPU can: the tiling, the causal mask, the online
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

static double ref_lse(const std::vector<float> &qkv, int64_t T, int64_t C, int64_t hs, int64_t b, int64_t h,
                      int64_t i) {
    std::vector<double> s((size_t)i + 1);
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j <= i; j++) {
        const float *q = &qkv[(size_t)((b * T + i) * 3 * C + h * hs)], *k = &qkv[(size_t)((b * T + j) * 3 * C + C + h * hs)];
        double d = 0;
        for (int64_t c = 0; c < hs; c++) d += (double)q[c] * k[c];
        s[(size_t)j] = d / sqrt((double)hs);
        m = fmax(m, s[(size_t)j]);
    }
    for (int64_t j = 0; j <= i; j++) sum += exp(s[(size_t)j] - m);
    return m + log(sum);
}

static void check(const char *what, double err, double tol) {
    print_message("  %-48s %.2e  (tol %.0e)\n", what, err, tol);
    if (!(err <= tol)) fail_msg("%s: %.3g > %.3g", what, err, tol);
}

/* One shape in the current emulated math mode. */
static void flash_case(int64_t B, int64_t T, int64_t C, int H, double tol) {
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
    cpu->attention(&tq, H, &ty, &ta);
    cpu->attention_backward(&tq, &ty, &ta, H, &tdy, &tdq);
    /* the flash kernels, every output pre-filled with NaN */
    std::vector<float> y((size_t)(N * C), NAN), lse((size_t)(B * H * T), NAN), dqkv(qkv.size(), NAN);
    cu_flash_forward(qkv.data(), B, T, C, H, y.data(), lse.data());
    cu_flash_backward(qkv.data(), y.data(), lse.data(), dy.data(), B, T, C, H, dqkv.data());
    char what[96];
    const int len = snprintf(what, sizeof what, "%s B%lld T%lld C%lld H%d", g_cu.math == CU_MATH_BF16 ? "bf16" : "tf32",
                             (long long)B, (long long)T, (long long)C, H);
    snprintf(what + len, sizeof what - (size_t)len, " y");
    check(what, rel_norm(y, y_ref), tol);
    double worst = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const double d = fabs(lse[(size_t)((b * H + h) * T + i)] - ref_lse(qkv, T, C, hs, b, h, i));
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
