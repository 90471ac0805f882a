/*
 * core/runfiles.c — run folder handling (see runfiles.h).
 */
#define _XOPEN_SOURCE 700
#include "runfiles.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fsutil.h"

static int is_empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d))) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag;
    return ftw->level == 0 ? 0 : remove(path); /* keep the folder itself */
}

fl_status fl_run_dir_prepare(const char *dir, int resume, int force, fl_error *err) {
    char ck[FL_PATH_MAX + 64];
    snprintf(ck, sizeof ck, "%s/checkpoint/model.safetensors", dir);
    if (resume) {
        if (!fl_path_exists(ck))
            return fl_fail(err, FL_EINVAL, "%s: nothing to resume (no checkpoint/model.safetensors)", dir);
        return FL_OK;
    }
    if (fl_path_exists(dir) && !is_empty_dir(dir)) {
        if (!force)
            return fl_fail(err, FL_EINVAL, "%s: run folder exists; use --force to overwrite it or --resume to continue it", dir);
        if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
            return fl_fail(err, FL_EIO, "%s: cannot empty the run folder: %s", dir, strerror(errno));
    }
    return fl_mkdirs(dir, err);
}

fl_status fl_run_write_config(const char *dir, const fl_config *cfg, fl_error *err) {
    char path[FL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/train_config.json", dir);
    char *json = fl_config_to_json(cfg);
    if (!json) return fl_fail(err, FL_ENOMEM, "out of memory writing %s", path);
    fl_status st = fl_write_file_atomic(path, json, strlen(json), err);
    free(json);
    return st;
}

fl_status fl_run_read_config(const char *dir, fl_config *c, fl_error *err) {
    char path[FL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/train_config.json", dir);
    if (!fl_path_exists(path)) return fl_fail(err, FL_EINVAL, "%s: not a run folder (no train_config.json)", dir);
    return fl_config_load_json(c, path, err);
}
