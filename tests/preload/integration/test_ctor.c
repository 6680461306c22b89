/*
 * A hooked call can arrive before the interposer is initialised: here from
 * another shared library's constructor (tests/fixtures/ctor_writer.c),
 * which writes to a pipe, round-trips 64 KiB through a socketpair with
 * send() and recv(), and writes again with writev(), all before main. Under
 * LD_PRELOAD every one of those calls must work as without the library.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

TestSuite(ctor, .init = h_setup, .fini = h_teardown,
    .timeout = H_TEST_TIMEOUT);

/* Everything readable on fd until EOF (the writer exited). */
static void
read_all(int fd, char *buf, size_t cap)
{
	size_t have = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		cr_assert(poll(&pfd, 1, H_DEADLINE_MS) == 1, "pipe stayed silent");
		r = read(fd, buf + have, cap - 1 - have);
		cr_assert(r >= 0);
		if (r == 0)
			break;
		have += (size_t)r;
		cr_assert(have < cap - 1, "too much output");
	}
	buf[have] = '\0';
}

static void
run_ctor_host(bool preload)
{
	static const char *const env[] = { "CTOR_WRITE_FD=5", NULL };
	struct h_spawn o = { .preload = preload, .env = env, .nfds = 1 };
	struct h_argv a = { .n = 0 };
	struct h_proc *p;
	char prog[4096], out[256];
	int fds[2];

	cr_assert(pipe2(fds, O_CLOEXEC) == 0);
	o.fds[0].child = 5;
	o.fds[0].parent = fds[1];
	h_fixture(prog, sizeof(prog), "ctor_host");
	p = h_spawn("ctor_host", prog, &a, &o);
	close(fds[1]);
	read_all(fds[0], out, sizeof(out));
	close(fds[0]);
	cr_assert(h_wait(p, H_DEADLINE_MS), "%s", h_describe(p));
	cr_expect_eq(h_exit_code(p), 0, "ctor_host failed (1-7: the "
	    "constructor's step, 8: main's write): %s", h_describe(p));
	cr_expect_str_eq(out, "ctor: write\nctor: done\nmain: ok\n");
	cr_expect_eq(h_stdout_size(p), 0, "output on stdout");
}

Test(ctor, hooked_calls_from_a_library_constructor_work)
{
	run_ctor_host(true);
}

Test(ctor, baseline_without_library_constructor_calls_work)
{
	run_ctor_host(false);
}
