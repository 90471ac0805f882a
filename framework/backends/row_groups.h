/*
 * backends/row_groups.h — rows in groups (MoE experts: the ops gemm_grouped,
 * gemm_grouped_wgrad, bias_activation_grouped and its backward): the offsets
 * both backends accept, and which group a row is in, written once so that
 * the CPU and CUDA accept exactly the same calls.
 *
 * off is a host array of G+1 row offsets: group g is rows off[g]..off[g+1]
 * of a tensor of N rows, off[0] = 0, ascending, off[G] <= N (ffnlab/host.h
 * says off[G] = N; rows past off[G] are in no group and left alone).
 */
#ifndef FFNLAB_ROW_GROUPS_H
#define FFNLAB_ROW_GROUPS_H

#include <stdint.h>

/* fl_row_group runs in CUDA kernels too (with off in device memory) */
#ifdef __CUDACC__
#define FL_ROW_GROUPS_DEVICE __host__ __device__
#else
#define FL_ROW_GROUPS_DEVICE
#endif

static inline int fl_row_groups_ok(const int64_t *off, int G, int64_t N) {
    if (!off || G < 0 || off[0] != 0 || off[G] > N) return 0;
    for (int g = 0; g < G; g++)
        if (off[g + 1] < off[g]) return 0;
    return 1;
}

/* The group of row r < off[G]: the last g with off[g] <= r (past any empty
   groups that end where g starts). Binary search: log2(G) steps. */
FL_ROW_GROUPS_DEVICE static inline int fl_row_group(const int64_t *off, int G, int64_t r) {
    int lo = 0, hi = G;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (off[mid] <= r) lo = mid;
        else hi = mid;
    }
    return lo;
}

#endif
