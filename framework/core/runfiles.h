/*
 * core/runfiles.h — the run folder: creating it safely, its config file.
 */
#ifndef FFNLAB_RUNFILES_H
#define FFNLAB_RUNFILES_H

#include "config.h"

/* New run: refuses an existing non-empty folder unless force (then empties
   it). Resume: requires the folder and its checkpoint. */
fl_status fl_run_dir_prepare(const char *dir, int resume, int force, fl_error *err);
/* <dir>/train_config.json, atomically. */
fl_status fl_run_write_config(const char *dir, const fl_config *cfg, fl_error *err);
/* Applies <dir>/train_config.json over c. */
fl_status fl_run_read_config(const char *dir, fl_config *c, fl_error *err);

#endif
