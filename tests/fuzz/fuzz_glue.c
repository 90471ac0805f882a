/*
 * tests/fuzz/fuzz_glue.c — a GLUE TSV or a SuperGLUE JSON Lines file of any
 * task, read strictly and with on_error=skip. The first byte picks the
 * task, the format and the mode; the rest is the file.
 */
#include "fuzz_util.h"

#include "../../tasks/common/task_util.c"
#include "../../tasks/glue/glue_data.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    const glue_def *d = &DEFS[(data[0] & 15) % N_DEFS];
    const int jsonl = (data[0] >> 4) & 1, skip = (data[0] >> 5) & 1;
    glue_split s = {0};
    fl_error err = {0};
    if (!glue_read(d, fuzz_file(data + 1, n - 1, jsonl ? ".jsonl" : ".tsv"), skip, &s, &err)) {
        for (int64_t i = 0; i < s.n; i++) /* a label is a class or hidden */
            if (s.ex[i].label < -1 || s.ex[i].label >= d->n_classes) abort();
    }
    glue_split_free(&s);
    return 0;
}
