/*
 * handover.h — giving a spooling connection to `tcpspool daemon`, so that
 * its delivery outlives this process (issue 15; the daemon is
 * tools/cmd_daemon.c, the messages FORMAT.md §10).
 *
 * When a stream starts spooling (DIRECT -> SPOOLING) and the spool dir
 * holds a daemon's socket, the stream's origin is recorded (spool
 * origin file) and a duplicate of the socket is sent to the daemon with
 * the stream's name and our pid. The daemon answers y or n; the stream
 * is HO_HELD only on y (read by our thread, 2 s at most; on n or no
 * answer it stays ours, and the process lingers for it at exit). Our
 * connection is close-on-exec: a process that execs loses its spools
 * and the daemon closes the copies it was given on that connection.
 * The daemon keeps it untouched while this
 * process lives; the stream leaving SPOOLING/LINGER (back to DIRECT,
 * FAILED, DONE) sends a release, and the daemon closes its copy at once.
 * At process end, a stream the daemon holds is left to it: its spool is
 * written out and kept, and the process does not linger for it.
 *
 * Nothing here blocks a caller: the messages are queued (under the
 * stream's mu, then our own lock: lock order stream mu -> handover lock)
 * and sent by a small thread of ours that holds no lock while it sends.
 * No daemon socket: one stat per new spool, one debug line per process.
 * Every fd of ours is O_CLOEXEC and placed by sysio; a child of fork
 * forgets the connection and the queue (they are the parent's): the
 * runtime's fork handlers call ours.
 */
#ifndef TCPSPOOL_HANDOVER_H
#define TCPSPOOL_HANDOVER_H

#include <stdbool.h>

#include "stream.h"

/* s->ho */
enum handover_state {
	HO_NONE,	/* not handed over */
	HO_QUEUED,	/* take queued, sent but not answered, or refused */
	HO_HELD,	/* the daemon said yes: it has a duplicate */
};

/* set_state's companion (stream.c), under s->mu: from -> to. */
void handover_transition(struct stream *s, enum stream_state from,
    enum stream_state to);
/* After a write or a publish, under s->mu: an anchor if one is due. */
void handover_note(struct stream *s);
/* Process end, under s->mu: s is left to the daemon (no release). */
void handover_leave_to_daemon(struct stream *s);
/* Process end, without lock: every stream still spooling or lingering is
 * held by the daemon (and there is at least one). */
bool handover_covers_all(void);

/*
 * fork, from runtime.c's handlers only (one registration, one lock
 * order): prepare takes the hand-over lock, parent releases it; the child
 * forgets the parent's queue, connection and held streams, closes its
 * copies of their fds when consistent (prepare took the lock), and makes
 * the lock new.
 */
void handover_fork_prepare(void);
void handover_fork_parent(void);
void handover_fork_child(bool consistent);

#endif
