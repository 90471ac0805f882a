/* tests/plugins/ffn_smallstruct.c — broken plugin for test_loader: claims a struct_size too small to hold the FFN functions. */
#define BROKEN_NAME "smallstruct"
#define BROKEN_STRUCT_SIZE sizeof(fl_plugin_header)
#include "broken_plugin.h"
