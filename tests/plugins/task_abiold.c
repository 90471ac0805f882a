/* tests/plugins/task_abiold.c — a task plugin built against task ABI 1.0 (the host table before FFN ABI 2.0): refused. */
#define TASK_NAME "abiold"
#define TASK_ABI_MAJOR 1
#include "task_plugin.h"
