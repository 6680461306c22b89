/*
 * tools/format.c by itself: how ages, sizes and ratios are shown, for any
 * value a spool file can hold (a hostile or corrupt time included: no
 * overflow, never a negative age).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "cli.h"

#define S 1000000000LL

Test(format, ages_in_the_largest_unit_that_keeps_two_digits)
{
	char b[16];
	int64_t now = 1700000000LL * S;

	cr_assert_str_eq(fmt_age(b, now - 5 * S, now), "5s");
	cr_assert_str_eq(fmt_age(b, now - 119 * S, now), "119s");
	cr_assert_str_eq(fmt_age(b, now - 120 * S, now), "2m");
	cr_assert_str_eq(fmt_age(b, now - 7199 * S, now), "119m");
	cr_assert_str_eq(fmt_age(b, now - 7200 * S, now), "2h");
	cr_assert_str_eq(fmt_age(b, now - 2 * 86400 * S, now), "2d");
	cr_assert_str_eq(fmt_age(b, 0, now), "-", "0 is no time");
	/* The time left of an orphan: fmt_age(now, expiry). */
	cr_assert_str_eq(fmt_age(b, now, now + 600 * S), "10m");
}

Test(format, ages_of_hostile_times_never_overflow_or_go_negative)
{
	char b[16];
	int64_t now = 1700000000LL * S;

	cr_assert_str_eq(fmt_age(b, now + 3600 * S, now), "0s",
	    "a time in the future is 0 old");
	cr_assert_str_eq(fmt_age(b, INT64_MAX, now), "0s");
	cr_assert_eq(fmt_age(b, INT64_MIN, now)[0] != '-', true, "%s", b);
	cr_assert(strchr(fmt_age(b, INT64_MIN, now), 'd') != NULL, "%s", b);
	cr_assert(strchr(fmt_age(b, 1, INT64_MAX), 'd') != NULL, "%s", b);
	cr_assert_str_eq(fmt_age(b, INT64_MIN, INT64_MIN), "0s");
}

Test(format, sizes_and_ratios)
{
	char b[16];

	cr_assert_str_eq(fmt_size(b, 0), "0B");
	cr_assert_str_eq(fmt_size(b, 1536), "1.5K");
	cr_assert_str_eq(fmt_size(b, UINT64_MAX), fmt_size(b, INT64_MAX));
	cr_assert_str_eq(fmt_ratio(b, 100, 10), "10.0x");
}
