/*
 * Appends within a stream's budget credit do not touch the dir's shared
 * counters per record (writer.c, unpub): the bytes move from the credit
 * (dir->reserved) to the staging (dir->staged_bytes) when a frame is
 * formed. What another stream of the same dir may still take must be
 * exact at every step: while records are staged within credit, after
 * the frame, and after the stream is gone.
 */
#include "helpers.h"

#define TOTAL_MAX	(64u << 20)
#define CREDIT		(64u << 10)	/* budget.c's CREDIT_MAX */

SPOOL_TEST_SUITE();

/* Another stream of d can take exactly room more bytes (checked at the
 * edge first: a refused check changes nothing, a granted one reserves). */
static void
room_is_exactly(struct spool_stream *other, uint64_t room, const char *when)
{
	const char *which;

	cr_assert_eq(spool_budget_check(other, room + 1, &which), -EDQUOT,
	    "%s: %llu + 1 bytes were granted", when,
	    (unsigned long long)room);
	cr_assert_eq(spool_budget_check(other, room, &which), 0,
	    "%s: %llu bytes were refused", when, (unsigned long long)room);
}

Test(spool, appends_within_credit_keep_the_dir_budget_exact)
{
	struct spool_limits lim = { .total_max = TOTAL_MAX };
	struct spool_err err = { "" };
	struct spool_stream *a, *b, *c;
	struct spool_counts dc;
	struct spool_dir *d;
	const char *which;
	uint8_t rec[1000];
	int i;

	memset(rec, 'r', sizeof(rec));
	d = open_dir(&t, &lim);
	a = new_stream(d, NULL);
	b = new_stream(d, NULL);
	c = new_stream(d, NULL);
	/* a's credit: CREDIT reserved; 40 records staged out of it. */
	cr_assert_eq(spool_budget_check(a, sizeof(rec), &which), 0);
	for (i = 0; i < 40; i++) {
		cr_assert_eq(spool_budget_check(a, sizeof(rec), &which), 0);
		append1(a, rec, sizeof(rec), i);
	}
	spool_dir_counts(d, &dc);
	room_is_exactly(b, TOTAL_MAX - dc.stored_bytes - CREDIT,
	    "staged within credit");
	/* b now holds the rest; c checks what a's frame changed. */
	cr_assert_eq(spool_stream_flush(a, &err), 0, "%s", err.msg);
	spool_stream_close(b, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_counts(d, &dc);
	room_is_exactly(c, TOTAL_MAX - dc.stored_bytes -
	    (CREDIT - 40 * sizeof(rec)), "after the frame");
	spool_stream_close(c, SPOOL_CLOSE_REMOVE, NULL, &err);
	/* More records staged past the frame, then a gone with them. */
	c = new_stream(d, NULL);
	for (i = 0; i < 10; i++) {
		cr_assert_eq(spool_budget_check(a, sizeof(rec), &which), 0);
		append1(a, rec, sizeof(rec), 40 + i);
	}
	spool_stream_close(a, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_counts(d, &dc);
	room_is_exactly(c, TOTAL_MAX - dc.stored_bytes, "after the close");
	spool_stream_close(c, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}
