/* tests/plugins/ffn_nobackward.c — broken plugin for test_loader: leaves the required backward function NULL. */
#define BROKEN_NAME "nobackward"
#define BROKEN_BACKWARD NULL
#include "broken_plugin.h"
