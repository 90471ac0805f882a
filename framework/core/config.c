/*
 * core/config.c — the training configuration: one table, three sources.
 *
 * FIELDS below describes every member of fl_config once: JSON key, type,
 * offset, default (as text), inclusive range (flags make a bound exclusive),
 * group and help. Everything else is driven by it:
 *   - fl_config_defaults parses each default with the same code a flag uses,
 *     so a default that does not parse or is out of range fails loudly in the
 *     tests instead of silently producing a zero;
 *   - fl_config_apply_json (the files in configs/, a run's config.json) and
 *     fl_config_set (command-line flags) turn their input into a typed value
 *     and hand it to one assign_* function per type, which checks range and
 *     shape and stores it; both work on a copy, so a failed call leaves the
 *     config as it was;
 *   - fl_config_to_json writes every field so apply_json reproduces the struct
 *     bit for bit (doubles in the shortest form that round-trips, the u64 seed
 *     as a string when a JSON number could not hold it exactly);
 *   - fl_config_print_help prints the table grouped, with flags and defaults.
 * Errors name the source and the key: `configs/x.json: key "lr": expected a
 * number`, `--lr: "3e-3x" is not a number`.
 *
 * ffn_layers holds per-layer FFN overrides "LAYER=SPEC;LAYER=SPEC" (a SPEC
 * never contains ';'). A flag appends an override; a JSON string or array sets
 * the whole list; the last override for a layer wins.
 */
#include "config.h"

#include <cjson/cJSON.h> /* JSON parse/print */
#include <ctype.h>       /* isdigit, isspace */
#include <errno.h>       /* ERANGE from strtoll/strtod */
#include <inttypes.h>    /* PRId64, PRIu64 */
#include <math.h>        /* floor, isfinite */
#include <stddef.h>      /* offsetof */
#include <stdlib.h>      /* strtoll, strtoull, strtod, malloc */
#include <string.h>
#include <sys/stat.h>

#include "error.h"   /* fl_fail */
#include "fsutil.h"  /* fl_read_file */
#include "model.h"   /* FL_ARCH_GPT, FL_ARCH_BERT */
#include "json_strict.h" /* fl_json_strict */

/* ---- the table ----------------------------------------------------------- */

#define FIELD(name, type, def, lo, hi, group, flags, help)                              \
    { #name, type, offsetof(fl_config, name), sizeof(((fl_config *)0)->name), def, lo, hi, \
      group, help, flags }

/* Largest integer a double (hence a JSON number) holds exactly. */
#define EXACT_MAX 9007199254740992.0 /* 2^53 */
#define STEPS_MAX 1e12

static const fl_cfg_field FIELDS[] = {
    /* model */
    FIELD(vocab_size, FL_CFG_INT, "1024", 257, 1 << 20, "model", 0,
          "tokenizer vocabulary size (256 bytes + merges + <|endoftext|>)"),
    FIELD(context, FL_CFG_INT, "128", 1, 8192, "model", 0, "context length T in tokens"),
    FIELD(d_model, FL_CFG_INT, "128", 1, 16384, "model", 0, "width of the residual stream"),
    FIELD(n_layers, FL_CFG_INT, "4", 1, FL_MAX_LAYERS, "model", 0, "transformer blocks"),
    FIELD(n_heads, FL_CFG_INT, "4", 1, 64, "model", 0,
          "attention heads (must divide d_model)"),
    FIELD(ffn, FL_CFG_STRING, "dense", 0, 0, "model", FL_CFG_NONEMPTY,
          "FFN plugin spec for every layer, e.g. \"dense\" or \"moe:experts=8,top_k=1\""),
    FIELD(ffn_layers, FL_CFG_STRING, "", 0, 0, "model", 0,
          "per-layer override LAYER=SPEC, e.g. \"3=pkm:heads=4\" (flag repeats; last wins)"),
    FIELD(arch, FL_CFG_STRING, "gpt", 0, 0, "model", FL_CFG_NONEMPTY,
          "gpt: causal decoder, next-token loss; bert: bidirectional encoder, masked-LM loss (RoBERTa masking)"),
    FIELD(attention, FL_CFG_STRING, "global", 0, 0, "model", FL_CFG_NONEMPTY,
          "attention of each layer, global or local, comma-separated and repeated over the layers "
          "(GPT-Neo: \"global,local\")"),
    FIELD(attention_window, FL_CFG_INT, "256", 1, 1 << 20, "model", 0,
          "keys a local layer's query sees (a decoder: itself and the window-1 before it)"),
    /* data */
    FIELD(corpus, FL_CFG_STRING, "", 0, 0, "data", 0,
          "training text (<|endoftext|>-separated) or JSONL with \"text\"; empty: built-in stories"),
    FIELD(corpus_bytes, FL_CFG_INT64, "3000000", 1024, 1099511627776.0, "data", 0,
          "size in bytes of the built-in story corpus to generate"),
    FIELD(tokenizer, FL_CFG_STRING, "", 0, 0, "data", 0,
          "tokenizer.json to use; empty: train one on the corpus"),
    FIELD(data_dir, FL_CFG_STRING, "", 0, 0, "data", 0,
          "folder with prepared train.bin/val.bin; empty: prepare into the run folder"),
    FIELD(val_fraction, FL_CFG_DOUBLE, "0.05", 0, 0.5, "data", FL_CFG_OPEN_MIN,
          "fraction of documents held out for validation"),
    /* optimisation */
    FIELD(batch_size, FL_CFG_INT, "16", 1, 65536, "optim", 0, "sequences per step"),
    FIELD(steps, FL_CFG_INT64, "600", 1, STEPS_MAX, "optim", 0, "optimizer steps"),
    FIELD(lr, FL_CFG_DOUBLE, "3e-3", 0, 10, "optim", FL_CFG_OPEN_MIN, "peak learning rate"),
    FIELD(min_lr_ratio, FL_CFG_DOUBLE, "0.1", 0, 1, "optim", 0,
          "cosine schedule floor as a fraction of lr"),
    FIELD(warmup_steps, FL_CFG_INT64, "50", 0, STEPS_MAX, "optim", 0,
          "linear warmup steps (at most steps)"),
    FIELD(weight_decay, FL_CFG_DOUBLE, "0.1", 0, 10, "optim", 0,
          "AdamW decoupled weight decay (matrices only)"),
    FIELD(beta1, FL_CFG_DOUBLE, "0.9", 0, 1, "optim", FL_CFG_OPEN_MAX, "AdamW beta1"),
    FIELD(beta2, FL_CFG_DOUBLE, "0.95", 0, 1, "optim", FL_CFG_OPEN_MAX, "AdamW beta2"),
    FIELD(adam_eps, FL_CFG_DOUBLE, "1e-8", 0, 1, "optim", FL_CFG_OPEN_MIN, "AdamW epsilon"),
    FIELD(grad_clip, FL_CFG_DOUBLE, "1.0", 0, 1e6, "optim", 0,
          "clip the global gradient norm to this (0 = off)"),
    FIELD(mask_prob, FL_CFG_DOUBLE, "0.15", 0, 1, "optim", FL_CFG_OPEN_MIN | FL_CFG_OPEN_MAX,
          "arch bert: fraction of tokens masked each time a sequence is seen (of those 80% <mask>, "
          "10% a random token, 10% unchanged)"),
    FIELD(seed, FL_CFG_U64, "1337", 0, 18446744073709551615.0, "optim", 0,
          "random seed (initialisation, data order, sampling)"),
    /* bookkeeping */
    FIELD(eval_every, FL_CFG_INT64, "100", 0, STEPS_MAX, "run", 0,
          "steps between validation passes (0 = only at the end)"),
    FIELD(eval_batches, FL_CFG_INT, "16", 1, 1 << 20, "run", 0, "batches per validation pass"),
    FIELD(ckpt_every, FL_CFG_INT64, "0", 0, STEPS_MAX, "run", 0,
          "steps between checkpoints (0 = only at the end)"),
    FIELD(log_every, FL_CFG_INT64, "10", 1, STEPS_MAX, "run", 0, "steps between log lines"),
    FIELD(threads, FL_CFG_INT, "0", 0, 4096, "run", 0, "CPU threads (0 = all cores)"),
    FIELD(device, FL_CFG_STRING, "auto", 0, 0, "run", FL_CFG_NONEMPTY,
          "auto (first GPU if built with CUDA, else CPU), cpu, cuda or cuda:N"),
    FIELD(precision, FL_CFG_STRING, "auto", 0, 0, "run", FL_CFG_NONEMPTY,
          "GEMM precision: fp32 or bf16 on the CPU (default fp32), tf32, fp32 or bf16 on a GPU "
          "(default tf32); auto: FFNLAB_PRECISION, else the default"),
    FIELD(run_dir, FL_CFG_STRING, "runs/tiny", 0, 0, "run", FL_CFG_NONEMPTY,
          "folder for logs, checkpoints and results"),
    FIELD(eval_tasks, FL_CFG_STRING, "", 0, 0, "run", 0,
          "evaluation task run after training, e.g. \"blimp\" (flag repeats; see ffnlab eval)"),
    FIELD(expert_parallel, FL_CFG_INT, "1", 1, 4096, "run", 0,
          "ranks over which each MoE layer's experts are split (under mpirun; divides the "
          "process count; 1 = every rank holds every expert)"),
    FIELD(notes, FL_CFG_STRING, "", 0, 0, "run", 0,
          "free text kept with the run, e.g. how this config differs from the paper it follows"),
};

#define N_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

const fl_cfg_field *fl_config_fields(size_t *n) {
    if (n) *n = N_FIELDS;
    return FIELDS;
}

/* ---- names ---------------------------------------------------------------- */

static const fl_cfg_field *find_field(const char *name) {
    for (size_t i = 0; i < N_FIELDS; i++)
        if (strcmp(FIELDS[i].name, name) == 0) return &FIELDS[i];
    return NULL;
}

/* "--d-model" for d_model: the spelling users type. */
static void flag_name(const char *name, char *out, size_t n) {
    snprintf(out, n, "--%s", name);
    for (char *p = out + 2; *p; p++)
        if (*p == '_') *p = '-';
}

/* Edit distance, for "did you mean"; long names are not worth a suggestion. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return (size_t)-1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The field whose name is closest to `name`, if close enough to be a typo. */
static const fl_cfg_field *suggest(const char *name) {
    const fl_cfg_field *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < N_FIELDS; i++) {
        size_t d = edit_distance(name, FIELDS[i].name);
        if (d < best_d) best_d = d, best = &FIELDS[i];
    }
    size_t len = strlen(name), limit = len / 3 > 2 ? len / 3 : 2;
    return best_d <= limit && best_d < len ? best : NULL;
}

/* "vocab_size, context, ..." for an unknown-key message without a suggestion. */
static void known_keys(char *out, size_t n) {
    size_t k = 0;
    out[0] = 0;
    for (size_t i = 0; i < N_FIELDS && k < n; i++) {
        int w = snprintf(out + k, n - k, "%s%s", i ? ", " : "", FIELDS[i].name);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* ---- values: formatting and checking ------------------------------------- */

/* Shortest %g form that reads back as exactly v (up to 17 digits always does). */
static void fmt_double(double v, char *out, size_t n) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* "[1, 64]" or "(0, 10]": integers without a decimal point. */
static void fmt_range(const fl_cfg_field *f, char *out, size_t n) {
    char lo[40], hi[40];
    if (f->type == FL_CFG_DOUBLE) {
        fmt_double(f->min, lo, sizeof lo);
        fmt_double(f->max, hi, sizeof hi);
    } else {
        snprintf(lo, sizeof lo, "%.0f", f->min);
        snprintf(hi, sizeof hi, "%.0f", f->max);
    }
    snprintf(out, n, "%c%s, %s%c", (f->flags & FL_CFG_OPEN_MIN) ? '(' : '[', lo, hi,
             (f->flags & FL_CFG_OPEN_MAX) ? ')' : ']');
}

static int in_range(const fl_cfg_field *f, double v) {
    if (!isfinite(v)) return 0;
    int lo_ok = (f->flags & FL_CFG_OPEN_MIN) ? v > f->min : v >= f->min;
    int hi_ok = (f->flags & FL_CFG_OPEN_MAX) ? v < f->max : v <= f->max;
    return lo_ok && hi_ok;
}

/* Where a value came from, for messages. `name` prefixes "NAME: problem";
   `value_of` prefixes "VALUE_OF 0 is out of range": for JSON
   `PATH: key "n_layers"` and `PATH: key "n_layers" =`, for a flag `--n-layers`
   and `--n-layers:`. */
typedef struct origin {
    char name[FL_ERRMSG_LEN];
    char value_of[FL_ERRMSG_LEN];
} origin;

static void origin_json(origin *o, const char *where, const char *key) {
    snprintf(o->name, sizeof o->name, "%s: key \"%s\"", where, key);
    snprintf(o->value_of, sizeof o->value_of, "%s: key \"%s\" =", where, key);
}

static void origin_flag(origin *o, const char *field) {
    char flag[128];
    flag_name(field, flag, sizeof flag);
    snprintf(o->name, sizeof o->name, "%s", flag);
    snprintf(o->value_of, sizeof o->value_of, "%s:", flag);
}

static fl_status check_range(const fl_cfg_field *f, double v, const char *vtext, const origin *o,
                             fl_error *err) {
    if (in_range(f, v)) return FL_OK;
    char range[96];
    fmt_range(f, range, sizeof range);
    return fl_fail(err, FL_EINVAL, "%s %s is out of range %s", o->value_of, vtext, range);
}

/* ---- ffn_layers: "LAYER=SPEC;LAYER=SPEC" ---------------------------------- */

typedef struct override {
    long layer;
    const char *spec;   /* not NUL-terminated */
    size_t spec_len;
    const char *item;   /* the whole item, for messages */
    size_t item_len;
} override;

static const char *skip_space(const char *p) {
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

/* Reads the next item of a ';'-separated override list from *p (empty items
   and spaces around parts are skipped). Returns 1 with *o filled, 0 at the
   end, -1 when the item is not LAYER=SPEC (o->item names it). */
static int next_override(const char **p, override *o) {
    const char *s = skip_space(*p);
    while (*s == ';') s = skip_space(s + 1);
    if (!*s) return *p = s, 0;
    const char *end = strchr(s, ';');
    if (!end) end = s + strlen(s);
    *p = end;
    o->item = s;
    o->item_len = (size_t)(end - s);
    while (o->item_len && isspace((unsigned char)s[o->item_len - 1])) o->item_len--;

    const char *q = s;
    o->layer = 0;
    if (!isdigit((unsigned char)*q)) return -1;
    for (; isdigit((unsigned char)*q); q++) {
        o->layer = o->layer * 10 + (*q - '0');
        if (o->layer > 1000000) return -1; /* nonsense, and keeps the sum from overflowing */
    }
    q = skip_space(q);
    if (*q != '=') return -1;
    q = skip_space(q + 1);
    o->spec = q;
    o->spec_len = (size_t)(s + o->item_len - q);
    return o->spec_len ? 1 : -1;
}

/* Syntax of a whole override list; the layer bound is fl_config_validate's. */
static fl_status check_overrides(const char *list, const char *who, fl_error *err) {
    const char *p = list;
    override o;
    int r;
    while ((r = next_override(&p, &o)) != 0)
        if (r < 0)
            return fl_fail(err, FL_EINVAL,
                           "%s: \"%.*s\" is not LAYER=SPEC (e.g. \"3=pkm:heads=4\")", who,
                           (int)o.item_len, o.item);
    return FL_OK;
}

/* ---- values: device ------------------------------------------------------- */

static int device_ok(const char *s) {
    if (!strcmp(s, "auto") || !strcmp(s, "cpu") || !strcmp(s, "cuda")) return 1;
    if (strncmp(s, "cuda:", 5) != 0 || !s[5]) return 0;
    for (const char *p = s + 5; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return strlen(s + 5) <= 4;
}

/* The GEMM precisions some backend has (which one has it is checked when the
   backend starts: fl_backend_select). */
static int precision_ok(const char *s) {
    return !strcmp(s, "auto") || !strcmp(s, "fp32") || !strcmp(s, "bf16") || !strcmp(s, "tf32");
}

/* Field-specific rules for a string value (length is checked by the caller). */
static fl_status check_string(const fl_cfg_field *f, const char *s, const char *who,
                              fl_error *err) {
    if ((f->flags & FL_CFG_NONEMPTY) && !*s) return fl_fail(err, FL_EINVAL, "%s: must not be empty", who);
    if (!strcmp(f->name, "device") && !device_ok(s))
        return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not auto, cpu, cuda or cuda:N", who, s);
    if (!strcmp(f->name, "precision") && !precision_ok(s))
        return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not auto, fp32, bf16 or tf32 (tf32 only on a GPU)", who, s);
    if (!strcmp(f->name, "ffn_layers")) return check_overrides(s, who, err);
    return FL_OK;
}

/* ---- storing ------------------------------------------------------------- */

static void *field_ptr(fl_config *c, const fl_cfg_field *f) { return (char *)c + f->offset; }
static const void *field_cptr(const fl_config *c, const fl_cfg_field *f) {
    return (const char *)c + f->offset;
}

static fl_status assign_int(fl_config *c, const fl_cfg_field *f, int64_t v, const char *vtext,
                            const origin *o, fl_error *err) {
    fl_status st = check_range(f, (double)v, vtext, o, err);
    if (st) return st;
    if (f->size == sizeof(int32_t)) {
        int32_t x = (int32_t)v; /* in range, so it fits */
        memcpy(field_ptr(c, f), &x, sizeof x);
    } else {
        memcpy(field_ptr(c, f), &v, sizeof v);
    }
    return FL_OK;
}

static fl_status assign_double(fl_config *c, const fl_cfg_field *f, double v, const char *vtext,
                               const origin *o, fl_error *err) {
    fl_status st = check_range(f, v, vtext, o, err);
    if (st) return st;
    memcpy(field_ptr(c, f), &v, sizeof v);
    return FL_OK;
}

/* Sets (or, with append, adds a ';'-separated item to) a string field. The
   whole buffer is rewritten so two configs with equal strings compare equal
   with memcmp. */
static fl_status assign_string(fl_config *c, const fl_cfg_field *f, const char *s, int append,
                               const origin *o, fl_error *err) {
    char *dst = field_ptr(c, f);
    char buf[FL_SPEC_MAX * 4 > FL_PATH_MAX ? FL_SPEC_MAX * 4 : FL_PATH_MAX];
    size_t have = append ? strlen(dst) : 0, add = strlen(s);
    size_t need = have + (have && add ? 1 : 0) + add;
    if (need >= f->size || need >= sizeof buf)
        return fl_fail(err, FL_EINVAL, "%s: value is %zu bytes, longer than the %zu allowed",
                       o->name, need, f->size - 1);
    memcpy(buf, dst, have);
    if (have && add) buf[have++] = ';';
    memcpy(buf + have, s, add + 1);
    fl_status st = check_string(f, buf, o->name, err);
    if (st) return st;
    memset(dst, 0, f->size);
    memcpy(dst, buf, need + 1);
    return FL_OK;
}

/* ---- text values (flags, defaults) ---------------------------------------- */

/* A finite double from the whole of s. */
static int parse_double_text(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* An integer from the whole of s; "3e6" is accepted when it is an exact
   integer, since people write step counts that way. Values past int64 come
   back saturated so the range check reports them with the user's text. */
static int parse_int_text(const char *s, int64_t *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*end) return *out = (int64_t)v, 1;
    double d;
    if (!parse_double_text(s, &d) || d != floor(d) || d > EXACT_MAX || d < -EXACT_MAX) return 0;
    *out = (int64_t)d;
    return 1;
}

static int parse_u64_text(const char *s, uint64_t *out) {
    if (!isdigit((unsigned char)*s)) return 0; /* strtoull would accept "-1" */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno == ERANGE) return 0;
    *out = (uint64_t)v;
    return 1;
}

static fl_status set_from_text(fl_config *c, const fl_cfg_field *f, const char *value, int append,
                               const origin *o, fl_error *err) {
    switch (f->type) {
    case FL_CFG_INT:
    case FL_CFG_INT64: {
        int64_t v;
        if (!parse_int_text(value, &v))
            return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not an integer", o->name, value);
        return assign_int(c, f, v, value, o, err);
    }
    case FL_CFG_U64: {
        uint64_t v;
        if (!parse_u64_text(value, &v))
            return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not an integer in [0, 2^64)", o->name,
                           value);
        memcpy(field_ptr(c, f), &v, sizeof v);
        return FL_OK;
    }
    case FL_CFG_DOUBLE: {
        double v;
        if (!parse_double_text(value, &v))
            return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not a number", o->name, value);
        return assign_double(c, f, v, value, o, err);
    }
    case FL_CFG_STRING:
        return assign_string(c, f, value, append, o, err);
    }
    return fl_fail(err, FL_EINTERNAL, "%s: field has unknown type %d", o->name, f->type);
}

void fl_config_defaults(fl_config *c) {
    memset(c, 0, sizeof *c); /* padding and string tails too: configs compare with memcmp */
    for (size_t i = 0; i < N_FIELDS; i++) {
        origin o;
        origin_flag(&o, FIELDS[i].name);
        /* Cannot fail for a well-formed table; test_config checks that it is. */
        (void)set_from_text(c, &FIELDS[i], FIELDS[i].def, 0, &o, NULL);
    }
}

fl_status fl_config_set(fl_config *c, const char *name, const char *value, fl_error *err) {
    char key[128];
    if (snprintf(key, sizeof key, "%s", name) >= (int)sizeof key)
        return fl_fail(err, FL_EINVAL, "unknown option --%s", name);
    for (char *p = key; *p; p++)
        if (*p == '-') *p = '_';
    /* --ffn-layer N=SPEC reads better on a command line than --ffn-layers */
    /* --ffn-layer N=SPEC and --eval-task SPEC read better than their plurals */
    const fl_cfg_field *f = find_field(!strcmp(key, "ffn_layer") ? "ffn_layers" : !strcmp(key, "eval_task") ? "eval_tasks" : key);
    if (!f) {
        char want[128];
        const fl_cfg_field *s = suggest(key);
        if (!s) return fl_fail(err, FL_EINVAL, "unknown option --%s (see --help)", name);
        flag_name(s->name, want, sizeof want);
        return fl_fail(err, FL_EINVAL, "unknown option --%s (did you mean %s?)", name, want);
    }
    if (!value) value = "";
    origin o;
    origin_flag(&o, key); /* messages name the flag as the user spelled it */
    fl_config tmp;
    memcpy(&tmp, c, sizeof tmp);
    int append = !strcmp(f->name, "ffn_layers") || !strcmp(f->name, "eval_tasks");
    fl_status st = set_from_text(&tmp, f, value, append, &o, err);
    if (!st) memcpy(c, &tmp, sizeof tmp);
    return st;
}

/* ---- JSON values ----------------------------------------------------------- */

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "something else";
}

static fl_status json_int(fl_config *c, const fl_cfg_field *f, const cJSON *v, const origin *o,
                          fl_error *err) {
    if (!cJSON_IsNumber(v))
        return fl_fail(err, FL_EINVAL, "%s: expected an integer, got %s", o->name, json_kind(v));
    char text[40];
    fmt_double(v->valuedouble, text, sizeof text);
    if (v->valuedouble != floor(v->valuedouble))
        return fl_fail(err, FL_EINVAL, "%s: expected an integer, got %s", o->name, text);
    /* Beyond 2^53 the conversion to int64 could overflow; the range check
       rejects such values anyway, so report them through it. */
    if (v->valuedouble > EXACT_MAX || v->valuedouble < -EXACT_MAX)
        return check_range(f, INFINITY, text, o, err);
    return assign_int(c, f, (int64_t)v->valuedouble, text, o, err);
}

/* The seed: a JSON number up to 2^53, or a decimal string for larger values
   (what fl_config_to_json writes for them). */
static fl_status json_u64(fl_config *c, const fl_cfg_field *f, const cJSON *v, const origin *o,
                          fl_error *err) {
    uint64_t x;
    if (cJSON_IsString(v)) {
        if (!parse_u64_text(v->valuestring, &x))
            return fl_fail(err, FL_EINVAL, "%s: \"%s\" is not an integer in [0, 2^64)", o->name,
                           v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d != floor(d) || d < 0)
            return fl_fail(err, FL_EINVAL, "%s: expected a non-negative integer", o->name);
        if (d > EXACT_MAX)
            return fl_fail(err, FL_EINVAL,
                           "%s: integers above 2^53 lose precision as JSON numbers; "
                           "write the value as a string, e.g. \"12345678901234567890\"",
                           o->name);
        x = (uint64_t)d;
    } else {
        return fl_fail(err, FL_EINVAL, "%s: expected an integer, got %s", o->name, json_kind(v));
    }
    memcpy(field_ptr(c, f), &x, sizeof x);
    return FL_OK;
}

static fl_status json_double(fl_config *c, const fl_cfg_field *f, const cJSON *v,
                             const origin *o, fl_error *err) {
    if (!cJSON_IsNumber(v))
        return fl_fail(err, FL_EINVAL, "%s: expected a number, got %s", o->name, json_kind(v));
    char text[40];
    fmt_double(v->valuedouble, text, sizeof text);
    return assign_double(c, f, v->valuedouble, text, o, err);
}

/* ffn_layers may also be an array of "LAYER=SPEC" strings. */
static fl_status json_override_array(fl_config *c, const fl_cfg_field *f, const cJSON *arr,
                                     const origin *o, fl_error *err) {
    memset(field_ptr(c, f), 0, f->size);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e))
            return fl_fail(err, FL_EINVAL, "%s: element %d: expected a string, got %s", o->name,
                           i, json_kind(e));
        fl_status st = assign_string(c, f, e->valuestring, 1, o, err);
        if (st) return st;
    }
    return FL_OK;
}

static fl_status json_string(fl_config *c, const fl_cfg_field *f, const cJSON *v,
                             const origin *o, fl_error *err) {
    if (cJSON_IsArray(v) && (!strcmp(f->name, "ffn_layers") || !strcmp(f->name, "eval_tasks")))
        return json_override_array(c, f, v, o, err);
    if (!cJSON_IsString(v))
        return fl_fail(err, FL_EINVAL, "%s: expected a string, got %s", o->name, json_kind(v));
    return assign_string(c, f, v->valuestring, 0, o, err);
}

static fl_status apply_json_item(fl_config *c, const cJSON *item, const char *where,
                                 fl_error *err) {
    const fl_cfg_field *f = find_field(item->string);
    if (!f) {
        const fl_cfg_field *s = suggest(item->string);
        if (s)
            return fl_fail(err, FL_EINVAL, "%s: unknown key \"%s\" (did you mean \"%s\"?)", where,
                           item->string, s->name);
        char known[FL_ERRMSG_LEN];
        known_keys(known, sizeof known);
        return fl_fail(err, FL_EINVAL, "%s: unknown key \"%s\" (known keys: %s)", where,
                       item->string, known);
    }
    origin o;
    origin_json(&o, where, f->name);
    switch (f->type) {
    case FL_CFG_INT:
    case FL_CFG_INT64: return json_int(c, f, item, &o, err);
    case FL_CFG_U64: return json_u64(c, f, item, &o, err);
    case FL_CFG_DOUBLE: return json_double(c, f, item, &o, err);
    case FL_CFG_STRING: return json_string(c, f, item, &o, err);
    }
    return fl_fail(err, FL_EINTERNAL, "%s: field has unknown type %d", o.name, f->type);
}

/* "near byte N (line L, column C)" for a JSON syntax error at offset off. */
static fl_status json_syntax_error(const char *json, size_t off, const char *where,
                                   fl_error *err) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off && json[i]; i++) {
        if (json[i] == '\n') line++, col = 1;
        else col++;
    }
    return fl_fail(err, FL_EINVAL, "%s: invalid JSON near byte %zu (line %zu, column %zu)", where,
                   off, line, col);
}

fl_status fl_config_apply_json(fl_config *c, const char *json, const char *where, fl_error *err) {
    if (!where) where = "config";
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root) return json_syntax_error(json, end ? (size_t)(end - json) : 0, where, err);
    fl_status st = fl_json_strict(json, strlen(json), where, 0, 0, err); /* "n_layers" twice: refused */
    if (!st && !cJSON_IsObject(root)) {
        st = fl_fail(err, FL_EINVAL, "%s: expected a JSON object {\"key\": value, ...}, got %s",
                     where, json_kind(root));
    } else if (!st) {
        fl_config tmp;
        memcpy(&tmp, c, sizeof tmp);
        for (const cJSON *item = root->child; item && !st; item = item->next)
            st = apply_json_item(&tmp, item, where, err);
        if (!st) memcpy(c, &tmp, sizeof tmp);
    }
    cJSON_Delete(root);
    return st;
}

#ifndef FFNLAB_CONFIG_REL_DIR
#define FFNLAB_CONFIG_REL_DIR "../share/ffnlab/configs"
#endif
#ifndef FFNLAB_SOURCE_DIR
#define FFNLAB_SOURCE_DIR ""
#endif

fl_status fl_config_resolve(const char *arg, char *path, size_t n, fl_error *err) {
    struct stat sb;
    if (stat(arg, &sb) == 0 && S_ISREG(sb.st_mode)) {
        snprintf(path, n, "%s", arg);
        return FL_OK;
    }
    if (strchr(arg, '/') || !arg[0])
        return fl_fail(err, FL_EINVAL, "--config %s: no such file", arg);
    char prog[FL_PATH_MAX], dirs[3][FL_PATH_MAX + 64];
    snprintf(dirs[0], sizeof dirs[0], "configs");
    snprintf(dirs[1], sizeof dirs[1], "%s/%s", fl_program_dir(prog, sizeof prog) ? prog : ".", FFNLAB_CONFIG_REL_DIR);
    snprintf(dirs[2], sizeof dirs[2], "%s%sconfigs", FFNLAB_SOURCE_DIR, FFNLAB_SOURCE_DIR[0] ? "/" : "");
    for (int i = 0; i < 3; i++) {
        if (snprintf(path, n, "%s/%s.json", dirs[i], arg) >= (int)n) continue;
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) return FL_OK;
    }
    return fl_fail(err, FL_EINVAL, "--config %s: no such file, and no %s.json in %s, %s or %s", arg, arg, dirs[0], dirs[1],
                   dirs[2]);
}

fl_status fl_config_load_json(fl_config *c, const char *path, fl_error *err) {
    char *text;
    size_t len;
    fl_status st = fl_read_file(path, &text, &len, err);
    if (st) return st;
    if (strlen(text) != len) st = fl_fail(err, FL_EINVAL, "%s: contains a NUL byte (not JSON text)", path);
    else st = fl_config_apply_json(c, text, path, err);
    free(text);
    return st;
}

/* ---- validation ------------------------------------------------------------ */

static fl_status validate_field(const fl_config *c, const fl_cfg_field *f, fl_error *err) {
    origin o;
    snprintf(o.name, sizeof o.name, "config: %s", f->name);
    snprintf(o.value_of, sizeof o.value_of, "config: %s =", f->name);
    const void *p = field_cptr(c, f);
    char text[40];
    if (f->type == FL_CFG_INT) {
        int32_t v;
        memcpy(&v, p, sizeof v);
        snprintf(text, sizeof text, "%" PRId32, v);
        return check_range(f, v, text, &o, err);
    }
    if (f->type == FL_CFG_INT64) {
        int64_t v;
        memcpy(&v, p, sizeof v);
        snprintf(text, sizeof text, "%" PRId64, v);
        return check_range(f, (double)v, text, &o, err);
    }
    if (f->type == FL_CFG_DOUBLE) {
        double v;
        memcpy(&v, p, sizeof v);
        fmt_double(v, text, sizeof text);
        return check_range(f, v, text, &o, err);
    }
    if (f->type == FL_CFG_STRING) {
        if (!memchr(p, 0, f->size))
            return fl_fail(err, FL_EINVAL, "%s: not NUL-terminated within %zu bytes", o.name, f->size);
        return check_string(f, p, o.name, err);
    }
    return FL_OK; /* u64: every value is a valid seed */
}

static fl_status validate_overrides(const fl_config *c, fl_error *err) {
    const char *p = c->ffn_layers;
    override o;
    int r;
    while ((r = next_override(&p, &o)) > 0)
        if (o.layer >= c->n_layers)
            return fl_fail(err, FL_EINVAL,
                           "config: ffn_layers: \"%.*s\" names layer %ld, but n_layers = %d "
                           "(layers are 0..%d)",
                           (int)o.item_len, o.item, o.layer, c->n_layers, c->n_layers - 1);
    return FL_OK; /* r < 0 cannot happen: validate_field checked the syntax */
}

/* arch is gpt or bert; attention's entries parse; an encoder's vocabulary
   has room for its four special tokens. */
static fl_status validate_arch(const fl_config *c, fl_error *err) {
    if (strcmp(c->arch, "gpt") && strcmp(c->arch, "bert"))
        return fl_fail(err, FL_EINVAL, "config: arch = \"%s\": expected gpt (decoder) or bert (encoder)", c->arch);
    if (fl_config_arch(c) == FL_ARCH_BERT && c->vocab_size < 261)
        return fl_fail(err, FL_EINVAL, "config: vocab_size = %d is too small for arch bert: 256 bytes, <|endoftext|>, "
                       "<s>, </s>, <pad> and <mask> need 261", c->vocab_size);
    uint64_t local;
    return fl_config_local_layers(c, &local, err);
}

fl_status fl_config_validate(const fl_config *c, fl_error *err) {
    for (size_t i = 0; i < N_FIELDS; i++) {
        fl_status st = validate_field(c, &FIELDS[i], err);
        if (st) return st;
    }
    if (c->d_model % c->n_heads != 0)
        return fl_fail(err, FL_EINVAL, "config: d_model = %d is not a multiple of n_heads = %d",
                       c->d_model, c->n_heads);
    if (c->warmup_steps > c->steps)
        return fl_fail(err, FL_EINVAL,
                       "config: warmup_steps = %" PRId64 " is more than steps = %" PRId64,
                       c->warmup_steps, c->steps);
    fl_status st = validate_arch(c, err);
    return st ? st : validate_overrides(c, err);
}

int fl_config_arch(const fl_config *c) { return strcmp(c->arch, "bert") ? FL_ARCH_GPT : FL_ARCH_BERT; }

fl_status fl_config_local_layers(const fl_config *c, uint64_t *out, fl_error *err) {
    const char *kinds[FL_MAX_LAYERS];
    size_t lens[FL_MAX_LAYERS];
    int n = 0;
    for (const char *p = c->attention; *p && n < FL_MAX_LAYERS; n++) {
        const char *comma = strchr(p, ',');
        lens[n] = comma ? (size_t)(comma - p) : strlen(p);
        kinds[n] = p;
        p += lens[n] + (comma != NULL);
    }
    *out = 0;
    for (int i = 0; i < n; i++) {
        const int local = lens[i] == 5 && !strncmp(kinds[i], "local", 5);
        if (!local && !(lens[i] == 6 && !strncmp(kinds[i], "global", 6)))
            return fl_fail(err, FL_EINVAL, "config: attention: \"%.*s\" is neither global nor local (e.g. \"global,local\")",
                           (int)lens[i], kinds[i]);
        for (int l = i; local && l < c->n_layers && l < FL_MAX_LAYERS; l += n) *out |= (uint64_t)1 << l;
    }
    return n ? FL_OK : fl_fail(err, FL_EINVAL, "config: attention is empty (global, local, or a comma list of them)");
}

fl_status fl_config_layer_ffn(const fl_config *c, int layer, char *out, size_t n, fl_error *err) {
    if (layer < 0 || layer >= c->n_layers)
        return fl_fail(err, FL_EINVAL, "layer %d is out of range [0, %d)", layer, c->n_layers);
    const char *spec = c->ffn, *p = c->ffn_layers;
    size_t len = strlen(c->ffn);
    override o;
    int r;
    while ((r = next_override(&p, &o)) != 0) {
        if (r < 0)
            return fl_fail(err, FL_EINVAL, "config: ffn_layers: \"%.*s\" is not LAYER=SPEC",
                           (int)o.item_len, o.item);
        if (o.layer == layer) spec = o.spec, len = o.spec_len; /* last one wins */
    }
    if (len >= n)
        return fl_fail(err, FL_EINVAL, "layer %d: FFN spec \"%.*s\" is longer than %zu bytes", layer,
                       (int)len, spec, n ? n - 1 : 0);
    memcpy(out, spec, len);
    out[len] = 0;
    return FL_OK;
}

/* ---- output ---------------------------------------------------------------- */

/* One field as JSON. Numbers go in as raw text: cJSON's own printer keeps
   only 15 digits when they are "close enough", which would break the exact
   round trip. */
static cJSON *field_to_json(const fl_config *c, const fl_cfg_field *f) {
    const void *p = field_cptr(c, f);
    char text[48];
    switch (f->type) {
    case FL_CFG_INT: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        snprintf(text, sizeof text, "%" PRId32, v);
        return cJSON_CreateRaw(text);
    }
    case FL_CFG_INT64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        snprintf(text, sizeof text, "%" PRId64, v);
        return cJSON_CreateRaw(text);
    }
    case FL_CFG_U64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        snprintf(text, sizeof text, "%" PRIu64, v);
        /* past 2^53 a JSON reader (ours included) would round it: a string */
        return v <= (uint64_t)EXACT_MAX ? cJSON_CreateRaw(text) : cJSON_CreateString(text);
    }
    case FL_CFG_DOUBLE: {
        double v;
        memcpy(&v, p, sizeof v);
        if (!isfinite(v)) return cJSON_CreateNull(); /* invalid config; keep the JSON valid */
        fmt_double(v, text, sizeof text);
        return cJSON_CreateRaw(text);
    }
    case FL_CFG_STRING: {
        char s[FL_SPEC_MAX * 4 > FL_PATH_MAX ? FL_SPEC_MAX * 4 : FL_PATH_MAX];
        size_t k = strnlen(p, f->size);
        if (k >= sizeof s) k = sizeof s - 1;
        memcpy(s, p, k);
        s[k] = 0;
        return cJSON_CreateString(s);
    }
    }
    return cJSON_CreateNull();
}

char *fl_config_to_json(const fl_config *c) {
    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; root && i < N_FIELDS; i++) {
        cJSON *v = field_to_json(c, &FIELDS[i]);
        if (!v || !cJSON_AddItemToObject(root, FIELDS[i].name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(root);
            return NULL;
        }
    }
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return NULL;
    /* hand back plain malloc memory whatever cJSON's allocator is */
    char *out = strdup(text);
    cJSON_free(text);
    return out;
}

static const char *type_placeholder(const fl_cfg_field *f) {
    switch (f->type) {
    case FL_CFG_INT:
    case FL_CFG_INT64:
    case FL_CFG_U64: return "N";
    case FL_CFG_DOUBLE: return "X";
    }
    if (!strcmp(f->name, "ffn_layers")) return "L=SPEC";
    if (!strcmp(f->name, "ffn") || !strcmp(f->name, "eval_tasks")) return "SPEC";
    if (!strcmp(f->name, "device")) return "DEV";
    if (!strcmp(f->name, "precision")) return "MODE";
    if (!strcmp(f->name, "notes")) return "TEXT";
    if (!strcmp(f->name, "arch")) return "gpt|bert";
    if (!strcmp(f->name, "attention")) return "KINDS";
    return "PATH";
}

static void print_field_help(FILE *out, const fl_cfg_field *f) {
    char flag[96], range[128] = "";
    flag_name(f->name, flag, sizeof flag);
    if (!strcmp(f->name, "ffn_layers")) snprintf(flag, sizeof flag, "--ffn-layer");
    if (!strcmp(f->name, "eval_tasks")) snprintf(flag, sizeof flag, "--eval-task");
    snprintf(flag + strlen(flag), sizeof flag - strlen(flag), " %s", type_placeholder(f));
    if (f->type == FL_CFG_INT || f->type == FL_CFG_INT64 || f->type == FL_CFG_DOUBLE) {
        char r[96];
        fmt_range(f, r, sizeof r);
        snprintf(range, sizeof range, ", range %s", r);
    }
    fprintf(out, "  %-22s %s (default: %s%s%s%s)\n", flag, f->help,
             f->type == FL_CFG_STRING ? "\"" : "", f->def, f->type == FL_CFG_STRING ? "\"" : "",
             range);
}

void fl_config_print_help(FILE *out) {
    static const char *const groups[][2] = {
        {"model", "Model"}, {"data", "Data"}, {"optim", "Optimisation"}, {"run", "Run"}};
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        fprintf(out, "%s%s:\n", g ? "\n" : "", groups[g][1]);
        for (size_t i = 0; i < N_FIELDS; i++)
            if (!strcmp(FIELDS[i].group, groups[g][0])) print_field_help(out, &FIELDS[i]);
    }
}
