/*
 * tests/plugins/ffn_nulldesc.c — a deliberately broken FFN plugin for test_loader.
 *
 * The entry point exists but returns NULL instead of a descriptor; the loader
 * must refuse it before dereferencing anything.
 */
#include "ffnlab/plugin.h"

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return NULL; }
