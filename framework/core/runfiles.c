/*
 * core/runfiles.c — run folder handling (see runfiles.h).
 */
#include "runfiles.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "log.h"

static int has_checkpoint(const char *dir) {
    char ck[FL_PATH_MAX + 64];
    snprintf(ck, sizeof ck, "%s/checkpoint/model.safetensors", dir);
    return fl_path_exists(ck);
}

fl_status fl_run_dir_plan(fl_run_dir *rd, const char *dir, int resume, fl_error *err) {
    memset(rd, 0, sizeof *rd);
    rd->resume = resume;
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--; /* "runs/x/" names runs/x */
    if (!n || n >= sizeof rd->final) return fl_fail(err, FL_EINVAL, "run folder '%s': empty or too long", dir);
    memcpy(rd->final, dir, n);
    const char *slash = strrchr(rd->final, '/');
    const int parent = slash ? (int)(slash - rd->final) : -1; /* "/x": parent "" is the root */
    const char *name = slash ? slash + 1 : rd->final;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return fl_fail(err, FL_EINVAL, "run folder '%s': name a folder, not '%s'", dir, name);
    const int p = parent < 0 ? 0 : parent;
    const char *sep = parent < 0 ? "" : "/";
    if (snprintf(rd->tmp, sizeof rd->tmp, "%.*s%s.%s.partial", p, rd->final, sep, name) >= (int)sizeof rd->tmp ||
        snprintf(rd->aside, sizeof rd->aside, "%.*s%s.%s.replaced", p, rd->final, sep, name) >= (int)sizeof rd->aside)
        return fl_fail(err, FL_EINVAL, "run folder '%s': path too long", dir);
    return FL_OK;
}

/* Where the run writes: the run folder (resume) or the one that will hold
   it and its temporary twin; a read-only or unusable place is refused
   before any work. */
static fl_status check_writable(const fl_run_dir *rd, fl_error *err) {
    char dir[sizeof rd->final];
    snprintf(dir, sizeof dir, "%s", rd->final);
    char *slash = strrchr(dir, '/');
    if (!rd->resume && !slash) snprintf(dir, sizeof dir, ".");
    else if (!rd->resume) slash[slash == dir] = 0; /* "/x" → "/" */
    fl_status st = fl_check_writable(dir, err);
    if (st) fl_error_prefix(err, "run folder %s", rd->final);
    return st;
}

fl_status fl_run_dir_check(const fl_run_dir *rd, int force, fl_error *err) {
    if (rd->resume) {
        if (!has_checkpoint(rd->final))
            return fl_fail(err, FL_EINVAL, "%s: nothing to resume (no checkpoint/model.safetensors)", rd->final);
        return check_writable(rd, err);
    }
    if (!force && !fl_dir_is_empty(rd->final))
        return fl_fail(err, FL_EINVAL, "%s: run folder exists; use --force to overwrite it or --resume to continue it",
                       rd->final);
    struct stat st;
    if (stat(rd->final, &st) == 0 && !S_ISDIR(st.st_mode))
        return fl_fail(err, FL_EINVAL, "%s: exists and is not a folder", rd->final);
    return check_writable(rd, err);
}

fl_status fl_run_dir_begin(fl_run_dir *rd, int force, fl_error *err) {
    fl_status st = fl_run_dir_check(rd, force, err);
    if (st || rd->resume) return st;
    if (fl_remove_tree(rd->tmp) != 0)
        return fl_fail(err, FL_EIO, "%s: cannot remove this leftover of an earlier run: %s", rd->tmp, strerror(errno));
    if ((st = fl_mkdirs(rd->tmp, err))) return st;
    rd->state = FL_RUN_DIR_BUILDING;
    return FL_OK;
}

const char *fl_run_dir_path(const fl_run_dir *rd) {
    return rd->state == FL_RUN_DIR_BUILDING ? rd->tmp : rd->final;
}

fl_status fl_run_dir_commit(fl_run_dir *rd, fl_error *err) {
    if (rd->state != FL_RUN_DIR_BUILDING) return FL_OK;
    if (!fl_dir_is_empty(rd->final)) { /* --force: keep the old one until the new run has a checkpoint */
        if (fl_remove_tree(rd->aside) != 0 || rename(rd->final, rd->aside) != 0)
            return fl_fail(err, FL_EIO, "%s: cannot set the existing run folder aside: %s", rd->final, strerror(errno));
    } else {
        rmdir(rd->final); /* an empty folder the user made: replaced */
    }
    if (rename(rd->tmp, rd->final) != 0) {
        fl_status st = fl_fail(err, FL_EIO, "%s: cannot rename %s into place: %s", rd->final, rd->tmp, strerror(errno));
        if (rd->aside[0] && fl_path_exists(rd->aside)) rename(rd->aside, rd->final);
        return st;
    }
    rd->state = FL_RUN_DIR_COMMITTED;
    return FL_OK;
}

void fl_run_dir_keep(fl_run_dir *rd) {
    if (rd->state != FL_RUN_DIR_COMMITTED) return;
    if (fl_remove_tree(rd->aside) != 0) fl_log_warn("could not remove the replaced run folder %s", rd->aside);
    rd->state = FL_RUN_DIR_KEPT;
}

int fl_run_dir_abort(fl_run_dir *rd) {
    int removed = 0;
    if (rd->state == FL_RUN_DIR_BUILDING) {
        fl_remove_tree(rd->tmp);
    } else if (rd->state == FL_RUN_DIR_COMMITTED && !has_checkpoint(rd->final)) {
        removed = fl_remove_tree(rd->final) == 0;
        if (removed && fl_path_exists(rd->aside)) rename(rd->aside, rd->final);
    }
    rd->state = FL_RUN_DIR_PLANNED;
    return removed;
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
