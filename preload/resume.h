/*
 * resume.h — TCPSPOOL_RESUME=peer-addr: a stream whose peer went away with
 * records left waits for that peer's IP address (spool/waiting.c); the
 * first write on a new connection from that address, in any process of
 * the spool dir, adopts the waiting streams, and the connection starts
 * spooling with their records in front, oldest stream first, each from a
 * record boundary (resume.c).
 */
#ifndef TCPSPOOL_RESUME_H
#define TCPSPOOL_RESUME_H

#include <stdatomic.h>
#include <stdbool.h>

#include "spool.h"

struct stream;

/* Streams one new connection adopts at most; more wait for the next. */
#define RESUME_MAX	16

struct resume_claim;

/* The adopted streams of a stream, sent before its own spool. */
struct resume_prefix {
	/* The replay thread's alone (like the stream's cur), and under mu
	 * for resume_give_back: the cursor of v[i], opened on need. */
	struct spool_cursor *cur;
	int i, n;
	char key[SPOOL_KEY_MAX];
	struct spool_claimed v[RESUME_MAX];
	/* The claim in flight that names v for a fork child until the
	 * stream is registered (resume.c), then NULL. */
	struct resume_claim *claim;
};

/*
 * TCPSPOOL_RESUME is set to something else than off: a fd with nothing in
 * its slot leaves the hooks' fast path for its first write
 * (resume_first_write). Set when the real symbols are resolved, cleared
 * once the configuration says off or cannot be used.
 */
extern _Atomic bool resume_armed;
void resume_arm(void);
/* In a fork child: closes its copies of s's adopted streams' locks, so
 * that the parent's release is the last (replay.c). */
void resume_fork_child_close(struct stream *s);
/*
 * fork (runtime.c): prepare takes the lock of the claims in flight,
 * parent releases it; the child (consistent: prepare took it) closes its
 * copies of their locks and makes the lock new.
 */
void resume_fork_prepare(void);
void resume_fork_parent(void);
void resume_fork_child(bool consistent);
/* Returns once fd's slot is no longer FDTAB_CLAIMING (another thread's
 * first look at the registry for it). Not from a nested hook. */
void resume_wait_claimed(int fd);

/*
 * Before the first write on fd, whose slot holds nothing: a socket that
 * is never spooled is tagged ignored; a TCP connection whose peer address
 * has streams waiting gets a stream that spools, with them in front; any
 * other is tagged checked. Not from a nested hook.
 */
void resume_first_write(int fd);

/*
 * The replay thread, without mu (pump.c): the cursor to send from while
 * the adopted streams are not all sent (their oldest's, opened on need),
 * else NULL. A negative errno (*e) for out of fds or memory.
 */
int resume_cursor(struct stream *s, struct spool_cursor **c,
    struct spool_err *e);
/* The cursor resume_cursor gave has nothing more (rc 0) or cannot be
 * read (rc < 0, e): that stream is done with, removed (delivered) or
 * kept as an orphan (unreadable). Without mu, on the replay thread. */
void resume_next(struct stream *s, int rc, const struct spool_err *e);
/* Parks the adopted stream's cursor as the stream's own (pump.c, park). */
void resume_park(struct stream *s);
/* Persists what the adopted stream's cursor acknowledged. */
void resume_persist(struct stream *s);

/*
 * Under mu: the adopted streams not yet sent wait again for their peer
 * (a failure, the process's end, an abortive close). Frees the prefix.
 */
void resume_give_back(struct stream *s);

/*
 * Under mu, the replay thread's turn (orphans.c): s's connection failed
 * with err. With resume on and a TCP peer, s's spool is released as
 * waiting for the peer (the adopted streams before it) and true is
 * returned; else false and nothing is done.
 */
bool resume_wait(struct stream *s, int err, const char *reason,
    const char *detail);
/* The same at the process's end (linger.c) for a stream still sending
 * adopted streams: its own spool waits behind them, so the peer's next
 * connection gets both, in order. */
bool resume_wait_at_exit(struct stream *s);

#endif
