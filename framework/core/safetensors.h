/*
 * core/safetensors.h — reading and writing .safetensors files.
 *
 * Format (huggingface/safetensors): u64 little-endian header length, a JSON
 * header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
 * ..., "__metadata__": {"k": "v"}}, then the raw little-endian data. Writes go
 * through fl_atomic_* (never a half-written checkpoint). The reader validates
 * the header (length within the file, JSON, dtypes, offsets in range, sizes
 * matching shapes, no overlaps) and reports the first problem with the file
 * name and tensor name.
 */
#ifndef FFNLAB_SAFETENSORS_H
#define FFNLAB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "ffnlab/status.h"
#include "ffnlab/tensor.h"

/* One tensor to write: data on the host, f32/i32/i64/bf16/u8. */
typedef struct fl_st_entry {
    const char *name;
    int32_t dtype;          /* fl_dtype */
    int32_t ndim;
    int64_t shape[FL_MAX_DIMS];
    const void *data;
} fl_st_entry;

/* meta: NULL-terminated key, value, key, value ... list, or NULL. */
fl_status fl_safetensors_write(const char *path, const fl_st_entry *entries, size_t n,
                               const char *const *meta, fl_error *err);

typedef struct fl_st_file fl_st_file;

fl_status fl_safetensors_open(const char *path, fl_st_file **out, fl_error *err);
void fl_safetensors_close(fl_st_file *f);
size_t fl_safetensors_count(const fl_st_file *f);
/* i-th tensor (in file order); data points into the mapped file. */
const fl_st_entry *fl_safetensors_at(const fl_st_file *f, size_t i);
/* by name, or NULL */
const fl_st_entry *fl_safetensors_find(const fl_st_file *f, const char *name);
/* "__metadata__" value, or NULL */
const char *fl_safetensors_meta(const fl_st_file *f, const char *key);

#endif
