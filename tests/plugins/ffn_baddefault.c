/* tests/plugins/ffn_baddefault.c — broken plugin for test_loader: option 'width' has a default (0) outside its own range [1, 64]. */
#define BROKEN_NAME "baddefault"
#define BROKEN_OPTIONS {{"width", FL_OPT_INT, "0", 1, 64, NULL, "a width"}}
#include "broken_plugin.h"
