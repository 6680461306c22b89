/*
 * An invalid TCPSPOOL_ value: one clear line on stderr naming the variable,
 * then the whole process runs as pass-through, exactly as without the
 * library: server_a gives up at its first EAGAIN (exit 3), the reader gets
 * a clean prefix, nothing is spooled, nothing is printed on stdout.
 *
 * server_a runs with --no-fork here so that exactly one process reads the
 * environment and "one line" is well defined.
 *
 * Valid values that select what is spooled: TCPSPOOL_DISABLE=1 and port
 * filters that exclude server_a's connection leave it exactly as without
 * the library; filters that include it spool it.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

struct bad_value {
	char name[32];
	char value[32];
};

static struct bad_value bad_values[] = {
	{ "TCPSPOOL_DISABLE", "maybe" },
	{ "TCPSPOOL_DIR", "relative/spool" },
	{ "TCPSPOOL_MAX_STREAM", "12Q" },
	{ "TCPSPOOL_MAX", "-1" },
	{ "TCPSPOOL_MIN_FREE", "1.5G" },
	{ "TCPSPOOL_SEGMENT_SIZE", "huge" },
	{ "TCPSPOOL_LEVEL", "10" },
	{ "TCPSPOOL_FLUSH", "5 parsecs" },
	{ "TCPSPOOL_FSYNC", "sometimes" },
	{ "TCPSPOOL_FSYNC_INTERVAL", "1x" },
	{ "TCPSPOOL_LINGER", "forever" },
	{ "TCPSPOOL_OVERFLOW", "panic" },
	{ "TCPSPOOL_BLOCK_TIMEOUT", "-5ms" },
	{ "TCPSPOOL_PORTS", "70000" },
	{ "TCPSPOOL_PEER_PORTS", "9-1x" },
	{ "TCPSPOOL_LOG", "relative.log" },
	{ "TCPSPOOL_LOG_LEVEL", "loud" },
};

TestSuite(config, .init = h_setup, .fini = h_teardown,
    .timeout = H_TEST_TIMEOUT);

ParameterizedTestParameters(config, invalid_value_logs_once_and_passes_through)
{
	return cr_make_param_array(struct bad_value, bad_values,
	    sizeof(bad_values) / sizeof(bad_values[0]));
}

ParameterizedTest(struct bad_value *b, config,
    invalid_value_logs_once_and_passes_through)
{
	char var[80];
	const char *env[] = { var, NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	struct h_result *r = &st.result[0];
	char files[1024];
	int lines;

	h_fmt(var, sizeof(var), "%s=%s", b->name, b->value);
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=40000", "--no-fork",
	        NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=40000", NULL });
	/* Pass-through: server_a gives up and exits as without the library;
	 * only then does the reader read. */
	h_story_wait_status(&st, "gaveup ", 1);
	h_story_wait_server(&st);
	h_story_finish_readers(&st);

	lines = h_stderr_lines_with(st.server, b->name);
	cr_expect_eq(lines, 1, "%s: expected one stderr line naming the "
	    "variable, got %d: %s", var, lines, h_describe(st.server));
	cr_expect_eq(h_exit_code(st.server), 3, "%s: server_a did not behave "
	    "as without the library: %s", var, h_describe(st.server));
	cr_expect(r->valid && r->mismatch == -1, "%s: the reader did not get "
	    "a clean prefix: %s", var, h_describe(st.reader[0]));
	cr_expect_eq(h_spool_files(files, sizeof(files)), 0, "%s: something "
	    "was spooled: %s", var, files);
	cr_expect_eq(h_stdout_size(st.server), 0, "%s: output on stdout", var);
}

/* A valid setting that makes the library leave server_a's connection
 * alone, or take it. */
struct filter_case {
	char var[48];
	bool spooled;
};

static struct filter_case filter_cases[] = {
	{ "TCPSPOOL_DISABLE=1", false },
	{ "TCPSPOOL_PORTS=1", false },		/* server_a never gets port 1 */
	{ "TCPSPOOL_PORTS=1024-65535", true },
	{ "TCPSPOOL_PEER_PORTS=1", false },
	{ "TCPSPOOL_PEER_PORTS=1-65535", true },
};

ParameterizedTestParameters(config, port_filters_and_disable_choose_the_streams)
{
	return cr_make_param_array(struct filter_case, filter_cases,
	    sizeof(filter_cases) / sizeof(filter_cases[0]));
}

ParameterizedTest(struct filter_case *c, config,
    port_filters_and_disable_choose_the_streams)
{
	const char *env[] = { c->var, "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	struct h_result *r = &st.result[0];

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=40000", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=40000", NULL });
	if (c->spooled) {
		h_story_wait_status(&st, "done ", 1);
		h_story_finish(&st);
		h_story_assert_delivered(&st, 40000LL * 28);
		return;
	}
	h_story_wait_status(&st, "gaveup ", 1);
	h_story_wait_server(&st);
	h_story_finish_readers(&st);
	cr_expect_eq(h_exit_code(st.server), 3, "%s: server_a did not behave "
	    "as without the library: %s", c->var, h_describe(st.server));
	cr_expect(r->valid && r->mismatch == -1, "%s: %s", c->var,
	    h_describe(st.reader[0]));
	cr_expect_eq(h_spool_files(NULL, 0), 0, "%s: something was spooled",
	    c->var);
	cr_expect_eq(h_stderr_lines_with(st.server, "tcpspool"), 0,
	    "%s: the library logged: %s", c->var, h_describe(st.server));
	cr_expect_eq(h_stdout_size(st.server), 0);
}
