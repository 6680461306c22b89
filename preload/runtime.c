/*
 * runtime.c — process-wide state in stages (see runtime.h): the config,
 * the spool dir, fork and process end.
 */
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "fdtab.h"
#include "handover.h"
#include "log.h"
#include "replay.h"
#include "resume.h"
#include "runtime.h"
#include "stream.h"
#include "syncer.h"
#include "sysio.h"
#include "util.h"

extern char **environ;

enum { STAGE_NONE, STAGE_ACTIVE, STAGE_PASSTHROUGH };

static struct {
	pthread_mutex_t mu;
	_Atomic int stage;
	struct tcpspool_config cfg;
	struct spool_dir *dir;
	bool dir_failed;
	_Atomic pid_t pid;
	int floor;
} rt = { .mu = PTHREAD_MUTEX_INITIALIZER };

__thread unsigned rt_depth __attribute__((tls_model("initial-exec")));

/* This thread's fork took the locks in prepare (not from a signal handler
 * that interrupted the library: those locks may be held below it). */
static __thread bool fork_locked __attribute__((tls_model("initial-exec")));

static void
fork_prepare(void)
{
	fork_locked = !rt_nested();
	if (!fork_locked)
		return;
	/* Every lock of ours, in the lock order (SAFETY.md): these are the
	 * library's only fork handlers. */
	pthread_mutex_lock(&rt.mu);
	replay_fork_prepare();
	syncer_fork_prepare();
	handover_fork_prepare();
	resume_fork_prepare();	/* a leaf: taken under rp.mu and s->mu */
	log_fork_prepare();	/* last: the log lock is taken under ours */
	/* Until our parent and child handlers: a hook called by another
	 * library's fork handler meanwhile (theirs run inside ours) must
	 * take no lock we hold: it is nested (SAFETY.md, fork). */
	rt_enter();
}

static void
fork_parent(void)
{
	if (!fork_locked)
		return;
	log_fork_parent();
	resume_fork_parent();
	handover_fork_parent();
	syncer_fork_parent();
	replay_fork_parent();
	pthread_mutex_unlock(&rt.mu);
	rt_leave();
}

/*
 * The child forgets the parent's streams (they are the parent's to
 * deliver), closes its copies of the parent's private fds, and opens its
 * own spool dir and thread when it first spools. It has one thread: every
 * lock is made new, never unlocked (see fdtab_reset_after_fork).
 */
static void
fork_child(void)
{
	log_fork_child();
	sysio_gate_reset();
	fdtab_reset_after_fork(fork_locked);
	replay_fork_child(fork_locked);
	syncer_fork_child(fork_locked);
	handover_fork_child(fork_locked);
	resume_fork_child(fork_locked);
	if (rt.dir != NULL && fork_locked)
		(void)syscall(SYS_close, spool_dir_fd(rt.dir));
	rt.dir = NULL;	/* the parent's, its lock may be held: leaked */
	rt.dir_failed = false;
	atomic_store(&rt.pid, (pid_t)syscall(SYS_getpid));
	pthread_mutex_init(&rt.mu, NULL);
	if (fork_locked)
		rt_leave();
}

/* Our fds go at or above this: half the soft limit, at most 1024, so a
 * select()-sized set of the host's never meets them. */
static int
private_floor(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur < 64)
		return 3;
	if (rl.rlim_cur >= 2048)
		return 1024;
	return (int)(rl.rlim_cur / 2);
}

/* The library's own fds, the spool's and the replay's (sysio_place):
 * private. A number whose slot holds a stale stream is not taken; if no
 * other could be had, it is left untagged. */
static bool
own_fd_usable(int fd)
{
	return !FDTAB_IS_STREAM(fdtab_peek(fd));
}

static void
own_fd_opened(int fd)
{
	struct stream *old;

	if (FDTAB_IS_STREAM(fdtab_peek(fd)))
		return;
	fdtab_clear_tag(fd);
	(void)fdtab_install(fd, NULL, FDTAB_PRIVATE, &old);
}

static void
own_fd_closing(int fd)
{
	if (fdtab_peek(fd) == FDTAB_PRIVATE)
		fdtab_clear_tag(fd);
}

static struct sysio_placement placement = {
	.usable = own_fd_usable,
	.opened = own_fd_opened,
	.closing = own_fd_closing,
};

static void
init_locked(void)
{
	char err[CONFIG_MSG_MAX], warn[CONFIG_MSG_MAX];
	int rc;

	atomic_store(&rt.pid, getpid());
	if (getauxval(AT_SECURE) != 0) {
		atomic_store(&rt.stage, STAGE_PASSTHROUGH);
		return;
	}
	if (config_parse(&rt.cfg, environ, err, sizeof(err), warn,
	    sizeof(warn)) < 0) {
		log_error("%s; passing everything through", err);
		atomic_store(&rt.stage, STAGE_PASSTHROUGH);
		return;
	}
	log_configure(&rt.cfg);
	if (warn[0] != '\0')
		log_warn("%s", warn);
	if (rt.cfg.disabled) {
		atomic_store(&rt.stage, STAGE_PASSTHROUGH);
		return;
	}
	/* Without its fork handlers the library is not safe across fork. */
	if ((rc = pthread_atfork(fork_prepare, fork_parent, fork_child)) !=
	    0) {
		log_error("pthread_atfork: %s; passing everything through",
		    strerror(rc));
		atomic_store(&rt.stage, STAGE_PASSTHROUGH);
		return;
	}
	rt.floor = private_floor();
	placement.floor = rt.floor;
	sysio_place(&placement);
	atomic_store_explicit(&rt.stage, STAGE_ACTIVE, memory_order_release);
}

bool
runtime_active(void)
{
	int st = atomic_load_explicit(&rt.stage, memory_order_acquire);
	int saved;

	if (st != STAGE_NONE)
		return st == STAGE_ACTIVE;
	saved = errno;
	pthread_mutex_lock(&rt.mu);
	if (atomic_load(&rt.stage) == STAGE_NONE)
		init_locked();
	pthread_mutex_unlock(&rt.mu);
	errno = saved;
	return atomic_load(&rt.stage) == STAGE_ACTIVE;
}

const struct tcpspool_config *
runtime_config(void)
{
	return &rt.cfg;
}

struct spool_dir *
runtime_dir(void)
{
	struct spool_limits lim;
	struct spool_err e;
	struct spool_dir *d;
	int saved = errno;

	pthread_mutex_lock(&rt.mu);
	if (rt.dir == NULL && !rt.dir_failed) {
		if (rt.cfg.dir_is_default)
			config_default_dir(&rt.cfg);
		lim.stream_max = rt.cfg.max_stream;
		lim.total_max = rt.cfg.max_total;
		lim.min_free = rt.cfg.min_free;
		if (spool_dir_open(rt.cfg.dir, &lim, &rt.dir, &e) < 0) {
			rt.dir = NULL;
			rt.dir_failed = true;
			log_error("spool dir %s: %s; passing through",
			    rt.cfg.dir, e.msg);
		}
	}
	d = rt.dir;
	pthread_mutex_unlock(&rt.mu);
	errno = saved;
	return d;
}

void
runtime_spool_options(struct spool_options *o)
{
	spool_options_default(o);
	o->segment_max = rt.cfg.segment_size;
	o->level = rt.cfg.level;
	o->fsync = rt.cfg.fsync == FSYNC_ALWAYS ? SPOOL_FSYNC_ALWAYS :
	    rt.cfg.fsync == FSYNC_NEVER ? SPOOL_FSYNC_NEVER :
	    SPOOL_FSYNC_INTERVAL;
	o->fsync_interval_ms = rt.cfg.fsync_interval_ms;
	o->defer_sync = true;	/* the replay thread syncs, without locks */
}

int
runtime_private_floor(void)
{
	return rt.floor > 0 ? rt.floor : 3;
}

pid_t
runtime_pid(void)
{
	return atomic_load(&rt.pid);
}

/*
 * Process end (exit, return from main, _exit, _Exit). Called in a signal
 * handler as often as not, so it takes no lock and allocates nothing: the
 * replay thread does the work (replay_drain). Nested (the handler
 * interrupted this library on this thread, whose locks may be held), it
 * waits for no peer: what is on disk stays as an orphan spool.
 */
void
runtime_exit(bool immediate)
{
	int saved = errno;

	if (atomic_load(&rt.stage) != STAGE_ACTIVE)
		return;
	/* A vfork child shares our memory: the streams are its parent's. */
	if (!runtime_own_process())
		return;
	/* Every stream left is held by tcpspool daemon: no lingering, it
	 * takes over when we are gone (linger.c, stream_orphan_at_exit). */
	replay_drain(mono_ns() + (handover_covers_all() ? 0 :
	    (int64_t)rt.cfg.linger_ms * 1000000LL), rt_nested(), immediate);
	errno = saved;
}

bool
runtime_own_process(void)
{
	pid_t pid = atomic_load(&rt.pid);

	/* Before the first stage nothing but epoll tags is in the table,
	 * and no fork handler would keep rt.pid true in a child. */
	return pid == 0 || (pid_t)syscall(SYS_getpid) == pid;
}
