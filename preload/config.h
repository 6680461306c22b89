/*
 * config.h — the TCPSPOOL_ environment variables, parsed strictly.
 *
 * Parsed once, on the first hooked call that needs it (never in a
 * constructor). An invalid value makes config_parse fail with one message
 * naming the variable, the value (made safe with strvis) and the accepted
 * form; the caller then logs it once and passes everything through for the
 * whole process. Parsing allocates nothing and prints nothing.
 *
 * Variables (defaults in config_defaults; forms: SIZE = integer with an
 * optional K, M, G, T suffix (powers of 1024, optional 'iB' or 'B'),
 * DURATION = integer with ms, s, m or h (a bare integer is ms)):
 *   TCPSPOOL_DISABLE       0|1                  pass everything through
 *   TCPSPOOL_DIR           absolute path        spool dir
 *   TCPSPOOL_MAX_STREAM    SIZE                 pending bytes per stream
 *   TCPSPOOL_MAX           SIZE                 bytes on disk, whole dir
 *   TCPSPOOL_MIN_FREE      SIZE                 free disk to keep
 *   TCPSPOOL_SEGMENT_SIZE  SIZE                 segment rotation size
 *   TCPSPOOL_LEVEL         0..9                 zlib level
 *   TCPSPOOL_FLUSH         DURATION             max time bytes stay in memory
 *   TCPSPOOL_FSYNC         never|interval|always
 *   TCPSPOOL_FSYNC_INTERVAL DURATION
 *   TCPSPOOL_LINGER        DURATION             drain bound at close and exit
 *   TCPSPOOL_OVERFLOW      eagain|block|drop
 *   TCPSPOOL_BLOCK_TIMEOUT DURATION             for overflow=block
 *   TCPSPOOL_PORTS         port list            only these local ports
 *   TCPSPOOL_PEER_PORTS    port list            only these peer ports
 *                          (list: "80,443,8000-8100"; empty/unset = all)
 *   TCPSPOOL_LOG           stderr|syslog|ABSOLUTE_PATH
 *   TCPSPOOL_LOG_LEVEL     error|warn|info|debug
 */
#ifndef TCPSPOOL_CONFIG_H
#define TCPSPOOL_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_PORT_RANGES_MAX 32

enum overflow_policy { OVERFLOW_EAGAIN, OVERFLOW_BLOCK, OVERFLOW_DROP };
enum fsync_policy { FSYNC_NEVER, FSYNC_INTERVAL, FSYNC_ALWAYS };
enum log_dest { LOG_DEST_STDERR, LOG_DEST_SYSLOG, LOG_DEST_FILE };
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG };

struct port_set {
	unsigned n;		/* 0 = every port matches */
	struct { uint16_t lo, hi; } range[CONFIG_PORT_RANGES_MAX];
};

struct tcpspool_config {
	bool disabled;
	char dir[PATH_MAX];
	uint64_t max_stream;
	uint64_t max_total;
	uint64_t min_free;
	uint64_t segment_size;
	int level;
	uint32_t flush_ms;
	enum fsync_policy fsync;
	uint32_t fsync_interval_ms;
	uint32_t linger_ms;
	enum overflow_policy overflow;
	uint32_t block_timeout_ms;
	struct port_set ports;
	struct port_set peer_ports;
	enum log_dest log_dest;
	char log_path[PATH_MAX];
	enum log_level log_level;
};

/* Fills c with the documented defaults (the dir depends on the real uid). */
void config_defaults(struct tcpspool_config *c);

/*
 * Parses every TCPSPOOL_ variable found in envp (a NULL-terminated
 * "NAME=value" array, normally environ) over the defaults. Returns 0, or -1
 * with err holding one line such as
 *   TCPSPOOL_MAX_STREAM="12Q": expected a size like 512M (K, M, G, T suffixes)
 * An unknown TCPSPOOL_ name is reported in warn (if non-NULL, warnlen > 0)
 * and does not fail the parse.
 */
int config_parse(struct tcpspool_config *c, char *const *envp, char *err,
    size_t errlen, char *warn, size_t warnlen);

/* Parsers for one value, shared with the CLI's options and the fuzzer. */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration_ms(const char *s, uint32_t *out);
int config_parse_ports(const char *s, struct port_set *out);

/* True if port is in the set (an empty set matches every port). */
bool config_port_match(const struct port_set *ps, uint16_t port);

#endif
