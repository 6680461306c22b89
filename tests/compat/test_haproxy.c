/*
 * haproxy as packaged (Debian's haproxy), in TCP mode, started as a user
 * starts it: master-worker (`-W`, the master forks the worker that serves),
 * in the foreground (`-db`), logging to stderr. It proxies a client to a
 * backend that sends 48 MiB as fast as the proxy takes it (threaded_server,
 * blocking sockets, no send timeout: it never sees EAGAIN and is never
 * preloaded). The client reads at 8 MiB/s.
 *
 * Without the library haproxy meets EAGAIN on the client's socket and
 * handles it itself (it stops reading from the backend): everything
 * arrives. Under the library every write to the client succeeds, haproxy
 * reads the backend at full speed and the library spools what the client
 * has not read yet. With `option splice-response` haproxy moves the
 * response through a pipe with splice(2), into the client's socket: under
 * the library those splices go to the spool. (strace of the worker, by
 * hand: splice(pipe, NULL, client, NULL, 65536, SPLICE_F_MOVE |
 * SPLICE_F_NONBLOCK), some ninety of them for 48 MiB, the rest of the
 * response through send().)
 *
 * And a reload (SIGUSR2: the master re-executes itself with its
 * environment, LD_PRELOAD included, forks a new worker, soft-stops the old
 * one, and execs itself once more into its wait mode; the test checks
 * that every haproxy process then has the library) while the slow client
 * is served: under the library the old
 * worker has handed everything to the spool, closes and exits, and the
 * library must deliver the spool at that close and that exit.
 *
 * The client must get every byte, then haproxy's FIN; the master must stop
 * on SIGTERM as it does without the library; the spool dir must end empty.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scenario.h"

#define BIG_BYTES	(48LL << 20)
#define RATE		"8388608"	/* 8 MiB/s: 6 s for 48 MiB */
#define START_MS	20000
#define CLIENT_MS	50000
#define STOP_MS		20000
#define RELOAD_MS	30000	/* a hang guard: a reload takes 0.1 to 1 s */

TestSuite(haproxy, .init = h_setup, .fini = h_teardown, .timeout = 120);

static const char *
haproxy_version(void)
{
	static char version[48];
	const char *v = scn_version(compat_which("haproxy"), "-v");
	const char *at = strstr(v, "version ");

	at = at != NULL ? at + 8 : v;
	snprintf(version, sizeof(version), "%.*s", (int)strcspn(at, " "), at);
	return version;
}

/* The backend: n connections, the file to each, close; never
 * preloaded. */
static struct h_proc *
start_backend(struct scn *s, const char *file, int n, unsigned short *port)
{
	struct h_argv a = { .n = 0 };
	char prog[PATH_MAX];
	struct h_proc *p;
	const char *line;

	h_fmt(prog, sizeof(prog), "%s/threaded_server", COMPAT_FIXTURE_DIR);
	h_args(&a, "--file", file, "--status-fd", "3", "--sndtimeo-ms", "0",
	    NULL);
	h_arg(&a, "--connections=%d", n);
	p = h_spawn("backend", prog, &a, NULL);
	s->backend = p;
	if ((line = h_status_line(p, "port ", 0, START_MS)) == NULL)
		scn_fail(s, "the backend announced no port: %s",
		    h_describe(p));
	*port = (unsigned short)strtol(line + 5, NULL, 10);
	return p;
}

static void
write_config(const char *path, unsigned short port, unsigned short backend,
    bool splice)
{
	FILE *f = fopen(path, "we");

	cr_assert(f != NULL, "%s: %s", path, strerror(errno));
	fprintf(f,
	    "global\n"
	    "  log stderr format raw local0 info\n"
	    "defaults\n"
	    "  mode tcp\n"
	    "  log global\n"
	    "  option tcplog\n"
	    "  timeout connect 5s\n"
	    "  timeout client 60s\n"
	    "  timeout server 60s\n"
	    "frontend fe\n"
	    "  bind 127.0.0.1:%u\n"
	    "  default_backend be\n"
	    "backend be\n"
	    "%s"
	    "  server s1 127.0.0.1:%u\n", port, splice ?
	    "  option splice-response\n" : "", backend);
	cr_assert(fclose(f) == 0);
}

/* The master's log says a worker ended otherwise than as SIGTERM ends it
 * without the library ("exited with code 143 (Terminated)"). */
static bool
worker_failed(const char *log)
{
	const char *line = log;

	while ((line = strstr(line, "exited with code ")) != NULL) {
		line += strlen("exited with code ");
		if (strncmp(line, "143 (Terminated)", 16) != 0 &&
		    strncmp(line, "0 ", 2) != 0)
			return true;
	}
	return false;
}

/* Occurrences of needle in text. */
static int
count_in(const char *text, const char *needle)
{
	int n = 0;

	while ((text = strstr(text, needle)) != NULL) {
		n++;
		text += strlen(needle);
	}
	return n;
}

/* 1 if pid has the library mapped, 0 if not, -1 if it has no map (gone,
 * or a zombie not yet reaped). */
static int
has_library(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	if (compat_file_lines(path) == 0)
		return -1;
	return compat_lines_with(path, "libtcpspool") > 0;
}

/*
 * After the reload: every live haproxy process has the library (under it)
 * or none has (without it). The master, having forked the new worker and
 * said "Loading success", execs itself once more (into its wait mode, as
 * at start): while that exec is under way its map is the bare program's,
 * so the check is retried until it holds or STOP_MS pass.
 */
static void
expect_library_in_group(struct scn *s)
{
	long long deadline = compat_now_ms() + STOP_MS;
	pid_t pids[16], odd = 0;
	int live;

	do {
		int n = compat_group_pids(h_pid(s->server), pids, 16);

		live = 0;
		odd = 0;
		for (int i = 0; i < n; i++) {
			int has = has_library(pids[i]);

			if (has < 0)
				continue;
			live++;
			if (has != s->preload)
				odd = pids[i];
		}
		if (odd == 0 && live >= 2)
			return;
		compat_poll_pause();
	} while (compat_now_ms() < deadline);
	cr_expect_fail("%s: %d live haproxy processes after the reload; "
	    "process %d %s the library; the group: %s", s->what, live,
	    (int)odd, s->preload ? "lacks" : "has",
	    compat_group_report(h_pid(s->server)));
}

/* The first n - 1 bytes of /proc/pid/name, as a string ("" if gone). */
static const char *
proc_text(pid_t pid, const char *name, char *out, size_t n)
{
	char path[64];
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	out[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return out;
	r = read(fd, out, n - 1);
	close(fd);
	out[r > 0 ? r : 0] = '\0';
	return out;
}

/* The signal mask named field ("SigBlk:", "SigCgt:") of pid's status. */
static unsigned long long
signal_mask(const char *status, const char *field)
{
	const char *at = strstr(status, field);

	return at != NULL ? strtoull(at + strlen(field), NULL, 16) : 0;
}

/*
 * The master takes a reload only from its wait mode; until then haproxy
 * (2.6) loses a SIGUSR2 for good, library or not. main() sets SIGUSR2 to
 * SIG_IGN in every image (signal_register_fct(SIGUSR2, NULL, 0)); the
 * first image binds the port, forks the worker, says "Loading success",
 * blocks the signal and re-executes itself into its wait mode, whose main()
 * ignores SIGUSR2 again, which discards one pending; only mworker_loop()
 * then gives it a handler and unblocks it. The worker serves meanwhile, and
 * under the library the spool holds 8 MiB a few hundred ms after the
 * client starts: the reload must wait for the master, not for the stream.
 * Ready: SIGUSR2 caught and not blocked (/proc/PID/status). A signal that
 * comes after that is never left for the poll's timeout: haproxy's signal
 * handler wakes its poller since 2.6.6 ("signals/poller: ensure wakeup
 * from signals").
 */
static bool
master_takes_reload(pid_t master)
{
	unsigned long long usr2 = 1ULL << (SIGUSR2 - 1);
	char status[4096];

	proc_text(master, "status", status, sizeof(status));
	return (signal_mask(status, "SigCgt:") & usr2) != 0 &&
	    (signal_mask(status, "SigBlk:") & usr2) == 0;
}

/*
 * A reload (SIGUSR2 to the master: it re-executes itself, starts a new
 * worker and tells the old one to finish its connections) once the slow
 * client's stream is well under way (under the library once 8 MiB are
 * spooled, without it once the client has 8 MiB) and the master can take
 * it. Then a second client, as fast as it can, must be served whole by the
 * new worker. The waits on the master are bounded by a hang guard
 * (RELOAD_MS), never by how long a reload usually takes.
 */
static void
reload_midway(struct scn *s, unsigned short port, const char *req,
    const char *file)
{
	long long deadline = compat_now_ms() + CLIENT_MS;
	const char *loaded = "Loading success";
	long long midway, sent, got, spooled;
	int before, c;

	for (;;) {
		scn_look(s);
		if (s->preload ? s->spool_max >= (8LL << 20) :
		    compat_file_size(s->client[0].out) >= (8LL << 20))
			break;
		if (h_wait(s->client[0].proc, COMPAT_POLL_MS))
			scn_fail(s, "the client ended before the reload");
		if (compat_now_ms() > deadline)
			scn_fail(s, "the stream never reached 8 MiB");
	}
	midway = compat_now_ms();
	deadline = midway + RELOAD_MS;
	while (!master_takes_reload(h_pid(s->server))) {
		scn_look(s);
		if (h_wait(s->server, COMPAT_POLL_MS))
			scn_fail(s, "the master exited before its wait mode");
		if (compat_now_ms() > deadline)
			scn_fail(s, "the master was not in its wait mode "
			    "within %d ms", RELOAD_MS);
	}
	before = count_in(h_stderr(s->server), loaded);
	got = compat_file_size(s->client[0].out);
	spooled = compat_spool_bytes();
	sent = compat_now_ms();
	cr_assert(kill(h_pid(s->server), SIGUSR2) == 0);
	deadline = sent + RELOAD_MS;
	while (count_in(h_stderr(s->server), loaded) == before) {
		scn_look(s);
		if (h_wait(s->server, COMPAT_POLL_MS))
			scn_fail(s, "the master exited at the reload");
		if (compat_now_ms() > deadline)
			scn_fail(s, "no new worker loaded within %d ms of "
			    "SIGUSR2", RELOAD_MS);
	}
	compat_report("%s: reload when the client had %lld bytes and the "
	    "spool dir %lld, the master in its wait mode %lld ms after the "
	    "stream reached 8 MiB; the new worker loaded %lld ms after "
	    "SIGUSR2", s->what, got, spooled, sent - midway,
	    compat_now_ms() - sent);
	expect_library_in_group(s);
	c = scn_client(s, "client-after-reload", port, false,
	    (const char *const[]){ "--send", req, NULL });
	scn_wait_client(s, c, CLIENT_MS, false);
	scn_expect_delivered(s, c, file);
}

static void
proxy(bool preload, bool splice, bool reload)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = preload, .env = env };
	char file[PATH_MAX], conf[PATH_MAX], req[PATH_MAX];
	unsigned short port, backend_port;
	struct h_proc *backend;
	struct scn s;
	int code;
	FILE *f;

	scn_require("haproxy", "haproxy");
	scn_init(&s, preload, "haproxy %s -W (master + worker), TCP mode%s, "
	    "48 MiB from a backend to an 8 MiB/s client%s", haproxy_version(),
	    splice ? ", option splice-response" : "", reload ? ", a reload "
	    "(SIGUSR2) midway" : "");
	h_fmt(file, sizeof(file), "%s/big.bin", h_dir());
	compat_write_stream_file(file, BIG_BYTES, 31);
	h_fmt(req, sizeof(req), "%s/request.txt", h_dir());
	cr_assert((f = fopen(req, "we")) != NULL);
	fputs("GET\n", f);
	cr_assert(fclose(f) == 0);
	backend = start_backend(&s, file, reload ? 2 : 1, &backend_port);
	h_fmt(conf, sizeof(conf), "%s/haproxy.cfg", h_dir());
	for (int attempt = 0;; attempt++) {
		struct h_argv a = { .n = 0 };

		cr_assert(attempt < 5, "haproxy lost its port to a race five "
		    "times");
		port = compat_free_port();
		write_config(conf, port, backend_port, splice);
		h_args(&a, "-W", "-db", "-f", conf, NULL);
		s.server = h_spawn("haproxy", compat_which("haproxy"), &a, &o);
		if (scn_wait_listening(&s, port, START_MS))
			break;
		if (strstr(h_stderr(s.server), "in use") == NULL &&
		    strstr(h_stderr(s.server), "cannot bind") == NULL)
			scn_fail(&s, "haproxy exited at start");
	}
	scn_client(&s, "client", port, false, (const char *const[]){
	    "--send", req, "--rate", RATE, NULL });
	if (reload)
		reload_midway(&s, port, req, file);
	scn_wait_client(&s, 0, CLIENT_MS, false);
	scn_expect_delivered(&s, 0, file);
	cr_expect(h_wait(backend, STOP_MS) && h_exit_code(backend) == 0,
	    "%s: backend: %s", s.what, h_describe(backend));
	code = scn_stop(&s, s.server, SIGTERM, STOP_MS);
	cr_expect(code == 0 || code == 128 + SIGTERM, "%s: the master "
	    "ended with %d on SIGTERM: %s", s.what, code,
	    h_describe(s.server));
	cr_expect_eq(h_stdout_size(s.server), 0, "haproxy wrote on stdout");
	cr_expect(!worker_failed(h_stderr(s.server)), "%s: a worker "
	    "failed: %s", s.what, h_stderr(s.server));
	if (preload)
		cr_expect(s.spool_max > 0, "%s: nothing was spooled", s.what);
	scn_finish(&s, "%lld bytes intact in %lld ms, then FIN; the master "
	    "ended with %d on SIGTERM", s.client[0].r.bytes,
	    s.client[0].r.ms, code);
}

Test(haproxy, baseline_without_library_master_worker_tcp_48mib)
{
	proxy(false, false, false);
}

Test(haproxy, master_worker_tcp_48mib_to_8mibps_client_arrives_whole)
{
	proxy(true, false, false);
}

Test(haproxy, baseline_without_library_splice_response_48mib)
{
	proxy(false, true, false);
}

Test(haproxy, splice_response_48mib_to_8mibps_client_arrives_whole)
{
	proxy(true, true, false);
}

Test(haproxy, baseline_without_library_reload_while_slow_client_is_served)
{
	proxy(false, false, true);
}

Test(haproxy, reload_while_slow_client_is_served_delivers_every_byte)
{
	proxy(true, false, true);
}
