/*
 * spool.h — the segment store.
 *
 * A spool dir holds streams. A stream is one ordered byte stream (in
 * practice: what one connection could not send at once), kept as records
 * (the bytes of one write call) in deflate-compressed, append-only,
 * checksummed segment files. This module knows files, frames and records,
 * and nothing about sockets. spool/FORMAT.md is the on-disk contract.
 *
 * Conventions:
 *   - Functions returning int return 0 (or a count) on success and a
 *     negative errno on failure. They never print; they may fill a
 *     struct spool_err with a message naming the file and offset.
 *   - errno is not meaningful after a call (it may be clobbered).
 *   - A struct spool_stream and a struct spool_cursor are not thread-safe:
 *     the caller serialises calls on one object. Different objects may be
 *     used from different threads at once; a spool_dir is thread-safe.
 *     In particular a stream and the cursor spool_stream_cursor() gave
 *     for it may be used from two threads at once (appender and replay):
 *     the cursor reads the files through its own fds and never past the
 *     end of the last complete frame the writer published; it deletes
 *     only sealed segments older than the writer's current one, and the
 *     writer deletes only its current segment (spool_stream_trim) under
 *     a lock they share. Counters they share are atomics.
 *     When a frame cannot be written (disk full, quota, I/O error), the
 *     writer is "stalled" until a frame is written: its cursor, having
 *     read everything in the files, also returns the staged records in
 *     the writer's memory (copied under that lock; the writer changes
 *     its staging under it while stalled). Only records whose append
 *     returned a sequence number are visible. Staged records that are
 *     all acknowledged are dropped, never written (FORMAT.md §4).
 *   - Every fd opened here is O_CLOEXEC; files are 0600, folders 0700,
 *     opened with O_NOFOLLOW, new ones with O_EXCL. Every fd is opened,
 *     written and closed through sysio.h (raw system calls), never
 *     through a symbol the preload library interposes.
 */
#ifndef TCPSPOOL_SPOOL_H
#define TCPSPOOL_SPOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Limits stated in FORMAT.md. */
#define SPOOL_RECORD_MAX	(16u << 20)	/* bytes in one record */
#define SPOOL_FRAME_RAW_MAX	(32u << 20)	/* raw payload of one frame */
#define SPOOL_SEGMENT_MIN	(64u << 10)
#define SPOOL_SEGMENT_MAX	(1ull << 30)
#define SPOOL_ADDR_MAX		128		/* "unix:" + sun_path, NUL */
#define SPOOL_NAME_MAX		32		/* stream dir name, NUL */
#define SPOOL_ERR_MAX		256

/* A message for the operator; filled on failure where one is given. */
struct spool_err {
	char msg[SPOOL_ERR_MAX];
};

/*
 * Returned (negated) when a name where a spool file belongs is something
 * else than a regular file (a FIFO, a device, a socket, a directory):
 * every file of a stream is opened without blocking and checked, so a
 * FIFO never hangs a reader (FORMAT.md §1). Outside errno's range.
 */
#define SPOOL_ENOTREG	4096
/* strerror, knowing SPOOL_ENOTREG; err is positive. */
const char *spool_strerror(int err);

/* ---------------------------------------------------------------- dir */

/*
 * Limits applied by spool_budget_check(). 0 means "no limit".
 *   stream_max: bytes pending (appended, not yet acknowledged) in one stream
 *   total_max:  bytes on disk (stored) for the whole spool dir, all
 *               processes together (others' usage may lag by about 1 s)
 *   min_free:   bytes that must stay free on the file system (statvfs)
 */
struct spool_limits {
	uint64_t stream_max;
	uint64_t total_max;
	uint64_t min_free;
};

struct spool_dir;

/*
 * Opens (creating it 0700 if missing, parents included) a spool dir.
 * Refuses with -EPERM and a message: a symlink, a dir owned by another
 * user, a group- or world-writable dir.
 */
int spool_dir_open(const char *path, const struct spool_limits *lim,
    struct spool_dir **out, struct spool_err *err);
/*
 * Opens an existing spool dir for inspection: never creates it; with
 * any_owner, a dir owned by another user is accepted (for root reading
 * someone's spool; the other checks stay).
 */
int spool_dir_inspect(const char *path, bool any_owner,
    struct spool_dir **out, struct spool_err *err);
void spool_dir_close(struct spool_dir *d);
const char *spool_dir_path(const struct spool_dir *d);
int spool_dir_fd(const struct spool_dir *d);

/* Calls fn for every stream dir name in d, in name order; stops on non-0. */
int spool_dir_list(struct spool_dir *d,
    int (*fn)(void *arg, const char *name), void *arg);

/*
 * Resolves a stream named by the operator: a full name or an unambiguous
 * prefix of one (like git's short hashes). -ENOENT none, -EEXIST ambiguous.
 */
int spool_resolve(struct spool_dir *d, const char *given,
    char name[SPOOL_NAME_MAX], struct spool_err *err);

/*
 * The lock every tcpspool command and the library take on a stream dir
 * before they change or delete what another may be reading (flock,
 * exclusive): the dir's fd, locked, to close when done; -EWOULDBLOCK if
 * another holds it for wait_ms (0: one try; else tried every 20 ms),
 * -ENOENT if the stream is gone, another negative errno (err says).
 */
int spool_stream_lock(struct spool_dir *d, const char *name, int wait_ms,
    struct spool_err *err);

/* Deletes a stream dir and everything in it. */
int spool_stream_remove(struct spool_dir *d, const char *name,
    struct spool_err *err);

/* --------------------------------------------------------------- writer */

/* Who a stream belongs to; written into every segment header. */
struct spool_identity {
	uint64_t stream_id;	/* set by spool_stream_create, unique in dir */
	int32_t pid;
	int32_t fd;
	int64_t created_ns;	/* CLOCK_REALTIME */
	char local[SPOOL_ADDR_MAX];	/* "127.0.0.1:80", "[::1]:80", "unix:/p" */
	char peer[SPOOL_ADDR_MAX];
};

enum spool_fsync {
	SPOOL_FSYNC_NEVER,	/* the kernel writes back when it likes */
	SPOOL_FSYNC_INTERVAL,	/* fdatasync at most every fsync_interval_ms */
	SPOOL_FSYNC_ALWAYS,	/* every record framed and fdatasync'ed before
				 * spool_stream_append returns */
};

struct spool_options {
	uint64_t segment_max;	/* rotate when a segment would exceed this */
	uint32_t frame_target;	/* form a frame once this many raw bytes are
				 * staged; 0 = every append forms a frame */
	int level;		/* deflate level, 0 (stored) .. 9 */
	enum spool_fsync fsync;
	uint32_t fsync_interval_ms;
	/* With SPOOL_FSYNC_INTERVAL: the writer never calls fdatasync or
	 * fsync itself; its owner takes a sync job (spool_stream_sync_take)
	 * and runs it outside its own lock. */
	bool defer_sync;
};

void spool_options_default(struct spool_options *o);

/*
 * Loads libisal.so.2 (dlopen, RTLD_LOCAL | RTLD_DEEPBIND) so that
 * level-1 frames are deflated by ISA-L igzip; libdeflate (else zlib)
 * deflates them until then, and for good when it returns false (no
 * library at run time, or a build without ISA-L). Once per process; takes
 * the dynamic loader's lock, so never from a signal handler nor with a
 * lock held that a thread inside dlopen could wait for (codec.c).
 * spool_codec_load_error() says why not, NULL once loaded.
 */
bool spool_codec_load(void);
const char *spool_codec_load_error(void);

/*
 * A deferred sync (spool_options.defer_sync): what the writer owes the
 * disk, taken under the caller's serialisation of the stream, run with no
 * lock held (the disk's time is then nobody's wait), its result given
 * back under the serialisation again. Sealed segments are synced by name
 * (one already delivered and deleted is owed nothing), the open one
 * through a duplicate of its fd that the run closes: a job holds no fd
 * between take and run but that one.
 */
struct spool_sync_job {
	int dirfd;			/* the spool dir's fd (not the job's) */
	char name[SPOOL_NAME_MAX];	/* the stream's */
	uint64_t seal_lo, seal_hi;	/* sealed segments [lo, hi) */
	int fd;				/* the open segment's duplicate, or -1 */
	bool cur;			/* fd was taken: */
	uint64_t seg_seq, seg_end;	/* where it stood at the take */
	bool dir;			/* fsync the stream dir too */
	bool parent;			/* and the spool dir (a new stream) */
	int64_t at_ns;			/* CLOCK_MONOTONIC of the take */
};

struct spool_stream;

/*
 * Creates a new stream dir in d with its first segment. id->stream_id is
 * assigned; the stream's name is spool_stream_name().
 */
int spool_stream_create(struct spool_dir *d, struct spool_identity *id,
    const struct spool_options *o, struct spool_stream **out,
    struct spool_err *err);
const char *spool_stream_name(const struct spool_stream *s);

/*
 * Appends one record of the iovec's bytes (at most SPOOL_RECORD_MAX).
 * The bytes are copied into the staging buffer; they reach the file when a
 * frame is formed (frame_target, spool_stream_flush, or always with
 * SPOOL_FSYNC_ALWAYS). Returns the record's sequence number (>= 0).
 * On ENOSPC/EDQUOT/EFBIG while forming a frame, the partial frame is cut
 * off, the segment stays valid, the records stay staged, and the negative
 * errno is returned. On any failure the record of this call is NOT
 * appended (its sequence number is not used); records staged by earlier
 * calls stay staged and are written by a later flush, and meanwhile the
 * stream's cursor can deliver them from memory (see the conventions
 * above). -EMSGSIZE for a record larger than SPOOL_RECORD_MAX.
 */
int64_t spool_stream_append(struct spool_stream *s, const struct iovec *iov,
    int iovcnt, int64_t ts_ns, struct spool_err *err);

/*
 * The usual append, in fewer steps (the application's thread, once per
 * spooled write): one buffer of len bytes (1..SPOOL_RECORD_MAX) staged
 * behind records already staged, when that forms no frame, grows no
 * buffer, the writer is not stalled and the budget admits it without the
 * dir's lock (within stream_max and the stream's credit: what
 * spool_budget_check would pass at once). Returns the record's sequence
 * number, or -1 having changed nothing: spool_budget_check and
 * spool_stream_append then.
 */
int64_t spool_stream_append_quick(struct spool_stream *s, const void *p,
    size_t len, int64_t ts_ns);

/*
 * Forms a frame of whatever is staged and writes it; fsync per policy.
 * If every staged record is already acknowledged (delivered from memory
 * while stalled), they are dropped instead, with the segments, which then
 * hold only acknowledged records: 0 even on a full disk.
 */
int spool_stream_flush(struct spool_stream *s, struct spool_err *err);

/*
 * The same, but the fdatasync the interval policy may owe is left to the
 * next spool_stream_sync (or the next frame written): for a caller that
 * has something more urgent to do first with what it flushed, such as
 * sending it, and syncs right after. With SPOOL_FSYNC_ALWAYS it syncs.
 */
int spool_stream_flush_nosync(struct spool_stream *s, struct spool_err *err);

/* The fdatasync the policy owes now (interval policy: frames written and
 * the interval elapsed since the last one); 0 if none was due. */
int spool_stream_sync(struct spool_stream *s, struct spool_err *err);
/* 1 and a job if a deferred sync is owed, else 0. */
int spool_stream_sync_take(struct spool_stream *s, struct spool_sync_job *j);
/* Runs the job (no lock needed): fdatasync, fsync, its fd closed. 0 or
 * a negative errno (the first failure). */
int spool_sync_run(struct spool_sync_job *j);
/* The job's result: what it synced is no longer owed. After a failure the
 * open segment and the dir stay owed, but what failed may be lost (Linux
 * can drop dirty pages after a failed fdatasync): the caller reports it. */
void spool_stream_sync_done(struct spool_stream *s,
    const struct spool_sync_job *j, int rc);
/* A deferred sync is owed (a segment, a sealed one, the dir). */
bool spool_stream_sync_owed(const struct spool_stream *s);
/*
 * CLOCK_MONOTONIC ns of the last sync that succeeded: a deferred job's
 * take (its at_ns), else the fdatasync itself; the stream's creation if
 * none yet. The interval policy counts from it; a test compares it with
 * when a frame was written, in the library's own times.
 */
int64_t spool_stream_synced_at(const struct spool_stream *s);

/*
 * For a writer that will wait long: closes its segment's fd when nothing
 * is staged and no deferred sync is owed (true then); the next frame opens
 * it again. Its staging holds no memory once a frame is written.
 */
bool spool_stream_park(struct spool_stream *s);

/* CLOCK_MONOTONIC ns of the oldest staged, unwritten record; 0 if none. */
int64_t spool_stream_staged_since(const struct spool_stream *s);

/*
 * Called when a stream is fully delivered: flushes, seals and deletes
 * segments that hold only acknowledged records, so an idle stream keeps
 * nothing but its dir and progress on disk.
 */
int spool_stream_trim(struct spool_stream *s, struct spool_err *err);

/*
 * Closes the writer. SPOOL_CLOSE_KEEP flushes what is staged and leaves the
 * files (an orphan, with the reason recorded in its status); SPOOL_CLOSE_REMOVE
 * deletes the stream dir.
 */
enum spool_close_how { SPOOL_CLOSE_KEEP, SPOOL_CLOSE_REMOVE };
int spool_stream_close(struct spool_stream *s, enum spool_close_how how,
    const char *reason, struct spool_err *err);

/* Per-stream accounting, exact. */
struct spool_counts {
	uint64_t records;	/* appended since creation */
	uint64_t raw_bytes;	/* appended since creation */
	uint64_t stored_bytes;	/* on disk now, headers included */
	uint64_t pending_records;	/* appended, not acknowledged */
	uint64_t pending_bytes;	/* raw bytes appended, not acknowledged */
	uint32_t segments;	/* on disk now */
};
void spool_stream_counts(const struct spool_stream *s, struct spool_counts *c);

/* Spool-dir-wide accounting as this process sees it: the sum over the
 * streams this process has open in d (closed ones no longer count). */
void spool_dir_counts(struct spool_dir *d, struct spool_counts *c);

/*
 * Would appending len more bytes to s break a limit? 0 if not, else
 * -EDQUOT (stream_max or total_max) or -ENOSPC (min_free), with *which
 * set to "stream_max", "total_max" or "min_free". Cheap: no syscall unless
 * a statvfs is due (at most one per 100 ms per dir).
 */
int spool_budget_check(struct spool_stream *s, uint64_t len,
    const char **which);

/* ------------------------------------------------------------ reading */

struct spool_record {
	uint64_t seq;
	int64_t ts_ns;		/* as appended, to the microsecond (FORMAT.md) */
	const uint8_t *data;	/* valid until the next call on the cursor */
	size_t len;
	size_t off;		/* bytes of this record already delivered */
};

struct spool_cursor;

/*
 * Opens a reader on a stream, positioned at the first byte not yet
 * acknowledged according to the persisted progress. Recovery (truncating a
 * torn tail of a dead writer's .open segment) is not done here; see
 * spool_repair. Corrupt frames are skipped and reported through
 * spool_cursor_losses().
 */
int spool_cursor_open(struct spool_dir *d, const char *name,
    struct spool_cursor **out, struct spool_err *err);

/* The cursor of a live writer, for the same process's replay. */
int spool_stream_cursor(struct spool_stream *s, struct spool_cursor **out,
    struct spool_err *err);

/*
 * The next record not fully acknowledged: 1 with *rec filled, 0 when
 * nothing more is written yet (for a live stream, flush then retry; a
 * stalled writer's staged records are returned without a flush), or a
 * negative errno. rec->off tells how much of it was already delivered.
 * Successive calls return successive records (several may be in flight
 * before they are acknowledged); after an acknowledgement that ends
 * inside a record (off < len), or after spool_cursor_rewind, the next call
 * returns that record again with rec->off = the acknowledged offset.
 * rec->data stays valid until the next spool_cursor_next,
 * spool_cursor_run, spool_cursor_rewind, spool_cursor_park or
 * spool_cursor_close (spool_cursor_ack keeps it).
 * Each record returned and not yet acknowledged costs 16 bytes of memory
 * (its sequence number and length, for exact pending counts).
 */
int spool_cursor_next(struct spool_cursor *c, struct spool_record *rec,
    struct spool_err *err);

/*
 * Acknowledges delivery up to byte off of record seq (off == len means the
 * whole record). Segments holding only acknowledged records are deleted.
 * Progress is persisted when persist is true (a write to the progress file,
 * no fsync unless the policy is ALWAYS). seq must be a record returned by
 * spool_cursor_next (-EINVAL otherwise); records before it are acknowledged
 * whole. Acknowledging an older position is a no-op. The progress
 * written never passes the records in the files: a position among records
 * delivered from a stalled writer's memory is persisted as "everything
 * written so far" until their frame is written.
 */
int spool_cursor_ack(struct spool_cursor *c, uint64_t seq, size_t off,
    bool persist, struct spool_err *err);

/*
 * Makes the next spool_cursor_next return the first record not fully
 * acknowledged again (after a failed send of records in flight).
 */
int spool_cursor_rewind(struct spool_cursor *c);

/*
 * A run of records: the rest of the frame the cursor is in, as it lies in
 * the decoded frame, back to back: from the first byte not acknowledged to
 * the end of the frame's last record. For a sender that sends many records
 * per system call without a copy or a call per record.
 */
struct spool_run {
	uint64_t seq;		/* its first record */
	uint64_t count;		/* records in it, the first one included */
	size_t off;		/* bytes of the first one already delivered */
	const uint8_t *data;	/* its first byte not delivered */
	size_t len;		/* bytes from data to the end of the run */
};

/*
 * The run that starts at the first byte not acknowledged: 1 with *run
 * filled, 0 when nothing more is written yet, or a negative errno, as
 * spool_cursor_next (the two may be mixed: records spool_cursor_next
 * returned and not acknowledged are returned again in the run). A run
 * may hold only empty records (len 0): acknowledge 0 bytes to pass them.
 * Calling it again before acknowledging all of it returns what is left of
 * the same run, from the same buffer. run->data stays valid until the next
 * call on the cursor other than the acknowledgements.
 */
int spool_cursor_run(struct spool_cursor *c, struct spool_run *run,
    struct spool_err *err);

/*
 * Acknowledges the next n bytes of the run out (from its first byte not
 * acknowledged yet; successive calls go on from where the last stopped),
 * to the byte: a record cut by n is acknowledged up to its offset, the
 * records it completes whole, with the empty records that follow them.
 * Persists, deletes segments and counts as spool_cursor_ack. -EINVAL if
 * no run is out or n is more than is left of it.
 */
int spool_cursor_ack_run(struct spool_cursor *c, size_t n, bool persist,
    struct spool_err *err);

/*
 * Records lost to corruption so far: count and [first, last] sequence.
 * frames counts corrupt regions, and also impossible structures whose
 * records were not lost (FORMAT.md §5 rule 8, §6): a segment base_seq
 * above its first frame, a progress position past the records on disk
 * or past the end of its record.
 */
struct spool_losses {
	uint64_t frames;
	uint64_t records;
	uint64_t first_seq, last_seq;
};
void spool_cursor_losses(const struct spool_cursor *c, struct spool_losses *l);

/*
 * For a reader that will wait long (its peer reads nothing): gives back
 * its fds and buffers; the next spool_cursor_next reads again from the
 * files, from the first record not fully acknowledged (acknowledge first
 * what was delivered: records returned and not acknowledged are returned
 * again). Costs a reread of the current frame when reading resumes.
 */
void spool_cursor_park(struct spool_cursor *c);

/*
 * For a cursor just opened (nothing read yet): starts at the first byte of
 * the first record not fully acknowledged, even if part of it was
 * delivered (to another connection: a resumed stream sends it whole).
 */
void spool_cursor_whole_record(struct spool_cursor *c);

void spool_cursor_close(struct spool_cursor *c);

/* ------------------------------------------------------ inspection */

struct spool_segment_info {
	char file[SPOOL_NAME_MAX + 24];	/* file name inside the stream dir */
	uint64_t segment_seq;
	uint32_t version;
	uint32_t codec;
	uint64_t segment_max;
	struct spool_identity id;
	bool sealed;		/* .seg with a valid footer */
	uint64_t file_size;
	/* From the footer when sealed, else from the frames read. */
	uint64_t first_seq, last_seq, records, raw_bytes, stored_bytes;
};

struct spool_frame_info {
	uint64_t segment_seq;
	uint64_t offset;	/* of the frame header in the file */
	uint64_t first_seq;
	uint32_t count;
	uint32_t raw_len, stored_len;
	int64_t first_ts_ns, last_ts_ns;
	uint32_t codec;
	uint32_t payload_crc;
	bool valid;		/* header and payload checksums match */
};

enum spool_problem_kind {
	SPOOL_PROBLEM_TORN_TAIL,	/* incomplete frame at the end */
	SPOOL_PROBLEM_CORRUPT_FRAME,	/* bad checksum, skipped */
	SPOOL_PROBLEM_BAD_HEADER,	/* segment header unreadable, or its
					 * base_seq contradicts its frames */
	SPOOL_PROBLEM_BAD_FOOTER,
	SPOOL_PROBLEM_SEQ_GAP,		/* records missing */
	SPOOL_PROBLEM_IO,
	SPOOL_PROBLEM_SEQ_REPEAT,	/* a frame repeats records already
					 * seen: skipped, nothing lost, but
					 * no writer makes that */
	SPOOL_PROBLEM_PROGRESS,		/* the progress position is
					 * impossible (FORMAT.md §6) */
};

struct spool_problem {
	enum spool_problem_kind kind;
	char file[SPOOL_NAME_MAX + 24];
	uint64_t offset, length;	/* bytes of the file concerned */
	uint64_t first_seq, last_seq;	/* records concerned, if known */
	bool seq_known;
	char msg[SPOOL_ERR_MAX];
};

struct spool_scan_ops {
	int (*segment)(void *arg, const struct spool_segment_info *si);
	int (*frame)(void *arg, const struct spool_frame_info *fi);
	int (*problem)(void *arg, const struct spool_problem *p);
};

/*
 * Walks every segment and frame of a stream, oldest first, checking every
 * checksum, the sequence continuity and the progress file against the
 * records on disk: FORMAT.md §5 and §6, the one statement of what is
 * damaged that every reader of the CLI applies (verify, replay, dump and
 * ls all judge a stream by this scan). Callbacks may be NULL. Returns the
 * number of problems found (>= 0) or a negative errno.
 */
int spool_scan(struct spool_dir *d, const char *name,
    const struct spool_scan_ops *ops, void *arg, struct spool_err *err);

/*
 * Truncates a torn tail of the stream's .open segment to its last good
 * frame. Only for a stream whose writer is gone; the caller checks.
 * Returns the bytes cut (>= 0).
 */
int64_t spool_repair(struct spool_dir *d, const char *name,
    struct spool_err *err);

/* A summary of one stream, for listings. */
struct spool_stream_info {
	char name[SPOOL_NAME_MAX];
	struct spool_identity id;	/* from the oldest readable segment */
	bool id_known;
	uint64_t records, raw_bytes, stored_bytes;	/* not acknowledged */
	int64_t oldest_ts_ns, newest_ts_ns;
	uint32_t segments;
	uint64_t acked_seq;	/* from progress */
};
int spool_stream_info(struct spool_dir *d, const char *name,
    struct spool_stream_info *si, struct spool_err *err);
/*
 * The same; with SPOOL_INFO_QUICK no frame is decoded: a frame partly
 * acknowledged counts whole in records and raw_bytes (for a caller that
 * has the writer's own exact counts, its status), only frame headers are
 * read. tcpspool ls lists thousands of live streams this way.
 */
#define SPOOL_INFO_QUICK 1
int spool_stream_info_flags(struct spool_dir *d, const char *name,
    int flags, struct spool_stream_info *si, struct spool_err *err);

/* ------------------------------------------------------------ status */

/*
 * Live figures a writer's process publishes in its stream dir (a small
 * file, replaced atomically by rename), for `tcpspool ls`.
 */
struct spool_status {
	int32_t pid;
	int32_t fd;
	char state[16];		/* "spooling", "draining", "orphan", ... */
	char reason[64];	/* why an orphan: "peer reset", "exit", ... */
	uint64_t pending_bytes, pending_records;
	uint64_t drops, errors;
	int64_t updated_ns;	/* CLOCK_REALTIME */
	/* The writer will not write this status again until something
	 * changes (its peer reads nothing): fresh while its process lives,
	 * however old (FORMAT.md §7). */
	bool idle;
	/* Released (below) with an expiry: may be deleted from then on
	 * (spool_dir_expire); 0: kept until removed by hand. */
	int64_t expires_ns;
	/* A released stream another process took over and sends now (a
	 * resumed stream, FORMAT.md §11): its pid; 0 if none. */
	int32_t holder;
	/*
	 * The writer has let go of the stream (spool_stream_close with
	 * SPOOL_CLOSE_KEEP wrote this status, with the last published drops
	 * and errors): its process never touches the stream again, even
	 * while it runs, so the stream is an orphan like one whose process
	 * is gone (FORMAT.md §7). Set by spool/ only; ignored on publish.
	 */
	bool released;
};
/* Also remembers st's drops and errors for the close (status and
 * ledger). */
int spool_status_publish(struct spool_stream *s, const struct spool_status *st,
    struct spool_err *err);
int spool_status_read(struct spool_dir *d, const char *name,
    struct spool_status *st, struct spool_err *err);

/*
 * An orphan's expiry (FORMAT.md §7, expires_ns): the time after which
 * whoever uses the spool dir may delete it, written into the released
 * status by spool_stream_close with SPOOL_CLOSE_KEEP; 0 (the default)
 * keeps it until an operator removes it. Call before the close.
 */
void spool_stream_set_expiry(struct spool_stream *s, int64_t at_ns);

/*
 * Deletes every stream of d whose released status expired before now_ns
 * (CLOCK_REALTIME; believed only from the writer's own status, the pid of
 * its segment headers), every `<stream>.new` dir an hour old (a crash
 * while a stream was made: no record) and every `<stream>.del` (a crash
 * while one was removed); their status says so in reason. A stream a
 * tcpspool command holds (flock) is skipped until the next time (busy).
 * One sweeper per dir at a time (sweep.lock): with SKIP_IF_BUSY, none if
 * another sweeps now, else waiting for it. fn, if not NULL, is told of
 * each one found (removed false with DRY_RUN, busy, or err saying why).
 * Returns the number removed, or a negative errno if d cannot be listed.
 */
struct spool_expired {
	const char *name;
	int64_t expired_ns;
	const struct spool_status *status;
	bool removed;
	bool busy;		/* a tcpspool command holds it: next time */
	const char *err;	/* why not removed, "" if removed or dry run */
};
#define SPOOL_EXPIRE_DRY_RUN		1	/* tell fn, remove nothing */
#define SPOOL_EXPIRE_SKIP_IF_BUSY	2	/* another sweeps: return 0 */
int spool_dir_expire(struct spool_dir *d, int64_t now_ns, unsigned flags,
    void (*fn)(void *arg, const struct spool_expired *x), void *arg);

/* ----------------------------------------------------------- waiting */

/*
 * Streams waiting for their peer (FORMAT.md §11): a stream whose
 * connection broke with records left, released with state "waiting" and
 * an expiry, and named in the dir's registry under its peer's address, so
 * that a new connection from that address, in any process using the dir,
 * is given its records first. The registry entry is the stream's token:
 * the one who removes it (a claim, or the sweep at the expiry) owns it.
 */
#define SPOOL_KEY_MAX	40	/* "6-" + 32 hex digits, NUL */

/* The registry key of a peer address as struct spool_identity writes it
 * ("1.2.3.4:80", "[::1]:80"; an IPv4-mapped IPv6 address is its IPv4
 * one): 0, or -EAFNOSUPPORT (AF_UNIX) or -EINVAL. */
int spool_peer_key(const char *peer, char key[SPOOL_KEY_MAX]);
/* Names stream name (created at created_ns, its identity's) as waiting
 * under key: before its status says so (spool_stream_set_release_state
 * and the close, or spool_status_release), so that a stream listed as
 * waiting can always be claimed (FORMAT.md §11). */
int spool_waiting_add(struct spool_dir *d, const char *key,
    int64_t created_ns, const char *name, struct spool_err *err);
/* Removes that entry (the stream was delivered or is being removed);
 * 0, or -ENOENT if it was not there. */
int spool_waiting_take(struct spool_dir *d, const char *key,
    int64_t created_ns, const char *name);
struct spool_claimed {
	int64_t created_ns;
	char name[SPOOL_NAME_MAX];
	struct spool_status status;	/* as the claim found it */
	int lock_fd;		/* the stream dir's flock: it is ours */
};
/*
 * Takes up to max streams waiting under key, oldest first, into v: each
 * locked by this call (flock of its dir, held through lock_fd until
 * spool_claimed_unlock; the kernel drops it with a process that dies),
 * whose status says waiting, or resumed by a process that died, and has
 * not expired. Stops at the first it cannot lock (another process sends
 * it, the sweep removes it, a command holds it): nothing newer passes
 * it. Drops entries whose stream is gone or no longer waits. Returns how
 * many (0 costs one failed open when none waits), or a negative errno.
 *
 * fd_mu (may be NULL) is for a caller that forks: a lock fd shares its
 * lock with every copy of it, a fork child's too. Each change of a lock
 * fd in v (made, locked and stored; closed and set to -1; an entry moved)
 * is one step under fd_mu, and nothing else is done under it. A fork
 * handler that holds fd_mu finds in v[0..max) every lock fd this call
 * holds, once, and -1 in every other lock_fd, provided that the caller
 * set them all to -1 before the call.
 */
int spool_waiting_claim(struct spool_dir *d, const char *key,
    struct spool_claimed *v, int max, pthread_mutex_t *fd_mu,
    struct spool_err *err);

/* Lets go of a claimed stream (closes its lock fd). */
void spool_claimed_unlock(struct spool_claimed *c);
/* A process that runs (kill 0; EPERM counts as running). */
bool spool_pid_alive(int32_t pid);

/*
 * Writes the released status st of stream name (its writer is gone): for
 * whoever took a released stream over (a claim), or gives it back.
 */
int spool_status_release(struct spool_dir *d, const char *name,
    const struct spool_status *st, struct spool_err *err);
/* The state word spool_stream_close with SPOOL_CLOSE_KEEP writes ("orphan"
 * unless set; "waiting" for spool_waiting_add). Call before the close. */
void spool_stream_set_release_state(struct spool_stream *s,
    const char *state);

/* ------------------------------------------------------------ ledger */

/*
 * What outlives the streams of a spool dir (FORMAT.md §9): every stream
 * closed with drops or errors published appends one line to the dir's
 * ledger, so `tcpspool ls` can still count them once the stream is
 * delivered and gone.
 */
struct spool_ledger {
	uint64_t streams;	/* lines */
	uint64_t drops, errors;
	int64_t last_ns;	/* the newest line's time, 0 if none */
	uint64_t bad_lines;	/* lines that do not parse, ignored */
};
/* Sums the ledger; a missing ledger is all zeros (0 returned). */
int spool_ledger_read(struct spool_dir *d, struct spool_ledger *l,
    struct spool_err *err);

/* ------------------------------------------------------------ origin */

/*
 * Where a stream stands in its socket's byte count (FORMAT.md §10), for
 * `tcpspool daemon`, which continues a dead process's delivery at the
 * first byte the kernel never accepted. The interposer writes the origin
 * when it hands a stream over; an anchor ties a record to its byte
 * offset in the stream, so the lookup still works once the records
 * before it were delivered and their segments deleted.
 */
#define SPOOL_ANCHORS_MAX 16

struct spool_origin {
	bool have;		/* an origin entry was read */
	bool known;		/* count is the socket's (TCP); else unknown */
	uint64_t count;		/* bytes the socket had accepted at byte 0 */
	size_t nanchors;	/* the newest SPOOL_ANCHORS_MAX, oldest first */
	struct {
		uint64_t seq;	/* record seq begins at stream byte abs */
		uint64_t abs;
	} anchors[SPOOL_ANCHORS_MAX];
};

/* Writes the stream's origin file (creates it: once per stream). */
int spool_origin_begin(struct spool_stream *s, bool known, uint64_t count,
    struct spool_err *err);
/* Appends an anchor if the writer moved to another segment since
 * *seg_seen (updated); cheap otherwise. Under the writer's serialisation. */
int spool_origin_anchor(struct spool_stream *s, uint64_t *seg_seen,
    struct spool_err *err);
/* Reads it; -ENOENT without a file, -ENODATA without an origin entry. */
int spool_origin_read(struct spool_dir *d, const char *name,
    struct spool_origin *o, struct spool_err *err);

/* Where stream byte `want` is among the records on disk. */
struct spool_place {
	uint64_t seq, off;	/* the record holding it, and the offset */
	bool at_end;		/* want is at or past the last record's end */
	uint64_t beyond;	/* at_end: bytes past that end */
	uint64_t first_seq;	/* the first record on disk ... */
	uint64_t first_abs;	/* ... starts at this stream byte */
	uint64_t end_abs;	/* the stream byte after the last record */
};
/*
 * Finds stream byte want (0 = the first byte ever spooled). -ERANGE when
 * it lies before the records on disk (they were deleted: a contradiction
 * the caller reports), -ENOENT when no anchor ties the records on disk to
 * stream bytes.
 */
int spool_locate(struct spool_dir *d, const char *name,
    const struct spool_origin *o, uint64_t want, struct spool_place *p,
    struct spool_err *err);

/*
 * The bytes TCP socket fd has accepted so far (tcpi_bytes_acked +
 * SIOCOUTQ, one moment): 0, or a negative errno (-ENOPROTOOPT and the
 * like for a socket that is not TCP). The one socket call of spool/: it
 * defines the count the origin file holds.
 */
int spool_socket_count(int fd, uint64_t *count);

/*
 * A message to `tcpspool daemon` on <spool dir>/daemon.sock (FORMAT.md
 * §10), 64 bytes, fields in host order (same machine).
 */
#define SPOOL_DAEMON_SOCK	"daemon.sock"
#define SPOOL_HO_MAGIC		0x4f485354u	/* "TSHO" */
enum { SPOOL_HO_TAKE = 1, SPOOL_HO_RELEASE = 2 };
/* The daemon's answer to every take: one byte. */
enum { SPOOL_HO_OK = 'y', SPOOL_HO_REFUSED = 'n' };
struct spool_ho_msg {
	uint32_t magic;
	uint32_t kind;
	int32_t pid;
	uint32_t reserved0;
	char name[SPOOL_NAME_MAX];
	uint64_t reserved1;
	uint64_t reserved2;
};

#endif
