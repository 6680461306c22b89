/*
 * dropin.c — see dropin.h: the helpers, then the thread and signal
 * scenarios (thread_host).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "dropin.h"

struct h_proc *
dropin_host(const char *prog, const struct h_spawn *o, unsigned short *port,
    ...)
{
	static const struct h_spawn preloaded = { .preload = true };
	struct h_argv a = { .n = 0 };
	char path[PATH_MAX];
	struct h_proc *p;
	const char *line, *s;
	va_list ap;

	va_start(ap, port);
	while ((s = va_arg(ap, const char *)) != NULL)
		h_arg(&a, "%s", s);
	va_end(ap);
	h_fixture(path, sizeof(path), prog);
	p = h_spawn(prog, path, &a, o != NULL ? o : &preloaded);
	line = h_status_line(p, "port ", 0, H_DEADLINE_MS);
	H_ASSERT(line != NULL, "%s announced no port: %s", prog,
	    h_describe(p));
	*port = (unsigned short)strtol(line + 5, NULL, 10);
	return p;
}

const char *
dropin_expect(struct h_proc *p, const char *prefix, int ms, const char *why)
{
	const char *line = h_status_line(p, prefix, 0, ms);

	if (line == NULL)
		H_FAIL("%s: no \"%s\" line within %d ms; status:\n%s%s", why,
		    prefix, ms, h_status_text(p), h_describe(p));
	return line;
}

void
dropin_expect_exit(struct h_proc *p, int ms, int code, const char *why)
{
	H_ASSERT(h_wait(p, ms), "%s: still running after %d ms; status:\n%s%s",
	    why, ms, h_status_text(p), h_describe(p));
	H_EXPECT(h_exit_code(p) == code, "%s: exit %d, expected %d; "
	    "status:\n%s%s", why, h_exit_code(p), code, h_status_text(p),
	    h_describe(p));
}

void
dropin_reader_done(struct h_proc *p, struct h_result *r)
{
	H_ASSERT(h_wait(p, H_DEADLINE_MS), "%s did not finish: %s",
	    h_label(p), h_describe(p));
	H_ASSERT(h_reader_result(p, r), "%s left no result: %s", h_label(p),
	    h_describe(p));
}

void
dropin_expect_stream(struct h_proc *p, const struct h_result *r,
    long long bytes)
{
	H_EXPECT(r->mismatch == -1, "%s: the stream differs at byte %lld "
	    "(of %lld received)", h_label(p), r->mismatch, r->bytes);
	H_EXPECT(r->bytes == bytes, "%s received %lld bytes, expected %lld "
	    "(end %s)", h_label(p), r->bytes, bytes, r->end);
	H_EXPECT(strcmp(r->end, "EOF") == 0, "%s: the stream ended with %s, "
	    "not EOF, after %lld bytes", h_label(p), r->end, r->bytes);
}

/* ------------------------------------------------ thread_host scenarios */

static void
blocked_send_aborted(const char *how)
{
	struct h_proc *p, *rd;
	struct h_result r;
	struct h_gate g;
	unsigned short port;
	const char *line;
	char prefix[32];
	long long e;

	/* The reader reads nothing until the end: the sender's blocking
	 * send fills the window and sleeps in the kernel. */
	h_gate_init(&g);
	p = dropin_host("thread_host", NULL, &port, how, NULL);
	rd = h_reader(0, port, &g, "--rcvbuf=4096", "--expect-prefix",
	    "--count=100000000", NULL);
	dropin_expect(p, "blocked", H_DEADLINE_MS, "the sender never blocked "
	    "in send()");
	h_fmt(prefix, sizeof(prefix), "%s-returned ", how);
	line = dropin_expect(p, prefix, DROPIN_STEP_MS, "a call that does "
	    "not block without the library waits for the blocked send");
	H_EXPECT(h_field(line, "r") == 0, "%s", line);
	if (strcmp(how, "shutdown") == 0) {
		/* shutdown(SHUT_RDWR) wakes the sender: EPIPE or a count. */
		line = dropin_expect(p, "send-returned ", DROPIN_STEP_MS,
		    "shutdown(SHUT_RDWR) did not end the blocked send");
		e = h_field(line, "errno");
		H_EXPECT(h_field(line, "r") > 0 || e == EPIPE, "the aborted "
		    "send: %s", line);
	}
	/* Without the library, a close() leaves the send blocked until the
	 * peer reads; the next send fails (EBADF). */
	h_gate_open(&g);
	dropin_expect(p, "send-returned ", H_DEADLINE_MS, "the send never "
	    "returned after the reader read");
	dropin_expect_exit(p, DROPIN_STEP_MS, 0, "thread_host");
	dropin_reader_done(rd, &r);
	H_EXPECT(r.mismatch == -1 && strcmp(r.end, "EOF") == 0, "the reader "
	    "should get a clean prefix, then EOF: mismatch at %lld of %lld, "
	    "end %s", r.mismatch, r.bytes, r.end);
}

/*
 * A thread blocked in send() on a blocking socket the library knows (it
 * was dup()ed), the peer not reading; another thread calls
 * shutdown(SHUT_RDWR), the usual way to abort a stuck sender: it returns
 * at once and the send returns EPIPE (or the count it sent).
 */
void
shutdown_from_another_thread_unblocks_a_blocked_send(void)
{
	blocked_send_aborted("shutdown");
}

/* The same with close() from the other thread: close returns at once. */
void
close_from_another_thread_returns_while_a_send_is_blocked(void)
{
	blocked_send_aborted("close");
}

/*
 * _exit(0) from a SIGTERM handler while a thread writes to a spooling
 * connection: the process must end as soon as the reader has taken what
 * was spooled, never hang on a lock the interrupted code holds, never wait
 * out the linger time (30 s) with a reader that reads. in_writer: the
 * handler interrupts the writing thread (often inside the library, whose
 * locks it may hold: the exit then waits for no peer); else it runs in
 * the main thread while the writer goes on, and every byte reported sent
 * before the signal must arrive.
 */
static void
sigterm_exit(const char *scenario, bool in_writer)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=30s",
		"TCPSPOOL_MAX_STREAM=4G", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_proc *p, *rd;
	struct h_result r;
	struct h_gate g;
	unsigned short port;
	long long sent;
	const char *line;

	h_gate_init(&g);
	p = dropin_host("thread_host", &o, &port, scenario, NULL);
	rd = h_reader(0, port, &g, "--rcvbuf=4096", "--expect-prefix",
	    "--count=100000000", NULL);
	line = h_status_line(p, "writing ", 0, H_DEADLINE_MS);
	H_ASSERT(line != NULL, "the writer did not get going: %s",
	    h_describe(p));
	sent = h_field(line, "bytes");
	H_ASSERT(kill(h_pid(p), SIGTERM) == 0, "kill: %s", strerror(errno));
	h_gate_open(&g);
	dropin_expect_exit(p, 20000, 0, "_exit(0) from a SIGTERM handler "
	    "must end the process once the reader took the spool, not after "
	    "the linger time (30 s), never hang");
	dropin_reader_done(rd, &r);
	H_EXPECT(r.mismatch == -1, "the reader's bytes differ at %lld",
	    r.mismatch);
	if (!in_writer)
		H_EXPECT(r.bytes >= sent, "%lld bytes were reported sent before "
		    "the signal, the reader got %lld", sent, r.bytes);
}

void
sigterm_handler_calling_exit_ends_a_spooling_process_at_once(void)
{
	sigterm_exit("sigterm-exit", true);
}

void
sigterm_in_main_thread_exit_delivers_what_was_sent_and_ends(void)
{
	sigterm_exit("sigterm-exit-main", false);
}

/*
 * A signal handler writes whole messages (thread B's) to a socket that is
 * spooling while the interrupted thread writes its own (thread A's) to it:
 * no deadlock, and each writer's messages arrive whole and in order. A
 * handler write may fail with EAGAIN (the fixture counts it and writes
 * that message again at the next signal).
 */
void
write_from_a_signal_handler_to_a_spooling_socket_does_not_deadlock(void)
{
	/*
	 * A handler that interrupted the application (not the library)
	 * spools like any writer, and spooling may allocate: ThreadSanitizer
	 * reports that as a signal-unsafe call. It is a known limit
	 * (preload/SAFETY.md, signals), not what this test is about.
	 */
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		"TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:"
		"report_signal_unsafe=0", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_proc *p, *rd;
	struct h_result r;
	struct h_gate g;
	unsigned short port;

	h_gate_init(&g);
	p = dropin_host("thread_host", &o, &port, "signal-write", "--count",
	    "20000", NULL);
	rd = h_reader(0, port, &g, "--rcvbuf=4096", "--read-size=65536",
	    "--threads=2", "--count=20000", NULL);
	dropin_expect(p, "done ", H_DEADLINE_MS, "writes from a signal "
	    "handler and from the thread it interrupted");
	h_gate_open(&g);
	dropin_reader_done(rd, &r);
	dropin_expect_exit(p, H_DEADLINE_MS, 0, "thread_host");
	dropin_expect_stream(rd, &r, 2 * 20000LL * 28);
}
