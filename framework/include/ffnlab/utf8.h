/*
 * ffnlab/utf8.h — what a valid UTF-8 sequence is (RFC 3629), in one place:
 * the corpus reader's validator and the strict JSON check (json_check.h)
 * both use it. Header-only, no dependencies.
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_UTF8_H
#define FFNLAB_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 when it
   is invalid: a stray continuation byte, an overlong form, a surrogate
   (U+D800..U+DFFF), past U+10FFFF, or cut off by the end (avail bytes). */
static inline size_t fl_utf8_len(const unsigned char *s, size_t avail) {
    unsigned b = s[0], lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    size_t n;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) n = 2;
    else if (b == 0xE0) n = 3, lo = 0xA0;        /* no overlong 3-byte form */
    else if (b == 0xED) n = 3, hi = 0x9F;        /* no surrogates */
    else if (b >= 0xE1 && b <= 0xEF) n = 3;
    else if (b == 0xF0) n = 4, lo = 0x90;        /* no overlong 4-byte form */
    else if (b == 0xF4) n = 4, hi = 0x8F;        /* nothing past U+10FFFF */
    else if (b >= 0xF1 && b <= 0xF3) n = 4;
    else return 0;                               /* 80..C1, F5..FF */
    if (avail < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return n;
}

#endif
