/*
 * tests/fuzz/fuzz_spec.c — the spec strings of --ffn, --ffn-layer and
 * --task/--eval-task: split into a plugin name and options, and set on a
 * config, which then says each layer's spec.
 */
#include "fuzz_util.h"

#include "config.h"
#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = fuzz_string(data, n), name[128], spec[1024];
    const char *opts = NULL;
    fl_error err = {0};
    if (!fl_spec_split(text, name, sizeof name, &opts, &err) && (!name[0] || strchr(name, ':'))) abort();
    static const char *const KEYS[] = {"ffn", "ffn_layer", "eval_task"};
    for (size_t k = 0; k < sizeof KEYS / sizeof *KEYS; k++) {
        fl_config c;
        fl_config_defaults(&c);
        if (fl_config_set(&c, KEYS[k], text, &err) || fl_config_validate(&c, &err)) continue;
        for (int l = 0; l < c.n_layers && l < 64; l++)
            if (fl_config_layer_ffn(&c, l, spec, sizeof spec, &err)) break;
    }
    free(text);
    return 0;
}
