/*
 * writer.c — a stream's writer: staging, frames, segments, rotation.
 *
 * Invariants:
 *   - seg_end is the end of the last complete frame of the current segment
 *     (or of its header); the file is never longer than seg_end when a call
 *     returns (a failed write is cut back to seg_end).
 *   - What the writer publishes in live (cur_seg, cur_end, written) is
 *     always already in the file; a cursor of this process never reads past
 *     it, so it never sees half a frame.
 *   - When a frame cannot be written (disk full, ...) the writer is
 *     "stalled": the staged records stay in memory and its cursor may
 *     read the committed ones (those whose append returned) from there,
 *     under live->mu; while stalled every change of the staging is made
 *     under live->mu. Staged records that are all acknowledged are
 *     dropped, never written (FORMAT.md §4).
 *   - A stream holds no zlib state and, with nothing staged, no buffer;
 *     the segment fd is open only between the first frame written and the
 *     next spool_stream_trim (an idle stream holds no fd).
 */
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

struct stage_buf {
	uint8_t *p;
	size_t len, cap;
	size_t hint;	/* the first reserve's size after a full frame */
};

struct spool_stream {
	struct spool_dir *dir;
	struct stream_live *live;
	char name[SPOOL_NAME_MAX];
	/* While it is made: its dir is tmp, renamed to name once the first
	 * segment's header says whose it is (spool_stream_create). */
	bool creating;
	char tmp[SPOOL_NAME_MAX];
	struct spool_identity id;
	struct spool_options opt;

	/* Current segment. */
	int seg_fd;
	uint64_t seg_seq;
	bool seg_exists;
	uint64_t seg_end;
	struct footer seg_sum;	/* frames written to it so far */

	/* Staging: the three columns of the next frame (FORMAT.md §3.2). */
	struct stage_buf lens, tss, data;
	uint32_t st_count;
	uint64_t st_first_seq;
	int64_t st_first_ts, st_last_ts;
	int64_t st_last_q;	/* ts_us() of the last staged record */
	int64_t st_since;
	/* The committed prefix of the staging: what the cursor may read
	 * while stalled (an append in progress may still be undone). */
	size_t c_lens, c_tss, c_data;
	uint32_t c_count;
	int64_t c_last_ts;
	bool stalled;		/* the last frame write failed; see live */
	bool refill;		/* forming a frame because it was full */
	uint64_t w_end;		/* published as live->written */

	uint64_t next_seq;
	int64_t last_sync_ns;
	bool unsynced;
	/* defer_sync: a name made or renamed in the stream dir since its last
	 * fsync; sealed segments not synced yet, their fds kept for the
	 * owner's next sync job. */
	bool dir_unsynced;
	uint64_t sealed_lo, sealed_hi;	/* [lo, hi): sealed, not synced */
	/* The stream dir's own name (the rename of tmp in the spool dir)
	 * not yet synced: the spool dir's fsync is owed, or after a power
	 * loss the stream could come back as `.new`, which the sweep
	 * deletes (FORMAT.md §1). */
	bool parent_unsynced;
	bool parent_synced;	/* that fsync was made and succeeded */

	/* Budget checked ahead (budget.c): appends up to this many bytes
	 * need no look at the dir's limits. */
	uint64_t credit;
	/*
	 * Bytes appends took from credit into the staging that the dir's
	 * counters do not show yet: dir->reserved still holds them (as
	 * credit), dir->staged_bytes lacks them. The dir's staged + reserved,
	 * the sum budget.c's total_max reads, is exact at all times; the
	 * move is made when a frame is formed (dir_sync), not by two shared
	 * atomics per record. Until then min_free counts them as reserved,
	 * which they are: bytes about to be written. dir_sync before
	 * anything that takes this stream's staging or credit out of the
	 * dir's counters. Bytes staged beyond the credit (an owner that did
	 * not check the budget) go to staged_bytes at once.
	 */
	uint64_t unpub;

	/* From the last spool_status_publish, for the close. */
	uint64_t pub_drops, pub_errors;
	int64_t expires_ns;	/* of the released status; 0: none */
	char release_state[16];	/* of the released status; "": orphan */
};

void
spool_options_default(struct spool_options *o)
{
	o->segment_max = 64ull << 20;
	o->frame_target = 128u << 10;
	o->level = 1;
	o->fsync = SPOOL_FSYNC_INTERVAL;
	o->fsync_interval_ms = 1000;
	o->defer_sync = false;
}

void
live_unref(struct stream_live *l)
{
	bool last;

	pthread_mutex_lock(&l->mu);
	last = --l->refs == 0;
	pthread_mutex_unlock(&l->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&l->mu);
	free(l);
}

const char *
spool_stream_name(const struct spool_stream *s)
{
	return s->name;
}

static void
seg_path(const struct spool_stream *s, char *buf, size_t len, uint64_t seq,
    bool sealed)
{
	char f[32];

	seg_name(f, sizeof(f), seq, sealed);
	snprintf(buf, len, "%s/%s", s->creating ? s->tmp : s->name, f);
}

/* The owner syncs (spool_stream_sync_take): the writer never does. */
static bool
deferred(const struct spool_stream *s)
{
	return s->opt.defer_sync && s->opt.fsync == SPOOL_FSYNC_INTERVAL;
}

/* fsync of the stream dir, so new names and renames survive power loss. */
static int
sync_stream_dir(struct spool_stream *s)
{
	int fd, rc = 0;

	if (deferred(s)) {
		s->dir_unsynced = true;
		return 0;
	}
	fd = sysio_openat(s->dir->fd, s->creating ? s->tmp : s->name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (sysio_fsync(fd) == -1)
		rc = -errno;
	sysio_close(fd);
	return rc;
}

static void
publish(struct spool_stream *s)
{
	struct stream_live *l = s->live;

	pthread_mutex_lock(&l->mu);
	l->cur_seg = s->seg_seq;
	l->cur_end = s->seg_exists ? s->seg_end : 0;
	l->written = s->w_end;
	l->stalled = s->stalled;
	pthread_mutex_unlock(&l->mu);
}

/* Changes of the staging take live->mu while the cursor may read it. */
static void
stage_lock(struct spool_stream *s)
{
	if (s->stalled)
		pthread_mutex_lock(&s->live->mu);
}

static void
stage_unlock(struct spool_stream *s, bool locked)
{
	if (locked)
		pthread_mutex_unlock(&s->live->mu);
}

static void
stored_add(struct spool_stream *s, int64_t bytes, int32_t segs)
{
	atomic_fetch_add(&s->live->stored_bytes, (uint64_t)bytes);
	atomic_fetch_add(&s->dir->stored_bytes, (uint64_t)bytes);
	atomic_fetch_add(&s->live->segments, (uint32_t)segs);
	atomic_fetch_add(&s->dir->segments, (uint32_t)segs);
	if (bytes > 0)
		budget_note_written(s->dir, (uint64_t)bytes);
}

/* Shows the dir what this stream's appends took (see unpub_staged). */
static void
dir_sync(struct spool_stream *s)
{
	if (s->unpub == 0)
		return;
	if (s->dir->lim.total_max != 0)
		atomic_fetch_add(&s->dir->staged_bytes, s->unpub);
	atomic_fetch_sub(&s->dir->reserved, s->unpub);
	s->unpub = 0;
}

/* Writes all of iov at off; on failure cuts the file back to off. */
static int
pwritev_all(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
	uint64_t pos = off;
	ssize_t n;
	int rc;

	while (iovcnt > 0) {
		n = sysio_pwritev(fd, iov, iovcnt, (off_t)pos);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n == 0 ? -EIO : -errno;
			if (ftruncate(fd, (off_t)off) == -1)
				return -errno;
			return rc;
		}
		pos += (uint64_t)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int
seg_open_fd(struct spool_stream *s, struct spool_err *err)
{
	char path[64];

	if (s->seg_fd != -1)
		return 0;
	seg_path(s, path, sizeof(path), s->seg_seq, false);
	s->seg_fd = sysio_openat(s->dir->fd, path, O_WRONLY | O_NOFOLLOW |
	    O_CLOEXEC, 0);
	if (s->seg_fd == -1) {
		spool_seterr(err, "%s/%s: open: %s", s->dir->path, path,
		    strerror(errno));
		return -errno;
	}
	return 0;
}

/* Creates segment seg_seq (.open) with its header; base is its first seq. */
static int
seg_create(struct spool_stream *s, uint64_t base, struct spool_err *err)
{
	uint8_t b[SEG_HEADER_LEN];
	struct seg_header h;
	struct iovec iov;
	char path[64];
	int fd, rc;

	seg_path(s, path, sizeof(path), s->seg_seq, false);
	fd = sysio_openat(s->dir->fd, path, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1) {
		rc = -errno;
		spool_seterr(err, "%s/%s: create: %s", s->dir->path, path,
		    strerror(errno));
		return rc;
	}
	memset(&h, 0, sizeof(h));
	h.segment_seq = s->seg_seq;
	h.base_seq = base;
	h.segment_max = s->opt.segment_max;
	h.codec = CODEC_DEFLATE;
	h.level = (uint32_t)s->opt.level;
	h.id = s->id;
	seg_header_encode(b, &h);
	iov.iov_base = b;
	iov.iov_len = sizeof(b);
	if ((rc = pwritev_all(fd, &iov, 1, 0)) == 0 &&
	    s->opt.fsync == SPOOL_FSYNC_ALWAYS && sysio_fdatasync(fd) == -1)
		rc = -errno;
	if (rc == 0 && s->opt.fsync != SPOOL_FSYNC_NEVER)
		rc = sync_stream_dir(s);
	if (rc < 0) {
		spool_seterr(err, "%s/%s: write header: %s", s->dir->path,
		    path, strerror(-rc));
		sysio_close(fd);
		unlinkat(s->dir->fd, path, 0);
		return rc;
	}
	s->seg_fd = fd;
	s->seg_exists = true;
	s->seg_end = SEG_HEADER_LEN;
	memset(&s->seg_sum, 0, sizeof(s->seg_sum));
	s->seg_sum.first_seq = base;
	stored_add(s, SEG_HEADER_LEN, 1);
	publish(s);
	return 0;
}

/* Writes the footer, renames .open to .seg; the next segment is not made. */
static int
seg_seal(struct spool_stream *s, struct spool_err *err)
{
	uint8_t b[FOOTER_LEN];
	char from[64], to[64];
	struct iovec iov;
	struct footer f;
	int rc;

	if ((rc = seg_open_fd(s, err)) < 0)
		return rc;
	f = s->seg_sum;
	f.last_seq = f.first_seq + f.records - 1;
	f.stored_bytes = s->seg_end + FOOTER_LEN;
	footer_encode(b, &f);
	iov.iov_base = b;
	iov.iov_len = sizeof(b);
	seg_path(s, from, sizeof(from), s->seg_seq, false);
	seg_path(s, to, sizeof(to), s->seg_seq, true);
	if ((rc = pwritev_all(s->seg_fd, &iov, 1, s->seg_end)) == 0 &&
	    s->opt.fsync != SPOOL_FSYNC_NEVER &&
	    !deferred(s) &&
	    sysio_fdatasync(s->seg_fd) == -1)
		rc = -errno;
	if (rc == 0 && renameat(s->dir->fd, from, s->dir->fd, to) == -1)
		rc = -errno;
	if (rc < 0) {
		spool_seterr(err, "%s/%s: seal: %s", s->dir->path, from,
		    strerror(-rc));
		if (ftruncate(s->seg_fd, (off_t)s->seg_end) == -1)
			rc = -errno;
		return rc;
	}
	if (deferred(s)) {
		/* Synced by the owner's next job, by its new name (no fd is
		 * kept: a delivered segment may be gone by then). */
		if (s->sealed_lo == s->sealed_hi)
			s->sealed_lo = s->seg_seq;
		s->sealed_hi = s->seg_seq + 1;
		s->dir_unsynced = true;
	}
	sysio_close(s->seg_fd);
	s->seg_fd = -1;
	s->seg_exists = false;
	s->unsynced = false;
	stored_add(s, FOOTER_LEN, 0);
	s->seg_seq++;
	/* cur_seg moves on only when the next segment exists (seg_create). */
	return 0;
}

/*
 * The buffer goes. Its size is the next one's first if it was at most
 * keep (a frame formed because it was full: the writer fills the next as
 * fast, and growing it again from 256 bytes cost about 60 instructions
 * per 28-byte record in reallocs and their copies). keep is what a frame
 * needs, not what a large record took: one 16 MiB record must not make
 * every later frame of the stream ask for 16 MiB.
 */
static void
stage_free(struct stage_buf *b, size_t keep)
{
	b->hint = b->cap <= keep ? b->cap : 0;
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Empties the staging (its records are in a frame, or dropped). */
static void
stage_clear(struct spool_stream *s)
{
	/* Doubling from 256 gives a frame's bytes less than four times
	 * frame_target (twice, when it is 256 times a power of two). */
	size_t keep = s->refill ? 4 * (size_t)s->opt.frame_target : 0;

	s->st_count = 0;
	s->st_since = 0;
	s->c_lens = s->c_tss = s->c_data = 0;
	s->c_count = 0;
	stage_free(&s->lens, keep);
	stage_free(&s->tss, keep);
	stage_free(&s->data, keep);
}

/* The records staged so far are committed: the cursor may read them. */
static void
stage_commit(struct spool_stream *s)
{
	bool locked = s->stalled;

	stage_lock(s);
	s->c_lens = s->lens.len;
	s->c_tss = s->tss.len;
	s->c_data = s->data.len;
	s->c_count = s->st_count;
	s->c_last_ts = s->st_last_ts;
	stage_unlock(s, locked);
}

int
live_staged_copy(struct stream_live *l, struct frame_header *fh,
    uint8_t **buf, size_t *cap)
{
	struct spool_stream *s = l->w;
	size_t raw;
	uint8_t *p;

	if (s == NULL || !l->stalled || s->c_count == 0)
		return 0;
	raw = s->c_lens + s->c_tss + s->c_data;
	if (*cap < raw + 1) {
		if ((p = realloc(*buf, raw + 1)) == NULL)
			return -ENOMEM;
		*buf = p;
		*cap = raw + 1;
	}
	memcpy(*buf, s->lens.p, s->c_lens);
	memcpy(*buf + s->c_lens, s->tss.p, s->c_tss);
	if (s->c_data > 0)
		memcpy(*buf + s->c_lens + s->c_tss, s->data.p, s->c_data);
	memset(fh, 0, sizeof(*fh));
	fh->codec = CODEC_STORED;
	fh->first_seq = s->st_first_seq;
	fh->count = s->c_count;
	fh->data_len = (uint32_t)s->c_data;
	fh->raw_len = fh->stored_len = (uint32_t)raw;
	fh->first_ts = s->st_first_ts;
	fh->last_ts = s->c_last_ts;
	return 1;
}

/* Is there room in b for more bytes without growing it? */
static inline bool
stage_fits(const struct stage_buf *b, size_t more)
{
	return b->len + more <= b->cap;
}

static int
stage_reserve(struct stage_buf *b, size_t more)
{
	size_t cap;
	uint8_t *p;

	if (stage_fits(b, more))
		return 0;
	cap = b->cap ? b->cap : b->hint ? b->hint : 256;
	b->hint = 0;	/* once: a failed allocation asks for less next */
	while (cap < b->len + more)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static size_t
staged_raw(const struct spool_stream *s)
{
	return s->lens.len + s->tss.len + s->data.len;
}

static int
sync_policy(struct spool_stream *s, bool force)
{
	int64_t now;

	if (s->opt.fsync == SPOOL_FSYNC_NEVER || !s->unsynced ||
	    s->seg_fd == -1 || deferred(s))
		return 0;
	now = now_mono_ns();
	if (!force && s->opt.fsync == SPOOL_FSYNC_INTERVAL &&
	    now - s->last_sync_ns < (int64_t)s->opt.fsync_interval_ms * 1000000)
		return 0;
	if (sysio_fdatasync(s->seg_fd) == -1)
		return -errno;
	if (s->parent_unsynced) {
		if (sysio_fsync(s->dir->fd) == -1)
			return -errno;
		s->parent_synced = true;
		s->parent_unsynced = false;
	}
	s->last_sync_ns = now;
	s->unsynced = false;
	return 0;
}

/* Makes sure the frame of frame_len bytes has a segment to go to. */
static int
frame_room(struct spool_stream *s, uint64_t frame_len, struct spool_err *err)
{
	int rc;

	if (s->seg_exists && s->seg_sum.frames > 0 &&
	    s->seg_end + frame_len + FOOTER_LEN > s->opt.segment_max) {
		if ((rc = sync_policy(s, true)) < 0 ||
		    (rc = seg_seal(s, err)) < 0)
			return rc;
	}
	if (!s->seg_exists)
		return seg_create(s, s->st_first_seq, err);
	return seg_open_fd(s, err);
}

static uint32_t
crc32_cols(const struct iovec cols[3])
{
	uint32_t crc = 0;
	int i;

	for (i = 0; i < 3; i++)
		if (cols[i].iov_len > 0)
			crc = spool_crc_update(crc, cols[i].iov_base,
			    cols[i].iov_len);
	return crc;
}

/*
 * Forms one frame of everything staged and writes it with one pwritev;
 * then the fdatasync the policy owes, unless sync is false (the caller
 * calls spool_stream_sync soon; never skipped with SPOOL_FSYNC_ALWAYS).
 */
static int
write_frame(struct spool_stream *s, bool sync, struct spool_err *err)
{
	struct iovec cols[3], iov[4];
	uint8_t hb[FRAME_HEADER_LEN];
	struct frame_header fh;
	struct codec_out z;
	size_t raw, zlen;
	int rc, n;

	raw = staged_raw(s);
	cols[0] = (struct iovec){ s->lens.p, s->lens.len };
	cols[1] = (struct iovec){ s->tss.p, s->tss.len };
	cols[2] = (struct iovec){ s->data.p, s->data.len };
	zlen = codec_deflate(cols, 3, raw, s->opt.level, &z);
	memset(&fh, 0, sizeof(fh));
	fh.first_seq = s->st_first_seq;
	fh.count = s->st_count;
	fh.data_len = (uint32_t)s->data.len;
	fh.raw_len = (uint32_t)raw;
	fh.first_ts = s->st_first_ts;
	fh.last_ts = s->st_last_ts;
	iov[0] = (struct iovec){ hb, sizeof(hb) };
	if (zlen > 0) {
		fh.codec = CODEC_DEFLATE;
		fh.stored_len = (uint32_t)zlen;
		fh.payload_crc = spool_crc(z.p, zlen);
		iov[1] = (struct iovec){ (void *)z.p, zlen };
		n = 2;
	} else {
		fh.codec = CODEC_STORED;
		fh.stored_len = (uint32_t)raw;
		fh.payload_crc = crc32_cols(cols);
		memcpy(iov + 1, cols, sizeof(cols));
		n = 4;
	}
	frame_header_encode(hb, &fh);
	if ((rc = frame_room(s, FRAME_HEADER_LEN + fh.stored_len, err)) < 0) {
		codec_release(&z);
		return rc;
	}
	rc = pwritev_all(s->seg_fd, iov, n, s->seg_end);
	codec_release(&z);
	if (rc == 0) {
		s->unsynced = true;
		if ((sync || s->opt.fsync == SPOOL_FSYNC_ALWAYS) &&
		    (rc = sync_policy(s, false)) < 0 &&
		    ftruncate(s->seg_fd, (off_t)s->seg_end) == -1)
			rc = -errno;
	}
	if (rc < 0) {
		spool_seterr(err, "%s/%s: write frame at offset %" PRIu64
		    ": %s", s->dir->path, s->name, s->seg_end, strerror(-rc));
		return rc;
	}
	s->seg_end += FRAME_HEADER_LEN + fh.stored_len;
	s->seg_sum.frames++;
	s->seg_sum.records += fh.count;
	s->seg_sum.raw_bytes += fh.data_len;
	stored_add(s, FRAME_HEADER_LEN + fh.stored_len, 0);
	dir_sync(s);
	if (s->dir->lim.total_max != 0)
		atomic_fetch_sub(&s->dir->staged_bytes, (uint64_t)s->data.len);
	s->w_end = fh.first_seq + fh.count;
	s->stalled = false;
	publish(s);	/* the cursor reads the file now, not the staging */
	stage_clear(s);
	return 0;
}

static void trim_sealed(struct spool_stream *s);

/*
 * Every record appended is acknowledged, the staged ones too: they were
 * delivered from memory while the writer was stalled. They are dropped,
 * never written; and as nothing on disk is pending any more, the segments
 * go as spool_stream_trim would delete them, so the next segment starts
 * at next_seq with no gap before it (FORMAT.md §4).
 */
static void
discard_acked(struct spool_stream *s)
{
	struct stream_live *l = s->live;
	char path[64];

	dir_sync(s);
	if (s->dir->lim.total_max != 0)
		atomic_fetch_sub(&s->dir->staged_bytes, (uint64_t)s->data.len);
	pthread_mutex_lock(&l->mu);
	stage_clear(s);
	s->stalled = false;
	s->w_end = s->next_seq;
	trim_sealed(s);
	if (s->seg_exists) {
		seg_path(s, path, sizeof(path), s->seg_seq, false);
		if (unlinkat(s->dir->fd, path, 0) == 0) {
			stored_add(s, -(int64_t)s->seg_end, -1);
			if (s->seg_fd != -1)
				sysio_close(s->seg_fd);
			s->seg_fd = -1;
			s->seg_exists = false;
			s->unsynced = false;
			s->seg_seq++;
		}
	}
	l->cur_seg = s->seg_seq;
	l->cur_end = s->seg_exists ? s->seg_end : 0;
	l->written = s->w_end;
	l->stalled = false;
	pthread_mutex_unlock(&l->mu);
}

/*
 * Forms one frame of everything staged and writes it with one pwritev;
 * then the fdatasync the policy owes, unless sync is false. On failure
 * the writer is stalled (its cursor reads the staged records from
 * memory) until a frame is written or the records are dropped.
 */
static int
form_frame_sync(struct spool_stream *s, bool sync, struct spool_err *err)
{
	int rc;

	if (s->st_count == 0)
		return 0;
	if (live_pending_records(s->live) == 0) {
		discard_acked(s);
		return 0;
	}
	if ((rc = write_frame(s, sync, err)) < 0 && !s->stalled) {
		s->stalled = true;
		publish(s);
	}
	return rc;
}

static int
form_frame(struct spool_stream *s, struct spool_err *err)
{
	return form_frame_sync(s, true, err);
}

static void
clamp_options(struct spool_options *o)
{
	if (o->segment_max < SPOOL_SEGMENT_MIN)
		o->segment_max = SPOOL_SEGMENT_MIN;
	if (o->segment_max > SPOOL_SEGMENT_MAX)
		o->segment_max = SPOOL_SEGMENT_MAX;
	if (o->frame_target > FRAME_TARGET_MAX)
		o->frame_target = FRAME_TARGET_MAX;
	if (o->level < 0)
		o->level = 0;
	if (o->level > 9)
		o->level = 9;
	if (o->fsync != SPOOL_FSYNC_INTERVAL && o->fsync != SPOOL_FSYNC_ALWAYS)
		o->fsync = SPOOL_FSYNC_NEVER;
}

/* mkdir of a fresh stream dir under a random id; retries on EEXIST. */
/* tmp -> name, never over an existing stream (renameat2 NOREPLACE; where
 * the file system has no such flag, only if name does not exist). */
static int
show_stream_dir(struct spool_stream *s, struct spool_err *err)
{
	long r = syscall(SYS_renameat2, s->dir->fd, s->tmp, s->dir->fd,
	    s->name, RENAME_NOREPLACE);

	if (r == -1 && (errno == EINVAL || errno == ENOSYS ||
	    errno == EPERM)) {	/* EPERM: a seccomp filter's answer */
		if (faccessat(s->dir->fd, s->name, F_OK,
		    AT_SYMLINK_NOFOLLOW) == 0)
			errno = EEXIST;
		else
			r = renameat(s->dir->fd, s->tmp, s->dir->fd, s->name);
	}
	if (r == -1) {
		spool_seterr(err, "%s/%s: rename to %s: %s", s->dir->path,
		    s->tmp, s->name, strerror(errno));
		return -errno;
	}
	return 0;
}

static int
make_stream_dir(struct spool_stream *s, struct spool_err *err)
{
	int tries;

	for (tries = 0; tries < 64; tries++) {
		s->id.stream_id = (uint64_t)arc4random() << 32 | arc4random();
		snprintf(s->name, sizeof(s->name), "%016" PRIx64,
		    s->id.stream_id);
		/* Made under a name no reader takes for a stream, and shown
		 * under its own once whole (see spool_stream_create). */
		snprintf(s->tmp, sizeof(s->tmp), "%016" PRIx64 ".new",
		    s->id.stream_id);
		if (faccessat(s->dir->fd, s->name, F_OK,
		    AT_SYMLINK_NOFOLLOW) == 0)
			continue;	/* the id is taken */
		if (mkdirat(s->dir->fd, s->tmp, 0700) == 0)
			return 0;
		if (errno != EEXIST) {
			spool_seterr(err, "%s/%s: mkdir: %s", s->dir->path,
			    s->tmp, strerror(errno));
			return -errno;
		}
	}
	spool_seterr(err, "%s: no free stream id", s->dir->path);
	return -EEXIST;
}

int
spool_stream_create(struct spool_dir *d, struct spool_identity *id,
    const struct spool_options *o, struct spool_stream **out,
    struct spool_err *err)
{
	struct spool_stream *s;
	struct stream_live *l;
	int rc;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (l = calloc(1, sizeof(*l))) == NULL) {
		free(s);
		spool_seterr(err, "%s: out of memory", d->path);
		return -ENOMEM;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->refs = 1;
	l->dir = d;
	l->w = s;
	s->dir = d;
	s->live = l;
	s->seg_fd = -1;
	s->id = *id;
	s->id.local[SPOOL_ADDR_MAX - 1] = '\0';
	s->id.peer[SPOOL_ADDR_MAX - 1] = '\0';
	if (s->id.created_ns == 0)
		s->id.created_ns = now_real_ns();
	if (o != NULL)
		s->opt = *o;
	else
		spool_options_default(&s->opt);
	clamp_options(&s->opt);
	l->fsync = s->opt.fsync;
	s->last_sync_ns = now_mono_ns();
	if ((rc = make_stream_dir(s, err)) < 0)
		goto fail;
	/*
	 * The stream dir appears whole: made as tmp, its first segment's
	 * header written (whose it is: pid, fd, addresses), then renamed. A
	 * reader (tcpspool ls, rm --orphans) never sees a stream without a
	 * writer it can name, nor a segment without its header.
	 */
	s->creating = true;
	rc = seg_create(s, 0, err);
	if (rc == 0) {
		sysio_close(s->seg_fd);	/* idle until the first frame */
		s->seg_fd = -1;
		if ((rc = show_stream_dir(s, err)) < 0)	/* its header: */
			stored_add(s, -(int64_t)SEG_HEADER_LEN, -1);
	}
	if (rc < 0) {
		char path[64];

		seg_path(s, path, sizeof(path), 0, false);
		(void)unlinkat(d->fd, path, 0);
		(void)unlinkat(d->fd, s->tmp, AT_REMOVEDIR);
		s->creating = false;
		goto fail;
	}
	s->creating = false;
	/* Owed with the first data sync (sync_policy) or the owner's next
	 * job (deferred): never a wait of its own on the append path. */
	s->parent_unsynced = s->opt.fsync != SPOOL_FSYNC_NEVER;
	id->stream_id = s->id.stream_id;
	pthread_mutex_lock(&d->mu);
	LIST_INSERT_HEAD(&d->lives, l, link);
	pthread_mutex_unlock(&d->mu);
	*out = s;
	return 0;
fail:
	live_unref(l);
	free(s);
	return rc;
}

/* Removes the last staged record (its append failed). */
static void
stage_rollback(struct spool_stream *s, size_t lens, size_t tss, size_t data,
    int64_t last_ts, int64_t last_q)
{
	s->lens.len = lens;
	s->tss.len = tss;
	s->data.len = data;
	s->st_last_ts = last_ts;
	s->st_last_q = last_q;
	if (--s->st_count == 0)
		s->st_since = 0;
}

/* Pending and staged counters of a record being appended (or undone). */
static inline void
pending_add(struct spool_stream *s, int64_t recs, int64_t bytes)
{
	uint64_t take = 0;

	if (bytes > 0 && s->credit > 0) {
		take = (uint64_t)bytes < s->credit ? (uint64_t)bytes :
		    s->credit;
		s->credit -= take;
		s->unpub += take;
	}
	if (s->dir->lim.total_max != 0 && bytes != (int64_t)take)
		atomic_fetch_add(&s->dir->staged_bytes,
		    (uint64_t)(bytes - (int64_t)take));
	own_add(&s->live->records, (uint64_t)recs);
	own_add(&s->live->raw_bytes, (uint64_t)bytes);
}

/*
 * memcpy, inline for the small records most spooled writes are (a call
 * into libc's memcpy cost more than the copy of 28 bytes): two
 * overlapping fixed-size moves for 4..32 bytes.
 */
static inline void
copy_record(uint8_t *d, const uint8_t *p, size_t n)
{
	uint64_t a, b;
	uint32_t x, y;

	if (n > 32) {
		memcpy(d, p, n);
	} else if (n > 16) {
		memcpy(d, p, 16);
		memcpy(d + n - 16, p + n - 16, 16);
	} else if (n >= 8) {
		memcpy(&a, p, 8);
		memcpy(&b, p + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
	} else if (n >= 4) {
		memcpy(&x, p, 4);
		memcpy(&y, p + n - 4, 4);
		memcpy(d, &x, 4);
		memcpy(d + n - 4, &y, 4);
	} else {
		while (n-- > 0)
			*d++ = *p++;
	}
}

static int
stage_record(struct spool_stream *s, const struct iovec *iov, int iovcnt,
    size_t len, int64_t ts)
{
	int64_t q = s->st_count ? ts_us(ts, s->st_first_ts) : 0;
	int64_t prev_q = s->st_count ? s->st_last_q : 0;
	int i;

	if (stage_reserve(&s->lens, VARINT_MAX) < 0 ||
	    stage_reserve(&s->tss, VARINT_MAX) < 0 ||
	    stage_reserve(&s->data, len) < 0)
		return -ENOMEM;
	s->lens.len += varint_put(s->lens.p + s->lens.len, len);
	s->tss.len += varint_put(s->tss.p + s->tss.len,
	    zigzag((int64_t)((uint64_t)q - (uint64_t)prev_q)));
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0)
			continue;
		copy_record(s->data.p + s->data.len, iov[i].iov_base,
		    iov[i].iov_len);
		s->data.len += iov[i].iov_len;
	}
	if (s->st_count++ == 0) {
		s->st_first_seq = s->next_seq;
		s->st_first_ts = ts;
		s->st_since = now_mono_ns();
	}
	s->st_last_ts = ts;
	s->st_last_q = q;
	return 0;
}

int64_t
spool_stream_append(struct spool_stream *s, const struct iovec *iov,
    int iovcnt, int64_t ts_ns, struct spool_err *err)
{
	size_t len = 0, ol, ot, od;
	int64_t olast, olastq;
	bool locked;
	int i, rc;

	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > SPOOL_RECORD_MAX - len) {
			spool_seterr(err, "%s: record larger than %u bytes",
			    s->name, SPOOL_RECORD_MAX);
			return -EMSGSIZE;
		}
		len += iov[i].iov_len;
	}
	/* Stalled, and everything staged already delivered from memory:
	 * drop it now, or this record could never join a frame. */
	if (s->stalled && s->st_count > 0 &&
	    live_pending_records(s->live) == 0)
		discard_acked(s);
	/* A frame's raw payload stays within SPOOL_FRAME_RAW_MAX. */
	if (staged_raw(s) + len + 2 * VARINT_MAX > SPOOL_FRAME_RAW_MAX &&
	    (rc = form_frame(s, err)) < 0)
		return rc;
	ol = s->lens.len;
	ot = s->tss.len;
	od = s->data.len;
	olast = s->st_last_ts;
	olastq = s->st_last_q;
	locked = s->stalled;
	stage_lock(s);
	rc = stage_record(s, iov, iovcnt, len, ts_ns);
	stage_unlock(s, locked);
	if (rc < 0) {
		spool_seterr(err, "%s: staging: out of memory", s->name);
		return rc;
	}
	/* Pending before the frame is published: a cursor may ack it at once. */
	pending_add(s, 1, (int64_t)len);
	if (s->opt.fsync == SPOOL_FSYNC_ALWAYS || s->opt.frame_target == 0 ||
	    staged_raw(s) >= s->opt.frame_target) {
		s->refill = s->opt.frame_target != 0 &&
		    staged_raw(s) >= s->opt.frame_target;
		rc = form_frame(s, err);
		s->refill = false;
		if (rc < 0) {
			pending_add(s, -1, -(int64_t)len);
			locked = s->stalled;
			stage_lock(s);
			stage_rollback(s, ol, ot, od, olast, olastq);
			stage_unlock(s, locked);
			return rc;
		}
	}
	stage_commit(s);
	return (int64_t)s->next_seq++;
}

int64_t
spool_stream_append_quick(struct spool_stream *s, const void *p, size_t len,
    int64_t ts_ns)
{
	struct iovec iov = { (void *)p, len };

	/* What spool_stream_append would do beyond staging: its first
	 * record (the staged-since time starts), a frame formed before or
	 * after it, a stalled writer's locking, a buffer to grow; and what
	 * spool_budget_check would do beyond a look: refuse, or take the
	 * dir's lock for more credit. */
	if (s->st_count == 0 || s->stalled || len == 0 ||
	    len > SPOOL_RECORD_MAX || s->opt.fsync == SPOOL_FSYNC_ALWAYS ||
	    staged_raw(s) + len + 2 * VARINT_MAX >= s->opt.frame_target ||
	    !stage_fits(&s->lens, VARINT_MAX) ||
	    !stage_fits(&s->tss, VARINT_MAX) || !stage_fits(&s->data, len) ||
	    !budget_covered(s->dir, s->live, s->credit, len))
		return -1;
	(void)stage_record(s, &iov, 1, len, ts_ns);	/* fits: cannot fail */
	pending_add(s, 1, (int64_t)len);
	stage_commit(s);
	return (int64_t)s->next_seq++;
}

int
spool_stream_flush(struct spool_stream *s, struct spool_err *err)
{
	int rc;

	if ((rc = form_frame(s, err)) < 0)
		return rc;
	if ((rc = sync_policy(s, false)) < 0)
		spool_seterr(err, "%s/%s: fdatasync: %s", s->dir->path,
		    s->name, strerror(-rc));
	return rc;
}

int
spool_stream_flush_nosync(struct spool_stream *s, struct spool_err *err)
{
	return form_frame_sync(s, false, err);
}

int
spool_stream_sync(struct spool_stream *s, struct spool_err *err)
{
	int rc;

	if ((rc = sync_policy(s, false)) < 0)
		spool_seterr(err, "%s/%s: fdatasync: %s", s->dir->path,
		    s->name, strerror(-rc));
	return rc;
}

bool
spool_stream_park(struct spool_stream *s)
{
	if (s->st_count > 0 || s->stalled || spool_stream_sync_owed(s))
		return false;
	if (s->seg_fd != -1)
		sysio_close(s->seg_fd);
	s->seg_fd = -1;
	dir_sync(s);
	atomic_fetch_sub(&s->dir->reserved, s->credit);
	s->credit = 0;
	return true;
}

int64_t
spool_stream_staged_since(const struct spool_stream *s)
{
	return s->st_count ? s->st_since : 0;
}

/* Deletes sealed segments older than the current one (all acknowledged). */
static void
trim_sealed(struct spool_stream *s)
{
	struct seg_entry *v;
	struct stat st;
	char path[64];
	size_t n, i;

	if (list_segments_at(s->dir->fd, s->name, &v, &n) < 0)
		return;
	for (i = 0; i < n; i++) {
		if (!v[i].sealed || v[i].seq >= s->seg_seq)
			continue;
		seg_path(s, path, sizeof(path), v[i].seq, true);
		if (fstatat(s->dir->fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    unlinkat(s->dir->fd, path, 0) == 0)
			stored_add(s, -(int64_t)st.st_size, -1);
	}
	free(v);
}

int
spool_stream_trim(struct spool_stream *s, struct spool_err *err)
{
	char path[64];
	int rc;

	if ((rc = spool_stream_flush(s, err)) < 0)
		return rc;
	pthread_mutex_lock(&s->live->mu);
	if (live_pending_records(s->live) == 0) {
		trim_sealed(s);
		if (s->seg_exists && s->seg_sum.frames > 0) {
			seg_path(s, path, sizeof(path), s->seg_seq, false);
			if (unlinkat(s->dir->fd, path, 0) == 0) {
				stored_add(s, -(int64_t)s->seg_end, -1);
				s->seg_exists = false;
				s->seg_seq++;
				s->live->cur_seg = s->seg_seq;
				s->live->cur_end = 0;
			}
		}
	}
	pthread_mutex_unlock(&s->live->mu);
	if (s->seg_fd != -1) {
		if ((rc = sync_policy(s, true)) < 0)
			spool_seterr(err, "%s/%s: fdatasync: %s", s->dir->path,
			    s->name, strerror(-rc));
		sysio_close(s->seg_fd);
		s->seg_fd = -1;
	}
	return rc;
}

/* Gives this stream's share of the dir's counters back. */
static void
dir_release(struct spool_stream *s)
{
	struct spool_dir *d = s->dir;

	dir_sync(s);
	if (d->lim.total_max != 0)
		atomic_fetch_sub(&d->staged_bytes, (uint64_t)s->data.len);
	atomic_fetch_sub(&d->reserved, s->credit);
	s->credit = 0;
	atomic_fetch_sub(&d->stored_bytes, atomic_load(&s->live->stored_bytes));
	atomic_fetch_sub(&d->segments, atomic_load(&s->live->segments));
	pthread_mutex_lock(&d->mu);
	LIST_REMOVE(s->live, link);
	d->others_at_ns = 0;	/* our files are now others': rescan */
	pthread_mutex_unlock(&d->mu);
}

static int
close_keep(struct spool_stream *s, const char *reason, struct spool_err *err)
{
	struct spool_status st;
	char path[64];
	int rc;

	rc = form_frame(s, err);
	if (rc == 0 && s->seg_exists && s->seg_sum.frames > 0)
		rc = seg_seal(s, err);
	else if (rc == 0 && s->seg_exists) {
		seg_path(s, path, sizeof(path), s->seg_seq, false);
		if (unlinkat(s->dir->fd, path, 0) == 0)
			stored_add(s, -(int64_t)s->seg_end, -1);
		s->seg_exists = false;
	}
	memset(&st, 0, sizeof(st));
	st.pid = s->id.pid;
	st.fd = s->id.fd;
	strlcpy(st.state, s->release_state[0] != '\0' ? s->release_state :
	    "orphan", sizeof(st.state));
	strlcpy(st.reason, reason ? reason : "", sizeof(st.reason));
	st.pending_bytes = live_pending_bytes(s->live);
	st.pending_records = live_pending_records(s->live);
	st.drops = s->pub_drops;
	st.errors = s->pub_errors;
	st.expires_ns = s->expires_ns;
	/* The last thing this writer does to the stream: it lets go. */
	if (status_write(s, &st, true, rc < 0 ? NULL : err) < 0 && rc == 0)
		rc = -EIO;
	/* A kept stream's name is as durable as its sealed segments: synced
	 * here unless a sync of it is known to have succeeded (one owed, or
	 * taken by a job that may still be running, is made here too). */
	if (s->opt.fsync != SPOOL_FSYNC_NEVER && !s->parent_synced) {
		if (sysio_fsync(s->dir->fd) == 0) {
			s->parent_synced = true;
			s->parent_unsynced = false;
		} else if (rc == 0) {
			rc = -errno;
			spool_seterr(err, "%s: fsync: %s", s->dir->path,
			    strerror(errno));
		}
	}
	return rc;
}

void
spool_stream_set_expiry(struct spool_stream *s, int64_t at_ns)
{
	s->expires_ns = at_ns > 0 ? at_ns : 0;
}

void
spool_stream_set_release_state(struct spool_stream *s, const char *state)
{
	strlcpy(s->release_state, state, sizeof(s->release_state));
}

/* fdatasync of sealed segment seq of the stream, by name; one already
 * deleted (delivered) is owed nothing. */
static int
sync_sealed_by_name(int dirfd, const char *name, uint64_t seq)
{
	char f[32], path[64];
	int fd, rc = 0;

	seg_name(f, sizeof(f), seq, true);
	snprintf(path, sizeof(path), "%s/%s", name, f);
	if ((fd = sysio_openat(dirfd, path, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC, 0)) == -1)
		return errno == ENOENT ? 0 : -errno;
	if (sysio_fdatasync(fd) == -1)
		rc = -errno;
	sysio_close(fd);
	return rc;
}

/* The stream dir's fsync, by name. */
static int
sync_dir_by_name(int dirfd, const char *name)
{
	int fd, rc = 0;

	if ((fd = sysio_openat(dirfd, name, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC, 0)) == -1)
		return -errno;
	if (sysio_fsync(fd) == -1)
		rc = -errno;
	sysio_close(fd);
	return rc;
}

/* The syncs a deferred stream still owes, made now (an orphan is kept:
 * it is as durable as any sealed segment when the close returns). */
static int
sync_owed_now(struct spool_stream *s)
{
	struct spool_sync_job j;
	int rc = 0;

	if (spool_stream_sync_take(s, &j)) {
		rc = spool_sync_run(&j);
		spool_stream_sync_done(s, &j, rc);
	}
	return rc;
}

int
spool_stream_sync_take(struct spool_stream *s, struct spool_sync_job *j)
{
	memset(j, 0, sizeof(*j));
	j->fd = -1;
	if (!deferred(s))
		return 0;
	j->dirfd = s->dir->fd;
	strlcpy(j->name, s->name, sizeof(j->name));
	j->seal_lo = s->sealed_lo;
	j->seal_hi = s->sealed_hi;
	s->sealed_lo = s->sealed_hi = 0;
	if (s->unsynced && s->seg_fd != -1 &&
	    (j->fd = sysio_dup(s->seg_fd)) >= 0) {
		j->cur = true;
		j->seg_seq = s->seg_seq;
		j->seg_end = s->seg_end;
	}
	j->dir = s->dir_unsynced;
	s->dir_unsynced = false;
	j->parent = s->parent_unsynced;
	s->parent_unsynced = false;
	j->at_ns = now_mono_ns();
	return j->fd >= 0 || j->seal_lo < j->seal_hi || j->dir || j->parent;
}

int
spool_sync_run(struct spool_sync_job *j)
{
	uint64_t q;
	int rc = 0, r;

	for (q = j->seal_lo; q < j->seal_hi; q++)
		if ((r = sync_sealed_by_name(j->dirfd, j->name, q)) < 0 &&
		    rc == 0)
			rc = r;
	if (j->fd >= 0) {
		if (sysio_fdatasync(j->fd) == -1 && rc == 0)
			rc = -errno;
		sysio_close(j->fd);
		j->fd = -1;
	}
	if (j->dir && (r = sync_dir_by_name(j->dirfd, j->name)) < 0 &&
	    rc == 0)
		rc = r;
	if (j->parent && sysio_fsync(j->dirfd) == -1 && rc == 0)
		rc = -errno;
	return rc;
}

void
spool_stream_sync_done(struct spool_stream *s, const struct spool_sync_job *j,
    int rc)
{
	if (rc < 0) {
		/*
		 * After a failed fdatasync Linux may have dropped the dirty
		 * pages: a second call can succeed with the data gone, so
		 * nothing is promised by trying again. The failure is the
		 * caller's to count and report; the open segment and the
		 * dir stay owed so that later frames get their sync.
		 */
		s->unsynced = s->seg_fd != -1;
		s->dir_unsynced = true;
		s->parent_unsynced = s->parent_unsynced || j->parent;
		return;
	}
	if (j->parent)
		s->parent_synced = true;
	if (j->cur && j->seg_seq == s->seg_seq && j->seg_end == s->seg_end)
		s->unsynced = false;
	s->last_sync_ns = j->at_ns;
}

bool
spool_stream_sync_owed(const struct spool_stream *s)
{
	return deferred(s) && (s->unsynced || s->sealed_lo < s->sealed_hi ||
	    s->dir_unsynced || s->parent_unsynced);
}

int64_t
spool_stream_synced_at(const struct spool_stream *s)
{
	return s->last_sync_ns;
}

int
spool_stream_close(struct spool_stream *s, enum spool_close_how how,
    const char *reason, struct spool_err *err)
{
	int rc = 0;

	if (s == NULL)
		return 0;
	if (how == SPOOL_CLOSE_KEEP)
		rc = close_keep(s, reason, err);
	if (how == SPOOL_CLOSE_KEEP && deferred(s)) {
		int r = sync_owed_now(s);

		/* Reported, not retried: after a failed fdatasync the pages
		 * may be gone (spool_stream_sync_done). */
		if (r < 0 && rc == 0) {
			rc = r;
			spool_seterr(err, "%s/%s: sync at close: %s",
			    s->dir->path, s->name, strerror(-r));
		}
	}
	if (s->seg_fd != -1)
		sysio_close(s->seg_fd);
	s->seg_fd = -1;
	pthread_mutex_lock(&s->live->mu);
	dir_release(s);
	s->live->writer_gone = true;
	s->live->w = NULL;
	s->live->stalled = false;
	pthread_mutex_unlock(&s->live->mu);
	if (how == SPOOL_CLOSE_REMOVE) {
		rc = spool_stream_remove(s->dir, s->name, err);
		/* dir_release asked for a rescan of others' bytes; one made
		 * before the files went counted them as others' for a
		 * second: ask again now they are gone. */
		pthread_mutex_lock(&s->dir->mu);
		s->dir->others_at_ns = 0;
		pthread_mutex_unlock(&s->dir->mu);
	}
	/* Best effort: a failed ledger line must not fail the close. */
	if (s->pub_drops > 0 || s->pub_errors > 0)
		(void)ledger_append(s->dir, s->name, s->pub_drops,
		    s->pub_errors, how == SPOOL_CLOSE_KEEP);
	live_unref(s->live);
	stage_free(&s->lens, 0);
	stage_free(&s->tss, 0);
	stage_free(&s->data, 0);
	free(s);
	return rc;
}

void
spool_stream_counts(const struct spool_stream *s, struct spool_counts *c)
{
	c->records = atomic_load(&s->live->records);
	c->raw_bytes = atomic_load(&s->live->raw_bytes);
	c->stored_bytes = atomic_load(&s->live->stored_bytes);
	c->pending_records = live_pending_records(s->live);
	c->pending_bytes = live_pending_bytes(s->live);
	c->segments = atomic_load(&s->live->segments);
}

/* For status.c and budget.c. */
struct spool_dir *
stream_dir(const struct spool_stream *s)
{
	return s->dir;
}

struct stream_live *
stream_live(const struct spool_stream *s)
{
	return s->live;
}

uint64_t *
stream_credit(struct spool_stream *s)
{
	return &s->credit;
}

uint64_t
stream_staged_bytes(const struct spool_stream *s)
{
	return s->data.len;
}

void
stream_note_published(struct spool_stream *s, uint64_t drops, uint64_t errors)
{
	s->pub_drops = drops;
	s->pub_errors = errors;
}

/* A new reference on the live block, for spool_stream_cursor. */
struct stream_live *
stream_live_ref(struct spool_stream *s)
{
	pthread_mutex_lock(&s->live->mu);
	s->live->refs++;
	pthread_mutex_unlock(&s->live->mu);
	return s->live;
}
