/*
 * epoll_et_server — the edge-triggered event-loop I/O model, for the
 * compat suite: one thread, non-blocking sockets, every fd registered once
 * with EPOLLET. A connection writes until the kernel says EAGAIN, then
 * waits for the next EPOLLOUT edge and goes on where it stopped; it never
 * asks again while no edge came. (An EAGAIN that the kernel did not give
 * is a promise of an edge: if none comes, this server waits forever.)
 *
 * Each connection: read one request line, send the whole --file in
 * --chunk sized write() calls, close. After --connections connections
 * have ended it returns from main (exit 0). It never writes to stdout.
 *
 * Options:
 *   --file F           what each connection gets (required)
 *   --status-fd N      "port P", "accepted conn=K", per connection
 *                      "eagain conn=K bytes=B" at its first EAGAIN,
 *                      then "done conn=K bytes=B eagain=E" (E: the
 *                      EAGAINs it waited an edge for) or "error ..."
 *   --connections N    connections to serve (default 1)
 *   --chunk N          bytes per write() (default 65536)
 */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve.h"

#define MAX_CONNECTIONS	64

static struct {
	const char *file;
	int connections;
	long long chunk;
} opt = { .connections = 1, .chunk = 65536 };

static const char *data;
static size_t data_len;

struct conn {
	int id, fd;
	bool requested;		/* the request line has arrived */
	size_t off;		/* bytes of the file written */
	long long eagain;
};

static struct conn conns[MAX_CONNECTIONS];
static int accepted, ended;

static void
end(struct conn *c, const char *how, int e)
{
	if (e == 0)
		serve_status("%s conn=%d bytes=%zu eagain=%lld\n", how, c->id,
		    c->off, c->eagain);
	else
		serve_status("%s conn=%d bytes=%zu errno=%d\n", how, c->id,
		    c->off, e);
	close(c->fd);	/* also leaves the epoll set */
	c->fd = -1;
	ended++;
}

/* Reads what there is (edge-triggered: until EAGAIN). */
static void
on_readable(struct conn *c)
{
	char buf[512];

	while (!c->requested) {
		ssize_t r = read(c->fd, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			end(c, "norequest", r < 0 ? errno : 0);
			return;
		}
		c->requested = memchr(buf, '\n', (size_t)r) != NULL;
	}
}

/* Writes until done or EAGAIN; then the next EPOLLOUT edge resumes it. */
static void
on_writable(struct conn *c)
{
	while (c->requested && c->fd >= 0 && c->off < data_len) {
		size_t n = data_len - c->off < (size_t)opt.chunk ?
		    data_len - c->off : (size_t)opt.chunk;
		ssize_t w = write(c->fd, data + c->off, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			if (c->eagain++ == 0)
				serve_status("eagain conn=%d bytes=%zu\n",
				    c->id, c->off);
			return;
		}
		if (w < 0) {
			end(c, "error", errno);
			return;
		}
		c->off += (size_t)w;
	}
	if (c->fd >= 0 && c->off == data_len)
		end(c, "done", 0);
}

static void
accept_all(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT |
			EPOLLRDHUP | EPOLLET };
		struct conn *c;

		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0 && errno == EAGAIN)
			return;
		if (fd < 0)
			err(2, "accept");
		if (accepted == MAX_CONNECTIONS)
			errx(2, "more than %d connections", MAX_CONNECTIONS);
		c = &conns[accepted];
		c->id = accepted++;
		c->fd = fd;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			err(2, "epoll_ctl");
		serve_status("accepted conn=%d\n", c->id);
	}
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "status-fd", required_argument, NULL, 'S' },
		{ "connections", required_argument, NULL, 'n' },
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
		case 'c':
			opt.chunk = serve_number(optarg, 1, 1 << 26, "chunk");
			break;
		default:
			errx(2, "see the comment at the top of "
			    "epoll_et_server.c");
		}
	}
	if (optind != argc || opt.file == NULL)
		errx(2, "usage: epoll_et_server --file F [options]");
}

int
main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, evs[16];
	int ep, lfd;

	parse_options(argc, argv);
	data = serve_load(opt.file, &data_len);
	lfd = serve_listen(SOCK_NONBLOCK);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
		err(2, "epoll");
	while (ended < opt.connections) {
		int n = epoll_wait(ep, evs, 16, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err(2, "epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c == NULL) {
				accept_all(ep, lfd);
				continue;
			}
			if (c->fd >= 0 && (evs[i].events & (EPOLLIN |
			    EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
				on_readable(c);
			if (c->fd >= 0)
				on_writable(c);
		}
	}
	close(ep);
	close(lfd);
	return 0;
}
