/*
 * syncer.h — the thread that runs the deferred fdatasync jobs (syncer.c).
 */
#ifndef TCPSPOOL_SYNCER_H
#define TCPSPOOL_SYNCER_H

#include <stdbool.h>
#include <stdint.h>

#include "spool.h"

struct stream;

/*
 * Under s's mu: queues job j of s's spool generation gen, taking a
 * reference to s; the thread runs it and calls stream_sync_finished.
 * false (nothing queued) without memory or a thread: run it yourself.
 */
bool syncer_submit(struct stream *s, const struct spool_sync_job *j,
    uint64_t gen);

/*
 * Sweeps the spool dir for expired orphans at at_ns (CLOCK_REALTIME, the
 * time an expiry names; waited for on the monotonic clock; 0: no sooner
 * than planned), then every every_ns (the smallest asked; 0: unchanged).
 * Under a stream's mu or none; starts the thread if need be.
 */
void syncer_sweep_at(int64_t at_ns, int64_t every_ns);

void syncer_fork_prepare(void);
void syncer_fork_parent(void);
void syncer_fork_child(bool consistent);

#endif
