/*
 * rel.c — see rel.h.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"
#include "rel.h"

static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
left(long long deadline)
{
	long long l = deadline - mono_ms();

	return l < 0 ? 0 : l > 1000000000 ? 1000000000 : (int)l;
}

bool
rel_matches(const uint8_t *buf, size_t len, long long off)
{
	char msg[PATTERN_MAX_SIZE];
	uint64_t seq = (uint64_t)(off / REL_MSG) + 1;
	size_t in = (size_t)(off % REL_MSG), i = 0;

	if (off < 0)
		return false;
	while (i < len) {
		size_t take = REL_MSG - in;

		if (take > len - i)
			take = len - i;
		pattern_message(msg, REL_MSG, -1, seq);
		if (memcmp(buf + i, msg + in, take) != 0)
			return false;
		i += take;
		in = 0;
		seq++;
	}
	return true;
}

long long
rel_locate(const uint8_t *buf, size_t len)
{
	for (size_t k = 0; k < REL_MSG && k + REL_MSG <= len; k++) {
		uint64_t seq = pattern_seq_of((const char *)buf + k);
		long long off;

		if (seq == 0)
			continue;
		off = (long long)(seq - 1) * REL_MSG - (long long)k;
		if (off >= 0 && rel_matches(buf, len, off))
			return off;
	}
	return -1;
}

static long long walk_bytes;

static int
add_size(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)path; (void)f;
	if (flag == FTW_F)
		walk_bytes += st->st_size;
	return 0;
}

long long
rel_dir_bytes(const char *dir)
{
	walk_bytes = 0;
	if (nftw(dir, add_size, 16, FTW_PHYS) != 0)
		return -1;
	return walk_bytes;
}

bool
rel_wait_dir_bytes(const char *dir, long long bytes, int timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;

	while (rel_dir_bytes(dir) < bytes) {
		if (left(deadline) == 0)
			return false;
		poll(NULL, 0, 10);
	}
	return true;
}

int
rel_streams(const char *spool, char names[][32], int max)
{
	DIR *d = opendir(spool);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < max)
		if (strlen(e->d_name) == 16 &&
		    strspn(e->d_name, "0123456789abcdef") == 16)
			snprintf(names[n++], 32, "%s", e->d_name);
	closedir(d);
	return n;
}

/* CRC-32C, bitwise (FORMAT.md: reflected 0x82F63B78). */
static uint32_t
crc32c(const uint8_t *p, size_t len)
{
	uint32_t c = 0xFFFFFFFFu;

	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return c ^ 0xFFFFFFFFu;
}

static uint64_t
le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

bool
rel_progress(const char *stream_dir, uint64_t *next_seq, uint64_t *next_off)
{
	uint8_t b[80];
	char path[PATH_MAX];
	uint64_t best = 0;
	ssize_t r;
	int fd;

	*next_seq = *next_off = 0;
	h_fmt(path, sizeof(path), "%s/progress", stream_dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return false;
	r = pread(fd, b, sizeof(b), 0);
	close(fd);
	for (int slot = 0; slot < 2 && r >= (slot + 1) * 40; slot++) {
		const uint8_t *s = b + slot * 40;

		if (memcmp(s, "TSPG", 4) != 0 || le32(s + 4) != 1 ||
		    le32(s + 36) != crc32c(s, 36) || le64(s + 8) <= best)
			continue;
		best = le64(s + 8);
		*next_seq = le64(s + 16);
		*next_off = le64(s + 24);
	}
	return best > 0;
}

int
rel_listen(unsigned short *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	H_ASSERT((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	H_ASSERT(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
	    "bind: %s", strerror(errno));
	H_ASSERT(listen(fd, 16) == 0);
	H_ASSERT(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

void
rel_capture(int lfd, uint8_t **out, size_t *len, char *end, size_t endlen,
    int timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	size_t cap = 1 << 20, n = 0;
	uint8_t *buf;
	int cfd;

	H_ASSERT(poll(&pfd, 1, left(deadline)) == 1, "nobody connected to "
	    "the replay listener");
	H_ASSERT((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0,
	    "accept: %s", strerror(errno));
	H_ASSERT((buf = malloc(cap)) != NULL);
	snprintf(end, endlen, "TIMEOUT");
	for (;;) {
		ssize_t r;

		pfd = (struct pollfd){ .fd = cfd, .events = POLLIN };
		if (poll(&pfd, 1, left(deadline)) != 1)
			break;
		if (n == cap)
			H_ASSERT((buf = realloc(buf, cap *= 2)) != NULL);
		r = read(cfd, buf + n, cap - n);
		if (r > 0) {
			n += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		snprintf(end, endlen, "%s", r == 0 ? "EOF" :
		    strerrorname_np(errno));
		break;
	}
	close(cfd);
	*out = buf;
	*len = n;
}

struct h_proc *
rel_cli_start(const char *label, ...)
{
	struct h_argv a = { .n = 0 };
	const char *s;
	va_list ap;

	va_start(ap, label);
	while ((s = va_arg(ap, const char *)) != NULL)
		h_arg(&a, "%s", s);
	va_end(ap);
	return h_spawn(label, getenv("TCPSPOOL_TEST_CLI"), &a, NULL);
}

int
rel_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int
rel_socket_count(pid_t pid)
{
	char path[64], link[320], target[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		ssize_t r;

		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
		r = readlink(link, target, sizeof(target) - 1);
		if (r > 0 && (target[r] = '\0', strncmp(target, "socket:", 7) == 0))
			n++;
	}
	closedir(d);
	return n;
}

long
rel_rss_kib(pid_t pid)
{
	char path[64], text[8192], *p;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (rel_read_file(path, text, sizeof(text)) < 0 ||
	    (p = strstr(text, "VmRSS:")) == NULL)
		return -1;
	return strtol(p + 6, NULL, 10);
}

int
rel_children(pid_t pid, pid_t *out, int max)
{
	char path[96], text[4096], *p, *q;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
	    (int)pid);
	if (rel_read_file(path, text, sizeof(text)) < 0)
		return 0;
	for (p = text; n < max; p = q) {
		long v = strtol(p, &q, 10);

		if (q == p)
			break;
		out[n++] = (pid_t)v;
	}
	return n;
}

bool
rel_root(void)
{
	return geteuid() == 0;
}

ssize_t
rel_read_file(const char *path, char *out, size_t max)
{
	size_t n = 0;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	while (n + 1 < max && (r = read(fd, out + n, max - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	out[n] = '\0';
	return (ssize_t)n;
}
