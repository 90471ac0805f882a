/* tests/plugins/ffn_abimajor.c — broken plugin for test_loader: built against a future ABI major version. */
#define BROKEN_NAME "abimajor"
#define BROKEN_ABI_MAJOR (FL_FFN_ABI_MAJOR + 1)
#include "broken_plugin.h"
