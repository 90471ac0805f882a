/*
 * tests/test_fetch.c — resumable downloads, against a server inside the test.
 *
 * A tiny HTTP/1.1 server runs on a thread bound to 127.0.0.1 (an ephemeral
 * port): it answers a fixed number of requests, one connection each, then
 * stops. Each request can be told how to behave: serve normally (honouring
 * "Range: bytes=N-" with 206), drop the connection half-way through the body,
 * answer 404, or ignore Range (200 with the whole body). Every request's
 * header is kept so a test can check that a resume really asked for a range.
 * Proxies are switched off for the test process, so nothing but the loopback
 * address is ever contacted.
 */
#include "support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch.h"

/* ---- the server -------------------------------------------------------------- */

typedef enum reply_mode { SERVE, DROP_HALF, NOT_FOUND, IGNORE_RANGE } reply_mode;

#define MAX_REQ 8
#define MAX_FILES 4

typedef struct server {
    int fd, port;
    pthread_t thread;
    volatile int stop;
    int running; /* thread started and not yet joined */
    int max_requests, served;
    reply_mode mode[MAX_REQ];
    char request[MAX_REQ][2048];
    int n_files;
    const char *path[MAX_FILES];
    const char *body[MAX_FILES];
    size_t len[MAX_FILES];
} server;

static int send_all(int c, const void *p, size_t n) {
    const char *s = p;
    while (n) {
        ssize_t w = send(c, s, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads the request header (up to the blank line) into buf. */
static void read_request(int c, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    while (n + 1 < cap && !strstr(buf, "\r\n\r\n")) {
        ssize_t r = recv(c, buf + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = 0;
    }
}

static int find_file(const server *s, const char *req) {
    char path[256] = "";
    if (sscanf(req, "GET %255s ", path) != 1) return -1;
    for (int i = 0; i < s->n_files; i++)
        if (!strcmp(path, s->path[i])) return i;
    return -1;
}

/* Start offset asked by "Range: bytes=N-", or -1. */
static long range_start(const char *req) {
    const char *r = strcasestr(req, "\r\nRange: bytes=");
    return r ? atol(r + 15) : -1;
}

static void reply(server *s, int c, int k) {
    const char *req = s->request[k];
    char head[512];
    int f = find_file(s, req);
    if (s->mode[k] == NOT_FOUND || f < 0) {
        const char *msg = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found";
        send_all(c, msg, strlen(msg));
        return;
    }
    size_t len = s->len[f], from = 0;
    long r = s->mode[k] == IGNORE_RANGE ? -1 : range_start(req);
    if (r >= (long)len) {
        int n = snprintf(head, sizeof head, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: "
                         "bytes */%zu\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", len);
        send_all(c, head, (size_t)n);
        return;
    }
    int n;
    if (r >= 0) {
        from = (size_t)r;
        n = snprintf(head, sizeof head, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes "
                     "%zu-%zu/%zu\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", from,
                     len - 1, len, len - from);
    } else {
        n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n", len);
    }
    if (send_all(c, head, (size_t)n)) return;
    size_t body = len - from;
    if (s->mode[k] == DROP_HALF) body /= 2; /* then hang up: an interrupted transfer */
    send_all(c, s->body[f] + from, body);
}

static void *serve(void *arg) {
    server *s = arg;
    int waited_ms = 0;
    while (!s->stop && s->served < s->max_requests && waited_ms < 20000) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) {
            waited_ms += 100;
            continue;
        }
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int k = s->served;
        read_request(c, s->request[k], sizeof s->request[k]);
        reply(s, c, k);
        s->served++;
        shutdown(c, SHUT_WR);
        close(c);
    }
    return NULL;
}

static void server_start(server *s) {
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 4), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
    s->running = 1;
}

/* Idempotent, so teardown can stop a server a failed test left running. */
static void server_stop(server *s) {
    if (!s->running) return;
    s->stop = 1;
    pthread_join(s->thread, NULL);
    close(s->fd);
    s->running = 0;
}

static void add_file(server *s, const char *path, const char *body, size_t len) {
    s->path[s->n_files] = path;
    s->body[s->n_files] = body;
    s->len[s->n_files] = len;
    s->n_files++;
}

/* ---- fixtures ------------------------------------------------------------------ */

typedef struct fixture {
    char *dir;
    char dest[4200], part[4300], url[256];
    char *body;
    size_t len;
    server srv;
} fixture;

/* Bytes that are not text, so an off-by-one on resume shows. */
static char *make_body(size_t n, unsigned seed) {
    char *b = malloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        b[i] = (char)(x >> 24);
    }
    return b;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = ts_tmpdir();
    snprintf(f->dest, sizeof f->dest, "%s/data.bin", f->dir);
    snprintf(f->part, sizeof f->part, "%s.part", f->dest);
    f->len = 300001;
    f->body = make_body(f->len, 1);
    add_file(&f->srv, "/files/data.bin", f->body, f->len);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    server_stop(&f->srv);
    ts_rmtree(f->dir);
    free(f->dir);
    free(f->body);
    free(f);
    return 0;
}

/* Starts the server for n requests with the given modes. */
static void serve_requests(fixture *f, int n, const reply_mode *modes) {
    f->srv.max_requests = n;
    for (int i = 0; i < n; i++) f->srv.mode[i] = modes[i];
    server_start(&f->srv);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/files/data.bin", f->srv.port);
}

static void assert_file_is(const char *path, const char *want, size_t n) {
    size_t len;
    char *got = ts_read_file(path, &len);
    if (!got) fail_msg("%s missing", path);
    if (len != n) fail_msg("%s has %zu bytes, want %zu", path, len, n);
    assert_memory_equal(got, want, n);
    free(got);
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void assert_msg_has(const fl_error *err, const char *want) {
    if (!strstr(err->msg, want)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_full_download(void **state) {
    fixture *f = *state;
    serve_requests(f, 1, (reply_mode[]){SERVE});
    fl_error err = {0};
    fl_status st = fl_fetch_url(f->url, f->dest, &err);
    server_stop(&f->srv);
    ts_assert_ok(st, &err);
    assert_file_is(f->dest, f->body, f->len);
    assert_int_equal(file_size(f->part), -1);
    assert_null(strcasestr(f->srv.request[0], "Range:"));
}

static void test_interrupted_then_resumed(void **state) {
    fixture *f = *state;
    serve_requests(f, 2, (reply_mode[]){DROP_HALF, SERVE});
    fl_error err = {0};
    fl_status st = fl_fetch_url(f->url, f->dest, &err);
    assert_int_equal(st, FL_EIO);
    print_message("interrupted: %s\n", err.msg);
    assert_msg_has(&err, f->url);
    assert_int_equal(file_size(f->dest), -1); /* never a half file under the real name */
    long have = file_size(f->part);
    assert_int_equal(have, (long)(f->len / 2));

    st = fl_fetch_url(f->url, f->dest, &err);
    server_stop(&f->srv);
    ts_assert_ok(st, &err);
    assert_file_is(f->dest, f->body, f->len);
    assert_int_equal(file_size(f->part), -1);
    char want[64];
    snprintf(want, sizeof want, "Range: bytes=%ld-", have);
    if (!strcasestr(f->srv.request[1], want))
        fail_msg("second request lacks \"%s\":\n%s", want, f->srv.request[1]);
}

static void test_server_ignores_range(void **state) {
    fixture *f = *state;
    /* a stale .part the server will not extend: it must be thrown away */
    assert_int_equal(ts_write_file(f->part, "stale bytes", 11), 0);
    serve_requests(f, 2, (reply_mode[]){IGNORE_RANGE, SERVE});
    fl_error err = {0};
    fl_status st = fl_fetch_url(f->url, f->dest, &err);
    server_stop(&f->srv);
    ts_assert_ok(st, &err);
    assert_file_is(f->dest, f->body, f->len);
    assert_non_null(strcasestr(f->srv.request[0], "Range: bytes=11-"));
    assert_null(strcasestr(f->srv.request[1], "Range:")); /* restarted from byte 0 */
}

static void test_complete_part(void **state) {
    fixture *f = *state;
    /* a .part that already holds everything: the server says 416, we start over */
    assert_int_equal(ts_write_file(f->part, f->body, f->len), 0);
    serve_requests(f, 2, (reply_mode[]){SERVE, SERVE});
    fl_error err = {0};
    fl_status st = fl_fetch_url(f->url, f->dest, &err);
    server_stop(&f->srv);
    ts_assert_ok(st, &err);
    assert_file_is(f->dest, f->body, f->len);
}

static void test_not_found(void **state) {
    fixture *f = *state;
    serve_requests(f, 1, (reply_mode[]){NOT_FOUND});
    fl_error err = {0};
    fl_status st = fl_fetch_url(f->url, f->dest, &err);
    server_stop(&f->srv);
    assert_int_equal(st, FL_EIO);
    print_message("404: %s\n", err.msg);
    assert_msg_has(&err, "HTTP 404");
    assert_msg_has(&err, f->url);
    assert_int_equal(file_size(f->dest), -1);
    assert_int_equal(file_size(f->part), -1);
}

static void test_dataset(void **state) {
    fixture *f = *state;
    char *train = make_body(70000, 2), *valid = make_body(5000, 3);
    f->srv.n_files = 0;
    add_file(&f->srv, "/TinyStoriesV2-GPT4-train.txt", train, 70000);
    add_file(&f->srv, "/TinyStoriesV2-GPT4-valid.txt", valid, 5000);
    serve_requests(f, 2, (reply_mode[]){SERVE, SERVE});
    char base[128], dir[4300], path[4400];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/", f->srv.port);
    setenv("FFNLAB_TINYSTORIES_URL", base, 1);
    snprintf(dir, sizeof dir, "%s/ts/new", f->dir); /* created on the way */
    fl_error err = {0};
    fl_status st = fl_fetch_dataset("tinystories", dir, &err);
    server_stop(&f->srv);
    ts_assert_ok(st, &err);
    snprintf(path, sizeof path, "%s/TinyStoriesV2-GPT4-train.txt", dir);
    assert_file_is(path, train, 70000);
    snprintf(path, sizeof path, "%s/TinyStoriesV2-GPT4-valid.txt", dir);
    assert_file_is(path, valid, 5000);
    /* files already there are not fetched again (the server is gone now) */
    ts_assert_ok(fl_fetch_dataset("tinystories", dir, &err), &err);
    unsetenv("FFNLAB_TINYSTORIES_URL");
    free(train);
    free(valid);
}

static void test_unknown_dataset(void **state) {
    (void)state;
    fl_error err = {0};
    assert_int_equal(fl_fetch_dataset("wikipedia", "/tmp/never-created", &err), FL_EINVAL);
    assert_msg_has(&err, "wikipedia");
    assert_msg_has(&err, "tinystories");
}

#ifndef FFNLAB_HAVE_CURL
/* A build without libcurl (FFNLAB_CURL=AUTO found none) says so. */
static void test_without_curl(void **state) {
    (void)state;
    fl_error err = {0};
    assert_int_equal(fl_fetch_url("http://127.0.0.1:9/x", "/tmp/never-written", &err), FL_EUNSUPPORTED);
    assert_msg_has(&err, "without libcurl");
}
#endif

int main(void) {
#ifndef FFNLAB_HAVE_CURL
    print_message("built without libcurl: the download tests are skipped\n");
    const struct CMUnitTest no_curl[] = {cmocka_unit_test(test_without_curl), cmocka_unit_test(test_unknown_dataset)};
    return cmocka_run_group_tests(no_curl, NULL, NULL);
#endif
    /* Loopback only: no proxy may stand between the test and its server. */
    static const char *const PROXY_VARS[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                             "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof PROXY_VARS / sizeof PROXY_VARS[0]; i++) unsetenv(PROXY_VARS[i]);
    setenv("no_proxy", "*", 1);
    setenv("NO_PROXY", "*", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_download, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_then_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_ignores_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_part, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataset, setup, teardown),
        cmocka_unit_test(test_unknown_dataset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
