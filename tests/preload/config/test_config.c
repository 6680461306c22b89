/*
 * config_parse and the single-value parsers: the documented defaults, every
 * accepted form of every TCPSPOOL_ variable, and every kind of bad value
 * (empty, negative, huge, non-numeric, suffix garbage, out of bounds)
 * refused with one line that names the variable.
 */
#define LIBBSD_OPENBSD_VIS 1
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vis.h>

#include "config.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)

static struct tcpspool_config cfg;
static char err[CONFIG_MSG_MAX], warn[CONFIG_MSG_MAX];

/* config_parse over a one-variable environment "name=value". */
static int
parse1(const char *name, const char *value)
{
	static char entry[8192];
	char *envp[] = { entry, NULL };

	snprintf(entry, sizeof(entry), "%s=%s", name, value);
	return config_parse(&cfg, envp, err, sizeof(err), warn, sizeof(warn));
}

/* A refused value: -1 and one line "NAME=\"...\": ...". */
static void
assert_refused(const char *name, const char *value)
{
	char head[64];
	int rc;

	rc = parse1(name, value);
	cr_assert_eq(rc, -1, "%s=\"%s\" was accepted", name, value);
	snprintf(head, sizeof(head), "%s=\"", name);
	cr_assert(strncmp(err, head, strlen(head)) == 0,
	    "%s=\"%s\": message does not name the variable: %s", name, value,
	    err);
	cr_assert(strstr(err, "\": expected ") != NULL ||
	    strstr(err, "\": empty value; expected ") != NULL,
	    "%s=\"%s\": message does not say what is expected: %s", name,
	    value, err);
	cr_assert(strchr(err, '\n') == NULL, "message is not one line: %s",
	    err);
	cr_assert(strlen(err) < sizeof(err) - 1, "message was cut: %s", err);
}

static void
assert_accepted(const char *name, const char *value)
{
	cr_assert_eq(parse1(name, value), 0, "%s=\"%s\" refused: %s", name,
	    value, err);
	cr_assert_str_empty(err);
}

static const char *const all_vars[] = {
	"TCPSPOOL_DISABLE", "TCPSPOOL_DIR", "TCPSPOOL_MAX_STREAM",
	"TCPSPOOL_MAX", "TCPSPOOL_MIN_FREE", "TCPSPOOL_SEGMENT_SIZE",
	"TCPSPOOL_LEVEL", "TCPSPOOL_FLUSH", "TCPSPOOL_FSYNC",
	"TCPSPOOL_FSYNC_INTERVAL", "TCPSPOOL_LINGER", "TCPSPOOL_OVERFLOW",
	"TCPSPOOL_BLOCK_TIMEOUT", "TCPSPOOL_PORTS", "TCPSPOOL_PEER_PORTS",
	"TCPSPOOL_LOG", "TCPSPOOL_LOG_LEVEL", "TCPSPOOL_ORPHANS",
	"TCPSPOOL_ORPHAN_TTL", "TCPSPOOL_RESUME", "TCPSPOOL_RESUME_TTL",
};
#define NVARS (sizeof(all_vars) / sizeof(all_vars[0]))

/* Bad for every variable (ports and paths included). */
static const char *const bad_everywhere[] = {
	"-1", "-0", "+1", "18446744073709551616", "18446744073709551617",
	"340282366920938463463374607431768211456",
	"99999999999999999999999999999999999999999999", "abc", "one",
	"10MBx", "5 s", "1e3", " 12", "12 ", "\t12", "12\n", "0x10", "1.5",
	"1,5,", ",", "NaN", "inf", "\x01", "\xff\xfe", "1\x1b[31m",
	"-", "--1", "1-", "-80",
};

/* Bad for every numeric variable (sizes, durations, level, disable). */
static const char *const bad_numbers[] = {
	"80,443", "1-2", "/tmp", "stderr", "1K1", "1KK", "1KBB", "1KiBB",
	"1kb ", "1 K", "K", "KiB", "1iB", "1Ki", "1Q", "1P", "1E", "12Q",
	"1S", "1MS", "1 ms", "ms", "s", "1sec", "1min", "1d", "1ms1",
	"1.0", "1/2", "(1)", "0b1", "0o7", "1_000", "1'000", "１",
};

Test(config, defaults_are_the_documented_ones)
{
	char dir[64];

	config_defaults(&cfg);
	snprintf(dir, sizeof(dir), "/var/tmp/tcpspool-%u", (unsigned)getuid());
	cr_assert(!cfg.disabled);
	cr_assert_str_eq(cfg.dir, dir);
	cr_assert_eq(cfg.max_stream, 1 * GIB);
	cr_assert_eq(cfg.max_total, 8 * GIB);
	cr_assert_eq(cfg.min_free, 1 * GIB);
	cr_assert_eq(cfg.segment_size, 64 * MIB);
	cr_assert_eq(cfg.level, 1);
	cr_assert_eq(cfg.flush_ms, 100);
	cr_assert_eq(cfg.fsync, FSYNC_INTERVAL);
	cr_assert_eq(cfg.fsync_interval_ms, 1000);
	cr_assert_eq(cfg.linger_ms, 30000);
	cr_assert_eq(cfg.overflow, OVERFLOW_EAGAIN);
	cr_assert_eq(cfg.block_timeout_ms, 5000);
	cr_assert_eq(cfg.orphans, ORPHANS_EXPIRE);
	cr_assert_eq(cfg.orphan_ttl_ms, 600000);
	cr_assert_eq(cfg.ports.n, 0);
	cr_assert_eq(cfg.peer_ports.n, 0);
	cr_assert_eq(cfg.log_dest, LOG_DEST_STDERR);
	cr_assert_str_empty(cfg.log_path);
	cr_assert_eq(cfg.log_level, LOG_LEVEL_WARN);
}

Test(config, empty_environment_gives_defaults)
{
	struct tcpspool_config def;
	char *envp[] = { "PATH=/bin", "HOME=/root", "TCPSPOOL", "TCPSPOOLX=1",
		"tcpspool_dir=relative", NULL };
	char *none[] = { NULL };

	config_defaults(&def);
	memset(&cfg, 0xa5, sizeof(cfg));
	cr_assert_eq(config_parse(&cfg, envp, err, sizeof(err), warn,
	    sizeof(warn)), 0);
	cr_assert(memcmp(&cfg, &def, sizeof(def)) == 0);
	cr_assert_str_empty(err);
	cr_assert_str_empty(warn);
	cr_assert_eq(config_parse(&cfg, none, err, sizeof(err), NULL, 0), 0);
	cr_assert_eq(config_parse(&cfg, NULL, NULL, 0, NULL, 0), 0);
	cr_assert(memcmp(&cfg, &def, sizeof(def)) == 0);
}

Test(config, parse_applies_every_variable)
{
	char *envp[] = {
		"TCPSPOOL_DISABLE=1", "TCPSPOOL_DIR=/srv/spool/",
		"TCPSPOOL_MAX_STREAM=2G", "TCPSPOOL_MAX=16GiB",
		"TCPSPOOL_MIN_FREE=0", "TCPSPOOL_SEGMENT_SIZE=128MB",
		"TCPSPOOL_LEVEL=9", "TCPSPOOL_FLUSH=250",
		"TCPSPOOL_FSYNC=always", "TCPSPOOL_FSYNC_INTERVAL=2s",
		"TCPSPOOL_LINGER=0", "TCPSPOOL_OVERFLOW=block",
		"TCPSPOOL_BLOCK_TIMEOUT=1m", "TCPSPOOL_PORTS=80,443,8000-8100",
		"TCPSPOOL_PEER_PORTS=", "TCPSPOOL_LOG=/var/log/tcpspool.log",
		"TCPSPOOL_LOG_LEVEL=debug", NULL
	};

	cr_assert_eq(config_parse(&cfg, envp, err, sizeof(err), warn,
	    sizeof(warn)), 0, "%s", err);
	cr_assert(cfg.disabled);
	cr_assert_str_eq(cfg.dir, "/srv/spool");
	cr_assert_eq(cfg.max_stream, 2 * GIB);
	cr_assert_eq(cfg.max_total, 16 * GIB);
	cr_assert_eq(cfg.min_free, 0);
	cr_assert_eq(cfg.segment_size, 128 * MIB);
	cr_assert_eq(cfg.level, 9);
	cr_assert_eq(cfg.flush_ms, 250);
	cr_assert_eq(cfg.fsync, FSYNC_ALWAYS);
	cr_assert_eq(cfg.fsync_interval_ms, 2000);
	cr_assert_eq(cfg.linger_ms, 0);
	cr_assert_eq(cfg.overflow, OVERFLOW_BLOCK);
	cr_assert_eq(cfg.block_timeout_ms, 60000);
	cr_assert_eq(cfg.ports.n, 3);
	cr_assert_eq(cfg.ports.range[2].lo, 8000);
	cr_assert_eq(cfg.ports.range[2].hi, 8100);
	cr_assert_eq(cfg.peer_ports.n, 0);
	cr_assert_eq(cfg.log_dest, LOG_DEST_FILE);
	cr_assert_str_eq(cfg.log_path, "/var/log/tcpspool.log");
	cr_assert_eq(cfg.log_level, LOG_LEVEL_DEBUG);
	cr_assert_str_empty(warn);
}

Test(config, size_accepts_every_suffix_in_any_case)
{
	static const struct { const char *s; uint64_t v; } ok[] = {
		{ "0", 0 }, { "1", 1 }, { "007", 7 }, { "512", 512 },
		{ "1b", 1 }, { "1B", 1 },
		{ "1k", KIB }, { "1K", KIB }, { "1kb", KIB }, { "1KB", KIB },
		{ "1Kb", KIB }, { "1kB", KIB }, { "1kib", KIB }, { "1KiB", KIB },
		{ "1KIB", KIB }, { "1kIb", KIB },
		{ "3m", 3 * MIB }, { "3M", 3 * MIB }, { "3MB", 3 * MIB },
		{ "3MiB", 3 * MIB }, { "3mib", 3 * MIB },
		{ "5g", 5 * GIB }, { "5G", 5 * GIB }, { "5GB", 5 * GIB },
		{ "5GiB", 5 * GIB }, { "7t", 7 * TIB }, { "7T", 7 * TIB },
		{ "7TB", 7 * TIB }, { "7TiB", 7 * TIB },
		{ "1048576T", UINT64_C(1) << 60 },
		{ "1073741824G", UINT64_C(1) << 60 },
		{ "1152921504606846976", UINT64_C(1) << 60 },
	};
	static const char *const bad[] = {
		"", "1048577T", "1073741825G", "1152921504606846977",
		"18014398509481984K", "9223372036854775807",
		"9223372036854775808", "18446744073709551615",
		"18446744073709551616", "-1", "-1K", "+1K", "1.5G", "1e3",
		"0x10", "10MBx", "1KiBx", "1iB", "1KI", "1Kii", "1KBi", "1 K",
		" 1K", "1K ", "K", "B", "1BB", "1P", "1E", "1Z",
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 12345;
		cr_assert_eq(config_parse_size(ok[i].s, &v), 0, "\"%s\"",
		    ok[i].s);
		cr_assert_eq(v, ok[i].v, "\"%s\" gave %llu", ok[i].s,
		    (unsigned long long)v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		cr_assert_eq(config_parse_size(bad[i], &v), -1, "\"%s\"",
		    bad[i]);
		cr_assert_eq(v, 12345, "\"%s\" touched the output", bad[i]);
	}
}

Test(config, duration_accepts_every_unit)
{
	static const struct { const char *s; uint32_t ms; } ok[] = {
		{ "0", 0 }, { "0ms", 0 }, { "0s", 0 }, { "0h", 0 },
		{ "1", 1 }, { "1ms", 1 }, { "1s", 1000 }, { "1m", 60000 },
		{ "1h", 3600000 }, { "250ms", 250 }, { "30s", 30000 },
		{ "86400000", 86400000 }, { "86400000ms", 86400000 },
		{ "86400s", 86400000 }, { "1440m", 86400000 },
		{ "24h", 86400000 }, { "0024h", 86400000 },
	};
	static const char *const bad[] = {
		"", "86400001", "86400001ms", "86401s", "1441m", "25h",
		"4294967296", "4294967296ms", "18446744073709551616s",
		"-1", "-1s", "+1s", "1.5s", "1e3", "0x10", "1S", "1M", "1H",
		"1MS", "1Ms", "1 s", " 1s", "1s ", "s", "ms", "1sec", "1min",
		"1d", "1us", "1ns", "1ms1", "1sm", "1hh", "1mss",
	};
	uint32_t ms;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = 777;
		cr_assert_eq(config_parse_duration_ms(ok[i].s, &ms), 0,
		    "\"%s\"", ok[i].s);
		cr_assert_eq(ms, ok[i].ms, "\"%s\" gave %u", ok[i].s, ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 777;
		cr_assert_eq(config_parse_duration_ms(bad[i], &ms), -1,
		    "\"%s\"", bad[i]);
		cr_assert_eq(ms, 777, "\"%s\" touched the output", bad[i]);
	}
}

Test(config, ports_parse_lists_and_ranges)
{
	struct port_set ps;
	char list[512];
	size_t len = 0;
	int i;

	cr_assert_eq(config_parse_ports("", &ps), 0);
	cr_assert_eq(ps.n, 0);
	cr_assert_eq(config_parse_ports("80", &ps), 0);
	cr_assert_eq(ps.n, 1);
	cr_assert_eq(ps.range[0].lo, 80);
	cr_assert_eq(ps.range[0].hi, 80);
	cr_assert_eq(config_parse_ports("1-65535", &ps), 0);
	cr_assert_eq(ps.n, 1);
	cr_assert_eq(ps.range[0].lo, 1);
	cr_assert_eq(ps.range[0].hi, 65535);
	cr_assert_eq(config_parse_ports("80,443,8000-8100,9000-9000,00022",
	    &ps), 0);
	cr_assert_eq(ps.n, 5);
	cr_assert_eq(ps.range[1].lo, 443);
	cr_assert_eq(ps.range[2].lo, 8000);
	cr_assert_eq(ps.range[2].hi, 8100);
	cr_assert_eq(ps.range[3].lo, 9000);
	cr_assert_eq(ps.range[3].hi, 9000);
	cr_assert_eq(ps.range[4].lo, 22);

	/* Exactly CONFIG_PORT_RANGES_MAX entries fit, one more does not. */
	for (i = 0; i < CONFIG_PORT_RANGES_MAX; i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%d",
		    i ? "," : "", 1000 + i);
	cr_assert_eq(config_parse_ports(list, &ps), 0);
	cr_assert_eq(ps.n, CONFIG_PORT_RANGES_MAX);
	snprintf(list + len, sizeof(list) - len, ",2000");
	ps.n = 99;
	cr_assert_eq(config_parse_ports(list, &ps), -1);
	cr_assert_eq(ps.n, 99, "a refused list touched the output");
}

Test(config, ports_refuse_malformed_lists)
{
	static const char *const bad[] = {
		"0", "65536", "99999", "0-80", "80-65536", "100-99", "80-",
		"-80", "80--90", "80-90-100", ",", "80,", ",80", "80,,443",
		" 80", "80 ", "80, 443", "80;443", "80:443", "80 443", "a",
		"80a", "0x50", "+80", "-1", "1e2", "80.0", "*", "all",
		"18446744073709551696", "80-18446744073709551616",
	};
	struct port_set ps;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(config_parse_ports(bad[i], &ps), -1, "\"%s\"",
		    bad[i]);
}

Test(config, port_match_edges)
{
	struct port_set ps;

	cr_assert_eq(config_parse_ports("", &ps), 0);
	cr_assert(config_port_match(&ps, 0));
	cr_assert(config_port_match(&ps, 1));
	cr_assert(config_port_match(&ps, 65535));

	cr_assert_eq(config_parse_ports("1,443,8000-8100,65535", &ps), 0);
	cr_assert(config_port_match(&ps, 1));
	cr_assert(!config_port_match(&ps, 0));
	cr_assert(!config_port_match(&ps, 2));
	cr_assert(!config_port_match(&ps, 442));
	cr_assert(config_port_match(&ps, 443));
	cr_assert(!config_port_match(&ps, 444));
	cr_assert(!config_port_match(&ps, 7999));
	cr_assert(config_port_match(&ps, 8000));
	cr_assert(config_port_match(&ps, 8050));
	cr_assert(config_port_match(&ps, 8100));
	cr_assert(!config_port_match(&ps, 8101));
	cr_assert(!config_port_match(&ps, 65534));
	cr_assert(config_port_match(&ps, 65535));
}

Test(config, every_variable_accepts_its_valid_forms)
{
	static const struct { const char *name, *value; } ok[] = {
		{ "TCPSPOOL_DISABLE", "0" }, { "TCPSPOOL_DISABLE", "1" },
		{ "TCPSPOOL_DIR", "/var/tmp/x" }, { "TCPSPOOL_DIR", "/a/./b" },
		{ "TCPSPOOL_DIR", "/a/..b/c.." }, { "TCPSPOOL_DIR", "/a..//b/" },
		{ "TCPSPOOL_DIR", "/tmp/spaces are fine" },
		{ "TCPSPOOL_MAX_STREAM", "1" },
		{ "TCPSPOOL_MAX_STREAM", "1048576T" },
		{ "TCPSPOOL_MAX", "8G" }, { "TCPSPOOL_MAX", "1" },
		{ "TCPSPOOL_MIN_FREE", "0" }, { "TCPSPOOL_MIN_FREE", "500MiB" },
		{ "TCPSPOOL_SEGMENT_SIZE", "64K" },
		{ "TCPSPOOL_SEGMENT_SIZE", "65536" },
		{ "TCPSPOOL_SEGMENT_SIZE", "1G" },
		{ "TCPSPOOL_SEGMENT_SIZE", "1024MiB" },
		{ "TCPSPOOL_LEVEL", "0" }, { "TCPSPOOL_LEVEL", "9" },
		{ "TCPSPOOL_LEVEL", "05" },
		{ "TCPSPOOL_FLUSH", "1" }, { "TCPSPOOL_FLUSH", "24h" },
		{ "TCPSPOOL_FSYNC", "never" }, { "TCPSPOOL_FSYNC", "interval" },
		{ "TCPSPOOL_FSYNC", "always" },
		{ "TCPSPOOL_FSYNC_INTERVAL", "1ms" },
		{ "TCPSPOOL_FSYNC_INTERVAL", "24h" },
		{ "TCPSPOOL_LINGER", "0" }, { "TCPSPOOL_LINGER", "0s" },
		{ "TCPSPOOL_LINGER", "1440m" },
		{ "TCPSPOOL_OVERFLOW", "eagain" },
		{ "TCPSPOOL_OVERFLOW", "block" },
		{ "TCPSPOOL_OVERFLOW", "drop" },
		{ "TCPSPOOL_ORPHANS", "expire" }, { "TCPSPOOL_ORPHANS", "keep" },
		{ "TCPSPOOL_ORPHANS", "discard" },
		{ "TCPSPOOL_ORPHAN_TTL", "1ms" }, { "TCPSPOOL_ORPHAN_TTL", "24h" },
		{ "TCPSPOOL_BLOCK_TIMEOUT", "0" },
		{ "TCPSPOOL_BLOCK_TIMEOUT", "86400s" },
		{ "TCPSPOOL_PORTS", "" }, { "TCPSPOOL_PORTS", "1-65535" },
		{ "TCPSPOOL_PEER_PORTS", "" }, { "TCPSPOOL_PEER_PORTS", "22" },
		{ "TCPSPOOL_LOG", "stderr" }, { "TCPSPOOL_LOG", "syslog" },
		{ "TCPSPOOL_LOG", "/var/log/tcpspool.log" },
		{ "TCPSPOOL_LOG_LEVEL", "error" },
		{ "TCPSPOOL_LOG_LEVEL", "warn" },
		{ "TCPSPOOL_LOG_LEVEL", "info" },
		{ "TCPSPOOL_LOG_LEVEL", "debug" },
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_accepted(ok[i].name, ok[i].value);
}

Test(config, every_variable_refuses_garbage)
{
	size_t i, j;

	for (i = 0; i < NVARS; i++)
		for (j = 0; j < sizeof(bad_everywhere) /
		    sizeof(bad_everywhere[0]); j++)
			assert_refused(all_vars[i], bad_everywhere[j]);
}

Test(config, numeric_variables_refuse_suffix_garbage)
{
	static const char *const numeric[] = {
		"TCPSPOOL_DISABLE", "TCPSPOOL_MAX_STREAM", "TCPSPOOL_MAX",
		"TCPSPOOL_MIN_FREE", "TCPSPOOL_SEGMENT_SIZE", "TCPSPOOL_LEVEL",
		"TCPSPOOL_FLUSH", "TCPSPOOL_FSYNC_INTERVAL", "TCPSPOOL_LINGER",
		"TCPSPOOL_BLOCK_TIMEOUT",
	};
	size_t i, j;

	for (i = 0; i < sizeof(numeric) / sizeof(numeric[0]); i++)
		for (j = 0; j < sizeof(bad_numbers) / sizeof(bad_numbers[0]);
		    j++)
			assert_refused(numeric[i], bad_numbers[j]);
}

Test(config, empty_value_is_an_error_except_for_port_lists)
{
	size_t i;

	for (i = 0; i < NVARS; i++) {
		if (strstr(all_vars[i], "PORTS") != NULL) {
			assert_accepted(all_vars[i], "");
			cr_assert_eq(cfg.ports.n, 0);
			cr_assert_eq(cfg.peer_ports.n, 0);
			continue;
		}
		assert_refused(all_vars[i], "");
		cr_assert(strstr(err, "empty value") != NULL, "%s", err);
	}
}

Test(config, values_out_of_bounds_are_refused)
{
	static const struct { const char *name, *value; } bad[] = {
		{ "TCPSPOOL_DISABLE", "2" }, { "TCPSPOOL_DISABLE", "00" },
		{ "TCPSPOOL_DISABLE", "yes" }, { "TCPSPOOL_DISABLE", "true" },
		{ "TCPSPOOL_MAX_STREAM", "0" }, { "TCPSPOOL_MAX", "0K" },
		{ "TCPSPOOL_MAX_STREAM", "1048577T" },
		{ "TCPSPOOL_MAX", "1152921504606846977" },
		{ "TCPSPOOL_MIN_FREE", "2097152T" },
		{ "TCPSPOOL_SEGMENT_SIZE", "0" },
		{ "TCPSPOOL_SEGMENT_SIZE", "65535" },
		{ "TCPSPOOL_SEGMENT_SIZE", "63K" },
		{ "TCPSPOOL_SEGMENT_SIZE", "1073741825" },
		{ "TCPSPOOL_SEGMENT_SIZE", "2G" },
		{ "TCPSPOOL_LEVEL", "10" }, { "TCPSPOOL_LEVEL", "-1" },
		{ "TCPSPOOL_LEVEL", "99999999999999999999" },
		{ "TCPSPOOL_FLUSH", "0" }, { "TCPSPOOL_FLUSH", "25h" },
		{ "TCPSPOOL_FSYNC_INTERVAL", "0ms" },
		{ "TCPSPOOL_FSYNC_INTERVAL", "86400001" },
		{ "TCPSPOOL_LINGER", "24h1" }, { "TCPSPOOL_LINGER", "1441m" },
		{ "TCPSPOOL_BLOCK_TIMEOUT", "86401s" },
		{ "TCPSPOOL_FSYNC", "Always" }, { "TCPSPOOL_FSYNC", "sometimes" },
		{ "TCPSPOOL_FSYNC", "1" },
		{ "TCPSPOOL_OVERFLOW", "EAGAIN" }, { "TCPSPOOL_OVERFLOW", "wait" },
		{ "TCPSPOOL_ORPHANS", "Keep" }, { "TCPSPOOL_ORPHANS", "remove" },
		{ "TCPSPOOL_ORPHANS", "" }, { "TCPSPOOL_ORPHAN_TTL", "0" },
		{ "TCPSPOOL_ORPHAN_TTL", "25h" }, { "TCPSPOOL_ORPHAN_TTL", "7d" },
		{ "TCPSPOOL_LOG_LEVEL", "warning" },
		{ "TCPSPOOL_LOG_LEVEL", "DEBUG" }, { "TCPSPOOL_LOG_LEVEL", "3" },
		{ "TCPSPOOL_LOG", "STDERR" }, { "TCPSPOOL_LOG", "stdout" },
		{ "TCPSPOOL_LOG", "1" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused(bad[i].name, bad[i].value);
}

Test(config, hostile_paths_are_refused)
{
	static const char *const bad[] = {
		"/", "//", "///", "relative", "./x", "../x", "~/x", "/..",
		"/../tmp", "/tmp/..", "/tmp/../etc", "/tmp/../../", "/a/b/..//",
		"/tmp/x\n", "/tmp/\x1b[2J", "/tmp/\x7f", "/tmp/\tx",
	};
	static const char *const bad_log[] = {
		"/tmp/dir/", "/", "relative.log", "/var/log/../../etc/passwd",
		"/tmp/\r", "-", "syslog:", "stderr ",
	};
	static char longpath[PATH_MAX + 16];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_refused("TCPSPOOL_DIR", bad[i]);
		assert_refused("TCPSPOOL_LOG", bad[i]);
	}
	for (i = 0; i < sizeof(bad_log) / sizeof(bad_log[0]); i++)
		assert_refused("TCPSPOOL_LOG", bad_log[i]);

	/* Length: a dir leaves room for file names under it. */
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[CONFIG_DIR_LEN_MAX - 1] = '\0';
	assert_accepted("TCPSPOOL_DIR", longpath);
	cr_assert_eq(strlen(cfg.dir), CONFIG_DIR_LEN_MAX - 1);
	longpath[CONFIG_DIR_LEN_MAX - 1] = 'a';
	longpath[CONFIG_DIR_LEN_MAX] = '\0';
	assert_refused("TCPSPOOL_DIR", longpath);
	longpath[CONFIG_DIR_LEN_MAX] = 'a';
	longpath[PATH_MAX - 1] = '\0';
	assert_accepted("TCPSPOOL_LOG", longpath);
	longpath[PATH_MAX - 1] = 'a';
	longpath[PATH_MAX] = '\0';
	assert_refused("TCPSPOOL_LOG", longpath);
	longpath[PATH_MAX] = 'a';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_refused("TCPSPOOL_DIR", longpath);
	assert_refused("TCPSPOOL_LOG", longpath);
}

Test(config, dir_loses_trailing_slashes)
{
	assert_accepted("TCPSPOOL_DIR", "/srv/spool///");
	cr_assert_str_eq(cfg.dir, "/srv/spool");
	assert_accepted("TCPSPOOL_DIR", "/x/");
	cr_assert_str_eq(cfg.dir, "/x");
}

Test(config, message_names_variable_value_and_form)
{
	cr_assert_eq(parse1("TCPSPOOL_MAX_STREAM", "12Q"), -1);
	cr_assert_str_eq(err, "TCPSPOOL_MAX_STREAM=\"12Q\": expected a size "
	    "from 1 to 1048576T, like 512M (suffix K, M, G or T, powers of "
	    "1024; optional B or iB)");
	cr_assert_eq(parse1("TCPSPOOL_LEVEL", ""), -1);
	cr_assert_str_eq(err, "TCPSPOOL_LEVEL=\"\": empty value; expected a "
	    "deflate level, an integer from 0 to 9");
	cr_assert_eq(parse1("TCPSPOOL_FSYNC", "sometimes"), -1);
	cr_assert_str_eq(err, "TCPSPOOL_FSYNC=\"sometimes\": expected never, "
	    "interval or always");
	cr_assert_eq(parse1("TCPSPOOL_LINGER", "5 s"), -1);
	cr_assert_str_eq(err, "TCPSPOOL_LINGER=\"5 s\": expected a duration "
	    "from 0 to 24h, like 250ms, 30s, 5m or 1h (a bare number is ms)");
}

/* Our encoder must agree with libbsd's strvis for every byte. */
Test(config, message_value_is_strvis_encoded_and_cut)
{
	char value[2], want[8], expect[64];
	char longv[200];
	int ch;

	for (ch = 1; ch < 256; ch++) {
		value[0] = (char)ch;
		value[1] = '\0';
		strvis(want, value, VIS_OCTAL | VIS_CSTYLE | VIS_TAB | VIS_NL |
		    VIS_DQ | VIS_NOLOCALE);
		cr_assert_eq(parse1("TCPSPOOL_FSYNC", value), -1);
		snprintf(expect, sizeof(expect), "TCPSPOOL_FSYNC=\"%s\": ",
		    want);
		cr_assert(strncmp(err, expect, strlen(expect)) == 0,
		    "byte %#x: got %s, strvis gives %s", ch, err, want);
	}

	/* 64 bytes are quoted, the rest is "...". */
	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	cr_assert_eq(parse1("TCPSPOOL_LEVEL", longv), -1);
	cr_assert(strncmp(err, "TCPSPOOL_LEVEL=\"", 16) == 0);
	cr_assert(strncmp(err + 16 + 64, "...\": ", 6) == 0, "%s", err);

	/* Worst case: 64 bytes of 4-byte escapes still fit one message. */
	memset(longv, '\x80', sizeof(longv) - 1);
	cr_assert_eq(parse1("TCPSPOOL_PEER_PORTS", longv), -1);
	cr_assert(strstr(err, "\\200...\": expected ports") != NULL, "%s",
	    err);
}

Test(config, unknown_variable_warns_without_failing)
{
	char *one[] = { "TCPSPOOL_MAX_STREM=1G", "TCPSPOOL_LEVEL=3", NULL };
	char *three[] = { "TCPSPOOL_A=1", "TCPSPOOL_B=", "TCPSPOOL_=x", NULL };
	char *hostile[] = { "TCPSPOOL_\x1b[2J=1", NULL };
	char *test_only[] = { "TCPSPOOL_TEST_LIB=/x", NULL };

	cr_assert_eq(config_parse(&cfg, one, err, sizeof(err), warn,
	    sizeof(warn)), 0);
	cr_assert_eq(cfg.level, 3);
	cr_assert_str_eq(warn, "unknown variable TCPSPOOL_MAX_STREM ignored");
	cr_assert_eq(config_parse(&cfg, three, err, sizeof(err), warn,
	    sizeof(warn)), 0);
	cr_assert_str_eq(warn,
	    "unknown variable TCPSPOOL_A ignored (and 2 more)");
	cr_assert_eq(config_parse(&cfg, hostile, err, sizeof(err), warn,
	    sizeof(warn)), 0);
	cr_assert_str_eq(warn, "unknown variable TCPSPOOL_\\033[2J ignored");
	cr_assert_eq(config_parse(&cfg, test_only, err, sizeof(err), warn,
	    sizeof(warn)), 0);
	cr_assert_str_empty(warn);
	/* No warn buffer: still no failure. */
	cr_assert_eq(config_parse(&cfg, one, err, sizeof(err), NULL, 0), 0);
}

Test(config, first_of_duplicate_variables_wins)
{
	char *envp[] = { "TCPSPOOL_LEVEL=4", "TCPSPOOL_LEVEL=junk",
		"TCPSPOOL_LEVEL=6", NULL };

	cr_assert_eq(config_parse(&cfg, envp, err, sizeof(err), warn,
	    sizeof(warn)), 0, "%s", err);
	cr_assert_eq(cfg.level, 4);
	cr_assert_str_eq(warn, "TCPSPOOL_LEVEL is set more than once; the "
	    "first value is used");
}

Test(config, first_bad_value_stops_the_parse)
{
	char *envp[] = { "TCPSPOOL_LEVEL=12", "TCPSPOOL_MAX=x", NULL };

	cr_assert_eq(config_parse(&cfg, envp, err, sizeof(err), warn,
	    sizeof(warn)), -1);
	cr_assert(strncmp(err, "TCPSPOOL_LEVEL=\"12\"", 19) == 0, "%s", err);
}

Test(config, parse_preserves_errno_and_small_buffers)
{
	char small[16], tiny[1];
	char *envp[] = { "TCPSPOOL_FOO=1", "TCPSPOOL_LEVEL=x", NULL };

	errno = EXDEV;
	cr_assert_eq(config_parse(&cfg, envp, small, sizeof(small), tiny,
	    sizeof(tiny)), -1);
	cr_assert_str_empty(tiny);
	cr_assert_eq(errno, EXDEV);
	cr_assert_str_eq(small, "TCPSPOOL_LEVEL=");
	errno = ENOSPC;
	cr_assert_eq(config_parse(&cfg, envp, NULL, 0, NULL, 0), -1);
	cr_assert_eq(errno, ENOSPC);
}

Test(config, leading_zeros_do_not_count_against_the_bound)
{
	uint64_t v;
	uint32_t ms;
	struct port_set ps;

	cr_assert_eq(config_parse_size("0000000000000000000000000000001K", &v),
	    0);
	cr_assert_eq(v, KIB);
	cr_assert_eq(config_parse_size("00000000000000000000000000000000", &v),
	    0);
	cr_assert_eq(v, 0);
	cr_assert_eq(config_parse_duration_ms(
	    "000000000000000000000000000000000000024h", &ms), 0);
	cr_assert_eq(ms, 86400000);
	cr_assert_eq(config_parse_ports("0000000000000000000000000000080", &ps),
	    0);
	cr_assert_eq(ps.range[0].lo, 80);
	cr_assert_eq(config_parse_size("1000000000000000000000000", &v), -1);
}
