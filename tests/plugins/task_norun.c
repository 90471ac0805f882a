/* tests/plugins/task_norun.c — broken task for test_eval: no run() function. */
#define TASK_NAME "norun"
#define TASK_RUN NULL
#include "task_plugin.h"
