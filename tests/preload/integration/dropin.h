/*
 * dropin.h — the drop-in tests' shared pieces (issue 11): starting a host
 * fixture (tests/fixtures/host.h) and waiting for its status lines, and the
 * scenarios with threads and signals, which run both as Criterion tests
 * (test_dropin.c) and as plain programs in suite 'concurrency'
 * (test_concurrency.c, the one the TSan build runs).
 *
 * Each scenario reproduces a program pattern that behaves differently
 * under the library than without it; its comment says how it behaves
 * without the library, which is what it asserts.
 */
#ifndef TCPSPOOL_TEST_DROPIN_H
#define TCPSPOOL_TEST_DROPIN_H

#include "harness.h"

/* A step that takes well under a second without the library: a deadlock
 * shows as this deadline missed, never as a hang. */
#define DROPIN_STEP_MS	20000

/* Spawns fixture prog (tests/fixtures) with the arguments (NULL-ended),
 * under the library unless o says otherwise; waits for its "port" line. */
struct h_proc *dropin_host(const char *prog, const struct h_spawn *o,
    unsigned short *port, ...) __attribute__((sentinel));

/* The first status line of p starting with prefix, within ms; fails the
 * test with what p reported and printed (why says what the wait proves). */
const char *dropin_expect(struct h_proc *p, const char *prefix, int ms,
    const char *why);

/* Waits for p's exit within ms, and asserts its exit code. */
void dropin_expect_exit(struct h_proc *p, int ms, int code, const char *why);

/* Waits for reader p and returns its parsed result (fails if none). */
void dropin_reader_done(struct h_proc *p, struct h_result *r);

/* p received exactly bytes in order, then EOF. */
void dropin_expect_stream(struct h_proc *p, const struct h_result *r,
    long long bytes);

/* The thread and signal scenarios (items 3 and 7 of issue 11). */
void shutdown_from_another_thread_unblocks_a_blocked_send(void);
void close_from_another_thread_returns_while_a_send_is_blocked(void);
void sigterm_handler_calling_exit_ends_a_spooling_process_at_once(void);
void sigterm_in_main_thread_exit_delivers_what_was_sent_and_ends(void);
void write_from_a_signal_handler_to_a_spooling_socket_does_not_deadlock(void);

#endif
