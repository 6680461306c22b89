/*
 * Run through cpp -P to make the version script: only the hooks are global.
 * The version node is anonymous on purpose: a named node would version our
 * symbols (send@@TCPSPOOL_1), and the dynamic linker binds a program's
 * versioned reference send@GLIBC_2.2.5 to libc, never to us.
 */
#define HOOK(ret, name, params, args) name;
{
global:
#include "hooks.def"
local:
	*;
};
