/*
 * tests/fuzz/fuzz_util.h — what the libFuzzer harnesses share.
 *
 * Most readers take a path (they mmap or stream the file, as ffnlab does
 * with a user's file), so a harness writes each input to one file of its
 * own and hands the reader that path: the code under test is the code a
 * user's bad file meets. A harness may reject nothing and must not crash,
 * leak or trip a sanitizer; an error message is a good outcome.
 */
#ifndef FFNLAB_FUZZ_UTIL_H
#define FFNLAB_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* data written to this process's input file ending in suffix; its path
   (static storage). Aborts when it cannot be written: a harness that tests
   nothing must not pass. */
static inline const char *fuzz_file(const uint8_t *data, size_t n, const char *suffix) {
    static char path[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/ffnlab-fuzz-%ld%s", tmp && tmp[0] ? tmp : "/tmp", (long)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* data as a NUL-terminated string (the caller frees it). */
static inline char *fuzz_string(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = 0;
    return s;
}

#endif
