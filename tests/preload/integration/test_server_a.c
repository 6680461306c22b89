/*
 * The story itself: legacy server A (tests/fixtures/server_a) writes a
 * stream of small messages with sendmsg() on a non-blocking socket to a
 * slow reader, and gives up at the first EAGAIN or short write.
 *
 * Without the library the reader gets a truncated stream and ECONNRESET.
 * With it, server A never sees EAGAIN, and the reader gets every byte in
 * order exactly once, then EOF, after server A has closed and exited.
 *
 * Small SO_SNDBUF (server) and SO_RCVBUF (reader) make the kernel absorb
 * only a few KiB, and the readers are gated until server A has written its
 * whole stream: the writes meet a full window on any machine, at any load.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

/* 300000 messages of 28 bytes: 8.4 MB, well past what the kernel can hold
 * even with default buffers (about 4 MiB per socket). */
#define STORY_COUNT	"300000"
#define STORY_BYTES	(300000LL * 28)

/* Smaller streams for the variations: 1.1 MB, still far past the kernel's
 * share with small buffers. */
#define COUNT		"40000"
#define BYTES		(40000LL * 28)

static const struct h_spawn preloaded = { .preload = true };

TestSuite(server_a, .init = h_setup, .fini = h_teardown,
    .timeout = H_TEST_TIMEOUT);

Test(server_a, baseline_without_library_client_gets_reset)
{
	struct h_story st;
	struct h_result *r = &st.result[0];
	const char *line;

	/* The reader sends a request server A never reads, as in the story:
	 * server A's close then resets the connection. */
	h_story_start(&st, NULL, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" STORY_COUNT, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--send=100", "--expect-prefix",
	        "--count=" STORY_COUNT, NULL });
	h_story_wait_status(&st, "gaveup ", 1);
	/* Let server A really close and exit before the reader looks. */
	cr_assert(h_wait(st.server, H_DEADLINE_MS), "%s",
	    h_describe(st.server));
	h_story_finish(&st);

	line = h_status_line(st.server, "gaveup ", 0, 0);
	cr_assert_eq(h_exit_code(st.server), 3, "server A should give up "
	    "with 3 at its first EAGAIN: %s", h_describe(st.server));
	cr_assert(h_field(line, "bytes") < STORY_BYTES / 4, "the kernel "
	    "absorbed %lld bytes: the buffers are not small (%s)",
	    h_field(line, "bytes"), line);
	cr_assert(r->valid, "%s", h_describe(st.reader[0]));
	cr_assert_eq(r->mismatch, -1, "what arrived is not a prefix of the "
	    "stream (byte %lld)", r->mismatch);
	cr_assert_lt(r->bytes, STORY_BYTES, "the stream was not truncated");
	cr_assert(strcmp(r->end, "ECONNRESET") == 0 ||
	    strcmp(r->end, "EOF") == 0, "reader ended with %s (errno %d)",
	    r->end, r->err);
	cr_assert_eq(h_spool_files(NULL, 0), 0);
	cr_assert_eq(h_stdout_size(st.server), 0);
}

Test(server_a, server_a_sendmsg_delivers_every_byte_in_order)
{
	struct h_story st;

	/* Nothing but LD_PRELOAD (and a private spool dir) changes. */
	h_story_start(&st, &preloaded, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" STORY_COUNT, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--send=100",
	        "--read-size=4096", "--pause-us=50", "--count=" STORY_COUNT,
	        NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, STORY_BYTES);
}

/* One write path (or mix of paths) of server_a, and how it goes
 * non-blocking. */
struct path_case {
	char path[24];
	char nonblock[16];
	char extra[32];
};

static struct path_case path_cases[] = {
	{ "send", "fcntl", "" },
	{ "sendto", "fcntl", "" },
	{ "write", "fcntl", "" },
	{ "writev", "fcntl", "--batch=7" },
	{ "sendmmsg", "fcntl", "--batch=5" },
	{ "mix", "fcntl", "--batch=3" },
	{ "sendmsg", "ioctl", "" },
	{ "sendmsg", "accept4", "" },
	{ "sendmsg", "dontwait", "" },
	{ "sendmsg", "fcntl", "--no-msg-name" },
	{ "mix", "accept4", "--size=61" },
};

ParameterizedTestParameters(server_a, write_paths_deliver_every_byte_in_order)
{
	return cr_make_param_array(struct path_case, path_cases,
	    sizeof(path_cases) / sizeof(path_cases[0]));
}

ParameterizedTest(struct path_case *c, server_a,
    write_paths_deliver_every_byte_in_order)
{
	char path[48], nonblock[48], size[40] = "--size=28";
	long long msg_size = 28;
	struct h_story st;

	if (strncmp(c->extra, "--size=", 7) == 0) {
		msg_size = strtoll(c->extra + 7, NULL, 10);
		snprintf(size, sizeof(size), "%s", c->extra);
	}
	snprintf(path, sizeof(path), "--path=%s", c->path);
	snprintf(nonblock, sizeof(nonblock), "--nonblock=%s", c->nonblock);
	h_story_start(&st, &preloaded, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, path,
	        nonblock, c->extra[0] ? c->extra : size, NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=1000",
	        "--pause-us=20", "--count=" COUNT, size, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, 40000LL * msg_size);
}

/* sendfile and splice while the stream is spooling, alone and behind
 * sendmsg; the offset pointer and file position must end as the kernel
 * would leave them (server_a exits 5 otherwise). */
static struct path_case file_cases[] = {
	{ "sendfile", "fcntl", "--sendfile-offset=ptr" },
	{ "sendfile", "fcntl", "--sendfile-offset=pos" },
	{ "sendfile-plain", "fcntl", "--sendfile-offset=ptr" },
	{ "mix-sendfile", "fcntl", "--sendfile-offset=ptr" },
	{ "mix-sendfile", "fcntl", "--sendfile-offset=pos" },
	{ "splice", "fcntl", "" },
	{ "mix-splice", "fcntl", "" },
};

ParameterizedTestParameters(server_a, sendfile_and_splice_while_spooling)
{
	return cr_make_param_array(struct path_case, file_cases,
	    sizeof(file_cases) / sizeof(file_cases[0]));
}

ParameterizedTest(struct path_case *c, server_a,
    sendfile_and_splice_while_spooling)
{
	char path[48];
	struct h_story st;

	snprintf(path, sizeof(path), "--path=%s", c->path);
	h_story_start(&st, &preloaded, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=" COUNT, path,
	        "--batch=64", c->extra[0] ? c->extra : "--size=28", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--read-size=3000",
	        "--pause-us=20", "--count=" COUNT, NULL });
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, BYTES);
}
