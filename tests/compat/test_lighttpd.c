/*
 * lighttpd as packaged (Debian's lighttpd), one process in the foreground
 * (`-D`), static files by sendfile(), mod_cgi for a CGI that writes its
 * body through a pipe (lighttpd forks and execs it per request).
 *
 * What lighttpd does with a slow client, found by tracing it: it writes
 * only when epoll says EPOLLOUT, at most 256 KiB per event (sendfile, or
 * writev of its buffers). With loopback's usual MSS the kernel gives the
 * socket a 4 MiB send buffer and says EPOLLOUT only while a third of it is
 * free, so every write fits: lighttpd never meets EAGAIN nor a short count,
 * and the library has nothing to do. The clients here set a small MSS
 * (`--mss 1000`) with a small receive buffer: the kernel sizes the send
 * buffer from the MSS (about 290 KiB), a 256 KiB write at EPOLLOUT is then
 * short, and the library spools its tail; once a stream spools, every
 * write of lighttpd goes behind it. How much spools depends on how fast
 * the client reads (a client that reads fast after a full window lets
 * lighttpd write into the spool faster than the replay empties it): each
 * report line says what was seen.
 *
 * Every client is gated: it reads nothing until lighttpd has filled the
 * send queues of the connections (seen in /proc/net/tcp), then reads as
 * fast as it can. Scenarios: several concurrent clients of static files;
 * three pipelined requests on one keep-alive connection, the middle one a
 * CGI; a graceful restart (SIGUSR1) in the middle of a transfer, then a
 * new connection; a client killed in the middle of a transfer (the spool
 * it leaves is removed at TCPSPOOL_ORPHAN_TTL), then a new one; SIGTERM in
 * the middle of a transfer (lighttpd closes at once: the client gets a
 * prefix of the file, then EOF, and lighttpd exits 1 in bounded time).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scenario.h"

#define FILE_BYTES	(16LL << 20)
#define BIG_BYTES	(48LL << 20)
#define MIDWAY_BYTES	(8LL << 20)	/* the client's progress at the event */
#define FULL_QUEUE	(128LL << 10)	/* per connection: lighttpd waits */
#define START_MS	20000
#define FULL_MS		30000
#define CLIENT_MS	60000
#define STOP_MS		20000

TestSuite(lighttpd, .init = h_setup, .fini = h_teardown, .timeout = 150);

struct lt {
	struct scn s;
	unsigned short port;
	char conf[PATH_MAX];
	char file[4][PATH_MAX];		/* www/f0.bin ... */
};

static const char *
lighttpd_version(void)
{
	static char out[64];
	const char *v = scn_version(compat_which("lighttpd"), "-v");

	/* "lighttpd/1.4.69 (ssl) - a light and fast webserver" */
	snprintf(out, sizeof(out), "%.*s", (int)strcspn(v, " "), v);
	return out;
}

static void
text_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "we");

	cr_assert(f != NULL, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert(fclose(f) == 0);
	cr_assert(chmod(path, mode) == 0);
}

/* www/ with nfiles files of size bytes, the CGI, tmp/ and the config. */
static void
lt_files(struct lt *l, int nfiles, long long size)
{
	char path[PATH_MAX], cgi[PATH_MAX * 2];
	const char *d = h_dir();

	h_fmt(path, sizeof(path), "%s/www", d);
	cr_assert(mkdir(path, 0755) == 0);
	h_fmt(path, sizeof(path), "%s/tmp", d);
	cr_assert(mkdir(path, 0700) == 0);
	for (int i = 0; i < nfiles; i++) {
		h_fmt(l->file[i], sizeof(l->file[i]), "%s/www/f%d.bin", d, i);
		compat_write_stream_file(l->file[i], size, 81 + (uint64_t)i);
	}
	/* The CGI's body is f1.bin, through its stdout (a pipe). */
	h_fmt(path, sizeof(path), "%s/www/body.cgi", d);
	snprintf(cgi, sizeof(cgi), "#!/bin/sh\n"
	    "printf 'Content-Type: application/octet-stream\\r\\n"
	    "Content-Length: %lld\\r\\n\\r\\n'\n"
	    "exec cat '%s/www/f1.bin'\n", size, d);
	text_file(path, cgi, 0755);
	h_fmt(l->conf, sizeof(l->conf), "%s/lighttpd.conf", d);
	h_fmt(l->s.log, sizeof(l->s.log), "%s/lighttpd-error.log", d);
}

static void
lt_config(struct lt *l)
{
	compat_lighttpd_config(l->conf, l->port,
	    "server.modules += ( \"mod_cgi\" )\n"
	    "cgi.assign = ( \".cgi\" => \"\" )\n"
	    "server.feature-flags += ( "
	    "\"server.graceful-shutdown-timeout\" => 60 )\n");
}

static void
lt_start(struct lt *l, const char *const *env)
{
	static const char *const asan[] = {
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	const char *all[16];
	struct h_spawn o = { .preload = l->s.preload, .env = all };
	int n = 0;

	for (const char *const *e = asan; *e != NULL; e++)
		all[n++] = *e;
	for (const char *const *e = env; e != NULL && *e != NULL; e++)
		all[n++] = *e;
	all[n] = NULL;
	for (int attempt = 0;; attempt++) {
		struct h_argv a = { .n = 0 };

		if (attempt == 5)
			scn_fail(&l->s, "lighttpd lost its port five times");
		l->port = compat_free_port();
		lt_config(l);
		h_args(&a, "-D", "-f", l->conf, NULL);
		l->s.server = h_spawn("lighttpd", compat_which("lighttpd"),
		    &a, &o);
		if (scn_wait_listening(&l->s, l->port, START_MS))
			return;
		if (compat_lines_with(l->s.log, "in use") == 0)
			scn_fail(&l->s, "lighttpd exited at start");
	}
}

/* A request file named name in the test's dir, holding text. */
static void
request(char *path, const char *name, const char *text)
{
	h_fmt(path, PATH_MAX, "%s/%s", h_dir(), name);
	text_file(path, text, 0644);
}

/* A gated client with a small MSS and receive buffer. */
static int
lt_client(struct lt *l, const char *label, const char *req, bool body)
{
	const char *args[] = { "--send", req, "--mss", "1000", "--rcvbuf",
		"16384", body ? "--body" : NULL, NULL };

	return scn_client(&l->s, label, l->port, true, args);
}

/*
 * The same with --body, reading at 8 MiB/s once the gate opens: for a
 * test that acts when the client is MIDWAY_BYTES into a BIG_BYTES
 * transfer, which then cannot have ended before the test looked (a
 * client reading as fast as it could once had all 48 MiB within 196 ms).
 */
static int
lt_client_midway(struct lt *l, const char *label, const char *req)
{
	const char *args[] = { "--send", req, "--mss", "1000", "--rcvbuf",
		"16384", "--body", "--rate", "8388608", NULL };

	return scn_client(&l->s, label, l->port, true, args);
}

/* Waits until lighttpd has filled the send queues of n connections
 * (it waits for EPOLLOUT), then lets the clients read. */
static void
open_gate_when_full(struct lt *l, int n)
{
	long long deadline = compat_now_ms() + FULL_MS;

	while (scn_send_queue(l->port) < n * FULL_QUEUE) {
		scn_look(&l->s);
		if (h_wait(l->s.server, COMPAT_POLL_MS))
			scn_fail(&l->s, "lighttpd exited before its clients "
			    "read");
		if (compat_now_ms() > deadline)
			scn_fail(&l->s, "the send queues of %d connections did "
			    "not fill within %d ms (%lld bytes queued)", n,
			    FULL_MS, scn_send_queue(l->port));
	}
	scn_look(&l->s);
	h_gate_open(&l->s.gate);
}

/* Waits until client i has received at least bytes. */
static void
wait_received(struct lt *l, int i, long long bytes)
{
	long long deadline = compat_now_ms() + CLIENT_MS;

	while (compat_file_size(l->s.client[i].out) < bytes) {
		scn_look(&l->s);
		if (h_wait(l->s.client[i].proc, COMPAT_POLL_MS))
			scn_fail(&l->s, "%s ended before %lld bytes",
			    h_label(l->s.client[i].proc), bytes);
		if (compat_now_ms() > deadline)
			scn_fail(&l->s, "%s did not receive %lld bytes within "
			    "%d ms", h_label(l->s.client[i].proc), bytes,
			    CLIENT_MS);
	}
}

/* lighttpd stops on SIGTERM with exit code want (0 when idle, 1 with a
 * connection open, with or without the library), nothing on stdout. */
static void
stop(struct lt *l, int want)
{
	int code = scn_stop(&l->s, l->s.server, SIGTERM, STOP_MS);

	cr_expect_eq(code, want, "%s: on SIGTERM: %s", l->s.what,
	    h_describe(l->s.server));
	cr_expect_eq(h_stdout_size(l->s.server), 0,
	    "lighttpd wrote on stdout");
}

static void
concurrent_static(bool preload)
{
	char req[PATH_MAX], text[64], name[32];
	struct lt l;
	int n = 3;

	scn_require("lighttpd", "lighttpd");
	scn_init(&l.s, preload, "%s, %d concurrent gated clients (MSS 1000), "
	    "a static 16 MiB file each (sendfile)", lighttpd_version(), n);
	lt_files(&l, n, FILE_BYTES);
	lt_start(&l, NULL);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "get%d.req", i);
		snprintf(text, sizeof(text), "GET /f%d.bin HTTP/1.0\r\n\r\n",
		    i);
		request(req, name, text);
		snprintf(name, sizeof(name), "client%d", i);
		lt_client(&l, name, req, true);
	}
	open_gate_when_full(&l, n);
	for (int i = 0; i < n; i++) {
		scn_wait_client(&l.s, i, CLIENT_MS, false);
		scn_expect_delivered(&l.s, i, l.file[i]);
		scn_expect_ok_head(&l.s, i);
	}
	stop(&l, 0);
	scn_finish(&l.s, "%d x %lld bytes intact, then FIN", n, FILE_BYTES);
}

Test(lighttpd, baseline_without_library_concurrent_static_files)
{
	concurrent_static(false);
}

Test(lighttpd, concurrent_static_files_arrive_whole)
{
	concurrent_static(true);
}

static void
pipelined_with_cgi(bool preload)
{
	char req[PATH_MAX];
	struct lt l;
	int c;

	scn_require("lighttpd", "lighttpd");
	scn_init(&l.s, preload, "%s, three 16 MiB responses pipelined on one "
	    "keep-alive connection (file, CGI through a pipe, file), gated "
	    "client (MSS 1000)", lighttpd_version());
	lt_files(&l, 3, FILE_BYTES);
	request(req, "pipelined.req",
	    "GET /f0.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"
	    "GET /body.cgi HTTP/1.1\r\nHost: localhost\r\n\r\n"
	    "GET /f2.bin HTTP/1.1\r\nHost: localhost\r\n"
	    "Connection: close\r\n\r\n");
	lt_start(&l, NULL);
	c = lt_client(&l, "client", req, false);
	open_gate_when_full(&l, 1);
	scn_wait_client(&l.s, c, CLIENT_MS, false);
	/* The CGI's body is f1.bin. */
	scn_expect_responses(&l.s, c, (const char *const[]){ l.file[0],
	    l.file[1], l.file[2] }, 3);
	stop(&l, 0);
	scn_finish(&l.s, "3 x %lld bytes intact and in order on one "
	    "connection, then FIN", FILE_BYTES);
}

Test(lighttpd, baseline_without_library_pipelined_keepalive_with_cgi)
{
	pipelined_with_cgi(false);
}

Test(lighttpd, pipelined_keepalive_with_cgi_arrives_whole_in_order)
{
	pipelined_with_cgi(true);
}

/*
 * SIGUSR1: lighttpd's graceful restart. It stops listening, finishes the
 * connections it has (the client in the middle of its 48 MiB must get
 * them all), restarts in the same process, listens again ("server
 * started" a second time in its log); a new client gets the file. By
 * default lighttpd aborts what is still in progress about 8 s after the
 * signal, with or without the library (a 4 MiB/s client got 40 MB of 48):
 * the config gives it 60 s, so that a loaded machine changes nothing.
 */
static void
graceful_restart(bool preload)
{
	char req[PATH_MAX];
	long long deadline;
	struct lt l;
	int c;

	scn_require("lighttpd", "lighttpd");
	scn_init(&l.s, preload, "%s, graceful restart (SIGUSR1) in the middle "
	    "of a 48 MiB transfer, then a new connection",
	    lighttpd_version());
	lt_files(&l, 1, BIG_BYTES);
	request(req, "get.req", "GET /f0.bin HTTP/1.0\r\n\r\n");
	lt_start(&l, NULL);
	c = lt_client_midway(&l, "before", req);
	open_gate_when_full(&l, 1);
	wait_received(&l, c, MIDWAY_BYTES);
	kill(h_pid(l.s.server), SIGUSR1);
	scn_wait_client(&l.s, c, CLIENT_MS, false);
	scn_expect_delivered(&l.s, c, l.file[0]);
	deadline = compat_now_ms() + START_MS;
	while (compat_lines_with(l.s.log, "server started") < 2) {
		if (h_wait(l.s.server, COMPAT_POLL_MS))
			scn_fail(&l.s, "lighttpd exited on SIGUSR1");
		if (compat_now_ms() > deadline)
			scn_fail(&l.s, "lighttpd did not restart within %d ms",
			    START_MS);
	}
	if (!scn_wait_listening(&l.s, l.port, START_MS))
		scn_fail(&l.s, "lighttpd exited after its restart");
	c = scn_client(&l.s, "after", l.port, false,
	    (const char *const[]){ "--send", req, "--body", NULL });
	scn_wait_client(&l.s, c, CLIENT_MS, false);
	scn_expect_delivered(&l.s, c, l.file[0]);
	stop(&l, 0);
	scn_finish(&l.s, "the transfer in progress and the one after the "
	    "restart: %lld bytes each intact, then FIN", BIG_BYTES);
}

Test(lighttpd, graceful_restart_midway_loses_nothing)
{
	graceful_restart(true);
}

/*
 * The client is killed (SIGKILL, with unread bytes: its kernel resets the
 * connection) in the middle of its 48 MiB. lighttpd must go on: a new
 * client gets the whole file; what the library spooled for the dead one
 * is an orphan, removed at TCPSPOOL_ORPHAN_TTL (1 s here) by the living
 * process, so the spool dir ends empty. (Stopped before that TTL, lighttpd
 * exits 0 and leaves the orphan on disk, `tcpspool ls` saying "orphan
 * (peer reset, expired)": the test waits for the TTL first.)
 */
static void
client_killed(bool preload)
{
	static const char *const env[] = { "TCPSPOOL_ORPHAN_TTL=1s", NULL };
	char req[PATH_MAX];
	struct lt l;
	int c;

	scn_require("lighttpd", "lighttpd");
	scn_init(&l.s, preload, "%s, a client killed in the middle of 48 MiB, "
	    "then a new client", lighttpd_version());
	lt_files(&l, 1, BIG_BYTES);
	request(req, "get.req", "GET /f0.bin HTTP/1.0\r\n\r\n");
	lt_start(&l, env);
	c = lt_client_midway(&l, "killed", req);
	open_gate_when_full(&l, 1);
	wait_received(&l, c, MIDWAY_BYTES);
	h_kill_group(l.s.client[c].proc, SIGKILL);
	scn_wait_client(&l.s, c, CLIENT_MS, false);
	c = scn_client(&l.s, "after", l.port, false,
	    (const char *const[]){ "--send", req, "--body", NULL });
	scn_wait_client(&l.s, c, CLIENT_MS, false);
	scn_expect_delivered(&l.s, c, l.file[0]);
	/* While lighttpd lives: an orphan outlives a clean exit. */
	if (preload && !h_spool_wait_empty(10000))
		scn_fail(&l.s, "the orphan of the killed client was not "
		    "removed at its TTL");
	stop(&l, 0);
	scn_finish(&l.s, "lighttpd served the next client %lld bytes intact",
	    BIG_BYTES);
}

Test(lighttpd, client_killed_midway_server_goes_on_spool_cleaned)
{
	client_killed(true);
}

/* got is a prefix of want (got may be empty); else a sentence into why. */
static bool
is_prefix(const char *got, const char *want, char *why, size_t len)
{
	static char a[65536], b[65536];
	FILE *g = fopen(got, "re"), *w = fopen(want, "re");
	long long off = 0;
	size_t r;
	bool ok = g != NULL && w != NULL;

	snprintf(why, len, "cannot open what the client got or the file");
	while (ok && (r = fread(a, 1, sizeof(a), g)) > 0) {
		if (fread(b, 1, r, w) != r) {
			snprintf(why, len, "more bytes than the file's %lld",
			    compat_file_size(want));
			ok = false;
		} else if (memcmp(a, b, r) != 0) {
			for (size_t i = 0; i < r; i++)
				if (a[i] != b[i]) {
					snprintf(why, len, "byte %lld differs "
					    "from the file's", off +
					    (long long)i);
					break;
				}
			ok = false;
		}
		off += (long long)r;
	}
	if (g != NULL)
		fclose(g);
	if (w != NULL)
		fclose(w);
	return ok;
}

/*
 * SIGTERM in the middle of a transfer: lighttpd stops at once and closes
 * the connection. Without the library the client gets what the kernel
 * held; under it, also what the library held for that connection
 * (delivered by the process end, bounded by TCPSPOOL_LINGER). Either way a
 * prefix of the file, in order, then EOF, and lighttpd exits in bounded
 * time, with 1 (its code when stopped with a connection open).
 */
static void
sigterm_midway(bool preload)
{
	char req[PATH_MAX], why[256];
	long long start, stopped_ms;
	struct lt l;
	int c;

	scn_require("lighttpd", "lighttpd");
	scn_init(&l.s, preload, "%s, SIGTERM in the middle of a 48 MiB "
	    "transfer", lighttpd_version());
	lt_files(&l, 1, BIG_BYTES);
	request(req, "get.req", "GET /f0.bin HTTP/1.0\r\n\r\n");
	lt_start(&l, NULL);
	c = lt_client_midway(&l, "client", req);
	open_gate_when_full(&l, 1);
	wait_received(&l, c, MIDWAY_BYTES);
	start = compat_now_ms();
	stop(&l, 1);
	stopped_ms = compat_now_ms() - start;
	scn_wait_client(&l.s, c, CLIENT_MS, true);
	if (!is_prefix(l.s.client[c].out, l.file[0], why, sizeof(why)))
		scn_fail(&l.s, "what the client got is not a prefix of the "
		    "file: %s", why);
	if (strcmp(l.s.client[c].r.end, "EOF") != 0)
		scn_fail(&l.s, "the connection ended with %s, not FIN",
		    l.s.client[c].r.end);
	scn_finish(&l.s, "lighttpd exited 1 %lld ms after SIGTERM; the client "
	    "got the first %lld bytes of %lld, in order, then FIN",
	    stopped_ms, l.s.client[c].r.bytes, BIG_BYTES);
}

Test(lighttpd, baseline_without_library_sigterm_midway)
{
	sigterm_midway(false);
}

Test(lighttpd, sigterm_midway_exits_in_bounded_time_prefix_in_order)
{
	sigterm_midway(true);
}
