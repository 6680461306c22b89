/*
 * tcpspool top (issue 17 item 3): plain repeated tables when stdout is no
 * terminal, the largest backlog first, a drain rate and an ETA once a
 * stream shrinks between two samples; on a terminal (a tmux pane), the
 * live view of a spooling server_a, left with q.
 */
#include <sys/socket.h>

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_top, .init = t_setup, .fini = t_teardown, .timeout = 170);

static char *
slurp_file(const char *path)
{
	char *buf = NULL;
	size_t cap = 0;
	FILE *f, *m;
	int c;

	if ((m = open_memstream(&buf, &cap)) == NULL)
		return NULL;
	if ((f = fopen(path, "r")) != NULL) {
		while ((c = getc(f)) != EOF)
			putc(c, m);
		fclose(f);
	}
	fclose(m);
	return buf;
}

/* The last row of stream name in text whose RECORDS column is records:
 * its DRAIN/s and ETA cells. */
static bool
row_with(const char *text, const char *name, unsigned long records,
    char drain[32], char eta[32])
{
	const char *p = text;
	char st[32], pend[32], old[32];
	unsigned long recs;
	bool found = false;
	int pid;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == text || p[-1] == '\n') &&
		    sscanf(p + 16, "%d %31s %31s %lu %31s %31s %31s", &pid, st,
		    pend, &recs, old, drain, eta) == 7 && recs == records)
			found = true;
		p += 16;
	}
	return found;
}

static void
ack_records(const char *name, uint64_t n)
{
	struct spool_err e = { "" };
	struct spool_record rec;
	struct spool_cursor *c;
	struct spool_dir *d;
	uint64_t i;

	cr_assert(spool_dir_inspect(t_spool, false, &d, &e) == 0, "%s", e.msg);
	cr_assert(spool_cursor_open(d, name, &c, &e) == 0, "%s", e.msg);
	for (i = 0; i < n; i++)
		cr_assert(spool_cursor_next(c, &rec, &e) == 1, "%s", e.msg);
	cr_assert(spool_cursor_ack(c, rec.seq, rec.len, true, &e) == 0, "%s",
	    e.msg);
	spool_cursor_close(c);
	spool_dir_close(d);
}

Test(tools_top, plain_tables_largest_first_with_a_rate_once_a_stream_drains)
{
	struct t_stream_spec big = { .writer = T_LIVE_CLOSED, .records = 200,
		.per_frame = 10 };
	struct t_stream_spec small = { .writer = T_ORPHAN, .records = 5 };
	char b[SPOOL_NAME_MAX], s[SPOOL_NAME_MAX], drain[32], eta[32];
	const char *argv[] = { "CLI", "top", "--dir", t_spool, "--interval",
	    "100ms", NULL };
	struct t_proc top;
	struct t_out o;
	char *text = NULL;
	int i;

	t_make_stream(&big, b);
	t_make_stream(&small, s);
	t_spawn(&top, argv, NULL);
	for (i = 0; i < 600; i++) {
		free(text);
		text = slurp_file(top.out_path);
		if (text != NULL && row_with(text, b, 200, drain, eta))
			break;
		t_sleep_ms(50);
	}
	cr_assert(row_with(text, b, 200, drain, eta), "%s", text);
	cr_assert(strstr(text, "tcpspool top  ") == text, "%s", text);
	cr_assert(strstr(text, "\033") == NULL, "escapes on a pipe");
	/* Sorted by pending bytes: the big stream's row comes first. */
	cr_assert(strstr(text, b) < strstr(text, s), "%s", text);

	/* Half of it delivered: the first table showing 100 records left
	 * shows a positive rate and when it will be empty at that rate. */
	ack_records(b, 100);
	for (i = 0; i < 600; i++) {
		free(text);
		text = slurp_file(top.out_path);
		if (text != NULL && row_with(text, b, 100, drain, eta))
			break;
		t_sleep_ms(50);
	}
	cr_assert(row_with(text, b, 100, drain, eta), "%s", text);
	cr_assert(drain[0] >= '1' && drain[0] <= '9', "DRAIN/s %s\n%s", drain,
	    text);
	cr_assert(strchr("0123456789", eta[0]) != NULL &&
	    strchr("smhd", eta[strlen(eta) - 1]) != NULL, "ETA %s\n%s", eta,
	    text);
	free(text);

	kill(top.pid, SIGTERM);
	t_wait(&top, &o);
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_out_free(&o);
}

static bool
have_tmux(void)
{
	const char *argv[] = { "/bin/sh", "-c", "command -v tmux", NULL };
	struct t_out o;
	bool ok;

	t_run(&o, argv, NULL);
	ok = o.status == 0;
	t_out_free(&o);
	return ok;
}

/* tmux -S t_dir/tmux ARGS... */
static void
tmux(struct t_out *o, const char *a, const char *b, const char *c,
    const char *d)
{
	char sock[400];
	const char *argv[] = { "/usr/bin/env", "tmux", "-S", sock, a, b, c, d,
	    NULL };

	snprintf(sock, sizeof(sock), "%s/tmux", t_dir);
	t_run(o, argv, NULL);
}

Test(tools_top, on_a_terminal_shows_a_spooling_server_live_and_quits_on_q)
{
	const char *opts[] = { "--linger", "120s", NULL };
	const char *args[] = { "--count", "120000", "--pause-at", "60000",
	    NULL };
	const char *cli = getenv("TCPSPOOL_TEST_CLI"), *keep;
	char name[SPOOL_NAME_MAX], cmd[2048], rc_path[400];
	struct t_server srv;
	struct t_out o;
	char *rc = NULL;
	int fd, i;

	if (!have_tmux())
		cr_skip_test("tmux is not installed");
	t_server_start(&srv, "top", opts, args);
	fd = t_connect_stalled(srv.port);
	t_wait_stream(t_spool, "o['alive'] and o['state'] == 'spooling' and "
	    "s and s['pending_bytes'] > 0", name, NULL);

	snprintf(rc_path, sizeof(rc_path), "%s/top.rc", t_dir);
	snprintf(cmd, sizeof(cmd), "'%s' top --dir '%s' --interval 200ms; "
	    "echo $? > '%s'", cli, t_spool, rc_path);
	{
		char sock[400];
		const char *argv[] = { "/usr/bin/env", "tmux", "-S", sock,
		    "new-session", "-d",
		    "-x", "110", "-y", "12", "-s", "top", cmd, NULL };

		snprintf(sock, sizeof(sock), "%s/tmux", t_dir);
		t_run(&o, argv, NULL);
		cr_assert_eq(o.status, 0, "tmux: %s", o.err);
		t_out_free(&o);
	}
	for (i = 0; i < 600; i++) {
		tmux(&o, "capture-pane", "-p", "-t", "top");
		if (strstr(o.out, name) != NULL &&
		    strstr(o.out, "spooling") != NULL)
			break;
		t_out_free(&o);
		t_sleep_ms(50);
	}
	cr_assert(i < 600, "top never showed %s spooling", name);
	cr_assert(strstr(o.out, "tcpspool top  ") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "(q quits)") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "DRAIN/s") != NULL, "%s", o.out);
	/* The screen, for the README when asked. */
	t_write_file(t_path("screen.txt"), o.out, o.out_len);
	if ((keep = getenv("TCPSPOOL_TEST_TOP_SCREEN")) != NULL)
		t_write_file(keep, o.out, o.out_len);
	t_out_free(&o);

	tmux(&o, "send-keys", "-t", "top", "q");
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_out_free(&o);
	for (i = 0; i < 600; i++) {
		free(rc);
		rc = slurp_file(rc_path);
		if (rc != NULL && rc[0] != '\0')
			break;
		t_sleep_ms(50);
	}
	cr_assert(rc != NULL && strcmp(rc, "0\n") == 0, "top's exit: %s", rc);
	free(rc);
	tmux(&o, "kill-server", NULL, NULL, NULL);
	t_out_free(&o);

	close(fd);
	t_server_end(&srv);
}
