/*
 * orphans.h — what becomes of a spool its connection can no longer take
 * (orphans.c).
 */
#ifndef TCPSPOOL_ORPHANS_H
#define TCPSPOOL_ORPHANS_H

#include <stdbool.h>

struct stream;

/*
 * Under s's mu, on the replay thread's turn (stream_service), s holding a
 * spool: lets it go after a failure err (an errno; reason and detail,
 * which may be NULL, say it in words), kept, kept until it expires, or
 * removed (detached into s->gone, which stream_service closes with mu
 * released), as TCPSPOOL_ORPHANS says; one log line.
 */
void orphan_release(struct stream *s, int err, const char *reason,
    const char *detail);

/* The connection's peer is gone for good (reset, timed out, ...). */
bool orphan_peer_gone(int err);

/* Once a process spools: it sweeps the spool dir for expired orphans. */
void orphan_sweeps_start(void);

#endif
