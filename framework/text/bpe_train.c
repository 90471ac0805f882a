/*
 * text/bpe_train.c — learning BPE merges from documents (fl_tokenizer_train).
 *
 * The classic algorithm, organised so that each merge costs time in
 * proportion to the words it touches rather than to the corpus:
 *   1. Pre-tokenize every document (OpenMP over chunks of documents) and
 *      count each distinct piece ("word") in a hash table per thread; then
 *      add the tables up. From here on the corpus is only the distinct words
 *      with their counts, a few tens of thousands even for large corpora.
 *   2. Count every adjacent pair of symbols over the words (weighted by word
 *      count) and remember, per pair, which words contain it.
 *   3. Repeat: take the most frequent pair from a max-heap (ties: smaller
 *      left id, then smaller right id, so training is deterministic and does
 *      not depend on the number of threads), rewrite only the words that
 *      contain it, adjusting the counts of the neighbouring pairs by exact
 *      deltas, and push the pairs whose counts changed. Heap entries whose
 *      count no longer matches are stale and skipped when popped.
 * Merges never cross piece boundaries, and "<|endoftext|>" is cut out of the
 * text before pre-tokenizing, so it never takes part.
 */
#include <omp.h>     /* omp_get_max_threads, omp_get_thread_num */
#include <stdlib.h>  /* malloc, calloc, realloc, free */
#include <string.h>  /* memcpy, memcmp, strlen */

#include "error.h"
#include "tokenizer_internal.h"

/* Documents longer than this are cut (at safe places) so threads share work. */
#define CHUNK_BYTES ((size_t)1 << 20)

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    void *nb = realloc(*buf, nc * elem);
    if (!nb) return 0;
    *buf = nb;
    *cap = nc;
    return 1;
}

/* ==== 1. counting words ================================================ */

typedef struct word_slot {
    uint64_t hash;    /* 0: empty */
    size_t off;       /* key bytes in the table's arena */
    size_t len;
    int64_t count;
} word_slot;

typedef struct word_table {
    word_slot *slots;
    size_t cap, n;
    char *keys;
    size_t keys_len, keys_cap;
} word_table;

static void word_table_free(word_table *t) {
    free(t->slots);
    free(t->keys);
    memset(t, 0, sizeof *t);
}

static int word_table_rehash(word_table *t) {
    size_t ncap = t->cap ? 2 * t->cap : 1 << 14;
    word_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return 0;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].hash) continue;
        size_t j = t->slots[i].hash & (ncap - 1);
        while (ns[j].hash) j = (j + 1) & (ncap - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 1;
}

/* Adds `count` to word s[0..n); 0 when out of memory. */
static int word_table_add(word_table *t, const char *s, size_t n, int64_t count) {
    if (2 * (t->n + 1) > t->cap && !word_table_rehash(t)) return 0;
    uint64_t h = fl_tok_hash(s, n) | 1;
    size_t mask = t->cap - 1, i = h & mask;
    for (; t->slots[i].hash; i = (i + 1) & mask) {
        word_slot *e = &t->slots[i];
        if (e->hash == h && e->len == n && !memcmp(t->keys + e->off, s, n)) {
            e->count += count;
            return 1;
        }
    }
    if (!grow((void **)&t->keys, &t->keys_cap, t->keys_len + n, 1)) return 0;
    memcpy(t->keys + t->keys_len, s, n);
    t->slots[i] = (word_slot){h, t->keys_len, n, count};
    t->keys_len += n;
    t->n++;
    return 1;
}

typedef struct count_ctx {
    word_table *table;
    fl_error *err;
} count_ctx;

static fl_status count_piece(void *ctx, const char *s, size_t n, int special) {
    count_ctx *c = ctx;
    if (special || n < 2) return FL_OK;   /* single bytes have no pairs to merge */
    if (!word_table_add(c->table, s, n, 1))
        return fl_fail(c->err, FL_ENOMEM, "out of memory counting words");
    return FL_OK;
}

typedef struct chunk {
    const char *s;
    size_t n;
} chunk;

/* Is s[p] a place where cutting the text cannot change its pieces? True
   after a lone "\n" between two printable non-space ASCII characters: no
   regex piece spans such a newline, and the newline is a piece of its own
   whether or not the text ends after it. */
static int safe_cut(const char *s, size_t n, size_t p) {
    if (p < 2 || p >= n) return 0;
    unsigned char before = (unsigned char)s[p - 2], after = (unsigned char)s[p];
    return s[p - 1] == '\n' && before > ' ' && before < 0x7F && after > ' ' && after < 0x7F;
}

/* Splits the documents into chunks of about CHUNK_BYTES (a document is cut
   only at safe places, so the pieces are the same as uncut). */
static fl_status make_chunks(const char *const *docs, const size_t *lens, size_t n_docs,
                             chunk **out, size_t *n_out, fl_error *err) {
    chunk *ch = NULL;
    size_t n = 0, cap = 0;
    for (size_t d = 0; d < n_docs; d++) {
        size_t start = 0;
        while (start < lens[d]) {
            size_t end = lens[d];
            if (end - start > CHUNK_BYTES) {
                end = start + CHUNK_BYTES;
                while (end < lens[d] && !safe_cut(docs[d], lens[d], end)) end++;
            }
            if (!grow((void **)&ch, &cap, n + 1, sizeof *ch)) {
                free(ch);
                return fl_fail(err, FL_ENOMEM, "out of memory splitting the corpus");
            }
            ch[n++] = (chunk){docs[d] + start, end - start};
            start = end;
        }
    }
    *out = ch;
    *n_out = n;
    return FL_OK;
}

/* Adds src's words into dst. */
static int word_table_merge(word_table *dst, const word_table *src) {
    for (size_t i = 0; i < src->cap; i++) {
        const word_slot *e = &src->slots[i];
        if (e->hash && !word_table_add(dst, src->keys + e->off, e->len, e->count)) return 0;
    }
    return 1;
}

/* Step 1: distinct pieces of all documents with their counts, in *words. */
static fl_status count_words(const fl_pretok *pt, const char *const *docs, const size_t *lens,
                             size_t n_docs, word_table *words, fl_error *err) {
    chunk *ch;
    size_t n_ch;
    fl_status st = make_chunks(docs, lens, n_docs, &ch, &n_ch, err);
    if (st != FL_OK) return st;
    int nt = omp_get_max_threads();
    word_table *tables = calloc((size_t)nt, sizeof *tables);
    fl_error *errs = calloc((size_t)nt, sizeof *errs);
    if (!tables || !errs) {
        free(ch);
        free(tables);
        free(errs);
        return fl_fail(err, FL_ENOMEM, "out of memory counting words");
    }
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        int me = omp_get_thread_num();
        count_ctx ctx = {&tables[me], &errs[me]};
#pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < n_ch; i++) {
            int stop;
#pragma omp atomic read
            stop = failed;
            if (stop) continue;
            if (fl_pretok_split(pt, ch[i].s, ch[i].n, 1, count_piece, &ctx, &errs[me]) != FL_OK) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        if (st == FL_OK && errs[t].code != FL_OK) {
            st = errs[t].code;
            if (err) *err = errs[t];
        }
        if (st == FL_OK && t == 0) {   /* the first table becomes the total */
            *words = tables[0];
            continue;
        }
        if (st == FL_OK && !word_table_merge(words, &tables[t]))
            st = fl_fail(err, FL_ENOMEM, "out of memory counting words");
        word_table_free(&tables[t]);
    }
    free(tables);
    free(errs);
    free(ch);
    return st;
}

/* ==== 2. pairs and their index ========================================= */

typedef struct pair_info {
    int32_t left, right;
    int64_t count;
    int32_t *words;        /* words that contain (or once contained) the pair */
    size_t n_words, cap_words;
    int32_t last_word;     /* last word appended, to skip repeats */
    int64_t stamp;         /* merge step at which count last changed */
} pair_info;

typedef struct heap_entry {
    int64_t count;
    int32_t left, right, pair;
} heap_entry;

typedef struct tok_span {
    size_t off, len;
} tok_span;

typedef struct trainer {
    /* words: symbols sym[off[w] .. off[w]+len[w]), weight count[w] */
    int32_t n_words;
    int32_t *sym;
    size_t *off;
    int32_t *len;
    int64_t *count;
    int64_t *word_stamp;   /* merge step at which word w was last rewritten */

    pair_info *pairs;
    size_t n_pairs, cap_pairs;
    uint64_t *pmap_keys;   /* (left<<32|right) -> index into pairs; UINT64_MAX empty */
    int32_t *pmap_val;
    size_t pmap_cap;

    heap_entry *heap;
    size_t n_heap, cap_heap;
    int32_t *changed;      /* pairs whose count changed in this step */
    size_t n_changed, cap_changed;
    int64_t step;

    /* tokens: bytes of id i are blob[toks[i].off ..][.. toks[i].len); ids 0..255 are bytes */
    char *blob;
    size_t blob_len, blob_cap;
    tok_span *toks;
    size_t n_tok, cap_tok;
    int32_t *tmap;         /* open addressing: token bytes -> id (-1 empty) */
    size_t tmap_cap;

    int32_t *m_left, *m_right, *m_result;
    size_t n_merges, cap_merges;
} trainer;

static uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static size_t pair_slot_hash(uint64_t k, size_t mask) {
    return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 17) & mask;
}

static int pmap_rehash(trainer *t) {
    size_t ncap = t->pmap_cap ? 2 * t->pmap_cap : 1 << 16;
    uint64_t *nk = malloc(ncap * sizeof *nk);
    int32_t *nv = malloc(ncap * sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return 0;
    }
    memset(nk, 0xFF, ncap * sizeof *nk);
    for (size_t i = 0; i < t->pmap_cap; i++) {
        if (t->pmap_keys[i] == UINT64_MAX) continue;
        size_t j = pair_slot_hash(t->pmap_keys[i], ncap - 1);
        while (nk[j] != UINT64_MAX) j = (j + 1) & (ncap - 1);
        nk[j] = t->pmap_keys[i];
        nv[j] = t->pmap_val[i];
    }
    free(t->pmap_keys);
    free(t->pmap_val);
    t->pmap_keys = nk;
    t->pmap_val = nv;
    t->pmap_cap = ncap;
    return 1;
}

/* Index of pair (a, b), created with count 0 if new; -1 when out of memory. */
static int32_t pair_get(trainer *t, int32_t a, int32_t b) {
    if (2 * (t->n_pairs + 1) > t->pmap_cap && !pmap_rehash(t)) return -1;
    uint64_t k = pair_key(a, b);
    size_t mask = t->pmap_cap - 1, i = pair_slot_hash(k, mask);
    for (; t->pmap_keys[i] != UINT64_MAX; i = (i + 1) & mask)
        if (t->pmap_keys[i] == k) return t->pmap_val[i];
    if (t->n_pairs >= INT32_MAX ||
        !grow((void **)&t->pairs, &t->cap_pairs, t->n_pairs + 1, sizeof *t->pairs))
        return -1;
    t->pairs[t->n_pairs] = (pair_info){.left = a, .right = b, .last_word = -1, .stamp = -1};
    t->pmap_keys[i] = k;
    t->pmap_val[i] = (int32_t)t->n_pairs;
    return (int32_t)t->n_pairs++;
}

/* Adds delta to the count of pair (a, b) in word w; a pair that gains a
   word remembers it, and the pair is marked changed for this step. */
static int pair_add(trainer *t, int32_t a, int32_t b, int64_t delta, int32_t w) {
    int32_t p = pair_get(t, a, b);
    if (p < 0) return 0;
    pair_info *pi = &t->pairs[p];
    pi->count += delta;
    if (delta > 0 && pi->last_word != w) {
        if (!grow((void **)&pi->words, &pi->cap_words, pi->n_words + 1, sizeof *pi->words)) return 0;
        pi->words[pi->n_words++] = w;
        pi->last_word = w;
    }
    if (pi->stamp != t->step) {
        pi->stamp = t->step;
        if (!grow((void **)&t->changed, &t->cap_changed, t->n_changed + 1, sizeof *t->changed)) return 0;
        t->changed[t->n_changed++] = p;
    }
    return 1;
}

/* ==== the max-heap of pairs ============================================ */

/* More frequent first; among equals the smaller (left, right). */
static int entry_before(const heap_entry *a, const heap_entry *b) {
    if (a->count != b->count) return a->count > b->count;
    if (a->left != b->left) return a->left < b->left;
    return a->right < b->right;
}

static int heap_push(trainer *t, int32_t p) {
    if (!grow((void **)&t->heap, &t->cap_heap, t->n_heap + 1, sizeof *t->heap)) return 0;
    heap_entry x = {t->pairs[p].count, t->pairs[p].left, t->pairs[p].right, p};
    size_t i = t->n_heap++;
    while (i > 0 && entry_before(&x, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = x;
    return 1;
}

static heap_entry heap_pop(trainer *t) {
    heap_entry top = t->heap[0], last = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n) break;
        if (k + 1 < n && entry_before(&t->heap[k + 1], &t->heap[k])) k++;
        if (!entry_before(&t->heap[k], &last)) break;
        t->heap[i] = t->heap[k];
        i = k;
    }
    if (n) t->heap[i] = last;
    return top;
}

/* The most frequent pair still present, or -1 when none is left. */
static int32_t best_pair(trainer *t) {
    while (t->n_heap) {
        heap_entry e = heap_pop(t);
        if (e.count > 0 && e.count == t->pairs[e.pair].count) return e.pair;
    }
    return -1;
}

/* Pushes every pair changed in this step with its new count. */
static int push_changed(trainer *t) {
    for (size_t i = 0; i < t->n_changed; i++)
        if (t->pairs[t->changed[i]].count > 0 && !heap_push(t, t->changed[i])) return 0;
    t->n_changed = 0;
    return 1;
}

/* ==== tokens =========================================================== */

static size_t tmap_find(const trainer *t, const char *s, size_t n) {
    size_t mask = t->tmap_cap - 1;
    size_t i = fl_tok_hash(s, n) & mask;
    for (; t->tmap[i] >= 0; i = (i + 1) & mask) {
        int32_t id = t->tmap[i];
        if (t->toks[id].len == n && !memcmp(t->blob + t->toks[id].off, s, n)) break;
    }
    return i;
}

static int tmap_rehash(trainer *t) {
    size_t ncap = t->tmap_cap ? 2 * t->tmap_cap : 1 << 12;
    int32_t *old = t->tmap;
    size_t old_cap = t->tmap_cap;
    t->tmap = malloc(ncap * sizeof *t->tmap);
    if (!t->tmap) {
        t->tmap = old;
        return 0;
    }
    memset(t->tmap, 0xFF, ncap * sizeof *t->tmap);   /* -1: empty */
    t->tmap_cap = ncap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i] < 0) continue;
        const tok_span *sp = &t->toks[old[i]];
        t->tmap[tmap_find(t, t->blob + sp->off, sp->len)] = old[i];
    }
    free(old);
    return 1;
}

/* Id of the token with bytes a + b: an existing one (two merges can spell
   the same string; like the Hugging Face trainer we then reuse its id) or a
   new one (*is_new). */
static int32_t token_for(trainer *t, int32_t a, int32_t b, int *is_new) {
    size_t la = t->toks[a].len, lb = t->toks[b].len;
    if (!grow((void **)&t->blob, &t->blob_cap, t->blob_len + la + lb, 1)) return -1;
    char *s = t->blob + t->blob_len;   /* tentatively appended; kept only if new */
    memcpy(s, t->blob + t->toks[a].off, la);
    memcpy(s + la, t->blob + t->toks[b].off, lb);
    if (2 * (t->n_tok + 1) > t->tmap_cap && !tmap_rehash(t)) return -1;
    size_t slot = tmap_find(t, s, la + lb);
    *is_new = t->tmap[slot] < 0;
    if (!*is_new) return t->tmap[slot];
    if (!grow((void **)&t->toks, &t->cap_tok, t->n_tok + 1, sizeof *t->toks)) return -1;
    int32_t id = (int32_t)t->n_tok++;
    t->toks[id] = (tok_span){t->blob_len, la + lb};
    t->blob_len += la + lb;
    t->tmap[slot] = id;
    return id;
}

static fl_status init_byte_tokens(trainer *t, fl_error *err) {
    t->toks = malloc((t->cap_tok = 1024) * sizeof *t->toks);
    t->blob = malloc(t->blob_cap = 1 << 16);
    if (!t->toks || !t->blob || !tmap_rehash(t))
        return fl_fail(err, FL_ENOMEM, "out of memory starting training");
    for (int b = 0; b < 256; b++) {
        t->blob[b] = (char)b;
        t->toks[b] = (tok_span){(size_t)b, 1};
        t->n_tok++;
        t->tmap[tmap_find(t, t->blob + b, 1)] = b;
    }
    t->blob_len = 256;
    return FL_OK;
}

/* ==== 3. merging ======================================================= */

/* Step 2: words as byte symbols, pair counts, pair -> words. */
static fl_status load_words(trainer *t, const word_table *wt, fl_error *err) {
    if (wt->n > INT32_MAX) return fl_fail(err, FL_EUNSUPPORTED, "corpus has too many distinct words");
    t->n_words = (int32_t)wt->n;
    t->sym = malloc((wt->keys_len + 1) * sizeof *t->sym);
    t->off = malloc((wt->n + 1) * sizeof *t->off);
    t->len = malloc((wt->n + 1) * sizeof *t->len);
    t->count = malloc((wt->n + 1) * sizeof *t->count);
    t->word_stamp = malloc((wt->n + 1) * sizeof *t->word_stamp);
    if (!t->sym || !t->off || !t->len || !t->count || !t->word_stamp)
        return fl_fail(err, FL_ENOMEM, "out of memory indexing words");
    size_t w = 0, pos = 0;
    for (size_t i = 0; i < wt->cap; i++) {
        const word_slot *e = &wt->slots[i];
        if (!e->hash) continue;
        t->off[w] = pos;
        t->len[w] = (int32_t)e->len;
        t->count[w] = e->count;
        t->word_stamp[w] = -1;
        for (size_t k = 0; k < e->len; k++) t->sym[pos + k] = (uint8_t)wt->keys[e->off + k];
        pos += e->len;
        w++;
    }
    for (int32_t v = 0; v < t->n_words; v++) {
        const int32_t *s = t->sym + t->off[v];
        for (int32_t k = 0; k + 1 < t->len[v]; k++)
            if (!pair_add(t, s[k], s[k + 1], t->count[v], v))
                return fl_fail(err, FL_ENOMEM, "out of memory counting pairs");
    }
    if (!push_changed(t)) return fl_fail(err, FL_ENOMEM, "out of memory counting pairs");
    return FL_OK;
}

/* Rewrites word w with every (a, b) replaced by c, left to right, and moves
   the counts of the neighbouring pairs: (x, a) becomes (x, c), (b, y)
   becomes (c, y). Neighbours are read as they are at that moment, so
   overlapping cases like "a b a b" and "a a a" come out exact. */
static int merge_word(trainer *t, int32_t w, int32_t a, int32_t b, int32_t c) {
    int32_t *s = t->sym + t->off[w];
    int32_t n = t->len[w], j = 0;
    int64_t f = t->count[w];
    for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            int ok = pair_add(t, a, b, -f, w);
            if (j > 0) ok = ok && pair_add(t, s[j - 1], a, -f, w) && pair_add(t, s[j - 1], c, f, w);
            if (i + 2 < n) ok = ok && pair_add(t, b, s[i + 2], -f, w) && pair_add(t, c, s[i + 2], f, w);
            if (!ok) return 0;
            s[j++] = c;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    t->len[w] = j;
    return 1;
}

static int record_merge(trainer *t, int32_t a, int32_t b, int32_t c) {
    size_t cap = t->cap_merges;
    if (!grow((void **)&t->m_left, &cap, t->n_merges + 1, sizeof *t->m_left)) return 0;
    cap = t->cap_merges;
    if (!grow((void **)&t->m_right, &cap, t->n_merges + 1, sizeof *t->m_right)) return 0;
    cap = t->cap_merges;
    if (!grow((void **)&t->m_result, &cap, t->n_merges + 1, sizeof *t->m_result)) return 0;
    t->cap_merges = cap;
    t->m_left[t->n_merges] = a;
    t->m_right[t->n_merges] = b;
    t->m_result[t->n_merges] = c;
    t->n_merges++;
    return 1;
}

/* Merges pair p in every word, recording the merge. */
static fl_status apply_merge(trainer *t, int32_t p, fl_error *err) {
    int32_t a = t->pairs[p].left, b = t->pairs[p].right;
    int is_new;
    int32_t c = token_for(t, a, b, &is_new);
    if (c < 0 || !record_merge(t, a, b, c)) return fl_fail(err, FL_ENOMEM, "out of memory training");
    t->step++;
    /* c differs from a and b (it is longer), so no pair_add below appends to
       p's own word list while we walk it. */
    pair_info *pi = &t->pairs[p];
    int32_t *words = pi->words;
    size_t n_words = pi->n_words;
    for (size_t i = 0; i < n_words; i++) {
        int32_t w = words[i];
        if (t->word_stamp[w] == t->step) continue;
        t->word_stamp[w] = t->step;
        if (!merge_word(t, w, a, b, c)) return fl_fail(err, FL_ENOMEM, "out of memory training");
    }
    pi = &t->pairs[p];   /* pairs may have moved */
    if (pi->count != 0)
        return fl_fail(err, FL_EINTERNAL, "BPE training: pair (%d, %d) left with count %lld",
                       (int)a, (int)b, (long long)pi->count);
    pi->n_words = 0;   /* every word that had it was rewritten */
    pi->last_word = -1;
    if (!push_changed(t)) return fl_fail(err, FL_ENOMEM, "out of memory training");
    return FL_OK;
}

static void trainer_free(trainer *t) {
    free(t->sym);
    free(t->off);
    free(t->len);
    free(t->count);
    free(t->word_stamp);
    for (size_t i = 0; i < t->n_pairs; i++) free(t->pairs[i].words);
    free(t->pairs);
    free(t->pmap_keys);
    free(t->pmap_val);
    free(t->heap);
    free(t->changed);
    free(t->blob);
    free(t->toks);
    free(t->tmap);
    free(t->m_left);
    free(t->m_right);
    free(t->m_result);
}

/* The trained tokens and merges, then <|endoftext|> and the n_special
   further special tokens, as an fl_tokenizer. */
static fl_status build_tokenizer(const trainer *t, const char *const *special, int n_special, fl_tokenizer **out,
                                 fl_error *err) {
    fl_tokenizer *tok;
    fl_status st = fl_tok_alloc((int32_t)t->n_tok + 1 + n_special, &tok, err);
    if (st != FL_OK) return st;
    for (size_t i = 0; st == FL_OK && i < t->n_tok; i++)
        st = fl_tok_set_token(tok, (int32_t)i, t->blob + t->toks[i].off, t->toks[i].len, 0, err);
    if (st == FL_OK) {
        tok->eot = (int32_t)t->n_tok;
        st = fl_tok_set_token(tok, tok->eot, FL_EOT_TEXT, sizeof FL_EOT_TEXT - 1, 1, err);
    }
    for (int i = 0; st == FL_OK && i < n_special; i++)
        st = fl_tok_set_token(tok, tok->eot + 1 + i, special[i], strlen(special[i]), 1, err);
    for (size_t i = 0; st == FL_OK && i < t->n_merges; i++)
        st = fl_tok_add_merge(tok, t->m_left[i], t->m_right[i], t->m_result[i], err);
    if (st == FL_OK) st = fl_tok_finish(tok, "trained tokenizer", err);
    if (st != FL_OK) {
        fl_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return FL_OK;
}

fl_status fl_tokenizer_train(const char *const *docs, const size_t *lens, size_t n_docs,
                             int32_t vocab_size, fl_tokenizer **out, fl_error *err) {
    return fl_tokenizer_train_special(docs, lens, n_docs, vocab_size, NULL, 0, out, err);
}

fl_status fl_tokenizer_train_special(const char *const *docs, const size_t *lens, size_t n_docs,
                                     int32_t vocab_size, const char *const *special, int n_special,
                                     fl_tokenizer **out, fl_error *err) {
    if (vocab_size < 257 + n_special)
        return fl_fail(err, FL_EINVAL, "vocab size %d is too small: a byte-level BPE needs at least "
                       "%d ids (256 bytes, <|endoftext|>%s)", (int)vocab_size, 257 + n_special,
                       n_special ? " and the special tokens" : "");
    fl_pretok *pt;
    fl_status st = fl_pretok_create(&pt, err);
    if (st != FL_OK) return st;
    word_table words = {0};
    st = count_words(pt, docs, lens, n_docs, &words, err);
    fl_pretok_free(pt);
    trainer t = {0};
    if (st == FL_OK) st = init_byte_tokens(&t, err);
    if (st == FL_OK) st = load_words(&t, &words, err);
    word_table_free(&words);
    /* vocabulary = tokens so far + <|endoftext|> + the other special tokens */
    while (st == FL_OK && (int64_t)t.n_tok + 1 + n_special < vocab_size) {
        int32_t p = best_pair(&t);
        if (p < 0) break;   /* corpus exhausted: a smaller vocabulary */
        st = apply_merge(&t, p, err);
    }
    if (st == FL_OK) st = build_tokenizer(&t, special, n_special, out, err);
    trainer_free(&t);
    return st;
}
