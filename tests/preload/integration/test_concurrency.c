/*
 * Concurrency (suite 'concurrency', also run under TSan): server A forking
 * a child per connection for 50 slow readers at once, and two threads
 * writing whole messages to one socket, each thread's order checked.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "harness.h"

TestSuite(concurrency, .init = h_setup, .fini = h_teardown,
    .timeout = H_TEST_TIMEOUT);

Test(concurrency, fork_per_connection_50_slow_readers_each_get_their_stream)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
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

Test(concurrency, two_threads_on_one_fd_keep_each_thread_in_order)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
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
