/*
 * Issue 16's resume, from its spec: with TCPSPOOL_RESUME=peer-addr a
 * stream whose peer went away (reset) while bytes were spooled waits, keyed
 * by the peer's IP address, for the next connection from that address;
 * when that connection is first written to (by any process using the same
 * spool dir, before TCPSPOOL_RESUME_TTL runs out), the waiting records go
 * out first (oldest waiting stream first, from a record boundary), then
 * what the application writes on the new connection. Bytes the kernel had
 * accepted on the old connection are lost with it. AF_UNIX never resumes;
 * with RESUME off (the default) the old stream is an orphan, as before.
 *
 * server_a (fork per connection; every connection gets messages from
 * seq=1, one sendmsg per message: a record is a message) serves; the test
 * process is the client, with its own sockets. The old connection's
 * client connects with a small SO_RCVBUF (server_a's side has a small
 * SO_SNDBUF), reads nothing until server_a has written (spooled) its whole
 * stream, reads a known number of messages, then resets the connection
 * (SO_LINGER {1, 0}). server_a's children close and hold (--end
 * close-hold) until the test ends, so the old stream is still spooling in
 * a live process when its peer dies. Every wait is on a condition (a
 * status line, a tcpspool ls answer, a file's absence) with a bound.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pattern.h"

#define MSG		PATTERN_DEFAULT_SIZE
/* The story's size: 750000 messages, 21 MB spooled for the dead client. */
#define BIG_COUNT	750000LL
/* The variations: 2.8 MB, still far past what small buffers hold. */
#define COUNT		100000LL
#define SMALL_BUF	4096
/* Bound on one phase (a state change, a read going idle): each test stays
 * well under half a minute when it passes, and fails within its bound
 * when what it waits for never comes. */
#define PHASE_MS	20000
#define MAX_RUNS	16
/* Bound on a stream's change of state after its peer went away (it takes
 * milliseconds). */
#define STATE_MS	10000

static const char *const resume_env[] = { "TCPSPOOL_RESUME=peer-addr",
	"TCPSPOOL_LINGER=60s", NULL };

TestSuite(resume, .init = h_setup, .fini = h_teardown, .timeout = 120);

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * What a client received, as maximal runs of consecutive sequence numbers:
 * a resumed stream is the old one's remainder [r..count], then a fresh one
 * [1..count]. Every message must be exactly pattern.h's message of its seq.
 */
struct got {
	struct { long long first, last; } run[MAX_RUNS];
	int nruns;
	bool more_runs;		/* more than MAX_RUNS runs arrived */
	long long bytes;
	long long bad_at;	/* offset of the first malformed message, -1 */
	char cur[MSG];
	size_t curlen;
	char end[48];		/* EOF, TIMEOUT or the read's errno */
	char text[512];		/* the runs, for messages */
};

static void
got_init(struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->bad_at = -1;
}

static void
got_feed(struct got *g, const char *p, size_t n)
{
	char want[MSG];
	long long seq;

	while (n > 0) {
		size_t k = MSG - g->curlen < n ? MSG - g->curlen : n;

		memcpy(g->cur + g->curlen, p, k);
		g->curlen += k;
		g->bytes += (long long)k;
		p += k;
		n -= k;
		if (g->curlen < MSG)
			break;
		g->curlen = 0;
		seq = (long long)pattern_seq_of(g->cur);
		if (seq > 0)
			pattern_message(want, MSG, -1, (uint64_t)seq);
		if (seq == 0 || memcmp(want, g->cur, MSG) != 0) {
			if (g->bad_at < 0)
				g->bad_at = g->bytes - MSG;
			continue;
		}
		if (g->nruns > 0 && g->run[g->nruns - 1].last + 1 == seq) {
			g->run[g->nruns - 1].last = seq;
			continue;
		}
		if (g->nruns == MAX_RUNS) {
			g->more_runs = true;
			continue;
		}
		g->run[g->nruns].first = g->run[g->nruns].last = seq;
		g->nruns++;
	}
}

/* The runs in words, into g->text. */
static const char *
got_text(struct got *g)
{
	size_t used = 0;

	g->text[0] = '\0';
	for (int i = 0; i < g->nruns && used < sizeof(g->text); i++)
		used += (size_t)snprintf(g->text + used, sizeof(g->text) - used,
		    "%s[seq %lld..%lld]", i ? " " : "", g->run[i].first,
		    g->run[i].last);
	if (used < sizeof(g->text))
		snprintf(g->text + used, sizeof(g->text) - used, "%s; %lld "
		    "bytes%s, then %s%s", g->more_runs ? " (and more runs)" : "",
		    g->bytes, g->curlen ? " (a torn message at the end)" : "",
		    g->end, g->bad_at >= 0 ? "; MALFORMED message" : "");
	return g->text;
}

/* Reads exactly n bytes of fd into g, each read bounded by PHASE_MS. */
static void
read_exactly(int fd, struct got *g, long long n)
{
	static char buf[1 << 16];

	while (n > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		size_t want = n < (long long)sizeof(buf) ? (size_t)n : sizeof(buf);
		ssize_t r;

		cr_assert_eq(poll(&pfd, 1, PHASE_MS), 1, "nothing to read for "
		    "%d ms with %lld bytes still due (%s)", PHASE_MS, n,
		    got_text(g));
		r = read(fd, buf, want);
		cr_assert_gt(r, 0, "read: %s with %lld bytes still due (%s)",
		    r == 0 ? "EOF" : strerror(errno), n, got_text(g));
		got_feed(g, buf, (size_t)r);
		n -= r;
	}
}

/* Reads fd into g until EOF, an error, or PHASE_MS without a byte. */
static void
read_to_end(int fd, struct got *g)
{
	static char buf[1 << 16];

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, PHASE_MS) == 0) {
			snprintf(g->end, sizeof(g->end), "TIMEOUT (%d ms idle)",
			    PHASE_MS);
			return;
		}
		r = read(fd, buf, sizeof(buf));
		if (r > 0) {
			got_feed(g, buf, (size_t)r);
		} else if (r == 0) {
			snprintf(g->end, sizeof(g->end), "EOF");
			return;
		} else if (errno != EINTR) {
			snprintf(g->end, sizeof(g->end), "%s", strerror(errno));
			return;
		}
	}
}

/*
 * A TCP connection to 127.0.0.1:port from address from (NULL: the kernel's
 * choice, 127.0.0.1), with SO_RCVBUF rcvbuf (0: the default) set before
 * connecting, so that the window is small from the start.
 */
static int
tcp_client(const char *from, unsigned short port, int rcvbuf)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	if (rcvbuf > 0)
		cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf)), 0, "SO_RCVBUF: %s", strerror(errno));
	if (from != NULL) {
		cr_assert_eq(inet_pton(AF_INET, from, &sin.sin_addr), 1);
		cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
		    "bind %s: %s", from, strerror(errno));
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
	    "connect 127.0.0.1:%u: %s", port, strerror(errno));
	return fd;
}

static int
unix_client(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0,
	    "connect %s: %s", path, strerror(errno));
	return fd;
}

/* Closes fd with SO_LINGER {1, 0}: the peer gets RST. */
static void
reset_close(int fd)
{
	struct linger l = { 1, 0 };

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0,
	    "SO_LINGER: %s", strerror(errno));
	close(fd);
}

/* One stream as tcpspool ls --json lists it. */
struct ls_row {
	char stream[64], state[32], peer[128];
	long long records, raw;
};

static void
json_str(const char *line, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *s;
	size_t n;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	out[0] = '\0';
	if ((s = strstr(line, pat)) == NULL)
		return;
	s += strlen(pat);
	n = strcspn(s, "\"");
	snprintf(out, len, "%.*s", (int)n, s);
}

static long long
json_num(const char *line, const char *key)
{
	char pat[64];
	const char *s;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((s = strstr(line, pat)) == NULL)
		return -1;
	s += strlen(pat);
	return *s >= '0' && *s <= '9' ? strtoll(s, NULL, 10) : -1;
}

/*
 * Runs tcpspool ls --json --dir SPOOL (not through h_spawn: the waits run
 * it many times), its stdout and stderr into text; the streams into rows.
 * Returns the number of rows.
 */
static int
ls_rows(struct ls_row *rows, int max, char *text, size_t len)
{
	char *argv[] = { (char *)getenv("TCPSPOOL_TEST_CLI"), "ls", "--json",
		"--dir", (char *)h_spool_dir(), NULL };
	extern char **environ;
	posix_spawn_file_actions_t fa;
	long long deadline = now_ms() + PHASE_MS;
	size_t used = 0;
	int p[2], n = 0, st;
	pid_t pid;

	cr_assert(argv[0] != NULL, "TCPSPOOL_TEST_CLI unset");
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0,
	    "posix_spawn %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		long long left = deadline - now_ms();
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			kill(pid, SIGKILL);
			break;
		}
		r = read(p[0], text + used, len - 1 - used);
		if (r <= 0 || (used += (size_t)r) == len - 1)
			break;
	}
	text[used] = '\0';
	close(p[0]);
	waitpid(pid, &st, 0);
	for (char *line = text; *line != '\0' && n < max; ) {
		char *nl = strchr(line, '\n');

		if (line[0] == '{') {
			struct ls_row *r = &rows[n++];

			json_str(line, "stream", r->stream, sizeof(r->stream));
			json_str(line, "state", r->state, sizeof(r->state));
			json_str(line, "peer", r->peer, sizeof(r->peer));
			r->records = json_num(line, "records");
			r->raw = json_num(line, "raw_bytes");
		}
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	return n;
}

/* The row of the stream whose peer is peer (NULL: the only stream). */
static bool
find_row(const char *peer, struct ls_row *out, char *text, size_t len)
{
	struct ls_row rows[16];
	int n = ls_rows(rows, 16, text, len);

	for (int i = 0; i < n; i++)
		if (peer == NULL ? n == 1 : strcmp(rows[i].peer, peer) == 0) {
			*out = rows[i];
			return true;
		}
	return false;
}

/* The row of the stream named name. */
static bool
find_stream(const char *name, struct ls_row *out, char *text, size_t len)
{
	struct ls_row rows[16];
	int n = ls_rows(rows, 16, text, len);

	for (int i = 0; i < n; i++)
		if (strcmp(rows[i].stream, name) == 0) {
			*out = rows[i];
			return true;
		}
	return false;
}

/*
 * Waits until the stream of peer (NULL: the only stream) is listed in
 * state want, or (any_release) in either state a stream its library let
 * go of can have: waiting or orphan. Fails the test if the stream is not
 * listed at all by then; if it is listed in another state, records the
 * failure and returns (with *row as listed), so that the test goes on to
 * show what a reconnecting client gets.
 */
static void
wait_state(const char *peer, const char *want, bool any_release,
    struct ls_row *row)
{
	static char text[65536];
	long long deadline = now_ms() + STATE_MS;
	bool found;

	for (;;) {
		found = find_row(peer, row, text, sizeof(text));
		if (found && (strcmp(row->state, want) == 0 || (any_release &&
		    (strcmp(row->state, "waiting") == 0 ||
		    strcmp(row->state, "orphan") == 0))))
			return;
		if (now_ms() > deadline)
			break;
		poll(NULL, 0, 50);	/* bounded retry on the condition */
	}
	cr_assert(found, "the stream of peer %s is not listed %d ms after its "
	    "peer went away; tcpspool ls --json:\n%s", peer ? peer :
	    "(the only one)", STATE_MS, text);
	cr_expect_fail("the stream of peer %s (%s) is listed as \"%s\", not "
	    "\"%s\", %d ms after its peer went away; tcpspool ls --json:\n%s",
	    peer ? peer : "(the only one)", row->stream, row->state, want,
	    STATE_MS, text);
}

/* server_a, preloaded, serving `connections` connections, each child
 * closing and holding until `hold` opens. */
struct server {
	struct h_proc *p;
	unsigned short port;
	struct h_gate hold;
	char desc[256];
};

/* One more server_a option for the next server_start (a test's own). */
static const char *server_extra;

static void
server_start(struct server *sv, const char *const *env, int connections,
    long long count, int small_conns, const char *unix_path)
{
	struct h_spawn o = { .preload = true, .env = env, .nfds = 1 };
	struct h_argv a = { .n = 0 };
	static int nserver;
	char prog[PATH_MAX], label[32];
	const char *line;

	memset(sv, 0, sizeof(*sv));
	h_gate_init(&sv->hold);
	o.fds[0].child = 5;
	o.fds[0].parent = sv->hold.rfd;
	h_fixture(prog, sizeof(prog), "server_a");
	h_args(&a, "--status-fd", "3", "--end=close-hold", "--resume-fd=5",
	    NULL);
	h_arg(&a, "--connections=%d", connections);
	h_arg(&a, "--count=%lld", count);
	h_arg(&a, "--sndbuf=%d", SMALL_BUF);
	h_arg(&a, "--sndbuf-conns=%d", small_conns);
	if (unix_path != NULL)
		h_arg(&a, "--unix=%s", unix_path);
	if (server_extra != NULL)
		h_arg(&a, "%s", server_extra);
	for (int i = 1; i < a.n; i++) {
		strlcat(sv->desc, a.v[i], sizeof(sv->desc));
		strlcat(sv->desc, " ", sizeof(sv->desc));
	}
	snprintf(label, sizeof(label), "server_a-%d", nserver++);
	sv->p = h_spawn(label, prog, &a, &o);
	line = h_status_line(sv->p, "port ", 0, PHASE_MS);
	cr_assert(line != NULL, "server_a announced no port: %s",
	    h_describe(sv->p));
	sv->port = (unsigned short)strtol(line + 5, NULL, 10);
}

/* server_a's status line "what conn=K ..." ("done", "sndbuf"). */
static const char *
server_line(struct server *sv, const char *what, int conn)
{
	char prefix[64];
	const char *line;

	h_fmt(prefix, sizeof(prefix), "%s conn=%d ", what, conn);
	line = h_status_line(sv->p, prefix, 0, PHASE_MS);
	cr_assert(line != NULL, "server_a (%s) reported no \"%s\" line; "
	    "status:\n%s\n%s", sv->desc, prefix, h_status_text(sv->p),
	    h_describe(sv->p));
	return line;
}

/* Lets the children end; server_a must then end cleanly. */
static void
server_finish(struct server *sv)
{
	h_gate_open(&sv->hold);
	cr_assert(h_wait(sv->p, PHASE_MS), "server_a did not end: %s",
	    h_describe(sv->p));
	cr_expect_eq(h_exit_code(sv->p), 0, "server_a: %s; status:\n%s",
	    h_describe(sv->p), h_status_text(sv->p));
	cr_expect_eq(h_stdout_size(sv->p), 0, "server_a wrote on its stdout");
}

/* A connection whose client dies while its stream is spooled. */
struct old {
	int fd, conn;
	char peer[64];		/* the client's address, as the server sees it */
	long long sndbuf;	/* server_a's SO_SNDBUF, read back */
	int rcvbuf;		/* the client's SO_RCVBUF, read back */
	long long read;		/* messages read: the last one read is seq=read */
	struct ls_row row;	/* its stream once released */
};

/*
 * Connects o (connection number conn of sv, from 127.0.0.1, small window)
 * and waits until server_a has written its whole stream: all but what the
 * kernel took is spooled.
 */
static void
old_connect(struct server *sv, struct old *o, int conn)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char host[INET_ADDRSTRLEN];

	memset(o, 0, sizeof(*o));
	o->conn = conn;
	o->fd = tcp_client(NULL, sv->port, SMALL_BUF);
	len = sizeof(o->rcvbuf);
	cr_assert_eq(getsockopt(o->fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf,
	    &len), 0);
	len = sizeof(sin);
	cr_assert_eq(getsockname(o->fd, (struct sockaddr *)&sin, &len), 0);
	inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host));
	snprintf(o->peer, sizeof(o->peer), "%s:%u", host, ntohs(sin.sin_port));
	o->sndbuf = h_field(server_line(sv, "sndbuf", conn), "bytes");
	cr_assert_gt(o->sndbuf, 0);
	server_line(sv, "done", conn);
}

/*
 * The client of o reads its first `msgs` messages (they must be seq 1 to
 * msgs), resets the connection with the rest spooled, and the test waits
 * until tcpspool ls lists the stream as want ("waiting" with resume,
 * "orphan" without).
 */
static void
old_read_and_reset(struct old *o, long long msgs, const char *want)
{
	struct got g;

	got_init(&g);
	read_exactly(o->fd, &g, msgs * MSG);
	cr_assert(g.nruns == 1 && g.run[0].first == 1 &&
	    g.run[0].last == msgs && g.bad_at < 0, "the old connection's "
	    "first %lld messages: %s", msgs, got_text(&g));
	o->read = msgs;
	reset_close(o->fd);
	o->fd = -1;
	wait_state(o->peer, want, strcmp(want, "waiting") != 0, &o->row);
}

/* Messages the old connection's kernel buffers may have held and lost:
 * server_a's send buffer plus the dead client's receive buffer. */
static long long
lost_bound(const struct old *o)
{
	return (o->sndbuf + o->rcvbuf) / MSG + 1;
}

/*
 * What a client from the old clients' address must get: the remainder of
 * each old stream, olds[0] first, each from a message boundary at most one
 * message before the first it had not read (a record partly sent is sent
 * whole) and at most what its kernel buffers held after it, up to that
 * stream's last message; then a fresh stream [1..count]; then EOF.
 */
static void
assert_resumed(struct got *g, const struct old *olds, int n,
    long long old_count, long long count)
{
	cr_assert_eq(g->bad_at, -1, "a malformed message at byte %lld: the "
	    "resumed stream does not start (or go on) at a message boundary: "
	    "%s", g->bad_at, got_text(g));
	cr_assert(!(g->nruns >= 1 && g->run[0].first == 1), "the reconnecting "
	    "client got a fresh stream first (%s): the waiting stream of %s "
	    "(read up to seq=%lld) was not resumed in front of it",
	    got_text(g), olds[0].peer, olds[0].read);
	cr_assert_eq(g->nruns, n + 1, "expected %d old remainder(s) then a "
	    "fresh stream; got %s", n, got_text(g));
	for (int i = 0; i < n; i++) {
		const struct old *o = &olds[i];
		long long lo = o->read, hi = o->read + 1 + lost_bound(o);

		cr_expect(g->run[i].first >= lo && g->run[i].first <= hi,
		    "remainder %d (the stream of %s, whose client read up to "
		    "seq=%lld) starts at seq=%lld; expected seq=%lld..%lld: at "
		    "most one message again, at most %lld lost (server SO_SNDBUF "
		    "%lld + client SO_RCVBUF %d bytes, %d-byte messages); got %s",
		    i, o->peer, o->read, g->run[i].first, lo, hi, lost_bound(o),
		    o->sndbuf, o->rcvbuf, MSG, got_text(g));
		cr_expect_eq(g->run[i].last, old_count, "remainder %d (the "
		    "stream of %s) ends at seq=%lld, not at its last message "
		    "seq=%lld: %s", i, o->peer, g->run[i].last, old_count,
		    got_text(g));
	}
	cr_expect(g->run[n].first == 1 && g->run[n].last == count &&
	    !g->more_runs && g->curlen == 0, "after the old remainder(s) the "
	    "new connection's own stream [seq 1..%lld] should follow, and "
	    "nothing else: %s", count, got_text(g));
	cr_expect_str_eq(g->end, "EOF", "%s", got_text(g));
}

/* What a client that resumes nothing must get: [1..count], then EOF. */
static void
assert_fresh(struct got *g, long long count, const char *who)
{
	cr_expect(g->bad_at == -1 && g->nruns == 1 && g->run[0].first == 1 &&
	    g->run[0].last == count && !g->more_runs && g->curlen == 0,
	    "%s should get a fresh stream [seq 1..%lld] and nothing else: "
	    "got %s", who, count, got_text(g));
	cr_expect_str_eq(g->end, "EOF", "%s: %s", who, got_text(g));
}

/* A new client from `from`, reading its whole stream. */
static void
client_reads_all(unsigned short port, const char *from, struct got *g)
{
	int fd = tcp_client(from, port, 0);

	got_init(g);
	read_to_end(fd, g);
	close(fd);
}

Test(resume, reconnect_from_the_same_address_gets_the_old_remainder_first)
{
	struct server sv;
	struct old o;
	struct got g;
	char files[1024];

	/* Connection 0 (small buffers) dies with about 20 MiB spooled;
	 * connection 1 (default buffers: the resumed bytes go fast) comes
	 * from the same address. */
	server_start(&sv, resume_env, 2, BIG_COUNT, 1, NULL);
	old_connect(&sv, &o, 0);
	old_read_and_reset(&o, 2000, "waiting");
	cr_expect_geq(o.row.raw, 19LL << 20, "only %lld bytes were spooled "
	    "for the dead client, not about 20 MiB", o.row.raw);
	client_reads_all(sv.port, "127.0.0.1", &g);
	assert_resumed(&g, &o, 1, BIG_COUNT, BIG_COUNT);
	cr_expect(h_spool_wait_empty(PHASE_MS), "the spool dir is not empty "
	    "after the resumed stream was delivered: %d files: %s",
	    h_spool_files(files, sizeof(files)), files);
	server_finish(&sv);
}

Test(resume, another_address_gets_a_fresh_stream_and_the_waiting_one_waits)
{
	static char text[65536];
	struct ls_row row;
	struct server sv;
	struct old o;
	struct got g;

	server_start(&sv, resume_env, 3, COUNT, 1, NULL);
	old_connect(&sv, &o, 0);
	old_read_and_reset(&o, 2000, "waiting");
	/* 127.0.0.2 is loopback too, but another peer address. */
	client_reads_all(sv.port, "127.0.0.2", &g);
	assert_fresh(&g, COUNT, "a client from 127.0.0.2");
	cr_assert(find_row(o.peer, &row, text, sizeof(text)), "the waiting "
	    "stream of %s is gone after a client from 127.0.0.2; tcpspool "
	    "ls:\n%s", o.peer, text);
	cr_expect(strcmp(row.state, o.row.state) == 0 &&
	    row.records == o.row.records, "the waiting stream of %s changed "
	    "while a client from 127.0.0.2 came and went: it was %s with %lld "
	    "records, it is %s with %lld", o.peer, o.row.state, o.row.records,
	    row.state, row.records);
	client_reads_all(sv.port, "127.0.0.1", &g);
	assert_resumed(&g, &o, 1, COUNT, COUNT);
	server_finish(&sv);
}

Test(resume, waiting_stream_expires_after_the_ttl_then_a_fresh_stream)
{
	/* TCPSPOOL_ORPHAN_TTL keeps its default (10 minutes): the stream
	 * must go by the resume TTL, not as an orphan that expires. */
	static const char *const env[] = { "TCPSPOOL_RESUME=peer-addr",
		"TCPSPOOL_RESUME_TTL=2s", "TCPSPOOL_LINGER=60s", NULL };
	struct server sv;
	struct old o;
	struct got g;
	char path[PATH_MAX];
	long long deadline;
	struct stat st;

	server_start(&sv, env, 2, COUNT, 1, NULL);
	old_connect(&sv, &o, 0);
	old_read_and_reset(&o, 2000, "waiting");
	h_fmt(path, sizeof(path), "%s/%s", h_spool_dir(), o.row.stream);
	cr_assert(o.row.stream[0] != '\0' && stat(path, &st) == 0,
	    "the waiting stream's dir %s is not there", path);
	/* The library sweeps about every TTL: 2 s, then up to one more
	 * period; the bound leaves room for a loaded machine. */
	deadline = now_ms() + PHASE_MS;
	while (stat(path, &st) == 0 && now_ms() < deadline)
		poll(NULL, 0, 50);	/* bounded retry on the condition */
	cr_expect_neq(stat(path, &st), 0, "the waiting stream %s is still "
	    "in the spool dir %d ms after TCPSPOOL_RESUME_TTL=2s ran out",
	    o.row.stream, PHASE_MS);
	client_reads_all(sv.port, "127.0.0.1", &g);
	assert_fresh(&g, COUNT, "a client from 127.0.0.1 after the TTL");
	server_finish(&sv);
}

Test(resume, two_waiting_streams_resume_oldest_first)
{
	struct server sv;
	struct old o[2];
	struct got g;

	/* Both old connections are made (and spooled) before either dies,
	 * so that neither takes the other's waiting stream. Their clients
	 * die at clearly different positions (1000 and 30000 messages read;
	 * the lost-bytes bound is a few hundred messages): each remainder's
	 * first message names its stream. Connection 0 is the older one and
	 * dies first. */
	server_start(&sv, resume_env, 3, COUNT, 2, NULL);
	old_connect(&sv, &o[0], 0);
	old_connect(&sv, &o[1], 1);
	cr_assert_lt(1000 + 1 + lost_bound(&o[0]), 30000, "the two remainders' "
	    "first messages would not tell the streams apart");
	old_read_and_reset(&o[0], 1000, "waiting");
	old_read_and_reset(&o[1], 30000, "waiting");
	client_reads_all(sv.port, "127.0.0.1", &g);
	assert_resumed(&g, o, 2, COUNT, COUNT);
	server_finish(&sv);
}

/* How the first server ends between the death and the reconnect. */
struct restart_case {
	char how[16];
};

static struct restart_case restart_cases[] = { { "kill-9" }, { "exit" } };

ParameterizedTestParameters(resume, a_new_server_process_adopts_the_waiting_stream)
{
	return cr_make_param_array(struct restart_case, restart_cases,
	    sizeof(restart_cases) / sizeof(restart_cases[0]));
}

ParameterizedTest(struct restart_case *c, resume,
    a_new_server_process_adopts_the_waiting_stream)
{
	struct server sv, sv2;
	struct ls_row row;
	struct old o;
	struct got g;
	static char text[65536];

	server_start(&sv, resume_env, 1, COUNT, 1, NULL);
	old_connect(&sv, &o, 0);
	old_read_and_reset(&o, 2000, "waiting");
	if (strcmp(c->how, "kill-9") == 0) {
		h_kill_group(sv.p, SIGKILL);
		cr_assert(h_wait(sv.p, PHASE_MS), "%s", h_describe(sv.p));
	} else {
		server_finish(&sv);
	}
	cr_assert(find_row(o.peer, &row, text, sizeof(text)), "the waiting "
	    "stream of %s is gone with its server (%s); tcpspool ls:\n%s",
	    o.peer, c->how, text);
	cr_expect_str_eq(row.state, "waiting", "after its server ended "
	    "(%s) the stream of %s is listed as \"%s\"", c->how, o.peer,
	    row.state);
	/* A new server_a, another process on another port, same spool dir. */
	server_start(&sv2, resume_env, 1, COUNT, 0, NULL);
	client_reads_all(sv2.port, "127.0.0.1", &g);
	assert_resumed(&g, &o, 1, COUNT, COUNT);
	server_finish(&sv2);
}

/* TCPSPOOL_RESUME as the environment gives it (empty: unset). */
struct off_case {
	char env[32];
};

static struct off_case off_cases[] = { { "TCPSPOOL_RESUME=off" }, { "" } };

ParameterizedTestParameters(resume, off_gives_a_fresh_stream_and_keeps_an_orphan)
{
	return cr_make_param_array(struct off_case, off_cases,
	    sizeof(off_cases) / sizeof(off_cases[0]));
}

ParameterizedTest(struct off_case *c, resume,
    off_gives_a_fresh_stream_and_keeps_an_orphan)
{
	const char *env[] = { "TCPSPOOL_LINGER=60s", c->env, NULL };
	static char text[65536];
	struct ls_row row;
	struct server sv;
	struct old o;
	struct got g;

	if (c->env[0] == '\0')
		env[1] = NULL;
	server_start(&sv, env, 2, COUNT, 1, NULL);
	old_connect(&sv, &o, 0);
	old_read_and_reset(&o, 2000, "orphan");
	cr_expect_str_eq(o.row.state, "orphan", "with %s the stream of a "
	    "reset peer is listed as \"%s\"", c->env[0] ? c->env :
	    "TCPSPOOL_RESUME unset", o.row.state);
	client_reads_all(sv.port, "127.0.0.1", &g);
	assert_fresh(&g, COUNT, "a client from the same address");
	cr_assert(find_row(o.peer, &row, text, sizeof(text)), "the orphan of "
	    "%s is gone; tcpspool ls:\n%s", o.peer, text);
	cr_expect(strcmp(row.state, "orphan") == 0 &&
	    row.records == o.row.records && row.raw == o.row.raw, "the orphan "
	    "of %s changed: it was %s with %lld records (%lld bytes), it is "
	    "%s with %lld records (%lld bytes)", o.peer, o.row.state,
	    o.row.records, o.row.raw, row.state, row.records, row.raw);
	server_finish(&sv);
}

Test(resume, af_unix_never_resumes)
{
	static char text[65536];
	char path[PATH_MAX];
	struct ls_row row, now;
	struct server sv;
	struct got g;
	int fd;

	/* server_a on an AF_UNIX socket; the client reads 2000 messages and
	 * closes with unread data: server_a's side gets EPIPE. */
	h_fmt(path, sizeof(path), "%s/server_a.sock", h_dir());
	server_start(&sv, resume_env, 2, COUNT, 1, path);
	fd = unix_client(path);
	server_line(&sv, "done", 0);
	got_init(&g);
	read_exactly(fd, &g, 2000 * MSG);
	close(fd);
	wait_state(NULL, "orphan", true, &row);
	cr_expect_str_eq(row.state, "orphan", "an AF_UNIX stream whose peer "
	    "went away is listed as \"%s\" (peer \"%s\"): AF_UNIX never "
	    "resumes", row.state, row.peer);
	fd = unix_client(path);
	got_init(&g);
	read_to_end(fd, &g);
	close(fd);
	assert_fresh(&g, COUNT, "a new AF_UNIX client");
	cr_expect(find_stream(row.stream, &now, text, sizeof(text)) &&
	    strcmp(now.state, "orphan") == 0 && now.records == row.records,
	    "the AF_UNIX orphan %s should stay as it was (%lld records); "
	    "tcpspool ls:\n%s", row.stream, row.records, text);
	server_finish(&sv);
}

/* A server that writes through two numbers of its connection (dup2,
 * F_DUPFD_CLOEXEC) resumes as one that does not: both numbers find the
 * one stream, whose adopted records go first. */
struct dup_case { char how[8]; };

static struct dup_case dup_hows[] = { { "dup2" }, { "fcntl" } };

ParameterizedTestParameters(resume, a_connection_written_through_a_duplicate_resumes)
{
	return cr_make_param_array(struct dup_case, dup_hows,
	    sizeof(dup_hows) / sizeof(dup_hows[0]));
}

ParameterizedTest(struct dup_case *c, resume,
    a_connection_written_through_a_duplicate_resumes)
{
	char opt[32];
	struct server sv;
	struct old o;
	struct got g;

	h_fmt(opt, sizeof(opt), "--dup-with=%s", c->how);
	server_extra = opt;
	server_start(&sv, resume_env, 2, COUNT, 1, NULL);
	old_connect(&sv, &o, 0);
	old_read_and_reset(&o, 2000, "waiting");
	client_reads_all(sv.port, "127.0.0.1", &g);
	assert_resumed(&g, &o, 1, COUNT, COUNT);
	server_finish(&sv);
}

/* Resume armed and nothing waiting: every write path, and a duplicate
 * fd, spool and deliver as without it (the first write of each
 * connection only looks at the registry). */
/* Criterion copies a case's bytes into the test's process: no pointers. */
struct armed_case { char a[24], b[24]; };

static struct armed_case armed_paths[] = {
	{ "--path=mix", "" }, { "--path=sendmmsg", "" },
	{ "--path=writev", "" }, { "--path=mix-sendfile", "" },
	{ "--path=sendmsg", "--dup-with=dup" },
	{ "--path=send", "--nonblock=dontwait" },
};

ParameterizedTestParameters(resume, armed_with_nothing_waiting_changes_nothing)
{
	return cr_make_param_array(struct armed_case, armed_paths,
	    sizeof(armed_paths) / sizeof(armed_paths[0]));
}

ParameterizedTest(struct armed_case *c, resume,
    armed_with_nothing_waiting_changes_nothing)
{
	struct h_spawn o = { .preload = true, .env = resume_env };
	struct h_story st;

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=40000", c->a,
	        c->b[0] ? c->b : "--size=28", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=1000",
	        "--pause-us=20", "--count=40000", NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, 40000LL * MSG);
}

/* A library's fork handlers (run inside the library's own) that write on
 * a new connection: their first write must not wait for a lock the
 * library holds across fork (it did, with resume on: fork never
 * returned). The bound is a hang guard. */
Test(resume, a_fork_handler_writing_on_a_new_connection_does_not_hang)
{
	struct h_spawn o = { .preload = true, .env = resume_env };
	struct h_argv a = { .n = 0 };
	char prog[PATH_MAX];
	struct h_proc *p;

	h_fixture(prog, sizeof(prog), "atfork_host");
	p = h_spawn("atfork_host", prog, &a, &o);
	cr_assert(h_wait(p, PHASE_MS), "fork under the library never "
	    "returned: %s", h_describe(p));
	cr_expect_eq(h_exit_code(p), 0, "%s", h_describe(p));
}

/*
 * A claim caught in the middle. forksafe_host's first write on a
 * connection to the test (from 127.0.0.1, for which a stream waits)
 * claims the waiting stream; the program pauses the claim while it holds
 * the stream dir's lock (flock), either as it reads the stream's status
 * (pause "read", inside the claim) or as it checks its connection before
 * adopting (pause "getpeername", between the claim and the stream's
 * registration), and then forks, or leaves with siglongjmp from a signal
 * handler. What the test's connection must get: the waiting stream's
 * remainder, then the program's messages 1..FORKSAFE_COUNT, then EOF.
 */
#define FORKSAFE_COUNT	100

struct pause_case { char mode[16], pause[16]; };

static struct pause_case pause_cases[] = {
	{ "claim-fork", "read" }, { "claim-fork", "getpeername" },
	{ "claim-longjmp", "read" }, { "claim-longjmp", "getpeername" },
};

/* A listener on 127.0.0.1 (kernel's port). */
static int
tcp_listener(unsigned short *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(l, 0, "socket: %s", strerror(errno));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(l, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    listen(l, 4) == 0 && getsockname(l, (struct sockaddr *)&sin,
	    &len) == 0, "listen on 127.0.0.1: %s", strerror(errno));
	*port = ntohs(sin.sin_port);
	return l;
}

/* Accepts one connection within PHASE_MS. */
static int
accept_within(int l, struct h_proc *p)
{
	struct pollfd pfd = { .fd = l, .events = POLLIN };
	int c;

	cr_assert_eq(poll(&pfd, 1, PHASE_MS), 1, "forksafe_host did not "
	    "connect: %s", h_describe(p));
	c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(c, 0, "accept: %s", strerror(errno));
	return c;
}

/* How many of pid's fds are open on path (a dir), removed or not; -1
 * if pid is gone. */
static int
fds_open_on(pid_t pid, const char *path)
{
	char dir[64], link[PATH_MAX + 64], target[PATH_MAX];
	struct dirent *de;
	int n = 0;
	ssize_t len;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
		if ((len = readlink(link, target, sizeof(target) - 1)) < 0)
			continue;
		target[len] = '\0';
		/* " (deleted)" once the stream is delivered and removed. */
		if (strncmp(target, path, strlen(path)) == 0 &&
		    (target[strlen(path)] == '\0' ||
		    target[strlen(path)] == ' '))
			n++;
	}
	closedir(d);
	return n;
}

/* Whether a lock of dfd's dir can be had within ms (bounded retry on
 * the condition): another holder (a process, or a child's copy of its
 * fd) keeps it. */
static bool
lock_within(int dfd, int ms)
{
	long long deadline = now_ms() + ms;

	while (flock(dfd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK || now_ms() > deadline)
			return false;
		poll(NULL, 0, 20);
	}
	flock(dfd, LOCK_UN);
	return true;
}

ParameterizedTestParameters(resume, a_claim_caught_by_fork_or_siglongjmp)
{
	return cr_make_param_array(struct pause_case, pause_cases,
	    sizeof(pause_cases) / sizeof(pause_cases[0]));
}

/*
 * claim-fork: a fork child (another thread forked while the claim held
 * the lock) that lives on must hold no copy of the claim's lock fds, or
 * the stream stays locked after the parent let go of it. claim-longjmp:
 * the handler's siglongjmp must not leave the fd's claim in place (the
 * program's next write on the fd waited for it forever), nor the claim
 * half done: the program's writes go behind the adopted records.
 */
ParameterizedTest(struct pause_case *c, resume,
    a_claim_caught_by_fork_or_siglongjmp)
{
	struct h_spawn so = { .preload = true, .env = resume_env };
	struct h_argv a = { .n = 0 };
	char prog[PATH_MAX], path[PATH_MAX];
	bool forking = strcmp(c->mode, "claim-fork") == 0;
	struct h_proc *p;
	struct server sv;
	unsigned short port;
	const char *line;
	struct old o;
	struct got g;
	pid_t child = -1;
	int l, fd, dfd;

	server_start(&sv, resume_env, 1, COUNT, 1, NULL);
	old_connect(&sv, &o, 0);
	old_read_and_reset(&o, 2000, "waiting");
	h_fmt(path, sizeof(path), "%s/%s", h_spool_dir(), o.row.stream);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0, "the waiting stream's dir %s: %s", path,
	    strerror(errno));
	l = tcp_listener(&port);
	h_fixture(prog, sizeof(prog), "forksafe_host");
	h_args(&a, c->mode, NULL);
	h_arg(&a, "%u", port);
	h_arg(&a, "%s", c->pause);
	p = h_spawn("forksafe_host", prog, &a, &so);
	fd = accept_within(l, p);
	if (forking) {
		line = h_status_line(p, "child ", 0, PHASE_MS);
		cr_assert(line != NULL, "no fork while the claim held the "
		    "lock; status:\n%s\n%s", h_status_text(p), h_describe(p));
		child = (pid_t)h_field(line, "pid");
		cr_assert_gt(child, 0, "%s", line);
	}
	line = h_status_line(p, "wrote ", 0, PHASE_MS);
	cr_assert(line != NULL, "forksafe_host %s (pause at %s) never got "
	    "its writes through: a claim left behind blocks its fd; "
	    "status:\n%s\n%s", c->mode, c->pause, h_status_text(p),
	    h_describe(p));
	cr_assert_eq(h_field(line, "paused"), 1, "the claim was not caught "
	    "holding the lock (nothing claimed?): %s\n%s", line,
	    h_describe(p));
	if (forking) {
		/* The child's fds are final: it only waits to be killed. */
		cr_expect_eq(fds_open_on(child, path), 0, "the fork child "
		    "(pid %d) holds %d fds on the claimed stream's dir %s: the "
		    "parent's claim lock, shared", (int)child,
		    fds_open_on(child, path), path);
		/* It also holds a copy of the connection, as it would
		 * without the library: the EOF comes once it is gone. (If
		 * the stream has drained by the program's close, that close
		 * is the kernel's alone, and sends no FIN while a copy
		 * lives.) */
		cr_assert_eq(kill(child, SIGKILL), 0, "kill %d: %s",
		    (int)child, strerror(errno));
	}
	got_init(&g);
	read_to_end(fd, &g);
	close(fd);
	close(l);
	assert_resumed(&g, &o, 1, COUNT, FORKSAFE_COUNT);
	cr_assert(h_wait(p, PHASE_MS), "forksafe_host did not end: %s",
	    h_describe(p));
	cr_expect_eq(h_exit_code(p), 0, "%s", h_describe(p));
	/* Delivered, the stream is let go by the process that adopted it:
	 * nobody (the fork child included) holds its lock any more. */
	cr_expect(lock_within(dfd, STATE_MS), "the claimed stream %s is still "
	    "locked %d ms after the process that adopted it ended%s",
	    o.row.stream, STATE_MS, forking ? " (the fork child's copy of "
	    "the claim's lock fd)" : "");
	close(dfd);
	server_finish(&sv);
}
