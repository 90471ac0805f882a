/*
 * cli/flags.c — the config flags `train` and `sweep` share: every config
 * field is a flag (`--d-model 256`, `--d_model=256`), and --config takes a
 * file or a name (configs/NAME.json).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int fl_cli_flag_name(const char *arg, char *name, size_t n, const char **inline_value) {
    *inline_value = NULL;
    if (strncmp(arg, "--", 2) != 0 || !arg[2]) return 0;
    snprintf(name, n, "%s", arg + 2);
    char *eq = strchr(name, '=');
    if (eq) {
        *eq = 0;
        *inline_value = arg + 2 + (eq - name) + 1;
    }
    for (char *p = name; *p; p++)
        if (*p == '-') *p = '_';
    return 1;
}

fl_status fl_cli_load_config(const char *arg, fl_config *cfg, fl_error *err) {
    char path[FL_PATH_MAX + 64];
    fl_status st = fl_config_resolve(arg, path, sizeof path, err);
    return st ? st : fl_config_load_json(cfg, path, err);
}
