/*
 * base/clock.h — wall-clock seconds for the timings workflows report.
 */
#ifndef FFNLAB_CLOCK_H
#define FFNLAB_CLOCK_H

#include <time.h>

/* Seconds on the monotonic clock (differences only). */
static inline double fl_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort comparison of doubles, ascending (for medians). */
static inline int fl_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
