/*
 * core/options.h — plugin options: "name:key=val,key=val" specs.
 *
 * A plugin registers its options (ffnlab/host.h fl_option); the host parses
 * user text against them, so every plugin gets the same errors for free:
 * unknown key (with the list of known ones), malformed value, out of range,
 * not one of the choices, duplicate key. Help text for `ffnlab plugins NAME`
 * is generated from the same table, never written twice.
 */
#ifndef FFNLAB_OPTIONS_H
#define FFNLAB_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#include "ffnlab/host.h"

/* A parsed option list: values[i] for opts[i]. Owns copies of the strings. */
typedef struct fl_option_set {
    int n;
    fl_value *values;
    char *text;        /* storage for the value strings */
} fl_option_set;

/* Parses "k=v,k=v" (may be empty or NULL) against opts. `where` names the
   source in messages (e.g. "--ffn moe" or "plugin dense"). */
fl_status fl_options_parse(const fl_option *opts, int n_opts, const char *text, const char *where,
                           fl_option_set *out, fl_error *err);
void fl_options_free(fl_option_set *s);

/* Splits "name:opts" into the name and the option text (NULL if none). */
fl_status fl_spec_split(const char *spec, char *name, size_t name_len, const char **opts,
                        fl_error *err);

/* Prints one option per line: name, type, default, range/choices, help. */
void fl_options_print_help(FILE *f, const fl_option *opts, int n_opts);

#endif
