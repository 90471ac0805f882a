/* tests/plugins/ffn_badmagic.c — broken plugin for test_loader: its descriptor starts with the wrong magic number. */
#define BROKEN_NAME "badmagic"
#define BROKEN_MAGIC 0x12345678u
#include "broken_plugin.h"
