/*
 * compat.c — see compat.h. Failures inside these helpers are test failures
 * (H_ASSERT), like the harness's own.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "compat.h"

extern char **environ;

long long
compat_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
compat_poll_pause(void)
{
	poll(NULL, 0, COMPAT_POLL_MS);
}

const char *
compat_which(const char *name)
{
	static char found[4][PATH_MAX];
	static int slot;
	const char *path = getenv("PATH");
	char dirs[8192];
	char *save = NULL;

	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/local/sbin",
	    path != NULL ? path : "/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d != NULL;
	    d = strtok_r(NULL, ":", &save)) {
		char *out = found[slot % 4];

		if (*d == '\0')
			continue;
		snprintf(out, PATH_MAX, "%s/%s", d, name);
		if (access(out, X_OK) == 0) {
			slot++;
			return out;
		}
	}
	return NULL;
}

unsigned short
compat_free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	H_ASSERT(fd >= 0, "socket: %s", strerror(errno));
	H_ASSERT(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
	    "bind: %s", strerror(errno));
	H_ASSERT(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	close(fd);
	return ntohs(sin.sin_port);
}

bool
compat_accepts(unsigned short port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

long long
compat_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int
compat_file_lines(const char *path)
{
	FILE *f = fopen(path, "re");
	int n = 0, c;

	if (f == NULL)
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

int
compat_lines_with(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	char line[4096];
	int n = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

const char *
compat_tail(const char *path, int n)
{
	static char out[4][4096];
	static int slot;
	char *buf = out[slot++ % 4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size, from;
	ssize_t r;
	char *s;

	if (fd < 0) {
		snprintf(buf, sizeof(out[0]), "(missing: %s)", strerror(errno));
		return buf;
	}
	size = lseek(fd, 0, SEEK_END);
	from = size > (off_t)sizeof(out[0]) - 1 ?
	    size - (off_t)sizeof(out[0]) + 1 : 0;
	r = pread(fd, buf, (size_t)(size - from), from);
	close(fd);
	buf[r > 0 ? r : 0] = '\0';
	/* Back from the end over n newlines (a final one does not count). */
	s = buf + strlen(buf);
	if (s > buf && s[-1] == '\n')
		s--;
	while (s > buf && n > 0)
		if (*--s == '\n' && --n == 0)
			s++;
	return s;
}

/* splitmix64: a reproducible stream in which any reorder shows. */
static uint64_t
next_word(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
compat_write_stream_file(const char *path, long long size, uint64_t seed)
{
	static uint64_t block[8192];
	FILE *f = fopen(path, "we");
	uint64_t state = seed;

	H_ASSERT(f != NULL, "%s: %s", path, strerror(errno));
	while (size > 0) {
		size_t n = size > (long long)sizeof(block) ? sizeof(block) :
		    (size_t)size;

		for (size_t i = 0; i < sizeof(block) / sizeof(block[0]); i++)
			block[i] = next_word(&state);
		H_ASSERT(fwrite(block, 1, n, f) == n, "%s: %s", path,
		    strerror(errno));
		size -= (long long)n;
	}
	H_ASSERT(fclose(f) == 0, "%s: %s", path, strerror(errno));
	H_ASSERT(chmod(path, 0644) == 0);
}

bool
compat_same_file(const char *got, const char *want, char *why, size_t len)
{
	static char a[65536], b[65536];
	long long gsize = compat_file_size(got), wsize = compat_file_size(want);
	long long off = 0;
	FILE *fg, *fw;
	bool same = true;

	if (gsize < 0) {
		snprintf(why, len, "%s was not written", got);
		return false;
	}
	H_ASSERT((fg = fopen(got, "re")) != NULL);
	H_ASSERT((fw = fopen(want, "re")) != NULL);
	for (;;) {
		size_t ng = fread(a, 1, sizeof(a), fg);
		size_t nw = fread(b, 1, sizeof(b), fw);
		size_t n = ng < nw ? ng : nw, i = 0;

		while (i < n && a[i] == b[i])
			i++;
		if (i < n || ng != nw) {
			off += (long long)i;
			same = false;
			break;
		}
		if (n == 0)
			break;
		off += (long long)n;
	}
	fclose(fg);
	fclose(fw);
	if (!same && off == gsize)
		snprintf(why, len, "received %lld of %lld bytes (what arrived "
		    "is a prefix of the file)", gsize, wsize);
	else if (!same)
		snprintf(why, len, "received %lld bytes (file: %lld); the "
		    "first byte that differs is at offset %lld", gsize, wsize,
		    off);
	else
		snprintf(why, len, "%lld bytes, equal", gsize);
	return same;
}

static long long walked_bytes;

static int
add_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path; (void)ftw;
	if (flag == FTW_F)
		walked_bytes += (long long)st->st_size;
	return 0;
}

long long
compat_spool_bytes(void)
{
	walked_bytes = 0;
	nftw(h_spool_dir(), add_file, 16, FTW_PHYS);
	return walked_bytes;
}

/* Field 5 of /proc/pid/stat, the process group; -1 if unreadable. */
static pid_t
pgid_of(pid_t pid)
{
	char path[64], buf[1024], *s;
	int fd, pgrp;
	ssize_t r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = '\0';
	/* The command name may hold spaces and parens: skip to its end. */
	if ((s = strrchr(buf, ')')) == NULL ||
	    sscanf(s + 1, " %*c %*d %d", &pgrp) != 1)
		return -1;
	return (pid_t)pgrp;
}

int
compat_group_pids(pid_t pgid, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < max) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (*end == '\0' && pid > 0 && pgid_of((pid_t)pid) == pgid)
			out[n++] = (pid_t)pid;
	}
	closedir(d);
	return n;
}

/* The first line of a small /proc file, into out. */
static void
proc_line(pid_t pid, const char *name, char *out, size_t len)
{
	char path[64];
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	out[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	r = read(fd, out, len - 1);
	close(fd);
	out[r > 0 ? r : 0] = '\0';
	for (ssize_t i = 0; i < r; i++)
		if (out[i] == '\0')
			out[i] = ' ';	/* cmdline's separators */
	out[strcspn(out, "\n")] = '\0';
	/* nginx pads its rewritten command line with blanks. */
	for (size_t n = strlen(out); n > 0 && out[n - 1] == ' '; n--)
		out[n - 1] = '\0';
}

/* Appends to a report, silently cut at its end. */
static void
report_add(char *out, size_t len, const char *fmt, ...)
{
	size_t used = strlen(out);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(out + used, len - used, fmt, ap);
	va_end(ap);
}

/* "#3  0x00007f... in func (args) at f.c:9" -> "#3  func (args) at f.c:9" */
static void
compact_frame(char *s)
{
	char *in = strstr(s, " in "), *addr = strstr(s, "0x");

	if (s[0] != '#' || in == NULL || addr == NULL || addr > in)
		return;
	memmove(addr, in + 4, strlen(in + 4) + 1);
}

/*
 * gdb's backtrace of every thread of pid, appended to out: the thread
 * headers and frames, each cut to a line's width, at most per_proc bytes.
 * Bounded by timeout(1), so a gdb that cannot attach never holds the test.
 */
static void
backtrace_into(pid_t pid, char *out, size_t len, size_t per_proc)
{
	const char *gdb = compat_which("gdb"), *tmo = compat_which("timeout");
	posix_spawn_file_actions_t fa;
	char pidarg[32], path[PATH_MAX], line[4096];
	size_t start = strlen(out);
	pid_t child;
	int status;
	FILE *f;

	if (gdb == NULL || tmo == NULL) {
		report_add(out, len, "    (gdb is not installed: no "
		    "backtrace)\n");
		return;
	}
	snprintf(pidarg, sizeof(pidarg), "%d", (int)pid);
	h_fmt(path, sizeof(path), "%s/gdb-%d.txt", h_dir(), (int)pid);
	char *argv[] = { (char *)tmo, "30", (char *)gdb, "-batch", "-nx",
		"-p", pidarg, "-ex", "thread apply all bt", NULL };
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, path,
	    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (posix_spawn(&child, tmo, &fa, NULL, argv, environ) == 0)
		while (waitpid(child, &status, 0) == -1 && errno == EINTR)
			;
	posix_spawn_file_actions_destroy(&fa);
	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL &&
	    strlen(out) - start < per_proc) {
		if (strncmp(line, "Thread ", 7) != 0 && line[0] != '#')
			continue;
		compact_frame(line);
		line[strcspn(line, "\n")] = '\0';
		report_add(out, len, "    %.160s\n", line);
	}
	fclose(f);
}

const char *
compat_group_report(pid_t pgid)
{
	static char out[32768];
	pid_t pids[64];
	int n = compat_group_pids(pgid, pids, 64);

	out[0] = '\0';
	report_add(out, sizeof(out), "%d process(es) in group %d\n", n,
	    (int)pgid);
	for (int i = 0; i < n; i++) {
		char cmd[256], wchan[64];

		proc_line(pids[i], "cmdline", cmd, sizeof(cmd));
		proc_line(pids[i], "wchan", wchan, sizeof(wchan));
		report_add(out, sizeof(out), "  pid %d: %s (wchan %s)\n",
		    (int)pids[i], cmd, wchan);
		backtrace_into(pids[i], out, sizeof(out),
		    sizeof(out) / (size_t)(n + 1));
	}
	return out;
}

void
compat_report(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write with O_APPEND: lines of parallel tests never mix. */
	fd = open(COMPAT_BUILD_DIR "/meson-logs/compat-report.txt",
	    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		ssize_t w = write(fd, line, (size_t)n);

		(void)w;	/* a report line lost fails nothing */
		close(fd);
	}
}

static uid_t share_uid;
static gid_t share_gid;

static int
share_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D)
		chmod(path, 0755);
	else if (flag == FTW_F)
		chmod(path, (st->st_mode & 0777) | 0444);
	return 0;
}

void
compat_share_dir_with(uid_t uid, gid_t gid)
{
	if (uid == geteuid())
		return;
	share_uid = uid;
	share_gid = gid;
	nftw(h_dir(), share_entry, 16, FTW_PHYS);
	H_ASSERT(chown(h_spool_dir(), share_uid, share_gid) == 0,
	    "chown %s: %s", h_spool_dir(), strerror(errno));
	H_ASSERT(chmod(h_spool_dir(), 0700) == 0);
}

const char *
compat_preload_runtime(void)
{
	static char runtime[PATH_MAX * 4];
	const char *all = getenv("TCPSPOOL_TEST_PRELOAD");
	const char *last;

	H_ASSERT(all != NULL, "TCPSPOOL_TEST_PRELOAD unset: run via meson "
	    "test");
	last = strrchr(all, ':');
	if (last == NULL)
		return "";
	h_fmt(runtime, sizeof(runtime), "%.*s", (int)(last - all), all);
	return runtime;
}

void
compat_story_start(struct h_story *st, struct h_proc *server, int n,
    const char *const *reader_args, const char *desc, int timeout_ms)
{
	const char *line;

	H_ASSERT(n >= 1 && n <= H_MAX_READERS);
	memset(st, 0, sizeof(*st));
	st->n = n;
	st->server = server;
	snprintf(st->desc, sizeof(st->desc), "%s", desc);
	line = h_status_line(server, "port ", 0, timeout_ms);
	if (line == NULL)
		cr_assert_fail("%s: no port announced within %d ms (the "
		    "program never reached server_a, or server_a never "
		    "listened); status so far: %s; %s\nits processes: %s",
		    desc, timeout_ms, h_status_text(server),
		    h_describe(server), compat_group_report(h_pid(server)));
	st->port = (unsigned short)strtol(line + 5, NULL, 10);
	h_gate_init(&st->gate);
	for (int i = 0; i < n; i++) {
		struct h_spawn ro = { .nfds = 1 };
		struct h_argv a = { .n = 0 };
		char prog[PATH_MAX], label[32];

		h_fixture(prog, sizeof(prog), "slow_reader");
		snprintf(label, sizeof(label), "reader-%d", i);
		h_arg(&a, "--port=%u", st->port);
		h_arg(&a, "--result-file=%s/%s.result", h_dir(), label);
		h_args(&a, "--start-fd", "4", NULL);
		h_argv_list(&a, reader_args);
		ro.fds[0].child = 4;
		ro.fds[0].parent = st->gate.rfd;
		st->reader[i] = h_spawn(label, prog, &a, &ro);
	}
}

bool
compat_worker_user(const char *server, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	*uid = geteuid();
	*gid = getegid();
	if (*uid != 0)
		return false;
	pw = getpwnam("nobody");
	cr_assert(pw != NULL, "%s runs its workers as nobody, which this "
	    "machine lacks", server);
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return true;
}

void
compat_lighttpd_config(const char *path, unsigned short port,
    const char *extra)
{
	const char *d = h_dir();
	FILE *f = fopen(path, "we");

	cr_assert(f != NULL, "%s: %s", path, strerror(errno));
	fprintf(f,
	    "server.document-root = \"%s/www\"\n"
	    "server.bind = \"127.0.0.1\"\n"
	    "server.port = %u\n"
	    "server.errorlog = \"%s/lighttpd-error.log\"\n"
	    "server.upload-dirs = ( \"%s/tmp\" )\n"
	    "mimetype.assign = ( \"\" => \"application/octet-stream\" )\n"
	    "%s", d, port, d, d, extra);
	cr_assert(fclose(f) == 0);
}
