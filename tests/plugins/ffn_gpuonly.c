/* tests/plugins/ffn_gpuonly.c — a valid plugin with code for CUDA only: it loads, and a layer on the CPU is refused. */
#define BROKEN_NAME "gpuonly"
#define BROKEN_DEVICES FL_DEVICE_BIT(FL_DEVICE_CUDA)
#include "broken_plugin.h"
