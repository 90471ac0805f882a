/* tests/plugins/ffn_abiminor.c — broken plugin for test_loader: built against a newer ABI minor version than the host knows. */
#define BROKEN_NAME "abiminor"
#define BROKEN_ABI_MINOR (FL_FFN_ABI_MINOR + 1)
#include "broken_plugin.h"
