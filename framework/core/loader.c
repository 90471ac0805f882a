/*
 * core/loader.c — finding plugin files and refusing bad ones (see loader.h).
 *
 * A plugin is untrusted input until proven otherwise: a stale build, a file
 * compiled against another ffnlab, or something that is not a plugin at all
 * must produce one clear line naming the file and the reason, never a crash.
 * So the descriptor is checked field by field in the order loader.h gives,
 * and each check only reads what earlier checks proved exists (struct_size
 * before function pointers, kind before the kind-specific struct).
 *
 * Search order for a bare name: $FFNLAB_PLUGIN_PATH (colon list), the
 * install's plugin folder found relative to the running program
 * (<prefix>/bin/../lib/ffnlab/plugins, so a moved install works), then the
 * build tree's plugin folder only when the program runs from its build tree;
 * each looked at for "<kind>_<name>.so". Libraries are opened
 * RTLD_NOW (an unresolved symbol fails here, not mid-training) and
 * RTLD_LOCAL (two plugins may use the same internal names).
 */
#include "loader.h"

#include <dirent.h>    /* scandir, alphasort */
#include <dlfcn.h>     /* dlopen, dlsym, dlclose, dlerror */
#include <errno.h>     /* errno */
#include <stddef.h>    /* offsetof */
#include <stdio.h>     /* snprintf */
#include <stdlib.h>    /* getenv, malloc, free */
#include <string.h>    /* strcmp, strncmp, strchr, strrchr, strdup, strerror */
#include <limits.h>    /* PATH_MAX */
#include <sys/stat.h>  /* stat */

#include "error.h"
#include "ffnlab/task.h"
#include "fsutil.h"
#include "options.h"


#ifndef FFNLAB_PLUGIN_BUILD_DIR
#define FFNLAB_PLUGIN_BUILD_DIR ""
#endif
#ifndef FFNLAB_BUILD_DIR
#define FFNLAB_BUILD_DIR ""
#endif
#ifndef FFNLAB_PLUGIN_REL_DIR
#define FFNLAB_PLUGIN_REL_DIR "../lib/ffnlab/plugins"
#endif

#define MAX_SEARCH_DIRS 64

/* ------------------------------------------------------------------------ */
/* The search path                                                            */
/* ------------------------------------------------------------------------ */

typedef struct search_path {
    char *dir[MAX_SEARCH_DIRS];         /* owned */
    int n;
} search_path;

static fl_status search_add(search_path *sp, const char *dir, fl_error *err) {
    if (!dir || !dir[0] || sp->n == MAX_SEARCH_DIRS) return FL_OK;
    for (int i = 0; i < sp->n; i++)
        if (!strcmp(sp->dir[i], dir)) return FL_OK; /* listed once, searched once */
    if (!(sp->dir[sp->n] = strdup(dir))) return fl_fail(err, FL_ENOMEM, "out of memory building the plugin path");
    sp->n++;
    return FL_OK;
}

/* <program dir>/<relative plugin dir>, shortened by realpath when it exists
   (so `ffnlab plugins` prints /opt/x/lib/ffnlab/plugins, not .../bin/../lib/...). */
static void installed_dir(const char *prog, char *out, size_t n) {
    char joined[PATH_MAX + 64];
    snprintf(joined, sizeof joined, "%s/%s", prog, FFNLAB_PLUGIN_REL_DIR);
    char real[PATH_MAX];
    snprintf(out, n, "%s", realpath(joined, real) ? real : joined);
}

/* 1 when prog is the build tree this ffnlab was compiled in, or a folder
   inside it (the tests). */
static int in_build_tree(const char *prog) {
    const size_t n = strlen(FFNLAB_BUILD_DIR);
    return n && !strncmp(prog, FFNLAB_BUILD_DIR, n) && (prog[n] == 0 || prog[n] == '/');
}

static void search_path_free(search_path *sp) {
    for (int i = 0; i < sp->n; i++) free(sp->dir[i]);
    memset(sp, 0, sizeof *sp);
}

/* $FFNLAB_PLUGIN_PATH, then the install's folder relative to the running
   program (a moved install still finds its plugins), then the build tree's
   folder when the program runs from its build tree. */
static fl_status search_path_init(search_path *sp, fl_error *err) {
    memset(sp, 0, sizeof *sp);
    fl_status st = FL_OK;
    const char *env = getenv("FFNLAB_PLUGIN_PATH");
    if (env && env[0]) {
        char *copy = strdup(env);
        if (!copy) return fl_fail(err, FL_ENOMEM, "out of memory reading FFNLAB_PLUGIN_PATH");
        for (char *p = copy, *next; p && !st; p = next) {
            next = strchr(p, ':');
            if (next) *next++ = 0;
            st = search_add(sp, p, err);
        }
        free(copy);
    }
    char prog[PATH_MAX], dir[PATH_MAX + 64];
    if (!st && fl_program_dir(prog, sizeof prog)) {
        installed_dir(prog, dir, sizeof dir);
        st = search_add(sp, dir, err);
        if (!st && in_build_tree(prog)) st = search_add(sp, FFNLAB_PLUGIN_BUILD_DIR, err);
    }
    if (st) search_path_free(sp);
    return st;
}

/* "d1, d2, d3" into buf (truncated if long). */
static void search_path_text(const search_path *sp, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < sp->n && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", sp->dir[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (!sp->n) snprintf(buf, n, "no folders: FFNLAB_PLUGIN_PATH is empty");
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *kind_prefix(int kind) {
    return kind == FL_PLUGIN_FFN ? "ffn" : kind == FL_PLUGIN_TASK ? "task" : NULL;
}

static const char *kind_word(int kind) {
    return kind == FL_PLUGIN_FFN ? "ffn" : kind == FL_PLUGIN_TASK ? "task" : "unknown";
}

/* "ffn_moe" for kind FFN; "ffn_moe/task_moe" for kind 0 (any). */
static void wanted_stems(const char *name, int kind, char *buf, size_t n) {
    if (kind_prefix(kind))
        snprintf(buf, n, "%s_%s", kind_prefix(kind), name);
    else
        snprintf(buf, n, "ffn_%s/task_%s", name, name);
}

/* Looks for <kind>_<name>.so in each folder; the first hit wins. */
static fl_status find_by_name(const char *name, int kind, char *out, size_t n, fl_error *err) {
    search_path sp;
    fl_status st = search_path_init(&sp, err);
    if (st) return st;
    static const int kinds_any[] = {FL_PLUGIN_FFN, FL_PLUGIN_TASK};
    int one[] = {kind};
    const int *kinds = kind_prefix(kind) ? one : kinds_any;
    int n_kinds = kind_prefix(kind) ? 1 : 2;
    for (int d = 0; d < sp.n; d++)
        for (int k = 0; k < n_kinds; k++) {
            int w = snprintf(out, n, "%s/%s_%s.so", sp.dir[d], kind_prefix(kinds[k]), name);
            if (w > 0 && (size_t)w < n && is_regular_file(out)) {
                search_path_free(&sp);
                return FL_OK;
            }
        }
    char stems[300], dirs[FL_ERRMSG_LEN];
    wanted_stems(name, kind, stems, sizeof stems);
    search_path_text(&sp, dirs, sizeof dirs);
    search_path_free(&sp);
    return fl_fail(err, FL_EINVAL, "%s: plugin not found (searched: %s)", stems, dirs);
}

/* ------------------------------------------------------------------------ */
/* Descriptor checks, in loader.h's order                                     */
/* ------------------------------------------------------------------------ */

static void host_abi(int kind, int *major, int *minor) {
    if (kind == FL_PLUGIN_TASK) {
        *major = FL_TASK_ABI_MAJOR;
        *minor = FL_TASK_ABI_MINOR;
    } else {
        *major = FL_FFN_ABI_MAJOR;
        *minor = FL_FFN_ABI_MINOR;
    }
}

/* The smallest descriptor this host can use: the size of the x.0 struct, so
   a plugin built against an older minor (fewer appended fields) still loads. */
static size_t min_struct_size(int kind) {
    if (kind == FL_PLUGIN_FFN) return offsetof(fl_ffn_plugin, destroy) + sizeof(void (*)(void *));
    if (kind == FL_PLUGIN_TASK) return sizeof(fl_task_plugin);
    return sizeof(fl_plugin_header);
}

/* The header's kind if it is one we know, else what the caller asked for:
   decides which ABI version and struct size the plugin is measured against. */
static int effective_kind(const fl_plugin_header *h, int want) {
    if (h->kind == FL_PLUGIN_FFN || h->kind == FL_PLUGIN_TASK) return (int)h->kind;
    return want ? want : FL_PLUGIN_FFN;
}

static fl_status check_abi(const char *path, const fl_plugin_header *h, int want, fl_error *err) {
    if (h->magic != FL_PLUGIN_MAGIC)
        return fl_fail(err, FL_EABI,
                       "%s: not an ffnlab plugin descriptor: magic 0x%08x, expected 0x%08x (\"FFNL\")",
                       path, (unsigned)h->magic, (unsigned)FL_PLUGIN_MAGIC);
    int kind = effective_kind(h, want), major, minor;
    host_abi(kind, &major, &minor);
    if (h->abi_major != major || h->abi_minor > minor)
        return fl_fail(err, FL_EABI,
                       "%s: ABI version %u.%u found, host supports %d.%d (rebuild the plugin against this ffnlab)",
                       path, (unsigned)h->abi_major, (unsigned)h->abi_minor, major, minor);
    size_t need = min_struct_size(kind);
    if (h->struct_size < need)
        return fl_fail(err, FL_EABI,
                       "%s: descriptor struct_size %u is smaller than the %zu bytes ABI %d.%d requires "
                       "(rebuild the plugin against this ffnlab)",
                       path, (unsigned)h->struct_size, need, major, minor);
    return FL_OK;
}

static fl_status check_kind(const char *path, const fl_plugin_header *h, int want, fl_error *err) {
    if (h->kind != FL_PLUGIN_FFN && h->kind != FL_PLUGIN_TASK)
        return fl_fail(err, FL_EINVAL, "%s: unknown plugin kind %u (expected 1 = ffn or 2 = task)",
                       path, (unsigned)h->kind);
    if (want && (int)h->kind != want)
        return fl_fail(err, FL_EINVAL, "%s: wrong plugin kind: the descriptor says %s, expected %s",
                       path, kind_word((int)h->kind), kind_word(want));
    return FL_OK;
}

/* The file's base name without ".so" and without a "lib" in front of the
   kind prefix (libffn_dense.so and ffn_dense.so both give "ffn_dense"). */
static void file_stem(const char *path, char *out, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!strncmp(base, "lib", 3) && (!strncmp(base + 3, "ffn_", 4) || !strncmp(base + 3, "task_", 5)))
        base += 3;
    size_t len = strlen(base);
    if (len > 3 && !strcmp(base + len - 3, ".so")) len -= 3;
    if (len >= n) len = n - 1;
    memcpy(out, base, len);
    out[len] = 0;
}

/* Keeps `--ffn NAME`, the checkpoint's config and the file in agreement:
   what the user typed is what the file is called is what the plugin says. */
static fl_status check_name(const char *path, const fl_plugin_header *h, fl_error *err) {
    if (!h->name || !h->name[0])
        return fl_fail(err, FL_EINVAL, "%s: descriptor has no name", path);
    char stem[512];
    file_stem(path, stem, sizeof stem);
    const char *prefix = kind_prefix((int)h->kind);
    size_t pl = strlen(prefix);
    if (strncmp(stem, prefix, pl) || stem[pl] != '_' || strcmp(stem + pl + 1, h->name))
        return fl_fail(err, FL_EINVAL,
                       "%s: descriptor name '%s' does not match the file name (a plugin named '%s' "
                       "must be in %s_%s.so)",
                       path, h->name, h->name, prefix, h->name);
    return FL_OK;
}

static fl_status check_task_functions(const char *path, const fl_plugin_header *h, fl_error *err) {
    const fl_task_plugin *p = (const fl_task_plugin *)h;
    const char *missing = !p->create ? "create" : !p->run ? "run" : !p->destroy ? "destroy" : NULL;
    if (missing) return fl_fail(err, FL_EINVAL, "%s: required function '%s' is NULL", path, missing);
    return FL_OK;
}

static fl_status check_functions(const char *path, const fl_plugin_header *h, fl_error *err) {
    if (h->kind == FL_PLUGIN_TASK) return check_task_functions(path, h, err);
    if (h->kind != FL_PLUGIN_FFN) return FL_OK;
    const fl_ffn_plugin *p = (const fl_ffn_plugin *)h;
    const char *missing = !p->create     ? "create"
                          : !p->forward  ? "forward"
                          : !p->backward ? "backward"
                          : !p->destroy  ? "destroy"
                                         : NULL;
    if (missing) return fl_fail(err, FL_EINVAL, "%s: required function '%s' is NULL", path, missing);
    return FL_OK;
}

/* Names parse as "k=v" keys only if they hold none of these. */
static int bad_option_name(const char *s) {
    if (!s || !s[0]) return 1;
    for (; *s; s++)
        if (*s == '=' || *s == ',' || *s == ':' || *s == ' ' || *s == '\t') return 1;
    return 0;
}

static fl_status check_option_entry(const char *path, const fl_option *o, int i, fl_error *err) {
    if (bad_option_name(o->name))
        return fl_fail(err, FL_EINVAL, "%s: option %d has no usable name ('%s')", path, i,
                       o->name ? o->name : "(null)");
    if (o->type < FL_OPT_INT || o->type > FL_OPT_STRING)
        return fl_fail(err, FL_EINVAL, "%s: option '%s' has unknown type %d", path, o->name, o->type);
    if (o->type == FL_OPT_ENUM && (!o->choices || !o->choices[0]))
        return fl_fail(err, FL_EINVAL, "%s: enum option '%s' lists no choices", path, o->name);
    return FL_OK;
}

/* Unique, usable names; defaults that parse against their own type and range
   (the same parser the user's text goes through, so the messages match). */
static fl_status check_options(const char *path, const fl_plugin_header *h, fl_error *err) {
    if (h->n_options < 0 || (h->n_options > 0 && !h->options))
        return fl_fail(err, FL_EINVAL, "%s: option table is missing (n_options = %d)", path,
                       (int)h->n_options);
    for (int i = 0; i < h->n_options; i++) {
        fl_status st = check_option_entry(path, &h->options[i], i, err);
        if (st) return st;
        for (int j = 0; j < i; j++)
            if (!strcmp(h->options[i].name, h->options[j].name))
                return fl_fail(err, FL_EINVAL, "%s: option '%s' is declared twice", path,
                               h->options[i].name);
    }
    fl_option_set set;
    fl_status st = fl_options_parse(h->options, h->n_options, NULL, path, &set, err);
    if (st == FL_OK) fl_options_free(&set);
    return st;
}

/* An FFN plugin's size_options (ABI 1.3) name integer options it has. */
static fl_status check_size_options(const char *path, const fl_plugin_header *h, fl_error *err) {
    if (h->kind != FL_PLUGIN_FFN) return FL_OK;
    const char *const *names = ((const fl_ffn_plugin *)h)->size_options;
    for (int i = 0; names && names[i]; i++) {
        int found = 0;
        for (int j = 0; j < h->n_options && !found; j++)
            found = !strcmp(h->options[j].name, names[i]) && h->options[j].type == FL_OPT_INT;
        if (!found)
            return fl_fail(err, FL_EINVAL, "%s: size option '%s' is not one of its integer options", path, names[i]);
    }
    return FL_OK;
}

static fl_status check_descriptor(const char *path, const fl_plugin_header *h, int want,
                                  fl_error *err) {
    fl_status st = check_abi(path, h, want, err);
    if (!st) st = check_kind(path, h, want, err);
    if (!st) st = check_name(path, h, err);
    if (!st) st = check_functions(path, h, err);
    if (!st) st = check_options(path, h, err);
    if (!st) st = check_size_options(path, h, err);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */
/* ------------------------------------------------------------------------ */

static int looks_like_path(const char *s) {
    size_t n = strlen(s);
    return strchr(s, '/') || (n > 3 && !strcmp(s + n - 3, ".so"));
}

/* Opens `path` and gets its descriptor; on failure nothing stays open. */
static fl_status open_library(const char *path, void **handle, const fl_plugin_header **hdr,
                              fl_error *err) {
    struct stat stbuf;
    if (stat(path, &stbuf) != 0)
        return fl_fail(err, FL_EIO, "%s: cannot open: %s", path, strerror(errno));
    /* dlopen treats a name without '/' as a library to look up on the system
       path; "./" keeps "ffn_x.so" meaning the file in this folder. */
    char local[4100];
    const char *open_as = path;
    if (!strchr(path, '/')) {
        snprintf(local, sizeof local, "./%s", path);
        open_as = local;
    }
    dlerror();
    void *h = dlopen(open_as, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return fl_fail(err, FL_EINVAL, "%s: not a plugin: dlopen failed: %s", path,
                       why ? why : "unknown reason");
    }
    dlerror();
    void *sym = dlsym(h, FL_PLUGIN_SYMBOL);
    if (!sym || dlerror()) {
        dlclose(h);
        return fl_fail(err, FL_EINVAL, "%s: not an ffnlab plugin: symbol %s missing", path,
                       FL_PLUGIN_SYMBOL);
    }
    /* POSIX guarantees dlsym results convert to function pointers. */
    fl_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const fl_plugin_header *d = entry();
    if (!d) {
        dlclose(h);
        return fl_fail(err, FL_EINVAL, "%s: not an ffnlab plugin: %s() returned NULL", path,
                       FL_PLUGIN_SYMBOL);
    }
    *handle = h;
    *hdr = d;
    return FL_OK;
}

fl_status fl_plugin_load(const char *name_or_path, int kind, fl_plugin *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    if (!name_or_path || !name_or_path[0])
        return fl_fail(err, FL_EINVAL, "empty plugin name");
    if (kind != 0 && !kind_prefix(kind))
        return fl_fail(err, FL_EINVAL, "%s: unknown plugin kind %d requested", name_or_path, kind);
    if (looks_like_path(name_or_path)) {
        if (strlen(name_or_path) >= sizeof out->path)
            return fl_fail(err, FL_EINVAL, "plugin path too long: %.200s...", name_or_path);
        snprintf(out->path, sizeof out->path, "%s", name_or_path);
    } else {
        fl_status st = find_by_name(name_or_path, kind, out->path, sizeof out->path, err);
        if (st) return st;
    }
    void *handle = NULL;
    const fl_plugin_header *h = NULL;
    fl_status st = open_library(out->path, &handle, &h, err);
    if (!st) {
        st = check_descriptor(out->path, h, kind, err);
        if (st) dlclose(handle);
    }
    if (st) {
        out->path[0] = 0;
        return st;
    }
    out->handle = handle;
    out->header = h;
    return FL_OK;
}

void fl_plugin_unload(fl_plugin *p) {
    if (!p) return;
    if (p->handle) dlclose(p->handle);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------------ */
/* Discovery                                                                  */
/* ------------------------------------------------------------------------ */

/* "ffn_*.so" / "task_*.so" of the wanted kind (0 = either). */
static int plugin_file_name(const char *f, int kind) {
    size_t n = strlen(f);
    if (n < 4 || strcmp(f + n - 3, ".so")) return 0;
    int ffn = !strncmp(f, "ffn_", 4) && n > 4 + 3;
    int task = !strncmp(f, "task_", 5) && n > 5 + 3;
    return kind == FL_PLUGIN_FFN ? ffn : kind == FL_PLUGIN_TASK ? task : (ffn || task);
}

typedef struct path_list {
    char **items;
    size_t n, cap;
} path_list;

static int path_list_has_file(const path_list *l, const char *file) {
    for (size_t i = 0; i < l->n; i++) {
        const char *b = strrchr(l->items[i], '/');
        if (!strcmp(b ? b + 1 : l->items[i], file)) return 1;
    }
    return 0;
}

static fl_status path_list_push(path_list *l, const char *dir, const char *file, fl_error *err) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **items = realloc(l->items, cap * sizeof *items);
        if (!items) return fl_fail(err, FL_ENOMEM, "out of memory listing plugins");
        l->items = items;
        l->cap = cap;
    }
    size_t len = strlen(dir) + strlen(file) + 2;
    char *p = malloc(len);
    if (!p) return fl_fail(err, FL_ENOMEM, "out of memory listing plugins");
    snprintf(p, len, "%s/%s", dir, file);
    l->items[l->n++] = p;
    return FL_OK;
}

/* Adds the plugin files of one folder (sorted, so listings are stable);
   a folder that does not exist is simply empty. */
static fl_status scan_dir(const char *dir, int kind, path_list *l, fl_error *err) {
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) return FL_OK;
    fl_status st = FL_OK;
    for (int i = 0; i < n; i++) {
        const char *f = ents[i]->d_name;
        char full[4096];
        if (!st && plugin_file_name(f, kind) && !path_list_has_file(l, f) &&
            snprintf(full, sizeof full, "%s/%s", dir, f) < (int)sizeof full && is_regular_file(full))
            st = path_list_push(l, dir, f, err);
        free(ents[i]);
    }
    free(ents);
    return st;
}

fl_status fl_plugin_discover(int kind, char ***paths, size_t *n, fl_error *err) {
    *paths = NULL;
    *n = 0;
    search_path sp;
    fl_status st = search_path_init(&sp, err);
    if (st) return st;
    path_list l = {0};
    for (int d = 0; d < sp.n && !st; d++) st = scan_dir(sp.dir[d], kind, &l, err);
    search_path_free(&sp);
    if (st) {
        fl_plugin_paths_free(l.items, l.n);
        return st;
    }
    *paths = l.items;
    *n = l.n;
    return FL_OK;
}

fl_status fl_plugin_search_dirs(char ***dirs, size_t *n, fl_error *err) {
    search_path sp;
    fl_status st = search_path_init(&sp, err);
    if (st) return st;
    *dirs = calloc((size_t)(sp.n ? sp.n : 1), sizeof **dirs);
    if (!*dirs) {
        search_path_free(&sp);
        return fl_fail(err, FL_ENOMEM, "out of memory listing plugin folders");
    }
    memcpy(*dirs, sp.dir, (size_t)sp.n * sizeof **dirs); /* ownership moves to the caller */
    *n = (size_t)sp.n;
    return FL_OK;
}

void fl_plugin_paths_free(char **paths, size_t n) {
    for (size_t i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
}
