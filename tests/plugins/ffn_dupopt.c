/* tests/plugins/ffn_dupopt.c — broken plugin for test_loader: declares option 'width' twice. */
#define BROKEN_NAME "dupopt"
#define BROKEN_OPTIONS {{"width", FL_OPT_INT, "4", 1, 64, NULL, "a width"}, {"width", FL_OPT_INT, "8", 1, 64, NULL, "the same name again"}}
#include "broken_plugin.h"
