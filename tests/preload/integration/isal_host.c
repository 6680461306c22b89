/*
 * isal_host — a host program that shares names with libisal.so.2, run
 * under LD_PRELOAD by test_isal_names.c.
 *
 * It is linked -rdynamic and defines build_heap, build_huff_tree and
 * crc32_gzip_refl: names ISA-L exports and calls through the dynamic
 * linker (build_heap and build_huff_tree at every level-1 frame). Linked
 * into the interposer, or dlopened without RTLD_DEEPBIND, ISA-L's calls
 * would bind to these (the executable comes first in the global scope);
 * each of them aborts when anyone but this program calls it. And it
 * dlopens isal_plugin.so RTLD_GLOBAL, a host library that defines
 * isal_deflate_init and crc32_gzip_stamp: looked up by name
 * (dlsym(RTLD_DEFAULT), as another plugin's reference would bind), each
 * must be the plugin's, which it would not be if libisal.so.2 were in the
 * global scope (it comes before any library dlopened later).
 *
 * Then it spools: a loopback connection with 16 KiB buffers that nobody
 * reads, 2 MiB of the pattern written with sendmsg (28-byte records and
 * 64 KiB ones), every call reported whole; then it reads the receiving end
 * and checks every byte, in order, and that it reads nothing more.
 *
 * Usage: isal_host PLUGIN_PATH. Exit 0 when all holds; 2..9 say which
 * check failed (on stderr too); an abort means ISA-L called the host.
 */
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOTAL		(2u << 20)
#define BIG		(64u << 10)
#define SMALL		28u
#define DEADLINE_MS	90000

/* Set while this program calls its own functions. */
static __thread int self_call;

static void
called_from_outside(const char *name)
{
	static const char pre[] = "isal_host: ";
	static const char post[] = " called by someone else (libisal?)\n";

	(void)!write(2, pre, sizeof(pre) - 1);
	(void)!write(2, name, strlen(name));
	(void)!write(2, post, sizeof(post) - 1);
	abort();
}

/* ISA-L's own signatures do not matter: nobody but us may call these. */
int build_heap(void *heap, uint64_t n);
int build_huff_tree(void *nodes, uint64_t n, uint64_t m);
uint32_t crc32_gzip_refl(uint32_t init, const unsigned char *buf,
    uint64_t len);

__attribute__((noinline)) int
build_heap(void *heap, uint64_t n)
{
	if (!self_call)
		called_from_outside("build_heap");
	return 0x4845;		/* "HE" */
}

__attribute__((noinline)) int
build_huff_tree(void *nodes, uint64_t n, uint64_t m)
{
	if (!self_call)
		called_from_outside("build_huff_tree");
	return 0;
}

__attribute__((noinline)) uint32_t
crc32_gzip_refl(uint32_t init, const unsigned char *buf, uint64_t len)
{
	if (!self_call)
		called_from_outside("crc32_gzip_refl");
	return 0x484f5354;	/* "HOST" */
}

static int
fail(int code, const char *what)
{
	fprintf(stderr, "isal_host: %s (errno %d)\n", what, errno);
	return code;
}

static uint8_t
pattern(uint64_t i)
{
	return (uint8_t)(i * 2654435761u >> 13) % 61 + 'A';
}

/* The libraries that share names with ISA-L: ours, then a plugin's. */
static int
names_are_the_hosts(const char *plugin)
{
	int (*heap)(void *, uint64_t);
	uint32_t (*stamp)(void);
	void (*init)(void *);
	void *h;

	self_call = 1;
	heap = (int (*)(void *, uint64_t))dlsym(RTLD_DEFAULT, "build_heap");
	if (heap != build_heap || build_heap(NULL, 0) != 0x4845 ||
	    heap(NULL, 0) != 0x4845)
		return fail(2, "build_heap is not this program's");
	self_call = 0;
	if ((h = dlopen(plugin, RTLD_NOW | RTLD_GLOBAL)) == NULL) {
		fprintf(stderr, "isal_host: %s\n", dlerror());
		return 3;
	}
	*(void **)&init = dlsym(RTLD_DEFAULT, "isal_deflate_init");
	*(void **)&stamp = dlsym(h, "plugin_stamp");
	if (init == NULL || stamp == NULL ||
	    init != (void (*)(void *))dlsym(h, "isal_deflate_init"))
		return fail(4, "isal_deflate_init by name is not the "
		    "plugin's (libisal.so.2 in the global scope?)");
	init(NULL);
	if (stamp() != 1)
		return fail(4, "the plugin's isal_deflate_init did not run");
	return 0;
}

static int
loopback_pair(int *snd, int *rcv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int l, one = 16384;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((l = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    setsockopt(l, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one)) == -1 ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) == -1 ||
	    listen(l, 1) == -1 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) == -1 ||
	    (*snd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    setsockopt(*snd, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)) ==
	    -1 || connect(*snd, (struct sockaddr *)&a, sizeof(a)) == -1 ||
	    (*rcv = accept(l, NULL, NULL)) == -1)
		return -1;
	close(l);
	return fcntl(*snd, F_SETFL, O_NONBLOCK);
}

static bool isal_mapped(void);

/* The interposer loads libisal.so.2 on its sync thread once it spools:
 * a bounded wait until it is mapped here. */
static bool
wait_isal_mapped(void)
{
	for (int i = 0; i < DEADLINE_MS / 10; i++) {
		if (isal_mapped())
			return true;
		usleep(10000);	/* bounded poll of a condition */
	}
	return false;
}

/* Built with -fsanitize=address (isal_host_asan): the interposer must
 * not load ISA-L at all (a sanitizer runtime kills a process that
 * dlopens with RTLD_DEEPBIND), and must spool all the same. */
#ifdef SANITIZED_HOST
static const bool expect_isal = false;
#else
static const bool expect_isal = true;
#endif

/* TOTAL bytes of the pattern in 28-byte and 64 KiB sendmsg calls; once
 * the first 224 KB (several times what the socket takes) are spooled, the
 * rest only after ISA-L was loaded, so that it deflates most of them. */
static int
spool_it(int fd, uint8_t *buf)
{
	struct msghdr m = { 0 };
	struct iovec v;
	uint64_t off = 0;
	size_t n;
	ssize_t r;
	int k = 0;

	while (off < TOTAL) {
		n = (k++ / 8000) % 2 == 0 ? SMALL : BIG;
		if (n > TOTAL - off)
			n = TOTAL - off;
		v.iov_base = buf + off;
		v.iov_len = n;
		m.msg_iov = &v;
		m.msg_iovlen = 1;
		r = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (r != (ssize_t)n)
			return fail(5, "a sendmsg was not reported whole");
		off += n;
		if (k == 8000 && expect_isal && !wait_isal_mapped())
			return fail(8, "libisal.so.2 was never loaded");
	}
	return 0;
}

static int
read_back(int fd, const uint8_t *want)
{
	uint8_t buf[65536];
	uint64_t got = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t r;

	while (got < TOTAL) {
		if (poll(&p, 1, DEADLINE_MS) != 1)
			return fail(6, "the stream stalled");
		if ((r = read(fd, buf, sizeof(buf))) <= 0)
			return fail(6, "the stream ended early");
		if (got + (uint64_t)r > TOTAL)
			return fail(7, "more bytes than were sent");
		if (memcmp(buf, want + got, (size_t)r) != 0)
			return fail(7, "a byte differs");
		got += (uint64_t)r;
	}
	return 0;
}

static bool
isal_mapped(void)
{
	char line[512];
	bool found = false;
	FILE *f;

	if ((f = fopen("/proc/self/maps", "re")) == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, "/libisal.so.2") != NULL;
	fclose(f);
	return found;
}

int
main(int argc, char **argv)
{
	uint8_t *buf;
	char c;
	int snd, rcv, rc;
	uint64_t i;

	if (argc != 2)
		return fail(9, "usage: isal_host PLUGIN_PATH");
	if ((rc = names_are_the_hosts(argv[1])) != 0)
		return rc;
	if ((buf = malloc(TOTAL)) == NULL)
		return fail(9, "malloc");
	for (i = 0; i < TOTAL; i++)
		buf[i] = pattern(i);
	if (loopback_pair(&snd, &rcv) == -1)
		return fail(9, "loopback connection");
	if ((rc = spool_it(snd, buf)) != 0 || (rc = read_back(rcv, buf)) != 0)
		return rc;
	/* The deferred close delivers nothing more, then the FIN. */
	close(snd);
	if (read(rcv, &c, 1) != 0)
		return fail(8, "bytes or an error after the stream");
	/* ISA-L in this process, its names not in the global scope. */
	if (isal_mapped() != expect_isal)
		return fail(8, expect_isal ? "libisal.so.2 is not loaded" :
		    "libisal.so.2 was loaded into a sanitized host");
	if (dlsym(RTLD_DEFAULT, "isal_deflate") != NULL)
		return fail(8, "isal_deflate is in the global scope");
	self_call = 1;
	if (build_heap(NULL, 0) != 0x4845)
		return fail(2, "build_heap is not this program's");
	free(buf);
	return 0;
}
