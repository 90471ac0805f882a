/*
 * tests/fuzz/fuzz_safetensors.c — the safetensors reader (header length,
 * JSON header, tensor table, data offsets) on arbitrary files.
 */
#include "fuzz_util.h"

#include "safetensors.h"

static volatile uint8_t g_sink; /* keeps the reads below */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fl_st_file *f = NULL;
    fl_error err = {0};
    if (fl_safetensors_open(fuzz_file(data, n, ".safetensors"), &f, &err)) return 0;
    /* every tensor the reader accepted lies inside the file: touch its bytes */
    for (size_t i = 0; i < fl_safetensors_count(f); i++) {
        const fl_st_entry *e = fl_safetensors_at(f, i);
        size_t bytes = fl_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) bytes *= (size_t)e->shape[d];
        if (bytes) g_sink ^= ((const uint8_t *)e->data)[0] ^ ((const uint8_t *)e->data)[bytes - 1];
        if (fl_safetensors_find(f, e->name) == NULL) abort(); /* each name finds itself */
    }
    (void)fl_safetensors_meta(f, "step");
    fl_safetensors_close(f);
    return 0;
}
