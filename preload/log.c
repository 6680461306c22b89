/*
 * log.c — the library's only voice.
 *
 * Invariants:
 *   - A line is built whole in a stack buffer and handed to the kernel in
 *     one write (one datagram for syslog): lines from threads and processes
 *     never interleave (a line is below PIPE_BUF).
 *   - Every call goes to the kernel directly, never through the hooked
 *     write/open/socket/close of this library, so logging can neither
 *     recurse nor touch a stream's state: file I/O through spool's
 *     sysio.h (the one way the library does its own fd I/O), the syslog
 *     socket's calls through syscall(2) (spool/ knows no sockets).
 *   - Nothing is ever written to fd 0, 1 or 2 but stderr lines to fd 2; an
 *     fd the log opens itself is moved to 3 or above and is O_CLOEXEC.
 *   - errno is the caller's on return; SIGPIPE is never raised by a log
 *     write (MSG_NOSIGNAL on sockets, SIGPIPE blocked around pipe writes);
 *     no signal disposition is touched.
 *   - The host can close or dup2 over any fd behind our back (close_range,
 *     daemonising code). Each sink remembers the identity (st_dev, st_ino)
 *     of what it opened and checks it with fstat before each line, so a
 *     number now holding one of the host's sockets is never written to.
 *     fd 2 is written only if it is a file or a terminal, or the same pipe
 *     or AF_UNIX socket (journald) it was at the first line: a daemon that
 *     closed its stderr and got a TCP connection on fd 2 gets no log line
 *     in its protocol stream.
 *   - The fast path (sink open and valid) takes no lock; lazy opening and
 *     log_configure take log_lock. log_fork_* keep the lock fork-safe.
 *     Not async-signal-safe (vsnprintf, the lock): a hook reached from a
 *     signal handler should not log.
 *   - In an AT_SECURE (setuid) process a file destination is ignored:
 *     lines go to stderr, never to a path the invoking user chose.
 */
#include "log.h"
#include "sysio.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* A line, newline included; below PIPE_BUF so one write is atomic. */
#define LINE_MAX_LEN 2048
#define SYSLOG_PATH "/dev/log"
#define SYSLOG_FACILITY LOG_USER
/* The lowest fd number the log keeps for itself. */
#define FD_FLOOR 3

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

static const int syslog_priorities[] = {
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARN] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

/* How a line is handed to an fd. */
enum fd_kind {
	FD_NONE,	/* not to be written */
	FD_PLAIN,	/* file or device: write */
	FD_PIPE,	/* write with SIGPIPE blocked */
	FD_SOCKET,	/* send with MSG_NOSIGNAL */
};

static enum fd_kind
kind_of(mode_t mode)
{
	if (S_ISFIFO(mode))
		return FD_PIPE;
	if (S_ISSOCK(mode))
		return FD_SOCKET;
	return FD_PLAIN;
}

/* An fd the log opened, and what it was when opened. fd -1: not open. */
struct sink {
	atomic_int fd;
	atomic_ullong dev, ino;
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int cur_dest = LOG_DEST_STDERR;
static atomic_int cur_level = LOG_LEVEL_WARN;
static char file_path[PATH_MAX];	/* under log_lock */
static struct sink file_sink = { -1, 0, 0 };
static struct sink syslog_sink = { -1, 0, 0 };

/* fd 2 at the first line, if it was a pipe or an AF_UNIX socket. */
static atomic_int stderr_seen;		/* 0 not yet, 1 seen */
static atomic_ullong stderr_dev, stderr_ino;

/* Moves a fresh fd of ours to FD_FLOOR or above; -1 (fd closed) if not. */
static int
raise_fd(int fd)
{
	int nfd;

	if (fd >= FD_FLOOR)
		return fd;
	nfd = sysio_dupfd_cloexec(fd, FD_FLOOR);
	sysio_close(fd);
	return nfd;
}

/* True if fd is still the file (dev, ino); its mode in *mode. */
static bool
same_file(int fd, unsigned long long dev, unsigned long long ino,
    mode_t *mode)
{
	struct stat st;

	if (fstat(fd, &st) == -1 || (unsigned long long)st.st_dev != dev ||
	    (unsigned long long)st.st_ino != ino)
		return false;
	*mode = st.st_mode;
	return true;
}

/* The sink's fd if it still is what we opened, else -1. No lock. */
static int
sink_fd(struct sink *s, enum fd_kind *kind)
{
	int fd = atomic_load_explicit(&s->fd, memory_order_acquire);
	mode_t mode;

	if (fd < 0 || !same_file(fd, atomic_load(&s->dev),
	    atomic_load(&s->ino), &mode))
		return -1;
	*kind = kind_of(mode);
	return fd;
}

/*
 * Publishes fd as the sink's; with log_lock held. An old fd that is still
 * ours is closed; one whose number the host has reused is left alone.
 */
static void
sink_set(struct sink *s, int fd)
{
	int old = atomic_exchange(&s->fd, -1);
	struct stat st;
	mode_t mode;

	/* Not fd itself: the number of an old sink closed behind our back
	 * (a fork child closes ours) may be the one just opened. */
	if (old >= 0 && old != fd && same_file(old, atomic_load(&s->dev),
	    atomic_load(&s->ino), &mode))
		sysio_close(old);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == -1) {
		sysio_close(fd);
		return;
	}
	atomic_store(&s->dev, (unsigned long long)st.st_dev);
	atomic_store(&s->ino, (unsigned long long)st.st_ino);
	atomic_store_explicit(&s->fd, fd, memory_order_release);
}

static int
open_file(const char *path)
{
	int fd;

	/* O_NONBLOCK: a FIFO without a reader must not hang the host. */
	fd = sysio_openat(AT_FDCWD, path,
	    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
	    O_NOCTTY | O_NONBLOCK, 0600);
	if (fd < 0)
		return -1;
	return raise_fd(fd);
}

static int
open_syslog(void)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, SYSLOG_PATH, sizeof(SYSLOG_PATH));
	fd = (int)syscall(SYS_socket, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	fd = raise_fd(fd);
	if (fd < 0)
		return -1;
	if (syscall(SYS_connect, fd, &sun, sizeof(sun)) == -1) {
		sysio_close(fd);
		return -1;
	}
	return fd;
}

/* The sink's fd, opened or reopened if needed; -1 if it cannot be. */
static int
sink_get(struct sink *s, bool is_file, enum fd_kind *kind)
{
	int fd;

	if ((fd = sink_fd(s, kind)) >= 0)
		return fd;
	pthread_mutex_lock(&log_lock);
	if ((fd = sink_fd(s, kind)) < 0) {
		if (is_file)
			fd = file_path[0] != '\0' ? open_file(file_path) : -1;
		else
			fd = open_syslog();
		sink_set(s, fd);
		fd = sink_fd(s, kind);
	}
	pthread_mutex_unlock(&log_lock);
	return fd;
}

/* Remembers fd 2 the first time, if it is a pipe or an AF_UNIX socket. */
static void
stderr_remember(void)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct stat st;
	int expected = 0;

	if (atomic_load(&stderr_seen))
		return;
	if (fstat(STDERR_FILENO, &st) == 0 &&
	    (S_ISFIFO(st.st_mode) || (S_ISSOCK(st.st_mode) &&
	    syscall(SYS_getsockname, STDERR_FILENO, &ss, &sl) == 0 &&
	    ss.ss_family == AF_UNIX))) {
		pthread_mutex_lock(&log_lock);
		if (!atomic_load(&stderr_seen)) {
			atomic_store(&stderr_dev, (unsigned long long)st.st_dev);
			atomic_store(&stderr_ino, (unsigned long long)st.st_ino);
			atomic_store(&stderr_seen, 1);
		}
		pthread_mutex_unlock(&log_lock);
		return;
	}
	atomic_compare_exchange_strong(&stderr_seen, &expected, 1);
}

/* How fd 2 may take a line now (FD_NONE: not at all). */
static enum fd_kind
stderr_kind(void)
{
	struct stat st;

	stderr_remember();
	if (fstat(STDERR_FILENO, &st) == -1)
		return FD_NONE;
	if (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode))
		return FD_PLAIN;
	if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode))
		return FD_NONE;
	if ((unsigned long long)st.st_dev != atomic_load(&stderr_dev) ||
	    (unsigned long long)st.st_ino != atomic_load(&stderr_ino))
		return FD_NONE;
	return kind_of(st.st_mode);
}

/* One write, retried only on EINTR; SIGPIPE kept from the host. */
static void
write_line(int fd, const char *buf, size_t len, enum fd_kind kind)
{
	sigset_t pipe_set, old_set, pending;
	struct timespec zero = { 0, 0 };
	bool was_pending;
	long n;

	switch (kind) {
	case FD_NONE:
		return;
	case FD_SOCKET:
		do
			n = syscall(SYS_sendto, fd, buf, len,
			    MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
		while (n == -1 && errno == EINTR);
		return;
	case FD_PLAIN:
		do
			n = sysio_write(fd, buf, len);
		while (n == -1 && errno == EINTR);
		return;
	case FD_PIPE:
		break;
	}
	/* Block SIGPIPE, and swallow the one this write raises. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
	was_pending = sigpending(&pending) == 0 &&
	    sigismember(&pending, SIGPIPE) == 1;
	do
		n = sysio_write(fd, buf, len);
	while (n == -1 && errno == EINTR);
	/* Raw: libc's sigtimedwait is a cancellation point, and a line may
	 * be written with a stream's lock held. */
	if (n == -1 && errno == EPIPE && !was_pending)
		while (syscall(SYS_rt_sigtimedwait, &pipe_set, NULL, &zero,
		    (size_t)(_NSIG / 8)) == -1 && errno == EINTR)
			continue;
	pthread_sigmask(SIG_SETMASK, &old_set, NULL);
}

static void
send_syslog(const char *buf, size_t len)
{
	enum fd_kind kind;
	long n;
	int fd, tries;

	for (tries = 0; tries < 2; tries++) {
		if ((fd = sink_get(&syslog_sink, false, &kind)) < 0)
			return;
		do
			n = syscall(SYS_sendto, fd, buf, len,
			    MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
		while (n == -1 && errno == EINTR);
		/* The daemon restarted: reconnect once. */
		if (n != -1 || (errno != ECONNREFUSED && errno != ENOTCONN))
			return;
		pthread_mutex_lock(&log_lock);
		if (atomic_load(&syslog_sink.fd) == fd)
			sink_set(&syslog_sink, -1);
		pthread_mutex_unlock(&log_lock);
	}
}

/*
 * Formats "PREFIX message" into buf (size LINE_MAX_LEN), control bytes of
 * the message turned into '?' and "..." marking a cut; returns the length,
 * newline not included (room for it is kept).
 */
static size_t format_line(char *, const char *, const char *, va_list)
    __attribute__((format(printf, 3, 0)));

static size_t
format_line(char *buf, const char *prefix, const char *fmt, va_list ap)
{
	size_t room = LINE_MAX_LEN - 1;	/* the newline */
	size_t plen, len, i;
	int n;

	n = snprintf(buf, room, "%s", prefix);
	plen = n < 0 ? 0 : (size_t)n >= room ? room - 1 : (size_t)n;
	n = vsnprintf(buf + plen, room - plen, fmt, ap);
	if (n < 0)
		n = 0;
	len = plen + (size_t)n;
	if (len >= room) {
		len = room - 1;
		memcpy(buf + len - 3, "...", 3);
	}
	for (i = plen; i < len; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	return len;
}

/* "<PRI>Mmm dd hh:mm:ss tcpspool[PID]: LEVEL: ", as syslog(3) sends it. */
static void
syslog_prefix(char *buf, size_t size, enum log_level level)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr",
		"May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;

	if (localtime_r(&now, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(buf, size, "<%d>%s %2d %02d:%02d:%02d tcpspool[%ld]: %s: ",
	    SYSLOG_FACILITY | syslog_priorities[level],
	    months[tm.tm_mon >= 0 && tm.tm_mon < 12 ? tm.tm_mon : 0],
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)getpid(),
	    level_names[level]);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[LINE_MAX_LEN];
	char prefix[96];
	int saved_errno = errno;
	enum fd_kind kind;
	int dest, fd;
	size_t len;
	va_list ap;

	if ((unsigned)level > LOG_LEVEL_DEBUG ||
	    (int)level > atomic_load_explicit(&cur_level,
	    memory_order_relaxed)) {
		errno = saved_errno;
		return;
	}
	dest = atomic_load(&cur_dest);
	if (dest == LOG_DEST_SYSLOG)
		syslog_prefix(prefix, sizeof(prefix), level);
	else
		snprintf(prefix, sizeof(prefix), "tcpspool[%ld]: %s: ",
		    (long)getpid(), level_names[level]);
	va_start(ap, fmt);
	len = format_line(buf, prefix, fmt, ap);
	va_end(ap);

	switch (dest) {
	case LOG_DEST_SYSLOG:
		send_syslog(buf, len);
		break;
	case LOG_DEST_FILE:
		buf[len++] = '\n';
		if ((fd = sink_get(&file_sink, true, &kind)) >= 0)
			write_line(fd, buf, len, kind);
		break;
	default:
		buf[len++] = '\n';
		write_line(STDERR_FILENO, buf, len, stderr_kind());
		break;
	}
	errno = saved_errno;
}

void
log_configure(const struct tcpspool_config *c)
{
	int saved_errno = errno;
	enum log_dest dest = c != NULL ? c->log_dest : LOG_DEST_STDERR;
	enum log_level level = c != NULL ? c->log_level : LOG_LEVEL_WARN;

	/* A setuid process must not create or append to a file the invoking
	 * user named. */
	if (dest == LOG_DEST_FILE && getauxval(AT_SECURE) != 0)
		dest = LOG_DEST_STDERR;

	stderr_remember();
	pthread_mutex_lock(&log_lock);
	if (dest != LOG_DEST_FILE ||
	    strncmp(file_path, c->log_path, sizeof(file_path)) != 0) {
		sink_set(&file_sink, -1);
		if (dest == LOG_DEST_FILE)
			strlcpy(file_path, c->log_path, sizeof(file_path));
		else
			file_path[0] = '\0';
	}
	if (dest != LOG_DEST_SYSLOG)
		sink_set(&syslog_sink, -1);
	atomic_store(&cur_dest, (int)dest);
	atomic_store(&cur_level, (int)level);
	pthread_mutex_unlock(&log_lock);
	errno = saved_errno;
}

void
log_fork_prepare(void)
{
	pthread_mutex_lock(&log_lock);
}

void
log_fork_parent(void)
{
	pthread_mutex_unlock(&log_lock);
}

/* The child has one thread: the lock is made new, never unlocked by a
 * thread that may not own it. A sink the child closed (its copies of our
 * fds: runtime.c) fails sink_fd's check and is opened again by the
 * child's first line. */
void
log_fork_child(void)
{
	pthread_mutex_init(&log_lock, NULL);
}
