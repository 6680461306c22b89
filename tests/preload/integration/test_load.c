/*
 * The library loads into a real, unmodified program under LD_PRELOAD, and a
 * plain send() over loopback still delivers every byte, exactly.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int
listen_loopback(unsigned short *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0);
	cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(listen(fd, 8) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* accept(), unless the child exits first (then fail with its status). */
static int
accept_from(int lfd, pid_t child)
{
	for (;;) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		int status;

		if (poll(&pfd, 1, 100) == 1)
			return accept(lfd, NULL, NULL);
		if (waitpid(child, &status, WNOHANG) == child)
			cr_assert_fail("child exited before connecting (status %#x)",
			    status);
	}
}

static pid_t
spawn_preloaded(const char *prog, char *const argv[])
{
	const char *preload = getenv("TCPSPOOL_TEST_PRELOAD");
	pid_t pid;

	cr_assert(preload != NULL, "TCPSPOOL_TEST_PRELOAD unset: run via meson test");
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		setenv("LD_PRELOAD", preload, 1);
		setenv("TCPSPOOL_EXPECT_PRELOAD", "1", 1);
		execv(prog, argv);
		_exit(127);
	}
	return pid;
}

Test(preload_load, plain_send_over_loopback_is_byte_exact, .timeout = 60)
{
	const long long nbytes = 3 * 1024 * 1024 + 17;
	char prog[4096], portstr[16], nstr[32];
	unsigned char buf[65536];
	unsigned short port;
	long long got = 0;
	int lfd, cfd, status;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/send_loopback",
	    getenv("TCPSPOOL_FIXTURE_DIR"));
	lfd = listen_loopback(&port);
	snprintf(portstr, sizeof(portstr), "%u", port);
	snprintf(nstr, sizeof(nstr), "%lld", nbytes);
	pid = spawn_preloaded(prog, (char *[]){ prog, portstr, nstr, NULL });
	cfd = accept_from(lfd, pid);
	cr_assert(cfd >= 0);
	for (;;) {
		ssize_t r = read(cfd, buf, sizeof(buf));

		cr_assert(r >= 0);
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			cr_assert_eq(buf[i], (unsigned char)((got + i) * 7 + 3),
			    "byte %lld differs", got + i);
		got += r;
	}
	cr_assert_eq(got, nbytes);
	cr_assert(waitpid(pid, &status, 0) == pid);
	cr_assert(WIFEXITED(status), "sender died (signal %d)",
	    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	cr_assert_eq(WEXITSTATUS(status), 0,
	    "sender exited %d (2: library not loaded)", WEXITSTATUS(status));
	close(cfd);
	close(lfd);
}
