/*
 * classify.h — is this fd a stream socket whose writes the library may
 * spool? Asked only on the slow path (a write that returned EAGAIN or a
 * short count on a fd with no stream), never on the fast path.
 */
#ifndef TCPSPOOL_CLASSIFY_H
#define TCPSPOOL_CLASSIFY_H

#include "config.h"
#include "stream.h"

enum fd_class {
	FD_SPOOL,	/* TCP over IPv4/IPv6 or AF_UNIX SOCK_STREAM, connected,
			 * ports admitted by the filters: si filled */
	FD_NEVER,	/* not a socket, not a stream, another family or
			 * protocol, a filtered port: remember, never ask again */
	FD_NOT_NOW,	/* not connected yet, or the question failed */
};

enum fd_class classify_fd(int fd, const struct tcpspool_config *cfg,
    struct sockinfo *si);

/* "127.0.0.1:80", "[::1]:80", "unix:/path", "unix:" (unnamed). */
void format_addr(const void *sa, unsigned len, char *buf, size_t size);

#endif
