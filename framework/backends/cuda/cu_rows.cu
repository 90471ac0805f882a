/*
 * backends/cuda/cu_rows.cu — ops that move whole rows by index: gather,
 * scatter-add (cu_scatter.cu does the adding), embedding bags and their
 * gradient, and zeroing a host-given list of rows.
 *
 * Index convention, as on the CPU: a negative index is padding (a zero row
 * is read, nothing is written); an index >= the table's rows is a
 * programming error, treated as padding on the device and reported by the
 * next sync() (a flag bit; the CPU logs it at once).
 */
#include "cu_ops.h"

/* ------------------------------------------------------------ gather */

/* dst[i,:] = src[idx[i],:] as `words` units of T per row (any dtype). */
template <class T>
static __global__ void k_gather(const T *src, const int32_t *idx, T *dst, int64_t N, int64_t R, int64_t words,
                                unsigned *flags) {
    CU_LOOP(e, N * words) {
        const int64_t i = e / words, c = e % words;
        const int32_t r = idx[i];
        if (r >= 0 && r < R) {
            dst[e] = src[(int64_t)r * words + c];
        } else {
            dst[e] = T(0);
            if (r >= R && c == 0) atomicOr(flags, CU_FLAG_GATHER);
        }
    }
}

void cu_gather_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst) {
    const int64_t R = cu_rows(src), D = cu_cols(src), N = fl_numel(idx);
    CU_CHECK(src->dtype == dst->dtype && idx->dtype == FL_I32);
    CU_CHECK(cu_cols(dst) == D && cu_rows(dst) == N);
    const size_t row = (size_t)D * fl_dtype_size(src->dtype);
    if (N == 0 || row == 0) return;
    const unsigned grid = cu_grid(N * (int64_t)row / 4 + 1);
    if (row % 4 == 0)
        CU_LAUNCH(grid, CU_THREADS, 0, k_gather<uint32_t>)((const uint32_t *)src->data, cu_i32(idx),
                                                                (uint32_t *)dst->data, N, R, (int64_t)row / 4,
                                                                g_cu.flags);
    else
        CU_LAUNCH(grid, CU_THREADS, 0, k_gather<uint8_t>)((const uint8_t *)src->data, cu_i32(idx),
                                                               (uint8_t *)dst->data, N, R, (int64_t)row, g_cu.flags);
    CU_LAUNCHED("k_gather");
}

/* ------------------------------------------------------------ scatter */

/* dst[idx[i],:] += src[i,:]; src[N,D], idx[N], dst[R,D] */
void cu_scatter_add_rows(const fl_tensor *src, const fl_tensor *idx, fl_tensor *dst) {
    const int64_t N = cu_rows(src), D = cu_cols(src);
    CU_CHECK(src->dtype == FL_F32 && dst->dtype == FL_F32 && idx->dtype == FL_I32);
    CU_CHECK(fl_numel(idx) == N && cu_cols(dst) == D);
    cu_scatter_add(cu_f32(src), 1, cu_i32(idx), NULL, N, cu_f32(dst), cu_rows(dst), D, CU_FLAG_SCATTER);
}

/* ------------------------------------------------------------ embedding bag */

/* out[i,c] = sum_j w[i,j] table[idx[i,j], c], j in order (as the CPU) */
static __global__ void k_embedding_bag(const float *table, const int32_t *idx, const float *w, float *out,
                                       int64_t N, int64_t k, int64_t R, int64_t D, unsigned *flags) {
    CU_LOOP(e, N * D) {
        const int64_t i = e / D, c = e % D;
        float acc = 0.0f;
        for (int64_t j = 0; j < k; j++) {
            const int32_t r = idx[i * k + j];
            if (r < 0 || r >= R) {
                if (r >= R && c == 0) atomicOr(flags, CU_FLAG_EMBAG);
                continue;
            }
            acc += (w ? w[i * k + j] : 1.0f) * table[(int64_t)r * D + c];
        }
        out[e] = acc;
    }
}

void cu_embedding_bag(const fl_tensor *table, const fl_tensor *idx, const fl_tensor *w, fl_tensor *out) {
    const int64_t R = cu_rows(table), D = cu_cols(table);
    const int64_t N = cu_rows(out), k = N ? fl_numel(idx) / N : 0;
    CU_CHECK(table->dtype == FL_F32 && out->dtype == FL_F32 && idx->dtype == FL_I32);
    CU_CHECK(cu_cols(out) == D && fl_numel(idx) == N * k);
    CU_CHECK(!w || (w->dtype == FL_F32 && fl_numel(w) == N * k));
    if (N * D == 0) return;
    CU_LAUNCH(cu_grid(N * D), CU_THREADS, 0, k_embedding_bag)(cu_f32(table), cu_i32(idx), w ? cu_f32(w) : NULL,
                                                                    cu_f32(out), N, k, R, D, g_cu.flags);
    CU_LAUNCHED("k_embedding_bag");
}

/* dw[e] = dot(dout[e / k,:], table[idx[e],:]): a warp per entry */
static __global__ void k_embag_dw(const float *dout, const float *table, const int32_t *idx, float *dw, int64_t n,
                                  int64_t k, int64_t R, int64_t D) {
    const int64_t e = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (e >= n) return;
    const int32_t r = idx[e];
    float s = 0.0f;
    if (r >= 0 && r < R) {
        const float *a = dout + (e / k) * D, *t = table + (int64_t)r * D;
        for (int64_t c = lane; c < D; c += 32) s += a[c] * t[c];
    }
    s = cu_warp_sum(s);
    if (lane == 0) dw[e] = s;
}

/* dtable[idx[i,j],:] += w[i,j] dout[i,:] (dtable may be NULL);
   dw[i,j] = dot(dout[i,:], table[idx[i,j],:]) when dw != NULL */
void cu_embedding_bag_backward(const fl_tensor *dout, const fl_tensor *table, const fl_tensor *idx,
                               const fl_tensor *w, fl_tensor *dtable, fl_tensor *dw) {
    const int64_t R = cu_rows(table), D = cu_cols(table);
    const int64_t N = cu_rows(dout), k = N ? fl_numel(idx) / N : 0;
    CU_CHECK(dout->dtype == FL_F32 && table->dtype == FL_F32 && idx->dtype == FL_I32);
    CU_CHECK(cu_cols(dout) == D && fl_numel(idx) == N * k);
    CU_CHECK(!w || (w->dtype == FL_F32 && fl_numel(w) == N * k));
    CU_CHECK(!dtable || (dtable->dtype == FL_F32 && fl_numel(dtable) == R * D));
    CU_CHECK(!dw || (dw->dtype == FL_F32 && fl_numel(dw) == N * k));
    if (dtable)
        cu_scatter_add(cu_f32(dout), k, cu_i32(idx), w ? cu_f32(w) : NULL, N * k, cu_f32(dtable), R, D,
                       CU_FLAG_EMBAG);
    if (!dw || N * k == 0) return;
    CU_LAUNCH(cu_row_blocks(N * k, CU_THREADS / 32), CU_THREADS, 0, k_embag_dw)(
        cu_f32(dout), cu_f32(table), cu_i32(idx), cu_f32(dw), N * k, k, R, D);
    CU_LAUNCHED("k_embag_dw");
}

/* ------------------------------------------------------------ zero rows */

/* x[rows[i], :] = 0 as `words` units of T per row; rows outside [0, R) skipped */
template <class T>
static __global__ void k_zero_rows(T *x, const int32_t *rows, int64_t n_rows, int64_t R, int64_t words) {
    CU_LOOP(e, n_rows * words) {
        const int32_t r = rows[e / words];
        if (r >= 0 && r < R) x[(int64_t)r * words + e % words] = T(0);
    }
}

void cu_zero_rows(fl_tensor *x, const int32_t *rows, int64_t n_rows) {
    CU_CHECK(x->shape[0] > 0);
    const int64_t R = x->shape[0], D = fl_numel(x) / R;
    const size_t row = (size_t)D * fl_dtype_size(x->dtype);
    if (n_rows <= 0 || row == 0) return;
    const int32_t *d_rows = (const int32_t *)cu_upload(rows, (size_t)n_rows * sizeof *rows);
    if (!d_rows) return;
    const unsigned grid = cu_grid(n_rows * (int64_t)row / 4 + 1);
    if (row % 4 == 0)
        CU_LAUNCH(grid, CU_THREADS, 0, k_zero_rows<uint32_t>)((uint32_t *)x->data, d_rows, n_rows, R,
                                                                   (int64_t)row / 4);
    else
        CU_LAUNCH(grid, CU_THREADS, 0, k_zero_rows<uint8_t>)((uint8_t *)x->data, d_rows, n_rows, R,
                                                                  (int64_t)row);
    CU_LAUNCHED("k_zero_rows");
}
