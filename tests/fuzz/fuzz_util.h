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

/* This process's input file ending in suffix. */
static inline void fuzz_path(char *buf, size_t n, const char *suffix) {
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, n, "%s/ffnlab-fuzz-%ld%s", tmp && tmp[0] ? tmp : "/tmp", (long)getpid(), suffix);
}

/* The suffixes the harnesses use: their files are removed at exit. */
static const char *const FUZZ_SUFFIXES[] = {".safetensors", ".json", ".bin", ".jsonl", ".tsv"};

static void fuzz_remove_files(void) {
    char path[512];
    for (size_t i = 0; i < sizeof FUZZ_SUFFIXES / sizeof *FUZZ_SUFFIXES; i++) {
        fuzz_path(path, sizeof path, FUZZ_SUFFIXES[i]);
        unlink(path);
    }
}

/* data written to this process's input file ending in suffix (one of
   FUZZ_SUFFIXES); its path (static storage). The files go at exit (a crash
   leaves them, beside the input libFuzzer saves). Aborts when it cannot be
   written: a harness that tests nothing must not pass. */
static inline const char *fuzz_file(const uint8_t *data, size_t n, const char *suffix) {
    static char path[512];
    static int registered;
    if (!registered) registered = !atexit(fuzz_remove_files);
    fuzz_path(path, sizeof path, suffix);
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
