/*
 * parse.c — numbers and ages given on the command line, strictly: ASCII
 * digits only (no sign, blank, base prefix), overflow refused, nothing
 * after the unit. The TCPSPOOL_ forms (SIZE, DURATION) are parsed by the
 * library's own preload/config.c, compiled in.
 */
#include <ctype.h>
#include <string.h>

#include "cli.h"

/* Reads the leading digits of s into *v; false on none or overflow. */
static bool
digits(const char **s, uint64_t *v)
{
	const char *p = *s;

	*v = 0;
	if (!isdigit((unsigned char)*p))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		if (*v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return false;
		*v = *v * 10 + (uint64_t)(*p - '0');
	}
	*s = p;
	return true;
}

bool
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (!digits(&s, &v) || *s != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

bool
parse_age_ms(const char *s, uint64_t *out)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
	};
	uint64_t v;
	size_t i;

	if (!digits(&s, &v))
		return false;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s, units[i].unit) != 0)
			continue;
		if (v > UINT64_MAX / units[i].ms)
			return false;
		*out = v * units[i].ms;
		return true;
	}
	return false;
}
