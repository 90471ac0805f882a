/*
 * tests/plugins/ffn_wrongkind.c — a deliberately broken FFN plugin for test_loader.
 *
 * Named like an FFN plugin but its descriptor says kind = task. The struct is
 * padded well past any task descriptor's size so that the loader's earlier
 * struct_size check passes and the kind check is the one that fires.
 */
#include "ffnlab/plugin.h"
#include "ffnlab/task.h" /* FL_TASK_ABI_MAJOR: the kind check, not the version check, must fire */

typedef struct padded_task {
    fl_plugin_header header;
    void *room[64];
} padded_task;

static const padded_task D = {
    .header = {
        .magic = FL_PLUGIN_MAGIC,
        .abi_major = FL_TASK_ABI_MAJOR,
        .abi_minor = FL_TASK_ABI_MINOR,
        .struct_size = sizeof(padded_task),
        .kind = FL_PLUGIN_TASK,
        .name = "wrongkind",
        .version = "0.0.1",
        .description = "a task descriptor in an ffn_ file",
    },
};

FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void) { return &D.header; }
