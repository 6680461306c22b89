/*
 * The ends of a connection and of a process while bytes are still spooled:
 * close, shutdown(SHUT_WR), exit, _exit, _Exit and return from main, an
 * abortive close, an exit that outlasts the linger time, kill -9; a fd
 * number reused after a deferred close; writes through a duplicated fd; a
 * forked child that outlives the connection; the peer resetting the
 * connection in the middle of the replay.
 *
 * As in test_server_a.c, small buffers and gated readers make server_a's
 * writes meet a full window, so every end here happens with a spool.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "harness.h"

#define COUNT		"40000"
#define BYTES		(40000LL * 28)

/* Drains at exit are bounded by the linger time: give them room. */
static const char *const linger_env[] = { "TCPSPOOL_LINGER=60s", NULL };

TestSuite(lifecycle, .init = h_setup, .fini = h_teardown,
    .timeout = H_TEST_TIMEOUT);

Test(lifecycle, close_with_pending_spool_delivers_then_fins)
{
	struct h_spawn o = { .preload = true, .env = linger_env, .nfds = 1 };
	struct h_story st;
	struct h_gate hold;

	/* server_a closes, then stays alive until we open `hold`: the EOF
	 * the reader sees comes from the deferred close, not from the end of
	 * the process. The reader's unread request would make a plain close
	 * send RST (and the reader lose its unread tail). */
	h_gate_init(&hold);
	o.fds[0].child = 5;
	o.fds[0].parent = hold.rfd;
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT,
	        "--end=close-hold", "--resume-fd=5", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--send=1000",
	        "--read-size=2000", "--pause-us=20", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish_readers(&st);
	cr_expect_eq(h_exit_code(st.server), -1, "server_a ended before its "
	    "reader got EOF: %s", h_describe(st.server));
	h_gate_open(&hold);
	h_story_wait_server(&st);
	h_story_assert_delivered(&st, BYTES);
}

/* Connects to port with a small receive window; the socket, blocking. */
static int
small_window_connect(unsigned short port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd, rcvbuf = 4096;

	cr_assert((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	cr_assert(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
	    sizeof(rcvbuf)) == 0);
	cr_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "connect: %s", strerror(errno));
	return fd;
}

/*
 * The peer has every byte and EOF, and keeps its end open: the stream
 * lingers, and its stream dir is already gone. It went before the FIN, so
 * a process that is killed once its peer saw EOF leaves nothing on disk
 * (review: the dir stayed until the replay thread handled the peer's
 * close, which a slow unlink of another stream's dir held up for half a
 * second; a SIGTERM then left it forever, status "lingering").
 */
Test(lifecycle, lingering_stream_holds_no_spool_once_the_peer_has_eof)
{
	struct h_spawn o = { .preload = true, .env = linger_env, .nfds = 1 };
	static char buf[65536];
	struct h_proc *server;
	unsigned short port;
	struct h_gate hold;
	long long got = 0;
	char files[1024];
	ssize_t n;
	int fd;

	h_gate_init(&hold);
	o.fds[0].child = 5;
	o.fds[0].parent = hold.rfd;
	server = h_server_a(&o, &port, "--sndbuf=4096", "--count=" COUNT,
	    "--end=close-hold", "--resume-fd=5", NULL);
	fd = small_window_connect(port);
	/* Nothing read until server_a wrote it all and closed: it spooled. */
	cr_assert_not_null(h_status_line(server, "done ", 0, H_DEADLINE_MS),
	    "server_a did not finish writing: %s", h_describe(server));
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0 ||
	    (n < 0 && errno == EINTR))
		got += n > 0 ? n : 0;
	cr_assert_eq(n, 0, "recv: %s", strerror(errno));
	cr_assert_eq(got, BYTES);
	/* EOF seen, our end still open: no wait, the dir must be gone. */
	cr_expect_eq(h_spool_files(files, sizeof(files)), 0, "the peer saw "
	    "EOF, yet the lingering stream still holds files: %s", files);
	cr_expect_eq(h_exit_code(server), -1, "server_a ended before its "
	    "reader closed: %s", h_describe(server));
	close(fd);
	h_gate_open(&hold);
	cr_assert(h_wait(server, H_DEADLINE_MS), "server_a did not exit: %s",
	    h_describe(server));
	cr_expect_eq(h_exit_code(server), 0, "%s", h_describe(server));
	cr_expect(h_spool_wait_empty(10000), "spool dir not empty at the "
	    "end: %d files", h_spool_files(NULL, 0));
}

Test(lifecycle, shutdown_wr_with_pending_spool_is_deferred)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;

	/* server_a shuts down its write side right after its last write,
	 * then reads until the reader closes: a FIN sent before the spooled
	 * bytes would end the reader's stream early. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT,
	        "--end=shutdown-wait", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, BYTES);
}

/* How server_a ends right after its last write. */
struct end_case {
	char end[16];
	bool no_fork;
};

static struct end_case end_cases[] = {
	{ "close-exit", false },
	{ "exit", false },
	{ "_exit", false },
	{ "_Exit", false },
	{ "return", false },
	{ "close-return", false },
	{ "exit", true },
	{ "_exit", true },
	{ "return", true },
};

ParameterizedTestParameters(lifecycle, process_end_with_pending_spool_delivers)
{
	return cr_make_param_array(struct end_case, end_cases,
	    sizeof(end_cases) / sizeof(end_cases[0]));
}

ParameterizedTest(struct end_case *c, lifecycle,
    process_end_with_pending_spool_delivers)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;
	char end[32];

	snprintf(end, sizeof(end), "--end=%s", c->end);
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, end,
	        c->no_fork ? "--no-fork" : "--size=28", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, BYTES);
}

Test(lifecycle, fd_reuse_after_deferred_close_starts_fresh)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;
	const char *first, *second;

	/* One process serves two connections in turn: the first is closed
	 * with its spool pending, the second gets the same fd number. Its
	 * bytes must go to the second reader, directly, not behind (or into)
	 * the first connection's spool. */
	h_story_start(&st, &o, 2,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, "--no-fork",
	        NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 2);
	first = h_status_line(st.server, "done ", 0, 0);
	second = h_status_line(st.server, "done ", 1, 0);
	cr_expect_eq(h_field(first, "fd"), h_field(second, "fd"),
	    "the fd number was not reused after the deferred close "
	    "(\"%s\", \"%s\"): the application's fd must be released at once",
	    first, second);
	h_story_finish(&st);
	h_story_assert_delivered(&st, BYTES);
}

Test(lifecycle, peer_reset_mid_replay_fails_next_write_without_sigpipe)
{
	/* A generous quota: a library that never notices the reset makes
	 * server_a see EAGAIN (exit 3) at 64 MiB rather than fill the disk. */
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		"TCPSPOOL_MAX_STREAM=64M", NULL };
	struct h_spawn o = { .preload = true, .env = env, .nfds = 1 };
	char files[2048];
	struct h_story st;
	struct h_gate resume;
	const char *line;
	long long e;

	/* server_a writes 20000 messages (560 KB, spooled), then waits; the
	 * reader reads 64 KiB and resets the connection (SO_LINGER {1, 0});
	 * then server_a writes on (without MSG_NOSIGNAL, as legacy code does)
	 * until a write fails. */
	h_gate_init(&resume);
	o.fds[0].child = 5;
	o.fds[0].parent = resume.rfd;
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=0", "--pause-at=20000",
	        "--resume-fd=5", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=4096",
	        "--reset-after=65536", "--count=100000000", NULL });
	h_story_wait_status(&st, "paused ", 1);
	h_story_finish_readers(&st);
	cr_assert_eq(h_exit_code(st.reader[0]), 0, "the reader did not read "
	    "a clean prefix and reset: %s", h_describe(st.reader[0]));
	h_gate_open(&resume);
	h_story_wait_server(&st);

	cr_assert(!h_killed_by(st.server, SIGPIPE), "server_a died of SIGPIPE: "
	    "%s", h_describe(st.server));
	line = h_status_line(st.server, "error ", 0, 0);
	cr_assert(line != NULL && h_exit_code(st.server) == 4, "server_a's "
	    "writes did not fail after the reset: %s; status:\n%s",
	    h_describe(st.server), h_status_text(st.server));
	e = h_field(line, "errno");
	cr_expect(e == EPIPE || e == ECONNRESET, "the failed write gave errno "
	    "%lld, not EPIPE or ECONNRESET (%s)", e, line);
	cr_expect_gt(h_spool_files(files, sizeof(files)), 0, "no orphan spool "
	    "was left for the undelivered bytes");
	cr_expect_eq(h_stdout_size(st.server), 0, "server_a wrote on stdout");
}

Test(lifecycle, abort_close_discards_the_spool_and_resets)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;
	struct h_result *r = &st.result[0];

	/* SO_LINGER {1, 0} then close: the application asks for a reset, so
	 * the spool is discarded rather than delivered. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT,
	        "--end=abort-exit", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);

	cr_expect_eq(h_exit_code(st.server), 0, "%s", h_describe(st.server));
	cr_assert(r->valid, "%s", h_describe(st.reader[0]));
	cr_expect_eq(r->mismatch, -1, "the stream differs at byte %lld",
	    r->mismatch);
	cr_expect_lt(r->bytes, BYTES, "the spool was delivered despite the "
	    "abortive close");
	cr_expect_str_eq(r->end, "ECONNRESET", "the abortive close did not "
	    "reset the connection (%lld bytes, then %s)", r->bytes, r->end);
	cr_expect(h_spool_wait_empty(10000), "the discarded spool is still "
	    "on disk");
}

Test(lifecycle, exit_past_linger_leaves_an_orphan_and_says_so)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=300ms", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	struct h_result *r = &st.result[0];
	struct h_proc *cli;
	char out[4096];

	/* The reader reads nothing until server_a has exited: its exit can
	 * only wait the linger time, then leave the rest on disk. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_wait_server(&st);
	cr_expect_eq(h_exit_code(st.server), 0, "%s", h_describe(st.server));
	cr_expect_gt(h_spool_files(NULL, 0), 0, "nothing was left on disk");
	cr_expect_geq(h_stderr_lines_with(st.server, h_spool_dir()), 1,
	    "no log line names the orphan spool: %s", h_describe(st.server));
	cli = h_cli(out, sizeof(out), "verify", "--dir", h_spool_dir(), NULL);
	cr_expect_eq(h_exit_code(cli), 0, "tcpspool verify: %s\n%s",
	    h_describe(cli), out);
	h_story_finish_readers(&st);
	cr_expect(r->valid && r->mismatch == -1 && r->bytes < BYTES,
	    "the reader should get a clean, short prefix: %s",
	    h_describe(st.reader[0]));
	cr_expect_eq(h_stdout_size(st.server), 0);
}

Test(lifecycle, kill_9_leaves_a_spool_the_cli_verifies)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;
	struct h_proc *cli;
	char out[4096];

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	/* server_a's child is waiting for its spool to drain at exit. */
	h_kill_group(st.server, SIGKILL);
	h_story_wait_server(&st);
	cr_expect_gt(h_spool_files(NULL, 0), 0, "nothing on disk after kill -9");
	cli = h_cli(out, sizeof(out), "verify", "--dir", h_spool_dir(), NULL);
	cr_expect_eq(h_exit_code(cli), 0, "tcpspool verify after kill -9: "
	    "%s\n%s", h_describe(cli), out);
	cli = h_cli(out, sizeof(out), "ls", "--json", "--dir", h_spool_dir(),
	    NULL);
	cr_expect_eq(h_exit_code(cli), 0, "tcpspool ls: %s", h_describe(cli));
	/* The stream is listed from its files (its status may not have been
	 * published before the kill). */
	cr_expect(strstr(out, "\"stream\":") != NULL &&
	    strstr(out, "\"records\":") != NULL, "tcpspool ls shows no "
	    "stream: %s", out);
	h_story_finish_readers(&st);
}

Test(lifecycle, forked_child_does_not_keep_the_connection_open)
{
	struct h_spawn o = { .preload = true, .env = linger_env, .nfds = 1 };
	struct h_story st;
	struct h_gate hold;
	long long held;

	/* After its last write server_a forks a child that closes its copy
	 * of the connection and lives on. The reader must get EOF while that
	 * child lives: the child must not keep the library's private
	 * duplicate of the connection. */
	h_gate_init(&hold);
	o.fds[0].child = 5;
	o.fds[0].parent = hold.rfd;
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT,
	        "--fork-hold", "--resume-fd=5", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--idle-timeout=20000", "--count=" COUNT,
	        NULL });
	h_story_wait_status(&st, "done ", 1);
	held = h_field(h_status_line(st.server, "held ", 0, H_DEADLINE_MS),
	    "pid");
	cr_assert_gt(held, 0, "no forked child reported: %s",
	    h_status_text(st.server));
	h_story_finish_readers(&st);
	cr_expect_eq(kill((pid_t)held, 0), 0, "the forked child ended before "
	    "the reader: the test proves nothing");
	h_gate_open(&hold);
	h_story_wait_server(&st);
	h_story_assert_delivered(&st, BYTES);
}

static struct end_case dup_cases[] = {
	{ "dup", false }, { "dup2", false }, { "dup3", false },
	{ "fcntl", false },
};

ParameterizedTestParameters(lifecycle, writes_through_a_duplicate_fd_stay_in_order)
{
	return cr_make_param_array(struct end_case, dup_cases,
	    sizeof(dup_cases) / sizeof(dup_cases[0]));
}

ParameterizedTest(struct end_case *c, lifecycle,
    writes_through_a_duplicate_fd_stay_in_order)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;
	char dup[32];

	/* Writes alternate between the fd and its duplicate (one connection,
	 * two numbers); the duplicate is closed first, with bytes spooled. */
	h_fmt(dup, sizeof(dup), "--dup-with=%s", c->end);
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, dup, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, BYTES);
}

Test(lifecycle, posix_spawn_while_spooling_keeps_working)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;

	/* glibc's posix_spawn is vfork and exec: the child shares the
	 * parent's memory until exec, and must neither deadlock on the
	 * library's locks nor disturb the parent's streams. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT,
	        "--spawn=/bin/true", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "spawned ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, BYTES);
}
