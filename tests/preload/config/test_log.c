/*
 * log.c: exact lines to each destination, errno preserved, nothing ever on
 * fd 1, no write into an fd number the host has reused, no SIGPIPE, whole
 * lines under concurrency. Criterion runs each test in its own process, so
 * each starts with the log unconfigured.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static char tmpdir[64];

static void
make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tcpspool-log-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void
remove_tmpdir(void)
{
	char cmd[128];

	if (tmpdir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			cr_log_warn("could not remove %s", tmpdir);
	}
}

TestSuite(log, .init = make_tmpdir, .fini = remove_tmpdir);

/* Configures the log to dest, with path (for LOG_DEST_FILE) under tmpdir. */
static void
configure(enum log_dest dest, const char *name, enum log_level level,
    char *path_out, size_t path_len)
{
	struct tcpspool_config c;

	config_defaults(&c);
	c.log_dest = dest;
	c.log_level = level;
	if (name != NULL) {
		snprintf(c.log_path, sizeof(c.log_path), "%s/%s", tmpdir, name);
		if (path_out != NULL)
			snprintf(path_out, path_len, "%s", c.log_path);
	}
	log_configure(&c);
}

/* The whole content of path, NUL-terminated, in a static buffer. */
static const char *
slurp(const char *path)
{
	static char buf[1 << 20];
	ssize_t n;
	size_t len = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	return buf;
}

/* Everything readable from a non-blocking fd now, NUL-terminated. */
static const char *
drain(int fd)
{
	static char buf[8192];
	ssize_t n;
	size_t len = 0;

	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	return buf;
}

/* A pipe whose write end is now fd target; returns the read end. */
static int
pipe_onto(int target)
{
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(dup2(p[1], target), target);
	close(p[1]);
	cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	return p[0];
}

/* The fd of this process open on path, or -1. */
static int
fd_open_on(const char *path)
{
	char link[300], target[PATH_MAX];
	struct dirent *de;
	DIR *d;
	ssize_t n;
	int fd = -1;

	d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL) {
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, path) == 0 && atoi(de->d_name) != dirfd(d))
			fd = atoi(de->d_name);
	}
	closedir(d);
	return fd;
}

Test(log, file_line_is_exact_and_mode_0600)
{
	char path[PATH_MAX], want[256];
	struct stat st;

	umask(022);
	configure(LOG_DEST_FILE, "a.log", LOG_LEVEL_WARN, path, sizeof(path));
	cr_assert_eq(access(path, F_OK), -1, "the file is opened lazily");
	errno = EXDEV;
	log_warn("spool %s: %d bytes", "s1", 5);
	cr_assert_eq(errno, EXDEV);
	log_info("not at warn");
	log_debug("not at warn");
	cr_assert_eq(errno, EXDEV);
	log_error("disk %s", "full");
	cr_assert_eq(errno, EXDEV);
	snprintf(want, sizeof(want), "tcpspool[%d]: warn: spool s1: 5 bytes\n"
	    "tcpspool[%d]: error: disk full\n", (int)getpid(), (int)getpid());
	cr_assert_str_eq(slurp(path), want);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
}

Test(log, every_level_has_its_name)
{
	char path[PATH_MAX], want[512];
	int pid = (int)getpid();

	configure(LOG_DEST_FILE, "b.log", LOG_LEVEL_DEBUG, path, sizeof(path));
	log_error("e");
	log_warn("w");
	log_info("i");
	log_debug("d");
	log_msg((enum log_level)7, "out of range is dropped");
	log_msg((enum log_level)-1, "out of range is dropped");
	snprintf(want, sizeof(want), "tcpspool[%d]: error: e\n"
	    "tcpspool[%d]: warn: w\ntcpspool[%d]: info: i\n"
	    "tcpspool[%d]: debug: d\n", pid, pid, pid, pid);
	cr_assert_str_eq(slurp(path), want);
}

Test(log, file_appends_to_existing_content)
{
	char path[PATH_MAX], want[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/c.log", tmpdir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("earlier\n", f);
	fclose(f);
	configure(LOG_DEST_FILE, "c.log", LOG_LEVEL_WARN, NULL, 0);
	log_warn("later");
	snprintf(want, sizeof(want), "earlier\ntcpspool[%d]: warn: later\n",
	    (int)getpid());
	cr_assert_str_eq(slurp(path), want);
}

Test(log, stderr_line_is_exact)
{
	char want[128];
	int rd = pipe_onto(STDERR_FILENO);

	errno = ENOTCONN;
	log_warn("peer %s", "gone");
	cr_assert_eq(errno, ENOTCONN);
	snprintf(want, sizeof(want), "tcpspool[%d]: warn: peer gone\n",
	    (int)getpid());
	cr_assert_str_eq(drain(rd), want);
}

Test(log, never_writes_to_fd_1)
{
	struct tcpspool_config c;
	int out = pipe_onto(STDOUT_FILENO);
	int err = pipe_onto(STDERR_FILENO);

	log_error("default destination");
	configure(LOG_DEST_STDERR, NULL, LOG_LEVEL_DEBUG, NULL, 0);
	log_error("stderr");
	configure(LOG_DEST_FILE, "d.log", LOG_LEVEL_DEBUG, NULL, 0);
	log_error("file");
	configure(LOG_DEST_SYSLOG, NULL, LOG_LEVEL_DEBUG, NULL, 0);
	log_error("syslog");
	config_defaults(&c);
	log_configure(&c);
	log_error("back to stderr");
	log_configure(NULL);
	log_error("reset");
	cr_assert_str_empty(drain(out), "something reached fd 1");
	cr_assert(strstr(drain(err), "back to stderr") != NULL);
}

/* With 0 and 1 closed, the log file must not take either number. */
Test(log, own_fds_stay_above_2)
{
	char path[PATH_MAX];
	int fd;

	configure(LOG_DEST_FILE, "e.log", LOG_LEVEL_WARN, path, sizeof(path));
	close(STDIN_FILENO);
	close(STDOUT_FILENO);
	log_warn("x");
	cr_assert_eq(fcntl(STDIN_FILENO, F_GETFD), -1);
	cr_assert_eq(fcntl(STDOUT_FILENO, F_GETFD), -1);
	fd = fd_open_on(path);
	cr_assert_geq(fd, 3);
	cr_assert_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	cr_assert(strstr(slurp(path), "warn: x\n") != NULL);
}

/* The host closes our file fd (close_range) and reuses the number. */
Test(log, reused_file_fd_number_is_not_written)
{
	char path[PATH_MAX], other[PATH_MAX], want[256];
	int fd, ofd;

	configure(LOG_DEST_FILE, "f.log", LOG_LEVEL_WARN, path, sizeof(path));
	log_warn("one");
	fd = fd_open_on(path);
	cr_assert_geq(fd, 3);
	snprintf(other, sizeof(other), "%s/host-data", tmpdir);
	ofd = open(other, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(ofd, 0);
	cr_assert_eq(dup2(ofd, fd), fd);
	close(ofd);
	log_warn("two");
	cr_assert_str_empty(slurp(other), "a log line went into the host's "
	    "file");
	snprintf(want, sizeof(want), "tcpspool[%d]: warn: one\n"
	    "tcpspool[%d]: warn: two\n", (int)getpid(), (int)getpid());
	cr_assert_str_eq(slurp(path), want);
}

/* A connected loopback TCP pair: *peer gets what is written to the other. */
static int
tcp_pair(int *peer)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int lfd, cfd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(lfd, 1), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	cr_assert_geq(*peer, 0);
	close(lfd);
	return cfd;
}

/* A daemon closed stderr, then a TCP connection got fd 2. */
Test(log, tcp_socket_on_fd_2_gets_nothing)
{
	char buf[64];
	int peer, s = tcp_pair(&peer);

	cr_assert_eq(dup2(s, STDERR_FILENO), STDERR_FILENO);
	log_error("must not reach the client");
	cr_assert_eq(recv(peer, buf, sizeof(buf), 0), -1);
	cr_assert_eq(errno, EAGAIN);
}

/* stderr was a pipe at the first line; later fd 2 is some other pipe. */
Test(log, stderr_replaced_by_host_pipe_gets_nothing)
{
	int first = pipe_onto(STDERR_FILENO), second;

	log_warn("to the first");
	cr_assert(strstr(drain(first), "warn: to the first\n") != NULL);
	second = pipe_onto(STDERR_FILENO);
	log_warn("to nobody");
	cr_assert_str_empty(drain(second));
	cr_assert_str_empty(drain(first));
}

/* A file or a terminal on fd 2 is always a fine stderr. */
Test(log, stderr_redirected_to_a_file_still_logs)
{
	char path[PATH_MAX], want[128];
	int rd = pipe_onto(STDERR_FILENO), fd;

	log_warn("first");
	cr_assert_neq(drain(rd)[0], '\0');
	snprintf(path, sizeof(path), "%s/stderr.log", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	cr_assert_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	log_warn("second");
	snprintf(want, sizeof(want), "tcpspool[%d]: warn: second\n",
	    (int)getpid());
	cr_assert_str_eq(slurp(path), want);
}

Test(log, broken_stderr_pipe_raises_no_sigpipe)
{
	sigset_t pending;
	int rd = pipe_onto(STDERR_FILENO);

	close(rd);
	signal(SIGPIPE, SIG_DFL);
	errno = EINTR;
	log_error("into a pipe nobody reads");
	cr_assert_eq(errno, EINTR);
	cr_assert_eq(sigpending(&pending), 0);
	cr_assert_eq(sigismember(&pending, SIGPIPE), 0);
	/* Still alive: the default SIGPIPE action would have killed us. */
}

Test(log, control_bytes_become_question_marks)
{
	char path[PATH_MAX], want[128];

	configure(LOG_DEST_FILE, "g.log", LOG_LEVEL_WARN, path, sizeof(path));
	log_warn("a\nb\r\x1b[2Jc\td\x7f");
	snprintf(want, sizeof(want), "tcpspool[%d]: warn: a?b??[2Jc?d?\n",
	    (int)getpid());
	cr_assert_str_eq(slurp(path), want);
}

Test(log, long_line_is_cut_and_marked)
{
	static char big[10000];
	char path[PATH_MAX];
	const char *got;
	size_t len;

	memset(big, 'x', sizeof(big) - 1);
	configure(LOG_DEST_FILE, "h.log", LOG_LEVEL_WARN, path, sizeof(path));
	log_warn("%s", big);
	got = slurp(path);
	len = strlen(got);
	cr_assert_eq(len, 2047, "a cut line is 2047 bytes, got %zu", len);
	cr_assert_eq(strcmp(got + len - 4, "...\n"), 0);
	cr_assert_eq(strchr(got, '\n'), got + len - 1);
}

Test(log, unusable_file_is_ignored_quietly)
{
	char target[PATH_MAX], link_path[PATH_MAX];
	int out = pipe_onto(STDOUT_FILENO);

	/* A symlink is never followed (O_NOFOLLOW). */
	snprintf(target, sizeof(target), "%s/target", tmpdir);
	snprintf(link_path, sizeof(link_path), "%s/link.log", tmpdir);
	cr_assert_eq(close(open(target, O_WRONLY | O_CREAT, 0600)), 0);
	cr_assert_eq(symlink(target, link_path), 0);
	configure(LOG_DEST_FILE, "link.log", LOG_LEVEL_WARN, NULL, 0);
	errno = EROFS;
	log_warn("not through a symlink");
	cr_assert_eq(errno, EROFS);
	cr_assert_str_empty(slurp(target));

	configure(LOG_DEST_FILE, "no/such/dir.log", LOG_LEVEL_WARN, NULL, 0);
	log_warn("nowhere");
	cr_assert_eq(errno, EROFS);

	/* A FIFO with no reader must not hang the host. */
	snprintf(target, sizeof(target), "%s/fifo", tmpdir);
	cr_assert_eq(mkfifo(target, 0600), 0);
	configure(LOG_DEST_FILE, "fifo", LOG_LEVEL_WARN, NULL, 0);
	log_warn("nobody listens");
	cr_assert_eq(errno, EROFS);
	cr_assert_str_empty(drain(out));
}

Test(log, syslog_without_daemon_is_silent)
{
	int out = pipe_onto(STDOUT_FILENO);
	int err = pipe_onto(STDERR_FILENO);

	configure(LOG_DEST_SYSLOG, NULL, LOG_LEVEL_DEBUG, NULL, 0);
	errno = ENOBUFS;
	log_error("to syslog, if there is one");
	cr_assert_eq(errno, ENOBUFS);
	cr_assert_str_empty(drain(out));
	cr_assert_str_empty(drain(err));
}

Test(log, reconfigure_moves_to_the_new_file)
{
	char a[PATH_MAX], b[PATH_MAX];

	configure(LOG_DEST_FILE, "one.log", LOG_LEVEL_WARN, a, sizeof(a));
	log_warn("in one");
	cr_assert_geq(fd_open_on(a), 3);
	configure(LOG_DEST_FILE, "two.log", LOG_LEVEL_WARN, b, sizeof(b));
	cr_assert_eq(fd_open_on(a), -1, "the old log file stayed open");
	log_warn("in two");
	cr_assert(strstr(slurp(a), "in two") == NULL);
	cr_assert(strstr(slurp(b), "warn: in two\n") != NULL);
}

#define THREADS 8
#define LINES 500
#define PAD "................................................................"

static void *
writer(void *arg)
{
	int id = (int)(intptr_t)arg, i;

	for (i = 0; i < LINES; i++)
		log_warn("thread %d line %d %s%s end", id, i, PAD, PAD);
	return NULL;
}

Test(log, lines_from_threads_never_interleave)
{
	pthread_t t[THREADS];
	char path[PATH_MAX], want[512];
	int seen[THREADS] = { 0 };
	const char *p, *nl;
	int i, id, n, count = 0;

	configure(LOG_DEST_FILE, "threads.log", LOG_LEVEL_WARN, path,
	    sizeof(path));
	for (i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, writer,
		    (void *)(intptr_t)i), 0);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (p = slurp(path); *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		cr_assert_not_null(nl);
		cr_assert_eq(sscanf(p, "tcpspool[%*d]: warn: thread %d line %d",
		    &id, &n), 2);
		cr_assert(id >= 0 && id < THREADS);
		cr_assert_eq(n, seen[id], "thread %d: line %d after %d", id,
		    n, seen[id]);
		seen[id]++;
		snprintf(want, sizeof(want), "tcpspool[%d]: warn: thread %d "
		    "line %d %s%s end", (int)getpid(), id, n, PAD, PAD);
		cr_assert_eq((size_t)(nl - p), strlen(want));
		cr_assert(strncmp(p, want, strlen(want)) == 0);
		count++;
	}
	cr_assert_eq(count, THREADS * LINES);
}

Test(log, fork_handlers_leave_the_child_able_to_log)
{
	char path[PATH_MAX], want[256];
	int status;
	pid_t pid;

	configure(LOG_DEST_FILE, "fork.log", LOG_LEVEL_WARN, path,
	    sizeof(path));
	log_fork_prepare();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		log_fork_child();
		log_warn("child");
		_exit(0);
	}
	log_fork_parent();
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	log_warn("parent");
	snprintf(want, sizeof(want), "tcpspool[%d]: warn: child\n"
	    "tcpspool[%d]: warn: parent\n", (int)pid, (int)getpid());
	cr_assert_str_eq(slurp(path), want);
}
