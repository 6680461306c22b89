/*
 * Servers of language runtimes, written as people write them: they write
 * a whole response at once and never wait for the runtime to say its
 * buffer drained.
 *
 * - node (Debian's nodejs or NodeSource's): a `net` server and an `http`
 *   server (node_server.js), each write() of 64 KiB without waiting for
 *   'drain', then end().
 * - Python asyncio (/usr/bin/python3): a Protocol whose transport.write()
 *   takes the whole file, then transport.close() (asyncio_server.py).
 *
 * Two gated clients (64 KiB receive buffers) ask for 32 MiB each and read
 * nothing until the server has written both responses. Without the library
 * the runtime keeps what the kernel refuses in its own memory (node's
 * writable buffer, asyncio's transport buffer) and delivers it: everything
 * arrives. Under the library every write the runtime makes succeeds whole,
 * so its own buffer stays empty (node's net write() never returns false,
 * asyncio buffers nothing), the library spools, and everything arrives.
 * (node's http response corks its socket while the request handler runs:
 * its write() returns false there whatever the kernel takes, with or
 * without the library, so that count is reported, not judged.)
 * Each client must get every byte, then the server's FIN.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scenario.h"

#define SERVED_BYTES	(32LL << 20)
#define CLIENTS		2
#define START_MS	20000
#define GATE_MS		40000
#define CLIENT_MS	45000
#define STOP_MS		20000

TestSuite(runtimes, .init = h_setup, .fini = h_teardown, .timeout = 120);

struct runtime {
	const char *name;	/* for messages */
	const char *prog;	/* its absolute path */
	const char *script;	/* in tests/compat */
	const char *mode;	/* the script's first argument, or NULL */
	const char *request;	/* what a client sends */
	bool http;		/* the answer has a header to set apart */
	const char *own_buffer;	/* the status field: the runtime buffered */
	bool corked;		/* it buffers whatever the kernel does */
};

/* /usr/bin/python3 (Debian's) rather than a python3 earlier in PATH. */
static const char *
python(void)
{
	if (access("/usr/bin/python3", X_OK) == 0)
		return "/usr/bin/python3";
	return compat_which("python3");
}

static const char *
version_of(const struct runtime *rt)
{
	static char version[64];
	const char *v = scn_version(rt->prog, "--version");

	snprintf(version, sizeof(version), "%s", v);
	return version;
}

/* Starts the runtime's server, waits for its port, starts the clients. */
static void
runtime_start(struct scn *s, const struct runtime *rt, char *want)
{
	static const char *const env[] = {
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = s->preload, .env = env };
	struct h_argv a = { .n = 0 };
	char script[PATH_MAX], req[PATH_MAX], label[32];
	unsigned short port;
	const char *line;
	FILE *f;

	h_fmt(want, PATH_MAX, "%s/served.bin", h_dir());
	compat_write_stream_file(want, SERVED_BYTES, 41);
	h_fmt(req, sizeof(req), "%s/request.txt", h_dir());
	cr_assert((f = fopen(req, "we")) != NULL);
	fputs(rt->request, f);
	cr_assert(fclose(f) == 0);
	h_fmt(script, sizeof(script), "%s/%s", COMPAT_SOURCE_DIR, rt->script);
	h_args(&a, script, NULL);
	if (rt->mode != NULL)
		h_args(&a, rt->mode, NULL);
	h_args(&a, want, NULL);
	s->server = h_spawn(rt->name, rt->prog, &a, &o);
	if ((line = h_status_line(s->server, "port ", 0, START_MS)) == NULL)
		scn_fail(s, "no port announced within %d ms", START_MS);
	port = (unsigned short)strtol(line + 5, NULL, 10);
	for (int i = 0; i < CLIENTS; i++) {
		snprintf(label, sizeof(label), "client-%d", i);
		scn_client(s, label, port, true, (const char *const[]){
		    "--send", req, "--rcvbuf", "65536",
		    rt->http ? "--body" : NULL, NULL });
	}
}

/* Waits for CLIENTS "done" lines: every response written, none read. */
static void
wait_written(struct scn *s)
{
	long long deadline = compat_now_ms() + GATE_MS;

	while (h_status_count(s->server, "done ") < CLIENTS) {
		scn_look(s);
		if (h_wait(s->server, 0))
			scn_fail(s, "the server exited before its clients "
			    "read");
		if (compat_now_ms() > deadline)
			scn_fail(s, "the server did not write its %d "
			    "responses within %d ms; status: %s", CLIENTS,
			    GATE_MS, h_status_text(s->server));
		compat_poll_pause();
	}
}

/* What the runtime kept in its own buffer, all responses together. */
static long long
own_buffer(struct scn *s, const struct runtime *rt)
{
	long long total = 0;

	for (int i = 0; i < CLIENTS; i++)
		total += h_field(h_status_line(s->server, "done ", i, 0),
		    rt->own_buffer);
	return total;
}

static void
serve(const struct runtime *rt, bool preload)
{
	char want[PATH_MAX], head[PATH_MAX];
	struct scn s;
	int code;

	if (rt->prog == NULL)
		cr_skip("%s is not installed (scripts/setup.sh installs it)",
		    rt->name);
	scn_init(&s, preload, "%s (%s), %s, %d gated clients of 32 MiB",
	    rt->name, version_of(rt), rt->mode != NULL ? rt->mode :
	    "asyncio", CLIENTS);
	runtime_start(&s, rt, want);
	wait_written(&s);
	h_gate_open(&s.gate);
	for (int i = 0; i < CLIENTS; i++) {
		scn_wait_client(&s, i, CLIENT_MS, false);
		scn_expect_delivered(&s, i, want);
		if (!rt->http)
			continue;
		h_fmt(head, sizeof(head), "%s.head", s.client[i].out);
		cr_expect(strstr(compat_tail(head, 20), " 200 OK") != NULL,
		    "%s: response header: %s", s.what, compat_tail(head, 20));
	}
	if (preload) {
		cr_expect(s.spool_max > 0, "%s: nothing was spooled", s.what);
		cr_expect(rt->corked || own_buffer(&s, rt) == 0, "%s: the "
		    "runtime buffered what the library should have taken: %s",
		    s.what, h_status_text(s.server));
	}
	code = scn_stop(&s, s.server, SIGTERM, STOP_MS);
	cr_expect_eq(code, 128 + SIGTERM, "%s: on SIGTERM: %s", s.what,
	    h_describe(s.server));
	cr_expect_eq(h_stdout_size(s.server), 0, "the server wrote on "
	    "stdout");
	scn_finish(&s, "every client got its %lld bytes, then FIN; %s=%lld "
	    "(the runtime's own buffering, all responses)", SERVED_BYTES,
	    rt->own_buffer, own_buffer(&s, rt));
}

static struct runtime
node(const char *mode)
{
	bool http = strcmp(mode, "http") == 0;

	return (struct runtime){ .name = "node", .prog =
	    compat_which("node"), .script = "node_server.js", .mode = mode,
	    .request = http ? "GET / HTTP/1.0\r\n\r\n" : "GET\n",
	    .http = http, .own_buffer = "full", .corked = http };
}

static struct runtime
asyncio(void)
{
	return (struct runtime){ .name = "python3", .prog = python(),
	    .script = "asyncio_server.py", .request = "GET\n",
	    .own_buffer = "buffered" };
}

Test(runtimes, baseline_without_library_node_net_write_without_drain)
{
	struct runtime rt = node("net");

	serve(&rt, false);
}

Test(runtimes, node_net_write_without_drain_delivers_every_byte)
{
	struct runtime rt = node("net");

	serve(&rt, true);
}

Test(runtimes, baseline_without_library_node_http_write_without_drain)
{
	struct runtime rt = node("http");

	serve(&rt, false);
}

Test(runtimes, node_http_write_without_drain_delivers_every_byte)
{
	struct runtime rt = node("http");

	serve(&rt, true);
}

Test(runtimes, baseline_without_library_asyncio_write_without_drain)
{
	struct runtime rt = asyncio();

	serve(&rt, false);
}

Test(runtimes, asyncio_transport_write_without_drain_delivers_every_byte)
{
	struct runtime rt = asyncio();

	serve(&rt, true);
}
