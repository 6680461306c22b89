/*
 * scenario.c — see scenario.h. Like compat.c, every wait is a bounded
 * retry on a condition, and nothing writes to stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "scenario.h"

void
scn_require(const char *program, const char *package)
{
	if (compat_which(program) == NULL)
		cr_skip("%s is not installed (apt-get install %s; "
		    "scripts/setup.sh installs it)", program, package);
}

void
scn_init(struct scn *s, bool preload, const char *fmt, ...)
{
	va_list ap;
	int n;

	memset(s, 0, sizeof(*s));
	s->preload = preload;
	s->gate.rfd = s->gate.wfd = -1;
	va_start(ap, fmt);
	n = vsnprintf(s->what, sizeof(s->what), fmt, ap);
	va_end(ap);
	snprintf(s->what + (n > 0 ? n : 0), sizeof(s->what) - (size_t)n,
	    ", %s", preload ? "under the library" : "without the library");
}

bool
scn_listening(unsigned short port)
{
	static const char *const tables[] = { "/proc/net/tcp",
		"/proc/net/tcp6" };
	char line[512], want[32];
	bool found = false;

	/* "  0: 0100007F:1F90 00000000:0000 0A ...": 0A is LISTEN. */
	snprintf(want, sizeof(want), ":%04X 00000000:0000 0A", port);
	for (int i = 0; i < 2 && !found; i++) {
		FILE *f = fopen(tables[i], "re");

		if (f == NULL)
			continue;
		while (!found && fgets(line, sizeof(line), f) != NULL)
			found = strstr(line, want) != NULL;
		fclose(f);
	}
	return found;
}

long long
scn_send_queue(unsigned short port)
{
	long long total = -1;
	char line[512];
	FILE *f = fopen("/proc/net/tcp", "re");

	/* "  1: 0100007F:1F90 0100007F:B1A4 01 0029F2D1:00000000 ...": the
	 * local address:port, the remote one, the state (01: ESTABLISHED),
	 * then tx_queue:rx_queue, in hex. */
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned int lport, state;
		unsigned long long tx;

		if (sscanf(line, " %*s %*x:%x %*x:%*x %x %llx:", &lport,
		    &state, &tx) != 3 || lport != port || state != 0x01)
			continue;
		total = (total < 0 ? 0 : total) + (long long)tx;
	}
	fclose(f);
	return total;
}

bool
scn_wait_listening(struct scn *s, unsigned short port, int timeout_ms)
{
	long long deadline = compat_now_ms() + timeout_ms;

	while (!scn_listening(port)) {
		if (h_wait(s->server, COMPAT_POLL_MS))
			return false;
		if (compat_now_ms() > deadline)
			scn_fail(s, "port %u does not listen within %d ms",
			    port, timeout_ms);
	}
	return true;
}

int
scn_client(struct scn *s, const char *label, unsigned short port,
    bool gated, const char *const *args)
{
	struct h_spawn o = { .nfds = 0 };
	struct h_argv a = { .n = 0 };
	char prog[PATH_MAX];
	struct scn_client *c;

	H_ASSERT(s->nclients < SCN_MAX_CLIENTS);
	c = &s->client[s->nclients];
	h_fmt(prog, sizeof(prog), "%s/compat_client", COMPAT_FIXTURE_DIR);
	h_fmt(c->out, sizeof(c->out), "%s/%s.got", h_dir(), label);
	h_arg(&a, "--port=%u", port);
	h_args(&a, "--out", c->out, "--status-fd", "3", NULL);
	if (gated) {
		if (s->gate.rfd < 0)
			h_gate_init(&s->gate);
		h_args(&a, "--gate-fd", "4", NULL);
		o.fds[0].child = 4;
		o.fds[0].parent = s->gate.rfd;
		o.nfds = 1;
	}
	h_argv_list(&a, args);
	c->proc = h_spawn(label, prog, &a, &o);
	return s->nclients++;
}

void
scn_wait_ready(struct scn *s, int i, int timeout_ms)
{
	if (h_status_line(s->client[i].proc, "ready", 0, timeout_ms) == NULL)
		scn_fail(s, "%s was not ready within %d ms",
		    h_label(s->client[i].proc), timeout_ms);
}

void
scn_look(struct scn *s)
{
	long long bytes = compat_spool_bytes();
	int files = h_spool_files(NULL, 0);

	if (bytes > s->spool_max)
		s->spool_max = bytes;
	if (files > s->spool_files_max)
		s->spool_files_max = files;
}

static void
parse_result(struct scn_client *c)
{
	const char *line = h_status_line(c->proc, "bytes=", 0, 1000);
	const char *end;

	memset(&c->r, 0, sizeof(c->r));
	if (line == NULL)
		return;
	c->r.valid = true;
	c->r.bytes = h_field(line, "bytes");
	c->r.sent = h_field(line, "sent");
	c->r.ms = h_field(line, "ms");
	if ((end = strstr(line, "end=")) != NULL)
		snprintf(c->r.end, sizeof(c->r.end), "%.*s",
		    (int)strcspn(end + 4, " \n"), end + 4);
}

void
scn_wait_client(struct scn *s, int i, int timeout_ms, bool server_may_exit)
{
	long long deadline = compat_now_ms() + timeout_ms;
	struct scn_client *c = &s->client[i];

	while (!h_wait(c->proc, COMPAT_POLL_MS)) {
		scn_look(s);
		if (!server_may_exit && h_wait(s->server, 0))
			scn_fail(s, "the program exited while %s was being "
			    "served", h_label(c->proc));
		if (compat_now_ms() > deadline)
			scn_fail(s, "%s did not end within %d ms",
			    h_label(c->proc), timeout_ms);
	}
	scn_look(s);
	parse_result(c);
}

void
scn_expect_delivered(struct scn *s, int i, const char *want)
{
	struct scn_client *c = &s->client[i];
	char why[512];

	if (!compat_same_file(c->out, want, why, sizeof(why)))
		scn_fail(s, "%s: %s", h_label(c->proc), why);
	if (strcmp(c->r.end, "EOF") != 0)
		scn_fail(s, "%s received every byte, but its connection "
		    "ended with %s, not the server's FIN",
		    h_label(c->proc), c->r.valid ? c->r.end : "no result");
}

/* One response's reading: the received stream, the file its body must
 * be, and where the body stands. */
struct http_check {
	struct scn *s;
	FILE *got, *want;
	int k, n;
	long long body;
};

/* The next len bytes of the stream are the next len bytes of the file. */
static void
body_bytes(struct http_check *h, long long len)
{
	static char a[65536], b[65536];

	while (len > 0) {
		size_t k = (size_t)len < sizeof(a) ? (size_t)len : sizeof(a);
		size_t r = fread(a, 1, k, h->got);

		if (r != k)
			scn_fail(h->s, "response %d of %d: the stream ends "
			    "%lld bytes into its body", h->k + 1, h->n,
			    h->body + (long long)r);
		if (fread(b, 1, k, h->want) != k)
			scn_fail(h->s, "response %d of %d: its body is longer "
			    "than its file (%lld bytes or more)", h->k + 1,
			    h->n, h->body + (long long)k);
		if (memcmp(a, b, k) != 0)
			scn_fail(h->s, "response %d of %d: its body differs "
			    "from its file between bytes %lld and %lld",
			    h->k + 1, h->n, h->body, h->body + (long long)k);
		h->body += (long long)k;
		len -= (long long)k;
	}
}

/* A line of the stream ending in CRLF, without it, into out. */
static void
crlf_line(struct http_check *h, char *out, size_t len, const char *what)
{
	size_t n = 0;
	int ch;

	while ((ch = fgetc(h->got)) != EOF && n < len - 1) {
		out[n++] = (char)ch;
		if (n >= 2 && out[n - 2] == '\r' && out[n - 1] == '\n') {
			out[n - 2] = '\0';
			return;
		}
	}
	out[n] = '\0';
	scn_fail(h->s, "response %d of %d: %s: no CRLF after \"%.60s\"",
	    h->k + 1, h->n, what, out);
}

/* The chunks of a chunked body, up to the last chunk and its CRLF. */
static void
chunked_body(struct http_check *h)
{
	char line[128];
	long long size;

	do {
		crlf_line(h, line, sizeof(line), "chunk size");
		size = strtoll(line, NULL, 16);
		if (size < 0)
			scn_fail(h->s, "response %d of %d: chunk size %s",
			    h->k + 1, h->n, line);
		body_bytes(h, size);
		crlf_line(h, line, sizeof(line), "end of chunk");
		if (line[0] != '\0')
			scn_fail(h->s, "response %d of %d: bytes after a "
			    "chunk", h->k + 1, h->n);
	} while (size > 0);
}

void
scn_expect_ok_head(struct scn *s, int i)
{
	char head[PATH_MAX + 8];

	snprintf(head, sizeof(head), "%s.head", s->client[i].out);
	if (strstr(compat_tail(head, 20), " 200 OK") == NULL)
		scn_fail(s, "%s: response header: %s",
		    h_label(s->client[i].proc), compat_tail(head, 20));
}

void
scn_expect_responses(struct scn *s, int i, const char *const *want, int n)
{
	struct http_check h = { .s = s, .n = n };
	struct scn_client *c = &s->client[i];
	char head[4096];

	if ((h.got = fopen(c->out, "re")) == NULL)
		scn_fail(s, "%s: %s", c->out, strerror(errno));
	for (h.k = 0; h.k < n; h.k++) {
		size_t len = 0;
		const char *cl;

		/* The header, up to its blank line. */
		while (len < sizeof(head) - 1 && (len < 4 ||
		    memcmp(head + len - 4, "\r\n\r\n", 4) != 0)) {
			int ch = fgetc(h.got);

			if (ch == EOF)
				scn_fail(s, "response %d of %d: the stream "
				    "ends in its header", h.k + 1, n);
			head[len++] = (char)ch;
		}
		head[len] = '\0';
		if (strncmp(head, "HTTP/1.1 200 OK\r\n", 17) != 0)
			scn_fail(s, "response %d of %d: header %s", h.k + 1,
			    n, head);
		if ((h.want = fopen(want[h.k], "re")) == NULL)
			scn_fail(s, "%s: %s", want[h.k], strerror(errno));
		h.body = 0;
		if ((cl = strcasestr(head, "\r\nContent-Length:")) != NULL)
			body_bytes(&h, strtoll(cl + 17, NULL, 10));
		else if (strcasestr(head, "\r\nTransfer-Encoding: chunked"))
			chunked_body(&h);
		else
			scn_fail(s, "response %d of %d: neither a length nor "
			    "chunks: %s", h.k + 1, n, head);
		if (fgetc(h.want) != EOF)
			scn_fail(s, "response %d of %d: its body ends after "
			    "%lld bytes, before the end of its file",
			    h.k + 1, n, h.body);
		fclose(h.want);
	}
	if (fgetc(h.got) != EOF)
		scn_fail(s, "bytes after the %d responses", n);
	fclose(h.got);
	if (strcmp(c->r.end, "EOF") != 0)
		scn_fail(s, "%s received every response, but its connection "
		    "ended with %s, not the server's FIN", h_label(c->proc),
		    c->r.valid ? c->r.end : "no result");
}

/* The program's log: its own file, else its stderr. */
static const char *
program_log(struct scn *s)
{
	if (s->log[0] != '\0')
		return compat_tail(s->log, 25);
	return s->server != NULL ? h_stderr(s->server) : "-";
}

void
scn_fail(struct scn *s, const char *fmt, ...)
{
	static char why[1024], clients[2048], ls[4096], files[1024];
	char backend[16384] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	clients[0] = '\0';
	for (int i = 0; i < s->nclients; i++) {
		struct scn_client *c = &s->client[i];

		snprintf(clients + strlen(clients), sizeof(clients) -
		    strlen(clients), "  %s: %lld bytes in %s; %s\n",
		    h_label(c->proc), compat_file_size(c->out),
		    strrchr(c->out, '/') + 1, h_describe(c->proc));
	}
	h_spool_files(files, sizeof(files));
	h_cli(ls, sizeof(ls), "ls", "--dir", h_spool_dir(), NULL);
	if (s->backend != NULL)
		snprintf(backend, sizeof(backend), "\nbackend processes: %s",
		    compat_group_report(h_pid(s->backend)));
	cr_assert_fail("%s: %s\nclients:\n%sprogram: %s\nits log ends "
	    "with:\n%s\nspool dir: %lld bytes now, up to %lld seen, files: "
	    "%s\ntcpspool ls:\n%s\nprogram processes: %s%s", s->what, why,
	    clients, s->server != NULL ? h_describe(s->server) : "-",
	    program_log(s), compat_spool_bytes(), s->spool_max, files, ls,
	    s->server != NULL ? compat_group_report(h_pid(s->server)) : "-",
	    backend);
	abort();	/* cr_assert_fail does not return */
}

int
scn_stop(struct scn *s, struct h_proc *p, int sig, int timeout_ms)
{
	if (!h_wait(p, 0)) {
		kill(h_pid(p), sig);
		if (!h_wait(p, timeout_ms))
			scn_fail(s, "%s did not stop within %d ms of signal "
			    "%d%s", h_label(p), timeout_ms, sig,
			    s->preload && compat_spool_bytes() == 0 ?
			    " (the spool dir is empty: the process end has "
			    "nothing left to deliver)" : "");
	}
	return h_exit_code(p);
}

/*
 * The next sweep deletes a `.del` at once (FORMAT.md §1): tcpspool
 * daemon's first sweep of the spool dir, run here, must leave it empty
 * once the daemon has gone with its socket.
 */
static bool
swept_clean(void)
{
	struct h_spawn o = { .preload = false };
	struct h_argv a = { 0 };
	struct h_proc *d;
	bool swept;

	h_args(&a, "daemon", "--dir", h_spool_dir(), NULL);
	d = h_spawn("sweeper", getenv("TCPSPOOL_TEST_CLI"), &a, &o);
	swept = h_said(d, "first sweep of", 10000);
	kill(h_pid(d), SIGTERM);
	return h_wait(d, 10000) && swept && h_spool_wait_empty(10000);
}

void
scn_finish(struct scn *s, const char *fmt, ...)
{
	char line[768], files[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (s->preload && !s->peer_gone && !h_spool_wait_empty(10000)) {
		h_spool_files(files, sizeof(files));
		/* A process killed by a signal (a worker SIGTERMed by its
		 * master) runs none of our code: a removal it had begun
		 * stays `.del`, which is transient by contract (FORMAT.md
		 * §1) and the next sweep deletes: one is run to see it.
		 * Anything else is a spool left behind. */
		if (h_spool_only_removals() && swept_clean())
			compat_report("%s: a stream removal cut short by the "
			    "process's end, deleted by the next sweep: %s",
			    s->what, files);
		else
			scn_fail(s, "the spool dir is not empty after "
			    "delivery: %s", files);
	}
	compat_report("%s: %s; the spool dir held up to %lld bytes in %d "
	    "files%s", s->what, line, s->spool_max, s->spool_files_max,
	    s->spool_max > 0 ? " (the library spooled)" : s->preload ?
	    " (nothing spooled: this run only shows that the library stays "
	    "out of the way)" : "");
}

const char *
scn_version(const char *prog, const char *arg)
{
	static char version[4][128];
	static int slot;
	char *out = version[slot++ % 4], path[PATH_MAX], *nl;
	struct h_argv a = { .n = 0 };
	struct h_proc *p;
	int fd;
	ssize_t r = 0;

	h_args(&a, arg, NULL);
	p = h_spawn("version", prog, &a, NULL);
	if (!h_wait(p, 10000))
		return "(version unknown)";
	h_fmt(path, sizeof(path), "%s/version.out", h_dir());
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		r = read(fd, out, sizeof(version[0]) - 1);
		close(fd);
	}
	out[r > 0 ? r : 0] = '\0';
	if (r <= 0)
		snprintf(out, sizeof(version[0]), "%.127s", h_stderr(p));
	if ((nl = strchr(out, '\n')) != NULL)
		*nl = '\0';
	return out;
}
