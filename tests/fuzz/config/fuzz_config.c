/*
 * libFuzzer target for the TCPSPOOL_ parser: config_parse over a fuzzed
 * environment array, and the single-value parsers.
 *
 * Input: one mode byte, then the payload.
 *   mode 0  payload split at NUL bytes into environment entries, as given
 *   mode 1  the same, each entry prefixed with "TCPSPOOL_" (reaches the
 *           variable table far more often)
 *   mode 2  config_parse_size, checked against a reference parser
 *   mode 3  config_parse_duration_ms, checked against a reference parser
 *   mode 4  config_parse_ports, then config_port_match on every port
 *           against the ranges it returned
 *
 * Beyond the sanitizers, it aborts when a result breaks a documented
 * promise: bounds, a message that is not one printable line naming a
 * variable, errno changed, an output written on failure.
 *
 * Build and run by hand (see tests/fuzz/config/meson.build for the test):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -isystem /usr/include/bsd -DLIBBSD_OVERLAY -Ipreload \
 *     preload/config.c tests/fuzz/config/fuzz_config.c -lbsd -o fuzz_config
 *   ./fuzz_config -dict=tests/fuzz/config/config.dict corpus-dir \
 *     tests/fuzz/config/corpus
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENTRIES_MAX 64
#define PREFIX "TCPSPOOL_"

#define check(cond) do { if (!(cond)) { \
	fprintf(stderr, "fuzz_config: %s:%d: %s\n", __FILE__, __LINE__, \
	    #cond); abort(); } } while (0)

/* A message is one line of printable ASCII, not cut short. */
static void
check_message(const char *m, size_t size)
{
	size_t i, len = strlen(m);

	check(len < size - 1);
	for (i = 0; i < len; i++)
		check(m[i] >= 0x20 && m[i] < 0x7f);
}

/* No ".." component, absolute, no control byte. */
static void
check_path(const char *p)
{
	const char *c;

	check(p[0] == '/');
	check(strcmp(p, "/") != 0);
	for (c = p; *c != '\0'; c++)
		check((unsigned char)*c >= 0x20 && *c != 0x7f);
	for (c = p; (c = strstr(c, "..")) != NULL; c++)
		check(!(c[-1] == '/' && (c[2] == '/' || c[2] == '\0')));
}

static void
check_ports(const struct port_set *ps)
{
	unsigned i;

	check(ps->n <= CONFIG_PORT_RANGES_MAX);
	for (i = 0; i < ps->n; i++) {
		check(ps->range[i].lo >= 1);
		check(ps->range[i].lo <= ps->range[i].hi);
	}
}

static void
fuzz_env(const uint8_t *data, size_t size, bool prefixed)
{
	static struct tcpspool_config c;
	char err[CONFIG_MSG_MAX], warn[CONFIG_MSG_MAX];
	char *envp[ENTRIES_MAX + 1];
	char *buf, *p, *end;
	size_t n = 0, plen = prefixed ? strlen(PREFIX) : 0;
	int rc;

	/* Each entry: optional prefix, bytes up to a NUL, its own NUL. */
	buf = malloc(size * (plen + 1) + plen + 1);
	check(buf != NULL);
	p = buf;
	end = (char *)data + size;
	for (const char *s = (const char *)data; n < ENTRIES_MAX; ) {
		const char *z = memchr(s, '\0', (size_t)(end - s));
		size_t len = z != NULL ? (size_t)(z - s) : (size_t)(end - s);

		envp[n++] = p;
		memcpy(p, PREFIX, plen);
		memcpy(p + plen, s, len);
		p += plen + len;
		*p++ = '\0';
		if (z == NULL)
			break;
		s = z + 1;
	}
	envp[n] = NULL;

	errno = 12345;
	rc = config_parse(&c, envp, err, sizeof(err), warn, sizeof(warn));
	check(errno == 12345);
	check(rc == 0 || rc == -1);
	check_message(warn, sizeof(warn));
	if (rc == -1) {
		check(strncmp(err, PREFIX, strlen(PREFIX)) == 0);
		check(strstr(err, "=\"") != NULL);
		check(strstr(err, "expected ") != NULL);
		check_message(err, sizeof(err));
	} else {
		check(err[0] == '\0');
		check_path(c.dir);
		check(strlen(c.dir) < CONFIG_DIR_LEN_MAX);
		check(c.max_stream >= 1 && c.max_stream <= CONFIG_SIZE_MAX);
		check(c.max_total >= 1 && c.max_total <= CONFIG_SIZE_MAX);
		check(c.min_free <= CONFIG_SIZE_MAX);
		check(c.segment_size >= CONFIG_SEGMENT_SIZE_MIN &&
		    c.segment_size <= CONFIG_SEGMENT_SIZE_MAX);
		check(c.level >= 0 && c.level <= 9);
		check(c.flush_ms >= 1 && c.flush_ms <= CONFIG_DURATION_MAX_MS);
		check(c.fsync_interval_ms >= 1 &&
		    c.fsync_interval_ms <= CONFIG_DURATION_MAX_MS);
		check(c.linger_ms <= CONFIG_DURATION_MAX_MS);
		check(c.block_timeout_ms <= CONFIG_DURATION_MAX_MS);
		check((unsigned)c.fsync <= FSYNC_ALWAYS);
		check((unsigned)c.overflow <= OVERFLOW_DROP);
		check((unsigned)c.log_dest <= LOG_DEST_FILE);
		check((unsigned)c.log_level <= LOG_LEVEL_DEBUG);
		check_ports(&c.ports);
		check_ports(&c.peer_ports);
		if (c.log_dest == LOG_DEST_FILE) {
			check_path(c.log_path);
			check(c.log_path[strlen(c.log_path) - 1] != '/');
		} else {
			check(c.log_path[0] == '\0');
		}
	}
	free(buf);
}

/*
 * Reference: digits (arbitrary length, exact), then a suffix from a list.
 * Returns 0 with *out, or -1. mults/units: NULL-terminated.
 */
static int
ref_parse(const char *s, const char *const *units, const uint64_t *mults,
    bool nocase, unsigned __int128 max, uint64_t *out)
{
	unsigned __int128 v = 0;
	const char *p = s;
	size_t i;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > max)
			v = max + 1;	/* saturate; stays out of range */
	}
	for (i = 0; units[i] != NULL; i++)
		if ((nocase ? strcasecmp(p, units[i]) :
		    strcmp(p, units[i])) == 0)
			break;
	if (units[i] == NULL)
		return -1;
	v *= mults[i];
	if (v > max)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static char *
to_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	check(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

static void
fuzz_size(const uint8_t *data, size_t size)
{
	static const char *const units[] = { "", "b", "k", "kb", "kib", "m",
		"mb", "mib", "g", "gb", "gib", "t", "tb", "tib", NULL };
	static const uint64_t mults[] = { 1, 1, 1ull << 10, 1ull << 10,
		1ull << 10, 1ull << 20, 1ull << 20, 1ull << 20, 1ull << 30,
		1ull << 30, 1ull << 30, 1ull << 40, 1ull << 40, 1ull << 40 };
	char *s = to_string(data, size);
	uint64_t got = 0xdeadbeef, want = 0;
	int rc, ref;

	rc = config_parse_size(s, &got);
	ref = ref_parse(s, units, mults, true, CONFIG_SIZE_MAX, &want);
	check(rc == ref);
	if (rc == 0)
		check(got == want);
	else
		check(got == 0xdeadbeef);
	free(s);
}

static void
fuzz_duration(const uint8_t *data, size_t size)
{
	static const char *const units[] = { "", "ms", "s", "m", "h", NULL };
	static const uint64_t mults[] = { 1, 1, 1000, 60000, 3600000 };
	char *s = to_string(data, size);
	uint32_t got = 0xdeadbeef;
	uint64_t want = 0;
	int rc, ref;

	rc = config_parse_duration_ms(s, &got);
	ref = ref_parse(s, units, mults, false, CONFIG_DURATION_MAX_MS,
	    &want);
	check(rc == ref);
	if (rc == 0)
		check(got == want);
	else
		check(got == 0xdeadbeef);
	free(s);
}

static bool
ref_match(const struct port_set *ps, uint32_t port)
{
	unsigned i;

	if (ps->n == 0)
		return true;
	for (i = 0; i < ps->n; i++)
		if (port >= ps->range[i].lo && port <= ps->range[i].hi)
			return true;
	return false;
}

static void
fuzz_ports(const uint8_t *data, size_t size)
{
	char *s = to_string(data, size);
	struct port_set ps;
	unsigned i;
	uint32_t port;

	memset(&ps, 0x5a, sizeof(ps));
	if (config_parse_ports(s, &ps) == 0) {
		check_ports(&ps);
		check((ps.n == 0) == (s[0] == '\0'));
		check(config_port_match(&ps, 65535) == ref_match(&ps, 65535));
		/* Every range edge below, and a coarse sweep here. */
		for (port = 0; port <= 65535; port += 251)
			check(config_port_match(&ps, (uint16_t)port) ==
			    ref_match(&ps, port));
		for (i = 0; i < ps.n; i++) {
			port = ps.range[i].lo;
			check(config_port_match(&ps, (uint16_t)port));
			check(config_port_match(&ps, (uint16_t)(port - 1)) ==
			    ref_match(&ps, port - 1));
			port = ps.range[i].hi;
			check(config_port_match(&ps, (uint16_t)port));
			check(config_port_match(&ps, (uint16_t)(port + 1)) ==
			    ref_match(&ps, (port + 1) & 0xffff));
		}
	} else {
		check(ps.n == 0x5a5a5a5a);
	}
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 5) {
	case 0:
		fuzz_env(data + 1, size - 1, false);
		break;
	case 1:
		fuzz_env(data + 1, size - 1, true);
		break;
	case 2:
		fuzz_size(data + 1, size - 1);
		break;
	case 3:
		fuzz_duration(data + 1, size - 1);
		break;
	case 4:
		fuzz_ports(data + 1, size - 1);
		break;
	}
	return 0;
}
