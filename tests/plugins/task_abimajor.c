/* tests/plugins/task_abimajor.c — broken task for test_eval: built against a future task ABI major. */
#define TASK_NAME "abimajor"
#define TASK_ABI_MAJOR (FL_TASK_ABI_MAJOR + 1)
#include "task_plugin.h"
