/*
 * A real, unmodified program that was not written for tcpspool: Debian's
 * nginx (package nginx-light or nginx), serving a 32 MiB file with
 * sendfile on non-blocking sockets to a slow reader with a small window.
 *
 * nginx runs as the test's user, in one process (daemon off, master_process
 * off), with every path in the test's private dir. The body is the
 * pattern.h stream, so the reader checks it byte for byte.
 *
 * Under the library the reader sends its request and then reads nothing
 * until nginx has logged the request as finished: nginx only logs it once
 * every byte was handed over, which with a 16 KiB window and a gated reader
 * can only happen if the library took the rest into the spool. Then the
 * reader drains the spool and must see the whole body, then EOF.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pattern.h"

/* 1198373 messages of 28 bytes: 33554444 bytes, just over 32 MiB. */
#define BODY_COUNT	1198373LL
#define BODY_BYTES	(BODY_COUNT * 28)
#define BODY_COUNT_ARG	"--count=1198373"

TestSuite(nginx, .init = h_setup, .fini = h_teardown,
    .timeout = H_TEST_TIMEOUT);

static const char *
nginx_path(void)
{
	static const char *const candidates[] = { "/usr/sbin/nginx",
		"/usr/bin/nginx", "/usr/local/sbin/nginx", NULL };

	for (int i = 0; candidates[i] != NULL; i++)
		if (access(candidates[i], X_OK) == 0)
			return candidates[i];
	return NULL;
}

static void
write_body(const char *path)
{
	char msg[PATTERN_DEFAULT_SIZE];
	FILE *f = fopen(path, "we");

	cr_assert(f != NULL, "%s: %s", path, strerror(errno));
	for (long long i = 1; i <= BODY_COUNT; i++) {
		pattern_message(msg, sizeof(msg), -1, (uint64_t)i);
		cr_assert(fwrite(msg, 1, sizeof(msg), f) == sizeof(msg));
	}
	cr_assert(fclose(f) == 0);
}

static void
write_config(const char *path, unsigned short port)
{
	const char *d = h_dir();
	FILE *f = fopen(path, "we");

	cr_assert(f != NULL, "%s: %s", path, strerror(errno));
	fprintf(f,
	    "daemon off;\n"
	    "master_process off;\n"
	    "worker_processes 1;\n"
	    "pid %s/nginx.pid;\n"
	    "error_log %s/error.log info;\n"
	    /* nginx rebuilds its environment; keep ours for the library. */
	    "env TCPSPOOL_DIR;\nenv TCPSPOOL_LINGER;\nenv LD_PRELOAD;\n"
	    "events { worker_connections 64; }\n"
	    "http {\n"
	    "  access_log %s/access.log;\n"
	    "  client_body_temp_path %s/tmp/body;\n"
	    "  proxy_temp_path %s/tmp/proxy;\n"
	    "  fastcgi_temp_path %s/tmp/fastcgi;\n"
	    "  uwsgi_temp_path %s/tmp/uwsgi;\n"
	    "  scgi_temp_path %s/tmp/scgi;\n"
	    "  default_type application/octet-stream;\n"
	    "  sendfile on;\n"
	    "  tcp_nopush on;\n"
	    "  server {\n"
	    "    listen 127.0.0.1:%u;\n"
	    "    root %s/www;\n"
	    "    location / { }\n"
	    "  }\n"
	    "}\n", d, d, d, d, d, d, d, d, port, d);
	cr_assert(fclose(f) == 0);
}

/* A port free right now (nginx may still lose it to a race: retried). */
static unsigned short
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(fd >= 0);
	cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static bool
accepts_connections(unsigned short port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

static long long
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Starts nginx on a free port; true once it accepts connections. Bounded
 * retries on conditions: the port answering, or nginx having exited (then
 * a lost race for the port means another try).
 */
static struct h_proc *
start_nginx(bool preload, unsigned short *port)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		/* nginx is not ours: do not judge its leaks at exit. */
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = preload, .env = env };
	char conf[4096], path[4096];
	const char *nginx = nginx_path();

	h_fmt(path, sizeof(path), "%s/www", h_dir());
	cr_assert(mkdir(path, 0700) == 0);
	h_fmt(path, sizeof(path), "%s/tmp", h_dir());
	cr_assert(mkdir(path, 0700) == 0);
	h_fmt(path, sizeof(path), "%s/www/stream.txt", h_dir());
	write_body(path);
	h_fmt(conf, sizeof(conf), "%s/nginx.conf", h_dir());
	for (int attempt = 0; attempt < 5; attempt++) {
		struct h_argv a = { .n = 0 };
		long long deadline = now_ms() + 20000;
		struct h_proc *p;
		char early[4096];

		*port = free_port();
		write_config(conf, *port);
		h_fmt(early, sizeof(early), "%s/early.log", h_dir());
		h_args(&a, "-p", h_dir(), "-c", conf, "-e", early, NULL);
		p = h_spawn("nginx", nginx, &a, &o);
		while (!accepts_connections(*port)) {
			if (h_wait(p, 20))
				break;	/* exited: below */
			cr_assert(now_ms() < deadline, "nginx does not accept "
			    "connections: %s", h_describe(p));
		}
		if (h_exit_code(p) == -1)
			return p;
		cr_assert(strstr(h_stderr(p), "in use") != NULL, "nginx exited: "
		    "%s", h_describe(p));
	}
	cr_assert_fail("nginx lost its port to a race five times");
	return NULL;
}

static void
stop_nginx(struct h_proc *p)
{
	kill(h_pid(p), SIGTERM);
	cr_assert(h_wait(p, H_DEADLINE_MS), "nginx did not stop: %s",
	    h_describe(p));
}

static void
check_body(struct h_proc *reader)
{
	struct h_result r;

	cr_assert(h_reader_result(reader, &r), "%s", h_describe(reader));
	cr_expect_eq(r.http, 200, "HTTP status %d", r.http);
	cr_expect_eq(r.mismatch, -1, "the body differs at byte %lld (of %lld "
	    "received): %s", r.mismatch, r.bytes, h_describe(reader));
	cr_expect_eq(r.bytes, BODY_BYTES, "%lld body bytes, expected %lld "
	    "(end %s)", r.bytes, BODY_BYTES, r.end);
	cr_expect_str_eq(r.end, "EOF");
	cr_expect_eq(h_exit_code(reader), 0, "%s", h_describe(reader));
}

Test(nginx, baseline_without_library_nginx_serves_32mib_to_a_slow_reader)
{
	struct h_proc *nginx, *reader;
	unsigned short port;

	if (nginx_path() == NULL)
		cr_skip("nginx is not installed (apt-get install nginx-light)");
	nginx = start_nginx(false, &port);
	reader = h_reader(0, port, NULL, "--http-get=/stream.txt",
	    BODY_COUNT_ARG, "--rcvbuf=16384", "--read-size=16384",
	    "--stall-ms=200", NULL);
	cr_assert(h_wait(reader, H_DEADLINE_MS), "%s", h_describe(reader));
	check_body(reader);
	stop_nginx(nginx);
}

Test(nginx, nginx_sendfile_under_library_serves_32mib_to_a_slow_reader_intact)
{
	char log[4096], files[1024];
	struct h_proc *nginx, *reader;
	struct h_gate gate;
	unsigned short port;
	long long deadline;

	if (nginx_path() == NULL)
		cr_skip("nginx is not installed (apt-get install nginx-light)");
	nginx = start_nginx(true, &port);
	h_fmt(log, sizeof(log), "%s/access.log", h_dir());
	h_gate_init(&gate);
	reader = h_reader(0, port, &gate, "--http-get=/stream.txt",
	    BODY_COUNT_ARG, "--rcvbuf=16384", "--read-size=16384",
	    "--pause-us=50", NULL);
	/* Bounded retry on the condition: nginx logs the request finished. */
	deadline = now_ms() + 30000;
	while (file_size(log) <= 0) {
		cr_assert(now_ms() < deadline, "nginx never finished sending "
		    "while the reader was not reading: the library did not "
		    "take the body into the spool. nginx: %s",
		    h_describe(nginx));
		cr_assert(!h_wait(nginx, 20), "nginx exited: %s",
		    h_describe(nginx));
	}
	h_gate_open(&gate);
	cr_assert(h_wait(reader, H_DEADLINE_MS), "%s", h_describe(reader));
	check_body(reader);
	cr_expect(h_spool_wait_empty(10000), "the spool dir is not empty: %d "
	    "files: %s", h_spool_files(files, sizeof(files)), files);
	cr_expect_eq(h_stdout_size(nginx), 0, "nginx wrote on stdout");
	stop_nginx(nginx);
}
