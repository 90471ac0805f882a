/*
 * run/job.c — the job's precision, rank and failure reporting (see job.h),
 * from the backends' and the communicator's own functions.
 */
#include "job.h"

#include "backend.h"
#include "comm.h"

fl_status fl_job_request_precision(const char *mode, fl_error *err) {
    return fl_backend_request_precision(mode, err);
}

int fl_job_rank(void) { return fl_comm_world_rank(); }

int fl_job_should_report(const fl_error *err, int code) { return fl_comm_fail(err, code); }
