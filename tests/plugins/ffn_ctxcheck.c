/*
 * tests/plugins/ffn_ctxcheck.c — an identity FFN (y = x, dx = dy) that
 * checks what the host tells it (FFN ABI 2.0) and fails its call, naming
 * what was wrong, when:
 *   - create: cfg->vocab_size is not positive;
 *   - forward/backward: ctx->tokens or ctx->positions is NULL, not i32
 *     [B,T] with B, T as ctx says, a token is outside [0, vocab_size), or
 *     the positions are not the same start + 0..T-1 in every row;
 *   - the start is not 0 in a training or full eval forward (T > 1), or, in
 *     a decoding step (T = 1 after one), not the position after the last;
 *   - in an eval forward of shared rows (B = 1, positions not consecutive:
 *     FFN ABI 2.1), a row i has a position outside [0, i] (a row at
 *     position t has its t earlier positions computed before it).
 * test_decode runs training, evaluation, prefill and decoding steps through
 * it: every model path must fill the context.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffnlab/ffn.h"

typedef struct layer {
    const fl_host *h;
    int64_t vocab, next; /* next: the position a decoding step must have (-1: none expected) */
} layer;

static fl_status create(const fl_host *h, const fl_ffn_config *c, void **out, fl_error *e) {
    if (c->vocab_size < 1) return h->error(e, FL_EINVAL, "ctxcheck: vocab_size %d", (int)c->vocab_size);
    layer *L = calloc(1, sizeof *L);
    if (!L) return h->error(e, FL_ENOMEM, "ctxcheck: out of memory");
    L->h = h, L->vocab = c->vocab_size, L->next = -1;
    *out = L;
    return FL_OK;
}

static int is_bt(const fl_tensor *t, const fl_ffn_ctx *c) {
    return t && t->dtype == FL_I32 && fl_numel(t) == (int64_t)c->B * c->T && t->shape[t->ndim - 1] == c->T;
}

/* FL_OK, or what is wrong with ctx (which = "forward" / "backward"). */
static fl_status check(layer *L, const fl_ffn_ctx *c, const char *which, fl_error *e) {
    const fl_host *h = L->h;
    if (!is_bt(c->tokens, c) || !is_bt(c->positions, c))
        return h->error(e, FL_EINVAL, "ctxcheck %s: tokens or positions missing or not i32 [%lld,%lld]", which,
                        (long long)c->B, (long long)c->T);
    const int64_t n = (int64_t)c->B * c->T;
    int32_t *tok = malloc((size_t)n * sizeof *tok), *pos = malloc((size_t)n * sizeof *pos);
    fl_status st = tok && pos ? FL_OK : h->error(e, FL_ENOMEM, "ctxcheck: out of memory");
    if (!st) {
        h->ops->to_host(tok, c->tokens, (size_t)n * sizeof *tok);
        h->ops->to_host(pos, c->positions, (size_t)n * sizeof *pos);
    }
    const int shared = !c->train && c->B == 1 && c->T > 1;
    for (int64_t i = 0; i < n && !st; i++) {
        if (tok[i] < 0 || tok[i] >= L->vocab)
            st = h->error(e, FL_EINVAL, "ctxcheck %s: token %d outside [0,%lld)", which, tok[i], (long long)L->vocab);
        else if (pos[i] != pos[0] + (int32_t)(i % c->T) && !(shared && pos[i] >= 0 && pos[i] <= i))
            st = h->error(e, FL_EINVAL, "ctxcheck %s: position[%lld] = %d, start %d", which, (long long)i, pos[i], pos[0]);
    }
    const int64_t want = c->T == 1 && !c->train && L->next >= 0 ? L->next : 0;
    if (!st && pos[0] != want)
        st = h->error(e, FL_EINVAL, "ctxcheck %s: starts at position %d, expected %lld", which, pos[0], (long long)want);
    if (!st && !c->train && !strcmp(which, "forward")) L->next = want + c->T;
    free(tok), free(pos);
    return st;
}

static fl_status forward(void *l, const fl_ffn_ctx *c, const fl_tensor *x, fl_tensor *y, fl_error *e) {
    layer *L = l;
    fl_status st = check(L, c, "forward", e);
    if (!st) L->h->ops->copy(x, y);
    return st;
}

static fl_status backward(void *l, const fl_ffn_ctx *c, const fl_tensor *dy, fl_tensor *dx, fl_error *e) {
    layer *L = l;
    fl_status st = check(L, c, "backward", e);
    if (!st) L->h->ops->copy(dy, dx);
    return st;
}

static void destroy(void *l) { free(l); }

static const fl_ffn_plugin D = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_FFN_ABI_MAJOR, .abi_minor = FL_FFN_ABI_MINOR,
               .struct_size = sizeof(fl_ffn_plugin), .kind = FL_PLUGIN_FFN, .name = "ctxcheck",
               .version = "0.0.1", .description = "identity FFN that checks the context it is told (test_decode)"},
    .devices = FL_DEVICES_ALL,
    .create = create,
    .forward = forward,
    .backward = backward,
    .destroy = destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &D.header; }
