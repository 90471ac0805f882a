/* tests/plugins/ffn_badname.c — broken plugin for test_loader: its descriptor name ("other") does not match its file name. */
#define BROKEN_NAME "other"
#include "broken_plugin.h"
