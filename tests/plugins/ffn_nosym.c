/* tests/plugins/ffn_nosym.c — broken plugin for test_loader: exports ffnlab_plugin_v2 instead of ffnlab_plugin_v1. */
#define BROKEN_NAME "nosym"
#define BROKEN_ENTRY ffnlab_plugin_v2
#include "broken_plugin.h"
