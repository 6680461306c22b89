/*
 * Programs where the library has nothing to do, and must show it by
 * changing nothing.
 *
 * - socat (`socat -u OPEN:FILE TCP-LISTEN:...`) keeps its socket
 *   blocking and polls it for POLLOUT before each write: on a full window
 *   it waits in poll(), it never sees EAGAIN, so the library never spools.
 *   The client (64 KiB receive buffer) reads nothing until socat is seen
 *   waiting (its wait channel is poll's or sk_stream_wait_memory) with
 *   more than 1 MiB queued on its socket; at that moment the spool dir
 *   must be empty. Then the client reads 48 MiB, socat exits 0.
 * - lighttpd (Debian's), a static 48 MiB file to a fast client (no rate,
 *   default buffers): both runs must behave the same. lighttpd uses
 *   non-blocking sockets, so should the client fall behind for a moment it
 *   meets EAGAIN and the library spools: the report says whether it did.
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

#define BIG_BYTES	(48LL << 20)
#define START_MS	20000
#define BLOCKED_MS	30000
#define CLIENT_MS	45000
#define STOP_MS		20000

TestSuite(passthrough, .init = h_setup, .fini = h_teardown, .timeout = 120);

static const char *
first_words(const char *v, int n)
{
	static char out[64];
	size_t len = 0;

	while (n-- > 0 && v[len] != '\0') {
		len += strcspn(v + len, " ");
		if (n > 0 && v[len] == ' ')
			len++;
	}
	snprintf(out, sizeof(out), "%.*s", (int)len, v);
	return out;
}

/* Where the kernel has pid waiting ("" if it runs). */
static const char *
wchan(pid_t pid)
{
	static char out[64];
	char path[64];
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
	out[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return out;
	r = read(fd, out, sizeof(out) - 1);
	close(fd);
	out[r > 0 ? r : 0] = '\0';
	return out;
}

/* pid sleeps in the kernel (in poll, or in a blocking write) while more
 * than 1 MiB waits in the send queue of its connection on port. */
static bool
waits_on_full_socket(pid_t pid, unsigned short port)
{
	const char *w = wchan(pid);

	return (strstr(w, "poll") != NULL ||
	    strcmp(w, "sk_stream_wait_memory") == 0) &&
	    scn_send_queue(port) > (1LL << 20);
}

static void
socat_blocking_writer(bool preload)
{
	static const char *const env[] = {
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = preload, .env = env };
	char file[PATH_MAX], files[1024];
	long long deadline;
	unsigned short port;
	struct scn s;

	scn_require("socat", "socat");
	scn_init(&s, preload, "socat (blocking writes), -u OPEN:file "
	    "TCP-LISTEN, 48 MiB to a gated client");
	h_fmt(file, sizeof(file), "%s/big.bin", h_dir());
	compat_write_stream_file(file, BIG_BYTES, 61);
	for (int attempt = 0;; attempt++) {
		struct h_argv a = { .n = 0 };

		cr_assert(attempt < 5, "socat lost its port five times");
		port = compat_free_port();
		h_args(&a, "-u", NULL);
		h_arg(&a, "OPEN:%s,rdonly", file);
		h_arg(&a, "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr", port);
		s.server = h_spawn("socat", compat_which("socat"), &a, &o);
		if (scn_wait_listening(&s, port, START_MS))
			break;
	}
	scn_client(&s, "client", port, true,
	    (const char *const[]){ "--rcvbuf", "65536", NULL });
	deadline = compat_now_ms() + BLOCKED_MS;
	while (!waits_on_full_socket(h_pid(s.server), port)) {
		scn_look(&s);
		if (h_wait(s.server, COMPAT_POLL_MS))
			scn_fail(&s, "socat exited before its client read");
		if (compat_now_ms() > deadline)
			scn_fail(&s, "socat was not seen waiting on a full "
			    "socket within %d ms (wait channel: %s, %lld "
			    "bytes queued)", BLOCKED_MS,
			    wchan(h_pid(s.server)), scn_send_queue(port));
	}
	scn_look(&s);
	if (h_spool_files(files, sizeof(files)) != 0 || s.spool_max > 0)
		scn_fail(&s, "socat is blocked in the kernel on a full socket, "
		    "yet the library spooled: %s", files);
	h_gate_open(&s.gate);
	scn_wait_client(&s, 0, CLIENT_MS, true);
	scn_expect_delivered(&s, 0, file);
	if (!h_wait(s.server, STOP_MS))
		scn_fail(&s, "socat did not exit after the transfer");
	cr_expect_eq(h_exit_code(s.server), 0, "%s: %s", s.what,
	    h_describe(s.server));
	cr_expect_eq(h_stdout_size(s.server), 0, "socat wrote on stdout");
	cr_expect_eq(s.spool_max, 0, "%s: the library spooled", s.what);
	scn_finish(&s, "socat waited in the kernel on its full socket with "
	    "the spool dir empty; %lld bytes intact, then FIN; socat exited "
	    "0", s.client[0].r.bytes);
}

Test(passthrough, baseline_without_library_socat_blocking_writer)
{
	socat_blocking_writer(false);
}

Test(passthrough, socat_blocking_writer_never_spools_delivers_all)
{
	socat_blocking_writer(true);
}

static void
lighttpd_fast_client(bool preload)
{
	static const char *const env[] = {
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = preload, .env = env };
	char conf[PATH_MAX], file[PATH_MAX], req[PATH_MAX], head[PATH_MAX];
	unsigned short port;
	struct scn s;
	int code;
	FILE *f;

	scn_require("lighttpd", "lighttpd");
	scn_init(&s, preload, "%s, a static 48 MiB file to a fast client",
	    first_words(scn_version(compat_which("lighttpd"), "-v"), 1));
	h_fmt(s.log, sizeof(s.log), "%s/lighttpd-error.log", h_dir());
	h_fmt(file, sizeof(file), "%s/www", h_dir());
	cr_assert(mkdir(file, 0755) == 0);
	h_fmt(file, sizeof(file), "%s/tmp", h_dir());
	cr_assert(mkdir(file, 0700) == 0);
	h_fmt(file, sizeof(file), "%s/www/big.bin", h_dir());
	compat_write_stream_file(file, BIG_BYTES, 71);
	h_fmt(req, sizeof(req), "%s/request.txt", h_dir());
	cr_assert((f = fopen(req, "we")) != NULL);
	fputs("GET /big.bin HTTP/1.0\r\n\r\n", f);
	cr_assert(fclose(f) == 0);
	h_fmt(conf, sizeof(conf), "%s/lighttpd.conf", h_dir());
	for (int attempt = 0;; attempt++) {
		struct h_argv a = { .n = 0 };

		cr_assert(attempt < 5, "lighttpd lost its port five times");
		port = compat_free_port();
		compat_lighttpd_config(conf, port, "");
		h_args(&a, "-D", "-f", conf, NULL);
		s.server = h_spawn("lighttpd", compat_which("lighttpd"), &a,
		    &o);
		if (scn_wait_listening(&s, port, START_MS))
			break;
	}
	scn_client(&s, "client", port, false,
	    (const char *const[]){ "--send", req, "--body", NULL });
	scn_wait_client(&s, 0, CLIENT_MS, false);
	scn_expect_delivered(&s, 0, file);
	h_fmt(head, sizeof(head), "%s.head", s.client[0].out);
	cr_expect(strstr(compat_tail(head, 20), " 200 OK") != NULL,
	    "%s: response header: %s", s.what, compat_tail(head, 20));
	code = scn_stop(&s, s.server, SIGTERM, STOP_MS);
	cr_expect_eq(code, 0, "%s: on SIGTERM: %s", s.what,
	    h_describe(s.server));
	cr_expect_eq(h_stdout_size(s.server), 0, "lighttpd wrote on stdout");
	scn_finish(&s, "%lld bytes intact in %lld ms, then FIN",
	    s.client[0].r.bytes, s.client[0].r.ms);
}

Test(passthrough, baseline_without_library_lighttpd_fast_client)
{
	lighttpd_fast_client(false);
}

Test(passthrough, lighttpd_fast_client_same_as_without_library)
{
	lighttpd_fast_client(true);
}
