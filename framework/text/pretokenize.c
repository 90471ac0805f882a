/*
 * text/pretokenize.c — cutting text into the pieces BPE works inside.
 *
 * GPT-2 splits text with one regex (contractions, letter runs, digit runs,
 * punctuation runs, whitespace), each optionally preceded by one space, and
 * never merges across those pieces. We run the same pattern with PCRE2 in
 * Unicode mode, JIT-compiled. PCRE2 requires valid UTF-8, and checking the
 * whole subject on every match call would be quadratic, so the text is first
 * cut into maximal valid-UTF-8 runs: each run is matched with the check off,
 * and every byte outside a run becomes a piece of its own. The pieces always
 * concatenate back to the input, which is what makes decode(encode(x)) == x
 * hold for any bytes.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>   /* pcre2_compile, pcre2_jit_compile, pcre2_match */
#include <stdlib.h>  /* malloc */
#include <string.h>  /* memmem */

#include "error.h"
#include "tokenizer_internal.h"

/* GPT-2's pre-tokenizer pattern (encoder.py, and the Hugging Face ByteLevel
   pre-tokenizer):
       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
   with \s spelled out as Unicode's White_Space property, which is what the
   Hugging Face library's regex engine means by \s. PCRE2's own \s (in UCP
   mode) also takes U+180E MONGOLIAN VOWEL SEPARATOR, which Unicode dropped
   from White_Space in 6.3; with it "\u180e's" would split differently. */
#define WS                                                                  \
    "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}" \
    "\\x{205F}\\x{3000}"
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
                                   "|[" WS "]+(?![^" WS "])|[" WS "]+";

struct fl_pretok {
    pcre2_code *re;
    int jit;        /* 1 when pcre2_jit_compile succeeded */
};

fl_status fl_pretok_create(fl_pretok **out, fl_error *err) {
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return fl_fail(err, FL_EINTERNAL, "GPT-2 pre-tokenizer regex: %s at %zu", (char *)msg,
                       (size_t)at);
    }
    fl_pretok *p = malloc(sizeof *p);
    if (!p) {
        pcre2_code_free(re);
        return fl_fail(err, FL_ENOMEM, "out of memory creating the pre-tokenizer");
    }
    p->re = re;
    /* Without JIT the interpreter still gives the same pieces, only slower. */
    p->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    *out = p;
    return FL_OK;
}

void fl_pretok_free(fl_pretok *p) {
    if (!p) return;
    pcre2_code_free(p->re);
    free(p);
}

/* Length of the valid UTF-8 character at s[0..n) (1..4), or 0 if the bytes
   there do not start one. Strict, as PCRE2 is: no overlong forms, no
   surrogates, nothing above U+10FFFF. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* Length of the longest valid UTF-8 prefix of s[0..n). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_char_len(s + i, n - i);
        if (!k) break;
        i += k;
    }
    return i;
}

/* One match attempt at off; returns PCRE2's code. The interpreter is the
   fallback for the (unlikely) case that JIT runs out of its stack. */
static int match_at(const fl_pretok *p, const char *s, size_t n, size_t off,
                    pcre2_match_data *md) {
    int rc = PCRE2_ERROR_NOMATCH;
    if (p->jit) rc = pcre2_jit_match(p->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
    if (!p->jit || rc < PCRE2_ERROR_NOMATCH)
        rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    return rc;
}

/* Regex pieces of one valid-UTF-8 run. The pattern matches every character,
   but anything it skips or fails on is still emitted, so no byte is lost. */
static fl_status split_valid_run(const fl_pretok *p, pcre2_match_data *md, const char *s,
                                 size_t n, fl_piece_fn fn, void *ctx) {
    size_t off = 0;
    while (off < n) {
        int rc = match_at(p, s, n, off, md);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (rc < 0 || ov[1] <= ov[0] || ov[0] < off) return fn(ctx, s + off, n - off, 0);
        fl_status st = FL_OK;
        if (ov[0] > off) st = fn(ctx, s + off, ov[0] - off, 0);
        if (st == FL_OK) st = fn(ctx, s + ov[0], ov[1] - ov[0], 0);
        if (st != FL_OK) return st;
        off = ov[1];
    }
    return FL_OK;
}

/* Pieces of text without special tokens: valid runs through the regex, each
   invalid byte alone. */
static fl_status split_plain(const fl_pretok *p, pcre2_match_data *md, const char *s, size_t n,
                             fl_piece_fn fn, void *ctx) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = utf8_valid_prefix(u + i, n - i);
        fl_status st = run ? split_valid_run(p, md, s + i, run, fn, ctx) : fn(ctx, s + i, 1, 0);
        if (st != FL_OK) return st;
        i += run ? run : 1;
    }
    return FL_OK;
}

fl_status fl_pretok_split(const fl_pretok *p, const char *text, size_t len, int split_eot,
                          fl_piece_fn fn, void *ctx, fl_error *err) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->re, NULL);
    if (!md) return fl_fail(err, FL_ENOMEM, "out of memory in the pre-tokenizer");
    const size_t eot_len = sizeof FL_EOT_TEXT - 1;
    fl_status st = FL_OK;
    size_t i = 0;
    while (st == FL_OK && i < len) {
        const char *hit = split_eot ? memmem(text + i, len - i, FL_EOT_TEXT, eot_len) : NULL;
        size_t end = hit ? (size_t)(hit - text) : len;
        st = split_plain(p, md, text + i, end - i, fn, ctx);
        if (st == FL_OK && hit) st = fn(ctx, hit, eot_len, 1);
        i = hit ? end + eot_len : len;
    }
    pcre2_match_data_free(md);
    return st;
}
