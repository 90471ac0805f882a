/*
 * tests/fuzz/fuzz_options.c — a plugin's option string ("k=v,k=v") against
 * an option table with every type, as `--ffn NAME:...` and `--task
 * NAME:...` hand it over (the latter first joins list values written with
 * commas, words=a,b,c).
 */
#include "fuzz_util.h"

#include "eval.h"
#include "options.h"

static const fl_option OPTIONS[] = {
    {"experts", FL_OPT_INT, "8", 1, 4096, NULL, "an integer with a range"},
    {"capacity", FL_OPT_FLOAT, "1.25", 0, 64, NULL, "a real with a range"},
    {"noisy", FL_OPT_BOOL, "false", 0, 0, NULL, "a flag"},
    {"activation", FL_OPT_ENUM, "gelu", 0, 0, "gelu|relu|silu", "one of a list"},
    {"words", FL_OPT_STRING, "", 0, 0, NULL, "free text (a list of words)"},
    {"hidden", FL_OPT_INT, NULL, 0, 1 << 20, NULL, "derived when not given"},
};
#define N_OPTIONS (int)(sizeof OPTIONS / sizeof *OPTIONS)

static void parse(const char *text) {
    fl_option_set set = {0};
    fl_error err = {0};
    if (!fl_options_parse(OPTIONS, N_OPTIONS, text, "--ffn fuzz", &set, &err)) {
        if (set.n != N_OPTIONS) abort();
        if (set.values[3].i < 0 || set.values[3].i > 2) abort(); /* an enum is one of its choices */
    }
    fl_options_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = fuzz_string(data, n);
    parse(text);
    char *joined = NULL;
    fl_error err = {0};
    if (!fl_eval_join_lists(OPTIONS, N_OPTIONS, text, &joined, &err)) parse(joined);
    free(joined);
    free(text);
    return 0;
}
