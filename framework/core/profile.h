/*
 * core/profile.h — where a training step's time goes (`ffnlab bench
 * --profile`): the model and the bench mark phase boundaries; each mark
 * waits for the device (be->sync) and adds the wall time since the last
 * mark to the phase that was running. Marking costs one device round trip,
 * so a profiled step is a little slower than an unprofiled one (the bench
 * prints both); a NULL profile makes every mark a no-op.
 */
#ifndef FFNLAB_PROFILE_H
#define FFNLAB_PROFILE_H

#include <stdio.h>

typedef struct fl_backend fl_backend; /* defined in backends/backend.h */

typedef enum fl_phase {
    FL_PH_NONE = 0,      /* between steps: not counted */
    FL_PH_EMBED,         /* token + position embedding */
    FL_PH_NORM,          /* layer norms, forward */
    FL_PH_QKV,           /* q|k|v projection and bias */
    FL_PH_ATTENTION,     /* causal attention */
    FL_PH_PROJ,          /* attention output projection, bias, residual */
    FL_PH_FFN,           /* the FFN plugin's forward and its residual add */
    FL_PH_HEAD,          /* LM head GEMM */
    FL_PH_LOSS,          /* cross-entropy (and the loss copy to the host) */
    FL_PH_HEAD_BWD,      /* LM head gradients */
    FL_PH_NORM_BWD,      /* layer norms, backward, and residual gradient adds */
    FL_PH_FFN_BWD,       /* the FFN plugin's backward */
    FL_PH_PROJ_BWD,      /* output projection gradients */
    FL_PH_ATTENTION_BWD, /* causal attention backward */
    FL_PH_QKV_BWD,       /* q|k|v projection gradients */
    FL_PH_EMBED_BWD,     /* embedding gradients */
    FL_PH_OPTIMIZER,     /* zeroing gradients, AdamW */
    FL_PH_COUNT
} fl_phase;

typedef struct fl_profile {
    const fl_backend *be;
    double seconds[FL_PH_COUNT];
    int current;         /* the phase running since `since` */
    double since;
} fl_profile;

void fl_profile_init(fl_profile *p, const fl_backend *be);
/* Ends the running phase (after the device finished it) and starts `phase`. */
void fl_profile_mark(fl_profile *p, fl_phase phase);
const char *fl_profile_name(fl_phase phase);
/* A table: per phase ms per step (ms[phase]) and share of the counted total. */
void fl_profile_print_ms(const double ms[FL_PH_COUNT], FILE *f);

#endif
