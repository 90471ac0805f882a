/* tests/plugins/task_echo.c — a valid task for test_eval: reports what its options say. */
#define TASK_NAME "echo"
#include "task_plugin.h"
