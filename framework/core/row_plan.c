/*
 * core/row_plan.c — the plan of a shared-rows forward (row_plan.h).
 */
#include "row_plan.h"

#include <stdlib.h>
#include <string.h>

void fl_row_plan_free(fl_row_plan *p) {
    free(p->own), free(p->src), free(p->tok), free(p->pos), free(p->lay_tok), free(p->start), free(p->len);
    memset(p, 0, sizeof *p);
}

/* Arrays for B sequences of up to T rows (grow-only). */
static fl_status reserve(fl_row_plan *p, int B, int T, fl_error *err) {
    const int64_t N = (int64_t)B * T;
    if (N <= p->cap_rows && B <= p->cap_B && T <= p->cap_T) return FL_OK;
    fl_row_plan_free(p);
    const size_t n = (size_t)N * sizeof(int32_t);
    p->own = malloc(n), p->src = malloc(n), p->tok = malloc(n), p->pos = malloc(n), p->lay_tok = malloc(n);
    p->start = malloc((size_t)(2 * (T + 2)) * sizeof *p->start); /* start, then the cursors */
    p->len = malloc((size_t)B * sizeof *p->len);
    if (!p->own || !p->src || !p->tok || !p->pos || !p->lay_tok || !p->start || !p->len) {
        fl_row_plan_free(p);
        return fl_fail(err, FL_ENOMEM, "out of memory planning a shared forward of %d x %d rows", B, T);
    }
    p->cap_rows = N, p->cap_B = B, p->cap_T = T;
    return FL_OK;
}

/* Why row r may not be what same_as[r] says (model.h), or NULL. Rows before
   r are checked, so a row it names is computed and follows no padding. */
static const char *broken_rule(const int32_t *tokens, const int32_t *same_as, int64_t r, int T) {
    const int64_t t = r % T, s = same_as[r];
    if (s < 0) return NULL;
    if (t > 0 && same_as[r - 1] < 0) return "follows a padding row";
    if (s == r) return NULL;
    if (s > r) return "names a later row";
    if (same_as[s] != s) return "names a row that is not computed itself";
    if (s % T != t || tokens[s] != tokens[r]) return "names a row of another token or position";
    if (t > 0 && same_as[r - 1] != same_as[s - 1]) return "names a row whose earlier tokens differ";
    return NULL;
}

/* The layout: sequences grouped by length, in batch order within a group. */
static void lay_out(fl_row_plan *p, const int32_t *tokens, const int32_t *same_as, int B, int T,
                    const int32_t *hidden_row) {
    int64_t *start = p->start, *next = p->start + (T + 2);
    memset(start, 0, (size_t)(T + 2) * sizeof *start);
    for (int b = 0; b < B; b++) start[p->len[b] + 1] += p->len[b];
    start[0] = start[1] = 0;
    for (int l = 1; l <= T; l++) start[l + 1] += start[l];
    memcpy(next, start, (size_t)(T + 2) * sizeof *next);
    for (int b = 0; b < B; b++) {
        const int l = p->len[b];
        if (l == 0) continue;
        const int64_t at = next[l];
        next[l] += l;
        for (int t = 0; t < l; t++) {
            const int64_t r = (int64_t)b * T + t;
            p->src[at + t] = hidden_row[r];
            p->lay_tok[at + t] = tokens[r];
            if (same_as[r] == r) p->own[hidden_row[r]] = (int32_t)(at + t);
        }
    }
    p->L = start[T + 1];
}

fl_status fl_row_plan_build(fl_row_plan *p, const int32_t *tokens, const int32_t *same_as, int B, int T,
                            int32_t *hidden_row, fl_error *err) {
    fl_status st = reserve(p, B, T, err);
    if (st) return st;
    int64_t n = 0;
    memset(p->len, 0, (size_t)B * sizeof *p->len);
    for (int64_t r = 0; r < (int64_t)B * T; r++) {
        const char *bad = broken_rule(tokens, same_as, r, T);
        if (bad)
            return fl_fail(err, FL_EINVAL, "shared forward: row %lld (sequence %lld, position %lld) %s (same_as %d)",
                           (long long)r, (long long)(r / T), (long long)(r % T), bad, same_as[r]);
        const int64_t s = same_as[r];
        hidden_row[r] = s < 0 ? -1 : s == r ? (int32_t)n++ : hidden_row[s];
        if (s == r) p->tok[n - 1] = tokens[r], p->pos[n - 1] = (int32_t)(r % T);
        if (s >= 0) p->len[r / T]++;
    }
    if (n == 0) return fl_fail(err, FL_EINVAL, "shared forward: every row is padding");
    p->n = n, p->T = T;
    lay_out(p, tokens, same_as, B, T, hidden_row);
    return FL_OK;
}
