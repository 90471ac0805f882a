/*
 * base/test_hook.c — fl_test_pause (see test_hook.h).
 */
#include "test_hook.h"

#include <stdio.h>   /* fprintf */
#include <stdlib.h>  /* getenv, strtol */
#include <string.h>  /* strlen, strncmp */
#include <unistd.h>  /* pause */

void fl_test_pause(const char *name) {
    const char *want = getenv("FFNLAB_TEST_PAUSE");
    size_t n = strlen(name);
    if (!want || strncmp(want, name, n) || (want[n] && want[n] != '@')) return;
    static long seen; /* one point is watched per process */
    long k = want[n] == '@' ? strtol(want + n + 1, NULL, 10) : 1;
    if (++seen != k) return;
    fprintf(stderr, "ffnlab: test hook: paused at %s\n", name);
    fflush(stderr);
    pause(); /* returns once a handled signal has run */
}
