/*
 * run/job.h — what a command needs from the job it runs in, so that the
 * CLI reaches neither backends/ nor comm/: the GEMM precision the user
 * asked for, this process's rank, and who reports a failure when several
 * processes run.
 */
#ifndef FFNLAB_JOB_H
#define FFNLAB_JOB_H

#include "ffnlab/status.h"

/* Records --precision ("auto", "fp32", "bf16", "tf32") for the backend the
   workflow selects later; an unknown mode is one line naming the choices. */
fl_status fl_job_request_precision(const char *mode, fl_error *err);

/* This process's rank in the job (0 in one process): rank 0 speaks for it. */
int fl_job_rank(void);

/* After a failed command: 1 when this process should print err itself (one
   process); 0 when it has been dealt with (an error every rank shares is
   printed by rank 0; any other ends the job with its rank, not returning). */
int fl_job_should_report(const fl_error *err, int code);

#endif
