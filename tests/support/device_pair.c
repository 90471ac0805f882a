/*
 * tests/support/device_pair.c — see device_pair.h.
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

#include "device_pair.h"
#include "ffnlab/rng.h"
#include "support.h"

const fl_backend *CPU, *GPU;

fl_tensor talloc(const fl_backend *be, int dtype, int ndim, const int64_t *shape) {
    fl_tensor t = fl_wrap(NULL, dtype, be->device, ndim, shape);
    size_t bytes = fl_nbytes(&t);
    t.data = be->alloc(bytes ? bytes : 1);
    assert_non_null(t.data);
    t.capacity = bytes ? bytes : 1;
    return t;
}

/* pair of shape d0 x d1 x d2 x d3 (ndim dims) */
pair mk(int dtype, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    pair p;
    p.c = talloc(CPU, dtype, ndim, shape);
    p.g = talloc(GPU, dtype, ndim, shape);
    p.n = (size_t)fl_numel(&p.c);
    p.bytes = fl_nbytes(&p.c);
    return p;
}

void pfree(pair *p) {
    CPU->free(p->c.data);
    GPU->free(p->g.data);
    memset(p, 0, sizeof *p);
}

void pset(pair *p, const void *host) {
    CPU->ops.from_host(&p->c, host, p->bytes);
    GPU->ops.from_host(&p->g, host, p->bytes);
}

/* normal(0, scale) values, the same on both */
void prandn(pair *p, uint64_t seed, float scale) {
    float *h = malloc(p->n * sizeof *h + 4);
    for (size_t i = 0; i < p->n; i++) h[i] = fl_rng_normal(seed, i) * scale;
    pset(p, h);
    free(h);
}

void pfill(pair *p, float v) {
    CPU->ops.fill(&p->c, v);
    GPU->ops.fill(&p->g, v);
}

/* i32 values from a host array */
pair mk_i32(const int32_t *v, int ndim, int64_t d0, int64_t d1) {
    pair p = mk(FL_I32, ndim, d0, d1, 1, 1);
    pset(&p, v);
    return p;
}

void gpu_ok(void) {
    fl_error err = {0};
    if (GPU->sync) ts_assert_ok(GPU->sync(&err), &err);
}

/* Host copies of both sides (malloc'ed). */
void pget(const pair *p, void **c, void **g) {
    *c = malloc(p->bytes + 4);
    *g = malloc(p->bytes + 4);
    CPU->ops.to_host(*c, &p->c, p->bytes);
    GPU->ops.to_host(*g, &p->g, p->bytes);
    gpu_ok();
}

/* ‖g − c‖₂ / ‖c‖₂ ≤ tol; NaN/inf must agree in place. Prints the figure. */
double cmp_norm(const pair *p, double tol, const char *what) {
    float *c, *g;
    pget(p, (void **)&c, (void **)&g);
    double num = 0, den = 0, maxd = 0;
    size_t bad = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!isfinite(c[i]) || !isfinite(g[i])) {
            if (!(isnan(c[i]) && isnan(g[i])) && c[i] != g[i] && bad++ < 5)
                print_message("%s[%zu]: gpu %g, cpu %g\n", what, i, g[i], c[i]);
            continue;
        }
        double d = (double)g[i] - c[i];
        num += d * d, den += (double)c[i] * c[i];
        if (fabs(d) > maxd) maxd = fabs(d);
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    print_message("  %-44s rel %.2e  max|d| %.2e  (tol %.0e)\n", what, rel, maxd, tol);
    free(c), free(g);
    if (bad) fail_msg("%s: %zu non-finite values differ", what, bad);
    if (!(rel <= tol)) fail_msg("%s: normwise relative error %.3g > %.3g", what, rel, tol);
    return rel;
}

/* |g − c| ≤ atol + rtol |c| everywhere (equal infinities and NaN = NaN pass) */
void cmp_close(const pair *p, double rtol, double atol, const char *what) {
    float *c, *g;
    pget(p, (void **)&c, (void **)&g);
    size_t bad = 0, worst = 0;
    double maxd = 0, maxrel = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (c[i] == g[i] || (isnan(c[i]) && isnan(g[i]))) continue;
        double d = fabs((double)g[i] - (double)c[i]);
        if (!(d <= atol + rtol * fabs(c[i]))) {
            if (bad < 5) print_message("%s[%zu]: gpu %.8g, cpu %.8g (diff %.3g)\n", what, i, g[i], c[i], d);
            bad++;
        }
        if (!(d <= maxd)) maxd = d, worst = i;
        if (c[i] != 0 && d / fabs(c[i]) > maxrel) maxrel = d / fabs(c[i]);
    }
    print_message("  %-44s max|d| %.2e  max rel %.2e  (rtol %.0e, atol %.0e)\n", what, maxd, maxrel, rtol, atol);
    free(c), free(g);
    if (bad) fail_msg("%s: %zu of %zu values differ; largest diff %.3g at %zu", what, bad, p->n, maxd, worst);
}

/* bit-identical */
void cmp_exact(const pair *p, const char *what) {
    void *c, *g;
    pget(p, &c, &g);
    if (memcmp(c, g, p->bytes)) {
        size_t i = 0;
        while (((char *)c)[i] == ((char *)g)[i]) i++;
        fail_msg("%s: differs from byte %zu of %zu", what, i, p->bytes);
    }
    print_message("  %-44s identical\n", what);
    free(c), free(g);
}

/* Copies the CPU side of p over its GPU side (so both ops read one input). */
void pcopy_to_gpu(pair *p) {
    void *h = malloc(p->bytes + 4);
    CPU->ops.to_host(h, &p->c, p->bytes);
    GPU->ops.from_host(&p->g, h, p->bytes);
    free(h);
}
