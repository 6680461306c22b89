/*
 * daemon_util.c — the daemon test programs' shared helpers (daemon_util.h).
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon_util.h"
#include "spool.h"

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A bounded retry's pause: the condition is a file or /proc. */
void
tick(void)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

void
sock_path(char *out, size_t len)
{
	h_fmt(out, len, "%s/%s", h_spool_dir(), SPOOL_DAEMON_SOCK);
}

int
daemon_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	sock_path(sa.sun_path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	close(fd);
	return -1;
}

struct h_proc *
daemon_start(void)
{
	return daemon_start_env(NULL);
}

struct h_proc *
daemon_start_env(const char *const *env)
{
	struct h_spawn o = { .preload = false, .env = env };
	struct h_argv a = { 0 };
	struct h_proc *p;
	int64_t until = now_ms() + DEADLINE_MS;
	int fd;

	h_args(&a, "daemon", "--dir", h_spool_dir(), "--linger", "20s",
	    NULL);
	p = h_spawn("daemon", getenv("TCPSPOOL_TEST_CLI"), &a, &o);
	while ((fd = daemon_connect()) < 0) {
		cr_assert(h_exit_code(p) == -1, "daemon ended: %s",
		    h_describe(p));
		cr_assert(now_ms() < until, "daemon never answered");
		tick();
	}
	close(fd);
	return p;
}

const char *
daemon_status(void)
{
	static char out[65536];
	struct spool_ho_msg m = { .magic = SPOOL_HO_MAGIC, .kind = 3,
	    .pid = (int32_t)getpid() };
	size_t have = 0;
	ssize_t n;
	int fd;

	fd = daemon_connect();
	cr_assert(fd >= 0, "daemon socket: %s", strerror(errno));
	cr_assert_eq(send(fd, &m, sizeof(m), MSG_NOSIGNAL), (ssize_t)sizeof(m));
	while (have < sizeof(out) - 1 &&
	    (n = read(fd, out + have, sizeof(out) - 1 - have)) > 0)
		have += (size_t)n;
	out[have] = '\0';
	close(fd);
	cr_assert(strncmp(out, "daemon pid ", 11) == 0, "status: %s", out);
	return out;
}

int
count_lines(const char *text, const char *prefix)
{
	int n = 0;

	for (const char *s = text; s != NULL && *s != '\0';) {
		if (strncmp(s, prefix, strlen(prefix)) == 0)
			n++;
		s = strchr(s, '\n');
		s = s != NULL ? s + 1 : NULL;
	}
	return n;
}

void
wait_held(int n)
{
	int64_t until = now_ms() + DEADLINE_MS;
	const char *st;

	while (count_lines(st = daemon_status(), "held ") != n) {
		cr_assert(now_ms() < until, "daemon never held %d: %s", n, st);
		tick();
	}
}

void
wait_stderr(struct h_proc *p, const char *needle)
{
	cr_assert(h_said(p, needle, DEADLINE_MS), "never said \"%s\": %s",
	    needle, h_stderr(p));
}

/* No stream left, nor one being removed (a .del dir): a SIGTERM now
 * cannot cut a removal short. */
void
wait_no_streams(void)
{
	int64_t until = now_ms() + DEADLINE_MS;
	char names[4][32], files[8192];

	for (;;) {
		files[0] = '\0';
		if (rel_streams(h_spool_dir(), names, 4) == 0 &&
		    (h_spool_files(files, sizeof(files)), strstr(files,
		    ".del") == NULL))
			return;
		cr_assert(now_ms() < until, "a stream is never delivered: %s",
		    files);
		tick();
	}
}

void
daemon_stop(struct h_proc *p)
{
	char path[PATH_MAX];

	wait_no_streams();
	kill(h_pid(p), SIGTERM);
	cr_assert(h_wait(p, DEADLINE_MS), "daemon ignores SIGTERM");
	cr_expect_eq(h_exit_code(p), 0, "%s", h_describe(p));
	sock_path(path, sizeof(path));
	cr_expect(access(path, F_OK) == -1, "socket left behind");
}

