/*
 * Concurrency (suites 'preload' and 'concurrency'): server A forking a
 * child per connection for 50 slow readers at once, and two threads
 * writing whole messages to one socket, each thread's order checked;
 * and the thread and signal scenarios of issue 11 (dropin.c).
 *
 * A plain program (exit status 0 = pass), not Criterion, because the TSan
 * build runs suite 'concurrency' and Criterion cannot start under TSan. It
 * runs the scenario named by its argument (or all of them).
 */
#include <stdio.h>
#include <string.h>

#include "dropin.h"

static const char *const linger_env[] = { "TCPSPOOL_LINGER=60s", NULL };

static void
fork_per_connection_50_slow_readers_each_get_their_stream(void)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;

	/* 50 x 10000 messages: 280 KB each, 14 MB in all, spooled in 50
	 * forked children at once. */
	h_story_start(&st, &o, 50,
	    (const char *[]){ "--sndbuf=4096", "--count=10000", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=100", "--count=10000", NULL });
	h_story_wait_status(&st, "done ", 50);
	h_story_finish(&st);
	h_story_assert_delivered(&st, 10000LL * 28);
}

static void
two_threads_on_one_fd_keep_each_thread_in_order(void)
{
	struct h_spawn o = { .preload = true, .env = linger_env };
	struct h_story st;

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=20000", "--threads=2",
	        NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--count=20000", "--threads=2", NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, 2 * 20000LL * 28);
}

static const struct {
	const char *name;
	void (*run)(void);
} scenarios[] = {
	{ "fork_per_connection_50_slow_readers_each_get_their_stream",
	  fork_per_connection_50_slow_readers_each_get_their_stream },
	{ "two_threads_on_one_fd_keep_each_thread_in_order",
	  two_threads_on_one_fd_keep_each_thread_in_order },
	/* Issue 11's thread and signal scenarios (dropin.c). */
	{ "shutdown_from_another_thread_unblocks_a_blocked_send",
	  shutdown_from_another_thread_unblocks_a_blocked_send },
	{ "close_from_another_thread_returns_while_a_send_is_blocked",
	  close_from_another_thread_returns_while_a_send_is_blocked },
	{ "sigterm_handler_calling_exit_ends_a_spooling_process_at_once",
	  sigterm_handler_calling_exit_ends_a_spooling_process_at_once },
	{ "sigterm_in_main_thread_exit_delivers_what_was_sent_and_ends",
	  sigterm_in_main_thread_exit_delivers_what_was_sent_and_ends },
	{ "write_from_a_signal_handler_to_a_spooling_socket_does_not_deadlock",
	  write_from_a_signal_handler_to_a_spooling_socket_does_not_deadlock },
};

int
main(int argc, char **argv)
{
	int ran = 0;

	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (argc > 1 && strcmp(argv[1], scenarios[i].name) != 0)
			continue;
		h_setup();
		scenarios[i].run();
		h_teardown();
		fprintf(stderr, "%s: %s\n", scenarios[i].name,
		    h_failures() ? "FAILED" : "ok");
		ran++;
	}
	if (ran == 0) {
		fprintf(stderr, "usage: %s [scenario]\n", argv[0]);
		return 2;
	}
	return h_failures() ? 1 : 0;
}
