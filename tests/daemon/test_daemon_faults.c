/*
 * test_daemon_faults.c — tcpspool daemon under faults (issue 15's cold
 * review): a take the daemon cannot keep is answered and the process
 * keeps its stream; a process that execs leaves no copy behind to
 * corrupt its connection later; forged takes hold nothing; `tcpspool
 * run --daemon` leaves no fd of its caller to the daemon.
 *
 * Every wait is on a condition with a deadline; no Criterion .timeout.
 * The daemon helpers are daemon_util.c's.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon_util.h"
#include "spool.h"

TestSuite(daemon_faults, .init = h_setup, .fini = h_teardown);

/* The number of fds open in pid below limit. */
static int
fds_below(pid_t pid, int limit)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	cr_assert((d = opendir(path)) != NULL);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && atoi(e->d_name) < limit)
			n++;
	closedir(d);
	return n;
}

/* The sockets pid holds. */
static int
socket_fds(pid_t pid)
{
	char path[64], fdp[320], link[128];
	struct dirent *e;
	ssize_t l;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	cr_assert((d = opendir(path)) != NULL);
	while ((e = readdir(d)) != NULL) {
		snprintf(fdp, sizeof(fdp), "%s/%s", path, e->d_name);
		if ((l = readlink(fdp, link, sizeof(link) - 1)) > 0 &&
		    strncmp(link, "socket:", 7) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/*
 * The least RLIMIT_NOFILE that leaves pid (the daemon) exactly free fd
 * numbers, measured once it holds no connection: its listener is its
 * one socket (a probe's connection is closed after its answer is read).
 */
static rlim_t
limit_leaving(pid_t pid, int free_fds)
{
	int64_t until = now_ms() + DEADLINE_MS;
	int l;

	while (socket_fds(pid) != 1) {
		cr_assert(now_ms() < until, "the daemon keeps a connection");
		tick();
	}

	for (l = 1; l < 65536; l++)
		if (l - fds_below(pid, l) >= free_fds)
			return (rlim_t)l;
	cr_assert_fail("no limit found");
	return 0;
}

/*
 * The daemon runs out of fds: it accepts the library's connection and
 * receives the socket's duplicate, but cannot open the stream's segment
 * to check its owner. It must say no, so that the process lingers at
 * exit for the 8 MB it spooled: the client gets every byte. (Before, the
 * take was dropped in silence and the process, believing the stream
 * held, exited at once: the bytes were lost.)
 */
Test(daemon_faults, take_the_daemon_cannot_keep_stays_the_process_s)
{
	enum { MSGS = 300000 };	/* 8.4 MB */
	static const char *const env[] = { "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env, .nfds = 1 };
	struct rlimit was, low;
	struct h_gate resume;
	struct h_story st;
	struct h_proc *dmn;
	char count[64], pause[64];

	dmn = daemon_start();
	(void)daemon_status();	/* its probe connection is closed */
	/* Its start sweep's fds (the sweep lock, a dir listing) closed too:
	 * the count below is of the fds it keeps. */
	wait_stderr(dmn, "first sweep of");
	cr_assert_eq(prlimit(h_pid(dmn), RLIMIT_NOFILE, NULL, &was), 0);
	low.rlim_cur = low.rlim_max = limit_leaving(h_pid(dmn), 2);
	/* Two fds: the library's connection, the passed duplicate. */
	cr_assert_eq(prlimit(h_pid(dmn), RLIMIT_NOFILE, &low, NULL), 0, "%s",
	    strerror(errno));
	h_gate_init(&resume);
	o.fds[0].child = 5;
	o.fds[0].parent = resume.rfd;
	h_fmt(count, sizeof(count), "--count=%d", MSGS);
	h_fmt(pause, sizeof(pause), "--pause-at=%d", MSGS);
	h_story_start(&st, &o, 1,
	    (const char *[]){ count, "--no-fork", pause, "--resume-fd=5",
	        "--end=exit", NULL },
	    (const char *[]){ count, NULL });
	h_story_wait_status(&st, "paused ", 1);
	wait_stderr(dmn, "refused");
	cr_expect_geq(h_stderr_lines_with(dmn, "Too many open files"), 1,
	    "the real errno is logged: %s", h_stderr(dmn));
	/* Room again for the status connection (prlimit raises the hard
	 * limit of a process of ours only as root; otherwise it stays low
	 * and the status is not asked). */
	if (prlimit(h_pid(dmn), RLIMIT_NOFILE, &was, NULL) == 0)
		cr_expect_eq(count_lines(daemon_status(), "held "), 0);
	h_gate_open(&resume);	/* exit with 8 MB spooled */
	h_story_finish_readers(&st);
	h_story_wait_server(&st);
	cr_expect(st.result[0].bytes == (long long)MSGS * REL_MSG &&
	    st.result[0].mismatch == -1 && strcmp(st.result[0].end, "EOF") ==
	    0, "client: bytes=%lld of %lld end=%s; daemon: %s; server: %s",
	    st.result[0].bytes, (long long)MSGS * REL_MSG, st.result[0].end,
	    h_stderr(dmn), h_stderr(st.server));
	daemon_stop(dmn);
}

/* A TCP connection on loopback: *srv the accepted end, returns the
 * client's end (receive buffer small: the sender meets a full window). */
static int
tcp_pair(int *srv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int ls, c, rcv = 65536;

	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof(sa)) ==
	    0 && listen(ls, 1) == 0);
	cr_assert_eq(getsockname(ls, (struct sockaddr *)&sa, &len), 0);
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(c, 0);
	(void)setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*srv = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(*srv, 0);
	close(ls);
	return c;
}

/* Waits until pid runs a program named comm (it exec'd). */
static void
wait_comm(pid_t pid, const char *comm)
{
	int64_t until = now_ms() + DEADLINE_MS;
	char path[64], buf[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	for (;;) {
		buf[0] = '\0';
		if ((f = fopen(path, "r")) != NULL) {
			if (fgets(buf, sizeof(buf), f) == NULL)
				buf[0] = '\0';
			fclose(f);
		}
		buf[strcspn(buf, "\n")] = '\0';
		if (strcmp(buf, comm) == 0)
			return;
		cr_assert(now_ms() < until, "pid %d never ran %s (%s)",
		    (int)pid, comm, buf);
		tick();
	}
}

/*
 * A spooling server execs a shell on its connection: the shell writes
 * XYZ and closes it. What the old program had spooled is lost (as
 * without the daemon), but the daemon must not keep its copy for the new
 * program's life and deliver the old spool after XYZ when the shell
 * ends: the client sees the pattern, then XYZ, then EOF.
 */
Test(daemon_faults, exec_while_spooling_leaves_no_copy_to_corrupt_the_stream)
{
	enum { BYTES = 8 << 20 };
	static const char *const env[] = { "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env, .nfds = 2 };
	struct h_argv a = { 0 };
	struct h_gate go;
	struct h_proc *dmn, *host;
	char bytes[32], *got;
	size_t have = 0, cap = 1 << 20;
	int64_t until;
	int c, srv, i;
	ssize_t n;

	dmn = daemon_start();
	c = tcp_pair(&srv);
	h_gate_init(&go);
	o.fds[0].child = 3;
	o.fds[0].parent = srv;
	o.fds[1].child = 4;
	o.fds[1].parent = go.rfd;
	h_fmt(bytes, sizeof(bytes), "%d", BYTES);
	h_args(&a, bytes, "printf XYZ >&3; exec 3>&-; sleep 1", NULL);
	host = h_spawn("exec_host", EXEC_HOST, &a, &o);
	close(srv);
	wait_held(1);
	/* The exec while the stream spools: the client reads only after
	 * it (reading before would let the process drain the spool). */
	h_gate_open(&go);
	wait_comm(h_pid(host), "sh");
	got = malloc(cap);
	cr_assert_not_null(got);
	until = now_ms() + DEADLINE_MS;
	for (;;) {
		struct pollfd p = { .fd = c, .events = POLLIN };

		if (have == cap)
			cr_assert_not_null(got = realloc(got, cap *= 2));
		n = recv(c, got + have, cap - have, MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n > 0) {
			have += (size_t)n;
			continue;
		}
		cr_assert(errno == EAGAIN, "recv: %s", strerror(errno));
		cr_assert(now_ms() < until, "no EOF: %zu bytes", have);
		(void)poll(&p, 1, 100);
	}
	close(c);
	cr_assert(h_wait(host, DEADLINE_MS));
	cr_assert_geq(have, 3);
	for (i = 0; i < (int)have - 3; i++)
		if ((unsigned char)got[i] != (unsigned char)(i % 253))
			break;
	cr_expect(i == (int)have - 3 && memcmp(got + have - 3, "XYZ", 3) == 0,
	    "%zu bytes: the pattern ends at %d, then \"%.3s\"; daemon: %s",
	    have, i, got + (i < (int)have ? i : 0), h_stderr(dmn));
	free(got);
	cr_expect_eq(count_lines(daemon_status(), "held "), 0);
	cr_expect_eq(h_stderr_lines_with(dmn, "delivering its spool"), 0,
	    "%s", h_stderr(dmn));
	/* The old program's spool is an orphan on disk now: the harness's
	 * empty-dir check is not this test's. */
	kill(h_pid(dmn), SIGTERM);
	cr_assert(h_wait(dmn, DEADLINE_MS));
	{
		char cmd[PATH_MAX + 16];

		h_fmt(cmd, sizeof(cmd), "rm -rf %s/*", h_spool_dir());
		cr_assert_eq(system(cmd), 0);
	}
}

/* Does pid hold a fd on the pipe whose inode is ino? */
static bool
holds_pipe(pid_t pid, unsigned long ino)
{
	char path[64], fdp[320], link[128], want[64];
	struct dirent *e;
	bool found = false;
	DIR *d;
	ssize_t l;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	snprintf(want, sizeof(want), "pipe:[%lu]", ino);
	if ((d = opendir(path)) == NULL)
		return false;
	while (!found && (e = readdir(d)) != NULL) {
		snprintf(fdp, sizeof(fdp), "%s/%s", path, e->d_name);
		if ((l = readlink(fdp, link, sizeof(link) - 1)) <= 0)
			continue;
		link[l] = '\0';
		found = strcmp(link, want) == 0;
	}
	closedir(d);
	return found;
}

/*
 * x=$(tcpspool run --daemon -- true 2>&1): the shell reads the pipe
 * until every writer is gone. The daemon started on the way must keep
 * no end of it (nor any other fd of its caller), or the command
 * substitution never returns.
 */
Test(daemon_faults, run_with_daemon_returns_in_a_command_substitution)
{
	static char out[4096];
	struct stat st;
	int64_t until;
	size_t have = 0;
	long long dpid;
	int pfd[2], status;
	pid_t pid;
	ssize_t n;

	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	cr_assert_eq(fstat(pfd[0], &st), 0);
	if ((pid = fork()) == 0) {
		(void)dup2(pfd[1], STDOUT_FILENO);
		(void)dup2(pfd[1], STDERR_FILENO);
		/* and one more inherited fd, as a shell's would be */
		(void)dup2(pfd[1], 9);
		unsetenv("TCPSPOOL_LOG");
		execl(getenv("TCPSPOOL_TEST_CLI"), "tcpspool", "run",
		    "--daemon", "--dir", h_spool_dir(), "--", "/bin/true",
		    (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* The daemon answers within 5 s or run fails: 30 s is ample. */
	until = now_ms() + 30000;
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };

		if (poll(&p, 1, 100) > 0) {
			if ((n = read(pfd[0], out + have, sizeof(out) - 1 -
			    have)) <= 0)
				break;
			have += (size_t)n;
		}
		if (now_ms() >= until)
			break;
	}
	out[have] = '\0';
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s", out);
	dpid = strtoll(daemon_status() + 11, NULL, 10);
	cr_assert_gt(dpid, 0);
	cr_expect(!holds_pipe((pid_t)dpid, (unsigned long)st.st_ino),
	    "the daemon holds the caller's pipe");
	cr_expect(now_ms() < until, "the pipe never ended: %s", out);
	close(pfd[0]);
	cr_assert_eq(kill((pid_t)dpid, SIGTERM), 0);
	until = now_ms() + DEADLINE_MS;
	{
		char path[PATH_MAX];

		sock_path(path, sizeof(path));
		while (access(path, F_OK) == 0) {
			cr_assert(now_ms() < until, "the daemon ignores "
			    "SIGTERM");
			tick();
		}
	}
}

/* The daemon's one-byte answer on fd, 0 when it closed the connection,
 * -1 when nothing came in time. */
static int
answer_of(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;

	if (poll(&p, 1, DEADLINE_MS) != 1)
		return -1;
	return recv(fd, &b, 1, 0) == 1 ? (unsigned char)b : 0;
}

/* A take as the library sends it, passing fd, on a new connection. */
static int
send_take(int32_t pid, const char *name, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct spool_ho_msg m = { .magic = SPOOL_HO_MAGIC,
	    .kind = SPOOL_HO_TAKE, .pid = pid };
	struct iovec iov = { &m, sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	int conn;

	strlcpy(m.name, name, sizeof(m.name));
	memset(&u, 0, sizeof(u));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	conn = daemon_connect();
	cr_assert_geq(conn, 0);
	cr_assert_eq(sendmsg(conn, &mh, MSG_NOSIGNAL), (ssize_t)sizeof(m),
	    "%s", strerror(errno));
	return conn;
}

/* The daemon closed its copy of the socketpair end we gave it: our
 * other end sees EOF (we closed our copy of the given end). */
static bool
copy_closed(int other)
{
	struct pollfd p = { .fd = other, .events = POLLIN };
	char b;

	return poll(&p, 1, DEADLINE_MS) == 1 && recv(other, &b, 1,
	    MSG_DONTWAIT) == 0;
}

/*
 * Takes with a real descriptor, from a peer of the daemon's own uid:
 * naming a live process's stream as its own (forged name), or in that
 * process's name (forged pid). Neither is held; the real stream's copy
 * stays the one its process gave.
 */
Test(daemon_faults, forged_takes_with_a_real_descriptor_hold_nothing)
{
	enum { MSGS = 1000000 };
	static const char *const env[] = { "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env, .nfds = 1 };
	struct h_gate resume;
	struct h_story st;
	struct h_proc *dmn;
	char count[64], names[4][32], line[128];
	int sp[2], conn;
	pid_t owner;

	dmn = daemon_start();
	h_gate_init(&resume);
	o.fds[0].child = 5;
	o.fds[0].parent = resume.rfd;
	h_fmt(count, sizeof(count), "--count=%d", MSGS);
	h_story_start(&st, &o, 1,
	    (const char *[]){ count, "--no-fork", "--pause-at=1000000",
	        "--resume-fd=5", NULL },
	    (const char *[]){ count, NULL });
	h_story_wait_status(&st, "paused ", 1);
	wait_held(1);
	cr_assert_eq(rel_streams(h_spool_dir(), names, 4), 1);
	owner = h_pid(st.server);
	h_fmt(line, sizeof(line), "held %s pid %d", names[0], (int)owner);
	cr_assert(strstr(daemon_status(), line) != NULL, "%s",
	    daemon_status());

	/* Forged name: our pid, its stream. Refused, answered, closed. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp),
	    0);
	conn = send_take((int32_t)getpid(), names[0], sp[0]);
	close(sp[0]);
	cr_expect_eq(answer_of(conn), SPOOL_HO_REFUSED);
	cr_expect(copy_closed(sp[1]), "the daemon kept a forged name's fd");
	close(sp[1]);
	close(conn);

	/* Forged pid: its pid, its stream, sent by us. Dropped. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp),
	    0);
	conn = send_take((int32_t)owner, names[0], sp[0]);
	close(sp[0]);
	cr_expect_eq(answer_of(conn), 0, "a forged pid was not dropped");
	cr_expect(copy_closed(sp[1]), "the daemon kept a forged pid's fd");
	close(sp[1]);
	close(conn);

	cr_expect_eq(count_lines(daemon_status(), "held "), 1);
	cr_expect(strstr(daemon_status(), line) != NULL, "%s",
	    daemon_status());
	h_gate_open(&resume);
	h_story_finish(&st);
	daemon_stop(dmn);
	h_story_assert_delivered(&st, (long long)MSGS * REL_MSG);
}

/*
 * A take for a stream whose dir is gone (its process delivered and
 * removed it before the daemon read the take: common for a short
 * spool). Refused, answered, the fd closed; and the daemon's log says
 * why, as the process's log line ("refused (its log says why)") tells
 * the reader to look there.
 */
Test(daemon_faults, take_of_a_removed_stream_is_refused_and_said)
{
	struct h_proc *dmn;
	int sp[2], conn;

	dmn = daemon_start();
	wait_stderr(dmn, "first sweep of");
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp),
	    0);
	conn = send_take((int32_t)getpid(), "00000000deadbeef", sp[0]);
	close(sp[0]);
	cr_expect_eq(answer_of(conn), SPOOL_HO_REFUSED);
	cr_expect(copy_closed(sp[1]), "the daemon kept a removed stream's fd");
	close(sp[1]);
	close(conn);
	wait_stderr(dmn, "00000000deadbeef not taken: delivered and removed");
	cr_expect_null(strstr(h_stderr(dmn), "warn:"), "%s", h_stderr(dmn));
	daemon_stop(dmn);
}

/*
 * The daemon out of fds. A take whose descriptor the kernel could not
 * install (MSG_CTRUNC) is refused and answered, the connection kept;
 * then, with no fd left at all, a new peer is accepted and closed at
 * once (the spare fd), not left in the backlog with the listener
 * readable for ever (the daemon spun at 97% CPU).
 */
Test(daemon_faults, daemon_out_of_fds_answers_and_sheds_peers)
{
	struct rlimit was, low;
	struct h_proc *dmn;
	int sp[2], a, b;

	dmn = daemon_start();
	(void)daemon_status();
	cr_assert_eq(prlimit(h_pid(dmn), RLIMIT_NOFILE, NULL, &was), 0);
	low.rlim_cur = low.rlim_max = limit_leaving(h_pid(dmn), 1);
	cr_assert_eq(prlimit(h_pid(dmn), RLIMIT_NOFILE, &low, NULL), 0, "%s",
	    strerror(errno));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp),
	    0);
	a = send_take((int32_t)getpid(), "0123456789abcdef", sp[0]);
	close(sp[0]);
	cr_expect_eq(answer_of(a), SPOOL_HO_REFUSED, "%s", h_stderr(dmn));
	cr_expect(copy_closed(sp[1]));
	close(sp[1]);
	wait_stderr(dmn, "could not be received");
	/* a holds the last fd: the next peer is shed. */
	b = daemon_connect();
	cr_assert_geq(b, 0);
	cr_expect_eq(answer_of(b), 0, "the peer was never shed");
	wait_stderr(dmn, "a peer turned away");
	close(b);
	close(a);
	if (prlimit(h_pid(dmn), RLIMIT_NOFILE, &was, NULL) == 0)
		cr_expect_eq(count_lines(daemon_status(), "held "), 0);
	daemon_stop(dmn);
}
