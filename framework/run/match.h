/*
 * run/match.h — sizing a sparse FFN variant to match a dense reference.
 *
 * The comparison is only fair at a stated size. `--match params` gives a
 * variant the total FFN parameters of the reference layer (within 1%);
 * `--match flops` its active FLOPs per token at inference (within 2%: MoE,
 * CNT). The matcher sets the plugin's size options (ffn.h, ABI 1.3) that the
 * variant's spec does not fix, in the plugin's order: the first one alone
 * when its valid values land within tolerance, else that one fixed just below
 * the target and the next one added to close the gap (CNT: d_ff in
 * multiples of its block, then the controller rank). Every option the user
 * wrote stays as written. Each candidate is the layer really created
 * (core/model_size.c), so the figures are the plugin's own.
 */
#ifndef FFNLAB_MATCH_H
#define FFNLAB_MATCH_H

typedef struct fl_backend fl_backend; /* defined in backends/backend.h */
#include "config.h"
#include "model_size.h"

typedef enum fl_match { FL_MATCH_NONE, FL_MATCH_PARAMS, FL_MATCH_FLOPS } fl_match;

/* "none", "params" or "flops" (anything else: one line naming the choices). */
fl_status fl_match_parse(const char *text, fl_match *out, fl_error *err);
const char *fl_match_name(fl_match m);

typedef struct fl_matched {
    char spec[FL_SPEC_MAX];    /* the variant with its size option set (as given when none) */
    char knob[64];             /* the last option the matcher set, "" when it set none */
    long long value;           /* its value (spec holds every option set) */
    fl_ffn_size size;          /* one layer of spec, and of the reference */
    fl_ffn_size reference;
    double rel_error;          /* |figure - reference's| / reference's, for the matched figure */
} fl_matched;

/* variant (a spec: "moe", "moe:top_k=2") sized against reference (usually
   "dense:d_ff=4096") for a layer at site (its width, its model's depth and
   vocabulary), on be.
   FL_MATCH_NONE only measures. A variant that cannot be matched (no free
   size option reaches the target within tolerance) is an error naming the
   options tried and the closest figure. */
fl_status fl_match_ffn(const char *variant, const char *reference, const fl_ffn_site *site, fl_match how,
                       const fl_backend *be, fl_matched *out, fl_error *err);

#endif
