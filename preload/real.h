/*
 * real.h — the next definition of every hooked symbol (dlsym RTLD_NEXT).
 *
 * real_resolve() runs once (pthread_once) on the first hooked call, never in
 * a constructor. Until it has finished, real_ready() is false and hooks must
 * pass straight through via real_fallback_*; a hook reached while dlsym itself
 * is running (dlsym may allocate, and an allocator may write) also sees
 * real_ready() false.
 */
#ifndef TCPSPOOL_REAL_H
#define TCPSPOOL_REAL_H

#include <stdbool.h>
#include <sys/types.h>

#define HOOK(ret, name, params, args) ret(*name) params;
struct real_table {
#include "hooks.def"
};
#undef HOOK

extern struct real_table real;

/* Resolves every symbol once; true when the table is complete. */
bool real_resolve(void);

#endif
