/*
 * serve.c — see serve.h.
 */
#include <arpa/inet.h>
#include <err.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve.h"

int serve_status_fd = -1;

void
serve_status(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	if (serve_status_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		(void)!write(serve_status_fd, line, (size_t)n < sizeof(line) ?
		    (size_t)n : sizeof(line) - 1);
}

int
serve_listen(int flags)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags,
	    0);

	if (fd < 0)
		err(2, "socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		err(2, "listen on 127.0.0.1");
	serve_status("port %u\n", ntohs(sin.sin_port));
	return fd;
}

const char *
serve_load(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t got = 0;
	char *buf;

	if (fd < 0 || fstat(fd, &st) != 0)
		err(2, "%s", path);
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
		err(2, "malloc");
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r <= 0)
			err(2, "read %s", path);
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return buf;
}

long long
serve_number(const char *arg, long long lo, long long hi, const char *what)
{
	const char *errstr;
	long long v = strtonum(arg, lo, hi, &errstr);

	if (errstr != NULL)
		errx(2, "%s %s: %s", what, arg, errstr);
	return v;
}
