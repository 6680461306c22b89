/*
 * config.c — the TCPSPOOL_ environment variables, parsed strictly.
 *
 * Invariants:
 *   - config_parse allocates nothing, prints nothing, never calls getenv and
 *     leaves errno as it found it: it may run inside a hooked call.
 *   - A number is ASCII digits only: no sign, no blank, no base prefix, no
 *     fraction, no exponent. strtonum then bounds it; the suffix, if any, is
 *     matched exactly and nothing may follow it.
 *   - Every value is bounded (config.h names the bounds); a value out of
 *     bounds is an error, never clamped.
 *   - An error is one line: NAME="value made safe": what is accepted.
 *
 * The value in a message is encoded like strvis(3) with
 * VIS_OCTAL|VIS_CSTYLE|VIS_TAB|VIS_NL|VIS_DQ|VIS_NOLOCALE (so strunvis
 * decodes it), by a local encoder: libbsd 0.11's strvis calls malloc three
 * times per string, which config_parse must not do.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREFIX "TCPSPOOL_"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
/* Names under this prefix belong to the test suite and are not warned of. */
#define TEST_PREFIX "TCPSPOOL_TEST_"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)

/* Longest digit run handed to strtonum; longer runs are out of range. */
#define DIGITS_MAX 24
/* Bytes of a bad value quoted in a message; the rest becomes "...". */
#define QUOTE_MAX 64

void
config_default_dir(struct tcpspool_config *c)
{
	snprintf(c->dir, sizeof(c->dir), "%s%u", CONFIG_DEFAULT_DIR_PREFIX,
	    (unsigned)geteuid());
}

void
config_defaults(struct tcpspool_config *c)
{
	memset(c, 0, sizeof(*c));
	c->disabled = false;
	c->dir_is_default = true;
	config_default_dir(c);
	c->max_stream = CONFIG_DEFAULT_MAX_STREAM;
	c->max_total = CONFIG_DEFAULT_MAX;
	c->min_free = CONFIG_DEFAULT_MIN_FREE;
	c->segment_size = CONFIG_DEFAULT_SEGMENT_SIZE;
	c->level = CONFIG_DEFAULT_LEVEL;
	c->flush_ms = CONFIG_DEFAULT_FLUSH_MS;
	c->fsync = FSYNC_INTERVAL;
	c->fsync_interval_ms = CONFIG_DEFAULT_FSYNC_INTERVAL_MS;
	c->linger_ms = CONFIG_DEFAULT_LINGER_MS;
	c->overflow = OVERFLOW_EAGAIN;
	c->block_timeout_ms = CONFIG_DEFAULT_BLOCK_TIMEOUT_MS;
	c->orphans = ORPHANS_EXPIRE;
	c->orphan_ttl_ms = CONFIG_DEFAULT_ORPHAN_TTL_MS;
	c->resume = RESUME_OFF;
	c->resume_ttl_ms = CONFIG_DEFAULT_RESUME_TTL_MS;
	c->ports.n = 0;
	c->peer_ports.n = 0;
	c->log_dest = LOG_DEST_STDERR;
	c->log_path[0] = '\0';
	c->log_level = LOG_LEVEL_WARN;
}

/*
 * Reads the run of ASCII digits at s (at least one) as a number in
 * [0, max]; *end points past the run. -1 if there is no digit or the
 * number is above max. Leading zeros are skipped before the run is
 * bounded, so "000...01" is 1 however many zeros it has.
 */
static int
parse_digits(const char *s, const char **end, long long max, uint64_t *out)
{
	char buf[DIGITS_MAX + 1];
	const char *errstr;
	long long v;
	size_t n = 0;

	while (s[0] == '0' && s[1] >= '0' && s[1] <= '9')
		s++;
	while (s[n] >= '0' && s[n] <= '9') {
		if (n == DIGITS_MAX)
			return -1;
		buf[n] = s[n];
		n++;
	}
	if (n == 0)
		return -1;
	buf[n] = '\0';
	v = strtonum(buf, 0, max, &errstr);
	if (errstr != NULL)
		return -1;
	*end = s + n;
	*out = (uint64_t)v;
	return 0;
}

static int
lower(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* The multiplier of a size suffix: "", "B", "K", "KB", "KiB", ... */
static int
size_multiplier(const char *s, uint64_t *mult)
{
	switch (lower((unsigned char)*s)) {
	case '\0':
		*mult = 1;
		return 0;
	case 'b':
		*mult = 1;
		return s[1] == '\0' ? 0 : -1;
	case 'k':
		*mult = KIB;
		break;
	case 'm':
		*mult = MIB;
		break;
	case 'g':
		*mult = GIB;
		break;
	case 't':
		*mult = TIB;
		break;
	default:
		return -1;
	}
	s++;
	if (lower((unsigned char)*s) == 'i')
		s++;
	else if (*s == '\0')
		return 0;
	if (lower((unsigned char)*s) != 'b')
		return -1;
	return s[1] == '\0' ? 0 : -1;
}

int
config_parse_size(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v, mult;

	if (parse_digits(s, &end, (long long)CONFIG_SIZE_MAX, &v) == -1)
		return -1;
	if (size_multiplier(end, &mult) == -1)
		return -1;
	if (v > CONFIG_SIZE_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

int
config_parse_duration_ms(const char *s, uint32_t *out)
{
	const char *end;
	uint64_t v, mult;

	if (parse_digits(s, &end, CONFIG_DURATION_MAX_MS, &v) == -1)
		return -1;
	if (strcmp(end, "") == 0 || strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 60 * 60 * 1000;
	else
		return -1;
	if (v > CONFIG_DURATION_MAX_MS / mult)
		return -1;
	*out = (uint32_t)(v * mult);
	return 0;
}

int
config_parse_ports(const char *s, struct port_set *out)
{
	struct port_set ps;
	uint64_t lo, hi;

	ps.n = 0;
	if (*s == '\0') {
		*out = ps;
		return 0;
	}
	for (;;) {
		if (ps.n == CONFIG_PORT_RANGES_MAX)
			return -1;
		if (parse_digits(s, &s, 65535, &lo) == -1 || lo == 0)
			return -1;
		hi = lo;
		if (*s == '-') {
			if (parse_digits(s + 1, &s, 65535, &hi) == -1 ||
			    hi < lo)
				return -1;
		}
		ps.range[ps.n].lo = (uint16_t)lo;
		ps.range[ps.n].hi = (uint16_t)hi;
		ps.n++;
		if (*s == '\0')
			break;
		if (*s != ',')
			return -1;
		s++;
	}
	*out = ps;
	return 0;
}

bool
config_port_match(const struct port_set *ps, uint16_t port)
{
	unsigned i;

	if (ps->n == 0)
		return true;
	for (i = 0; i < ps->n && i < CONFIG_PORT_RANGES_MAX; i++)
		if (port >= ps->range[i].lo && port <= ps->range[i].hi)
			return true;
	return false;
}

/*
 * An absolute path the library may create files under: starts with '/',
 * has no ".." component (so it cannot climb out of where it says), no
 * control byte (which would reach a log line or a terminal), and is
 * shorter than maxlen. Trailing slashes
 * are removed; the root itself is refused. Returns the length kept, or -1.
 */
static long
check_path(const char *s, size_t maxlen)
{
	size_t len, i, start;

	len = strnlen(s, maxlen);
	if (len == maxlen || s[0] != '/')
		return -1;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -1;
	for (start = 1; start <= len; start = i + 1) {
		for (i = start; i < len && s[i] != '/'; i++)
			continue;
		if (i - start == 2 && s[start] == '.' && s[start + 1] == '.')
			return -1;
	}
	while (len > 1 && s[len - 1] == '/')
		len--;
	if (len == 1)
		return -1;
	return (long)len;
}

/*
 * Writes at most QUOTE_MAX bytes of s into dst, encoded as strvis would
 * with VIS_OCTAL|VIS_CSTYLE|VIS_TAB|VIS_NL|VIS_DQ|VIS_NOLOCALE, then "..."
 * if s was longer. dst needs VIS_QUOTE_LEN bytes.
 */
#define VIS_QUOTE_LEN (QUOTE_MAX * 4 + sizeof("..."))

/* The letter of a C-style escape for ch ('\n' gives 'n'), or 0. */
static char
cstyle_letter(unsigned char ch)
{
	switch (ch) {
	case '\n':	return 'n';
	case '\r':	return 'r';
	case '\b':	return 'b';
	case '\a':	return 'a';
	case '\v':	return 'v';
	case '\t':	return 't';
	case '\f':	return 'f';
	default:	return 0;
	}
}

static void
vis_quote(char *dst, const char *s, size_t n)
{
	size_t i;
	unsigned char ch;
	char letter;

	for (i = 0; i < n && i < QUOTE_MAX; i++) {
		ch = (unsigned char)s[i];
		if (ch == '\\' || ch == '"') {
			*dst++ = '\\';
			*dst++ = (char)ch;
		} else if (ch >= 0x20 && ch < 0x7f) {
			*dst++ = (char)ch;
		} else if ((letter = cstyle_letter(ch)) != 0) {
			*dst++ = '\\';
			*dst++ = letter;
		} else {
			*dst++ = '\\';
			*dst++ = (char)('0' + (ch >> 6));
			*dst++ = (char)('0' + ((ch >> 3) & 7));
			*dst++ = (char)('0' + (ch & 7));
		}
	}
	if (n > QUOTE_MAX) {
		memcpy(dst, "...", 3);
		dst += 3;
	}
	*dst = '\0';
}

/* How a value is read; the table below says where it goes. */
enum var_kind {
	V_BOOL, V_DIR, V_SIZE, V_INT, V_DURATION, V_FSYNC, V_OVERFLOW,
	V_PORTS, V_LOG, V_LOG_LEVEL, V_ORPHANS, V_RESUME,
};

struct var {
	const char *name;	/* without the prefix */
	enum var_kind kind;
	uint64_t min, max;	/* for V_SIZE, V_INT, V_DURATION */
	const char *form;	/* what is accepted, for the message */
};

#define SIZE_FORM(range) "expected a size " range \
	", like 512M (suffix K, M, G or T, powers of 1024; optional B or iB)"
#define DURATION_FORM(range) "expected a duration " range \
	", like 250ms, 30s, 5m or 1h (a bare number is ms)"

enum var_id {
	VAR_DISABLE, VAR_DIR, VAR_MAX_STREAM, VAR_MAX, VAR_MIN_FREE,
	VAR_SEGMENT_SIZE, VAR_LEVEL, VAR_FLUSH, VAR_FSYNC, VAR_FSYNC_INTERVAL,
	VAR_LINGER, VAR_OVERFLOW, VAR_BLOCK_TIMEOUT, VAR_PORTS,
	VAR_PEER_PORTS, VAR_LOG, VAR_LOG_LEVEL, VAR_ORPHANS, VAR_ORPHAN_TTL,
	VAR_RESUME, VAR_RESUME_TTL, VAR_COUNT
};

static const struct var vars[VAR_COUNT] = {
	[VAR_DISABLE] = { "DISABLE", V_BOOL, 0, 1, "expected 0 or 1" },
	[VAR_DIR] = { "DIR", V_DIR, 0, 0,
	    "expected an absolute directory path other than /, without .. "
	    "components or control characters, shorter than 3968 bytes" },
	[VAR_MAX_STREAM] = { "MAX_STREAM", V_SIZE, 1, CONFIG_SIZE_MAX,
	    SIZE_FORM("from 1 to 1048576T") },
	[VAR_MAX] = { "MAX", V_SIZE, 1, CONFIG_SIZE_MAX,
	    SIZE_FORM("from 1 to 1048576T") },
	[VAR_MIN_FREE] = { "MIN_FREE", V_SIZE, 0, CONFIG_SIZE_MAX,
	    SIZE_FORM("from 0 to 1048576T") },
	[VAR_SEGMENT_SIZE] = { "SEGMENT_SIZE", V_SIZE, CONFIG_SEGMENT_SIZE_MIN,
	    CONFIG_SEGMENT_SIZE_MAX, SIZE_FORM("from 64K to 1G") },
	[VAR_LEVEL] = { "LEVEL", V_INT, 0, 9,
	    "expected a deflate level, an integer from 0 to 9" },
	[VAR_FLUSH] = { "FLUSH", V_DURATION, 1, CONFIG_DURATION_MAX_MS,
	    DURATION_FORM("from 1ms to 24h") },
	[VAR_FSYNC] = { "FSYNC", V_FSYNC, 0, 0,
	    "expected never, interval or always" },
	[VAR_FSYNC_INTERVAL] = { "FSYNC_INTERVAL", V_DURATION, 1,
	    CONFIG_DURATION_MAX_MS, DURATION_FORM("from 1ms to 24h") },
	[VAR_LINGER] = { "LINGER", V_DURATION, 0, CONFIG_DURATION_MAX_MS,
	    DURATION_FORM("from 0 to 24h") },
	[VAR_OVERFLOW] = { "OVERFLOW", V_OVERFLOW, 0, 0,
	    "expected eagain, block or drop" },
	[VAR_BLOCK_TIMEOUT] = { "BLOCK_TIMEOUT", V_DURATION, 0,
	    CONFIG_DURATION_MAX_MS, DURATION_FORM("from 0 to 24h") },
	[VAR_PORTS] = { "PORTS", V_PORTS, 0, 0,
	    "expected ports or ranges from 1 to 65535, like 80,443,8000-8100 "
	    "(at most 32; empty means every port)" },
	[VAR_PEER_PORTS] = { "PEER_PORTS", V_PORTS, 0, 0,
	    "expected ports or ranges from 1 to 65535, like 80,443,8000-8100 "
	    "(at most 32; empty means every port)" },
	[VAR_LOG] = { "LOG", V_LOG, 0, 0,
	    "expected stderr, syslog or an absolute file path without .. "
	    "components or control characters" },
	[VAR_LOG_LEVEL] = { "LOG_LEVEL", V_LOG_LEVEL, 0, 0,
	    "expected error, warn, info or debug" },
	[VAR_ORPHANS] = { "ORPHANS", V_ORPHANS, 0, 0,
	    "expected expire, keep or discard" },
	[VAR_ORPHAN_TTL] = { "ORPHAN_TTL", V_DURATION, 1,
	    CONFIG_DURATION_MAX_MS, DURATION_FORM("from 1ms to 24h") },
	[VAR_RESUME] = { "RESUME", V_RESUME, 0, 0,
	    "expected off or peer-addr" },
	[VAR_RESUME_TTL] = { "RESUME_TTL", V_DURATION, 1,
	    CONFIG_DURATION_MAX_MS, DURATION_FORM("from 1ms to 24h") },
};

/* Picks s among words[]; the index, or -1. */
static int
keyword(const char *s, const char *const *words, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(s, words[i]) == 0)
			return i;
	return -1;
}

/* Stores value s of variable id into c; -1 if s is not accepted. */
static int
set_var(struct tcpspool_config *c, enum var_id id, const char *s)
{
	static const char *const fsyncs[] = { "never", "interval", "always" };
	static const char *const overflows[] = { "eagain", "block", "drop" };
	static const char *const orphans[] = { "expire", "keep", "discard" };
	static const char *const resumes[] = { "off", "peer-addr" };
	static const char *const levels[] = { "error", "warn", "info",
		"debug" };
	const struct var *v = &vars[id];
	const char *end;
	uint64_t u;
	uint32_t ms;
	long len;
	int k;

	switch (v->kind) {
	case V_BOOL:
		if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
			return -1;
		c->disabled = s[0] == '1';
		return 0;
	case V_DIR:
		len = check_path(s, CONFIG_DIR_LEN_MAX);
		if (len == -1)
			return -1;
		memcpy(c->dir, s, (size_t)len);
		c->dir[len] = '\0';
		c->dir_is_default = false;
		return 0;
	case V_SIZE:
		if (config_parse_size(s, &u) == -1 || u < v->min || u > v->max)
			return -1;
		break;
	case V_INT:
		if (parse_digits(s, &end, (long long)v->max, &u) == -1 ||
		    *end != '\0' || u < v->min)
			return -1;
		break;
	case V_DURATION:
		if (config_parse_duration_ms(s, &ms) == -1 || ms < v->min ||
		    ms > v->max)
			return -1;
		u = ms;
		break;
	case V_FSYNC:
		if ((k = keyword(s, fsyncs, 3)) == -1)
			return -1;
		c->fsync = (enum fsync_policy)k;
		return 0;
	case V_OVERFLOW:
		if ((k = keyword(s, overflows, 3)) == -1)
			return -1;
		c->overflow = (enum overflow_policy)k;
		return 0;
	case V_ORPHANS:
		if ((k = keyword(s, orphans, 3)) == -1)
			return -1;
		c->orphans = (enum orphan_policy)k;
		return 0;
	case V_RESUME:
		if ((k = keyword(s, resumes, 2)) == -1)
			return -1;
		c->resume = (enum resume_mode)k;
		return 0;
	case V_PORTS:
		return config_parse_ports(s, id == VAR_PORTS ? &c->ports :
		    &c->peer_ports);
	case V_LOG:
		if (strcmp(s, "stderr") == 0) {
			c->log_dest = LOG_DEST_STDERR;
			c->log_path[0] = '\0';
			return 0;
		}
		if (strcmp(s, "syslog") == 0) {
			c->log_dest = LOG_DEST_SYSLOG;
			c->log_path[0] = '\0';
			return 0;
		}
		/* A file: a trailing slash would name a directory. */
		len = check_path(s, sizeof(c->log_path));
		if (len == -1 || s[len] != '\0')
			return -1;
		memcpy(c->log_path, s, (size_t)len + 1);
		c->log_dest = LOG_DEST_FILE;
		return 0;
	case V_LOG_LEVEL:
		if ((k = keyword(s, levels, 4)) == -1)
			return -1;
		c->log_level = (enum log_level)k;
		return 0;
	}

	switch (id) {
	case VAR_MAX_STREAM:	c->max_stream = u; break;
	case VAR_MAX:		c->max_total = u; break;
	case VAR_MIN_FREE:	c->min_free = u; break;
	case VAR_SEGMENT_SIZE:	c->segment_size = u; break;
	case VAR_LEVEL:		c->level = (int)u; break;
	case VAR_FLUSH:		c->flush_ms = (uint32_t)u; break;
	case VAR_FSYNC_INTERVAL: c->fsync_interval_ms = (uint32_t)u; break;
	case VAR_LINGER:	c->linger_ms = (uint32_t)u; break;
	case VAR_BLOCK_TIMEOUT:	c->block_timeout_ms = (uint32_t)u; break;
	case VAR_ORPHAN_TTL:	c->orphan_ttl_ms = (uint32_t)u; break;
	case VAR_RESUME_TTL:	c->resume_ttl_ms = (uint32_t)u; break;
	default:		return -1;
	}
	return 0;
}

/* The variable named by the n bytes at name (after the prefix), or -1. */
static int
lookup(const char *name, size_t n)
{
	int i;

	for (i = 0; i < VAR_COUNT; i++)
		if (strlen(vars[i].name) == n &&
		    memcmp(vars[i].name, name, n) == 0)
			return i;
	return -1;
}

static void
report_bad_value(char *err, size_t errlen, enum var_id id, const char *s)
{
	char quoted[VIS_QUOTE_LEN];

	if (err == NULL || errlen == 0)
		return;
	vis_quote(quoted, s, strlen(s));
	snprintf(err, errlen, "%s%s=\"%s\": %s%s", PREFIX, vars[id].name,
	    quoted, *s == '\0' ? "empty value; " : "", vars[id].form);
}

int
config_parse(struct tcpspool_config *c, char *const *envp, char *err,
    size_t errlen, char *warn, size_t warnlen)
{
	const char *first_unknown = NULL, *first_dup = NULL;
	size_t unknown_len = 0, dup_len = 0;
	unsigned unknown = 0, seen = 0;
	char quoted[VIS_QUOTE_LEN];
	const char *e, *eq;
	int saved_errno = errno;
	int id, rc = 0;
	size_t i;

	config_defaults(c);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (warn != NULL && warnlen > 0)
		warn[0] = '\0';

	for (i = 0; envp != NULL && envp[i] != NULL; i++) {
		e = envp[i];
		if (strncmp(e, PREFIX, PREFIX_LEN) != 0)
			continue;
		eq = strchr(e, '=');
		if (eq == NULL)
			continue;	/* not a variable; getenv ignores it too */
		id = lookup(e + PREFIX_LEN, (size_t)(eq - e) - PREFIX_LEN);
		if (id == -1) {
			if (strncmp(e, TEST_PREFIX, sizeof(TEST_PREFIX) - 1)
			    == 0)
				continue;
			if (unknown++ == 0) {
				first_unknown = e;
				unknown_len = (size_t)(eq - e);
			}
			continue;
		}
		/* The first of duplicates wins, as with getenv. */
		if (seen & (1u << id)) {
			if (first_dup == NULL) {
				first_dup = e;
				dup_len = (size_t)(eq - e);
			}
			continue;
		}
		seen |= 1u << id;
		if (set_var(c, (enum var_id)id, eq + 1) == -1) {
			report_bad_value(err, errlen, (enum var_id)id, eq + 1);
			rc = -1;
			break;
		}
	}

	if (warn != NULL && warnlen > 0 && unknown > 0) {
		vis_quote(quoted, first_unknown, unknown_len);
		if (unknown == 1)
			snprintf(warn, warnlen, "unknown variable %s ignored",
			    quoted);
		else
			snprintf(warn, warnlen, "unknown variable %s ignored "
			    "(and %u more)", quoted, unknown - 1);
	} else if (warn != NULL && warnlen > 0 && first_dup != NULL) {
		vis_quote(quoted, first_dup, dup_len);
		snprintf(warn, warnlen, "%s is set more than once; the first "
		    "value is used", quoted);
	}
	errno = saved_errno;
	return rc;
}
