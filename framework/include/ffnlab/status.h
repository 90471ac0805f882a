/*
 * ffnlab/status.h — how errors travel in ffnlab.
 *
 * Every fallible call returns an fl_status and, when it fails, writes one line
 * into a caller-owned fl_error saying what went wrong and where (file, option,
 * step). Errors travel up unchanged to one place (the CLI's main) that prints
 * them. Nothing in the framework or in a plugin calls exit().
 *
 * This header is part of the public SDK: plugins compile against it.
 */
#ifndef FFNLAB_STATUS_H
#define FFNLAB_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fl_status {
    FL_OK = 0,
    FL_EINVAL = 1,       /* bad input: option, config, file content, shape */
    FL_EIO = 2,          /* a file or network operation failed */
    FL_ENOMEM = 3,       /* an allocation failed */
    FL_EABI = 4,         /* a plugin's ABI does not match the host's */
    FL_ENUMERIC = 5,     /* NaN/inf appeared (loss, gradient) */
    FL_EINTR = 6,        /* interrupted (SIGINT, SIGTERM); state was saved */
    FL_EUNSUPPORTED = 7, /* valid request this build/backend cannot do */
    FL_EINTERNAL = 8     /* a bug: an invariant did not hold */
} fl_status;

#define FL_ERRMSG_LEN 512

/* One error: a code and a one-line message (no trailing newline). */
typedef struct fl_error {
    fl_status code;
    char msg[FL_ERRMSG_LEN];
} fl_error;

#ifdef __cplusplus
}
#endif
#endif
