/*
 * real.h — the next definition of every hooked symbol (dlsym RTLD_NEXT).
 *
 * real_resolve() runs once (under a lock) on the first hooked call, never
 * in a constructor. Until it has finished, real_ready() is false and hooks
 * must pass straight through with the raw system call; a hook reached
 * while dlsym itself is running (dlsym may allocate, and an allocator may
 * write) also sees real_ready() false.
 */
#ifndef TCPSPOOL_REAL_H
#define TCPSPOOL_REAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define HOOK(ret, name, params, args) ret(*name) params;
struct real_table {
#include "hooks.def"
};
#undef HOOK

extern struct real_table real;

enum { REAL_UNRESOLVED, REAL_RESOLVING, REAL_RESOLVED, REAL_FAILED };
extern _Atomic int real_state;

/* Resolves every symbol once; true when the table is complete. */
bool real_resolve(void);

/* The hooks' first question: one atomic load once resolved. */
static inline bool
real_ready(void)
{
	return atomic_load_explicit(&real_state, memory_order_acquire) ==
	    REAL_RESOLVED || real_resolve();
}

#endif
