/*
 * cli/cmd_plugins.c — `ffnlab plugins [NAME|PATH]`.
 *
 * Without an argument: the folders searched, then every plugin file found there, loaded and
 * checked exactly as training would load it, one line each (name, kind, ABI,
 * version, description, path). A file that fails the checks is listed on
 * stderr with the loader's reason, so a stale build shows up here before it
 * breaks a run. With a name or path: that plugin's header and the option help
 * generated from its descriptor (fl_options_print_help), the only help text
 * a plugin has.
 */
#include <stdio.h>    /* printf, fprintf */
#include <stdlib.h>   /* calloc, free */
#include <string.h>   /* strcmp, strlen */
#include <sys/stat.h> /* stat */

#include "cli.h"      /* fl_cli_report, fl_cli_usage */
#include "ffn_layer.h" /* fl_ffn_devices_text */
#include "loader.h"   /* fl_plugin_load, fl_plugin_discover */
#include "options.h"  /* fl_options_print_help */

static const char *kind_word(uint32_t kind) {
    return kind == FL_PLUGIN_FFN ? "ffn" : kind == FL_PLUGIN_TASK ? "task" : "?";
}

static const char *or_dash(const char *s) { return s && s[0] ? s : "-"; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: ffnlab plugins            list every plugin found\n"
            "       ffnlab plugins NAME|PATH  show one plugin and its options\n"
            "\n"
            "Plugins are searched as ffn_NAME.so or task_NAME.so in $FFNLAB_PLUGIN_PATH\n"
            "(colon list), then in <prefix>/lib/ffnlab/plugins next to this program's\n"
            "folder, then in the build tree's plugins/ when it runs from its build tree.\n"
            "The list names the folders searched.\n");
}

/* ------------------------------------------------------------------------ */
/* The list                                                                   */
/* ------------------------------------------------------------------------ */

/* Loads each file once; keeps the good ones (up to max) for aligned
   printing and reports the bad ones on the spot. */
static size_t load_all(char **paths, size_t n, fl_plugin *good, size_t max) {
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        fl_error err = {0};
        if (fl_plugin_load(paths[i], 0, &good[k], &err) == FL_OK)
            k++;
        else
            fprintf(stderr, "ffnlab: warning: skipped %s\n", err.msg);
    }
    return k;
}

static int width_of(const fl_plugin *p, size_t n, int col) {
    int w = col == 0 ? 4 : 7; /* "name", "version" headers */
    for (size_t i = 0; i < n; i++) {
        const char *s = col == 0 ? p[i].header->name : or_dash(p[i].header->version);
        if ((int)strlen(s) > w) w = (int)strlen(s);
    }
    return w;
}

/* "searched: DIR" lines, "(absent)" after a folder that does not exist. */
static int print_search_dirs(void) {
    char **dirs;
    size_t n;
    fl_error err = {0};
    if (fl_plugin_search_dirs(&dirs, &n, &err)) return fl_cli_report(&err);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        printf("searched: %s%s\n", dirs[i], stat(dirs[i], &st) == 0 && S_ISDIR(st.st_mode) ? "" : " (absent)");
    }
    if (!n) printf("searched: no folders\n");
    fl_plugin_paths_free(dirs, n);
    return 0;
}

static int list_plugins(void) {
    char **paths;
    size_t n;
    fl_error err = {0};
    if (print_search_dirs()) return 1;
    if (fl_plugin_discover(0, &paths, &n, &err)) return fl_cli_report(&err);
    fl_plugin *good = calloc(n ? n : 1, sizeof *good); /* 4 KiB each: not on the stack */
    if (!good) {
        fl_plugin_paths_free(paths, n);
        fprintf(stderr, "ffnlab: error: out of memory listing plugins\n");
        return 1;
    }
    size_t k = load_all(paths, n, good, n);
    fl_plugin_paths_free(paths, n);
    if (k == 0) {
        free(good);
        printf("no plugins found (set FFNLAB_PLUGIN_PATH to the folder holding ffn_*.so)\n");
        return 0;
    }
    int wn = width_of(good, k, 0), wv = width_of(good, k, 1);
    printf("%-*s  %-4s  %-5s  %-*s  %s\n", wn, "name", "kind", "ABI", wv, "version", "description");
    for (size_t i = 0; i < k; i++) {
        const fl_plugin_header *h = good[i].header;
        char abi[16];
        snprintf(abi, sizeof abi, "%u.%u", (unsigned)h->abi_major, (unsigned)h->abi_minor);
        printf("%-*s  %-4s  %-5s  %-*s  %s\n", wn, h->name, kind_word(h->kind), abi, wv,
               or_dash(h->version), or_dash(h->description));
        printf("%-*s  %s\n", wn, "", good[i].path);
    }
    for (size_t i = 0; i < k; i++) fl_plugin_unload(&good[i]);
    free(good);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One plugin                                                                 */
/* ------------------------------------------------------------------------ */

static int show_plugin(const char *name) {
    fl_plugin p;
    fl_error err = {0};
    if (fl_plugin_load(name, 0, &p, &err)) return fl_cli_report(&err);
    const fl_plugin_header *h = p.header;
    printf("%s — %s\n", h->name, or_dash(h->description));
    printf("  kind     %s plugin\n", kind_word(h->kind));
    printf("  ABI      %u.%u\n", (unsigned)h->abi_major, (unsigned)h->abi_minor);
    printf("  version  %s\n", or_dash(h->version));
    if (h->kind == FL_PLUGIN_FFN) {
        char devices[64];
        fl_ffn_devices_text(fl_plugin_ffn(&p)->devices, devices, sizeof devices);
        printf("  devices  %s\n", devices);
    }
    printf("  path     %s\n", p.path);
    printf("\noptions (%s %s:key=value,...):\n", h->kind == FL_PLUGIN_FFN ? "--ffn" : "--task", h->name);
    fl_options_print_help(stdout, h->options, h->n_options);
    fl_plugin_unload(&p);
    return 0;
}

int fl_cmd_plugins(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc > 2) return fl_cli_usage("plugins", "expected at most one NAME or PATH, got %d", argc - 1);
    if (argc == 2 && argv[1][0] == '-') return fl_cli_usage("plugins", "unknown option '%s'", argv[1]);
    return argc == 2 ? show_plugin(argv[1]) : list_plugins();
}
