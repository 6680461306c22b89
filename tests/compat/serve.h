/*
 * serve.h — what the two I/O-model fixtures (threaded_server.c,
 * epoll_et_server.c) share: a listening socket on 127.0.0.1, the served
 * file in memory, and status lines for the test on a status fd, in the
 * form server_a uses ("port P", "done conn=K bytes=B", ...), one write()
 * each so that lines of different threads never mix.
 *
 * Both fixtures serve every connection the same way: read one request
 * line (so that nothing the client sent is left unread, and a close sends
 * FIN, not RST), send the whole file, close.
 */
#ifndef TCPSPOOL_TEST_SERVE_H
#define TCPSPOOL_TEST_SERVE_H

#include <stddef.h>

/* The status fd (-1: none) that serve_status writes to. */
extern int serve_status_fd;

void serve_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A listening TCP socket on 127.0.0.1 (any port), its port announced as
 * "port P"; flags for socket(2) (SOCK_NONBLOCK, ...). Exits 2 on error. */
int serve_listen(int flags);

/* The whole file, in memory; exits 2 on error. */
const char *serve_load(const char *path, size_t *len);

/* A number argument between lo and hi; exits 2 naming what on error. */
long long serve_number(const char *arg, long long lo, long long hi,
    const char *what);

#endif
