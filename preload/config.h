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
 * optional K, M, G, T suffix (powers of 1024, optional 'iB' or 'B', any
 * case: 64M, 64MB, 64MiB, 64mib), DURATION = integer with ms, s, m or h,
 * lower case (a bare integer is ms). Numbers are ASCII digits only: no
 * sign, blank, fraction, exponent or 0x. Keywords are lower case.
 *
 *   NAME                   FORM, BOUNDS            DEFAULT
 *   TCPSPOOL_DISABLE       0|1                     0   1 = pass everything through
 *   TCPSPOOL_DIR           absolute path           /var/tmp/tcpspool-<uid>
 *   TCPSPOOL_MAX_STREAM    SIZE 1..2^60            1G  pending bytes per stream
 *   TCPSPOOL_MAX           SIZE 1..2^60            8G  bytes on disk, whole dir
 *   TCPSPOOL_MIN_FREE      SIZE 0..2^60            1G  free disk to keep
 *   TCPSPOOL_SEGMENT_SIZE  SIZE 64K..1G            64M segment rotation size
 *   TCPSPOOL_LEVEL         0..9                    1   DEFLATE level
 *   TCPSPOOL_FLUSH         DURATION 1ms..24h       100ms max time bytes stay
 *                                                  in memory
 *   TCPSPOOL_FSYNC         never|interval|always   interval
 *   TCPSPOOL_FSYNC_INTERVAL DURATION 1ms..24h      1s
 *   TCPSPOOL_LINGER        DURATION 0..24h         30s drain bound at close
 *                                                  and exit
 *   TCPSPOOL_OVERFLOW      eagain|block|drop       eagain
 *   TCPSPOOL_BLOCK_TIMEOUT DURATION 0..24h         5s  for overflow=block
 *   TCPSPOOL_PORTS         port list               all: only these local ports
 *   TCPSPOOL_PEER_PORTS    port list               all: only these peer ports
 *                          (list: "80,443,8000-8100", 1..65535, lo <= hi,
 *                          at most CONFIG_PORT_RANGES_MAX; empty/unset = all)
 *   TCPSPOOL_LOG           stderr|syslog|ABSOLUTE_PATH   stderr
 *   TCPSPOOL_LOG_LEVEL     error|warn|info|debug   warn
 *   TCPSPOOL_ORPHANS       expire|keep|discard     expire: what becomes of
 *                          the spool of a connection whose peer went away
 *                          (reset, timed out) while bytes were spooled
 *   TCPSPOOL_ORPHAN_TTL    DURATION 1ms..24h       10m, for expire
 *   TCPSPOOL_RESUME        off|peer-addr           off: peer-addr keeps such
 *                          a spool (TCP only) for the peer's next
 *                          connection from the same IP address, which is
 *                          sent its records first (resume.c)
 *   TCPSPOOL_RESUME_TTL    DURATION 1ms..24h       10m: how long it waits
 *
 * An empty value is an error for every variable but the two port lists.
 * Paths (DIR, LOG file) are absolute, have no ".." component and no control
 * byte; DIR is shorter than CONFIG_DIR_LEN_MAX (room for file names under
 * it), is not "/", and loses its trailing slashes. Why these defaults:
 * /var/tmp is on the local disk and survives a reboot (/tmp is often a
 * tmpfs); the quotas let one slow peer hold a burst of minutes at server
 * rates without one stream or the spool filling the disk; fsync every
 * second bounds a power loss to about a second of data at a small cost;
 * level 1 compresses text well at the lowest CPU cost; linger 30s lets a
 * slow peer drain after close or exit without holding a finished process's
 * connections for long; overflow=eagain is never worse than without the
 * library; a spool whose peer went away can never reach that connection,
 * so it is kept 10 minutes (long enough to be seen by tcpspool ls or an
 * alert and replayed elsewhere), then removed by the library, so that
 * clients that come and go never fill TCPSPOOL_MAX (an orphan left by the
 * process's own death is kept: it is the data a crash interrupted).
 * Names beginning TCPSPOOL_TEST_ are the test suite's and ignored.
 * The quotas are independent: a MAX_STREAM above MAX simply never binds.
 */
#ifndef TCPSPOOL_CONFIG_H
#define TCPSPOOL_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_PORT_RANGES_MAX 32

#define CONFIG_SIZE_MAX (UINT64_C(1) << 60)
#define CONFIG_DURATION_MAX_MS (24u * 60 * 60 * 1000)
#define CONFIG_SEGMENT_SIZE_MIN (UINT64_C(64) << 10)
#define CONFIG_SEGMENT_SIZE_MAX (UINT64_C(1) << 30)
#define CONFIG_DIR_LEN_MAX (PATH_MAX - 128)	/* strlen(dir) < this */
/* Enough for any message config_parse writes to err or warn. */
#define CONFIG_MSG_MAX 512

#define CONFIG_DEFAULT_DIR_PREFIX "/var/tmp/tcpspool-"	/* then the uid */
#define CONFIG_DEFAULT_MAX_STREAM (UINT64_C(1) << 30)
#define CONFIG_DEFAULT_MAX (UINT64_C(8) << 30)
#define CONFIG_DEFAULT_MIN_FREE (UINT64_C(1) << 30)
#define CONFIG_DEFAULT_SEGMENT_SIZE (UINT64_C(64) << 20)
#define CONFIG_DEFAULT_LEVEL 1
#define CONFIG_DEFAULT_FLUSH_MS 100
#define CONFIG_DEFAULT_FSYNC_INTERVAL_MS 1000
#define CONFIG_DEFAULT_LINGER_MS 30000
#define CONFIG_DEFAULT_BLOCK_TIMEOUT_MS 5000
#define CONFIG_DEFAULT_ORPHAN_TTL_MS (10u * 60 * 1000)
#define CONFIG_DEFAULT_RESUME_TTL_MS (10u * 60 * 1000)

enum overflow_policy { OVERFLOW_EAGAIN, OVERFLOW_BLOCK, OVERFLOW_DROP };
enum orphan_policy { ORPHANS_EXPIRE, ORPHANS_KEEP, ORPHANS_DISCARD };
enum resume_mode { RESUME_OFF, RESUME_PEER_ADDR };
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
	/* TCPSPOOL_DIR unset: the dir is named after the effective uid when
	 * it is opened (config_default_dir), so that a process that changes
	 * user after the config was read (an nginx worker) uses its own. */
	bool dir_is_default;
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
	enum orphan_policy orphans;
	uint32_t orphan_ttl_ms;
	enum resume_mode resume;
	uint32_t resume_ttl_ms;
	struct port_set ports;
	struct port_set peer_ports;
	enum log_dest log_dest;
	char log_path[PATH_MAX];
	enum log_level log_level;
};

/* The default spool dir of the current effective uid into c->dir. */
void config_default_dir(struct tcpspool_config *c);
/* Fills c with the documented defaults (the dir depends on the uid). */
void config_defaults(struct tcpspool_config *c);

/*
 * Parses every TCPSPOOL_ variable found in envp (a NULL-terminated
 * "NAME=value" array, normally environ) over the defaults (it calls
 * config_defaults first; of two entries with one name, the first counts,
 * as with getenv). Preserves errno. Returns 0, or -1
 * with err holding one line such as
 *   TCPSPOOL_MAX_STREAM="12Q": expected a size like 512M (K, M, G, T suffixes)
 * (stopping at the first bad value; c is then unusable).
 * An unknown TCPSPOOL_ name is reported in warn (if non-NULL, warnlen > 0)
 * and does not fail the parse. err and warn may be NULL; CONFIG_MSG_MAX
 * bytes hold any message.
 */
int config_parse(struct tcpspool_config *c, char *const *envp, char *err,
    size_t errlen, char *warn, size_t warnlen);

/*
 * Parsers for one value, shared with the CLI's options and the fuzzer.
 * 0, or -1 leaving *out untouched. Sizes are bounded by CONFIG_SIZE_MAX,
 * durations by CONFIG_DURATION_MAX_MS; "" is a valid (empty) port list.
 */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration_ms(const char *s, uint32_t *out);
int config_parse_ports(const char *s, struct port_set *out);

/* True if port is in the set (an empty set matches every port). */
bool config_port_match(const struct port_set *ps, uint16_t port);

#endif
