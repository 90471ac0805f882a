/*
 * tests/fuzz/fuzz_config.c — a config JSON (--config FILE, config.json of a
 * checkpoint) applied over the defaults, validated, written back out.
 */
#include "fuzz_util.h"

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *json = fuzz_string(data, n);
    fl_config c;
    fl_config_defaults(&c);
    fl_error err = {0};
    if (!fl_config_apply_json(&c, json, "fuzz.json", &err) && !fl_config_validate(&c, &err)) {
        free(fl_config_to_json(&c));
        char spec[1024];
        for (int l = 0; l < c.n_layers && l < 64; l++)
            if (fl_config_layer_ffn(&c, l, spec, sizeof spec, &err)) break;
    }
    free(json);
    return 0;
}
