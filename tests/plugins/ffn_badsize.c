/* tests/plugins/ffn_badsize.c — broken plugin for test_loader: a size option that is not an integer option. */
#define BROKEN_NAME "badsize"
#define BROKEN_OPTIONS {{"width", FL_OPT_INT, "4", 1, 64, NULL, "a width"}, {"act", FL_OPT_ENUM, "relu", 0, -1, "relu|gelu", "an enum"}}
#define BROKEN_SIZE_OPTIONS {"width", "act", NULL}
#include "broken_plugin.h"
