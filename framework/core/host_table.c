/*
 * core/host_table.c — the host services table (see ffnlab/host.h for the contract).
 */
#include "host_table.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "error.h"
#include "log.h"
#include "params.h"

static void host_log(const fl_host *h, int level, const char *fmt, ...) {
    (void)h;
    va_list ap;
    va_start(ap, fmt);
    fl_logv(level, fmt, ap);
    va_end(ap);
}

const fl_backend *fl_host_backend(const fl_host *h) { return (const fl_backend *)h->impl; }

static fl_param *host_param(const fl_host *h, fl_param_scope *scope, const fl_param_spec *spec,
                            fl_error *err) {
    if (!scope || !spec || !spec->name || !spec->name[0]) {
        fl_fail(err, FL_EINVAL, "host->param: missing scope or parameter name");
        return NULL;
    }
    char full[512];
    if (snprintf(full, sizeof full, "%s%s", scope->prefix, spec->name) >= (int)sizeof full) {
        fl_fail(err, FL_EINVAL, "parameter name too long: %s%s", scope->prefix, spec->name);
        return NULL;
    }
    return fl_params_add_shard(scope->list, fl_host_backend(h), full, spec, scope->seed, scope->n_layers,
                               scope->ep_rank, scope->ep_size, err);
}

static fl_status host_tensor_ensure(const fl_host *h, fl_tensor *t, int32_t dtype, int ndim,
                                    const int64_t *shape, fl_error *err) {
    const fl_backend *be = fl_host_backend(h);
    if (ndim < 1 || ndim > FL_MAX_DIMS || fl_dtype_size(dtype) == 0)
        return fl_fail(err, FL_EINVAL, "tensor_ensure: bad ndim %d or dtype %d", ndim, dtype);
    fl_tensor want = fl_wrap(NULL, dtype, be->device, ndim, shape);
    size_t bytes = fl_nbytes(&want);
    if (t->capacity < bytes || t->data == NULL) {
        if (t->capacity) be->free(t->data);
        t->data = be->alloc(bytes ? bytes : 1);
        t->capacity = t->data ? (bytes ? bytes : 1) : 0;
        if (!t->data) return fl_fail(err, FL_ENOMEM, "out of memory allocating %zu bytes", bytes);
    }
    want.data = t->data;
    want.capacity = t->capacity;
    *t = want;
    return FL_OK;
}

static void host_tensor_release(const fl_host *h, fl_tensor *t) {
    if (t->capacity) fl_host_backend(h)->free(t->data);
    memset(t, 0, sizeof *t);
}

static void host_touch_rows(const fl_host *h, fl_param *p, const fl_tensor *idx) {
    fl_params_touch_rows(fl_host_backend(h), fl_param_impl_of(p), idx);
}

void fl_host_init(fl_host *h, const fl_backend *be, const fl_comm *comm) {
    memset(h, 0, sizeof *h);
    h->abi_version = FL_HOST_ABI_VERSION;
    h->size = sizeof *h;
    h->device = be->device;
    h->stream = be->stream ? be->stream() : NULL;
    h->ops = &be->ops;
    h->comm = comm ? comm : fl_comm_single();
    h->log = host_log;
    h->error = fl_fail;
    h->param = host_param;
    h->tensor_ensure = host_tensor_ensure;
    h->tensor_release = host_tensor_release;
    h->param_touch_rows = host_touch_rows;
    h->impl = (void *)be;
    h->act_dtype = strcmp(fl_backend_precision(be), "bf16") ? FL_F32 : FL_BF16;
}
