/* tests/layering: compiled as part of ffnlab_cli, this must fail: the CLI
   calls run and core, never a backend directly (backend.h). */
#include "backend.h"
int layering_probe;
