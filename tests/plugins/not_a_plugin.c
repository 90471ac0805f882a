/*
 * tests/plugins/not_a_plugin.c — a valid shared library that is not a plugin.
 *
 * It exports an ordinary function and no ffnlab_plugin_v1, so dlopen succeeds
 * and the loader must stop at the symbol lookup.
 */
#include "ffnlab/plugin.h"

FL_EXPORT int not_a_plugin_answer(void) { return 42; }
