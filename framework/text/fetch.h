/*
 * text/fetch.h — downloading data sets (libcurl), resumable.
 *
 * A download goes to "<dest>.part"; an existing .part is resumed with an HTTP
 * Range request (a server that ignores Range restarts it cleanly); on success
 * the .part is renamed to dest. HTTP errors, short bodies and timeouts are one
 * clear error naming the URL. Progress goes to stderr when it is a terminal.
 */
#ifndef FFNLAB_FETCH_H
#define FFNLAB_FETCH_H

#include "ffnlab/status.h"

fl_status fl_fetch_url(const char *url, const char *dest, fl_error *err);

/* Known data sets: "tinystories" → TinyStoriesV2-GPT4 train/valid text files
   into dir (base URL overridable by FFNLAB_TINYSTORIES_URL for tests). */
fl_status fl_fetch_dataset(const char *name, const char *dir, fl_error *err);

#endif
