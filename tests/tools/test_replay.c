/*
 * tcpspool replay to a listener in the test that keeps every byte: complete
 * delivery, --keep, refusal of a live stream, and resume after an
 * interruption (peer close, SIGTERM, SIGKILL) with no byte lost and
 * duplicates only after the last saved progress, as FORMAT.md §6 allows.
 */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_replay, .init = t_setup, .fini = t_teardown, .timeout = 150);

#define BIG_RECORDS	2048
#define BIG_LEN		4096

/* 4 KiB of incompressible bytes per record: 8 MiB fill any socket. */
static size_t
big(uint64_t i, uint8_t *buf, size_t cap)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;
	size_t k;

	for (k = 0; k < BIG_LEN; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[k] = (uint8_t)x;
	}
	return BIG_LEN;
}

static bool
stream_exists(const char *name)
{
	char p[600];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", t_spool, name);
	return stat(p, &st) == 0;
}

/* Replays name to l and returns what l received. */
static const uint8_t *
replay_to(struct t_listener *l, const char *name, const char *extra,
    size_t *len, int want_status)
{
	const char *argv[] = { "CLI", "replay", "--dir", t_spool, name, "--to",
	    t_listener_addr(l), extra, NULL };
	struct t_out o;

	t_run(&o, argv, NULL);
	cr_assert_eq(o.status, want_status, "replay: %d\n%s", o.status, o.err);
	if (want_status == 0)
		cr_assert_eq(o.err_len, 0, "not quiet off a terminal: %s", o.err);
	t_out_free(&o);
	return t_listener_join(l, len);
}

Test(tools_replay, delivers_every_byte_in_order_then_deletes_the_stream)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 500,
	    .per_frame = 16, .segment_max = 64 << 10 };
	struct t_listen_opts lo = { 0 };
	char name[SPOOL_NAME_MAX];
	const uint8_t *got;
	struct t_listener *l;
	size_t len, glen;
	uint8_t *want;

	t_make_stream(&sp, name);
	want = t_stream_bytes(t_record, 500, &len);
	l = t_listener_start(&lo);
	got = replay_to(l, name, NULL, &glen, 0);
	cr_assert_eq(glen, len);
	cr_assert(memcmp(got, want, len) == 0);
	cr_assert(!stream_exists(name), "the stream was not deleted");
	t_listener_free(l);
	free(want);
}

Test(tools_replay, keep_leaves_the_stream_with_nothing_left_to_send)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 50,
	    .per_frame = 8 };
	struct t_listen_opts lo = { .unix_socket = true };
	char name[SPOOL_NAME_MAX];
	const uint8_t *got;
	struct t_listener *l;
	size_t len, glen;
	uint8_t *want;
	struct t_out o;

	t_make_stream(&sp, name);
	want = t_stream_bytes(t_record, 50, &len);
	l = t_listener_start(&lo);
	got = replay_to(l, name, "--keep", &glen, 0);
	cr_assert_eq(glen, len);
	cr_assert(memcmp(got, want, len) == 0);
	t_listener_free(l);
	cr_assert(stream_exists(name));

	/* Its progress is at the end: a second replay sends nothing. */
	l = t_listener_start(&lo);
	replay_to(l, name, NULL, &glen, 0);
	cr_assert_eq(glen, 0);
	t_listener_free(l);
	cr_assert(!stream_exists(name));
	t_cli(&o, "ls", t_spool, NULL);
	cr_assert_eq(o.out_len, 0);
	t_out_free(&o);
	free(want);
}

Test(tools_replay, refuses_a_stream_whose_writer_runs)
{
	struct t_stream_spec sp = { .writer = T_LIVE_OPEN, .records = 5 };
	char name[SPOOL_NAME_MAX], want[128];
	struct t_out o;

	t_make_stream(&sp, name);
	t_cli(&o, "replay", "--dir", t_spool, name, "--to", "127.0.0.1:9",
	    NULL);
	cr_assert_eq(o.status, 1);
	snprintf(want, sizeof(want), "its writer (pid %d) is running",
	    (int)getpid());
	cr_assert(strstr(o.err, want) != NULL, "%s", o.err);
	cr_assert(stream_exists(name));
	t_out_free(&o);
}

/*
 * Checks a resumed replay: first got X bytes, second got the rest starting
 * at P <= X (never a byte lost), and both are the stream's bytes.
 */
static size_t
check_resume(const uint8_t *want, size_t len, const uint8_t *first,
    size_t x, const uint8_t *second, size_t y)
{
	size_t p;

	cr_assert(x <= len);
	cr_assert(memcmp(first, want, x) == 0, "first replay sent wrong bytes");
	cr_assert(y <= len);
	p = len - y;
	cr_assert(p <= x, "bytes lost: the first replay delivered %zu, the "
	    "second resumed at %zu", x, p);
	cr_assert(memcmp(second, want + p, y) == 0,
	    "the resumed replay is not the stream's continuation");
	return p;
}

Test(tools_replay, resumes_after_a_unix_peer_closed_midway)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = BIG_RECORDS,
	    .per_frame = 32, .rec = big };
	struct t_listen_opts cut = { .unix_socket = true, .close_after = 100000 };
	struct t_listen_opts full = { .unix_socket = true };
	char name[SPOOL_NAME_MAX];
	const uint8_t *first, *second;
	struct t_listener *l1, *l2;
	size_t len, x, y, p;
	uint8_t *want;

	t_make_stream(&sp, name);
	want = t_stream_bytes(big, BIG_RECORDS, &len);
	l1 = t_listener_start(&cut);
	first = replay_to(l1, name, NULL, &x, 1);
	cr_assert_eq(x, 100000);
	cr_assert(stream_exists(name));
	l2 = t_listener_start(&full);
	second = replay_to(l2, name, NULL, &y, 0);
	p = check_resume(want, len, first, x, second, y);
	cr_log_info("unix: peer read %zu, resumed at %zu", x, p);
	cr_assert(!stream_exists(name));
	t_listener_free(l1);
	t_listener_free(l2);
	free(want);
}

/* Waits until the stream's saved progress reaches record seq. */
static void
wait_saved(const char *name, uint64_t seq)
{
	struct timespec pause = { 0, 20 * 1000000L };
	struct spool_stream_info si;
	struct spool_err e = { "" };
	struct spool_dir *d;
	int i;

	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	for (i = 0; i < 3000; i++) {
		cr_assert(spool_stream_info(d, name, &si, &e) == 0, "%s", e.msg);
		if (si.acked_seq >= seq)
			break;
		nanosleep(&pause, NULL);
	}
	spool_dir_close(d);
	cr_assert(si.acked_seq >= seq, "progress stuck at record %llu",
	    (unsigned long long)si.acked_seq);
}

/* Interrupts a TCP replay stalled by its peer with sig, then resumes. */
static void
interrupted_tcp_replay(int sig)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = BIG_RECORDS,
	    .per_frame = 32, .rec = big };
	struct t_listen_opts stall = { .stall_after = 300000, .rcvbuf = 8192 };
	struct t_listen_opts full = { 0 };
	char name[SPOOL_NAME_MAX];
	const uint8_t *first, *second;
	struct t_listener *l1, *l2;
	size_t len, x, y, p;
	struct t_proc proc;
	struct t_out o;
	uint8_t *want;

	t_make_stream(&sp, name);
	want = t_stream_bytes(big, BIG_RECORDS, &len);
	l1 = t_listener_start(&stall);
	{
		const char *argv[] = { "CLI", "replay", "--dir", t_spool, name,
		    "--to", t_listener_addr(l1), NULL };

		t_spawn(&proc, argv, NULL);
	}
	t_listener_wait(l1, 300000);
	/* While stalled, it saves whole records the peer took. */
	wait_saved(name, 300000 / BIG_LEN);
	cr_assert(kill(proc.pid, sig) == 0);
	t_wait(&proc, &o);
	if (sig == SIGTERM) {
		cr_assert_eq(o.status, 1, "%d %s", o.status, o.err);
		cr_assert(strstr(o.err, "interrupted") != NULL, "%s", o.err);
	} else {
		cr_assert_eq(o.status, 128 + sig);
	}
	t_out_free(&o);
	t_listener_release(l1);
	first = t_listener_join(l1, &x);
	cr_assert(x < len, "the whole stream fit in the socket buffers");
	cr_assert(stream_exists(name));

	l2 = t_listener_start(&full);
	second = replay_to(l2, name, NULL, &y, 0);
	p = check_resume(want, len, first, x, second, y);
	cr_log_info("signal %d: peer got %zu, resumed at %zu", sig, x, p);
	/* The peer read 300000 bytes well before the signal: saved. */
	cr_assert(p >= (sig == SIGTERM ? 300000u : 300000u - BIG_LEN),
	    "progress not saved: resumed at %zu", p);
	cr_assert(!stream_exists(name));
	t_listener_free(l1);
	t_listener_free(l2);
	free(want);
}

Test(tools_replay, resumes_after_sigterm_from_what_the_peer_acknowledged)
{
	interrupted_tcp_replay(SIGTERM);
}

Test(tools_replay, resumes_after_sigkill_with_duplicates_only_after_the_save)
{
	interrupted_tcp_replay(SIGKILL);
}

/* ------------------------------------------------------ issue 18 */

/* 28-byte records, as server A sends them. */
static size_t
small(uint64_t i, uint8_t *buf, size_t cap)
{
	snprintf((char *)buf, cap, "L%026llu", (unsigned long long)i);
	return 27 + 1;
}

/* The persisted position of a stream, as a reader would resume: the
 * bytes before it (records of 28 bytes). */
static uint64_t
resume_at(const char *name)
{
	struct spool_err e = { "" };
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_dir *d;
	uint64_t at;

	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	cr_assert(spool_cursor_open(d, name, &c, &e) == 0, "%s", e.msg);
	cr_assert_eq(spool_cursor_next(c, &r, &e), 1, "%s", e.msg);
	at = r.seq * 28 + r.off;
	spool_cursor_close(c);
	spool_dir_close(d);
	return at;
}

/*
 * Issue 18 item 1: with more than INFLIGHT_MAX (65536) small records
 * unacknowledged the replay waits for delivery, and that wait never looked
 * at a reset: poll said POLLOUT|POLLHUP at once, forever, at 100% CPU.
 * The reader takes 300 KB and stalls until the replay's unacknowledged
 * bytes hold more than 65536 records (the kernel lets a sender queue up to
 * 4 MiB), then resets. The replay must stop (the deadline only catches
 * the hang: it takes milliseconds), exit 1 naming the reset, and save its
 * progress.
 */
Test(tools_replay, stops_on_a_reader_reset_amid_small_records)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 600000,
	    .per_frame = 4096, .rec = small, .segment_max = 4 << 20 };
	struct t_listen_opts lo = { .stall_after = 300000, .reset = true,
	    .end_on_release = true };
	struct timespec tick = { 0, 10 * 1000000L };
	char name[SPOOL_NAME_MAX];
	struct t_listener *l;
	struct t_proc p;
	struct t_out o;
	size_t got;
	int i;

	t_make_stream(&sp, name);
	l = t_listener_start(&lo);
	{
		const char *argv[] = { "CLI", "replay", "--dir", t_spool, name,
		    "--to", t_listener_addr(l), NULL };

		t_spawn(&p, argv, NULL);
	}
	t_listener_wait(l, 300000);
	/* A bounded retry on the condition: 65536 records unacknowledged. */
	for (i = 0; i < 3000 && t_listener_peer_unacked(l) < 65000L * 28; i++)
		nanosleep(&tick, NULL);
	cr_assert_geq(t_listener_peer_unacked(l), 65000L * 28, "the replay "
	    "never had 65536 records in flight (net.ipv4.tcp_wmem max below "
	    "2 MB?)");
	t_listener_release(l);
	t_listener_join(l, &got);
	cr_assert_eq(got, 300000);
	cr_assert(t_wait_deadline(&p, &o, 10000), "replay still runs after "
	    "its reader reset: %s", o.err);
	cr_assert_eq(o.status, 1, "%d: %s", o.status, o.err);
	cr_assert(strstr(o.err, "peer reset") != NULL, "%s", o.err);
	cr_assert(strstr(o.err, "progress saved") != NULL, "%s", o.err);
	cr_assert(stream_exists(name));
	cr_assert_gt(resume_at(name), 0, "no progress saved");
	t_out_free(&o);
	t_listener_free(l);
}

/* Item 5: a port outside 1..65535 is refused before anything moves
 * (getaddrinfo wrapped 99999 to 34463 and the stream was deleted). */
Test(tools_replay, refuses_ports_outside_1_to_65535)
{
	static const char *const bad[] = { "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:99999", "[::1]:99999", "127.0.0.1:-1",
		"127.0.0.1:80x", "127.0.0.1:", "localhost:http" };
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 5 };
	char name[SPOOL_NAME_MAX];
	struct t_out o;
	size_t i;

	t_make_stream(&sp, name);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t_cli(&o, "replay", "--dir", t_spool, name, "--to", bad[i],
		    NULL);
		cr_assert_eq(o.status, 64, "%s: exit %d: %s", bad[i], o.status,
		    o.err);
		cr_assert(strstr(o.err, bad[i]) != NULL, "%s: %s", bad[i],
		    o.err);
		t_out_free(&o);
		cr_assert(stream_exists(name), "%s: the stream is gone",
		    bad[i]);
	}
}

/* Item 6: a torn tail was lost silently (exit 0, stream deleted). */
Test(tools_replay, a_torn_tail_is_reported_and_the_stream_kept)
{
	struct t_stream_spec sp = { .writer = T_CRASHED, .records = 40,
	    .per_frame = 8 };
	struct t_listen_opts lo = { 0 };
	char name[SPOOL_NAME_MAX], path[700];
	struct t_frame fr[8];
	const uint8_t *got;
	struct t_listener *l;
	size_t n, glen, len;
	uint8_t *want;

	t_make_stream(&sp, name);
	n = t_frames(name, fr, 8);
	cr_assert_eq(n, 5);
	/* Cut the last frame in the middle of its payload. */
	snprintf(path, sizeof(path), "%s/%s/%s.open", t_spool, name,
	    fr[4].file);
	cr_assert(truncate(path, (off_t)(fr[4].offset + 64 +
	    fr[4].stored_len / 2)) == 0);
	want = t_stream_bytes(t_record, 32, &len);

	l = t_listener_start(&lo);
	got = replay_to(l, name, NULL, &glen, 2);
	cr_assert_eq(glen, len, "the readable records are delivered");
	cr_assert(memcmp(got, want, len) == 0);
	cr_assert(stream_exists(name), "a damaged stream was deleted");
	t_listener_free(l);
	/* --accept-loss: the loss is reported, exit 2, the stream goes. */
	l = t_listener_start(&lo);
	replay_to(l, name, "--accept-loss", &glen, 2);
	cr_assert_eq(glen, 0, "delivered bytes were sent again");
	cr_assert(!stream_exists(name), "--accept-loss kept the stream");
	t_listener_free(l);
	free(want);
}

/* Item 2: the library released the stream (peer reset) while its
 * process runs: replay delivers it and removes it. */
Test(tools_replay, replays_a_stream_released_by_its_running_writer)
{
	struct t_stream_spec sp = { .writer = T_LIVE_CLOSED, .records = 30,
	    .per_frame = 8 };
	struct t_listen_opts lo = { 0 };
	char name[SPOOL_NAME_MAX];
	const uint8_t *got;
	struct t_listener *l;
	size_t len, glen;
	uint8_t *want;
	struct t_out o;

	t_make_stream(&sp, name);
	t_cli(&o, "ls", t_spool, NULL);
	cr_assert(strstr(o.out, "released, process alive") != NULL, "%s",
	    o.out);
	t_out_free(&o);
	want = t_stream_bytes(t_record, 30, &len);
	l = t_listener_start(&lo);
	got = replay_to(l, name, NULL, &glen, 0);
	cr_assert_eq(glen, len);
	cr_assert(memcmp(got, want, len) == 0);
	cr_assert(!stream_exists(name));
	t_listener_free(l);
	free(want);
}
