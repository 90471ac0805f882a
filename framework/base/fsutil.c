/*
 * base/fsutil.c — atomic writes and path helpers (see fsutil.h).
 */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>     /* renameat2 */
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "test_hook.h"

fl_status fl_atomic_open(fl_atomic_file *af, const char *path, fl_error *err) {
    memset(af, 0, sizeof *af);
    if (snprintf(af->path, sizeof af->path, "%s", path) >= (int)sizeof af->path ||
        snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof af->tmp)
        return fl_fail(err, FL_EINVAL, "%s: path too long", path);
    af->f = fopen(af->tmp, "wb");
    if (!af->f) return fl_fail(err, FL_EIO, "%s: cannot create: %s", path, strerror(errno)); /* the user's name, not the temporary's */
    return FL_OK;
}

static void fsync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

fl_status fl_atomic_commit(fl_atomic_file *af, fl_error *err) {
    if (!af->f) return fl_fail(err, FL_EINTERNAL, "%s: commit of a closed file", af->path);
    int bad = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    int e = errno;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad) {
        unlink(af->tmp);
        return fl_fail(err, FL_EIO, "%s: write failed: %s", af->path, strerror(e ? e : EIO));
    }
    if (rename(af->tmp, af->path) != 0) {
        e = errno;
        unlink(af->tmp);
        return fl_fail(err, FL_EIO, "%s: cannot rename into place: %s", af->path, strerror(e));
    }
    fsync_dir_of(af->path);
    return FL_OK;
}

void fl_atomic_abort(fl_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp[0]) unlink(af->tmp);
}

fl_status fl_write_file_atomic(const char *path, const void *data, size_t len, fl_error *err) {
    fl_atomic_file af;
    fl_status st = fl_atomic_open(&af, path, err);
    if (st) return st;
    if (len && fwrite(data, 1, len, af.f) != len) {
        fl_atomic_abort(&af);
        return fl_fail(err, FL_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    return fl_atomic_commit(&af, err);
}

fl_status fl_read_file(const char *path, char **data, size_t *len, fl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail(err, FL_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap + 1);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) { free(buf); buf = NULL; }
            buf = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return fl_fail(err, FL_ENOMEM, "%s: out of memory reading file", path);
    if (bad) {
        free(buf);
        return fl_fail(err, FL_EIO, "%s: read failed", path);
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return FL_OK;
}

fl_status fl_mkdirs(const char *path, fl_error *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return fl_fail(err, FL_EINVAL, "%s: path too long", path);
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
                return fl_fail(err, FL_EIO, "%s: cannot create directory: %s", tmp, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return FL_OK;
}

fl_status fl_check_writable(const char *dir, fl_error *err) {
    char at[4096];
    if (snprintf(at, sizeof at, "%s", dir[0] ? dir : ".") >= (int)sizeof at)
        return fl_fail(err, FL_EINVAL, "%s: path too long", dir);
    struct stat st;
    while (stat(at, &st) != 0) { /* not there yet: mkdir -p makes it inside the first folder that is */
        if (errno != ENOENT) return fl_fail(err, FL_EIO, "%s: %s", at, strerror(errno));
        char *slash = strrchr(at, '/');
        if (!slash) snprintf(at, sizeof at, ".");
        else if (slash == at) at[1] = 0; /* "/x" → "/" */
        else *slash = 0;
    }
    if (!S_ISDIR(st.st_mode)) return fl_fail(err, FL_EIO, "%s: not a folder", at);
    if (access(at, W_OK | X_OK) != 0) return fl_fail(err, FL_EIO, "%s: cannot write there: %s", at, strerror(errno));
    return FL_OK;
}

fl_status fl_check_file_writable(const char *path, fl_error *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return fl_fail(err, FL_EIO, "%s: is a folder", path);
    fl_atomic_file af;
    fl_status s = fl_atomic_open(&af, path, err);
    if (!s) fl_atomic_abort(&af);
    return s;
}

int fl_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

fl_status fl_path_join(char *out, size_t n, const char *dir, const char *name, fl_error *err) {
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n)
        return fl_fail(err, FL_EINVAL, "%s/%s: path too long", dir, name);
    return FL_OK;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int fl_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int fl_dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 1;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d))) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

int fl_program_dir(char *buf, size_t n) {
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0 || (size_t)len >= n - 1) return 0;
    buf[len] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return 0;
    *slash = 0;
    return 1;
}

fl_status fl_replace_dir(const char *fresh, const char *dir, fl_error *err) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (rename(fresh, dir) != 0)
            return fl_fail(err, FL_EIO, "%s: cannot rename %s into place: %s", dir, fresh, strerror(errno));
    } else if (renameat2(AT_FDCWD, fresh, AT_FDCWD, dir, RENAME_EXCHANGE) != 0) {
        return fl_fail(err, FL_EIO, "%s: cannot exchange it with %s: %s", dir, fresh, strerror(errno));
    }
    fsync_dir_of(dir);
    fl_test_pause("replace_dir.exchanged");
    fl_remove_tree(fresh); /* the old folder, after an exchange */
    return FL_OK;
}
