/*
 * examples/ffn_template/units.cu — units_count on a GPU (units.h). One
 * thread per chosen id; integer atomics are exact in any order, so the
 * counts equal the CPU's. The launch goes on the host's stream
 * (FL_CUDA_LAUNCH), after the ops template.c issued before it.
 */
#include "ffnlab/kernel_cuda.h"

#include "units.h"

static __global__ void k_units_count(const int32_t *ids, int64_t n, int64_t d_ff, int32_t *count) {
    FL_CUDA_LOOP(i, n) {
        const int32_t j = ids[i];
        if (j >= 0 && j < d_ff) atomicAdd(&count[j], 1);
    }
}

fl_status units_count_cuda(const fl_host *h, const fl_tensor *u, int64_t d_ff, fl_tensor *count, fl_error *err) {
    const int64_t n = fl_numel(u);
    h->ops->fill(count, 0.0f); /* a host op, queued on the same stream */
    if (n == 0) return FL_OK;
    FL_CUDA_LAUNCH(h, fl_cuda_blocks(n), FL_CUDA_THREADS, 0, k_units_count)((const int32_t *)u->data, n, d_ff,
                                                                           (int32_t *)count->data);
    return fl_cuda_launched(h, "template: k_units_count", err);
}
