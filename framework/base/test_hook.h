/*
 * base/test_hook.h — named points where the fault tests stop a process.
 *
 * The tests kill ffnlab at exact moments of its work (half-way through a
 * checkpoint file, between the files of a checkpoint, before and after the
 * checkpoint folder is exchanged, before a training step) to show that no
 * moment loses a run. With FFNLAB_TEST_PAUSE=NAME (or NAME@K: the K-th time
 * the point is reached, default the first) the process prints
 *     ffnlab: test hook: paused at NAME
 * on stderr when it gets there and waits for a signal: SIGKILL ends it
 * there; a signal it handles (SIGTERM, SIGINT in training) lets it go on.
 * Unset, a point costs one getenv. The points are listed in README.md
 * (Tests).
 */
#ifndef FFNLAB_TEST_HOOK_H
#define FFNLAB_TEST_HOOK_H

void fl_test_pause(const char *name);

#endif
