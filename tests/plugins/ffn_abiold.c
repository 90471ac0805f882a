/* tests/plugins/ffn_abiold.c — broken plugin for test_loader: built against FFN ABI 1.x, before plugins owned their kernels. */
#define BROKEN_NAME "abiold"
#define BROKEN_ABI_MAJOR 1
#define BROKEN_ABI_MINOR 3
#include "broken_plugin.h"
