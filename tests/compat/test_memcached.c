/*
 * memcached as packaged (Debian's memcached), a private instance on
 * 127.0.0.1 (TCP only, `-U 0`), items up to 64 MiB (`-I 64m -m 256`), in
 * the foreground. A setter stores a 48 MiB item; a getter limited to
 * 8 MiB/s fetches it, and once the whole answer arrived says `quit`, so
 * memcached closes the connection.
 *
 * memcached answers a get with sendmsg() of many iovecs from its worker
 * threads. Without the library it meets EAGAIN, keeps its place and waits
 * for the socket (everything arrives). Under the library the sendmsg()
 * calls succeed whole and the library spools what the getter has not read.
 * The getter must get "VALUE k 0 N", the item, "END", then memcached's FIN.
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

#define ITEM_BYTES	(48LL << 20)
#define RATE		"8388608"	/* 8 MiB/s: 6 s for the item */
#define START_MS	20000
#define CLIENT_MS	50000
#define STOP_MS		20000

TestSuite(memcached, .init = h_setup, .fini = h_teardown, .timeout = 120);

static FILE *
create(const char *name, char *path)
{
	FILE *f;

	h_fmt(path, PATH_MAX, "%s/%s", h_dir(), name);
	cr_assert((f = fopen(path, "we")) != NULL, "%s: %s", path,
	    strerror(errno));
	return f;
}

/* The set request (then quit) and what the get must bring back. */
static void
write_files(char *set, char *want)
{
	static char buf[1 << 16];
	char item[PATH_MAX];
	FILE *in, *req, *out;
	size_t n;

	h_fmt(item, sizeof(item), "%s/item.bin", h_dir());
	compat_write_stream_file(item, ITEM_BYTES, 51);
	req = create("set.req", set);
	out = create("get.want", want);
	fprintf(req, "set k 0 0 %lld\r\n", ITEM_BYTES);
	fprintf(out, "VALUE k 0 %lld\r\n", ITEM_BYTES);
	cr_assert((in = fopen(item, "re")) != NULL);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		fwrite(buf, 1, n, req);
		fwrite(buf, 1, n, out);
	}
	fclose(in);
	remove(item);
	fputs("\r\nquit\r\n", req);
	fputs("\r\nEND\r\n", out);
	cr_assert(fclose(req) == 0);
	cr_assert(fclose(out) == 0);
}

static void
text_file(const char *name, const char *text, char *path)
{
	FILE *f = create(name, path);

	fputs(text, f);
	cr_assert(fclose(f) == 0);
}

static void
memcached_start(struct scn *s, unsigned short *port)
{
	static const char *const env[] = {
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = s->preload, .env = env };

	for (int attempt = 0; attempt < 5; attempt++) {
		struct h_argv a = { .n = 0 };

		*port = compat_free_port();
		h_args(&a, "-l", "127.0.0.1", "-U", "0", "-I", "64m", "-m",
		    "256", "-t", "2", "-v", "-p", NULL);
		h_arg(&a, "%u", *port);
		if (geteuid() == 0)	/* memcached refuses root without -u */
			h_args(&a, "-u", "root", NULL);
		s->server = h_spawn("memcached", compat_which("memcached"),
		    &a, &o);
		if (scn_wait_listening(s, *port, START_MS))
			return;
		if (strstr(h_stderr(s->server), "in use") == NULL)
			scn_fail(s, "memcached exited at start");
	}
	scn_fail(s, "memcached lost its port to a race five times");
}

static void
slow_get(bool preload)
{
	char set[PATH_MAX], want[PATH_MAX], get[PATH_MAX], stored[PATH_MAX];
	char after[32];
	const char *version;
	unsigned short port;
	struct scn s;
	int c, code;

	scn_require("memcached", "memcached");
	/* "memcached 1.6.18" */
	version = scn_version(compat_which("memcached"), "-V");
	if (strchr(version, ' ') != NULL)
		version = strchr(version, ' ') + 1;
	scn_init(&s, preload, "memcached %s -I 64m, get of a 48 MiB item at "
	    "8 MiB/s", version);
	write_files(set, want);
	text_file("get.req", "get k\r\n", get);
	text_file("set.want", "STORED\r\n", stored);
	snprintf(after, sizeof(after), "%lld", compat_file_size(want));
	memcached_start(&s, &port);
	c = scn_client(&s, "setter", port, false,
	    (const char *const[]){ "--send", set, NULL });
	scn_wait_client(&s, c, CLIENT_MS, false);
	scn_expect_delivered(&s, c, stored);
	c = scn_client(&s, "getter", port, false,
	    (const char *const[]){ "--send", get, "--rate", RATE,
	    "--then-send", "quit\\r\\n", "--after-bytes", after, NULL });
	scn_wait_client(&s, c, CLIENT_MS, false);
	scn_expect_delivered(&s, c, want);
	if (preload)
		cr_expect(s.spool_max > 0, "%s: nothing was spooled", s.what);
	code = scn_stop(&s, s.server, SIGTERM, STOP_MS);
	cr_expect(code == 0, "%s: on SIGTERM: %s", s.what,
	    h_describe(s.server));
	cr_expect_eq(h_stdout_size(s.server), 0, "memcached wrote on stdout");
	scn_finish(&s, "%lld bytes intact in %lld ms, then FIN",
	    s.client[c].r.bytes, s.client[c].r.ms);
}

Test(memcached, baseline_without_library_get_48mib_item_at_8mibps)
{
	slow_get(false);
}

Test(memcached, get_48mib_item_at_8mibps_arrives_whole)
{
	slow_get(true);
}
