/*
 * ISA-L is loaded so that its generic names never meet the host's
 * (spool/codec.c, preload/runtime.c): isal_host (see its header) exports
 * build_heap, build_huff_tree and crc32_gzip_refl, dlopens a plugin that
 * defines isal_deflate_init, and spools 2 MiB through the library with
 * ISA-L deflating. Linked into the library, or loaded without RTLD_LOCAL
 * or RTLD_DEEPBIND, ISA-L would call the host's functions (they abort) or
 * hide the plugin's (exit 4).
 */
#include <criterion/criterion.h>

#include "harness.h"

TestSuite(isal_names, .init = h_setup, .fini = h_teardown);

/* The host itself says whether libisal.so.2 is mapped (isal_host.c);
 * the sync thread's log line may come after the host has exited. */
static void
run_host(const char *label, const char *host)
{
	static const char *const env[] = { "TCPSPOOL_LOG_LEVEL=debug",
		"TCPSPOOL_LINGER=2s",
		"ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_argv a = { .n = 0 };
	struct h_proc *p;

	if (getenv("TCPSPOOL_TEST_SANITIZE") != NULL &&
	    strcmp(getenv("TCPSPOOL_TEST_SANITIZE"), "none") != 0)
		cr_skip_test("sanitized build: no ISA-L (RTLD_DEEPBIND)");
	h_args(&a, ISAL_PLUGIN, NULL);
	p = h_spawn(label, host, &a, &o);
	cr_assert(h_wait(p, H_DEADLINE_MS), "%s hangs: %s", label,
	    h_describe(p));
	cr_assert_eq(h_exit_code(p), 0, "%s", h_describe(p));
	cr_assert_eq(h_stdout_size(p), 0);
	cr_assert(h_spool_wait_empty(H_DEADLINE_MS));
}

Test(isal_names, isal_never_calls_nor_hides_the_hosts_same_named_functions)
{
	run_host("isal_host", ISAL_HOST);
}

/*
 * A host built with a sanitizer: its runtime kills a process that dlopens
 * with RTLD_DEEPBIND ("incompatible with sanitizer runtime"), so the
 * interposer must not load ISA-L there, and spool all the same
 * (libdeflate). Without the check the host died at its first spool.
 */
Test(isal_names, a_sanitized_host_spools_without_isal)
{
	run_host("isal_host_asan", ISAL_HOST_ASAN);
}
