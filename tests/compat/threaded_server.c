/*
 * threaded_server — the thread-per-connection I/O model, for the compat
 * suite: blocking sockets, one thread per accepted connection, and
 * SO_SNDTIMEO so that a client that stops reading cannot hold a thread
 * forever. A send that times out returns -1 EAGAIN (or a short count, then
 * EAGAIN on the next call); the server then does what such servers do:
 * it gives up on that client, logs it and closes the connection.
 *
 * Each connection: read one request line, send the whole --file in
 * --chunk sized send() calls, close. After --connections connections the
 * main thread joins every thread and returns from main (exit 0). It never
 * writes to stdout.
 *
 * Options:
 *   --file F           what each connection gets (required)
 *   --status-fd N      "port P", "accepted conn=K", then per connection
 *                      "done conn=K bytes=B" or "timeout conn=K bytes=B"
 *                      (bytes = what send() reported sent)
 *   --connections N    connections to serve (default 1)
 *   --sndtimeo-ms MS   SO_SNDTIMEO (default 200; 0: none, sends block)
 *   --chunk N          bytes per send() (default 65536)
 */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "serve.h"

#define MAX_CONNECTIONS	64

static struct {
	const char *file;
	int connections, sndtimeo_ms;
	long long chunk;
} opt = { .connections = 1, .sndtimeo_ms = 200, .chunk = 65536 };

static const char *data;
static size_t data_len;

struct conn {
	pthread_t thread;
	int id, fd;
};

/* Reads up to the end of the request line; false if the client left. */
static bool
read_request(int fd)
{
	char c;

	for (;;) {
		ssize_t r = recv(fd, &c, 1, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		if (c == '\n')
			return true;
	}
}

static void *
serve(void *arg)
{
	struct conn *c = arg;
	struct timeval tv = { opt.sndtimeo_ms / 1000,
		(opt.sndtimeo_ms % 1000) * 1000 };
	size_t off = 0;

	if (opt.sndtimeo_ms > 0 && setsockopt(c->fd, SOL_SOCKET,
	    SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
		err(2, "SO_SNDTIMEO");
	if (!read_request(c->fd)) {
		serve_status("norequest conn=%d\n", c->id);
		close(c->fd);
		return NULL;
	}
	while (off < data_len) {
		size_t n = data_len - off < (size_t)opt.chunk ?
		    data_len - off : (size_t)opt.chunk;
		ssize_t w = send(c->fd, data + off, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* The client is too slow: drop it. */
			serve_status("timeout conn=%d bytes=%zu\n", c->id,
			    off);
			close(c->fd);
			return NULL;
		}
		if (w < 0) {
			serve_status("error conn=%d bytes=%zu errno=%d\n",
			    c->id, off, errno);
			close(c->fd);
			return NULL;
		}
		off += (size_t)w;
	}
	serve_status("done conn=%d bytes=%zu\n", c->id, off);
	close(c->fd);
	return NULL;
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "status-fd", required_argument, NULL, 'S' },
		{ "connections", required_argument, NULL, 'n' },
		{ "sndtimeo-ms", required_argument, NULL, 't' },
		{ "chunk", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': opt.file = optarg; break;
		case 'S':
			serve_status_fd =
			    (int)serve_number(optarg, 0, 1 << 20, "status fd");
			break;
		case 'n':
			opt.connections =
			    (int)serve_number(optarg, 1, MAX_CONNECTIONS,
			    "connections");
			break;
		case 't':
			opt.sndtimeo_ms =
			    (int)serve_number(optarg, 0, 600000, "sndtimeo");
			break;
		case 'c':
			opt.chunk = serve_number(optarg, 1, 1 << 26, "chunk");
			break;
		default:
			errx(2, "see the comment at the top of "
			    "threaded_server.c");
		}
	}
	if (optind != argc || opt.file == NULL)
		errx(2, "usage: threaded_server --file F [options]");
}

int
main(int argc, char **argv)
{
	static struct conn conns[MAX_CONNECTIONS];
	int lfd;

	parse_options(argc, argv);
	data = serve_load(opt.file, &data_len);
	lfd = serve_listen(0);
	for (int i = 0; i < opt.connections; i++) {
		conns[i].id = i;
		while ((conns[i].fd = accept4(lfd, NULL, NULL,
		    SOCK_CLOEXEC)) < 0)
			if (errno != EINTR)
				err(2, "accept");
		serve_status("accepted conn=%d\n", i);
		if ((errno = pthread_create(&conns[i].thread, NULL, serve,
		    &conns[i])) != 0)
			err(2, "pthread_create");
	}
	for (int i = 0; i < opt.connections; i++)
		pthread_join(conns[i].thread, NULL);
	close(lfd);
	return 0;
}
