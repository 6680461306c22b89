/*
 * tcpspool metrics (issue 17 item 2): the Prometheus text format, checked
 * by promtool where Debian's prometheus package is installed and always
 * by prom_check.py, a strict reader of our own; figures exact on spools
 * made with the writer API, and right in kind on a spool that real
 * server_a processes under the library fill with live, draining, orphan
 * and dropping streams.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_metrics, .init = t_setup, .fini = t_teardown,
    .timeout = 170);

/* Runs the checkers on an exposition file; returns the path of
 * prom_check.py's JSON (samples and types). */
static const char *
check_exposition(const char *prom)
{
	static char json[400];
	const char *src = getenv("TCPSPOOL_TEST_TOOLS_SRC");
	char script[PATH_MAX];
	struct t_out o;

	cr_assert(src != NULL, "TCPSPOOL_TEST_TOOLS_SRC unset");
	snprintf(script, sizeof(script), "%s/prom_check.py", src);
	{
		const char *argv[] = { "/bin/sh", "-c",
		    "command -v promtool >/dev/null || exit 0; "
		    "exec promtool check metrics < \"$0\"", prom, NULL };

		t_run(&o, argv, NULL);
		cr_assert_eq(o.status, 0, "promtool check metrics: %s%s",
		    o.out, o.err);
		t_out_free(&o);
	}
	{
		const char *argv[] = { "/usr/bin/env", "python3", script, prom,
		    NULL };

		t_run(&o, argv, NULL);
		cr_assert_eq(o.status, 0, "prom_check.py: %s", o.err);
		snprintf(json, sizeof(json), "%s.json", prom);
		t_write_file(json, o.out, o.out_len);
		t_out_free(&o);
	}
	return json;
}

/* The value of the one sample named name whose labels include those of
 * the Python dict literal want; -1 if there is none. */
static double
value_of(const char *json, const char *name, const char *want)
{
	char prog[1024];
	struct t_out o;
	double v = -2;

	snprintf(prog, sizeof(prog),
	    "import json, sys\n"
	    "d = json.load(sys.stdin)\n"
	    "w = %s\n"
	    "m = [s[2] for s in d['samples'] if s[0] == '%s' and\n"
	    "     all(s[1].get(k) == x for k, x in w.items())]\n"
	    "assert len(m) <= 1, m\n"
	    "print(m[0] if m else -1)\n", want, name);
	t_python(&o, prog, json);
	cr_assert(sscanf(o.out, "%lf", &v) == 1, "%s", o.out);
	t_out_free(&o);
	return v;
}

static const char *
metrics_to_file(const char *file)
{
	const char *path = t_path(file);
	struct t_out o;

	t_cli(&o, "metrics", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_write_file(path, o.out, o.out_len);
	t_out_free(&o);
	return path;
}

static uint64_t
raw_bytes(uint64_t n)
{
	uint8_t buf[T_RECORD_MAX];
	uint64_t i, sum = 0;

	for (i = 0; i < n; i++)
		sum += t_record(i, buf, sizeof(buf));
	return sum;
}

Test(tools_metrics, figures_of_known_streams_are_exact_and_labels_escaped)
{
	struct t_stream_spec orphan = { .writer = T_ORPHAN, .records = 40,
		.per_frame = 7, .peer = "[::1]:9 \"odd\\peer\"" };
	struct t_stream_spec live = { .writer = T_LIVE_OPEN, .records = 9,
		.per_frame = 2 };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], want[200], prom[700];
	const char *json;
	struct t_out o;
	FILE *f;

	t_make_stream(&orphan, a);
	t_make_stream(&live, b);
	/* The limits come from the environment the command sees. */
	{
		const char *argv[] = { "CLI", "metrics", "--dir", t_spool,
		    NULL };
		const char *env[] = { "TCPSPOOL_MAX=3G",
		    "TCPSPOOL_MIN_FREE=5M", NULL };

		t_run(&o, argv, env);
	}
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(prom, sizeof(prom), "%s", t_path("known.prom"));
	t_write_file(prom, o.out, o.out_len);
	/* The escaped peer, as the format spells it. */
	cr_assert(strstr(o.out, "peer=\"[::1]:9 \\\"odd\\\\\\\\peer\\\"\"") !=
	    NULL, "%s", o.out);
	t_out_free(&o);
	json = check_exposition(prom);

	snprintf(want, sizeof(want), "{'stream': '%s'}", a);
	cr_assert_eq(value_of(json, "tcpspool_pending_bytes", want),
	    (double)raw_bytes(40));
	cr_assert_eq(value_of(json, "tcpspool_pending_records", want), 40);
	cr_assert_eq(value_of(json, "tcpspool_dropped_writes_total", want), 0);
	cr_assert_eq(value_of(json, "tcpspool_integrity_problems", want), 0);
	cr_assert_gt(value_of(json, "tcpspool_stored_bytes", want), 0);
	/* Records stamped at T_TS0 (2023): older than a year. */
	cr_assert_gt(value_of(json, "tcpspool_oldest_record_age_seconds",
	    want), 365.0 * 86400);
	snprintf(want, sizeof(want), "{'stream': '%s', 'state': 'orphan'}", a);
	cr_assert_eq(value_of(json, "tcpspool_stream_state", want), 1);

	snprintf(want, sizeof(want), "{'stream': '%s'}", b);
	cr_assert_eq(value_of(json, "tcpspool_pending_bytes", want),
	    (double)raw_bytes(9));
	snprintf(want, sizeof(want), "{'stream': '%s', 'alive': '1', "
	    "'pid': '%d'}", b, (int)getpid());
	cr_assert_eq(value_of(json, "tcpspool_stream_info", want), 1);

	cr_assert_eq(value_of(json, "tcpspool_streams", "{'state': 'orphan'}"),
	    1);
	cr_assert_eq(value_of(json, "tcpspool_quota_bytes", "{}"),
	    3.0 * 1024 * 1024 * 1024);
	cr_assert_eq(value_of(json, "tcpspool_min_free_bytes", "{}"),
	    5.0 * 1024 * 1024);
	cr_assert_gt(value_of(json, "tcpspool_filesystem_avail_bytes", "{}"),
	    0);

	/* --textfile: the same exposition, written whole, no temporary
	 * file left behind. */
	t_cli(&o, "metrics", "--dir", t_spool, "--textfile",
	    t_path("node.prom"), NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert_eq(o.out_len, 0);
	t_out_free(&o);
	cr_assert((f = fopen(t_path("node.prom"), "r")) != NULL);
	fclose(f);
	check_exposition(t_path("node.prom"));
	{
		const char *argv[] = { "/bin/sh", "-c",
		    "ls \"$0\" | grep -c tmp || true", t_dir, NULL };

		t_run(&o, argv, NULL);
		cr_assert_str_eq(o.out, "0\n", "temporary file left");
		t_out_free(&o);
	}
}

Test(tools_metrics, damage_is_a_figure_not_a_failure)
{
	struct t_stream_spec spec = { .writer = T_ORPHAN, .records = 30,
		.per_frame = 5 };
	char name[SPOOL_NAME_MAX], path[700], want[100];
	struct t_frame fr[16];
	const char *json;
	int fd;

	t_make_stream(&spec, name);
	cr_assert(t_frames(name, fr, 16) >= 3);
	snprintf(path, sizeof(path), "%s", t_segment_path(name, fr[1].file));
	cr_assert((fd = open(path, O_WRONLY)) >= 0);
	cr_assert(pwrite(fd, "garbage!", 8, (off_t)fr[1].offset + 40) == 8);
	close(fd);
	json = check_exposition(metrics_to_file("damaged.prom"));
	snprintf(want, sizeof(want), "{'stream': '%s'}", name);
	cr_assert_geq(value_of(json, "tcpspool_integrity_problems", want), 1);
}

/* The text format's rules, as prom_check.py applies them: a checker that
 * accepted anything would prove nothing. */
Test(tools_metrics, the_checker_refuses_what_the_format_forbids)
{
	static const char *const bad[] = {
		"tcpspool_x 1\n",				/* no TYPE */
		"# HELP tcpspool_x h\n# TYPE tcpspool_x gauge\n"
		"tcpspool_x{a=\"\\q\"} 1\n",			/* escape */
		"# HELP tcpspool_x h\n# TYPE tcpspool_x gauge\n"
		"tcpspool_x 1\ntcpspool_x 2\n",			/* twice */
		"# HELP tcpspool_x h\n# TYPE tcpspool_x counter\n"
		"tcpspool_x 1\n",				/* _total */
		"# HELP tcpspool_x h\n# TYPE tcpspool_x gauge\n"
		"# HELP tcpspool_y h\n# TYPE tcpspool_y gauge\n"
		"tcpspool_x 1\ntcpspool_y 1\ntcpspool_x{a=\"b\"} 1\n",
		"# HELP tcpspool_x h\n# TYPE tcpspool_x gauge\n"
		"tcpspool_x one\n",				/* value */
		"# HELP tcpspool_x h\n# TYPE tcpspool_x gauge\n"
		"tcpspool_x{a=\"b\",a=\"c\"} 1\n",		/* label */
		"# HELP tcpspool_x h\n# TYPE tcpspool_x gauge\n"
		"tcpspool_x 1",					/* no \n */
	};
	const char *src = getenv("TCPSPOOL_TEST_TOOLS_SRC");
	char script[PATH_MAX];
	struct t_out o;
	size_t i;

	cr_assert(src != NULL);
	snprintf(script, sizeof(script), "%s/prom_check.py", src);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[] = { "/usr/bin/env", "python3", script,
		    t_path("bad.prom"), NULL };

		t_write_file(t_path("bad.prom"), bad[i], strlen(bad[i]));
		t_run(&o, argv, NULL);
		cr_assert_eq(o.status, 1, "accepted case %zu: %s", i, bad[i]);
		t_out_free(&o);
	}
}

/* ---------------------------------------------------- real processes */

Test(tools_metrics, live_draining_orphan_and_dropping_streams_of_real_servers)
{
	struct t_server two, paused, dropping;
	char orphan[SPOOL_NAME_MAX], draining[SPOOL_NAME_MAX];
	char spooling[SPOOL_NAME_MAX], dropped[SPOOL_NAME_MAX];
	char cond[512], want[120];
	const char *json;
	int c1, c2, c3, c4, pid;

	/* One server, two connections, each written whole then closed and
	 * held (close-hold): the first peer resets (an orphan the running
	 * server released), the second stays stalled (draining). */
	{
		const char *opts[] = { "--linger", "120s", NULL };
		const char *args[] = { "--count", "60000", "--connections",
		    "2", "--end", "close-hold", NULL };

		t_server_start(&two, "two", opts, args);
	}
	c1 = t_connect_stalled(two.port);
	t_wait_stream(t_spool, "o['alive'] and o['state'] == 'draining' and "
	    "s and s['pending_bytes'] > 0", orphan, &pid);
	setsockopt(c1, SOL_SOCKET, SO_LINGER,
	    &(struct linger){ .l_onoff = 1, .l_linger = 0 },
	    sizeof(struct linger));
	close(c1);
	snprintf(cond, sizeof(cond), "o['stream'] == '%s' and o['released']",
	    orphan);
	t_wait_stream(t_spool, cond, orphan, NULL);
	c2 = t_connect_stalled(two.port);
	snprintf(cond, sizeof(cond), "o['stream'] != '%s' and o['alive'] and "
	    "o['state'] == 'draining' and s and s['pending_bytes'] > 0",
	    orphan);
	t_wait_stream(t_spool, cond, draining, NULL);

	/* A server paused in the middle of its writes: spooling. */
	{
		const char *opts[] = { "--linger", "120s", NULL };
		const char *args[] = { "--count", "120000", "--pause-at",
		    "60000", NULL };

		t_server_start(&paused, "paused", opts, args);
	}
	c3 = t_connect_stalled(paused.port);
	t_wait_stream(t_spool, "o['alive'] and o['state'] == 'spooling' and "
	    "s and s['pending_bytes'] > 0", spooling, NULL);

	/* A server whose stream quota is full under overflow=drop. */
	{
		const char *opts[] = { "--linger", "120s", "--overflow",
		    "drop", "--max-stream", "64K", NULL };
		const char *args[] = { "--count", "60000", "--end",
		    "close-hold", NULL };

		t_server_start(&dropping, "dropping", opts, args);
	}
	c4 = t_connect_stalled(dropping.port);
	t_wait_stream(t_spool, "o['alive'] and s and s['drops'] > 0",
	    dropped, NULL);

	json = check_exposition(metrics_to_file("real.prom"));
	snprintf(want, sizeof(want), "{'stream': '%s', 'state': 'orphan'}",
	    orphan);
	cr_assert_eq(value_of(json, "tcpspool_stream_state", want), 1);
	snprintf(want, sizeof(want), "{'stream': '%s', 'alive': '1'}", orphan);
	cr_assert_eq(value_of(json, "tcpspool_stream_info", want), 1);
	snprintf(want, sizeof(want), "{'stream': '%s', 'state': 'draining'}",
	    draining);
	cr_assert_eq(value_of(json, "tcpspool_stream_state", want), 1);
	snprintf(want, sizeof(want), "{'stream': '%s'}", draining);
	cr_assert_gt(value_of(json, "tcpspool_pending_bytes", want), 0);
	cr_assert_gt(value_of(json, "tcpspool_pending_records", want), 0);
	cr_assert_geq(value_of(json, "tcpspool_oldest_record_age_seconds",
	    want), 0);
	snprintf(want, sizeof(want), "{'stream': '%s', 'state': 'spooling'}",
	    spooling);
	cr_assert_eq(value_of(json, "tcpspool_stream_state", want), 1);
	snprintf(want, sizeof(want), "{'stream': '%s'}", spooling);
	cr_assert_gt(value_of(json, "tcpspool_stored_bytes", want), 0);
	snprintf(want, sizeof(want), "{'stream': '%s'}", dropped);
	cr_assert_gt(value_of(json, "tcpspool_dropped_writes_total", want), 0);
	cr_assert_geq(value_of(json, "tcpspool_streams",
	    "{'state': 'orphan'}"), 1);
	cr_assert_geq(value_of(json, "tcpspool_streams",
	    "{'state': 'draining'}"), 1);
	cr_assert_geq(value_of(json, "tcpspool_streams",
	    "{'state': 'spooling'}"), 1);

	close(c2);
	close(c3);
	close(c4);
	t_server_end(&two);
	t_server_end(&paused);
	t_server_end(&dropping);
}
