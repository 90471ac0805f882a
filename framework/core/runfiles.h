/*
 * core/runfiles.h — the run folder: making it without leaving half of one,
 * and its config file.
 *
 * A new run is built under a temporary name beside its final one
 * ("<parent>/.<name>.partial", the same on every rank of a job) and renamed
 * into place once everything it needs is written and the model is built
 * (fl_run_dir_commit). A command that fails before that removes the
 * temporary folder; one that fails after it, before the first checkpoint
 * exists, removes the new folder again. With --force the existing folder is
 * set aside at the commit and deleted only once the new run's first
 * checkpoint is written; a failure before that puts it back. So a failed
 * command never leaves a half-made folder, never costs an existing one, and
 * the same command, corrected, runs. A resumed run works in its folder.
 */
#ifndef FFNLAB_RUNFILES_H
#define FFNLAB_RUNFILES_H

#include "config.h"

typedef struct fl_run_dir {
    char final[FL_PATH_MAX];       /* where the run lives */
    char tmp[FL_PATH_MAX];         /* where a new run is built until the commit */
    char aside[FL_PATH_MAX];       /* --force: the old folder until the first checkpoint */
    int resume;
    int state;                     /* FL_RUN_DIR_* */
} fl_run_dir;

enum { FL_RUN_DIR_PLANNED, FL_RUN_DIR_BUILDING, FL_RUN_DIR_COMMITTED, FL_RUN_DIR_KEPT };

/* Works out the names (no file system change); every rank calls it. Fails
   when dir is too long. */
fl_status fl_run_dir_plan(fl_run_dir *rd, const char *dir, int resume, fl_error *err);
/* What the command may do with the folder, checked without writing: resume
   needs its checkpoint; a new run refuses an existing non-empty folder
   unless force. */
fl_status fl_run_dir_check(const fl_run_dir *rd, int force, fl_error *err);
/* Rank 0: makes the temporary folder (a stale one from a killed command is
   removed first). Nothing for a resumed run. */
fl_status fl_run_dir_begin(fl_run_dir *rd, int force, fl_error *err);
/* The folder files go to now: the temporary one until the commit. */
const char *fl_run_dir_path(const fl_run_dir *rd);
/* Rank 0: the temporary folder renamed into place (an existing one set
   aside first). */
fl_status fl_run_dir_commit(fl_run_dir *rd, fl_error *err);
/* Rank 0, after a checkpoint is written: the run is kept from now on (and a
   folder set aside by --force is deleted). */
void fl_run_dir_keep(fl_run_dir *rd);
/* Rank 0, when the command fails: removes what it made (see above); returns
   1 when it removed a folder the user could have seen. */
int fl_run_dir_abort(fl_run_dir *rd);

/* <dir>/train_config.json, atomically. */
fl_status fl_run_write_config(const char *dir, const fl_config *cfg, fl_error *err);
/* Applies <dir>/train_config.json over c. */
fl_status fl_run_read_config(const char *dir, fl_config *c, fl_error *err);

#endif
