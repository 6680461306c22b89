/*
 * lat_bench — one-way latency of paced small messages, sender to reader,
 * on loopback: what a path (plain kernel, the library's direct path, a
 * relay) adds per message when the reader keeps up.
 *
 *   lat_bench send COUNT INTERVAL_US   listens on 127.0.0.1 (any port),
 *                                      prints "port P" on stdout, accepts
 *                                      one connection and sends COUNT
 *                                      64-byte messages, one every
 *                                      INTERVAL_US, each carrying its
 *                                      CLOCK_MONOTONIC send time; then
 *                                      closes
 *   lat_bench recv PORT                connects, reads to EOF, prints
 *                                      "count N p50_ns X p99_ns Y"
 * The clocks agree: both ends are on this machine.
 */
#include "bench_common.h"

#define MSG 64

static int
do_send(long count, long interval_us)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	uint8_t msg[MSG];
	int l = bench_listen(), fd;
	long i;

	if (getsockname(l, (struct sockaddr *)&a, &alen) != 0)
		err(2, "getsockname");
	printf("port %u\n", ntohs(a.sin_port));
	fflush(stdout);
	if ((fd = accept(l, NULL, NULL)) < 0)
		err(2, "accept");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(msg, '.', sizeof(msg));
	msg[MSG - 1] = '\n';
	for (i = 0; i < count; i++) {
		struct timespec d = { 0, interval_us * 1000 };
		int64_t t = bench_ns();

		memcpy(msg, &t, sizeof(t));
		if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != MSG)
			err(2, "send");
		nanosleep(&d, NULL);
	}
	close(fd);
	close(l);
	return 0;
}

static int
do_recv(const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	size_t n = 0, cap = 1 << 16, have = 0;
	double *lat = malloc(cap * sizeof(double));
	uint8_t buf[MSG * 64];
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	ssize_t r;

	if (lat == NULL || fd < 0)
		err(2, "setup");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)atoi(port));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		err(2, "connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while ((r = recv(fd, buf + have, sizeof(buf) - have, 0)) > 0) {
		int64_t now = bench_ns();
		size_t off;

		have += (size_t)r;
		for (off = 0; off + MSG <= have; off += MSG) {
			int64_t t;

			memcpy(&t, buf + off, sizeof(t));
			if (n == cap && (lat = realloc(lat,
			    (cap *= 2) * sizeof(double))) == NULL)
				err(2, "realloc");
			lat[n++] = (double)(now - t);
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	if (r < 0)
		err(2, "recv");
	printf("count %zu p50_ns %.0f p99_ns %.0f\n", n, bench_pct(lat, n, 50),
	    bench_pct(lat, n, 99));
	return n > 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "send") == 0)
		return do_send(atol(argv[2]), atol(argv[3]));
	if (argc == 3 && strcmp(argv[1], "recv") == 0)
		return do_recv(argv[2]);
	fprintf(stderr, "usage: lat_bench send COUNT INTERVAL_US | "
	    "lat_bench recv PORT\n");
	return 2;
}
