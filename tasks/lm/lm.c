/*
 * tasks/lm/lm.c — held-out perplexity: the lm task plugin.
 *
 * Scores every token of a held-out text once, given the tokens before it in
 * its window: windows of `context` tokens advance by `stride`; each window
 * scores only its last `stride` tokens (the first window scores all), so a
 * scored token sees at least context − stride tokens of history. The default
 * stride, context − 1, makes windows meet without overlap (fastest; each
 * token's history restarts at a window edge). Reports the mean negative
 * log-likelihood (nats/token), perplexity, bits per token, and bits per byte
 * of the decoded text (comparable across tokenizers).
 *
 * Data: a token shard (`ffnlab data prepare` output), or a text / JSON Lines
 * corpus encoded with the run's tokenizer; by default the run's own
 * validation shard.
 *
 * An encoder (arch bert) has no next-token probabilities; for it the task
 * reports the held-out masked-LM loss instead: windows of <s> and context-1
 * tokens (each <|endoftext|> shown as </s>, as in training), 15% of the
 * ordinary tokens chosen by a fixed hash of their position in the data and
 * all of them replaced by <mask> (the same positions in every evaluation
 * and every model), scored by svc->masked_logprobs: mlm_loss (nats per
 * masked token) and mlm_perplexity. (Training's validation loss draws
 * RoBERTa's 80/10/10 replacements instead, so the two differ a little.)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/task_util.h"
#include "ffnlab/rng.h"
#include "ffnlab/task.h"

enum { OPT_DATA, OPT_STRIDE, OPT_BATCH, OPT_MAX_TOKENS, N_OPTIONS };

static const fl_option OPTIONS[N_OPTIONS] = {
    [OPT_DATA] = {"data", FL_OPT_STRING, "", 0, -1, NULL,
                  "token shard (.bin) or text/JSONL corpus; empty: the run's validation shard"},
    [OPT_STRIDE] = {"stride", FL_OPT_INT, "0", 0, 1 << 20, NULL,
                    "new tokens scored per window; 0: context - 1 (windows do not overlap)"},
    [OPT_BATCH] = {"batch_size", FL_OPT_INT, "0", 0, 65536, NULL, "windows per forward pass; 0: about 8192 tokens"},
    [OPT_MAX_TOKENS] = {"max_tokens", FL_OPT_INT, "0", 0, 1e15, NULL, "score only the first N tokens (0 = all)"},
};

#define CHUNK_WINDOWS 4096

typedef struct task {
    char *data;
    int64_t stride, max_tokens;
    int32_t batch;
} task;

static fl_status create(const fl_task_services *svc, const fl_task_config *cfg, void **out, fl_error *err) {
    const fl_value *v = cfg->values;
    if (v[OPT_STRIDE].i >= svc->context)
        return tu_fail(err, FL_EINVAL, "--task lm: stride %lld must be below the context (%d)", (long long)v[OPT_STRIDE].i,
                       svc->context);
    if (svc->context < 2) return tu_fail(err, FL_EINVAL, "--task lm: the model's context (%d) is too short", svc->context);
    task *t = calloc(1, sizeof *t);
    if (!t || !(t->data = strdup(v[OPT_DATA].s ? v[OPT_DATA].s : ""))) {
        free(t);
        return tu_fail(err, FL_ENOMEM, "out of memory");
    }
    t->stride = v[OPT_STRIDE].i ? v[OPT_STRIDE].i : svc->context - 1;
    t->max_tokens = v[OPT_MAX_TOKENS].i;
    t->batch = (int32_t)v[OPT_BATCH].i;
    *out = t;
    return FL_OK;
}

static void destroy(void *p) {
    task *t = p;
    free(t->data);
    free(t);
}

/* Windows over tokens [0, n): the next one ends `stride` past the last
   scored token (or at n) and starts context tokens before its end. */
typedef struct windows {
    int64_t n, T, stride, scored_to;   /* scored_to: tokens [1, scored_to) are done */
} windows;

static int next_window(windows *w, int64_t *start, int64_t *end, int64_t *from) {
    if (w->scored_to >= w->n) return 0;
    *end = w->scored_to ? w->scored_to + w->stride : w->T;
    if (*end > w->n) *end = w->n;
    *start = *end - w->T > 0 ? *end - w->T : 0;
    *from = w->scored_to ? w->scored_to - *start : 1;
    w->scored_to = *end;
    return 1;
}

typedef struct totals {
    double nll;
    int64_t tokens;
} totals;

/* Scores up to CHUNK_WINDOWS windows into *sum; *more = 0 once none are left. */
static fl_status score_chunk(const fl_task_services *svc, const task *t, const int32_t *ids, windows *w, totals *sum,
                             int *more, fl_error *err) {
    tu_seqs s;
    int64_t from[CHUNK_WINDOWS], start, end, f;
    fl_status st = tu_seqs_init(&s, err);
    int k = 0;
    while (!st && k < CHUNK_WINDOWS && next_window(w, &start, &end, &f)) {
        const int32_t *part = ids + start;
        size_t len = (size_t)(end - start);
        from[k++] = f;
        st = tu_seqs_add(&s, &part, &len, 1, err);
    }
    *more = k > 0;
    float *out = k && !st ? malloc((size_t)s.n_tokens * sizeof *out) : NULL;
    if (k && !st && !out) st = tu_fail(err, FL_ENOMEM, "lm: out of memory");
    fl_token_seqs v = tu_seqs_view(&s);
    if (k && !st) st = svc->logprobs(svc, &v, from, t->batch, out, err);
    for (int i = 0; i < k && !st; i++)
        for (int64_t p = s.offsets[i] + from[i]; p < s.offsets[i + 1]; p++) sum->nll -= out[p], sum->tokens++;
    free(out);
    tu_seqs_free(&s);
    return st;
}

/* Bytes of the text the tokens spell, separators left out. */
static fl_status text_bytes(const fl_task_services *svc, const int32_t *ids, int64_t n, int64_t *bytes, fl_error *err) {
    *bytes = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && ids[j] != svc->eot) j++;
        size_t len = 0;
        char *text = j > i ? svc->decode(svc, ids + i, (size_t)(j - i), &len) : NULL;
        if (j > i && !text) return tu_fail(err, FL_ENOMEM, "lm: out of memory decoding");
        svc->free(text);
        *bytes += (int64_t)len;
        i = j + 1;
    }
    return FL_OK;
}

static fl_status report(const fl_task_services *svc, const totals *sum, int64_t bytes, fl_error *err) {
    double loss = sum->nll / (double)sum->tokens;
    struct { const char *name; int kind; double value; } rows[] = {
        {"loss", FL_METRIC_LOSS, loss},
        {"perplexity", FL_METRIC_PERPLEXITY, exp(loss)},
        {"bits_per_token", FL_METRIC_BITS, loss / log(2.0)},
        {"bits_per_byte", FL_METRIC_BITS, bytes ? sum->nll / log(2.0) / (double)bytes : NAN},
    };
    fl_status st = FL_OK;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && !st; i++) {
        fl_metric m = {.name = rows[i].name, .kind = rows[i].kind, .value = rows[i].value, .n = sum->tokens};
        st = svc->metric(svc, &m, err);
    }
    fl_metric m = {.name = "tokens", .kind = FL_METRIC_COUNT, .value = (double)sum->tokens};
    return st ? st : svc->metric(svc, &m, err);
}

/* ------------------------------------------------------------ encoders */

#define MLM_RATE 0.15f

static int is_encoder(const fl_task_services *svc) {
    return FL_TASK_HAS(svc, masked_logprobs) && svc->arch == FL_TASK_ARCH_BERT;
}

/* Window [start, start+T-1) of ids as <s> + tokens, into s; masked
   positions (a fixed hash of their place in the data) hold <mask> and
   their target, the rest -1 (targets has room for the chunk). */
static fl_status add_masked_window(const fl_task_services *svc, const int32_t *ids, int64_t start, int64_t end,
                                   tu_seqs *s, int32_t *targets, fl_error *err) {
    const uint64_t key = fl_rng_key(2023, "lm masked positions");
    int32_t row[1 << 14];
    int32_t *tg = targets + s->n_tokens;
    const int64_t n = end - start + 1;
    row[0] = svc->bos, tg[0] = -1;
    for (int64_t i = 1; i < n; i++) {
        const int32_t w = ids[start + i - 1] == svc->eot ? svc->sep : ids[start + i - 1];
        const int plain = w != svc->bos && w != svc->sep && w != svc->pad && w != svc->mask;
        const int chosen = plain && fl_rng_uniform(key, (uint64_t)(start + i - 1)) < MLM_RATE;
        row[i] = chosen ? svc->mask : w, tg[i] = chosen ? w : -1;
    }
    const int32_t *part = row;
    const size_t len = (size_t)n;
    return tu_seqs_add(s, &part, &len, 1, err);
}

/* The masked-LM loss of ids[0..n) into sum, CHUNK_WINDOWS windows at a time. */
static fl_status score_masked(const fl_task_services *svc, const task *t, const int32_t *ids, int64_t n, totals *sum,
                              fl_error *err) {
    const int64_t W = svc->context - 1; /* stream tokens per window, after <s> */
    if (W >= 1 << 14) return tu_fail(err, FL_EINVAL, "--task lm: a context of %d is too long here", svc->context);
    fl_status st = FL_OK;
    for (int64_t at = 0; at < n && !st;) {
        tu_seqs s;
        int32_t *targets = malloc((size_t)CHUNK_WINDOWS * (size_t)(W + 1) * sizeof *targets);
        float *out = malloc((size_t)CHUNK_WINDOWS * (size_t)(W + 1) * sizeof *out);
        st = targets && out ? tu_seqs_init(&s, err) : tu_fail(err, FL_ENOMEM, "lm: out of memory");
        for (int k = 0; k < CHUNK_WINDOWS && at < n && !st; k++, at += W)
            st = add_masked_window(svc, ids, at, at + W < n ? at + W : n, &s, targets, err);
        fl_token_seqs v = tu_seqs_view(&s);
        if (!st) st = svc->masked_logprobs(svc, &v, targets, t->batch, out, err);
        for (int64_t k = 0; k < s.n_tokens && !st; k++)
            if (targets[k] >= 0) sum->nll -= out[k], sum->tokens++;
        if (!st) svc->progress(svc, "tokens scored (masked)", at, n);
        if (targets && out) tu_seqs_free(&s);
        free(targets), free(out);
    }
    return st;
}

static fl_status report_masked(const fl_task_services *svc, const totals *sum, fl_error *err) {
    if (!sum->tokens) return tu_fail(err, FL_EINVAL, "--task lm: the data has no token to mask");
    const double loss = sum->nll / (double)sum->tokens;
    fl_metric rows[] = {{.name = "mlm_loss", .kind = FL_METRIC_LOSS, .value = loss, .n = sum->tokens},
                        {.name = "mlm_perplexity", .kind = FL_METRIC_PERPLEXITY, .value = exp(loss), .n = sum->tokens},
                        {.name = "tokens", .kind = FL_METRIC_COUNT, .value = (double)sum->tokens}};
    fl_status st = FL_OK;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && !st; i++) st = svc->metric(svc, &rows[i], err);
    return st;
}

static fl_status run(void *p, const fl_task_services *svc, fl_error *err) {
    task *t = p;
    const char *path = t->data[0] ? t->data : svc->val_shard;
    if (!path || !path[0])
        return tu_fail(err, FL_EINVAL, "--task lm: no data= given and the run has no validation shard");
    int32_t *ids = NULL;
    size_t n = 0;
    fl_status st = svc->load_tokens(svc, path, &ids, &n, err);
    if (st) return st;
    if (t->max_tokens > 0 && (int64_t)n > t->max_tokens) n = (size_t)t->max_tokens;
    if (n < 2) st = tu_fail(err, FL_EINVAL, "%s: %zu token(s); perplexity needs at least 2", path, n);
    windows w = {.n = (int64_t)n, .T = svc->context, .stride = t->stride};
    totals sum = {0};
    int64_t bytes = 0;
    if (!st && is_encoder(svc)) {
        st = score_masked(svc, t, ids, (int64_t)n, &sum, err);
        if (!st) st = report_masked(svc, &sum, err);
        svc->free(ids);
        return st;
    }
    for (int more = 1; !st && more;) {
        st = score_chunk(svc, t, ids, &w, &sum, &more, err);
        if (!st) svc->progress(svc, "tokens scored", w.scored_to, (int64_t)n);
    }
    if (!st) st = text_bytes(svc, ids, (int64_t)n, &bytes, err);
    if (!st) st = report(svc, &sum, bytes, err);
    svc->free(ids);
    return st;
}

static const fl_task_plugin PLUGIN = {
    .header = {.magic = FL_PLUGIN_MAGIC, .abi_major = FL_TASK_ABI_MAJOR, .abi_minor = FL_TASK_ABI_MINOR,
               .struct_size = sizeof(fl_task_plugin), .kind = FL_PLUGIN_TASK, .name = "lm", .version = "1.0",
               .description = "held-out perplexity, bits per token and per byte on a token shard or text file "
                              "(an encoder: masked-LM loss)",
               .options = OPTIONS, .n_options = N_OPTIONS},
    .create = create,
    .run = run,
    .destroy = destroy,
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &PLUGIN.header; }
