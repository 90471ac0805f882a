/* cli/stubs.c — TEMPORARY weak placeholders while the subcommands are written;
   each is removed when its real file lands. */
#include <stdio.h>
#include "cli.h"
#define STUB(n) __attribute__((weak)) int fl_cmd_##n(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "ffnlab " #n ": not built yet\n"); return 1; }
STUB(train)
STUB(generate)
STUB(bench)
STUB(plugins)
STUB(tokenizer)
STUB(data)
