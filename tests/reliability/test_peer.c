/*
 * Peers that misbehave, against one long-lived host: server_a --no-fork
 * serves connection after connection in one process under the library, so
 * whatever a fault leaks (fds, memory, streams) accumulates there. The
 * test is the client of every connection, in order, and each connection's
 * whole stream is spooled before the client reads (it connects with a
 * 4 KiB window and waits for server_a's "done" line).
 *
 * Each round, four peers:
 *   full        reads everything: byte-exact, then EOF
 *   reset       reads 64 KiB of the replay, then resets (SO_LINGER {1, 0}):
 *               the spool stays as an orphan whose reason is the reset
 *   no-close    reads everything and EOF, then neither reads nor closes:
 *               the library lets go of the connection after the linger time
 *   half-close  shutdown(SHUT_WR) right after connecting, then reads:
 *               byte-exact, then EOF
 * After the first round the host's open fds and resident memory are the
 * baseline; after the last round they must be back there (fds exactly,
 * memory within a small margin, unsanitized builds only).
 * A last peer reads nothing at all: server_a ends, its exit waits only the
 * linger time and leaves an orphan (reason: exit).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rel.h"

#define COUNT		20000
#define BYTES		((long long)COUNT * REL_MSG)
#define ROUNDS		3
#define KINDS		4
#define LINGER_MS	1000

enum kind { FULL, RESET, NO_CLOSE, HALF_CLOSE };
static const char *const kind_names[] = { "full", "reset", "no-close",
	"half-close" };

TestSuite(peer, .init = h_setup, .fini = h_teardown, .timeout = 300);

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
connect_small(unsigned short port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd, rcv = 4096;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	cr_assert((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
	    "connect: %s", strerror(errno));
	return fd;
}

/* Reads up to max bytes (or to EOF); checks them against the stream. */
static long long
read_stream(int fd, long long max, bool *eof)
{
	static uint8_t buf[1 << 16];
	long long deadline = now_ms() + H_DEADLINE_MS, got = 0;

	*eof = false;
	while (got < max) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		size_t want = sizeof(buf);
		ssize_t r;

		if (max - got < (long long)want)
			want = (size_t)(max - got);
		if (poll(&pfd, 1, (int)(deadline - now_ms())) != 1)
			break;
		r = read(fd, buf, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*eof = r == 0;
			break;
		}
		cr_assert(rel_matches(buf, (size_t)r, got), "the stream "
		    "differs in bytes %lld..%lld", got, got + r - 1);
		got += r;
	}
	return got;
}

/*
 * Waits (bounded retry on the condition) until the host's only socket is
 * its listener: every connection and every private duplicate the library
 * held is closed. Returns its open fd count then, -1 on timeout.
 */
static int
wait_settled(pid_t pid, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	while (rel_socket_count(pid) != 1) {
		if (now_ms() >= deadline)
			return -1;
		poll(NULL, 0, 20);
	}
	return rel_fd_count(pid);
}

static int
count_in(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++)
		n++;
	return n;
}

Test(peer, resets_stalls_half_closes_leave_no_leak_in_the_host)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=1s", NULL };
	static char out[1 << 16];
	struct h_spawn o = { .preload = true, .env = env };
	int open_fds[ROUNDS * KINDS], nopen = 0, conn = 0;
	int base_fds = -1, end_fds;
	long base_rss = -1, end_rss;
	char conns[32], *sanitize = getenv("TCPSPOOL_TEST_SANITIZE");
	struct h_proc *server, *cli;
	unsigned short port;
	long long t0;
	pid_t pid;
	int fd;

	h_fmt(conns, sizeof(conns), "--connections=%d", ROUNDS * KINDS + 1);
	server = h_server_a(&o, &port, "--no-fork", conns, "--sndbuf=4096",
	    "--count=20000", NULL);
	pid = h_pid(server);

	for (int round = 0; round < ROUNDS; round++) {
		for (int k = 0; k < KINDS; k++, conn++) {
			char done[32];
			long long got;
			bool eof;

			fd = connect_small(port);
			if (k == HALF_CLOSE)
				cr_assert_eq(shutdown(fd, SHUT_WR), 0);
			h_fmt(done, sizeof(done), "done conn=%d ", conn);
			cr_assert(h_status_line(server, done, 0,
			    H_DEADLINE_MS) != NULL, "%s peer %d: server_a "
			    "did not finish its writes: %s\n%s",
			    kind_names[k], conn, h_describe(server),
			    h_status_text(server));
			got = read_stream(fd, k == RESET ? 65536 : BYTES + 1,
			    &eof);
			if (k == RESET) {
				struct linger l = { 1, 0 };

				cr_expect_eq(got, 65536);
				setsockopt(fd, SOL_SOCKET, SO_LINGER, &l,
				    sizeof(l));
				close(fd);
				continue;
			}
			cr_expect_eq(got, BYTES, "%s peer %d got %lld bytes",
			    kind_names[k], conn, got);
			cr_expect(eof, "%s peer %d: no EOF after %lld bytes",
			    kind_names[k], conn, got);
			if (k == NO_CLOSE)
				open_fds[nopen++] = fd;
			else
				close(fd);
		}
		/* Every stream of the round is over once the no-close peer's
		 * linger time has passed: the host's fds settle. */
		if (round == 0) {
			base_fds = wait_settled(pid, LINGER_MS + 30000);
			base_rss = rel_rss_kib(pid);
			cr_assert_geq(base_fds, 0, "the host still holds "
			    "connections after the first round (%d sockets)",
			    rel_socket_count(pid));
		}
	}
	end_fds = wait_settled(pid, LINGER_MS + 30000);
	cr_expect_geq(end_fds, 0, "the host still holds %d sockets after "
	    "every peer is done", rel_socket_count(pid));
	end_rss = rel_rss_kib(pid);
	cr_expect_eq(end_fds, base_fds, "the host had %d open fds after the "
	    "first round, %d after %d rounds of faulty peers", base_fds,
	    end_fds, ROUNDS);
	if (sanitize == NULL || strcmp(sanitize, "none") == 0)
		cr_expect_leq(end_rss, base_rss + 2048, "the host's resident "
		    "memory grew from %ld KiB to %ld KiB over %d rounds",
		    base_rss, end_rss, ROUNDS - 1);
	for (int i = 0; i < nopen; i++)
		close(open_fds[i]);

	/* The reset peers' spools are orphans that say why. */
	cli = h_cli(out, sizeof(out), "ls", "--json", "--dir", h_spool_dir(),
	    NULL);
	cr_expect_eq(h_exit_code(cli), 0, "%s", h_describe(cli));
	cr_expect_eq(count_in(out, "\"stream\":"), ROUNDS, "expected %d "
	    "orphans (one per reset peer):\n%s", ROUNDS, out);
	cr_expect_eq(count_in(out, "reset"), ROUNDS, "the orphans do not "
	    "name the reset as their reason:\n%s", out);

	/* The last peer reads nothing: server_a's exit waits the linger
	 * time, then leaves an orphan. */
	fd = connect_small(port);
	cr_assert(h_status_line(server, "done ", ROUNDS * KINDS,
	    H_DEADLINE_MS) != NULL, "%s", h_describe(server));
	t0 = now_ms();
	cr_assert(h_wait(server, H_DEADLINE_MS), "server_a did not exit "
	    "with a peer that reads nothing: %s", h_describe(server));
	cr_expect_lt(now_ms() - t0, LINGER_MS + 15000, "the exit took %lld "
	    "ms, the linger time is %d ms", now_ms() - t0, LINGER_MS);
	cr_expect_eq(h_exit_code(server), 0, "the host did not survive: %s",
	    h_describe(server));
	cr_expect_eq(h_stdout_size(server), 0);
	close(fd);
	cli = h_cli(out, sizeof(out), "ls", "--json", "--dir", h_spool_dir(),
	    NULL);
	cr_expect_eq(count_in(out, "\"stream\":"), ROUNDS + 1, "expected the "
	    "silent peer's orphan too:\n%s", out);
	cr_expect_eq(count_in(out, "\"why\":\"exit\""), 1, "the silent "
	    "peer's orphan does not say it was left at exit:\n%s", out);
	cr_log_info("peer faults: host fds %d -> %d, rss %ld -> %ld KiB",
	    base_fds, end_fds, base_rss, end_rss);
}
