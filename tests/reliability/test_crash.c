/*
 * kill -9 in the middle of spooling, then the operator's recovery:
 * `tcpspool verify` finds at most a torn tail, `verify --repair` removes
 * it, and `tcpspool replay` to a new listener sends bytes that, appended
 * to what the client had already received, form an exact prefix of the
 * stream. Duplicates are allowed only where spool/FORMAT.md §6 allows
 * them: the replay starts exactly at the persisted progress (read here
 * from the progress file by its documented offsets), never before it, and
 * never after what the client received (a gap would be a loss).
 *
 * With TCPSPOOL_FSYNC=always nothing server_a was told was sent is
 * missing: client bytes + replayed bytes reach exactly the count server_a
 * reports at its pause.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rel.h"

TestSuite(crash, .init = h_setup, .fini = h_teardown, .timeout = 300);

/* Verify output lines that report a problem other than a torn tail. */
static int
non_torn_problems(const char *out)
{
	int n = 0;

	for (const char *s = out; *s != '\0';) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);
		char line[1024];

		snprintf(line, sizeof(line), "%.*s", (int)len, s);
		if ((strstr(line, "corrupt frame") != NULL ||
		    strstr(line, "bad segment header") != NULL ||
		    strstr(line, "bad footer") != NULL ||
		    strstr(line, "sequence gap") != NULL ||
		    strstr(line, "I/O error") != NULL))
			n++;
		s += len + (nl != NULL);
	}
	return n;
}

/* verify finds at most a torn tail; --repair makes it clean. */
static void
verify_then_repair(void)
{
	static char out[65536];
	struct h_proc *cli;
	int code;

	cli = h_cli(out, sizeof(out), "verify", "--dir", h_spool_dir(), NULL);
	code = h_exit_code(cli);
	cr_expect(code == 0 || code == 2, "verify after kill -9 exited %d: "
	    "%s\n%s", code, h_describe(cli), out);
	cr_expect_eq(non_torn_problems(out), 0, "verify after kill -9 found "
	    "more than a torn tail:\n%s", out);
	cli = h_cli(out, sizeof(out), "verify", "--repair", "--dir",
	    h_spool_dir(), NULL);
	cr_expect_eq(h_exit_code(cli), 0, "verify --repair: %s\n%s",
	    h_describe(cli), out);
	cli = h_cli(out, sizeof(out), "verify", "--dir", h_spool_dir(), NULL);
	cr_expect_eq(h_exit_code(cli), 0, "verify after --repair: %s\n%s",
	    h_describe(cli), out);
}

/*
 * Where the replay of name must start: the first bytes `dump --format raw`
 * prints (what replay would send), located in the stream; and the dump's
 * first record must be the one the progress file names.
 */
static long long
persisted_position(const char *name)
{
	static char out[1 << 16];
	char dir[PATH_MAX], want[64];
	uint64_t seq, off;
	struct h_proc *cli;
	long long pos;

	h_fmt(dir, sizeof(dir), "%s/%s", h_spool_dir(), name);
	cli = h_cli(out, sizeof(out), "dump", name, "--format", "json",
	    "--count", "1", "--dir", h_spool_dir(), NULL);
	cr_assert_eq(h_exit_code(cli), 0, "dump: %s", h_describe(cli));
	if (rel_progress(dir, &seq, &off)) {
		/* A record wholly acknowledged is not shown again. */
		h_fmt(want, sizeof(want), "\"seq\":%llu,", (unsigned long long)seq);
		if (strstr(out, want) != NULL) {
			h_fmt(want, sizeof(want), "\"delivered\":%llu",
			    (unsigned long long)off);
			cr_expect(strstr(out, want) != NULL, "progress says "
			    "%llu bytes of record %llu were delivered, dump "
			    "shows: %s", (unsigned long long)off,
			    (unsigned long long)seq, out);
		} else {
			cr_expect(off == 0 || strstr(out, "\"seq\":") != NULL,
			    "dump does not start at the persisted record "
			    "%llu: %s", (unsigned long long)seq, out);
		}
	}
	cli = h_cli(out, sizeof(out), "dump", name, "--format", "raw",
	    "--count", "16", "--dir", h_spool_dir(), NULL);
	cr_assert_eq(h_exit_code(cli), 0, "dump: %s", h_describe(cli));
	pos = rel_locate((const uint8_t *)out, strlen(out));
	cr_assert_geq(pos, 0, "the spool's first bytes are not a piece of "
	    "the stream: %.200s", out);
	return pos;
}

struct replayed {
	uint8_t *data;
	size_t len;
	long long start;	/* stream offset of data[0] */
	char end[32];
};

/* Replays the one stream of the spool dir to a new listener. */
static void
replay_the_stream(const char *name, struct replayed *rp)
{
	struct h_proc *cli;
	unsigned short port;
	char to[64];
	int lfd;

	lfd = rel_listen(&port);
	h_fmt(to, sizeof(to), "127.0.0.1:%u", port);
	cli = rel_cli_start("replay", "replay", name, "--to", to, "--dir",
	    h_spool_dir(), NULL);
	rel_capture(lfd, &rp->data, &rp->len, rp->end, sizeof(rp->end),
	    H_DEADLINE_MS);
	close(lfd);
	cr_assert(h_wait(cli, H_DEADLINE_MS), "replay did not end: %s",
	    h_describe(cli));
	cr_expect_eq(h_exit_code(cli), 0, "replay: %s", h_describe(cli));
	cr_expect_str_eq(rp->end, "EOF", "the replayed connection ended "
	    "with %s", rp->end);
	rp->start = rp->len == 0 ? -1 : rel_locate(rp->data, rp->len);
}

/*
 * The client's bytes (r) then the replayed ones form an exact prefix of
 * the stream, the replay starting exactly at the persisted position.
 */
static void
assert_prefix_with_replay(const struct h_result *r, const struct replayed *rp,
    long long persisted)
{
	cr_assert(r->valid, "the reader left no result");
	cr_expect_eq(r->mismatch, -1, "the client's bytes differ from the "
	    "stream at %lld", r->mismatch);
	cr_assert_gt(rp->len, 0, "the replay sent nothing");
	cr_assert_geq(rp->start, 0, "the replayed bytes are not a contiguous "
	    "piece of the stream (%zu bytes)", rp->len);
	cr_expect_leq(rp->start, r->bytes, "gap: the client got %lld bytes, "
	    "the replay starts at %lld: bytes %lld..%lld are lost", r->bytes,
	    rp->start, r->bytes, rp->start - 1);
	cr_expect_eq(rp->start, persisted, "the replay starts at %lld, the "
	    "persisted progress at %lld: duplicates beyond FORMAT.md's "
	    "guarantee", rp->start, persisted);
	cr_expect_gt(rp->start + (long long)rp->len, r->bytes, "the replay "
	    "added nothing past what the client had");
}

static void
assert_stream_gone(const char *name)
{
	char names[4][32];

	cr_expect_eq(rel_streams(h_spool_dir(), names, 4), 0, "stream %s "
	    "still in the spool dir after a full replay", name);
}

Test(crash, kill_9_while_spooling_then_verify_repair_replay_is_a_prefix)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		"TCPSPOOL_MAX_STREAM=256M", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	struct replayed rp = { 0 };
	char names[4][32];
	long long persisted;

	/* server_a writes until a write fails; the library takes everything
	 * (the reader reads nothing yet), so server_a is spooling flat out
	 * when it dies. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=0", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=1000000000", NULL });
	cr_assert(rel_wait_dir_bytes(h_spool_dir(), 1 << 20, H_DEADLINE_MS),
	    "server_a spooled less than 1 MiB: %s", h_describe(st.server));
	h_kill_group(st.server, SIGKILL);
	h_story_wait_server(&st);
	cr_assert(h_killed_by(st.server, SIGKILL), "%s",
	    h_describe(st.server));
	cr_assert_eq(rel_streams(h_spool_dir(), names, 4), 1, "expected one "
	    "stream after kill -9");

	verify_then_repair();
	/* What the kernel had taken reaches the client, then EOF. */
	h_story_finish_readers(&st);
	persisted = persisted_position(names[0]);
	replay_the_stream(names[0], &rp);
	assert_prefix_with_replay(&st.result[0], &rp, persisted);
	assert_stream_gone(names[0]);
	cr_log_info("kill -9 mid-spool: client %lld bytes, replay %zu bytes "
	    "from %lld (%lld duplicates)", st.result[0].bytes, rp.len,
	    rp.start, st.result[0].bytes - rp.start);
	free(rp.data);
}

Test(crash, kill_9_with_fsync_always_keeps_every_byte_told_sent)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		"TCPSPOOL_FSYNC=always", NULL };
	struct h_spawn o = { .preload = true, .env = env, .nfds = 1 };
	struct h_story st;
	struct h_gate resume;
	struct replayed rp = { 0 };
	char names[4][32];
	long long told, persisted;

	/* server_a stops after 5000 messages (its resume gate never opens)
	 * and reports what it was told it sent; it is killed at once. */
	h_gate_init(&resume);
	o.fds[0].child = 5;
	o.fds[0].parent = resume.rfd;
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=0", "--pause-at=5000",
	        "--resume-fd=5", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=1000000000", NULL });
	h_story_wait_status(&st, "paused ", 1);
	h_kill_group(st.server, SIGKILL);
	h_story_wait_server(&st);
	told = h_field(h_status_line(st.server, "paused ", 0, 0), "bytes");
	cr_assert_eq(told, 5000LL * REL_MSG, "%s", h_status_text(st.server));
	cr_assert_eq(rel_streams(h_spool_dir(), names, 4), 1, "expected one "
	    "stream after kill -9");

	verify_then_repair();
	h_story_finish_readers(&st);
	persisted = persisted_position(names[0]);
	replay_the_stream(names[0], &rp);
	assert_prefix_with_replay(&st.result[0], &rp, persisted);
	cr_expect_eq(rp.start + (long long)rp.len, told, "fsync=always: "
	    "server_a was told %lld bytes were sent; client and spool hold "
	    "%lld", told, rp.start + (long long)rp.len);
	assert_stream_gone(names[0]);
	free(rp.data);
}
