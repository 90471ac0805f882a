/* tests/plugins/task_badname.c — broken task for test_eval: its name is not its file's. */
#define TASK_NAME "other"
#include "task_plugin.h"
