/*
 * The ends of a connection and of a process while bytes are still spooled:
 * close, shutdown(SHUT_WR), exit, _exit, _Exit and return from main; a fd
 * number reused after a deferred close; the peer resetting the connection
 * in the middle of the replay.
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
