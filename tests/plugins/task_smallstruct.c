/* tests/plugins/task_smallstruct.c — broken task for test_eval: descriptor smaller than fl_task_plugin. */
#define TASK_NAME "smallstruct"
#define TASK_STRUCT_SIZE (sizeof(fl_plugin_header) + 8)
#include "task_plugin.h"
