/*
 * The per-stream quota (TCPSPOOL_MAX_STREAM) under each overflow policy.
 * server_a writes 1.1 MB into a 256 KiB quota:
 *   eagain  server_a sees EAGAIN as it would without the library (and gives
 *           up, exit 3), and every byte it was told it sent before that
 *           still reaches the reader, then EOF;
 *   drop    server_a never sees EAGAIN; writes over the quota are dropped
 *           whole (never torn), counted (tcpspool ls shows the count while
 *           the stream lives), and logged; what arrives is whole messages
 *           in order, some missing;
 *   block   server_a waits for room while the reader drains, then goes on:
 *           everything arrives.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define COUNT		"40000"
#define BYTES		(40000LL * 28)
#define QUOTA		(256LL * 1024)

/*
 * The largest "drops" figure `tcpspool ls --json` shows for the spool dir,
 * asked again (a bounded retry on the condition) until it is non-zero:
 * the library publishes a stream's status from time to time.
 */
static long long
published_drops(void)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		char out[8192];
		long long most = 0;
		struct h_proc *cli = h_cli(out, sizeof(out), "ls", "--json",
		    "--dir", h_spool_dir(), NULL);

		cr_assert_eq(h_exit_code(cli), 0, "%s", h_describe(cli));
		for (const char *s = out; (s = strstr(s, "\"drops\":")) != NULL;
		    s++) {
			long long n = strtoll(s + 8, NULL, 10);

			if (n > most)
				most = n;
		}
		if (most > 0)
			return most;
		poll(NULL, 0, 100);
	}
	return 0;
}

TestSuite(overflow, .init = h_setup, .fini = h_teardown,
    .timeout = H_TEST_TIMEOUT);

Test(overflow, eagain_at_quota_loses_no_byte_told_sent)
{
	static const char *const env[] = { "TCPSPOOL_MAX_STREAM=256K",
		"TCPSPOOL_OVERFLOW=eagain", "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	struct h_result *r = &st.result[0];
	const char *line;
	long long told;

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--expect-prefix", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "gaveup ", 1);
	/* server_a closes and exits: the reader must still get what was
	 * spooled before the quota, so it reads while server_a ends. */
	h_story_finish(&st);

	line = h_status_line(st.server, "gaveup ", 0, 0);
	told = h_field(line, "bytes");
	cr_assert_eq(h_exit_code(st.server), 3, "%s", h_describe(st.server));
	cr_expect_geq(told, QUOTA - 28, "server_a saw EAGAIN after %lld bytes, "
	    "before the 256 KiB quota was full", told);
	cr_expect_lt(told, QUOTA + 512 * 1024, "server_a saw EAGAIN only "
	    "after %lld bytes: the 256 KiB quota was not enforced", told);
	cr_assert(r->valid, "%s", h_describe(st.reader[0]));
	cr_expect_eq(r->mismatch, -1, "the stream differs at byte %lld",
	    r->mismatch);
	cr_expect_eq(r->bytes, told, "server_a was told %lld bytes were sent, "
	    "the reader got %lld (end %s)", told, r->bytes, r->end);
	cr_expect_str_eq(r->end, "EOF");
	cr_expect(h_spool_wait_empty(10000), "the spool dir is not empty");
	cr_expect_eq(h_stdout_size(st.server), 0);
}

Test(overflow, drop_at_quota_drops_whole_writes_and_counts_them)
{
	static const char *const env[] = { "TCPSPOOL_MAX_STREAM=256K",
		"TCPSPOOL_OVERFLOW=drop", "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	struct h_result *r = &st.result[0];
	long long drops;

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--allow-gaps", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	/* While the reader waits, the stream is live: tcpspool ls shows the
	 * drops it counted. */
	drops = published_drops();
	h_story_finish(&st);

	cr_expect_gt(drops, 0, "tcpspool ls never showed a drop count");
	cr_expect_geq(r->missing, drops, "the reader misses %lld messages, "
	    "fewer than the %lld drops counted", r->missing, drops);
	cr_assert_eq(h_exit_code(st.server), 0, "server_a must never see "
	    "EAGAIN under the drop policy: %s", h_describe(st.server));
	cr_assert(r->valid, "%s", h_describe(st.reader[0]));
	cr_expect_eq(r->mismatch, -1, "a message arrived torn, repeated or out "
	    "of order at byte %lld: %s", r->mismatch, h_describe(st.reader[0]));
	cr_expect_str_eq(r->end, "EOF");
	cr_expect_gt(r->missing, 0, "nothing was dropped: the quota did not "
	    "apply (%lld messages arrived)", r->messages);
	cr_expect_eq(r->messages + r->missing, 40000);
	cr_expect_geq(r->bytes, QUOTA - 28, "less than the quota arrived "
	    "(%lld bytes)", r->bytes);
	cr_expect_geq(h_stderr_lines_with(st.server, "drop"), 1, "no log "
	    "line tells of the drops: %s", h_describe(st.server));
	cr_expect(h_spool_wait_empty(10000), "the spool dir is not empty");
	cr_expect_eq(h_stdout_size(st.server), 0);
}

Test(overflow, block_at_quota_waits_for_the_reader_then_delivers_all)
{
	static const char *const env[] = { "TCPSPOOL_MAX_STREAM=256K",
		"TCPSPOOL_OVERFLOW=block", "TCPSPOOL_BLOCK_TIMEOUT=60s",
		"TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;

	/* The reader stays gated until the library says server_a's stream
	 * reached its quota (it logs that once, then server_a waits for
	 * room): what follows is the wait the policy promises, then the
	 * reader drains slowly and server_a goes on. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=2000",
	        "--pause-us=20", "--count=" COUNT, NULL });
	cr_assert(h_said(st.server, "reached, overflow=block", H_DEADLINE_MS),
	    "the library never said the quota was reached: %s",
	    h_describe(st.server));
	h_story_finish(&st);
	h_story_assert_delivered(&st, BYTES);
}
