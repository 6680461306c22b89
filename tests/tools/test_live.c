/*
 * The CLI next to a real process under the library: server A's simulator,
 * started with `tcpspool run`, writes to a client that does not read, so
 * the library spools. ls shows the stream live (its process alive, the
 * state and figures the library publishes), stat/verify inspect it,
 * replay and rm refuse it; once the client reads everything, the stream is
 * delivered byte for byte and leaves the spool dir.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../fixtures/pattern.h"
#include "tools_test.h"

TestSuite(tools_live, .init = t_setup, .fini = t_teardown, .timeout = 150);

#define MESSAGES 400000		/* 28 bytes each: 11.2 MB, far above the
				 * ~4 MiB the kernel absorbs for a stalled
				 * client */

/* The sanitizer runtime the library needs before it, if any. */

/* Polls ls --json until a live stream with pending bytes is in state
 * (as published by the library); fills its name. */
static void
wait_state(const char *state, char name[SPOOL_NAME_MAX], int *pid)
{
	struct t_out o, py;
	char want[64], prog[1024];
	int i;

	snprintf(want, sizeof(want), "\"state\":\"%s\"", state);
	snprintf(prog, sizeof(prog),
	    "import json, sys\n"
	    "for line in sys.stdin:\n"
	    "    o = json.loads(line)\n"
	    "    s = o['status']\n"
	    "    if (o['alive'] and o['state'] == '%s' and s and\n"
	    "        s['fresh'] and s['pending_bytes'] > 0):\n"
	    "        print(o['stream'], o['pid'])\n", state);

	for (i = 0; i < 300; i++) {
		t_cli(&o, "ls", "--json", t_spool, NULL);
		cr_assert(o.status == 0, "%s", o.err);
		if (strstr(o.out, want) == NULL) {
			t_out_free(&o);
			t_sleep_ms(50);
			continue;
		}
		t_write_file(t_path("ls.json"), o.out, o.out_len);
		t_out_free(&o);
		t_python(&py, prog, t_path("ls.json"));
		if (sscanf(py.out, "%16s %d", name, pid) == 2) {
			t_out_free(&py);
			return;
		}
		t_out_free(&py);
		t_sleep_ms(100);
	}
	cr_assert_fail("no live %s stream appeared in ls --json", state);
}

Test(tools_live, ls_shows_a_spooling_process_live_and_the_cli_keeps_off)
{
	char port_file[400], pre[PATH_MAX + 16], name[SPOOL_NAME_MAX], want[64];
	char msg[PATTERN_DEFAULT_SIZE], count[32], fixture[PATH_MAX];
	const char *fdir = getenv("TCPSPOOL_FIXTURE_DIR");
	const char *env[] = { pre, "TCPSPOOL_LIB", NULL };
	struct t_proc server;
	struct t_out o;
	uint8_t *got;
	size_t len = 0, total = (size_t)MESSAGES * PATTERN_DEFAULT_SIZE, i;
	ssize_t n;
	int port, fd, pid;

	cr_assert(fdir != NULL);
	snprintf(fixture, sizeof(fixture), "%s/server_a", fdir);
	snprintf(port_file, sizeof(port_file), "%s/port", t_dir);
	snprintf(count, sizeof(count), "%d", MESSAGES);
	t_preload_env(pre, sizeof(pre));
	{
		const char *argv[] = { "CLI", "run", "--dir", t_spool,
		    "--linger", "60s", "--log-level", "warn", "--",
		    fixture, "--port-file", port_file, "--count", count, NULL };

		t_spawn(&server, argv, env);
	}
	port = t_read_port(port_file);
	fd = t_connect_stalled(port);

	wait_state("spooling", name, &pid);
	cr_assert_neq(pid, server.pid, "the writer is server_a's child");

	t_cli(&o, "ls", t_spool, NULL);
	cr_assert(strstr(o.out, " yes ") != NULL, "%s", o.out);
	/* server_a may have written its last message and closed meanwhile
	 * (ls reads every frame now): draining is the same stream, live. */
	cr_assert(strstr(o.out, "spooling") != NULL ||
	    strstr(o.out, "draining") != NULL, "%s", o.out);
	t_out_free(&o);
	t_cli(&o, "stat", "--dir", t_spool, name, NULL);
	snprintf(want, sizeof(want), "pid:      %d (running)\n", pid);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	t_out_free(&o);
	t_cli(&o, "verify", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s%s", o.out, o.err);
	t_out_free(&o);
	t_cli(&o, "replay", "--dir", t_spool, name, "--to", "127.0.0.1:9",
	    NULL);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, "is running") != NULL, "%s", o.err);
	t_out_free(&o);
	t_cli(&o, "rm", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 1);
	t_out_free(&o);
	t_cli(&o, "rm", "--orphans", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0);
	cr_assert_eq(o.out_len, 0, "%s", o.out);
	t_out_free(&o);

	/* server_a closes once it has written everything (all spooled):
	 * the stream is then delivered after the application's close. */
	{
		char name2[SPOOL_NAME_MAX];
		int pid2;

		wait_state("draining", name2, &pid2);
		cr_assert_str_eq(name2, name);
		cr_assert_eq(pid2, pid);
	}

	/* Now read: every byte, in order, then EOF. */
	got = malloc(total + 65536);
	cr_assert(got != NULL);
	while ((n = read(fd, got + len, total + 65536 - len)) > 0)
		len += (size_t)n;
	cr_assert(n == 0, "read: %s", strerror(errno));
	cr_assert_eq(len, total);
	for (i = 0; i < MESSAGES; i++) {
		pattern_message(msg, sizeof(msg), -1, i + 1);
		cr_assert(memcmp(got + i * sizeof(msg), msg, sizeof(msg)) == 0,
		    "message %zu differs", i + 1);
	}
	free(got);
	close(fd);
	t_wait(&server, &o);
	cr_assert_eq(o.status, 0, "server_a: %s", o.err);
	t_out_free(&o);

	/* Delivered: nothing left to list. */
	t_cli(&o, "ls", "--json", t_spool, NULL);
	cr_assert_eq(o.status, 0);
	cr_assert_eq(o.out_len, 0, "%s", o.out);
	t_out_free(&o);
}

static bool
exists_in_spool(const char *name)
{
	char p[700];

	snprintf(p, sizeof(p), "%s/%s", t_spool, name);
	return access(p, F_OK) == 0;
}

/* Polls ls --json (a bounded retry on the condition) until a stream is
 * an orphan released by its still running writer; fills its name. */
static void
wait_released(char name[SPOOL_NAME_MAX])
{
	struct t_out o, py;
	int i;

	for (i = 0; i < 600; i++) {
		t_cli(&o, "ls", "--json", t_spool, NULL);
		if (strstr(o.out, "\"released\":true") == NULL) {
			t_out_free(&o);
			t_sleep_ms(50);
			continue;
		}
		t_write_file(t_path("ls.json"), o.out, o.out_len);
		t_out_free(&o);
		t_python(&py, "import json, sys\n"
		    "for line in sys.stdin:\n"
		    "    o = json.loads(line)\n"
		    "    if o['released'] and o['alive']:\n"
		    "        print(o['stream'], o['why'])\n",
		    t_path("ls.json"));
		cr_assert(strstr(py.out, "peer reset") != NULL, "%s", py.out);
		cr_assert(sscanf(py.out, "%16s", name) == 1, "%s", py.out);
		t_out_free(&py);
		return;
	}
	cr_assert_fail("no released orphan appeared in ls --json");
}

/*
 * server_a under the library for two connections of 100,000 messages
 * (2.8 MB stored each: level 0) in a 4M quota; its children wait for EOF
 * on *hold after their last message: alive, with their connection closed
 * (close-hold). Returns the port.
 */
static int
start_two_connection_server(struct t_proc *server, int *hold,
    const char *orphans, const char *ttl, const char *log_level)
{
	char port_file[400], pre[PATH_MAX + 16], fixture[PATH_MAX], resume[16];
	const char *fdir = getenv("TCPSPOOL_FIXTURE_DIR");
	const char *env[] = { pre, "TCPSPOOL_LIB", NULL };
	int pfd[2];

	cr_assert(fdir != NULL);
	snprintf(fixture, sizeof(fixture), "%s/server_a", fdir);
	snprintf(port_file, sizeof(port_file), "%s/port", t_dir);
	cr_assert(pipe2(pfd, O_CLOEXEC) == 0);
	cr_assert(fcntl(pfd[0], F_SETFD, 0) == 0);	/* server_a's end */
	snprintf(resume, sizeof(resume), "%d", pfd[0]);
	t_preload_env(pre, sizeof(pre));
	{
		const char *argv[] = { "CLI", "run", "--dir", t_spool,
		    "--max", "4M", "--level", "0", "--linger", "60s",
		    "--orphans", orphans, "--orphan-ttl", ttl,
		    "--log-level", log_level, "--", fixture, "--port-file",
		    port_file, "--count", "100000", "--sndbuf", "4096",
		    "--connections", "2", "--end", "close-hold",
		    "--resume-fd", resume, NULL };

		t_spawn(server, argv, env);
	}
	close(pfd[0]);
	*hold = pfd[1];
	return t_read_port(port_file);
}

/* Reads fd to EOF: server_a's 100,000 messages, each checked. */
static void
read_every_message(int fd)
{
	size_t total = (size_t)100000 * PATTERN_DEFAULT_SIZE, len = 0, i;
	char msg[PATTERN_DEFAULT_SIZE];
	uint8_t *got = malloc(total + 65536);
	ssize_t n;

	cr_assert(got != NULL);
	while ((n = read(fd, got + len, total + 65536 - len)) > 0)
		len += (size_t)n;
	cr_assert(n == 0, "read: %s", strerror(errno));
	cr_assert_eq(len, total, "got %zu of %zu bytes", len, total);
	for (i = 0; i < 100000; i++) {
		pattern_message(msg, sizeof(msg), -1, i + 1);
		cr_assert(memcmp(got + i * sizeof(msg), msg, sizeof(msg)) == 0,
		    "message %zu differs", i + 1);
	}
	free(got);
}

/* The peer of fd resets it (SO_LINGER {1, 0}, then close). */
static void
reset_connection(int fd)
{
	setsockopt(fd, SOL_SOCKET, SO_LINGER,
	    &(struct linger){ .l_onoff = 1, .l_linger = 0 },
	    sizeof(struct linger));
	close(fd);
}

/*
 * Issue 18 item 2: a peer resets while the library spools for a server
 * that keeps running. The library lets go of the stream (an orphan, "peer
 * reset", process alive); it counted against TCPSPOOL_MAX while replay,
 * rm and rm --orphans refused it, so the server's next connection found
 * no room. Now rm --orphans removes it and the next connection spools all
 * it needs: with TCPSPOOL_MAX=4M and 2.8 MB spooled per connection
 * (stored, TCPSPOOL_LEVEL=0), the second fits only once the first is gone.
 */
Test(tools_live, released_orphan_of_running_server_removed_and_quota_given_back)
{
	char name[SPOOL_NAME_MAX], name2[SPOOL_NAME_MAX];
	struct t_proc server;
	struct t_out o;
	int port, fd, hold, pid2;

	port = start_two_connection_server(&server, &hold, "expire", "10m",
	    "warn");

	/* Connection 1: spooled, then the peer resets. */
	fd = t_connect_stalled(port);
	wait_state("draining", name, &pid2);
	reset_connection(fd);
	wait_released(name2);
	cr_assert_str_eq(name2, name);
	cr_assert(exists_in_spool(name));

	t_cli(&o, "rm", "--orphans", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, name) != NULL, "%s", o.out);
	t_out_free(&o);
	cr_assert(!exists_in_spool(name));

	/* Connection 2: its 2.8 MB fit under the 4M quota again. */
	fd = t_connect_stalled(port);
	wait_state("draining", name2, &pid2);
	read_every_message(fd);
	close(fd);
	close(hold);
	t_wait(&server, &o);
	t_out_free(&o);
}

/* A bounded poll: true once name is gone from the spool dir. */
static bool
wait_gone(const char *name)
{
	for (int i = 0; i < 1200; i++) {	/* 60 s */
		if (!exists_in_spool(name))
			return true;
		t_sleep_ms(50);
	}
	return false;
}

/*
 * Issue 16 item 4: the orphan of a peer that reset is removed by the
 * library itself when its TTL runs out (no operator, no cron), and until
 * then it counts against TCPSPOOL_MAX: with --max 4M and 2.8 MB spooled
 * per connection, the second connection gets everything only because the
 * first one's orphan went. Under --orphans discard it goes at once.
 */
static void
orphan_policy_case(const char *policy, const char *ttl, const char *said)
{
	char name[SPOOL_NAME_MAX];
	struct t_proc server;
	struct t_out o;
	int port, fd, hold, pid;

	port = start_two_connection_server(&server, &hold, policy, ttl,
	    "info");
	fd = t_connect_stalled(port);
	wait_state("draining", name, &pid);
	reset_connection(fd);
	cr_assert(wait_gone(name), "the orphan %s was never removed", name);
	/*
	 * Gone from sight is not done: the sweep renames the stream to
	 * .del, deletes its files, and only then logs. The line is waited
	 * for before anything makes the process exit (close(hold) below),
	 * else an exit in the middle (which the library allows: the next
	 * sweep deletes the .del) takes the line with it.
	 */
	cr_assert(t_said(&server, said, 60000), "the log never said \"%s\" "
	    "after the orphan %s was removed", said, name);

	fd = t_connect_stalled(port);
	read_every_message(fd);
	close(fd);
	close(hold);
	t_wait(&server, &o);
	cr_assert(strstr(o.err, said) != NULL, "the log never said \"%s\":\n%s",
	    said, o.err);
	t_out_free(&o);
}

Test(tools_live, an_expired_orphan_is_removed_by_the_library)
{
	orphan_policy_case("expire", "2s", "orphan expired, removed");
}

Test(tools_live, a_discarded_orphan_goes_at_once)
{
	orphan_policy_case("discard", "10m", "discarded (TCPSPOOL_ORPHANS=discard)");
}
