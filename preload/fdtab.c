/*
 * fdtab.c — the per-fd table (see fdtab.h for what a slot holds).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "fdtab.h"
#include "runtime.h"
#include "stream.h"

_Atomic(fdtab_slot *) fdtab_chunks[FDTAB_CHUNKS];
static pthread_rwlock_t tab_lock = PTHREAD_RWLOCK_INITIALIZER;

static fdtab_slot *
slot_of(int fd, bool create)
{
	_Atomic(fdtab_slot *) *cp;
	fdtab_slot *c;

	if ((unsigned)fd >= FDTAB_MAX)
		return NULL;
	cp = &fdtab_chunks[fd >> FDTAB_CHUNK_BITS];
	c = atomic_load_explicit(cp, memory_order_acquire);
	if (c == NULL && create) {
		int saved = errno;

		/* Under the write lock: no other creator. */
		c = calloc(FDTAB_CHUNK, sizeof(*c));
		errno = saved;
		if (c == NULL)
			return NULL;
		atomic_store_explicit(cp, c, memory_order_release);
	}
	if (c == NULL)
		return NULL;
	return &c[fd & (FDTAB_CHUNK - 1)];
}

struct stream *
fdtab_get(int fd)
{
	struct stream *s;
	fdtab_slot *sl;

	if (!FDTAB_IS_STREAM(fdtab_peek(fd)))
		return NULL;
	pthread_rwlock_rdlock(&tab_lock);
	sl = slot_of(fd, false);
	s = sl ? atomic_load_explicit(sl, memory_order_acquire) : NULL;
	if (FDTAB_IS_STREAM(s))
		stream_ref(s);
	else
		s = NULL;
	pthread_rwlock_unlock(&tab_lock);
	return s;
}

struct stream *
fdtab_tryget(int fd)
{
	struct stream *s;
	fdtab_slot *sl;

	if (!FDTAB_IS_STREAM(fdtab_peek(fd)) ||
	    pthread_rwlock_tryrdlock(&tab_lock) != 0)
		return NULL;
	sl = slot_of(fd, false);
	s = sl ? atomic_load_explicit(sl, memory_order_acquire) : NULL;
	if (FDTAB_IS_STREAM(s))
		stream_ref(s);
	else
		s = NULL;
	pthread_rwlock_unlock(&tab_lock);
	return s;
}

bool
fdtab_install(int fd, struct stream *expect, struct stream *s,
    struct stream **old)
{
	struct stream *cur;
	fdtab_slot *sl;
	bool ok = false;

	*old = NULL;
	if (!runtime_own_process())
		return false;
	pthread_rwlock_wrlock(&tab_lock);
	sl = slot_of(fd, s != NULL);
	if (sl == NULL) {
		ok = s == NULL;
		goto out;
	}
	cur = atomic_load_explicit(sl, memory_order_relaxed);
	if (cur != expect)
		goto out;
	if (FDTAB_IS_STREAM(cur)) {
		cur->app_fds--;
		*old = cur;
	}
	if (FDTAB_IS_STREAM(s)) {
		stream_ref(s);
		s->app_fds++;
	}
	atomic_store_explicit(sl, s, memory_order_release);
	ok = true;
out:
	pthread_rwlock_unlock(&tab_lock);
	return ok;
}

struct stream *
fdtab_take(int fd, int *left)
{
	struct stream *cur = NULL;
	fdtab_slot *sl;

	*left = 0;
	if (fdtab_peek(fd) == NULL || !runtime_own_process())
		return NULL;
	pthread_rwlock_wrlock(&tab_lock);
	if ((sl = slot_of(fd, false)) != NULL) {
		cur = atomic_load_explicit(sl, memory_order_relaxed);
		atomic_store_explicit(sl, NULL, memory_order_release);
		if (FDTAB_IS_STREAM(cur))
			*left = --cur->app_fds;
		else
			cur = NULL;
	}
	pthread_rwlock_unlock(&tab_lock);
	return cur;
}

void
fdtab_clear_tag(int fd)
{
	struct stream *p = fdtab_peek(fd);
	struct stream *old;

	if (p != NULL && !FDTAB_IS_STREAM(p))
		(void)fdtab_install(fd, p, NULL, &old);
}

struct stream *
fdtab_forget(int fd, int *left)
{
	struct stream *p = fdtab_peek(fd);

	*left = 0;
	if (p == NULL)
		return NULL;
	if (!FDTAB_IS_STREAM(p)) {
		fdtab_clear_tag(fd);
		return NULL;
	}
	return fdtab_take(fd, left);
}

void
fdtab_each(int lo, int hi, void (*fn)(void *arg, int fd, struct stream *p),
    void *arg)
{
	int fd;

	if (lo < 0)
		lo = 0;
	if (hi >= FDTAB_MAX || hi < 0)
		hi = FDTAB_MAX - 1;
	for (fd = lo; fd <= hi;) {
		fdtab_slot *c = atomic_load_explicit(
		    &fdtab_chunks[fd >> FDTAB_CHUNK_BITS], memory_order_acquire);
		int end = (fd | (FDTAB_CHUNK - 1));

		if (end > hi)
			end = hi;
		if (c == NULL) {
			fd = end + 1;
			continue;
		}
		for (; fd <= end; fd++) {
			struct stream *p = atomic_load_explicit(
			    &c[fd & (FDTAB_CHUNK - 1)], memory_order_acquire);

			if (p != NULL)
				fn(arg, fd, p);
		}
	}
}

/*
 * The child of fork has one thread: whatever other threads held of the
 * lock is gone with them, and glibc's rwlock cannot be unlocked here by a
 * thread that did not take it (it tells a writer by its thread id). So the
 * lock is made new rather than taken across fork; slots are plain atomic
 * words and chunks are published by one atomic store, so the table is
 * consistent without it.
 */
/*
 * The parent's streams in a child of fork: never freed (their locks may be
 * held by threads that are gone, their spools are the parent's), but kept
 * reachable, one list through the streams themselves, so that a leak
 * checker counts them as the program's memory.
 */
static struct stream *forgotten;

static void
keep_forgotten(struct stream *s)
{
	if (s->forgotten_next != NULL)
		return;		/* listed already (several slots) */
	s->forgotten_next = forgotten != NULL ? forgotten : s;	/* s ends */
	forgotten = s;
}

void
fdtab_reset_after_fork(void)
{
	int i, j;

	pthread_rwlock_init(&tab_lock, NULL);
	for (i = 0; i < FDTAB_CHUNKS; i++) {
		fdtab_slot *c = atomic_load_explicit(&fdtab_chunks[i],
		    memory_order_relaxed);

		if (c == NULL)
			continue;
		for (j = 0; j < FDTAB_CHUNK; j++) {
			struct stream *p = atomic_load_explicit(&c[j],
			    memory_order_relaxed);

			if (FDTAB_IS_STREAM(p))
				keep_forgotten(p);
			/* Tags of the child's own files stay true. */
			if (FDTAB_IS_STREAM(p) || p == FDTAB_PRIVATE)
				atomic_store_explicit(&c[j], NULL,
				    memory_order_relaxed);
		}
	}
}
