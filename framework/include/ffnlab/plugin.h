/*
 * ffnlab/plugin.h — what every ffnlab plugin library exports.
 *
 * A plugin is a shared library that exports exactly one symbol,
 *
 *     FL_EXPORT const fl_plugin_header *ffnlab_plugin_v1(void);
 *
 * returning a pointer to a `const` descriptor with static storage. The
 * descriptor begins with this common header; `kind` says which full struct it
 * is (fl_ffn_plugin in ffnlab/ffn.h, fl_task_plugin in ffnlab/task.h). The host
 * checks, before touching anything else: the magic, the ABI major (must be
 * equal), the ABI minor (must not be newer than the host's), struct_size, the
 * kind, and that `name` equals the file stem after "ffn_"/"task_"
 * (libffn_dense.so → "dense"). Released descriptor structs never change;
 * fields are only appended, and struct_size tells the host which exist.
 *
 * Build plugins with -fvisibility=hidden: FL_EXPORT marks the one symbol.
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_PLUGIN_H
#define FFNLAB_PLUGIN_H

#include <stdint.h>

#include "ffnlab/host.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FL_PLUGIN_MAGIC 0x46464e4cu /* "FFNL" */
#define FL_PLUGIN_SYMBOL "ffnlab_plugin_v1"
#define FL_EXPORT __attribute__((visibility("default")))

typedef enum fl_plugin_kind {
    FL_PLUGIN_FFN = 1,
    FL_PLUGIN_TASK = 2
} fl_plugin_kind;

typedef struct fl_plugin_header {
    uint32_t magic;            /* FL_PLUGIN_MAGIC */
    uint16_t abi_major;        /* FL_FFN_ABI_MAJOR / FL_TASK_ABI_MAJOR */
    uint16_t abi_minor;
    uint32_t struct_size;      /* sizeof the full descriptor the plugin built with */
    uint32_t kind;             /* fl_plugin_kind */
    const char *name;          /* short name, equal to the file stem */
    const char *version;       /* the plugin's own version, free text */
    const char *description;   /* one line */
    const fl_option *options;  /* may be NULL when n_options == 0 */
    int32_t n_options;
} fl_plugin_header;

typedef const fl_plugin_header *(*fl_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
