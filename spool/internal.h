/*
 * internal.h — what the files of spool/ share and nobody else sees.
 * The on-disk layout is spool/FORMAT.md; the constants below restate it.
 */
#ifndef TCPSPOOL_SPOOL_INTERNAL_H
#define TCPSPOOL_SPOOL_INTERNAL_H

#include <sys/queue.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>

#include "spool.h"

#define SEG_MAGIC		"TSPOOLSG"
#define SEG_VERSION		1
#define SEG_HEADER_LEN		336
#define FRAME_MAGIC		"TSFR"
#define FRAME_HEADER_LEN	64
#define FOOTER_MAGIC		"TSFT"
#define FOOTER_LEN		64
#define PROGRESS_MAGIC		"TSPG"
#define PROGRESS_SLOT_LEN	40

#define CODEC_STORED		0
#define CODEC_DEFLATE		1

#define FRAME_TARGET_MAX	(16u << 20)
#define VARINT_MAX		10

#define SEG_NAME_LEN		16	/* hex digits */
#define STREAM_NAME_LEN		16

/* ------------------------------------------------------------ format.c */

struct seg_header {
	uint64_t segment_seq;
	uint64_t base_seq;
	uint64_t segment_max;
	uint32_t codec;
	uint32_t level;
	struct spool_identity id;
};

struct frame_header {
	uint32_t codec;
	uint64_t first_seq;
	uint32_t count;
	uint32_t data_len;
	uint32_t raw_len;
	uint32_t stored_len;
	int64_t first_ts, last_ts;
	uint32_t payload_crc;
};

struct footer {
	uint32_t frames;
	uint64_t first_seq, last_seq, records, raw_bytes, stored_bytes;
};

struct progress {
	uint64_t generation;
	uint64_t next_seq;
	uint64_t next_off;
};

void put_u32(uint8_t *p, uint32_t v);
void put_u64(uint8_t *p, uint64_t v);
uint32_t get_u32(const uint8_t *p);
uint64_t get_u64(const uint8_t *p);
/* CRC-32C (crc.c); spool_crc_update(0, ...) == spool_crc(...). */
uint32_t spool_crc(const void *p, size_t len);
uint32_t spool_crc_update(uint32_t crc, const void *p, size_t len);
size_t varint_put(uint8_t *p, uint64_t v);
/* Returns bytes consumed, 0 if malformed or truncated. */
size_t varint_get(const uint8_t *p, size_t len, uint64_t *v);
uint64_t zigzag(int64_t v);
/* A record's time as whole microseconds after its frame's first_ts
 * (FORMAT.md §3.2), and back. Wrapping arithmetic, C division. */
int64_t ts_us(int64_t ts, int64_t first);
int64_t ts_from_us(int64_t first, int64_t us);
int64_t unzigzag(uint64_t v);

void seg_header_encode(uint8_t b[SEG_HEADER_LEN], const struct seg_header *h);
bool seg_header_decode(const uint8_t b[SEG_HEADER_LEN], struct seg_header *h);
void frame_header_encode(uint8_t b[FRAME_HEADER_LEN],
    const struct frame_header *f);
/* Checks magic, crc and every limit of FORMAT.md §2. */
bool frame_header_decode(const uint8_t b[FRAME_HEADER_LEN],
    struct frame_header *f);
void footer_encode(uint8_t b[FOOTER_LEN], const struct footer *f);
bool footer_decode(const uint8_t b[FOOTER_LEN], struct footer *f);
void progress_encode(uint8_t b[PROGRESS_SLOT_LEN], const struct progress *p);
bool progress_decode(const uint8_t b[PROGRESS_SLOT_LEN], struct progress *p);

/* One record of a frame, pointing into the raw payload. */
struct rec_ref {
	uint32_t len;
	int64_t ts;
	const uint8_t *data;
};

/* Walks the records of a checked raw payload. */
struct payload_iter {
	const uint8_t *lens, *tss, *data, *end;
	int64_t first_ts, q;
	uint32_t left;
};
/*
 * Checks a raw payload against its header (FORMAT.md §3.2: the columns
 * consume exactly raw_len bytes, lengths sum to data_len, the last
 * timestamp is last_ts) and sets up *it. False if anything disagrees.
 */
bool payload_check(const struct frame_header *f, const uint8_t *raw,
    struct payload_iter *it);
/* The next record; false after the last one. */
bool payload_next(struct payload_iter *it, struct rec_ref *r);

/* ------------------------------------------------------------- codec.c */

/*
 * Frame payloads are raw DEFLATE whatever library writes them: ISA-L at
 * level 1 and libdeflate at the other levels when the build found them,
 * zlib otherwise; libdeflate (else zlib) inflates. zlib's inflate reads
 * every frame any of them writes. No stream holds codec state: a frame
 * borrows a scratch from a small cache shared by all threads (codec.c).
 */
enum codec_backend {
	CODEC_BACKEND_ZLIB,
	CODEC_BACKEND_LIBDEFLATE,
	CODEC_BACKEND_ISAL,		/* deflate only */
};

/* A deflate result, valid until codec_release() gives its scratch back. */
struct codec_out {
	const uint8_t *p;
	struct codec_scratch *held;
};

/*
 * Compresses the concatenation of the iovecs (total bytes) into one
 * complete raw deflate stream at level (1..9) in out->p. Returns its
 * length, or 0 when it does not save at least 1/64 of total (and one
 * byte), level <= 0 or memory is short: store the payload raw. Call
 * codec_release(out) once out->p is written, whatever the result.
 */
size_t codec_deflate(const struct iovec *iov, int iovcnt, size_t total,
    int level, struct codec_out *out);
void codec_release(struct codec_out *out);
/*
 * Inflates exactly raw_len bytes from in_len bytes that must be exactly
 * one complete raw deflate stream.
 */
bool codec_inflate(const uint8_t *in, size_t in_len, uint8_t *out,
    size_t raw_len);
/*
 * For tests and benchmarks: which library deflates (at level 1: ISA-L
 * deflates only there, libdeflate or zlib at other levels) and which
 * inflates, from now on; -1 when the build lacks either.
 */
bool codec_deflater_available(enum codec_backend b);
bool codec_inflater_available(enum codec_backend b);
int codec_backend_force(enum codec_backend deflater,
    enum codec_backend inflater);
enum codec_backend codec_deflater(void);
enum codec_backend codec_inflater(void);
const char *codec_backend_name(enum codec_backend b);

/* --------------------------------------------------------------- err.c */

void spool_seterr(struct spool_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int64_t now_mono_ns(void);
int64_t now_real_ns(void);

/* --------------------------------------------------------------- dir.c */

struct spool_dir {
	char *path;
	int fd;
	struct spool_limits lim;
	/* This process's open streams (their live blocks), under mu. */
	LIST_HEAD(, stream_live) lives;
	/* Their stored bytes and segments (updated per frame / deletion), and
	 * their staged bytes (per append, only when total_max is set). */
	_Atomic uint64_t stored_bytes, staged_bytes;
	/* Bytes the streams' budget credits hold: counted as used until
	 * appended (budget.c). */
	_Atomic uint64_t reserved;
	_Atomic uint32_t segments;
	/* budget.c caches, under mu */
	pthread_mutex_t mu;
	int64_t free_at_ns;
	uint64_t free_bytes;
	uint64_t written_since_free;
	int64_t others_at_ns;
	uint64_t others_bytes;
};

bool stream_name_valid(const char *name);
bool seg_name_parse(const char *name, uint64_t *seq, bool *sealed);
void seg_name(char *buf, size_t len, uint64_t seq, bool sealed);

/* Segments of a stream dir, sorted by segment seq. */
struct seg_entry {
	uint64_t seq;
	bool sealed;
};
int list_segments(int sfd, struct seg_entry **out, size_t *n);
int list_segments_at(int dfd, const char *name, struct seg_entry **out,
    size_t *n);
int open_stream_dir(struct spool_dir *d, const char *name,
    struct spool_err *err);
int remove_dir_entry(struct spool_dir *d, const char *name,
    struct spool_err *err);
/*
 * Opens an existing file of a stream dir (flags: the access mode, maybe
 * O_CREAT|O_EXCL) with O_NOFOLLOW|O_CLOEXEC|O_NONBLOCK, so a FIFO there
 * never blocks, and refuses anything but a regular file: the fd, or
 * -errno, or -SPOOL_ENOTREG.
 */
int open_regular(int dirfd, const char *name, int flags, mode_t mode);

/* ------------------------------------------------------------ writer.c */

/*
 * What the writer publishes for a cursor of the same process. Shared,
 * reference counted (the stream and its cursor each hold one). The
 * writer changes cur_seg/cur_end/written only under mu, after the bytes
 * are in the file (or, for written, after dropping staged records that
 * were all acknowledged); the cursor reads them under mu. Counters are
 * atomics.
 */
struct stream_live {
	pthread_mutex_t mu;
	int refs;			/* under mu */
	bool writer_gone;		/* under mu */
	uint64_t cur_seg;		/* segment being written */
	uint64_t cur_end;		/* end of its last complete frame, 0 if
					 * the file does not exist */
	uint64_t written;		/* the record after the last one in a
					 * complete frame (or discarded, all
					 * acknowledged, FORMAT.md §4) */
	/*
	 * The last frame could not be written (disk full, ...): the staged
	 * records stay in memory and the cursor may read them from there
	 * (live_staged_copy). While stalled, the writer changes its staging
	 * only under mu; otherwise the cursor never touches it.
	 */
	bool stalled;			/* under mu */
	struct spool_stream *w;		/* under mu; NULL once closed */
	enum spool_fsync fsync;
	struct spool_dir *dir;
	LIST_ENTRY(stream_live) link;	/* in dir->lives, under dir->mu */
	_Atomic uint64_t stored_bytes;
	_Atomic uint32_t segments;
	/*
	 * Single-writer counters, so the hot path needs no locked
	 * read-modify-write: records/raw_bytes only the writer stores,
	 * acked_* only the cursor. pending = appended - acknowledged.
	 */
	_Atomic uint64_t records, raw_bytes;
	_Atomic uint64_t acked_records, acked_bytes;
};
/* Adds v to a counter only the calling thread stores to. */
static inline void
own_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) +
	    v, memory_order_relaxed);
}
static inline uint64_t
live_pending_records(struct stream_live *l)
{
	return atomic_load_explicit(&l->records, memory_order_relaxed) -
	    atomic_load_explicit(&l->acked_records, memory_order_relaxed);
}
static inline uint64_t
live_pending_bytes(struct stream_live *l)
{
	return atomic_load_explicit(&l->raw_bytes, memory_order_relaxed) -
	    atomic_load_explicit(&l->acked_bytes, memory_order_relaxed);
}
void live_unref(struct stream_live *l);

/*
 * The budget admits len more bytes without the dir's lock (budget.c):
 * within stream_max, and the dir has no limit or the credit covers them.
 */
static inline bool
budget_covered(const struct spool_dir *d, struct stream_live *l,
    uint64_t credit, uint64_t len)
{
	return (d->lim.stream_max == 0 ||
	    live_pending_bytes(l) + len <= d->lim.stream_max) &&
	    ((d->lim.total_max == 0 && d->lim.min_free == 0) || len <= credit);
}

struct spool_dir *stream_dir(const struct spool_stream *s);
struct stream_live *stream_live(const struct spool_stream *s);
struct stream_live *stream_live_ref(struct spool_stream *s);
uint64_t stream_staged_bytes(const struct spool_stream *s);
/* The stream's budget credit (budget.c), under the stream's owner. */
uint64_t *stream_credit(struct spool_stream *s);
/* An append of bytes used that much of the credit. */
/* The drops and errors a status publish gave (status.c), for the close. */
void stream_note_published(struct spool_stream *s, uint64_t drops,
    uint64_t errors);

/* ------------------------------------------------------------ status.c */

/* Appends the closing stream's line to the dir's ledger (FORMAT.md §9). */
int ledger_append(struct spool_dir *d, const char *name, uint64_t drops,
    uint64_t errors, bool kept);
/* Writes the status file, released or not (status.c). */
int status_write(struct spool_stream *s, const struct spool_status *st,
    bool released, struct spool_err *err);
/*
 * Under l->mu, for the cursor: when the writer is stalled, its staged
 * records as one stored frame (header in *fh, raw payload copied into
 * *buf of *cap bytes, grown as needed). 1 if there is one, 0 if not,
 * -ENOMEM.
 */
int live_staged_copy(struct stream_live *l, struct frame_header *fh,
    uint8_t **buf, size_t *cap);

/* ------------------------------------------------------------ segread.c */

/*
 * A reader of one segment file. pos moves forward only; every step makes
 * progress of at least one byte or ends, so a scan terminates on any input.
 */
struct segread {
	int fd;
	uint64_t seq;
	bool sealed;		/* file name says .seg */
	bool header_ok;
	struct seg_header hdr;
	uint64_t pos;		/* next frame header */
	uint64_t skip_below;	/* frames wholly below this seq: header only */
	uint64_t size;		/* file size */
	uint64_t limit;		/* end of frame data: size, size - footer, or
				 * the writer's published end */
	bool footer_seen;
	struct footer footer;
	/* Last frame read (valid after SR_FRAME). */
	struct frame_header fh;
	uint64_t fh_off;
	uint8_t *stored;	/* payload buffer */
	size_t stored_cap;
	/*
	 * raw holds the payload of the last frame loaded whole (SR_FRAME
	 * with its payload checked, or segread_adopt), and it, and every
	 * copy a caller keeps of it, point into raw. A frame is decoded into
	 * spare and the two swap only once it checked: a frame that fails
	 * (corrupt, torn, I/O) leaves raw and the iterators into it intact.
	 */
	uint8_t *raw;
	size_t raw_cap;
	uint8_t *spare;
	size_t spare_cap;
	struct payload_iter it;
	/* Last corrupt region (valid after SR_CORRUPT). */
	uint64_t bad_off, bad_len;
	bool bad_hdr_ok;	/* a valid header was there, payload bad */
	struct frame_header bad_fh;
};

enum sr_result {
	SR_FRAME,	/* fh filled; it set up when full */
	SR_CORRUPT,	/* bad region skipped: bad_off, bad_len */
	SR_END,		/* footer or end of data */
	SR_TORN,	/* incomplete frame at the end of data (pos unchanged) */
	SR_IO,		/* read error; errno-like value in sr_errno */
};

void segread_init(struct segread *r);
void segread_fini(struct segread *r);
/* Opens <seq>.seg or <seq>.open in sfd; reads the header. */
int segread_open(struct segread *r, int sfd, uint64_t seq, bool sealed);
void segread_close(struct segread *r);
/* Re-reads the file size (for growing files). */
int segread_refresh(struct segread *r);
/*
 * Reads the next frame up to r->limit. With full false only the header is
 * checked; with full the payload crc is checked, the payload inflated and
 * its columns checked. *errp gets the negative errno on SR_IO.
 */
enum sr_result segread_next(struct segread *r, bool full, int *errp);
/*
 * Makes the payload in r->spare, checked by the caller (payload_check
 * gave *it), the current frame *fh: raw and spare swap.
 */
void segread_adopt(struct segread *r, const struct frame_header *fh,
    const struct payload_iter *it);

/* ---------------------------------------------------------- progress.c */

int progress_load(int sfd, struct progress *p);
/* Opens (creating) the progress file of a stream dir, returns fd. */
int progress_open(int sfd);
int progress_store(int fd, struct progress *p, bool sync);

/* ------------------------------------------------------------ budget.c */

void budget_note_written(struct spool_dir *d, uint64_t bytes);

#endif
