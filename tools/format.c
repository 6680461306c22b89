/*
 * format.c — how figures, times and bytes read from a spool are shown:
 * human-readable for a terminal, escaped for JSON, safe for any byte.
 */
#define LIBBSD_OPENBSD_VIS 1

#include <inttypes.h>
#include <libutil.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vis.h>

#include "cli.h"

int64_t
now_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

const char *
fmt_size(char buf[16], uint64_t n)
{
	if (n > INT64_MAX)
		n = INT64_MAX;
	if (humanize_number(buf, 5, (int64_t)n, "", HN_AUTOSCALE,
	    HN_B | HN_NOSPACE | HN_DECIMAL) == -1)
		strlcpy(buf, "?", 16);
	return buf;
}

const char *
fmt_age(char buf[16], int64_t ts_ns, int64_t now_ns)
{
	int64_t s;

	if (ts_ns == 0) {
		strlcpy(buf, "-", 16);
		return buf;
	}
	/* A hostile or corrupt time (INT64_MIN, far future): no signed
	 * overflow, and an age never below 0. */
	if (__builtin_sub_overflow(now_ns, ts_ns, &s))
		s = ts_ns < 0 ? INT64_MAX : 0;
	s /= 1000000000LL;
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, 16, "%" PRId64 "s", s);
	else if (s < 2 * 3600)
		snprintf(buf, 16, "%" PRId64 "m", s / 60);
	else if (s < 2 * 86400)
		snprintf(buf, 16, "%" PRId64 "h", s / 3600);
	else
		snprintf(buf, 16, "%" PRId64 "d", s / 86400);
	return buf;
}

const char *
fmt_time(char buf[40], int64_t ts_ns)
{
	time_t sec;
	int64_t ns;
	struct tm tm;
	size_t n;

	if (ts_ns == 0) {
		strlcpy(buf, "-", 40);
		return buf;
	}
	sec = (time_t)(ts_ns / 1000000000LL);
	ns = ts_ns % 1000000000LL;
	if (ns < 0) {
		ns += 1000000000LL;
		sec--;
	}
	if (gmtime_r(&sec, &tm) == NULL ||
	    (n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
		snprintf(buf, 40, "@%" PRId64, ts_ns);
		return buf;
	}
	snprintf(buf + n, 40 - n, ".%09" PRId64 "Z", ns);
	return buf;
}

const char *
fmt_ratio(char buf[16], uint64_t raw, uint64_t stored)
{
	if (stored == 0 || raw == 0)
		strlcpy(buf, "-", 16);
	else
		snprintf(buf, 16, "%.1fx", (double)raw / (double)stored);
	return buf;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t
utf8_len(const unsigned char *p, size_t left)
{
	size_t n, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (left < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates, beyond U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

void
json_str(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	putc('"', f);
	while (i < len) {
		unsigned char c = p[i];

		if (c == '"' || c == '\\') {
			fprintf(f, "\\%c", c);
			i++;
		} else if (c == '\n') {
			fputs("\\n", f);
			i++;
		} else if (c == '\t') {
			fputs("\\t", f);
			i++;
		} else if (c == '\r') {
			fputs("\\r", f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else if ((n = utf8_len(p + i, len - i)) == 0) {
			fputs("\\ufffd", f);
			i++;
		} else {
			fwrite(p + i, 1, n, f);
			i += n;
		}
	}
	putc('"', f);
}

void
json_base64(FILE *f, const uint8_t *p, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char out[4];
	size_t i;

	putc('"', f);
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];

		out[0] = tab[v >> 18];
		out[1] = tab[(v >> 12) & 63];
		out[2] = tab[(v >> 6) & 63];
		out[3] = tab[v & 63];
		fwrite(out, 1, 4, f);
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;

		fprintf(f, "%c%c==", tab[v >> 18], tab[(v >> 12) & 63]);
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		fprintf(f, "%c%c%c=", tab[v >> 18], tab[(v >> 12) & 63],
		    tab[(v >> 6) & 63]);
	}
	putc('"', f);
}

#define VIS_FLAGS (VIS_CSTYLE | VIS_OCTAL | VIS_TAB | VIS_NL | VIS_NOLOCALE)

char *
vis_bytes(const uint8_t *p, size_t len)
{
	char *out;

	if (len > (SIZE_MAX - 1) / 4 || (out = malloc(4 * len + 1)) == NULL)
		return NULL;
	strvisx(out, (const char *)p, len, VIS_FLAGS);
	return out;
}

const char *
vis_str(char *buf, size_t len, const char *s)
{
	char tmp[4 * 256 + 1];
	size_t n = strnlen(s, 256);

	strvisx(tmp, s, n, VIS_FLAGS);
	strlcpy(buf, tmp, len);
	return buf;
}
