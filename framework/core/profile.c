/*
 * core/profile.c — per-phase wall time of training steps (see profile.h).
 */
#include "profile.h"
#include "backend.h"
#include "clock.h"

#include <string.h>

void fl_profile_init(fl_profile *p, const fl_backend *be) {
    memset(p, 0, sizeof *p);
    p->be = be;
    p->since = fl_now_s();
}

void fl_profile_mark(fl_profile *p, fl_phase phase) {
    if (!p) return;
    if (p->be->sync) p->be->sync(NULL); /* the device has finished the phase's work */
    const double t = fl_now_s();
    if (p->current != FL_PH_NONE) p->seconds[p->current] += t - p->since;
    p->current = (int)phase;
    p->since = t;
}

const char *fl_profile_name(fl_phase phase) {
    static const char *const names[FL_PH_COUNT] = {
        [FL_PH_NONE] = "-", [FL_PH_EMBED] = "embedding", [FL_PH_NORM] = "layer norms",
        [FL_PH_QKV] = "qkv projection", [FL_PH_ATTENTION] = "attention", [FL_PH_PROJ] = "output projection",
        [FL_PH_FFN] = "FFN plugin", [FL_PH_HEAD] = "LM head", [FL_PH_LOSS] = "cross-entropy",
        [FL_PH_HEAD_BWD] = "LM head backward", [FL_PH_NORM_BWD] = "layer norms backward",
        [FL_PH_FFN_BWD] = "FFN plugin backward", [FL_PH_PROJ_BWD] = "output projection backward",
        [FL_PH_ATTENTION_BWD] = "attention backward", [FL_PH_QKV_BWD] = "qkv projection backward",
        [FL_PH_EMBED_BWD] = "embedding backward", [FL_PH_OPTIMIZER] = "optimizer (zero grad, AdamW)"};
    return phase >= 0 && phase < FL_PH_COUNT ? names[phase] : "?";
}

void fl_profile_print_ms(const double ms[FL_PH_COUNT], FILE *f) {
    double total = 0;
    for (int i = 1; i < FL_PH_COUNT; i++) total += ms[i];
    fprintf(f, "profile (the device synchronised at every phase boundary):\n");
    fprintf(f, "  %-30s %10s %7s\n", "phase", "ms/step", "share");
    for (int i = 1; i < FL_PH_COUNT; i++)
        fprintf(f, "  %-30s %10.3f %6.1f%%\n", fl_profile_name((fl_phase)i), ms[i], total > 0 ? 100.0 * ms[i] / total : 0.0);
    fprintf(f, "  %-30s %10.3f\n", "total", total);
}
