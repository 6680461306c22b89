/*
 * close_then_hold — an application that closes a connection and goes on
 * living: the program of the daemon test "the peer gets FIN at once after
 * a stream returned to direct" (issue 15).
 *
 * Listens on 127.0.0.1 (port 0), accepts one connection, makes it
 * non-blocking and writes --count messages (pattern.h) on it, waiting for
 * room on EAGAIN (under the library that never happens: the rest is
 * spooled). Then it waits until --close-fd is readable or at EOF, closes
 * the connection, and waits until --exit-fd is readable or at EOF before
 * exiting 0. The two gates are distinct, so the test decides when the
 * close happens and how long the process outlives it.
 *
 * Options:
 *   --count N        messages to write (default 200000)
 *   --sndbuf N       SO_SNDBUF on the accepted socket (the kernel refuses
 *                    early, so the library spools)
 *   --status-fd N    lines for the harness, one write() each: "port P",
 *                    "done bytes=B" (B: what the program was told it
 *                    sent), "closed"
 *   --close-fd N     the gate before close (required)
 *   --exit-fd N      the gate before exit (required)
 *
 * Exit codes: 0 every message written and the gates passed; 1 usage or
 * setup error; 4 a write error.
 */
#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pattern.h"

enum { EX_OK = 0, EX_SETUP = 1, EX_WRITE_ERROR = 4 };

static struct {
	long long count;
	int sndbuf, status_fd, close_fd, exit_fd;
} opt = { .count = 200000, .status_fd = -1, .close_fd = -1, .exit_fd = -1 };

static void status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
status(const char *fmt, ...)
{
	char line[128];
	va_list ap;
	int n;

	if (opt.status_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(line))
		(void)!write(opt.status_fd, line, (size_t)n);
}

static long long
number(const char *arg, long long lo, long long hi, const char *what)
{
	const char *errstr;
	long long v = strtonum(arg, lo, hi, &errstr);

	if (errstr != NULL)
		errx(EX_SETUP, "%s %s: %s", what, arg, errstr);
	return v;
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "sndbuf", required_argument, NULL, 'B' },
		{ "status-fd", required_argument, NULL, 'S' },
		{ "close-fd", required_argument, NULL, 'c' },
		{ "exit-fd", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n': opt.count = number(optarg, 1, 1LL << 40, "count"); break;
		case 'B': opt.sndbuf = (int)number(optarg, 1, 1 << 30, "sndbuf"); break;
		case 'S': opt.status_fd = (int)number(optarg, 0, 1 << 20, "status fd"); break;
		case 'c': opt.close_fd = (int)number(optarg, 0, 1 << 20, "close fd"); break;
		case 'x': opt.exit_fd = (int)number(optarg, 0, 1 << 20, "exit fd"); break;
		default: errx(EX_SETUP, "see the comment at the top of close_then_hold.c");
		}
	}
	if (optind != argc || opt.close_fd < 0 || opt.exit_fd < 0)
		errx(EX_SETUP, "--close-fd and --exit-fd are required");
}

/* Blocks until fd is readable or at EOF (the test closes its end). */
static void
wait_readable(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	while (poll(&pfd, 1, -1) == -1)
		if (errno != EINTR)
			err(EX_SETUP, "poll");
}

static int
accept_loopback(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int lfd, fd, fl;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		err(EX_SETUP, "socket");
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 1) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) == -1)
		err(EX_SETUP, "listen on 127.0.0.1");
	status("port %u\n", ntohs(sin.sin_port));
	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1)
		err(EX_SETUP, "accept");
	close(lfd);
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		err(EX_SETUP, "fcntl O_NONBLOCK");
	if (opt.sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF,
	    &opt.sndbuf, sizeof(opt.sndbuf)) == -1)
		err(EX_SETUP, "SO_SNDBUF");
	return fd;
}

/* Writes the messages; returns the bytes the program was told it sent. */
static long long
write_messages(int fd)
{
	char msg[PATTERN_DEFAULT_SIZE];
	long long told = 0;

	for (long long seq = 1; seq <= opt.count; seq++) {
		size_t done = 0;

		pattern_message(msg, sizeof(msg), -1, (uint64_t)seq);
		while (done < sizeof(msg)) {
			ssize_t r = write(fd, msg + done, sizeof(msg) - done);

			if (r == -1 && (errno == EAGAIN || errno == EINTR)) {
				wait_readable(fd, POLLOUT);
				continue;
			}
			if (r == -1)
				err(EX_WRITE_ERROR, "write after %lld bytes",
				    told);
			done += (size_t)r;
			told += r;
		}
	}
	return told;
}

int
main(int argc, char **argv)
{
	long long told;
	int fd;

	parse_options(argc, argv);
	fd = accept_loopback();
	told = write_messages(fd);
	status("done bytes=%lld\n", told);
	wait_readable(opt.close_fd, POLLIN);
	if (close(fd) == -1)
		err(EX_WRITE_ERROR, "close");
	status("closed\n");
	wait_readable(opt.exit_fd, POLLIN);
	return EX_OK;
}
