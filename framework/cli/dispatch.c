/*
 * cli/dispatch.c — choosing the action of a subcommand with actions
 * (ffnlab data prepare, ffnlab tokenizer train, ...), see cli.h.
 */
#include <string.h>

#include "cli.h"

int fl_cli_dispatch(const char *cmd, int argc, char **argv, const fl_cli_action *actions,
                    int n_actions, void (*help)(FILE *f)) {
    if (argc < 2) {
        help(stderr);
        return 2;
    }
    const char *action = argv[1];
    if (!strcmp(action, "--help") || !strcmp(action, "-h") || !strcmp(action, "help")) {
        help(stdout);
        return 0;
    }
    for (int i = 0; i < n_actions; i++) /* the action gets its own argv, itself first */
        if (!strcmp(action, actions[i].name)) return actions[i].run(argc - 1, argv + 1);
    char known[256] = "";
    for (int i = 0; i < n_actions; i++) {
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, actions[i].name, sizeof known - strlen(known) - 1);
    }
    return fl_cli_usage(cmd, "unknown action '%s' (%s)", action, known);
}
