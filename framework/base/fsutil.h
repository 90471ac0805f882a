/*
 * base/fsutil.h — files written atomically, and small path helpers.
 *
 * Every file ffnlab writes that someone may later read (checkpoints, shards,
 * tokenizers, configs) goes through fl_atomic_*: data goes to "<path>.tmp.<pid>",
 * is fsync'ed, then renamed over <path>, and the directory is fsync'ed. A crash
 * or an error leaves either the old file or the new one, never half of one.
 */
#ifndef FFNLAB_FSUTIL_H
#define FFNLAB_FSUTIL_H

#include <stdio.h>

#include "ffnlab/status.h"

typedef struct fl_atomic_file {
    FILE *f;              /* write through this */
    char path[4096];      /* final name */
    char tmp[4096];       /* temporary name */
} fl_atomic_file;

fl_status fl_atomic_open(fl_atomic_file *af, const char *path, fl_error *err);
/* Flushes, fsyncs, renames into place. On failure the temp file is removed. */
fl_status fl_atomic_commit(fl_atomic_file *af, fl_error *err);
/* Discards everything written (safe to call after a failed commit). */
void fl_atomic_abort(fl_atomic_file *af);

/* Writes len bytes to path atomically. */
fl_status fl_write_file_atomic(const char *path, const void *data, size_t len, fl_error *err);
/* Reads a whole file (malloc'ed, NUL-terminated; *len excludes the NUL). */
fl_status fl_read_file(const char *path, char **data, size_t *len, fl_error *err);
/* mkdir -p */
fl_status fl_mkdirs(const char *path, fl_error *err);
int fl_path_exists(const char *path);
/* Can files be written in folder dir, or in what `mkdir -p dir` makes? The
   first existing folder on the way must be writable (FL_EIO naming it and
   why: a read-only file system, no permission, a file in the way), so an
   output location is refused before the work that fills it. */
fl_status fl_check_writable(const char *dir, fl_error *err);
/* Can fl_write_file_atomic write path? Its temporary file is created and
   removed again, so the answer is the one the write will get; a folder at
   path is refused. For a file written after long work (a --json report). */
fl_status fl_check_file_writable(const char *path, fl_error *err);
/* The running program's folder (from /proc/self/exe, links resolved) into
   buf; 0 when it cannot be read. */
int fl_program_dir(char *buf, size_t n);
/* Puts the complete folder `fresh` where `dir` is, in one step: the two are
   exchanged atomically (renameat2 RENAME_EXCHANGE) and the old one removed,
   so a crash leaves dir either all old or all new; without an old dir,
   fresh is renamed. */
fl_status fl_replace_dir(const char *fresh, const char *dir, fl_error *err);
/* rm -r path (links are removed, not followed); 0 on success or when path
   does not exist. */
int fl_remove_tree(const char *path);
/* 1 when path is a folder with nothing in it (or does not exist). */
int fl_dir_is_empty(const char *path);
/* "<dir>/<name>" into out (size n); FL_EINVAL if it does not fit. */
fl_status fl_path_join(char *out, size_t n, const char *dir, const char *name, fl_error *err);

#endif
