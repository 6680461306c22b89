/*
 * runtime.h — the library's process-wide state, brought up in stages:
 *
 *   0  nothing: every hook passes through (before the first slow path)
 *   1  config parsed (on the first write that would spool; never in a
 *      constructor): ACTIVE, or PASSTHROUGH for the whole process (invalid
 *      variable, TCPSPOOL_DISABLE=1, AT_SECURE)
 *   2  spool dir opened (on the first stream that spools)
 *   3  replay thread (replay.c, on the first registration)
 *
 * fork: the child keeps stage 1, drops 2 and 3 and every stream of the
 * parent (see runtime_fork_*). Process end: runtime_exit().
 */
#ifndef TCPSPOOL_RUNTIME_H
#define TCPSPOOL_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "spool.h"

/* True once the config is parsed and the process is not pass-through. */
bool runtime_active(void);
/* The parsed config; valid once runtime_active() returned true. */
const struct tcpspool_config *runtime_config(void);
/* The spool dir (opened on first call); NULL after one logged failure. */
struct spool_dir *runtime_dir(void);
/* Segment options from the config. */
void runtime_spool_options(struct spool_options *o);
/* Lowest fd number for the library's private fds. */
int runtime_private_floor(void);
/* pid of this process as the library last saw it. */
pid_t runtime_pid(void);

/*
 * Process end (destructor, _exit, _Exit): waits for every stream to be
 * delivered, bounded by the linger time, then leaves the rest on disk as
 * orphan spools. Returns at once in a vfork child and when nothing spools.
 */
void runtime_exit(bool immediate);

/*
 * False in a vfork child, which shares this process's memory (and so the
 * fd table and the streams) until it execs or exits: it must change none
 * of them. One getpid system call; slow paths only.
 */
bool runtime_own_process(void);

/*
 * How deep this thread is inside the library's slow paths (ops.c entry
 * points that may take a lock or allocate). A hook entered while it is not
 * zero runs in a signal handler that interrupted the library on this
 * thread: it must not wait on any library lock (see SAFETY.md).
 */
extern __thread unsigned rt_depth __attribute__((tls_model("initial-exec")));

static inline bool
rt_nested(void)
{
	return rt_depth != 0;
}

static inline void
rt_enter(void)
{
	rt_depth++;
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void
rt_leave(void)
{
	atomic_signal_fence(memory_order_seq_cst);
	rt_depth--;
}

#endif
