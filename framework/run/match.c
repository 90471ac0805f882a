/*
 * run/match.c — sizing a variant to its dense reference (see match.h).
 *
 * The figure f(v) of the variant with its size option set to v is taken as
 * non-decreasing in v (the contract of size_options). Some values are not
 * valid (CNT's d_ff must be a multiple of its block count, PKM's k_dim even):
 * creating the layer fails there, so the search reads f at the next valid
 * value above v instead. It doubles v until f reaches the target, bisects for
 * the first valid value at or above the target, and keeps whichever of that
 * value and the valid one below it is closer.
 */
#include "match.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "loader.h"
#include "options.h"

#define MAX_SCAN 4096          /* invalid values skipped at most, looking for a valid one */

fl_status fl_match_parse(const char *text, fl_match *out, fl_error *err) {
    static const char *const names[] = {"none", "params", "flops"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(text, names[i])) {
            *out = (fl_match)i;
            return FL_OK;
        }
    return fl_fail(err, FL_EINVAL, "--match %s: expected params, flops or none", text);
}

const char *fl_match_name(fl_match m) { return m == FL_MATCH_PARAMS ? "params" : m == FL_MATCH_FLOPS ? "flops" : "none"; }

static double figure(const fl_ffn_size *s, fl_match how) { return how == FL_MATCH_FLOPS ? s->flops_per_token : s->params; }

typedef struct search {
    const char *variant;       /* "name" or "name:opts" as the user wrote it */
    const char *knob;
    const fl_ffn_site *site;
    fl_match how;
    const fl_backend *be;
    long long lo, hi;          /* the knob's range */
} search;

/* variant with knob=v appended; 0 when it does not fit in out. */
static int spec_with(const search *s, long long v, char *out, size_t n) {
    return snprintf(out, n, "%s%s%s=%lld", s->variant, strchr(s->variant, ':') ? "," : ":", s->knob, v) < (int)n;
}

/* The figure at the first valid value >= v (and <= hi): 1 and *at, *size
   when there is one. */
static int valid_from(const search *s, long long v, long long *at, fl_ffn_size *size) {
    for (long long k = 0; k < MAX_SCAN && v + k <= s->hi; k++) {
        char spec[FL_SPEC_MAX];
        fl_error ignored = {0};
        if (spec_with(s, v + k, spec, sizeof spec) &&
            fl_ffn_size_of(spec, s->site, s->be, NULL, size, &ignored) == FL_OK) {
            *at = v + k;
            return 1;
        }
    }
    return 0;
}

/* The same, downwards: the last valid value <= v (and >= lo). */
static int valid_below(const search *s, long long v, long long *at, fl_ffn_size *size) {
    for (long long k = 0; k < MAX_SCAN && v - k >= s->lo; k++) {
        char spec[FL_SPEC_MAX];
        fl_error ignored = {0};
        if (spec_with(s, v - k, spec, sizeof spec) &&
            fl_ffn_size_of(spec, s->site, s->be, NULL, size, &ignored) == FL_OK) {
            *at = v - k;
            return 1;
        }
    }
    return 0;
}

/* The valid values around target: *up the first whose figure reaches it,
   *down the last below it (each flagged when it exists). */
typedef struct bracket {
    int have_up, have_down;
    long long up, down;
    fl_ffn_size up_size, down_size;
} bracket;

static void bracket_target(const search *s, double target, bracket *b) {
    memset(b, 0, sizeof *b);
    long long v, below = s->lo, at;
    fl_ffn_size size;
    if (!valid_from(s, s->lo, &v, &size)) return;
    while (figure(&size, s->how) < target && v < s->hi) { /* double until the target is passed */
        below = v;
        long long next = v * 2 > s->hi ? s->hi : v * 2;
        if (!valid_from(s, next, &at, &size)) break;
        v = at;
    }
    long long lo = below, hi = v; /* f(valid_from(hi)) >= target (or hi is the end) */
    while (hi - lo > 1) {
        long long mid = lo + (hi - lo) / 2;
        fl_ffn_size m;
        if (valid_from(s, mid, &at, &m) && at <= hi && figure(&m, s->how) >= target) hi = at < hi ? at : mid;
        else lo = mid;
    }
    b->have_up = valid_from(s, hi, &b->up, &b->up_size) && figure(&b->up_size, s->how) >= target;
    b->have_down = valid_below(s, b->have_up ? b->up - 1 : hi, &b->down, &b->down_size);
}

/* The bracket's value closer to target (0 when it has none). */
static int closer(const bracket *b, fl_match how, double target, long long *v, fl_ffn_size *size) {
    if (!b->have_up && !b->have_down) return 0;
    const int down = !b->have_up || (b->have_down && fabs(figure(&b->down_size, how) - target) <
                                                         fabs(figure(&b->up_size, how) - target));
    *v = down ? b->down : b->up;
    *size = down ? b->down_size : b->up_size;
    return 1;
}

/* 1 when the variant's own option text sets key. */
static int user_fixed(const char *opts, const char *key) {
    size_t n = strlen(key);
    for (const char *p = opts; p && *p;) {
        if (!strncmp(p, key, n) && p[n] == '=') return 1;
        p = strchr(p, ',');
        if (p) p++;
    }
    return 0;
}

/* The integer range of option key in the plugin's table. */
static void option_range(const fl_plugin_header *h, const char *key, long long *lo, long long *hi) {
    *lo = 1, *hi = 1 << 20;
    for (int i = 0; i < h->n_options; i++)
        if (!strcmp(h->options[i].name, key)) {
            *lo = h->options[i].min > 1 ? (long long)h->options[i].min : 1;
            *hi = (long long)h->options[i].max;
        }
}

fl_status fl_match_ffn(const char *variant, const char *reference, const fl_ffn_site *site, fl_match how,
                       const fl_backend *be, fl_matched *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->spec, sizeof out->spec, "%s", variant);
    fl_status st = fl_ffn_size_of(reference, site, be, NULL, &out->reference, err);
    if (!st) st = fl_ffn_size_of(variant, site, be, NULL, &out->size, err); /* as given: its errors are the user's */
    if (st || how == FL_MATCH_NONE) return st;
    const double target = figure(&out->reference, how), tol = how == FL_MATCH_FLOPS ? 0.02 : 0.01;
    char name[128];
    const char *opts = NULL;
    fl_plugin p;
    if ((st = fl_spec_split(variant, name, sizeof name, &opts, err)) || (st = fl_plugin_load(name, FL_PLUGIN_FFN, &p, err)))
        return st;
    const char *const *knobs = fl_plugin_ffn(&p)->size_options;
    char tried[256] = "", base[FL_SPEC_MAX];
    snprintf(base, sizeof base, "%s", variant);
    double best_err = INFINITY;
    /* Each free size option in turn. One that cannot land within tolerance
       (its valid values are too far apart) is fixed at its last value below
       the target, and the next one fills the rest: CNT's d_ff in multiples
       of its block, then its controller rank. */
    for (int k = 0; knobs && knobs[k] && best_err > tol; k++) {
        if (user_fixed(opts, knobs[k])) continue;
        search s = {.variant = base, .knob = knobs[k], .site = site, .how = how, .be = be};
        option_range(p.header, knobs[k], &s.lo, &s.hi);
        snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", tried[0] ? ", " : "", knobs[k]);
        bracket b;
        bracket_target(&s, target, &b);
        long long v;
        fl_ffn_size size;
        if (closer(&b, how, target, &v, &size)) {
            const double e = fabs(figure(&size, how) - target) / target;
            if (e < best_err) {
                best_err = e;
                if (!spec_with(&s, v, out->spec, sizeof out->spec)) continue;
                snprintf(out->knob, sizeof out->knob, "%s", knobs[k]);
                out->value = v;
                out->size = size;
            }
        }
        /* the next option adds to this one's value below the target (or,
           when every value is above it, to the smallest) */
        char next[FL_SPEC_MAX];
        if (best_err > tol && (b.have_down || b.have_up) && spec_with(&s, b.have_down ? b.down : b.up, next, sizeof next))
            snprintf(base, sizeof base, "%s", next);
    }
    fl_plugin_unload(&p);
    out->rel_error = best_err;
    if (best_err <= tol) return FL_OK;
    if (!tried[0])
        return fl_fail(err, FL_EINVAL, "--match %s: '%s' fixes every size option of its plugin; leave one free",
                       fl_match_name(how), variant);
    if (!isfinite(best_err))
        return fl_fail(err, FL_EINVAL, "--match %s: '%s': no valid value of %s", fl_match_name(how), variant, tried);
    return fl_fail(err, FL_EINVAL, "--match %s: '%s' cannot reach the reference's %.4g %s by changing %s (closest: %s, "
                   "%.1f%% off)", fl_match_name(how), variant, target, how == FL_MATCH_FLOPS ? "FLOPs per token" : "parameters",
                   tried, out->spec, 100 * best_err);
}
