/*
 * core/loader.h — finding and loading plugin libraries.
 *
 * A plugin is found by explicit path (anything containing '/' or ending in
 * ".so"), else by name: "<kind>_<name>.so" (kind "ffn" or "task") searched in
 * FFNLAB_PLUGIN_PATH (colon list), then <program dir>/../lib/ffnlab/plugins
 * (the install's folder, found from /proc/self/exe so a moved install
 * works), then the build tree's plugin folder when the program runs from
 * inside its build tree. Loading checks, in this order, each failure one clear line naming
 * the file: dlopen succeeds; the symbol ffnlab_plugin_v1 exists; it returns a
 * non-NULL descriptor; magic; ABI major equal and minor not newer than the
 * host's; struct_size large enough; kind as expected; the name equals the
 * file stem; required function pointers present; options well-formed (names
 * unique, defaults parse against their own type and range); an FFN
 * plugin's size options (ABI 1.3) name integer options it has.
 */
#ifndef FFNLAB_LOADER_H
#define FFNLAB_LOADER_H

#include <stddef.h>

#include "ffnlab/ffn.h"
#include "ffnlab/plugin.h"

typedef struct fl_plugin {
    void *handle;                      /* dlopen handle */
    const fl_plugin_header *header;
    char path[4096];                   /* the file it came from */
} fl_plugin;

/* Loads by name or path; kind FL_PLUGIN_FFN or FL_PLUGIN_TASK. */
fl_status fl_plugin_load(const char *name_or_path, int kind, fl_plugin *out, fl_error *err);
void fl_plugin_unload(fl_plugin *p);

static inline const fl_ffn_plugin *fl_plugin_ffn(const fl_plugin *p) {
    return (const fl_ffn_plugin *)p->header;
}

/* Every plugin file found on the search path for kind (0 = any), by path,
   first occurrence of each name wins. *paths malloc'ed array of malloc'ed strings. */
fl_status fl_plugin_discover(int kind, char ***paths, size_t *n, fl_error *err);
void fl_plugin_paths_free(char **paths, size_t n);

/* The folders searched for a bare name, in order (existing or not); free
   with fl_plugin_paths_free. */
fl_status fl_plugin_search_dirs(char ***dirs, size_t *n, fl_error *err);

#endif
