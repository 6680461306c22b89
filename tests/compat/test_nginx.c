/*
 * nginx as packaged (Debian's nginx-light), configured the way a user
 * writes nginx.conf: a master and its workers, and no `env LD_PRELOAD;` or
 * `env TCPSPOOL_*;` lines (one case has them, as the README once said).
 * The user starts the master with LD_PRELOAD and TCPSPOOL_DIR in its
 * environment (what `tcpspool run --dir DIR -- nginx`
 * does); that is all.
 *
 * What a user gets, found by running it: nginx gives its workers an empty
 * environment, but the library is already loaded in the master, which dups
 * descriptors before it forks; that first call reads the TCPSPOOL_
 * variables, so each worker (a fork, no exec) inherits the library and its
 * configuration, the user's TCPSPOOL_DIR included. When the master runs as
 * root, nginx switches its workers to its default user (nobody): the spool
 * dir is then the workers' own, as a user gives a service its spool dir
 * (compat_share_dir_with). These tests assert that the spool dir the user
 * named is the one the workers use.
 *
 * The client is curl limited to 8 MiB/s, fetching a 48 MiB file: the
 * kernel takes about 4 MiB, so nginx meets EAGAIN and the library spools.
 * Every scenario checks the bytes received against the file, that nginx
 * never lost a worker to a signal, and that everything ends within its
 * deadline. Each one runs without the library too (the baseline: nginx
 * handles EAGAIN itself, so it delivers everything, more slowly for
 * itself). A failure's message holds the bytes received, nginx's logs,
 * the spool dir's size and a backtrace of every nginx process.
 *
 * On the code of 2026-12 (issue 11, item 1) every preloaded scenario stalls
 * at about 4 MB: the worker hangs in pthread_rwlock_wrlock on the fd
 * table's lock, left broken in the child by the fork handlers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"

#define BIG_BYTES	(48LL << 20)
#define PART_BYTES	(16LL << 20)
#define RATE		"8M"	/* curl's unit: 8 MiB/s, 6 s for 48 MiB */
#define RELOAD_RATE	"4M"	/* 12 s: time to reload in the middle */
#define START_MS	20000
#define TRANSFER_MS	60000		/* ten times what the transfer takes */
#define STALL_MS	15000		/* no byte for this long: stuck */
#define STOP_MS		20000
#define MAX_FILES	3

TestSuite(nginx, .init = h_setup, .fini = h_teardown, .timeout = 180);

struct ngx {
	struct h_proc *master;
	unsigned short port;
	bool preload, sendfile;
	int workers;
	char conf[PATH_MAX], error_log[PATH_MAX], access_log[PATH_MAX];
	char what[160];		/* the scenario, for messages */
};

struct transfer {
	struct h_proc *curl;
	int nfiles;
	char out[MAX_FILES][PATH_MAX];	/* what curl received */
	char want[MAX_FILES][PATH_MAX];	/* what nginx served */
	long long received;	/* bytes in the out files, last look */
	long long at_log;	/* received when nginx logged a response, -1 */
	long long spool_max;	/* most bytes seen in the spool dir */
	long long last_progress_ms;
};

static void
require(const char *program, const char *package)
{
	if (compat_which(program) == NULL)
		cr_skip("%s is not installed (apt-get install %s; "
		    "scripts/setup.sh installs it)", program, package);
}

/* The configuration keeps the library's variables for the workers, as
 * the README once told users to write it (one test each way). */
static bool env_lines;

static void
write_config(struct ngx *ng)
{
	const char *d = h_dir();
	FILE *f = fopen(ng->conf, "we");

	cr_assert(f != NULL, "%s: %s", ng->conf, strerror(errno));
	if (env_lines)
		fprintf(f, "env LD_PRELOAD;\nenv TCPSPOOL_DIR;\n"
		    "env TCPSPOOL_LINGER;\n");
	/* As a user writes it; only the paths are the test's. */
	fprintf(f,
	    "daemon off;\n"
	    "master_process on;\n"
	    "worker_processes %d;\n"
	    "pid %s/nginx.pid;\n"
	    "error_log %s info;\n"
	    "events { worker_connections 64; }\n"
	    "http {\n"
	    "  log_format compat '$connection $connection_requests $status "
	    "$body_bytes_sent $request';\n"
	    "  access_log %s compat;\n"
	    "  client_body_temp_path %s/tmp/body;\n"
	    "  proxy_temp_path %s/tmp/proxy;\n"
	    "  fastcgi_temp_path %s/tmp/fastcgi;\n"
	    "  uwsgi_temp_path %s/tmp/uwsgi;\n"
	    "  scgi_temp_path %s/tmp/scgi;\n"
	    "  default_type application/octet-stream;\n"
	    "  sendfile %s;\n"
	    "  tcp_nopush on;\n"
	    "  keepalive_timeout 65;\n"
	    "  server {\n"
	    "    listen 127.0.0.1:%u;\n"
	    "    root %s/www;\n"
	    "    location / { }\n"
	    "  }\n"
	    "}\n", ng->workers, d, ng->error_log, ng->access_log, d, d, d, d,
	    d, ng->sendfile ? "on" : "off", ng->port, d);
	cr_assert(fclose(f) == 0);
}

/* The served files: big.bin (48 MiB) and part1..3.bin (16 MiB each,
 * different streams, so a response out of place shows). */
static void
write_site(void)
{
	char path[PATH_MAX];

	h_fmt(path, sizeof(path), "%s/www", h_dir());
	cr_assert(mkdir(path, 0755) == 0);
	h_fmt(path, sizeof(path), "%s/tmp", h_dir());
	cr_assert(mkdir(path, 0755) == 0);
	h_fmt(path, sizeof(path), "%s/www/big.bin", h_dir());
	compat_write_stream_file(path, BIG_BYTES, 1);
	for (int i = 1; i <= 3; i++) {
		h_fmt(path, sizeof(path), "%s/www/part%d.bin", h_dir(), i);
		compat_write_stream_file(path, PART_BYTES, 100 + (uint64_t)i);
	}
}

/* Starts nginx (retrying a lost race for the port) and waits until its
 * port answers. */
static void
ngx_start(struct ngx *ng, bool preload, bool sendfile, int workers)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		/* nginx is not ours: do not judge its leaks at exit. */
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = preload, .env = env };
	const char *user;
	uid_t uid;
	gid_t gid;

	memset(ng, 0, sizeof(*ng));
	ng->preload = preload;
	ng->sendfile = sendfile;
	ng->workers = workers;
	h_fmt(ng->conf, sizeof(ng->conf), "%s/nginx.conf", h_dir());
	h_fmt(ng->error_log, sizeof(ng->error_log), "%s/error.log", h_dir());
	h_fmt(ng->access_log, sizeof(ng->access_log), "%s/access.log",
	    h_dir());
	write_site();
	user = compat_worker_user("nginx", &uid, &gid) ? "nobody" :
	    "the test's user";
	compat_share_dir_with(uid, gid);
	snprintf(ng->what, sizeof(ng->what), "nginx master + %d worker%s "
	    "(%s), sendfile %s, %s", workers, workers > 1 ? "s" : "", user,
	    sendfile ? "on" : "off", preload ? "under the library" :
	    "without the library");
	for (int attempt = 0; attempt < 5; attempt++) {
		long long deadline = compat_now_ms() + START_MS;
		struct h_argv a = { .n = 0 };
		char early[PATH_MAX];

		ng->port = compat_free_port();
		write_config(ng);
		h_fmt(early, sizeof(early), "%s/early.log", h_dir());
		h_args(&a, "-p", h_dir(), "-c", ng->conf, "-e", early, NULL);
		ng->master = h_spawn("nginx", compat_which("nginx"), &a, &o);
		/* Bounded retry on the condition: the port answers. */
		while (!compat_accepts(ng->port)) {
			if (h_wait(ng->master, COMPAT_POLL_MS))
				break;
			cr_assert(compat_now_ms() < deadline, "%s does not "
			    "accept connections within %d ms: %s; error.log: "
			    "%s", ng->what, START_MS, h_describe(ng->master),
			    compat_tail(ng->error_log, 10));
		}
		if (h_exit_code(ng->master) == -1)
			return;
		cr_assert(strstr(compat_tail(ng->error_log, 10), "in use") !=
		    NULL || strstr(h_stderr(ng->master), "in use") != NULL,
		    "%s exited at start: %s; error.log: %s", ng->what,
		    h_describe(ng->master), compat_tail(ng->error_log, 10));
	}
	cr_assert_fail("nginx lost its port to a race five times");
}

/* Fails the test with why and everything a reader of CI's log needs to
 * diagnose it: bytes received, nginx's logs, the spool dir, backtraces. */
static void
ngx_fail(struct ngx *ng, struct transfer *t, const char *why)
{
	char files[1024], got[1024] = "";

	for (int i = 0; t != NULL && i < t->nfiles; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got),
		    "%s%lld bytes of %lld for %s", i > 0 ? ", " : "",
		    compat_file_size(t->out[i]), compat_file_size(t->want[i]),
		    strrchr(t->want[i], '/') + 1);
	h_spool_files(files, sizeof(files));
	cr_assert_fail("%s: %s\nreceived: %s\ncurl: %s\nnginx: %s\n"
	    "error.log ends with:\n%s\naccess.log ends with:\n%s\n"
	    "spool dir: %lld bytes in %s\nnginx processes: %s", ng->what,
	    why, got, t != NULL ? h_describe(t->curl) : "-",
	    h_describe(ng->master), compat_tail(ng->error_log, 30),
	    compat_tail(ng->access_log, 5), compat_spool_bytes(), files,
	    compat_group_report(h_pid(ng->master)));
}

/* curl fetching each path on one connection (keep-alive), limited to rate
 * (NULL: as fast as it can). */
static void
transfer_start(struct ngx *ng, struct transfer *t, const char *rate,
    const char *label, const char *const *paths)
{
	struct h_argv a = { .n = 0 };

	memset(t, 0, sizeof(*t));
	t->at_log = -1;
	t->last_progress_ms = compat_now_ms();
	h_args(&a, "-sS", "--max-time", "170", "-w",
	    "%{http_code} %{size_download} %{num_connects}\\n", NULL);
	if (rate != NULL)
		h_args(&a, "--limit-rate", rate, NULL);
	for (; *paths != NULL; paths++) {
		cr_assert(t->nfiles < MAX_FILES);
		h_fmt(t->out[t->nfiles], PATH_MAX, "%s/%s-%d.got", h_dir(),
		    label, t->nfiles);
		h_fmt(t->want[t->nfiles], PATH_MAX, "%s/www/%s", h_dir(),
		    *paths);
		h_args(&a, "-o", t->out[t->nfiles], NULL);
		h_arg(&a, "http://127.0.0.1:%u/%s", ng->port, *paths);
		t->nfiles++;
	}
	t->curl = h_spawn(label, compat_which("curl"), &a, NULL);
}

/* One look at the transfer: bytes received, spool size, nginx's log. */
static void
transfer_look(struct ngx *ng, struct transfer *t)
{
	long long got = 0, spooled = compat_spool_bytes();

	for (int i = 0; i < t->nfiles; i++) {
		long long s = compat_file_size(t->out[i]);

		got += s > 0 ? s : 0;
	}
	if (got != t->received)
		t->last_progress_ms = compat_now_ms();
	t->received = got;
	if (spooled > t->spool_max)
		t->spool_max = spooled;
	if (t->at_log < 0 && compat_file_lines(ng->access_log) > 0)
		t->at_log = got;
}

/*
 * Watches the transfer until curl exits, or until nginx logged a response
 * (until_logged) or the client has until_bytes bytes (>= 0). Fails the
 * test if no byte arrives for STALL_MS, if the deadline passes, or if
 * nginx exits.
 */
static void
transfer_watch(struct ngx *ng, struct transfer *t, bool until_logged,
    long long until_bytes, long long deadline)
{
	char why[256];

	for (;;) {
		if (h_wait(t->curl, COMPAT_POLL_MS))
			break;
		transfer_look(ng, t);
		if ((until_logged && t->at_log >= 0) ||
		    (until_bytes >= 0 && t->received >= until_bytes))
			return;
		if (h_exit_code(ng->master) != -1 || h_wait(ng->master, 0))
			ngx_fail(ng, t, "the nginx master exited during the "
			    "transfer");
		if (compat_now_ms() - t->last_progress_ms > STALL_MS) {
			snprintf(why, sizeof(why), "the client stalled: no "
			    "byte for %d ms, %lld bytes received",
			    STALL_MS, t->received);
			ngx_fail(ng, t, why);
		}
		if (compat_now_ms() > deadline) {
			snprintf(why, sizeof(why), "the transfer did not end "
			    "within %d ms (%lld bytes received)", TRANSFER_MS,
			    t->received);
			ngx_fail(ng, t, why);
		}
	}
	transfer_look(ng, t);
}

/* curl ended: it succeeded, and every file arrived whole. */
static void
transfer_check(struct ngx *ng, struct transfer *t)
{
	char why[512], out[PATH_MAX], line[128];
	FILE *f;
	int i = 0;

	if (h_exit_code(t->curl) != 0) {
		snprintf(why, sizeof(why), "curl failed (exit %d)",
		    h_exit_code(t->curl));
		ngx_fail(ng, t, why);
	}
	h_fmt(out, sizeof(out), "%s/%s.out", h_dir(), h_label(t->curl));
	cr_assert((f = fopen(out, "re")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL && i < t->nfiles) {
		int code = atoi(line);

		cr_expect_eq(code, 200, "%s: response %d: HTTP status %d",
		    ng->what, i + 1, code);
		i++;
	}
	fclose(f);
	cr_expect_eq(i, t->nfiles, "curl reported %d responses of %d", i,
	    t->nfiles);
	for (i = 0; i < t->nfiles; i++)
		if (!compat_same_file(t->out[i], t->want[i], why, sizeof(why)))
			ngx_fail(ng, t, why);
}

/* What the scenario shows about the library, in the test log. */
static void
transfer_report(struct ngx *ng, struct transfer *t)
{
	compat_report("%s: %lld bytes received intact; nginx logged its "
	    "first response when the client had %lld bytes; the spool dir "
	    "held up to %lld bytes%s", ng->what, t->received, t->at_log,
	    t->spool_max, t->spool_max > 0 ? " (the library spooled)" :
	    " (nothing spooled)");
	if (!ng->preload)
		return;
	cr_expect(t->spool_max > 0, "%s: nothing appeared in TCPSPOOL_DIR "
	    "(%s), the spool dir the master was started with: the workers "
	    "did not spool there (the library passed through, or used "
	    "another dir); error.log: %s", ng->what, h_spool_dir(),
	    compat_tail(ng->error_log, 5));
}

/* Stops nginx (SIGTERM to the master), within STOP_MS; no worker may have
 * died of a signal, nginx printed nothing on stdout. */
static void
ngx_stop(struct ngx *ng)
{
	char files[2048];

	kill(h_pid(ng->master), SIGTERM);
	if (!h_wait(ng->master, STOP_MS))
		ngx_fail(ng, NULL, "nginx did not stop within its deadline "
		    "after SIGTERM");
	cr_expect(strstr(compat_tail(ng->error_log, 200), "exited on signal")
	    == NULL, "%s: a worker died of a signal: %s", ng->what,
	    compat_tail(ng->error_log, 20));
	cr_expect_eq(h_exit_code(ng->master), 0, "%s: %s", ng->what,
	    h_describe(ng->master));
	cr_expect_eq(h_stdout_size(ng->master), 0, "nginx wrote on stdout");
	if (ng->preload)
		cr_expect(h_spool_wait_empty(10000), "%s: the spool dir is "
		    "not empty after delivery: %d files: %s", ng->what,
		    h_spool_files(files, sizeof(files)), files);
}

/* The 48 MiB file to the 8 MiB/s client. */
static void
serve_big_file(bool preload, bool sendfile, int workers)
{
	struct transfer t;
	struct ngx ng;

	require("nginx", "nginx-light");
	require("curl", "curl");
	ngx_start(&ng, preload, sendfile, workers);
	transfer_start(&ng, &t, RATE, "curl",
	    (const char *[]){ "big.bin", NULL });
	transfer_watch(&ng, &t, false, -1, compat_now_ms() + TRANSFER_MS);
	transfer_check(&ng, &t);
	transfer_report(&ng, &t);
	ngx_stop(&ng);
}

Test(nginx, baseline_without_library_sendfile_on_48mib_to_8mibps_client)
{
	serve_big_file(false, true, 1);
}

Test(nginx, sendfile_on_one_worker_delivers_48mib_to_8mibps_client)
{
	serve_big_file(true, true, 1);
}

Test(nginx, baseline_without_library_sendfile_off_48mib_to_8mibps_client)
{
	serve_big_file(false, false, 1);
}

Test(nginx, sendfile_off_one_worker_delivers_48mib_to_8mibps_client)
{
	serve_big_file(true, false, 1);
}

Test(nginx, env_lines_for_the_library_one_worker_delivers_48mib)
{
	env_lines = true;
	serve_big_file(true, true, 1);
}

Test(nginx, baseline_without_library_two_workers_48mib_to_8mibps_client)
{
	serve_big_file(false, true, 2);
}

Test(nginx, two_workers_sendfile_on_deliver_48mib_to_8mibps_client)
{
	serve_big_file(true, true, 2);
}

/*
 * Three 16 MiB responses on one keep-alive connection: under the library
 * the second and third go behind the spool of the first, and must arrive
 * after it, whole, on the same connection.
 */
static void
serve_keepalive(bool preload)
{
	char out[PATH_MAX], line[512];
	long long conn = -1;
	struct transfer t;
	struct ngx ng;
	FILE *f;
	int n = 0;

	require("nginx", "nginx-light");
	require("curl", "curl");
	ngx_start(&ng, preload, true, 1);
	transfer_start(&ng, &t, RATE, "curl", (const char *[]){ "part1.bin",
	    "part2.bin", "part3.bin", NULL });
	transfer_watch(&ng, &t, false, -1, compat_now_ms() + TRANSFER_MS);
	transfer_check(&ng, &t);
	/* curl made one connection: num_connects 1, then 0, 0. */
	h_fmt(out, sizeof(out), "%s/curl.out", h_dir());
	cr_assert((f = fopen(out, "re")) != NULL);
	for (int i = 0; fgets(line, sizeof(line), f) != NULL; i++) {
		long long code, size, connects;

		cr_assert(sscanf(line, "%lld %lld %lld", &code, &size,
		    &connects) == 3, "curl -w line: %s", line);
		cr_expect_eq(connects, i == 0 ? 1 : 0, "response %d came on "
		    "a new connection: curl reported %s", i + 1, line);
	}
	fclose(f);
	/* nginx saw requests 1, 2, 3 of one connection. */
	cr_assert((f = fopen(ng.access_log, "re")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		long long c, req;

		cr_assert(sscanf(line, "%lld %lld", &c, &req) == 2, "access "
		    "log line: %s", line);
		if (conn < 0)
			conn = c;
		n++;
		cr_expect(c == conn && req == n, "%s: request %d of the "
		    "keep-alive connection logged as: %s", ng.what, n, line);
	}
	fclose(f);
	cr_expect_eq(n, 3, "%s: nginx logged %d requests: %s", ng.what, n,
	    compat_tail(ng.access_log, 5));
	transfer_report(&ng, &t);
	ngx_stop(&ng);
}

Test(nginx, baseline_without_library_keepalive_three_responses)
{
	serve_keepalive(false);
}

Test(nginx, keepalive_three_16mib_responses_arrive_whole_in_order)
{
	serve_keepalive(true);
}

/*
 * A reload (SIGHUP to the master, what `nginx -s reload` sends) while the
 * slow client is being served: the master starts new workers and tells the
 * old one to finish gracefully. Under the library the old worker has
 * already logged the response (it is in the spool), so it closes the idle
 * keep-alive connection and exits: the library must deliver the spool at
 * that close and that exit. Then a new connection is served by the new
 * worker. The client reads at 4 MiB/s here, so that the reload comes well
 * before the end of the transfer even on a loaded machine.
 */
static void
serve_across_reload(bool preload)
{
	const char *started = "start worker process";
	struct transfer t, fast;
	long long deadline;
	struct ngx ng;
	int before;

	require("nginx", "nginx-light");
	require("curl", "curl");
	ngx_start(&ng, preload, true, 1);
	transfer_start(&ng, &t, RELOAD_RATE, "curl",
	    (const char *[]){ "big.bin", NULL });
	deadline = compat_now_ms() + TRANSFER_MS;
	/* Reload once nginx logged the response (under the library: every
	 * byte is in the spool or the kernel by then), or (without it, as
	 * nginx logs only at the end) once the client has a third of it. */
	transfer_watch(&ng, &t, true, preload ? -1 : BIG_BYTES / 3, deadline);
	cr_assert(h_exit_code(t.curl) == -1, "%s: the transfer ended before "
	    "the reload: %s", ng.what, h_describe(t.curl));
	before = compat_lines_with(ng.error_log, started);
	compat_report("%s: reload at %lld bytes received (nginx logged "
	    "the response at %lld)", ng.what, t.received, t.at_log);
	cr_assert(kill(h_pid(ng.master), SIGHUP) == 0);
	transfer_watch(&ng, &t, false, -1, deadline);
	transfer_check(&ng, &t);
	transfer_report(&ng, &t);
	/* The new worker serves a new connection. */
	deadline = compat_now_ms() + START_MS;
	while (compat_lines_with(ng.error_log, started) <
	    before + ng.workers) {
		if (compat_now_ms() > deadline)
			ngx_fail(&ng, &t, "no new worker started after "
			    "SIGHUP");
		compat_poll_pause();
	}
	transfer_start(&ng, &fast, NULL, "curl-after-reload",
	    (const char *[]){ "big.bin", NULL });
	transfer_watch(&ng, &fast, false, -1, compat_now_ms() + TRANSFER_MS);
	transfer_check(&ng, &fast);
	ngx_stop(&ng);
}

Test(nginx, baseline_without_library_reload_while_slow_client_is_served)
{
	serve_across_reload(false);
}

Test(nginx, reload_while_slow_client_is_served_delivers_every_byte)
{
	serve_across_reload(true);
}
