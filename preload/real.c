/*
 * real.c — lazy, once-only resolution of the real symbols.
 *
 * A call can reach a hook before this library's constructors ran (from
 * another library's constructor) or while dlsym is running (dlsym may call
 * malloc, which may log). Resolution therefore happens on first use, guarded
 * by an atomic state: a hook that finds resolution under way in its own
 * thread falls back to the raw syscall (see real_resolve's callers).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "real.h"
#include "resume.h"

struct real_table real;

_Atomic int real_state = REAL_UNRESOLVED;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local bool in_resolve;

static void
resolve_all(void)
{
#define HOOK(ret, name, params, args) \
	real.name = (ret(*) params)dlsym(RTLD_NEXT, #name);
#include "hooks.def"
#undef HOOK
}

static bool
table_complete(void)
{
#define HOOK(ret, name, params, args) \
	if (real.name == NULL)        \
		return false;
#include "hooks.def"
#undef HOOK
	return true;
}

bool
real_resolve(void)
{
	int st = atomic_load_explicit(&real_state, memory_order_acquire);
	int saved = errno;

	if (st == REAL_RESOLVED)
		return true;
	if (st == REAL_FAILED || in_resolve)
		return false;
	in_resolve = true;
	pthread_mutex_lock(&lock);
	if (atomic_load_explicit(&real_state, memory_order_relaxed) == REAL_UNRESOLVED) {
		atomic_store(&real_state, REAL_RESOLVING);
		resolve_all();
		resume_arm();
		atomic_store_explicit(&real_state,
		    table_complete() ? REAL_RESOLVED : REAL_FAILED, memory_order_release);
	}
	pthread_mutex_unlock(&lock);
	in_resolve = false;
	errno = saved;
	return atomic_load_explicit(&real_state, memory_order_acquire) == REAL_RESOLVED;
}
