/*
 * examples/ffn_template/units.c — units_count's checks, its CPU code, and
 * the choice of device (units.h).
 */
#include "units.h"

fl_status units_count(const fl_host *h, const fl_tensor *u, int64_t d_ff, fl_tensor *count, fl_error *err) {
    if (u->dtype != FL_I32 || count->dtype != FL_I32 || fl_numel(count) != d_ff)
        return h->error(err, FL_EINVAL, "template: units_count: u must be i32 and count i32 [%lld]", (long long)d_ff);
    if (h->device.kind == FL_DEVICE_CPU) {
        const int32_t *ids = (const int32_t *)u->data;
        int32_t *c = (int32_t *)count->data;
        for (int64_t j = 0; j < d_ff; j++) c[j] = 0;
        for (int64_t i = 0; i < fl_numel(u); i++)
            if (ids[i] >= 0 && ids[i] < d_ff) c[ids[i]]++;
        return FL_OK;
    }
#ifdef FFNLAB_PLUGIN_CUDA
    if (h->device.kind == FL_DEVICE_CUDA) return units_count_cuda(h, u, d_ff, count, err);
#endif
    /* not reached: the descriptor's .devices lists only the devices built */
    return h->error(err, FL_EUNSUPPORTED, "template: no units_count for device kind %d", (int)h->device.kind);
}
