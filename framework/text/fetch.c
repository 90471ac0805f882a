/*
 * text/fetch.c — resumable downloads with libcurl (see fetch.h).
 *
 * Bytes go to "<dest>.part", opened for append, so an interrupted download
 * (network drop, Ctrl-C, stall) keeps what arrived. The next call asks for
 * the rest with CURLOPT_RESUME_FROM_LARGE. libcurl itself refuses a server
 * that answers a range request with the whole file (200 instead of 206,
 * CURLE_RANGE_ERROR), and a server that finds nothing left to send says 416;
 * in both cases the .part cannot be trusted to line up with the body, so it
 * is truncated and the download restarts from byte 0, once.
 *
 * Only a complete body is renamed to dest: libcurl reports a body shorter than
 * its Content-Length as CURLE_PARTIAL_FILE, and we check the count again
 * ourselves. HTTP errors (>= 400) fail the transfer before any body is written
 * (CURLOPT_FAILONERROR); a stall (under 1 KiB/s for a minute) is a timeout.
 *
 * libcurl is optional at build time (FFNLAB_CURL=AUTO): without it
 * (FFNLAB_HAVE_CURL undefined) fl_fetch_url fails with a message saying the
 * build has no downloader; the data set table and everything else stay.
 */
#include "fetch.h"

#ifdef FFNLAB_HAVE_CURL
#include <curl/curl.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"

#ifndef FFNLAB_VERSION
#define FFNLAB_VERSION "dev"
#endif

#ifdef FFNLAB_HAVE_CURL

#define STALL_BYTES_PER_S 1024L
#define STALL_SECONDS 60L
#define CONNECT_TIMEOUT_S 30L

/* One transfer's state, shared with libcurl's callbacks. */
typedef struct xfer {
    FILE *f;
    const char *dest;        /* for progress lines */
    curl_off_t resumed_at;   /* bytes already in .part when the request started */
    curl_off_t got;          /* body bytes received by this request */
    int tty;
    double last_print;       /* monotonic seconds of the last progress line */
} xfer;

/* What one attempt ended with, beyond success or a plain error. */
typedef enum attempt_end { END_OK, END_FAILED, END_RESTART } attempt_end;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    xfer *x = ud;
    size_t w = fwrite(p, size, n, x->f);
    x->got += (curl_off_t)(w * size);
    return w * size; /* a short count makes libcurl stop with CURLE_WRITE_ERROR */
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    (void)ultotal;
    (void)ulnow;
    xfer *x = ud;
    double t = now_s();
    if (t - x->last_print < 0.5) return 0; /* a terminal line twice a second is plenty */
    x->last_print = t;
    double mib = 1.0 / (1024.0 * 1024.0);
    double have = (double)(x->resumed_at + dlnow) * mib;
    if (dltotal > 0) {
        double total = (double)(x->resumed_at + dltotal) * mib;
        fprintf(stderr, "\r%s: %.1f / %.1f MiB (%.0f%%)   ", x->dest, have, total,
                100.0 * have / total);
    } else {
        fprintf(stderr, "\r%s: %.1f MiB   ", x->dest, have);
    }
    return 0;
}

static void curl_init_once(void) {
    /* libcurl before 7.84 wants one global init before any handle; doing it
       lazily keeps programs that never download from paying for it. */
    static int done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        done = 1;
    }
}

static void set_options(CURL *h, const char *url, xfer *x, char *errbuf) {
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L); /* Hugging Face redirects to its CDN */
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, STALL_BYTES_PER_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM games in a threaded program */
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ffnlab/" FFNLAB_VERSION);
    if (x->resumed_at > 0) curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, x->resumed_at);
    if (x->tty) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
}

/* Turns a finished transfer's result into an error message (or END_OK). */
static attempt_end judge(CURL *h, CURLcode rc, const xfer *x, const char *url, const char *part,
                         const char *errbuf, fl_error *err) {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    /* A resumed request must come back as 206; anything else means .part and
       the body may not line up (see the top of the file). */
    if (x->resumed_at > 0 && (rc == CURLE_RANGE_ERROR || (rc == CURLE_OK && code == 200) ||
                              (rc == CURLE_HTTP_RETURNED_ERROR && code == 416)))
        return END_RESTART;
    if (rc == CURLE_HTTP_RETURNED_ERROR) {
        fl_fail(err, FL_EIO, "%s: HTTP %ld", url, code);
        return END_FAILED;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        fl_fail(err, FL_EIO, "%s: stalled (under %ld bytes/s for %ld s); partial download kept in "
                "%s, run again to resume", url, STALL_BYTES_PER_S, STALL_SECONDS, part);
        return END_FAILED;
    }
    curl_off_t cl = -1;
    curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (rc == CURLE_PARTIAL_FILE || (rc == CURLE_OK && cl >= 0 && x->got != cl)) {
        fl_fail(err, FL_EIO, "%s: short body (%lld of %lld bytes); partial download kept in %s, "
                "run again to resume", url, (long long)(x->resumed_at + x->got),
                (long long)(cl >= 0 ? x->resumed_at + cl : -1), part);
        return END_FAILED;
    }
    if (rc != CURLE_OK) {
        fl_fail(err, FL_EIO, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return END_FAILED;
    }
    return END_OK;
}

/* Opens part for appending (or truncates it) and reports its current size. */
static FILE *open_part(const char *part, int keep, curl_off_t *size, fl_error *err) {
    FILE *f = fopen(part, keep ? "ab" : "wb");
    if (!f) {
        fl_fail(err, FL_EIO, "%s: cannot create: %s", part, strerror(errno));
        return NULL;
    }
    fseeko(f, 0, SEEK_END);
    *size = (curl_off_t)ftello(f);
    return f;
}

/* Flushes and syncs the .part so a rename after it is durable. */
static fl_status close_part(FILE *f, const char *part, fl_error *err) {
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    bad |= fclose(f) != 0;
    if (bad) return fl_fail(err, FL_EIO, "%s: write failed: %s", part, strerror(e ? e : EIO));
    return FL_OK;
}

static attempt_end attempt(const char *url, const char *dest, const char *part, int keep,
                           fl_error *err) {
    xfer x = {.dest = dest, .tty = isatty(2)};
    if (!(x.f = open_part(part, keep, &x.resumed_at, err))) return END_FAILED;
    CURL *h = curl_easy_init();
    if (!h) {
        fclose(x.f);
        fl_fail(err, FL_ENOMEM, "%s: cannot start libcurl", url);
        return END_FAILED;
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    set_options(h, url, &x, errbuf);
    CURLcode rc = curl_easy_perform(h);
    if (x.tty && x.last_print > 0) fputc('\n', stderr);
    attempt_end end = judge(h, rc, &x, url, part, errbuf, err);
    curl_easy_cleanup(h);
    fl_error cerr;
    if (close_part(x.f, part, &cerr) != FL_OK && end == END_OK) {
        if (err) *err = cerr;
        end = END_FAILED;
    }
    return end;
}

static void remove_if_empty(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size == 0) unlink(path);
}

fl_status fl_fetch_url(const char *url, const char *dest, fl_error *err) {
    char part[4096];
    if (snprintf(part, sizeof part, "%s.part", dest) >= (int)sizeof part)
        return fl_fail(err, FL_EINVAL, "%s: path too long", dest);
    curl_init_once();
    attempt_end end = attempt(url, dest, part, 1, err);
    if (end == END_RESTART) end = attempt(url, dest, part, 0, err);
    if (end == END_RESTART) /* refused a range on a fresh start: cannot happen, but be clear */
        return fl_fail(err, FL_EIO, "%s: server refused the download", url);
    if (end != END_OK) {
        remove_if_empty(part); /* an error page wrote nothing: leave no litter */
        return err ? err->code : FL_EIO;
    }
    if (rename(part, dest) != 0)
        return fl_fail(err, FL_EIO, "%s: cannot rename %s into place: %s", dest, part,
                       strerror(errno));
    return FL_OK;
}

#else /* no libcurl in this build */

fl_status fl_fetch_url(const char *url, const char *dest, fl_error *err) {
    return fl_fail(err, FL_EUNSUPPORTED,
                   "%s: this ffnlab was built without libcurl, so it cannot download %s; fetch it "
                   "with another tool (e.g. curl -L -o '%s' '%s') or rebuild with libcurl "
                   "(libcurl4-openssl-dev)", dest, url, dest, url);
}

#endif /* FFNLAB_HAVE_CURL */

/* ---- known data sets ------------------------------------------------------- */

typedef struct dataset {
    const char *name;
    const char *url_env;     /* overrides base (tests point it at a local server) */
    const char *base;
    const char *files[4];    /* NULL-terminated */
} dataset;

static const dataset DATASETS[] = {
    {"tinystories", "FFNLAB_TINYSTORIES_URL",
     "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main",
     {"TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt", NULL}},
};
#define N_DATASETS (sizeof DATASETS / sizeof DATASETS[0])

static const dataset *find_dataset(const char *name) {
    for (size_t i = 0; i < N_DATASETS; i++)
        if (!strcmp(DATASETS[i].name, name)) return &DATASETS[i];
    return NULL;
}

static fl_status unknown_dataset(const char *name, fl_error *err) {
    char known[256] = "";
    for (size_t i = 0; i < N_DATASETS; i++) {
        size_t k = strlen(known);
        snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", DATASETS[i].name);
    }
    return fl_fail(err, FL_EINVAL, "unknown data set '%s' (known: %s)", name, known);
}

static fl_status fetch_one(const char *base, const char *file, const char *dir, fl_error *err) {
    char url[4096], dest[4096];
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--; /* "base/" and "base" both work */
    if (snprintf(url, sizeof url, "%.*s/%s", (int)bl, base, file) >= (int)sizeof url)
        return fl_fail(err, FL_EINVAL, "%s: URL too long", base);
    fl_status st = fl_path_join(dest, sizeof dest, dir, file, err);
    if (st) return st;
    if (fl_path_exists(dest)) return FL_OK; /* complete files are only ever renamed in */
    return fl_fetch_url(url, dest, err);
}

fl_status fl_fetch_dataset(const char *name, const char *dir, fl_error *err) {
    const dataset *d = find_dataset(name);
    if (!d) return unknown_dataset(name, err);
    fl_status st = fl_mkdirs(dir, err);
    if (st) return st;
    const char *env = getenv(d->url_env);
    const char *base = env && *env ? env : d->base;
    for (int i = 0; d->files[i]; i++)
        if ((st = fetch_one(base, d->files[i], dir, err))) return st;
    return FL_OK;
}
