/*
 * ffnlab/tensor.h — the tensor every host op and plugin call passes around.
 *
 * A tensor is a dense, contiguous, row-major block of one dtype on one device,
 * with up to FL_MAX_DIMS dimensions. It is a plain struct: copying it copies
 * the view, not the data. `capacity` is the number of bytes the tensor owns at
 * `data` (0 for a view of someone else's memory); the host's tensor_ensure()
 * grows owned tensors, tensor_release() frees them.
 *
 * Shapes are written in comments as x[N,d]: N rows of d values.
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_TENSOR_H
#define FFNLAB_TENSOR_H

#include <stddef.h>  /* size_t */
#include <stdint.h>  /* int64_t, int32_t */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fl_dtype {
    FL_F32 = 0,
    FL_BF16 = 1,
    FL_I32 = 2,
    FL_I64 = 3,
    FL_U8 = 4
} fl_dtype;

typedef enum fl_device_kind {
    FL_DEVICE_CPU = 0,
    FL_DEVICE_CUDA = 1
} fl_device_kind;

typedef struct fl_device {
    int32_t kind;   /* fl_device_kind */
    int32_t index;  /* GPU ordinal; 0 for the CPU */
} fl_device;

#define FL_MAX_DIMS 4

typedef struct fl_tensor {
    void *data;                    /* device memory of `device` */
    int64_t shape[FL_MAX_DIMS];    /* shape[0..ndim-1]; unused dims are 1 */
    int32_t ndim;
    int32_t dtype;                 /* fl_dtype */
    fl_device device;
    size_t capacity;               /* bytes owned at data; 0 for a view */
} fl_tensor;

static inline size_t fl_dtype_size(int32_t dtype) {
    switch (dtype) {
    case FL_F32: return 4;
    case FL_BF16: return 2;
    case FL_I32: return 4;
    case FL_I64: return 8;
    case FL_U8: return 1;
    default: return 0;
    }
}

static inline int64_t fl_numel(const fl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static inline size_t fl_nbytes(const fl_tensor *t) {
    return (size_t)fl_numel(t) * fl_dtype_size(t->dtype);
}

/* A view of `t` reshaped to [rows, cols] (rows*cols must equal numel). */
static inline fl_tensor fl_view2(const fl_tensor *t, int64_t rows, int64_t cols) {
    fl_tensor v = *t;
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = cols;
    v.shape[2] = v.shape[3] = 1;
    v.capacity = 0;
    return v;
}

/* A view of rows [r0, r0+n) of a tensor whose first dimension indexes rows. */
static inline fl_tensor fl_rows(const fl_tensor *t, int64_t r0, int64_t n) {
    fl_tensor v = *t;
    int64_t row = fl_numel(t) / (t->shape[0] ? t->shape[0] : 1);
    v.data = (char *)t->data + (size_t)(r0 * row) * fl_dtype_size(t->dtype);
    v.shape[0] = n;
    v.capacity = 0;
    return v;
}

/* A view wrapping caller memory (no ownership). */
static inline fl_tensor fl_wrap(void *data, int32_t dtype, fl_device dev, int ndim,
                                const int64_t *shape) {
    fl_tensor t;
    t.data = data;
    t.ndim = ndim;
    t.dtype = dtype;
    t.device = dev;
    t.capacity = 0;
    for (int i = 0; i < FL_MAX_DIMS; i++) t.shape[i] = i < ndim ? shape[i] : 1;
    return t;
}

#ifdef __cplusplus
}
#endif
#endif
