/*
 * compat_client — the client of the real-program scenarios: it connects to
 * 127.0.0.1, sends a request (a file of bytes: a redis command, an HTTP
 * GET, a memcached get), and writes every byte of the answer to a file,
 * as slowly as the scenario asks, so that the test compares that file with
 * what the server was given to serve. It speaks no protocol: the test
 * writes the request and the expected answer byte for byte.
 *
 * It reads and sends in one poll loop, so a request of any size (a
 * publisher's 64 MiB of PUBLISH commands) never deadlocks against the
 * answer. It never writes to stdout.
 *
 * Options:
 *   --port P            server port (required)
 *   --out FILE          where the received bytes go (required)
 *   --send FILE         bytes to send right after connecting
 *   --rcvbuf N          SO_RCVBUF, set before connect (a small window)
 *   --mss N             TCP_MAXSEG, set before connect: the server's send
 *                       buffer, sized by the kernel from the MSS, stays
 *                       small (a server that writes only on EPOLLOUT, a
 *                       bounded amount at a time, meets short writes)
 *   --ready-bytes N     read the first N bytes (a subscription's
 *                       confirmation), then print "ready" on the status fd
 *   --gate-fd F         then read nothing more until fd F is readable or
 *                       at EOF (the test's gate: a full window, for sure)
 *   --rate BPS          after the gate, read at most BPS bytes a second
 *   --read-size N       bytes per read (default 65536)
 *   --then-send STR     once --after-bytes bytes have arrived, send STR
 *   --after-bytes N     (C escapes \r \n \\ in STR), e.g. redis's QUIT
 *   --body              an HTTP response: the header (up to the blank
 *                       line) goes to FILE.head, only the body to FILE
 *   --status-fd F       status lines: "ready", then the result line
 *   --idle-ms MS        give up when nothing arrives for MS while reading
 *                       (the gate open; default 30000)
 *   --result-file PATH  also write the result line there
 *
 * Result line: bytes=B sent=S end=HOW errno=E ms=T
 * bytes counts what went to FILE (the body, with --body); end is EOF (the
 * server's FIN), TIMEOUT, or the errno name a call failed with
 * (ECONNRESET: the server's RST). Exit 0 on EOF, 1 otherwise, 2 on a usage
 * or setup error.
 */
#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


static struct {
	unsigned short port;
	const char *out, *send, *then_send, *result_file;
	int rcvbuf, mss, gate_fd, status_fd, idle_ms;
	long long ready_bytes, rate, read_size, after_bytes;
	bool body;
} opt = {
	.gate_fd = -1, .status_fd = -1, .idle_ms = 30000, .read_size = 65536,
	.after_bytes = -1,
};

/* The connection's state, in the order the loop goes through it. */
static struct {
	int sock, out, head;
	char *req;			/* the request, then --then-send */
	size_t req_len, req_sent;
	long long sent, received;	/* bytes over the socket */
	long long body;			/* bytes written to --out */
	bool gate_open, then_sent, in_body;
	char tail[4];			/* last header bytes, for "\r\n\r\n" */
	long long start_ms, gate_ms, last_ms;
} c;

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long
number(const char *arg, long long lo, long long hi, const char *what)
{
	const char *errstr;
	long long v = strtonum(arg, lo, hi, &errstr);

	if (errstr != NULL)
		errx(2, "%s %s: %s", what, arg, errstr);
	return v;
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "out", required_argument, NULL, 'o' },
		{ "send", required_argument, NULL, 's' },
		{ "rcvbuf", required_argument, NULL, 'R' },
		{ "mss", required_argument, NULL, 'M' },
		{ "ready-bytes", required_argument, NULL, 'y' },
		{ "gate-fd", required_argument, NULL, 'g' },
		{ "rate", required_argument, NULL, 'r' },
		{ "read-size", required_argument, NULL, 'z' },
		{ "then-send", required_argument, NULL, 't' },
		{ "after-bytes", required_argument, NULL, 'a' },
		{ "body", no_argument, NULL, 'b' },
		{ "status-fd", required_argument, NULL, 'S' },
		{ "idle-ms", required_argument, NULL, 'i' },
		{ "result-file", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			opt.port =
			    (unsigned short)number(optarg, 1, 65535, "port");
			break;
		case 'o': opt.out = optarg; break;
		case 's': opt.send = optarg; break;
		case 'R':
			opt.rcvbuf = (int)number(optarg, 1, 1 << 30, "rcvbuf");
			break;
		case 'M':
			opt.mss = (int)number(optarg, 88, 65535, "mss");
			break;
		case 'y':
			opt.ready_bytes =
			    number(optarg, 0, 1 << 20, "ready bytes");
			break;
		case 'g':
			opt.gate_fd =
			    (int)number(optarg, 0, 1 << 20, "gate fd");
			break;
		case 'r':
			opt.rate = number(optarg, 1, 1LL << 40, "rate");
			break;
		case 'z':
			opt.read_size = number(optarg, 1, 1 << 24, "read size");
			break;
		case 't': opt.then_send = optarg; break;
		case 'a':
			opt.after_bytes =
			    number(optarg, 0, 1LL << 40, "after bytes");
			break;
		case 'b': opt.body = true; break;
		case 'S':
			opt.status_fd =
			    (int)number(optarg, 0, 1 << 20, "status fd");
			break;
		case 'i':
			opt.idle_ms = (int)number(optarg, 1, 3600000, "idle");
			break;
		case 'f': opt.result_file = optarg; break;
		default:
			errx(2, "see the comment at the top of "
			    "compat_client.c");
		}
	}
	if (optind != argc || opt.port == 0 || opt.out == NULL)
		errx(2, "usage: compat_client --port P --out FILE [options]");
	if ((opt.then_send == NULL) != (opt.after_bytes < 0))
		errx(2, "--then-send and --after-bytes go together");
}

/* The whole file, in memory (requests are at most some tens of MiB). */
static char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

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

/* --then-send's text with its C escapes resolved. */
static char *
unescape(const char *s, size_t *len)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	if (out == NULL)
		err(2, "malloc");
	for (; *s != '\0'; s++) {
		if (*s != '\\' || s[1] == '\0') {
			*o++ = *s;
			continue;
		}
		s++;
		*o++ = *s == 'r' ? '\r' : *s == 'n' ? '\n' : *s;
	}
	*len = (size_t)(o - out);
	return out;
}

static void
connect_to_server(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	c.sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c.sock < 0)
		err(2, "socket");
	if (opt.rcvbuf > 0 && setsockopt(c.sock, SOL_SOCKET, SO_RCVBUF,
	    &opt.rcvbuf, sizeof(opt.rcvbuf)) != 0)
		err(2, "SO_RCVBUF");
	if (opt.mss > 0 && setsockopt(c.sock, IPPROTO_TCP, TCP_MAXSEG,
	    &opt.mss, sizeof(opt.mss)) != 0)
		err(2, "TCP_MAXSEG");
	sin.sin_port = htons(opt.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c.sock, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		err(2, "connect 127.0.0.1:%u", opt.port);
	if (fcntl(c.sock, F_SETFL, O_NONBLOCK) != 0)
		err(2, "O_NONBLOCK");
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			err(2, "write %s", opt.out);
		p += w;
		n -= (size_t)w;
	}
}

/* Received bytes to the files: with --body, the header to FILE.head. */
static void
store(const char *p, size_t n)
{
	while (n > 0 && opt.body && !c.in_body) {
		write_all(c.head, p, 1);
		memmove(c.tail, c.tail + 1, 3);
		c.tail[3] = *p++;
		n--;
		c.in_body = memcmp(c.tail, "\r\n\r\n", 4) == 0;
	}
	write_all(c.out, p, n);
	c.body += (long long)n;
}

/* Bytes the loop may read now: the ready bytes, nothing before the gate
 * opens, then whatever the rate allows. */
static long long
may_read(void)
{
	long long allowed;

	if (c.received < opt.ready_bytes)
		return opt.ready_bytes - c.received;
	if (!c.gate_open)
		return 0;
	if (opt.rate == 0)
		return opt.read_size;
	allowed = (now_ms() - c.gate_ms) * opt.rate / 1000 -
	    (c.received - opt.ready_bytes);
	return allowed < opt.read_size ? allowed : opt.read_size;
}

static void
status(const char *line)
{
	if (opt.status_fd >= 0)
		dprintf(opt.status_fd, "%s\n", line);
}

/* The loop: returns the errno name the connection ended with, or EOF. */
static const char *
run(void)
{
	static char buf[1 << 24];
	bool ready_said = opt.ready_bytes == 0;

	if (ready_said)
		status("ready");
	c.gate_open = opt.gate_fd < 0;
	c.gate_ms = c.last_ms = now_ms();
	for (;;) {
		struct pollfd p[2] = { { .fd = c.sock }, { .fd = -1 } };
		long long n = may_read();
		int timeout = 1000;

		if (n > 0)
			p[0].events |= POLLIN;
		else if (c.gate_open)
			timeout = 5;	/* the rate lets more in soon */
		if (c.req_sent < c.req_len)
			p[0].events |= POLLOUT;
		if (p[0].events == 0)
			p[0].fd = -1;	/* not even POLLHUP: nothing to do */
		if (!c.gate_open && c.received >= opt.ready_bytes) {
			p[1].fd = opt.gate_fd;
			p[1].events = POLLIN;
		}
		if (poll(p, 2, timeout) < 0 && errno != EINTR)
			err(2, "poll");
		if (p[1].revents != 0) {
			c.gate_open = true;
			c.gate_ms = c.last_ms = now_ms();
		}
		if (c.gate_open && now_ms() - c.last_ms > opt.idle_ms)
			return "TIMEOUT";
		if (p[0].revents & POLLOUT) {
			ssize_t w = send(c.sock, c.req + c.req_sent,
			    c.req_len - c.req_sent, MSG_NOSIGNAL);

			if (w < 0 && errno != EAGAIN && errno != EINTR)
				return strerrorname_np(errno);
			if (w > 0) {
				c.req_sent += (size_t)w;
				c.sent += w;
			}
		}
		if (!(p[0].revents & (POLLIN | POLLERR | POLLHUP)) || n <= 0)
			continue;
		ssize_t r = recv(c.sock, buf, (size_t)n, 0);

		if (r == 0)
			return "EOF";
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0)
			return strerrorname_np(errno);
		c.last_ms = now_ms();
		store(buf, (size_t)r);
		c.received += r;
		if (!ready_said && c.received >= opt.ready_bytes) {
			status("ready");
			ready_said = true;
		}
		if (opt.then_send != NULL && !c.then_sent &&
		    c.received >= opt.after_bytes &&
		    c.req_sent == c.req_len) {
			free(c.req);
			c.req = unescape(opt.then_send, &c.req_len);
			c.req_sent = 0;
			c.then_sent = true;
		}
	}
}

int
main(int argc, char **argv)
{
	char head[4096 + 8], line[256];
	const char *end;
	int e;

	parse_options(argc, argv);
	c.start_ms = now_ms();
	c.out = open(opt.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (c.out < 0)
		err(2, "%s", opt.out);
	if (opt.body) {
		snprintf(head, sizeof(head), "%s.head", opt.out);
		if ((c.head = open(head, O_WRONLY | O_CREAT | O_TRUNC |
		    O_CLOEXEC, 0644)) < 0)
			err(2, "%s", head);
	}
	if (opt.send != NULL)
		c.req = slurp(opt.send, &c.req_len);
	connect_to_server();
	errno = 0;
	end = run();
	e = strcmp(end, "EOF") == 0 || strcmp(end, "TIMEOUT") == 0 ? 0 : errno;
	snprintf(line, sizeof(line), "bytes=%lld sent=%lld end=%s errno=%d "
	    "ms=%lld", c.body, c.sent, end, e, now_ms() - c.start_ms);
	close(c.sock);
	close(c.out);
	fprintf(stderr, "%s\n", line);
	status(line);
	if (opt.result_file != NULL) {
		FILE *f = fopen(opt.result_file, "we");

		if (f != NULL) {
			fprintf(f, "%s\n", line);
			fclose(f);
		}
	}
	return strcmp(end, "EOF") == 0 ? 0 : 1;
}
