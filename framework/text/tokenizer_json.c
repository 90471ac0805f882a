/*
 * text/tokenizer_json.c — reading and writing Hugging Face tokenizer.json.
 *
 * We write the layout the `tokenizers` library writes for a GPT-2-style
 * byte-level BPE, so its Python and Rust loaders (and tools built on them)
 * read our files. We read the same layout from anyone: the vocabulary map in
 * the file decides every id (GPT-2's own file numbers tokens differently from
 * ffnlab), merges come as "a b" strings or ["a", "b"] pairs, and
 * "<|endoftext|>" is found among added_tokens. A file that would make us
 * tokenize differently from the library (another model type, a normalizer,
 * another pre-tokenizer, tokens outside the byte alphabet, merges of unknown
 * tokens) is refused with a message saying why, never half-loaded.
 */
#include <cjson/cJSON.h>  /* cJSON_ParseWithLengthOpts, cJSON_Print */
#include <math.h>         /* floor */
#include <stdarg.h>       /* va_list */
#include <stdio.h>        /* snprintf */
#include <stdlib.h>       /* malloc, free */
#include <string.h>       /* strcmp, strchr, memcpy */

#include "error.h"
#include "fsutil.h"
#include "json_strict.h" /* fl_json_strict */
#include "tokenizer_internal.h"

/* Ids above this are refused: they would only size tables for a broken file. */
#define MAX_IDS (1 << 24)

/* ==== writing ========================================================== */

static cJSON *bytelevel_section(void) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", 0);
    cJSON_AddBoolToObject(o, "trim_offsets", 1);
    cJSON_AddBoolToObject(o, "use_regex", 1);
    return o;
}

/* One entry of added_tokens: a token matched as literal text, never split. */
static cJSON *added_token(int32_t id, const char *content) {
    cJSON *t = cJSON_CreateObject();
    if (!t) return NULL;
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "single_word", 0);
    cJSON_AddBoolToObject(t, "lstrip", 0);
    cJSON_AddBoolToObject(t, "rstrip", 0);
    cJSON_AddBoolToObject(t, "normalized", 0);
    cJSON_AddBoolToObject(t, "special", 1);
    return t;
}

/* <|endoftext|>, and any other added token a loaded file had, so that saving
   a loaded tokenizer keeps them. */
static cJSON *added_tokens_section(const fl_tokenizer *tok) {
    cJSON *arr = cJSON_CreateArray();
    for (int32_t id = 0; arr && id < tok->n_ids; id++) {
        if (!tok->has[id] || !tok->special[id]) continue;
        char *content = malloc((size_t)tok->len[id] + 1);
        if (content) {
            memcpy(content, tok->blob + tok->off[id], tok->len[id]);
            content[tok->len[id]] = 0;
        }
        cJSON *t = content ? added_token(id, content) : NULL;
        free(content);
        if (!t || !cJSON_AddItemToArray(arr, t)) {
            cJSON_Delete(t);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

/* The string tokenizer.json uses for id: byte-level characters, except for
   added tokens, which are written as their text. NULL when out of memory. */
static char *token_string(const fl_tokenizer *tok, int32_t id) {
    const char *s = tok->blob + tok->off[id];
    size_t n = tok->len[id];
    if (!tok->special[id]) return fl_bytelevel_encode(s, n);
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = 0;
    }
    return out;
}

/* vocab and merges in id and rank order. 0 when out of memory. */
static int fill_model(const fl_tokenizer *tok, cJSON *vocab, cJSON *merges) {
    char **names = calloc((size_t)tok->n_ids + 1, sizeof *names);
    int ok = names != NULL;
    for (int32_t id = 0; ok && id < tok->n_ids; id++) {
        if (!tok->has[id]) continue;
        names[id] = token_string(tok, id);
        ok = names[id] && cJSON_AddNumberToObject(vocab, names[id], id);
    }
    for (int32_t r = 0; ok && r < tok->n_merges; r++) {
        const char *a = names[tok->m_left[r]], *b = names[tok->m_right[r]];
        size_t la = strlen(a), lb = strlen(b);
        char *m = malloc(la + lb + 2);
        if (!m) break;
        memcpy(m, a, la);
        m[la] = ' ';
        memcpy(m + la + 1, b, lb + 1);
        cJSON *item = cJSON_CreateString(m);
        free(m);
        ok = item && cJSON_AddItemToArray(merges, item);
    }
    for (int32_t id = 0; names && id < tok->n_ids; id++) free(names[id]);
    free(names);
    return ok;
}

static cJSON *model_section(const fl_tokenizer *tok) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddStringToObject(m, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(m, "end_of_word_suffix", "");
    cJSON_AddBoolToObject(m, "fuse_unk", 0);
    cJSON_AddBoolToObject(m, "byte_fallback", 0);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
    cJSON *merges = cJSON_AddArrayToObject(m, "merges");
    if (!vocab || !merges || !fill_model(tok, vocab, merges)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

static cJSON *tokenizer_json(const fl_tokenizer *tok) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = added_tokens_section(tok);
    if (!added) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", bytelevel_section());
    cJSON_AddItemToObject(root, "post_processor", bytelevel_section());
    cJSON_AddItemToObject(root, "decoder", bytelevel_section());
    cJSON *model = model_section(tok);
    if (!model) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddItemToObject(root, "model", model);
    return root;
}

fl_status fl_tokenizer_save(const fl_tokenizer *tok, const char *path, fl_error *err) {
    cJSON *root = tokenizer_json(tok);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return fl_fail(err, FL_ENOMEM, "%s: out of memory writing the tokenizer", path);
    size_t n = strlen(text);
    text[n] = '\n';   /* overwrites the NUL: files end in a newline */
    fl_status st = fl_write_file_atomic(path, text, n + 1, err);
    free(text);
    return st;
}

/* ==== reading ========================================================== */

/* Context of one load, so helpers can refuse the file in one line. */
typedef struct loader {
    const char *path;
    fl_error *err;
    fl_tokenizer *tok;
    /* vocab strings -> ids (open addressing; keys point into the cJSON tree) */
    const char **keys;
    int32_t *ids;
    size_t cap;
} loader;

/* Refuses the file: FL_EINVAL, "PATH: not a byte-level BPE tokenizer.json: WHY". */
static fl_status refuse(const loader *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static fl_status refuse(const loader *L, const char *fmt, ...) {
    char why[FL_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return fl_fail(L->err, FL_EINVAL, "%s: not a byte-level BPE tokenizer.json: %s", L->path, why);
}

/* A token as messages show it: at most ~40 bytes, cut between characters,
   with control bytes and broken UTF-8 as \xNN, so a message stays one
   readable line whatever the file holds. Used as shown(s).s (C11 keeps the
   temporary alive to the end of the full expression). */
typedef struct shown_text {
    char s[200];
} shown_text;

static shown_text shown(const char *str) {
    shown_text out;
    const unsigned char *s = (const unsigned char *)str;
    size_t k = 0;
    while (*s && k < 40) {
        size_t n = *s < 0x80 ? 1
                 : (*s & 0xE0) == 0xC0 ? 2
                 : (*s & 0xF0) == 0xE0 ? 3
                 : (*s & 0xF8) == 0xF0 ? 4
                 : 0;
        for (size_t i = 1; i < n; i++)
            if ((s[i] & 0xC0) != 0x80) n = 0;
        if (n == 0 || (n == 1 && (*s < 0x20 || *s == 0x7F))) {
            k += (size_t)snprintf(out.s + k, sizeof out.s - k, "\\x%02X", *s++);
            continue;
        }
        memcpy(out.s + k, s, n);
        k += n;
        s += n;
    }
    strcpy(out.s + k, *s ? "..." : "");
    return out;
}

static const char *json_type(const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return "null";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    return "a boolean";
}

/* A JSON value as messages show it: a string quoted, anything else by type. */
static shown_text described(const cJSON *j) {
    shown_text out;
    if (cJSON_IsString(j)) snprintf(out.s, sizeof out.s, "\"%.190s\"", shown(j->valuestring).s);
    else snprintf(out.s, sizeof out.s, "%s", json_type(j));
    return out;
}

/* Integer value of j in [0, MAX_IDS), or -1. */
static int32_t json_id(const cJSON *j) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0 && v < MAX_IDS) || v != floor(v)) return -1;
    return (int32_t)v;
}

static int32_t vocab_lookup(const loader *L, const char *s) {
    size_t mask = L->cap - 1;
    for (size_t i = fl_tok_hash(s, strlen(s)) & mask; L->keys[i]; i = (i + 1) & mask)
        if (!strcmp(L->keys[i], s)) return L->ids[i];
    return -1;
}

static fl_status vocab_index(loader *L, const cJSON *vocab) {
    size_t n = (size_t)cJSON_GetArraySize(vocab);
    L->cap = 16;
    while (L->cap < 2 * n + 2) L->cap *= 2;
    L->keys = calloc(L->cap, sizeof *L->keys);
    L->ids = malloc(L->cap * sizeof *L->ids);
    if (!L->keys || !L->ids)
        return fl_fail(L->err, FL_ENOMEM, "%s: out of memory reading the vocab", L->path);
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = json_id(e);
        if (id < 0)
            return refuse(L, "token \"%s\" has id %s, not an integer in [0, %d)",
                          shown(e->string).s, cJSON_IsNumber(e) ? "out of range" : json_type(e),
                          MAX_IDS);
        size_t mask = L->cap - 1, i = fl_tok_hash(e->string, strlen(e->string)) & mask;
        while (L->keys[i] && strcmp(L->keys[i], e->string)) i = (i + 1) & mask;
        if (L->keys[i])
            return refuse(L, "token \"%s\" appears twice in the vocab", shown(e->string).s);
        L->keys[i] = e->string;
        L->ids[i] = id;
    }
    return FL_OK;
}

/* Checks the parts around the model that change how text is tokenized. */
static fl_status check_pipeline(const loader *L, const cJSON *root) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm))
        return refuse(L, "it has a normalizer, which GPT-2's scheme does not use");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!pre || cJSON_IsNull(pre)) return FL_OK;   /* older files leave it out */
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "ByteLevel"))
        return refuse(L, "pre_tokenizer.type is %s, not \"ByteLevel\"", described(type).s);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")))
        return refuse(L, "pre_tokenizer.add_prefix_space is true (only false is supported)");
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "use_regex")))
        return refuse(L, "pre_tokenizer.use_regex is false (GPT-2's regex is required)");
    return FL_OK;
}

/* Checks the model object itself (type, affixes) and finds vocab and merges. */
static fl_status check_model(const loader *L, const cJSON *model, const cJSON **vocab,
                             const cJSON **merges) {
    if (!cJSON_IsObject(model))
        return refuse(L, "\"model\" is %s, not an object", json_type(model));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "BPE")))
        return refuse(L, "model.type is %s, not \"BPE\"", described(type).s);
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (a && !cJSON_IsNull(a) && !(cJSON_IsString(a) && !a->valuestring[0]))
            return refuse(L, "model.%s is set (byte-level BPE has none)", affixes[i]);
    }
    *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(*vocab))
        return refuse(L, "model.vocab is %s, not an object", json_type(*vocab));
    *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(*merges))
        return refuse(L, "model.merges is %s, not an array", json_type(*merges));
    return FL_OK;
}

/* Is s the content of one of the added tokens? */
static int is_added(const cJSON *added, const char *s) {
    const cJSON *t;
    cJSON_ArrayForEach(t, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(t, "content");
        if (cJSON_IsString(c) && !strcmp(c->valuestring, s)) return 1;
    }
    return 0;
}

/* Number of ids: largest id used by the vocab or the added tokens, + 1. */
static fl_status count_ids(const loader *L, const cJSON *vocab, const cJSON *added,
                           int32_t *n_ids) {
    int32_t m = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) if (json_id(e) > m) m = json_id(e);
    cJSON_ArrayForEach(e, added) {
        int32_t id = json_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        if (id < 0 || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "content")))
            return refuse(L, "an added token lacks an integer id or a content string");
        if (id > m) m = id;
    }
    if (m < 0) return refuse(L, "the vocab is empty");
    *n_ids = m + 1;
    return FL_OK;
}

/* Stores one id's bytes; a vocab entry seen twice under one id is refused. */
static fl_status put_token(const loader *L, int32_t id, const char *s, size_t n, int special) {
    if (L->tok->has[id] && !special)
        return refuse(L, "id %d is given to two tokens", (int)id);
    return fl_tok_set_token(L->tok, id, s, n, special, L->err);
}

/* Fills the token table: vocab entries (byte-level strings), then added
   tokens (plain text; they win over a vocab entry with the same id). */
static fl_status load_tokens(loader *L, const cJSON *vocab, const cJSON *added) {
    const cJSON *e;
    char *buf = NULL;
    fl_status st = FL_OK;
    cJSON_ArrayForEach(e, vocab) {
        if (is_added(added, e->string)) continue;
        free(buf);
        buf = malloc(strlen(e->string) + 1);
        if (!buf) return fl_fail(L->err, FL_ENOMEM, "%s: out of memory reading the vocab", L->path);
        long n = fl_bytelevel_decode(e->string, buf);
        if (n < 0) st = refuse(L, "token \"%s\" has characters outside "
                                "the byte-level alphabet", shown(e->string).s);
        if (st == FL_OK) st = put_token(L, json_id(e), buf, (size_t)n, 0);
        if (st != FL_OK) break;
    }
    free(buf);
    cJSON_ArrayForEach(e, added) {
        if (st != FL_OK) break;
        const char *c = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        int32_t id = json_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        st = put_token(L, id, c, strlen(c), 1);
        if (st == FL_OK && !strcmp(c, FL_EOT_TEXT)) L->tok->eot = id;
    }
    return st;
}

/* The two halves of merge item j, into a and b (a points into buf). */
static fl_status merge_parts(const loader *L, const cJSON *item, int j, char **buf, const char **a,
                             const char **b) {
    const cJSON *first = cJSON_GetArrayItem(item, 0), *second = cJSON_GetArrayItem(item, 1);
    if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 && cJSON_IsString(first) &&
        cJSON_IsString(second)) {
        *a = first->valuestring;
        *b = second->valuestring;
        return FL_OK;
    }
    const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
    const char *sp = s ? strchr(s, ' ') : NULL;
    if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' '))
        return refuse(L, "merge %d is neither \"a b\" nor [\"a\", \"b\"]", j);
    free(*buf);
    *buf = malloc(strlen(s) + 1);
    if (!*buf) return fl_fail(L->err, FL_ENOMEM, "%s: out of memory reading merges", L->path);
    strcpy(*buf, s);
    (*buf)[sp - s] = 0;
    *a = *buf;
    *b = *buf + (sp - s) + 1;
    return FL_OK;
}

/* One merge: both halves and their concatenation must be vocab tokens. */
static fl_status load_merge(const loader *L, const cJSON *item, int j, char **buf, char **cat) {
    const char *a = NULL, *b = NULL;
    fl_status st = merge_parts(L, item, j, buf, &a, &b);
    if (st != FL_OK) return st;
    int32_t ia = vocab_lookup(L, a), ib = vocab_lookup(L, b);
    if (ia < 0 || ib < 0)
        return refuse(L, "merge %d (\"%s\" \"%s\") uses unknown token \"%s\"", j, shown(a).s,
                      shown(b).s, shown(ia < 0 ? a : b).s);
    size_t la = strlen(a), lb = strlen(b);
    free(*cat);
    if (!(*cat = malloc(la + lb + 1)))
        return fl_fail(L->err, FL_ENOMEM, "%s: out of memory reading merges", L->path);
    memcpy(*cat, a, la);
    memcpy(*cat + la, b, lb + 1);
    int32_t ic = vocab_lookup(L, *cat);
    if (ic < 0)
        return refuse(L, "merge %d makes \"%s\", which is not in the vocab", j, shown(*cat).s);
    return fl_tok_add_merge(L->tok, ia, ib, ic, L->err);
}

static fl_status load_merges(loader *L, const cJSON *merges) {
    char *buf = NULL, *cat = NULL;
    fl_status st = FL_OK;
    int j = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, merges) {
        if ((st = load_merge(L, item, j++, &buf, &cat)) != FL_OK) break;
    }
    free(buf);
    free(cat);
    return st;
}

/* Builds the tokenizer from a parsed file. */
static fl_status load_json(loader *L, const cJSON *root) {
    if (!cJSON_IsObject(root))
        return refuse(L, "the top level is %s, not an object", json_type(root));
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = NULL, *merges = NULL;
    if (!model) return refuse(L, "it has no \"model\"");
    fl_status st = check_model(L, model, &vocab, &merges);
    if (st == FL_OK) st = check_pipeline(L, root);
    if (st != FL_OK) return st;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return refuse(L, "added_tokens is %s, not an array", json_type(added));
    if ((st = vocab_index(L, vocab)) != FL_OK) return st;
    int32_t n_ids = 0;
    if ((st = count_ids(L, vocab, added, &n_ids)) != FL_OK) return st;
    if ((st = fl_tok_alloc(n_ids, &L->tok, L->err)) != FL_OK) return st;
    if ((st = load_tokens(L, vocab, added)) != FL_OK) return st;
    if ((st = load_merges(L, merges)) != FL_OK) return st;
    char what[4200];
    snprintf(what, sizeof what, "%s: not a byte-level BPE tokenizer.json", L->path);
    return fl_tok_finish(L->tok, what, L->err);
}

fl_status fl_tokenizer_load(const char *path, fl_tokenizer **out, fl_error *err) {
    char *data;
    size_t len;
    fl_status st = fl_read_file(path, &data, &len, err);
    if (st != FL_OK) return st;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!root) {
        size_t at = end && end >= data ? (size_t)(end - data) : 0;
        free(data);
        return fl_fail(err, FL_EINVAL, "%s: not valid JSON (parse error near byte %zu of %zu)", path,
                       at, len);
    }
    loader L = {.path = path, .err = err};
    st = fl_json_strict(data, len, path, 0, 0, err); /* a vocab entry twice, bytes after the JSON: refused */
    if (st == FL_OK) st = load_json(&L, root);
    cJSON_Delete(root);
    free(data);
    free(L.keys);
    free(L.ids);
    if (st != FL_OK) {
        fl_tokenizer_free(L.tok);
        return st;
    }
    *out = L.tok;
    return FL_OK;
}
