/*
 * exec_host — a server that spools, then execs another program on the
 * same connection (issue 15's exec case, test_daemon_faults.c).
 *
 * fd 3: its end of a connected TCP socket; fd 4: a gate (one byte, or
 * EOF, lets it go on). It makes fd 3 non-blocking with a small send
 * buffer, writes --bytes of the pattern byte i = i % 253 (the library
 * spools what the kernel does not take), waits on the gate, makes fd 3
 * blocking again and execs /bin/sh -c SCRIPT (fd 3 still the socket).
 */
#include <sys/socket.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	long long bytes = argc > 2 ? atoll(argv[1]) : 0, at = 0;
	int sndbuf = 65536, fl;
	char buf[65536], b;
	ssize_t n;
	size_t i;

	if (argc != 3 || bytes <= 0) {
		fprintf(stderr, "usage: exec_host BYTES SCRIPT\n");
		return 64;
	}
	(void)setsockopt(3, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	fl = fcntl(3, F_GETFL);
	(void)fcntl(3, F_SETFL, fl | O_NONBLOCK);
	while (at < bytes) {
		size_t len = sizeof(buf);

		if ((long long)len > bytes - at)
			len = (size_t)(bytes - at);
		for (i = 0; i < len; i++)
			buf[i] = (char)((at + (long long)i) % 253);
		if ((n = write(3, buf, len)) <= 0) {
			perror("exec_host: write");
			return 1;
		}
		at += n;
	}
	(void)read(4, &b, 1);
	close(4);
	(void)fcntl(3, F_SETFL, fl & ~O_NONBLOCK);
	execl("/bin/sh", "sh", "-c", argv[2], (char *)NULL);
	perror("exec_host: exec");
	return 127;
}
