/*
 * cmd_replay.c — tcpspool replay: sends an orphan stream's undelivered
 * records, in order, to a TCP or Unix-domain listener, saving its progress
 * so an interrupted replay resumes where it stopped, and deletes the stream
 * once every byte is delivered (unless --keep).
 *
 * What "delivered" means. Bytes handed to the kernel are not delivered:
 * the progress saved is the part of them the peer has taken, measured as
 * bytes sent minus SIOCOUTQ:
 *   - TCP: SIOCOUTQ is unsent plus unacknowledged bytes, so the progress is
 *     what the peer's TCP acknowledged (as the library counts it). A peer
 *     that then closes without reading what its kernel acknowledged loses
 *     it, as with any TCP sender.
 *   - Unix: SIOCOUTQ is what the peer has not read yet (charged at the
 *     kernel's buffer size, so it over-counts: progress errs low). A sample
 *     is trusted only while the peer is connected, or after it closed
 *     cleanly (Linux reports ECONNRESET when the peer closed with unread
 *     data).
 * Progress is saved (spool_cursor_ack, persist) about every 100 ms and at
 * the end, so a replay killed at any point repeats at most the bytes sent
 * after the last save: the duplicates the spool's at-least-once guarantee
 * allows (FORMAT.md §6), and never loses one.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <linux/sockios.h>
#include <netinet/in.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

static const char replay_usage[] =
    "usage: tcpspool replay STREAM --to HOST:PORT|unix:PATH [--keep]\n"
    "                       [--accept-loss] [--linger DURATION] [--dir DIR]\n"
    "\n"
    "Sends the records of STREAM not yet delivered, in order, over one new\n"
    "connection, then deletes the stream. Only for an orphan stream: one\n"
    "whose writer process is gone, or whose writer released it (the\n"
    "library lets go of a stream whose peer reset); a stream its writer\n"
    "still holds is refused.\n"
    "\n"
    "  --to HOST:PORT   TCP destination, PORT 1-65535; an IPv6 address in\n"
    "                   brackets, [::1]:8000\n"
    "  --to unix:PATH   Unix-domain stream socket\n"
    "  --keep           keep the stream (with its progress at the end)\n"
    "  --accept-loss    delete the stream even when some of it could not be\n"
    "                   delivered (damaged files: torn tail, corrupt frames;\n"
    "                   see tcpspool verify); the loss is still reported and\n"
    "                   the exit code is still 2\n"
    "  --linger DURATION  how long to wait at the end for the peer to take\n"
    "                   the last bytes (default 30s)\n"
    "  --dir DIR        spool dir (default $TCPSPOOL_DIR or\n"
    "                   /var/tmp/tcpspool-UID)\n"
    "  -h, --help       this text\n"
    "\n"
    "The stream is first checked by the rules of tcpspool verify; each\n"
    "problem (what cannot be delivered) is printed on stderr, the rest is\n"
    "delivered.\n"
    "Progress is saved as the peer takes bytes (TCP: acknowledged; Unix:\n"
    "read), so an interrupted replay (error, peer reset, Ctrl-C, kill)\n"
    "resumes where the peer stopped. What can be sent twice is what was\n"
    "handed to the kernel after the last save: the whole kernel send queue\n"
    "at that moment (up to about 4 MiB on Linux for TCP; typically 1 MiB),\n"
    "plus at most 100 ms of sending. A progress bar is shown on a terminal\n"
    "only.\n"
    "\n"
    "exit: 0 all delivered, 1 error or interrupted (progress saved),\n"
    "2 the stream is damaged: what could be read was delivered, the rest\n"
    "is listed (stream kept, unless --accept-loss), 64 usage.\n";

#define INFLIGHT_MAX	65536		/* records sent, not yet delivered */
#define SAVE_EVERY_NS	(100LL * 1000000LL)

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	interrupted = sig;
}

/* A record handed to the kernel: bytes [base, base + len - off0) of the
 * connection are bytes [off0, len) of record seq. */
struct inflight {
	uint64_t seq;
	size_t off0, len;
	uint64_t base;
};

struct replay {
	struct spool_cursor *cur;
	int fd;
	bool is_unix;
	bool reset;		/* the peer dropped the connection */
	bool eof;		/* the peer closed its side */
	uint64_t sent;		/* bytes handed to the kernel */
	uint64_t delivered;	/* of those, taken by the peer */
	uint64_t acked;		/* bytes acknowledged to the cursor */
	uint64_t saved;		/* delivered as of the last saved ack */
	uint64_t ack_seq;	/* the last ack's position */
	size_t ack_off;
	struct inflight *q;
	size_t q_head, q_n, q_cap;
	uint64_t total;		/* for the progress bar */
	bool tty;
	int64_t last_save;
	int64_t last_bar;
	const char *name;
};

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
bar(struct replay *r, bool final)
{
	char a[16], b[16], line[128];
	unsigned pct, i, fill;
	int64_t now = mono_ns();

	if (!r->tty || (!final && now - r->last_bar < SAVE_EVERY_NS))
		return;
	r->last_bar = now;
	pct = r->total ? (unsigned)(r->delivered >= r->total ? 100 :
	    r->delivered * 100 / r->total) : 100;
	fill = pct * 30 / 100;
	for (i = 0; i < 30; i++)
		line[i] = i < fill ? '#' : ' ';
	line[30] = '\0';
	fprintf(stderr, "\rreplay %.8s [%s] %3u%% %s/%s", r->name, line, pct,
	    fmt_size(a, r->delivered), fmt_size(b, r->total));
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

/* Measures what the peer has taken; see the comment at the top. */
static void
sample(struct replay *r)
{
	struct pollfd p = { .fd = r->fd, .events = POLLIN | POLLRDHUP };
	uint64_t d;
	int q, err = 0;
	socklen_t len = sizeof(err);

	if (r->fd < 0 || ioctl(r->fd, SIOCOUTQ, &q) == -1)
		return;
	d = q < 0 || (uint64_t)q > r->sent ? 0 : r->sent - (uint64_t)q;
	if (r->is_unix) {
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
			if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err,
			    &len) == 0 && err != 0)
				r->reset = true;
			if (r->reset)
				return;	/* closed with our bytes unread */
			d = r->sent;	/* closed cleanly: all read */
		}
	}
	if (d > r->delivered)
		r->delivered = d;
}

/*
 * Acknowledges the delivered bytes to the cursor; persist saves them.
 * While records are still being read (final false) only whole records are
 * acknowledged: an acknowledgement inside a record makes the cursor return
 * that record again. The last checkpoint (final) is byte-exact.
 */
static int
checkpoint(struct replay *r, bool persist, bool final)
{
	struct spool_err e = { "" };
	struct inflight *h;
	uint64_t upto = r->acked;
	int rc;

	sample(r);
	bar(r, false);
	/* Drop the records delivered whole. */
	while (r->q_head < r->q_n) {
		h = &r->q[r->q_head];
		if (h->base + (h->len - h->off0) > r->delivered)
			break;
		r->ack_seq = h->seq;
		r->ack_off = h->len;
		upto = h->base + (h->len - h->off0);
		r->q_head++;
	}
	if (final && r->q_head < r->q_n && r->delivered > r->q[r->q_head].base) {
		h = &r->q[r->q_head];
		r->ack_seq = h->seq;
		r->ack_off = h->off0 + (size_t)(r->delivered - h->base);
		upto = r->delivered;
	}
	if (upto > r->acked)
		r->acked = upto;
	else if (!persist || r->saved == r->acked)
		return EXIT_OK;
	if (r->acked == 0)
		return EXIT_OK;
	rc = spool_cursor_ack(r->cur, r->ack_seq, r->ack_off, persist, &e);
	if (rc < 0) {
		warnx("%s: saving progress: %s", r->name,
		    e.msg[0] ? e.msg : strerror(-rc));
		return EXIT_ERR;
	}
	if (persist) {
		r->saved = r->acked;
		r->last_save = mono_ns();
	}
	/* Compact the queue once its delivered head grows large. */
	if (r->q_head > 4096 && r->q_head * 2 > r->q_n) {
		memmove(r->q, r->q + r->q_head, (r->q_n - r->q_head) *
		    sizeof(*r->q));
		r->q_n -= r->q_head;
		r->q_head = 0;
	}
	return EXIT_OK;
}

/* Reads and discards what the peer sends, so a close never turns into an
 * RST that would destroy bytes the peer has not read yet. */
static void
drain_input(struct replay *r)
{
	char buf[4096];
	ssize_t n;

	while ((n = recv(r->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		;
	if (n == 0)
		r->eof = true;
	else if (errno == ECONNRESET)
		r->reset = true;
}

/* Notes a connection the peer has dropped (reset, error, hang-up). */
static bool
peer_gone(struct replay *r, short revents)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (revents & (POLLERR | POLLHUP)) {
		if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
		    err != 0)
			r->reset = true;
		else if (revents & POLLHUP)
			r->reset = true;	/* both directions are shut */
	}
	return r->reset;
}

/*
 * Waits up to 100 ms for room to send (room: the kernel takes bytes; or,
 * with for_delivery, the peer takes some of the records in flight, which
 * no poll event tells: the wait is then a short one, to sample again),
 * saving progress when due. A peer that reset or hung up ends the wait
 * with EXIT_ERR: nothing it will ever take is left to wait for.
 */
static int
wait_writable(struct replay *r, bool for_delivery)
{
	/* After the peer's EOF, POLLIN would wake at once, forever. */
	struct pollfd p = { .fd = r->fd, .events = !for_delivery ? POLLOUT :
	    r->eof ? 0 : POLLIN | POLLRDHUP };
	int rc;

	if (poll(&p, 1, for_delivery ? 5 : 100) == -1 && errno != EINTR) {
		warn("poll");
		return EXIT_ERR;
	}
	drain_input(r);
	rc = checkpoint(r, mono_ns() - r->last_save >= SAVE_EVERY_NS, false);
	if (rc == EXIT_OK && (peer_gone(r, p.revents) || r->reset)) {
		warnx("%s: peer reset the connection", r->name);
		return EXIT_ERR;
	}
	return rc;
}

static int
send_record(struct replay *r, const struct spool_record *rec)
{
	const uint8_t *p = rec->data + rec->off;
	size_t left = rec->len - rec->off;
	struct inflight *nq;
	ssize_t n;
	int rc;

	while (r->q_n - r->q_head >= INFLIGHT_MAX && !interrupted)
		if ((rc = wait_writable(r, true)) != EXIT_OK)
			return rc;
	if (r->q_n == r->q_cap) {
		r->q_cap = r->q_cap ? r->q_cap * 2 : 1024;
		if ((nq = reallocarray(r->q, r->q_cap, sizeof(*nq))) == NULL) {
			warn("replay");
			return EXIT_ERR;
		}
		r->q = nq;
	}
	r->q[r->q_n++] = (struct inflight){ rec->seq, rec->off, rec->len,
	    r->sent };
	while (left > 0) {
		if (interrupted)
			return EXIT_ERR;
		n = send(r->fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			left -= (size_t)n;
			r->sent += (uint64_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if ((rc = wait_writable(r, false)) != EXIT_OK)
				return rc;
			continue;
		}
		if (errno == ECONNRESET || errno == EPIPE ||
		    errno == ETIMEDOUT)
			r->reset = true;
		warn("%s: send", r->name);
		return EXIT_ERR;
	}
	return EXIT_OK;
}

/*
 * After the last byte: shut down our side, then wait until the peer has
 * taken everything (and, ideally, closed), reading what it sends.
 */
static int
finish(struct replay *r, uint32_t linger_ms)
{
	int64_t deadline = mono_ns() + (int64_t)linger_ms * 1000000LL;
	int64_t all_taken_at = 0;
	struct pollfd p;

	shutdown(r->fd, SHUT_WR);
	for (;;) {
		drain_input(r);
		if (checkpoint(r, false, false) != EXIT_OK)
			return EXIT_ERR;
		if (r->delivered == r->sent) {
			if (r->eof || r->reset)
				return EXIT_OK;
			if (all_taken_at == 0)
				all_taken_at = mono_ns();
			/* The peer keeps its side open: a short grace for
			 * its FIN, then close quietly. */
			if (mono_ns() - all_taken_at > 200LL * 1000000LL)
				return EXIT_OK;
		} else if (r->reset || (r->eof && r->is_unix)) {
			warnx("%s: the peer closed the connection before "
			    "taking every byte", r->name);
			return EXIT_ERR;
		}
		if (interrupted)
			return EXIT_ERR;
		if (mono_ns() > deadline) {
			warnx("%s: the peer did not take the last %" PRIu64
			    " bytes within the linger time", r->name,
			    r->sent - r->delivered);
			return EXIT_ERR;
		}
		p = (struct pollfd){ .fd = r->fd, .events = POLLIN | POLLRDHUP };
		if (poll(&p, 1, 20) == -1 && errno != EINTR)
			return EXIT_ERR;
	}
}

/* Checks --to before anything is opened: HOST:PORT (PORT 1-65535) or
 * unix:PATH. A message and false if not. */
static bool
to_valid(const char *to, bool *is_unix)
{
	const char *port;

	*is_unix = strncmp(to, "unix:", 5) == 0;
	if (*is_unix) {
		if (to[5] != '\0' && strlen(to + 5) < sizeof(((struct
		    sockaddr_un *)0)->sun_path))
			return true;
		warnx("--to %s: bad socket path", to);
		return false;
	}
	if ((port = strrchr(to, ':')) == NULL) {
		warnx("--to %s: expected HOST:PORT or unix:PATH", to);
		return false;
	}
	if (!parse_port(port + 1, &(uint16_t){ 0 })) {
		warnx("--to %s: port \"%s\": expected 1 to 65535", to,
		    port + 1);
		return false;
	}
	return true;
}

/* Connects, within 10 s, to HOST:PORT or unix:PATH. */
static int
dial(const char *to, bool *is_unix)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_NUMERICSERV }, *res, *ai;
	char host[256], *port;
	uint16_t portnum;
	struct pollfd p;
	int fd = -1, rc, err;
	socklen_t len;

	*is_unix = strncmp(to, "unix:", 5) == 0;
	if (*is_unix) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlcpy(sun.sun_path, to + 5, sizeof(sun.sun_path)) >=
		    sizeof(sun.sun_path) || to[5] == '\0') {
			warnx("--to %s: bad socket path", to);
			return -1;
		}
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
			warn("%s", to);
			if (fd != -1)
				close(fd);
			return -1;
		}
		return fd;
	}
	if (strlcpy(host, to, sizeof(host)) >= sizeof(host) ||
	    (port = strrchr(host, ':')) == NULL || port[1] == '\0') {
		warnx("--to %s: expected HOST:PORT or unix:PATH", to);
		return -1;
	}
	*port++ = '\0';
	if (!parse_port(port, &portnum)) {
		warnx("--to %s: port \"%s\": expected 1 to 65535", to, port);
		return -1;
	}
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0) {
		warnx("%s: %s", to, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd == -1)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		if (err == EINPROGRESS) {
			p = (struct pollfd){ .fd = fd, .events = POLLOUT };
			len = sizeof(err);
			if (poll(&p, 1, 10000) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
			    &len) == 0 && err == 0)
				break;
			if (err == EINPROGRESS)
				err = ETIMEDOUT;
		}
		close(fd);
		fd = -1;
		errno = err;
	}
	freeaddrinfo(res);
	if (fd == -1)
		warn("%s", to);
	return fd;
}

/*
 * The records of stream name, from the cursor's position or from `from`
 * (tcpspool daemon: the first byte the kernel never accepted), to fd, or
 * to a connection dialled to `to` once the stream is judged readable.
 * fd is closed.
 */
static int
replay_stream_on(struct spool_dir *d, const char *name, const char *to,
    int fd, bool is_unix, const struct spool_place *from, bool keep,
    bool accept_loss, uint32_t linger_ms, bool *peer_gone)
{
	struct replay r = { .fd = -1, .name = name };
	struct spool_err e = { "" };
	struct spool_losses loss;
	struct spool_record rec;
	struct stream_check chk;
	struct stream_view v;
	struct sigaction sa;
	int rc = EXIT_OK, n, lock;
	bool damaged;
	char a[16];

	stream_view_load(d, name, &v);
	if (cli_dir_writable(d) != EXIT_OK || (lock = stream_lock(d, name)) < 0) {
		if (fd >= 0)
			close(fd);
		return EXIT_ERR;
	}
	/* Judged before a byte moves: the cursor deletes what it delivers. */
	stream_check(d, name, false, stderr, &chk);
	if (chk.failed) {
		if (fd >= 0)
			close(fd);
		close(lock);
		return EXIT_ERR;
	}
	if ((n = spool_cursor_open(d, name, &r.cur, &e)) < 0) {
		warnx("%s", e.msg[0] ? e.msg : strerror(-n));
		if (fd >= 0)
			close(fd);
		close(lock);
		return EXIT_ERR;
	}
	r.is_unix = is_unix;
	if ((r.fd = fd >= 0 ? fd : dial(to, &r.is_unix)) < 0) {
		spool_cursor_close(r.cur);
		close(lock);
		return EXIT_ERR;
	}
	if (fd < 0) {
		/* The command's own run only: a caller that passes the
		 * connection (the daemon) owns its signals. */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;	/* no SA_RESTART: wake poll */
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		r.tty = isatty(STDERR_FILENO);
	}
	r.total = v.info_ok ? v.info.raw_bytes : 0;
	r.last_save = mono_ns();

	for (;;) {
		if (interrupted) {
			rc = EXIT_ERR;
			break;
		}
		if ((n = spool_cursor_next(r.cur, &rec, &e)) < 0) {
			warnx("%s", e.msg[0] ? e.msg : strerror(-n));
			rc = EXIT_ERR;
			break;
		}
		if (n == 0)
			break;
		if (from != NULL && !from->at_end && (rec.seq < from->seq ||
		    (rec.seq == from->seq && rec.off < from->off))) {
			/* The kernel accepted these before the writer died. */
			if (rec.seq < from->seq) {
				(void)spool_cursor_ack(r.cur, rec.seq, rec.len,
				    false, &e);
				continue;
			}
			rec.off = (size_t)from->off;
		} else if (from != NULL && from->at_end) {
			(void)spool_cursor_ack(r.cur, rec.seq, rec.len, false,
			    &e);
			continue;
		}
		if (r.sent == 0 && rec.off > 0 && r.tty)
			fprintf(stderr, "resuming %s at record %" PRIu64
			    ", byte %zu\n", name, rec.seq, rec.off);
		if ((rc = send_record(&r, &rec)) != EXIT_OK)
			break;
	}
	if (rc == EXIT_OK)
		rc = finish(&r, linger_ms);
	if (checkpoint(&r, true, true) != EXIT_OK)
		rc = EXIT_ERR;
	bar(&r, true);
	close(r.fd);
	if (interrupted)
		warnx("%s: interrupted by signal %d after %s delivered; progress "
		    "saved, replay again to resume", name, (int)interrupted,
		    fmt_size(a, r.delivered));
	else if (rc != EXIT_OK && r.reset)
		warnx("%s: peer reset after %s delivered; progress saved, "
		    "replay again to resume", name, fmt_size(a, r.delivered));
	else if (rc != EXIT_OK)
		warnx("%s: %s delivered; progress saved, replay again to "
		    "resume", name, fmt_size(a, r.delivered));
	if (peer_gone != NULL)
		*peer_gone = rc != EXIT_OK && r.reset && !interrupted;
	spool_cursor_losses(r.cur, &loss);
	spool_cursor_close(r.cur);
	free(r.q);
	damaged = chk.problems > 0 || loss.records > 0 || loss.frames > 0;
	if (rc == EXIT_OK && damaged) {
		if (loss.records > 0)
			warnx("%s: %" PRIu64 " records could not be read (seq %"
			    PRIu64 "..%" PRIu64 ")", name, loss.records,
			    loss.first_seq, loss.last_seq);
		warnx("%s: damaged (%" PRIu64 " problem%s listed above, see "
		    "tcpspool verify): everything readable was delivered; %s",
		    name, chk.problems, chk.problems == 1 ? "" : "s",
		    keep ? "stream kept (--keep)" : accept_loss ?
		    "stream removed (--accept-loss)" : "stream kept "
		    "(--accept-loss removes it)");
		if (accept_loss && !keep &&
		    (n = spool_stream_remove(d, name, &e)) < 0) {
			warnx("%s", e.msg[0] ? e.msg : strerror(-n));
			rc = EXIT_ERR;
		} else
			rc = EXIT_INTEGRITY;
	} else if (rc == EXIT_OK && !keep) {
		if ((n = spool_stream_remove(d, name, &e)) < 0) {
			warnx("%s", e.msg[0] ? e.msg : strerror(-n));
			rc = EXIT_ERR;
		}
	}
	close(lock);
	return rc;
}

static int
replay_stream(struct spool_dir *d, const char *name, const char *to,
    bool keep, bool accept_loss, uint32_t linger_ms)
{
	struct stream_view v;

	stream_view_load(d, name, &v);
	if (v.held) {
		warnx("%s: its writer (pid %d) is running; replay refused "
		    "(only an orphan stream can be replayed)", name, (int)v.pid);
		return EXIT_ERR;
	}
	return replay_stream_on(d, name, to, -1, false, NULL, keep,
	    accept_loss, linger_ms, NULL);
}

int
replay_connection(struct spool_dir *d, const char *name, int fd,
    bool is_unix, const struct spool_place *from, uint32_t linger_ms,
    bool *peer_gone)
{
	return replay_stream_on(d, name, NULL, fd, is_unix, from, false,
	    false, linger_ms, peer_gone);
}

int
cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "keep", no_argument, NULL, 'k' },
		{ "accept-loss", no_argument, NULL, 'A' },
		{ "linger", required_argument, NULL, 'l' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char name[SPOOL_NAME_MAX];
	const char *dir = NULL, *to = NULL;
	uint32_t linger_ms = 30000;
	struct spool_dir *d;
	bool keep = false, accept_loss = false, is_unix;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "hd:", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			to = optarg;
			break;
		case 'k':
			keep = true;
			break;
		case 'A':
			accept_loss = true;
			break;
		case 'l':
			if (config_parse_duration_ms(optarg, &linger_ms) == -1) {
				warnx("--linger \"%s\": expected a duration like "
				    "30s", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
			return usage_exit(replay_usage, true);
		default:
			return usage_exit(replay_usage, false);
		}
	}
	if (argc - optind != 1 || to == NULL)
		return usage_exit(replay_usage, false);
	if (!to_valid(to, &is_unix))
		return EXIT_USAGE;
	if ((rc = cli_open_stream(dir, argv[optind], &d, name)) != EXIT_OK)
		return rc;
	rc = replay_stream(d, name, to, keep, accept_loss, linger_ms);
	spool_dir_close(d);
	return rc;
}
