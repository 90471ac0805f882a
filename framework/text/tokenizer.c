/*
 * text/tokenizer.c — the tokenizer object: construction, encode, decode.
 *
 * A tokenizer is a table id -> bytes plus an ordered list of merges
 * (left id, right id) -> result id; the rank of a merge is its place in the
 * list. Encoding cuts the text into pieces (pretokenize.c), maps each byte of
 * a piece to its byte token, then repeatedly merges the adjacent pair of
 * lowest rank (leftmost first), exactly as the Hugging Face BPE model does, so
 * a tokenizer.json gives the same ids here and there. Most pieces are common
 * words, so the ids of each piece are memoised in a cache shared by all
 * threads (sharded, one read-write lock per shard); apart from that cache,
 * encode only reads the tokenizer, so one tokenizer serves many threads.
 *
 * Also here: GPT-2's byte-level alphabet, which tokenizer.json uses to write
 * arbitrary bytes as printable characters.
 */
#include <pthread.h>  /* pthread_rwlock_t: the shared piece cache */
#include <stdio.h>    /* snprintf */
#include <stdlib.h>   /* malloc, realloc, free */
#include <string.h>   /* memcpy, memcmp */

#include "error.h"
#include "tokenizer_internal.h"

/* ==== byte-level alphabet ============================================== */

/* Bytes that GPT-2 keeps as themselves: printable ASCII and Latin-1. */
static int bytelevel_keeps(unsigned b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t fl_bytelevel_cp(uint8_t b) {
    if (bytelevel_keeps(b)) return b;
    /* The others, in byte order, take U+0100, U+0101, ... */
    uint32_t k = 0;
    for (unsigned c = 0; c < b; c++) k += !bytelevel_keeps(c);
    return 256 + k;
}

/* Both directions of the alphabet as tables, built once (pthread_once) by
   whichever function needs them first; CP_TO_BYTE is -1 off the alphabet. */
static int16_t CP_TO_BYTE[324];
static uint32_t BYTE_TO_CP[256];
static pthread_once_t TABLES_ONCE = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    for (size_t i = 0; i < sizeof CP_TO_BYTE / sizeof CP_TO_BYTE[0]; i++) CP_TO_BYTE[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        BYTE_TO_CP[b] = fl_bytelevel_cp((uint8_t)b);
        CP_TO_BYTE[BYTE_TO_CP[b]] = (int16_t)b;
    }
}

char *fl_bytelevel_encode(const char *s, size_t n) {
    pthread_once(&TABLES_ONCE, build_tables);
    char *out = malloc(2 * n + 1);   /* every code point here is 1 or 2 UTF-8 bytes */
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = BYTE_TO_CP[(uint8_t)s[i]];
        if (cp < 0x80) out[k++] = (char)cp;
        else {
            out[k++] = (char)(0xC0 | (cp >> 6));
            out[k++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[k] = 0;
    return out;
}

long fl_bytelevel_decode(const char *str, char *out) {
    pthread_once(&TABLES_ONCE, build_tables);
    const unsigned char *s = (const unsigned char *)str;
    long k = 0;
    while (*s) {
        uint32_t cp;
        if (s[0] < 0x80) cp = *s++;
        else if ((s[0] & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
            s += 2;
        } else return -1;   /* 3- and 4-byte characters are never in the alphabet */
        if (cp >= sizeof CP_TO_BYTE / sizeof CP_TO_BYTE[0] || CP_TO_BYTE[cp] < 0) return -1;
        out[k++] = (char)CP_TO_BYTE[cp];
    }
    return k;
}

/* ==== hashing ========================================================== */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

uint64_t fl_tok_hash(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ mix64(w)) * 0x100000001B3ULL;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ w ^ ((uint64_t)n << 56));
}

/* ==== the piece cache ================================================== */

/* Pieces longer than this are rare and mostly unique: not worth memoising. */
#define CACHE_MAX_PIECE 64
/* The cache is split into shards, each with its own lock, chosen by the
   piece's hash: threads encoding at once then rarely touch the same lock,
   whose cache line would otherwise bounce between cores on every piece. */
#define CACHE_SHARDS 64
/* Bound on entries per shard, so encoding an endless stream of new words
   cannot grow memory forever (64 x 4096 = 262144 pieces). */
#define CACHE_SHARD_MAX 4096u

typedef struct cache_slot {
    uint64_t hash;       /* 0: empty */
    uint32_t key_off, key_len;
    uint32_t ids_off, n_ids;
} cache_slot;

typedef struct cache_shard {
    pthread_rwlock_t lock;
    cache_slot *slots;
    size_t cap, count;
    char *keys;
    size_t keys_len, keys_cap;
    int32_t *ids;
    size_t ids_len, ids_cap;
} cache_shard;

struct fl_tok_cache {
    cache_shard shards[CACHE_SHARDS];
    int n_init;          /* shards whose lock is initialised */
};

static void cache_free(fl_tok_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        cache_shard *sh = &c->shards[i];
        if (i < c->n_init) pthread_rwlock_destroy(&sh->lock);
        free(sh->slots);
        free(sh->keys);
        free(sh->ids);
    }
    free(c);
}

static fl_tok_cache *cache_new(void) {
    fl_tok_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    for (; c->n_init < CACHE_SHARDS; c->n_init++) {
        cache_shard *sh = &c->shards[c->n_init];
        sh->cap = 64;
        sh->slots = calloc(sh->cap, sizeof *sh->slots);
        if (!sh->slots || pthread_rwlock_init(&sh->lock, NULL) != 0) {
            cache_free(c);
            return NULL;
        }
    }
    return c;
}

static uint64_t cache_hash(const char *s, size_t n) {
    return fl_tok_hash(s, n) | 1;   /* never 0, which marks an empty slot */
}

/* The top bits pick the shard; slots within it use the low bits. */
static cache_shard *cache_shard_of(fl_tok_cache *c, uint64_t h) {
    return &c->shards[h >> 58];
}

/* Slot holding piece s, or the empty slot where it would go. Caller holds the lock. */
static cache_slot *cache_find(const cache_shard *sh, uint64_t h, const char *s, size_t n) {
    size_t mask = sh->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        cache_slot *e = &sh->slots[i];
        if (!e->hash) return e;
        if (e->hash == h && e->key_len == n && !memcmp(sh->keys + e->key_off, s, n)) return e;
    }
}

/* Copies the cached ids of piece s (hash h) to out; 1 if found. */
static int cache_get(fl_tok_cache *c, uint64_t h, const char *s, size_t n, int32_t *out,
                     size_t *n_out) {
    cache_shard *sh = cache_shard_of(c, h);
    int found = 0;
    pthread_rwlock_rdlock(&sh->lock);
    const cache_slot *e = cache_find(sh, h, s, n);
    if (e->hash) {
        memcpy(out, sh->ids + e->ids_off, e->n_ids * sizeof *out);
        *n_out = e->n_ids;
        found = 1;
    }
    pthread_rwlock_unlock(&sh->lock);
    return found;
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need) nc *= 2;
    void *nb = realloc(*buf, nc * elem);
    if (!nb) return 0;
    *buf = nb;
    *cap = nc;
    return 1;
}

static int cache_rehash(cache_shard *sh) {
    size_t ncap = sh->cap * 2;
    cache_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return 0;
    for (size_t i = 0; i < sh->cap; i++) {
        if (!sh->slots[i].hash) continue;
        size_t j = sh->slots[i].hash & (ncap - 1);
        while (ns[j].hash) j = (j + 1) & (ncap - 1);
        ns[j] = sh->slots[i];
    }
    free(sh->slots);
    sh->slots = ns;
    sh->cap = ncap;
    return 1;
}

/* Remembers ids for piece s (hash h). Failing to remember (full, out of
   memory) only costs speed, so it is silent. */
static void cache_put(fl_tok_cache *c, uint64_t h, const char *s, size_t n, const int32_t *ids,
                      size_t k) {
    cache_shard *sh = cache_shard_of(c, h);
    pthread_rwlock_wrlock(&sh->lock);
    if (sh->count >= CACHE_SHARD_MAX) goto out;
    if (2 * (sh->count + 1) > sh->cap && !cache_rehash(sh)) goto out;
    cache_slot *e = cache_find(sh, h, s, n);
    if (e->hash) goto out;   /* another thread got here first */
    if (!grow((void **)&sh->keys, &sh->keys_cap, sh->keys_len + n, 1) ||
        !grow((void **)&sh->ids, &sh->ids_cap, sh->ids_len + k, sizeof *ids))
        goto out;
    memcpy(sh->keys + sh->keys_len, s, n);
    memcpy(sh->ids + sh->ids_len, ids, k * sizeof *ids);
    *e = (cache_slot){h, (uint32_t)sh->keys_len, (uint32_t)n, (uint32_t)sh->ids_len, (uint32_t)k};
    sh->keys_len += n;
    sh->ids_len += k;
    sh->count++;
out:
    pthread_rwlock_unlock(&sh->lock);
}

/* ==== construction ===================================================== */

fl_status fl_tok_alloc(int32_t n_ids, fl_tokenizer **out, fl_error *err) {
    fl_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fl_fail(err, FL_ENOMEM, "out of memory creating a tokenizer");
    t->n_ids = n_ids;
    t->eot = -1;
    t->off = calloc((size_t)n_ids + 1, sizeof *t->off);
    t->len = calloc((size_t)n_ids + 1, sizeof *t->len);
    t->has = calloc((size_t)n_ids + 1, 1);
    t->special = calloc((size_t)n_ids + 1, 1);
    if (!t->off || !t->len || !t->has || !t->special) {
        fl_tokenizer_free(t);
        return fl_fail(err, FL_ENOMEM, "out of memory creating a tokenizer of %d ids", (int)n_ids);
    }
    *out = t;
    return FL_OK;
}

fl_status fl_tok_set_token(fl_tokenizer *tok, int32_t id, const char *s, size_t n, int special,
                           fl_error *err) {
    if (id < 0 || id >= tok->n_ids)
        return fl_fail(err, FL_EINTERNAL, "token id %d out of range", (int)id);
    if (n > UINT32_MAX || !grow((void **)&tok->blob, &tok->blob_cap, tok->blob_len + n, 1))
        return fl_fail(err, FL_ENOMEM, "out of memory storing tokens");
    if (n) memcpy(tok->blob + tok->blob_len, s, n); /* an empty token ("") before any other: blob is still NULL */
    tok->off[id] = tok->blob_len;
    tok->len[id] = (uint32_t)n;
    tok->has[id] = 1;
    tok->special[id] = (uint8_t)(special != 0);
    tok->blob_len += n;
    return FL_OK;
}

fl_status fl_tok_add_merge(fl_tokenizer *tok, int32_t left, int32_t right, int32_t result,
                           fl_error *err) {
    if (tok->n_merges == tok->merges_cap) {
        int32_t nc = tok->merges_cap ? 2 * tok->merges_cap : 1024;
        int32_t *l = realloc(tok->m_left, (size_t)nc * sizeof *l);
        if (l) tok->m_left = l;
        int32_t *r = realloc(tok->m_right, (size_t)nc * sizeof *r);
        if (r) tok->m_right = r;
        int32_t *x = realloc(tok->m_result, (size_t)nc * sizeof *x);
        if (x) tok->m_result = x;
        if (!l || !r || !x) return fl_fail(err, FL_ENOMEM, "out of memory storing merges");
        tok->merges_cap = nc;
    }
    tok->m_left[tok->n_merges] = left;
    tok->m_right[tok->n_merges] = right;
    tok->m_result[tok->n_merges] = result;
    tok->n_merges++;
    return FL_OK;
}

static uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* Rank of merge (a, b), or -1. */
static int32_t merge_rank(const fl_tokenizer *t, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b);
    size_t mask = t->mmap_cap - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
        if (t->mmap_keys[i] == k) return t->mmap_rank[i];
        if (t->mmap_keys[i] == UINT64_MAX) return -1;
    }
}

/* The merge map. A pair listed twice keeps its last rank: the Hugging Face
   library builds its map the same way (later entries overwrite), and ids
   must agree with it. */
static fl_status build_merge_map(fl_tokenizer *t, fl_error *err) {
    size_t cap = 16;
    while (cap < 2 * (size_t)t->n_merges + 2) cap *= 2;
    t->mmap_keys = malloc(cap * sizeof *t->mmap_keys);
    t->mmap_rank = malloc(cap * sizeof *t->mmap_rank);
    if (!t->mmap_keys || !t->mmap_rank) return fl_fail(err, FL_ENOMEM, "out of memory indexing merges");
    memset(t->mmap_keys, 0xFF, cap * sizeof *t->mmap_keys);   /* UINT64_MAX: empty */
    t->mmap_cap = cap;
    for (int32_t r = 0; r < t->n_merges; r++) {
        uint64_t k = pair_key(t->m_left[r], t->m_right[r]);
        size_t i = mix64(k) & (cap - 1);
        while (t->mmap_keys[i] != UINT64_MAX && t->mmap_keys[i] != k) i = (i + 1) & (cap - 1);
        t->mmap_keys[i] = k;
        t->mmap_rank[i] = r;
    }
    return FL_OK;
}

fl_status fl_tok_finish(fl_tokenizer *t, const char *what, fl_error *err) {
    pthread_once(&TABLES_ONCE, build_tables);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (int32_t id = 0; id < t->n_ids; id++)
        if (t->has[id] && !t->special[id] && t->len[id] == 1)
            t->byte_id[(uint8_t)t->blob[t->off[id]]] = id;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return fl_fail(err, FL_EINVAL, "%s: vocab has no token for byte 0x%02X (U+%04X)", what,
                           b, (unsigned)BYTE_TO_CP[b]);
    fl_status st = build_merge_map(t, err);
    if (st != FL_OK) return st;
    st = fl_pretok_create(&t->pretok, err);
    if (st != FL_OK) return st;
    t->cache = cache_new();
    if (!t->cache) return fl_fail(err, FL_ENOMEM, "out of memory creating the encode cache");
    return FL_OK;
}

void fl_tokenizer_free(fl_tokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->has);
    free(t->special);
    free(t->m_left);
    free(t->m_right);
    free(t->m_result);
    free(t->mmap_keys);
    free(t->mmap_rank);
    fl_pretok_free(t->pretok);
    cache_free(t->cache);
    free(t);
}

int32_t fl_tokenizer_vocab_size(const fl_tokenizer *tok) { return tok->n_ids; }

int32_t fl_tokenizer_eot(const fl_tokenizer *tok) { return tok->eot; }

const char *const FL_ENCODER_SPECIALS[FL_N_ENCODER_SPECIALS] = {"<s>", "</s>", "<pad>", "<mask>"};

int32_t fl_tokenizer_special_id(const fl_tokenizer *tok, const char *text) {
    const size_t n = strlen(text);
    for (int32_t id = 0; id < tok->n_ids; id++)
        if (tok->has[id] && tok->special[id] && tok->len[id] == n && !memcmp(tok->blob + tok->off[id], text, n))
            return id;
    return -1;
}

int fl_tokenizer_is_special(const fl_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids && tok->has[id] && tok->special[id];
}

fl_status fl_tokenizer_encoder_ids(const fl_tokenizer *tok, const char *what, fl_special_ids *out, fl_error *err) {
    int32_t *ids[FL_N_ENCODER_SPECIALS] = {&out->bos, &out->sep, &out->pad, &out->mask};
    for (int i = 0; i < FL_N_ENCODER_SPECIALS; i++)
        if ((*ids[i] = fl_tokenizer_special_id(tok, FL_ENCODER_SPECIALS[i])) < 0)
            return fl_fail(err, FL_EINVAL, "%s has no %s token: an encoder (arch bert) needs <s>, </s>, <pad> and "
                           "<mask> (ffnlab trains a tokenizer with them for arch bert)", what, FL_ENCODER_SPECIALS[i]);
    return FL_OK;
}

/* ==== encoding ========================================================= */

/* A merge candidate: the pair starting at symbol pos, merging into result. */
typedef struct cand {
    int32_t rank, pos, result;
} cand;

/* Scratch for one encode call (so calls on several threads never share it). */
typedef struct enc_ctx {
    const fl_tokenizer *tok;
    fl_error *err;
    int32_t *out;
    size_t n_out, cap_out;
    int32_t *sym, *next, *prev;   /* the piece as a linked list of symbols */
    cand *heap;                   /* room for 3 x cap_sym candidates */
    size_t n_heap, cap_sym;
} enc_ctx;

static int cand_before(cand a, cand b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(enc_ctx *c, cand x) {
    size_t i = c->n_heap++;
    while (i > 0 && cand_before(x, c->heap[(i - 1) / 2])) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = x;
}

static cand heap_pop(enc_ctx *c) {
    cand top = c->heap[0], last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n) break;
        if (k + 1 < n && cand_before(c->heap[k + 1], c->heap[k])) k++;
        if (!cand_before(c->heap[k], last)) break;
        c->heap[i] = c->heap[k];
        i = k;
    }
    if (n) c->heap[i] = last;
    return top;
}

/* Queues the merge of symbol i with its successor, if one exists. */
static void push_pair(enc_ctx *c, int32_t i) {
    if (i < 0 || c->next[i] < 0) return;
    int32_t r = merge_rank(c->tok, c->sym[i], c->sym[c->next[i]]);
    if (r >= 0) heap_push(c, (cand){r, i, c->tok->m_result[r]});
}

static fl_status ensure_scratch(enc_ctx *c, size_t n) {
    if (n <= c->cap_sym) return FL_OK;
    size_t cap = c->cap_sym ? c->cap_sym : 64;
    while (cap < n) cap *= 2;
    int32_t *s = realloc(c->sym, cap * sizeof *s);
    if (s) c->sym = s;
    int32_t *nx = realloc(c->next, cap * sizeof *nx);
    if (nx) c->next = nx;
    int32_t *pv = realloc(c->prev, cap * sizeof *pv);
    if (pv) c->prev = pv;
    /* each merge pushes at most 2 candidates, on top of the n-1 initial ones */
    cand *h = realloc(c->heap, 3 * cap * sizeof *h);
    if (h) c->heap = h;
    if (!s || !nx || !pv || !h) return fl_fail(c->err, FL_ENOMEM, "out of memory encoding");
    c->cap_sym = cap;
    return FL_OK;
}

static fl_status ensure_out(enc_ctx *c, size_t extra) {
    if (grow((void **)&c->out, &c->cap_out, c->n_out + extra, sizeof *c->out)) return FL_OK;
    return fl_fail(c->err, FL_ENOMEM, "out of memory encoding");
}

/* BPE of one piece into out[n_out..]: lowest rank first, leftmost among
   equals. A queued candidate is stale when its symbols have changed since;
   like the Hugging Face library we treat it as valid when the pair now there
   still merges into the same token. */
static fl_status bpe_piece(enc_ctx *c, const char *s, size_t n) {
    fl_status st = ensure_scratch(c, n);
    if (st != FL_OK) return st;
    const fl_tokenizer *t = c->tok;
    for (size_t i = 0; i < n; i++) {
        c->sym[i] = t->byte_id[(uint8_t)s[i]];
        c->prev[i] = (int32_t)i - 1;
        c->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    c->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(c, (int32_t)i);
    while (c->n_heap) {
        cand m = heap_pop(c);
        int32_t i = m.pos, j = c->next[i];
        if (c->sym[i] < 0 || j < 0) continue;   /* i was absorbed, or is last now */
        int32_t r = merge_rank(t, c->sym[i], c->sym[j]);
        if (r < 0 || t->m_result[r] != m.result) continue;
        c->sym[i] = m.result;
        c->sym[j] = -1;
        c->next[i] = c->next[j];
        if (c->next[j] >= 0) c->prev[c->next[j]] = i;
        push_pair(c, c->prev[i]);
        push_pair(c, i);
    }
    if ((st = ensure_out(c, n)) != FL_OK) return st;
    for (int32_t i = 0; i >= 0; i = c->next[i]) c->out[c->n_out++] = c->sym[i];
    return FL_OK;
}

static fl_status encode_piece(void *ctx, const char *s, size_t n, int special) {
    enc_ctx *c = ctx;
    fl_status st = ensure_out(c, n + 1);
    if (st != FL_OK) return st;
    if (special) {
        c->out[c->n_out++] = c->tok->eot;
        return FL_OK;
    }
    if (n == 1) {
        c->out[c->n_out++] = c->tok->byte_id[(uint8_t)s[0]];
        return FL_OK;
    }
    int cacheable = n <= CACHE_MAX_PIECE;
    uint64_t h = cacheable ? cache_hash(s, n) : 0;
    size_t k;
    if (cacheable && cache_get(c->tok->cache, h, s, n, c->out + c->n_out, &k)) {
        c->n_out += k;
        return FL_OK;
    }
    size_t start = c->n_out;
    if ((st = bpe_piece(c, s, n)) != FL_OK) return st;
    if (cacheable) cache_put(c->tok->cache, h, s, n, c->out + start, c->n_out - start);
    return FL_OK;
}

fl_status fl_tokenizer_encode(const fl_tokenizer *tok, const char *text, size_t len,
                              int32_t **ids, size_t *n, fl_error *err) {
    enc_ctx c = {.tok = tok, .err = err};
    /* About one id per 3-4 bytes of English; a guess only saves reallocs. */
    fl_status st = ensure_out(&c, len / 3 + 16);
    if (st == FL_OK) st = fl_pretok_split(tok->pretok, text, len, tok->eot >= 0, encode_piece, &c, err);
    free(c.sym);
    free(c.next);
    free(c.prev);
    free(c.heap);
    if (st != FL_OK) {
        free(c.out);
        return st;
    }
    *ids = c.out;
    *n = c.n_out;
    return FL_OK;
}

/* ==== decoding ========================================================= */

static int known_id(const fl_tokenizer *tok, int32_t id) { return id >= 0 && id < tok->n_ids && tok->has[id]; }

fl_status fl_tokenizer_check_ids(const fl_tokenizer *tok, const int32_t *ids, size_t n, fl_error *err) {
    char list[160] = "";
    size_t unknown = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (known_id(tok, ids[i])) continue;
        if (unknown++ < 8 && k < sizeof list)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%d", k ? ", " : "", (int)ids[i]);
    }
    if (!unknown) return FL_OK;
    char more[48] = "";
    if (unknown > 8) snprintf(more, sizeof more, " and %zu more", unknown - 8);
    return fl_fail(err, FL_EINVAL, "unknown token id%s %s%s (the tokenizer's ids are 0..%d)", unknown > 1 ? "s" : "",
                   list, more, (int)tok->n_ids - 1);
}

char *fl_tokenizer_decode(const fl_tokenizer *tok, const int32_t *ids, size_t n, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < tok->n_ids) total += tok->len[ids[i]];
    char *out = malloc(total + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_ids) continue;
        memcpy(out + k, tok->blob + tok->off[ids[i]], tok->len[ids[i]]);
        k += tok->len[ids[i]];
    }
    out[k] = 0;
    if (len) *len = k;
    return out;
}
