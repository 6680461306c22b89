/* unit.c — see unit.h. */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdtab.h"
#include "real.h"
#include "unit.h"

void
pattern_fill(unsigned char *buf, size_t len, uint64_t from)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern(from + i);
}

static char unit_dir[64];

static int
remove_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	(void)remove(path);
	return 0;
}

/*
 * At exit: the spool dir goes, whatever the test left in it. The replay
 * thread may still be writing a status file or an orphan into it, so a
 * dir that is not empty yet is walked again a few times.
 */
static void
remove_unit_dir(void)
{
	int i;

	if (unit_dir[0] == '\0')
		return;
	for (i = 0; i < 10; i++) {
		(void)nftw(unit_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
		if (access(unit_dir, F_OK) != 0)
			break;
		usleep(10000);
	}
}

const char *
unit_env(const char *first, ...)
{
	const char *kv;
	va_list ap;

	/* One dir per process: the runtime opens it once anyway. */
	if (unit_dir[0] == '\0') {
		strcpy(unit_dir, "/tmp/tcpspool-unit.XXXXXX");
		if (mkdtemp(unit_dir) == NULL)
			abort();
		atexit(remove_unit_dir);
	}
	setenv("TCPSPOOL_DIR", unit_dir, 1);
	setenv("TCPSPOOL_LOG_LEVEL", "error", 1);
	va_start(ap, first);
	for (kv = first; kv != NULL; kv = va_arg(ap, const char *)) {
		char name[128];
		const char *eq = strchr(kv, '=');

		snprintf(name, sizeof(name), "%.*s", (int)(eq - kv), kv);
		setenv(name, eq + 1, 1);
	}
	va_end(ap);
	/* What a hook does first: the real symbols, before any op_ call. */
	if (!real_resolve())
		abort();
	return unit_dir;
}

static void
small_buffers(int fds[2])
{
	int sb = 4096, rb = 4096;

	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
	fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
}

void
unit_unix_pair(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
		abort();
	small_buffers(fds);
}

void
unit_tcp_pair(int fds[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int lfd, rb = 4096;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    listen(lfd, 1) || getsockname(lfd, (struct sockaddr *)&sin, &len))
		abort();
	fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
	if (connect(fds[1], (struct sockaddr *)&sin, sizeof(sin)) != 0)
		abort();
	fds[0] = accept(lfd, NULL, NULL);
	if (fds[0] < 0)
		abort();
	close(lfd);
	small_buffers(fds);
}

static ssize_t
read_wait(int fd, void *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		ssize_t n = read(fd, buf, len);

		if (n >= 0 || (errno != EAGAIN && errno != EINTR))
			return n;
		if (poll(&p, 1, 30000) == 0)
			return -2;
	}
}

bool
read_pattern(int fd, uint64_t from, uint64_t n)
{
	unsigned char buf[65536];
	uint64_t got = 0;

	while (got < n) {
		size_t want = n - got < sizeof(buf) ? n - got : sizeof(buf);
		ssize_t r = read_wait(fd, buf, want);

		if (r <= 0) {
			fprintf(stderr, "read_pattern: read %zd (%s) after %llu "
			    "of %llu bytes\n", r, r < 0 ? strerror(errno) :
			    "EOF", (unsigned long long)got,
			    (unsigned long long)n);
			return false;
		}
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(from + got + i)) {
				fprintf(stderr, "read_pattern: byte %llu "
				    "differs\n", (unsigned long long)(got + i));
				return false;
			}
		got += r;
	}
	return true;
}

bool
read_eof(int fd)
{
	char c;

	return read_wait(fd, &c, 1) == 0;
}

struct stream *
unit_stream(int fd)
{
	return fdtab_get(fd);
}

enum stream_state
stream_state_of(struct stream *s)
{
	enum stream_state st;

	pthread_mutex_lock(&s->mu);
	st = s->state;
	pthread_mutex_unlock(&s->mu);
	return st;
}

bool
wait_state(struct stream *s, enum stream_state st)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += 30;
	pthread_mutex_lock(&s->mu);
	atomic_fetch_add(&s->waiters, 1);
	while (s->state != st)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
			break;
	atomic_fetch_sub(&s->waiters, 1);
	ok = s->state == st;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

int
spool_dir_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}
