/*
 * daemon_util.h — what both daemon test programs need: the daemon started
 * and stopped, asked for its status, and bounded waits on it (every wait
 * is on a condition, with DEADLINE_MS as its bound).
 */
#ifndef TCPSPOOL_DAEMON_UTIL_H
#define TCPSPOOL_DAEMON_UTIL_H

#include <stdint.h>

#include "rel.h"

#define DEADLINE_MS	120000

int64_t now_ms(void);
/* A bounded retry's pause: the condition is a file or /proc, which tell
 * nobody when they change. */
void tick(void);
/* The daemon's socket in the test's spool dir. */
void sock_path(char *out, size_t len);
/* A connection to it, or -1. */
int daemon_connect(void);
/* The daemon (--linger 20s), once it answers on its socket. */
struct h_proc *daemon_start(void);
/* The same with more NAME=value in its environment (NULL-terminated). */
struct h_proc *daemon_start_env(const char *const *env);
/* What `tcpspool daemon --status` prints, asked on the socket directly
 * (the harness spawns a bounded number of processes per test). */
const char *daemon_status(void);
int count_lines(const char *text, const char *prefix);
/* Waits until the daemon holds n streams (hand-overs are asynchronous). */
void wait_held(int n);
void wait_stderr(struct h_proc *p, const char *needle);
/* No stream left, nor one being removed (a .del dir). */
void wait_no_streams(void);
/* Once its deliveries are over, SIGTERM: the daemon exits 0 and removes
 * its socket. */
void daemon_stop(struct h_proc *p);

#endif
