/*
 * cursor.c — reading a stream's records oldest first, acknowledging them,
 * deleting what is fully acknowledged, persisting the position.
 *
 * Positions:
 *   ack_seq/ack_off  first record not fully acknowledged, bytes of it
 *                    delivered; persisted in the progress file.
 *   expect           the record after the last frame loaded.
 *   out[]            records returned by next and not yet fully acked,
 *                    with their lengths, so pending bytes stay exact.
 *
 * Concurrency with a live writer of the same process (spool_stream_cursor):
 * the cursor reads segment files only through its own fds, and never past
 * what the writer published under live->mu (cur_seg, cur_end, written),
 * so it never sees half a frame. It deletes only sealed segments older
 * than the published cur_seg: those the writer never touches again. The
 * writer deletes only its current segment (spool_stream_trim), under
 * live->mu. Counters shared by both are atomics.
 *
 * When the writer is stalled (its last frame could not be written: disk
 * full), the cursor that has read everything written goes on with the
 * writer's committed staged records, copied under live->mu into its own
 * buffer and read as one frame (load_staged). Its position may then pass
 * what is on disk; the progress it persists never does (persist).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

struct out_rec {
	uint64_t seq;
	uint32_t len;
};

/* A segment read to its end, deleted once its records are acknowledged. */
struct done_seg {
	uint64_t seq;
	uint64_t end_seq;	/* records below this are in it or before */
	uint64_t size;
	bool sealed;		/* opened as .seg */
};

struct spool_cursor {
	struct spool_dir *dir;
	char name[SPOOL_NAME_MAX];
	int sfd;
	struct stream_live *live;	/* NULL: no writer in this process */

	struct segread r;
	bool seg_open;
	bool any_seg;		/* a segment was opened since (re)positioning */
	uint64_t expect;

	/*
	 * The current frame: records frame_first.. in c->r.raw, frame_start
	 * its iterator at the first record, frame_seq the record the
	 * iterator c->r.it returns next. frame_start stays valid until the
	 * next frame_enter: only a frame loaded whole replaces c->r.raw
	 * (segread_adopt), so a rewind into the current frame never reads a
	 * buffer a failed load has reused.
	 */
	bool in_frame;
	struct payload_iter frame_start;
	uint64_t frame_first, frame_seq, frame_min;

	uint64_t ack_seq, ack_off;
	bool rewind;
	/* A run spool_cursor_run returned is out, run_left of its bytes not
	 * acknowledged yet; any call but the acknowledgements ends it. */
	bool run_out;
	size_t run_left;
	struct out_rec *out;
	size_t out_n, out_cap;

	struct done_seg *done;
	size_t done_n, done_cap;

	int prog_fd;
	struct progress prog;
	bool sync_progress;

	struct spool_losses losses;
	uint64_t loss_hwm;	/* losses below this were already counted */

	/* The oldest segment's base_seq, applied (oldest_base) only at the
	 * first frame read, once checked against it (FORMAT.md §5 rule 7). */
	bool base_pending;
	uint64_t base_hint;
	/* For a stream read from the files only (live == NULL): the end of
	 * the last record seen, to catch an impossible progress position. */
	bool seen_frame, progress_checked;
	uint64_t disk_end;
};

static void
add_loss(struct spool_cursor *c, uint64_t first, uint64_t last, bool frame)
{
	if (frame)
		c->losses.frames++;
	if (last < first || last < c->loss_hwm)
		return;
	if (first < c->loss_hwm)
		first = c->loss_hwm;
	if (c->losses.records == 0 || first < c->losses.first_seq)
		c->losses.first_seq = first;
	if (c->losses.records == 0 || last > c->losses.last_seq)
		c->losses.last_seq = last;
	c->losses.records += last - first + 1;
	c->loss_hwm = last + 1;
}

static int
cursor_open(struct spool_dir *d, const char *name, struct stream_live *live,
    struct spool_cursor **out, struct spool_err *err)
{
	struct spool_cursor *c;
	int rc;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		spool_seterr(err, "%s: out of memory", name);
		return -ENOMEM;
	}
	segread_init(&c->r);
	c->dir = d;
	c->live = live;
	c->prog_fd = -1;
	strlcpy(c->name, name, sizeof(c->name));
	if ((c->sfd = open_stream_dir(d, name, err)) < 0) {
		rc = c->sfd;
		free(c);
		return rc;
	}
	if ((rc = progress_load(c->sfd, &c->prog)) < 0) {
		spool_seterr(err, "%s/%s/progress: read: %s", d->path, name,
		    spool_strerror(-rc));
		sysio_close(c->sfd);
		free(c);
		return rc;
	}
	c->ack_seq = c->prog.next_seq;
	c->ack_off = c->prog.next_off;
	c->expect = c->ack_seq;
	c->r.skip_below = c->ack_seq;
	c->sync_progress = live != NULL && live->fsync == SPOOL_FSYNC_ALWAYS;
	*out = c;
	return 0;
}

int
spool_cursor_open(struct spool_dir *d, const char *name,
    struct spool_cursor **out, struct spool_err *err)
{
	return cursor_open(d, name, NULL, out, err);
}

int
spool_stream_cursor(struct spool_stream *s, struct spool_cursor **out,
    struct spool_err *err)
{
	struct stream_live *l = stream_live_ref(s);
	int rc;

	rc = cursor_open(stream_dir(s), spool_stream_name(s), l, out, err);
	if (rc < 0)
		live_unref(l);
	return rc;
}

void
spool_cursor_close(struct spool_cursor *c)
{
	if (c == NULL)
		return;
	segread_fini(&c->r);
	if (c->prog_fd != -1)
		sysio_close(c->prog_fd);
	if (c->sfd != -1)
		sysio_close(c->sfd);
	if (c->live != NULL)
		live_unref(c->live);
	free(c->out);
	free(c->done);
	free(c);
}

void
spool_cursor_losses(const struct spool_cursor *c, struct spool_losses *l)
{
	*l = c->losses;
}

/* What the writer published; for a dead stream: nothing, files rule. */
struct pub {
	bool live, stalled;
	uint64_t cur_seg, cur_end, written;
};

static void
pub_read(struct spool_cursor *c, struct pub *p)
{
	memset(p, 0, sizeof(*p));
	if (c->live == NULL)
		return;
	pthread_mutex_lock(&c->live->mu);
	p->live = !c->live->writer_gone;
	p->cur_seg = c->live->cur_seg;
	p->cur_end = c->live->cur_end;
	p->written = c->live->written;
	p->stalled = c->live->stalled;
	pthread_mutex_unlock(&c->live->mu);
}

static void
done_push(struct spool_cursor *c)
{
	struct done_seg *n;
	size_t i;

	if (!c->r.header_ok)
		return;		/* keep a bad file for the operator */
	for (i = 0; i < c->done_n; i++)
		if (c->done[i].seq == c->r.seq)
			return;
	if (c->done_n == c->done_cap) {
		c->done_cap = c->done_cap ? 2 * c->done_cap : 8;
		n = reallocarray(c->done, c->done_cap, sizeof(*n));
		if (n == NULL) {
			c->done_cap = c->done_n;
			return;	/* not deleted now; trim or a later reader will */
		}
		c->done = n;
	}
	c->done[c->done_n++] = (struct done_seg){ c->r.seq, c->expect,
	    c->r.size, c->r.sealed };
}

/*
 * Records below the oldest segment on disk are taken as acknowledged:
 * segments are deleted only once acknowledged (a progress write may have
 * been lost, or spool_stream_trim deleted them).
 */
static void
oldest_base(struct spool_cursor *c, uint64_t base)
{
	if (base <= c->ack_seq)
		return;
	c->ack_seq = base;
	c->ack_off = 0;
	if (c->expect < base)
		c->expect = base;
	if (c->loss_hwm < base)
		c->loss_hwm = base;
}

/*
 * Opens the first readable segment after the current one (or the oldest).
 * 1 if one was opened, 0 if there is none, or a negative errno. A segment
 * with a bad header is skipped whole and counted.
 */
static int
open_next_segment(struct spool_cursor *c, struct spool_err *err)
{
	struct seg_entry *v;
	bool first = !c->any_seg;
	size_t n, i;
	int rc = 0;

	if ((rc = list_segments(c->sfd, &v, &n)) < 0) {
		spool_seterr(err, "%s/%s: list: %s", c->dir->path, c->name,
		    strerror(-rc));
		return rc;
	}
	c->seg_open = false;
	for (i = 0; i < n; i++) {
		if (c->any_seg && v[i].seq <= c->r.seq)
			continue;
		if (i + 1 < n && v[i + 1].seq == v[i].seq)
			continue;	/* both names seen mid-rename: take .seg */
		rc = segread_open(&c->r, c->sfd, v[i].seq, v[i].sealed);
		if (rc == -ENOENT) {
			rc = 0;
			continue;	/* deleted meanwhile */
		}
		if (rc < 0) {
			spool_seterr(err, "%s/%s/%016" PRIx64 ": open: %s",
			    c->dir->path, c->name, v[i].seq,
			    spool_strerror(-rc));
			break;
		}
		c->r.seq = v[i].seq;
		c->any_seg = true;
		if (!c->r.header_ok) {
			c->losses.frames++;
			segread_close(&c->r);
			continue;
		}
		if (first && i == 0) {
			/* Trusted only once a frame confirms it (frame_enter):
			 * a header checksum proves it was written so, not that
			 * it is possible. */
			c->base_pending = true;
			c->base_hint = c->r.hdr.base_seq;
		}
		c->seg_open = true;
		rc = 1;
		break;
	}
	free(v);
	return rc;
}

/* Sets the frame just read as the current one. */
static void
frame_enter(struct spool_cursor *c)
{
	const struct frame_header *f = &c->r.fh;

	if (c->base_pending) {
		c->base_pending = false;
		/* A segment's first frame starts at its base_seq (FORMAT.md
		 * §3.2): a base above the first record on disk is impossible.
		 * Counted, and the frame is believed, not the header. */
		if (c->base_hint > f->first_seq) {
			c->losses.frames++;
			c->base_hint = f->first_seq;
		}
		oldest_base(c, c->base_hint);
	}
	c->seen_frame = true;
	if (f->first_seq + f->count > c->disk_end)
		c->disk_end = f->first_seq + f->count;
	if (f->first_seq > c->expect)
		add_loss(c, c->expect, f->first_seq - 1, false);
	c->frame_min = c->expect;
	c->frame_first = c->frame_seq = f->first_seq;
	c->frame_start = c->r.it;
	if (f->first_seq + f->count > c->expect)
		c->expect = f->first_seq + f->count;
	if (c->loss_hwm < c->expect)
		c->loss_hwm = c->expect;
	c->in_frame = c->r.it.left > 0;
}

/* Is there a segment after the current one? */
static bool
later_segment(struct spool_cursor *c)
{
	struct seg_entry *v;
	bool later = false;
	size_t n, i;

	if (list_segments(c->sfd, &v, &n) < 0)
		return false;
	for (i = 0; i < n; i++)
		later |= v[i].seq > c->r.seq;
	free(v);
	return later;
}

/*
 * The stalled writer's committed staged records, as a frame after what
 * is written: 1 loaded (records not returned yet), 0 none, negative errno.
 *
 * The staged records start at live->written (frames are written whole,
 * in order), so they continue what the cursor read from the files only
 * if expect >= written under the same hold of live->mu as the copy: the
 * writer may have written its frame and stalled again, with later
 * records staged, since load_frame read what it published. Then the
 * files come first (0 here; load_frame sees the new written).
 */
static int
load_staged(struct spool_cursor *c, struct spool_err *err)
{
	struct frame_header fh;
	struct payload_iter it;
	int rc = 0;

	/* Into the spare buffer: the current frame stays rewindable. */
	pthread_mutex_lock(&c->live->mu);
	if (!c->live->writer_gone && c->expect >= c->live->written)
		rc = live_staged_copy(c->live, &fh, &c->r.spare,
		    &c->r.spare_cap);
	pthread_mutex_unlock(&c->live->mu);
	if (rc == -ENOMEM)
		spool_seterr(err, "%s: out of memory", c->name);
	if (rc <= 0 || fh.first_seq + fh.count <= c->expect)
		return rc < 0 ? rc : 0;
	if (!payload_check(&fh, c->r.spare, &it)) {
		spool_seterr(err, "%s: staged records do not decode", c->name);
		return -EIO;
	}
	segread_adopt(&c->r, &fh, &it);
	frame_enter(c);
	return c->in_frame ? 1 : 0;
}

/*
 * Loads the next frame holding records. 1 loaded, 0 nothing more yet,
 * negative errno. Each turn of the loop moves the position forward (or
 * to a later segment) or returns, so it ends.
 */
static int
load_frame(struct spool_cursor *c, struct spool_err *err)
{
	enum sr_result res;
	struct pub p;
	int rc;

	for (;;) {
		pub_read(c, &p);
		if (p.live && c->expect >= p.written) {
			if (!p.stalled || (rc = load_staged(c, err)) != 0)
				return p.stalled ? rc : 0;
			/* The writer may have written its frame meanwhile. */
			pub_read(c, &p);
			if (p.live && c->expect < p.written)
				continue;
			return 0;
		}
		if (!c->seg_open && (rc = open_next_segment(c, err)) <= 0)
			return rc;
		/*
		 * A sealed segment never changes: its size and footer were
		 * read when it was opened. The writer's current segment is
		 * read up to the end it published, without an fstat and a
		 * footer read per frame while the size last seen covers that
		 * end (it may not yet have a footer: it is the current one).
		 */
		if (!c->r.sealed && p.live && c->r.seq == p.cur_seg &&
		    p.cur_end <= c->r.size && !c->r.footer_seen)
			c->r.limit = p.cur_end;
		else if (!c->r.sealed) {
			if ((rc = segread_refresh(&c->r)) < 0)
				goto io;
			if (p.live && c->r.seq == p.cur_seg &&
			    c->r.limit > p.cur_end)
				c->r.limit = p.cur_end;
		}
		res = segread_next(&c->r, true, &rc);
		switch (res) {
		case SR_FRAME:
			frame_enter(c);
			if (c->in_frame)
				return 1;
			break;
		case SR_CORRUPT:
			if (c->r.bad_hdr_ok && c->r.bad_fh.first_seq +
			    c->r.bad_fh.count > c->disk_end) {
				c->seen_frame = true;
				c->disk_end = c->r.bad_fh.first_seq +
				    c->r.bad_fh.count;
			}
			if (c->r.bad_hdr_ok)
				add_loss(c, c->r.bad_fh.first_seq,
				    c->r.bad_fh.first_seq + c->r.bad_fh.count - 1,
				    true);
			else
				c->losses.frames++;
			break;
		case SR_TORN:
		case SR_END:
			if (p.live && c->r.seq >= p.cur_seg)
				return 0;	/* caught up with the writer */
			if (res == SR_TORN || !c->r.footer_seen) {
				/* An .open: still written, unless a later
				 * segment shows its writer moved on. */
				if (!later_segment(c))
					return 0;
				if (res == SR_TORN)
					c->losses.frames++;
			}
			done_push(c);
			c->seg_open = false;
			segread_close(&c->r);
			break;
		case SR_IO:
			goto io;
		}
	}
io:
	spool_seterr(err, "%s/%s/%016" PRIx64 ": read at offset %" PRIu64
	    ": %s", c->dir->path, c->name, c->r.seq, c->r.pos, strerror(-rc));
	return rc;
}

static int
out_push(struct spool_cursor *c, uint64_t seq, uint32_t len)
{
	struct out_rec *n;

	if (c->out_n == c->out_cap) {
		size_t cap = c->out_cap ? 2 * c->out_cap : 64;

		if ((n = reallocarray(c->out, cap, sizeof(*n))) == NULL)
			return -ENOMEM;
		c->out = n;
		c->out_cap = cap;
	}
	c->out[c->out_n++] = (struct out_rec){ seq, len };
	return 0;
}

/* From the oldest segment again, at ack_seq. */
static void
start_over(struct spool_cursor *c)
{
	segread_close(&c->r);
	c->seg_open = false;
	c->any_seg = false;
	c->in_frame = false;
	c->base_pending = false;
	c->expect = c->ack_seq;
	c->r.skip_below = c->ack_seq;
}

void
spool_cursor_whole_record(struct spool_cursor *c)
{
	if (!c->any_seg && !c->in_frame && c->out_n == 0)
		c->ack_off = 0;
}

/* Back to the first record not fully acknowledged. */
static void
do_rewind(struct spool_cursor *c)
{
	c->rewind = false;
	c->out_n = 0;
	if (c->ack_seq >= c->frame_first && c->ack_seq >= c->frame_min &&
	    c->ack_seq < c->frame_seq) {
		c->r.it = c->frame_start;
		c->frame_seq = c->frame_first;
		c->in_frame = true;
		return;
	}
	start_over(c);
}

/*
 * A stream read from its files (no writer in this process) has been read
 * to its end. A progress position past the end of the last record seen
 * is impossible but for a power loss that kept the progress write and
 * lost frames (FORMAT.md §6): counted as an impossible structure, so it
 * is reported, never silent; the records below it stay acknowledged.
 */
static void
progress_check(struct spool_cursor *c)
{
	if (c->live != NULL || c->progress_checked || !c->seen_frame)
		return;
	c->progress_checked = true;
	if (c->ack_seq > c->disk_end ||
	    (c->ack_seq == c->disk_end && c->ack_off > 0))
		c->losses.frames++;
}

/*
 * Gives back what the reader holds between reads: its fds (the stream dir,
 * the segment, the progress file) and its buffers. The next call reads
 * again, from the files, the first record not fully acknowledged, as after
 * a rewind; the stream dir is opened again first (cursor_unpark).
 */
void
spool_cursor_park(struct spool_cursor *c)
{
	segread_fini(&c->r);
	start_over(c);
	c->rewind = false;
	c->run_out = false;
	c->out_n = 0;
	free(c->out);
	c->out = NULL;
	c->out_cap = 0;
	if (c->prog_fd != -1)
		sysio_close(c->prog_fd);
	c->prog_fd = -1;
	if (c->sfd != -1)
		sysio_close(c->sfd);
	c->sfd = -1;
}

/* The stream dir again after spool_cursor_park. */
static int
cursor_unpark(struct spool_cursor *c, struct spool_err *err)
{
	int fd;

	if (c->sfd != -1)
		return 0;
	if ((fd = open_stream_dir(c->dir, c->name, err)) < 0)
		return fd;
	c->sfd = fd;
	return 0;
}

int
spool_cursor_next(struct spool_cursor *c, struct spool_record *rec,
    struct spool_err *err)
{
	int rc0;

	if ((rc0 = cursor_unpark(c, err)) < 0)
		return rc0;
	struct rec_ref r;
	uint64_t seq;
	int rc;

	c->run_out = false;
	if (c->rewind)
		do_rewind(c);
	for (;;) {
		while (c->in_frame && payload_next(&c->r.it, &r)) {
			seq = c->frame_seq++;
			if (seq < c->ack_seq || seq < c->frame_min)
				continue;
			if ((rc = out_push(c, seq, r.len)) < 0) {
				spool_seterr(err, "%s: out of memory", c->name);
				c->rewind = true;
				return rc;
			}
			rec->seq = seq;
			rec->ts_ns = r.ts;
			rec->data = r.data;
			rec->len = r.len;
			if (seq == c->ack_seq && c->ack_off > 0 &&
			    c->ack_off >= r.len) {
				/* A progress offset at or past the end of its
				 * record is impossible (an ack of the whole
				 * record moves to the next one): counted, and
				 * the record delivered whole. */
				c->losses.frames++;
				c->ack_off = 0;
			}
			rec->off = seq == c->ack_seq ? c->ack_off : 0;
			return 1;
		}
		c->in_frame = false;
		if ((rc = load_frame(c, err)) == 0)
			progress_check(c);
		if (rc <= 0)
			return rc;
	}
}

int
spool_cursor_rewind(struct spool_cursor *c)
{
	c->rewind = true;
	c->run_out = false;
	return 0;
}

static void stored_sub(struct spool_cursor *, uint64_t);

/* Deletes sealed segments whose records are all acknowledged. */
static void
delete_done(struct spool_cursor *c)
{
	uint64_t cur_seg = UINT64_MAX;
	struct pub p;
	char name[32];
	size_t i, k = 0;

	pub_read(c, &p);
	if (p.live)
		cur_seg = p.cur_seg;
	for (i = 0; i < c->done_n; i++) {
		struct done_seg *s = &c->done[i];

		/* Only sealed ones the writer no longer touches. */
		if (s->end_seq > c->ack_seq || s->seq >= cur_seg ||
		    (!s->sealed && !p.live)) {
			c->done[k++] = *s;
			continue;
		}
		seg_name(name, sizeof(name), s->seq, true);
		if (unlinkat(c->sfd, name, 0) == 0)
			stored_sub(c, s->size);
	}
	c->done_n = k;
}

/* The acknowledged counters: only this cursor stores to them. */
static void
pending_sub(struct spool_cursor *c, uint64_t recs, uint64_t bytes)
{
	if (c->live == NULL)
		return;
	own_add(&c->live->acked_records, recs);
	own_add(&c->live->acked_bytes, bytes);
}

/* Stored bytes are the dir's until the writer closes (spool_stream_close
 * gives them back under live->mu). */

static void
stored_sub(struct spool_cursor *c, uint64_t bytes)
{
	if (c->live == NULL)
		return;
	pthread_mutex_lock(&c->live->mu);
	if (!c->live->writer_gone) {
		atomic_fetch_sub(&c->live->stored_bytes, bytes);
		atomic_fetch_sub(&c->dir->stored_bytes, bytes);
		atomic_fetch_sub(&c->live->segments, 1);
		atomic_fetch_sub(&c->dir->segments, 1);
	}
	pthread_mutex_unlock(&c->live->mu);
}

static int
persist(struct spool_cursor *c, struct spool_err *err)
{
	uint64_t seq = c->ack_seq, off = c->ack_off;
	struct pub p;
	int rc;

	/* Records delivered from the stalled writer's memory are not on
	 * disk (yet): the progress file never passes what is (FORMAT.md §6),
	 * so it says at most "everything written". */
	pub_read(c, &p);
	if (p.live && (seq > p.written || (seq == p.written && off > 0))) {
		seq = p.written;	/* a cut inside the first staged record */
		off = 0;	/* too: that record is not in the files */
	}
	if (c->prog.generation > 0 && c->prog.next_seq == seq &&
	    c->prog.next_off == off)
		return 0;
	if (c->prog_fd == -1) {
		if ((rc = progress_open(c->sfd)) < 0)
			goto fail;
		c->prog_fd = rc;
	}
	c->prog.next_seq = seq;
	c->prog.next_off = off;
	if ((rc = progress_store(c->prog_fd, &c->prog, c->sync_progress)) < 0)
		goto fail;
	return 0;
fail:
	spool_seterr(err, "%s/%s/progress: write: %s", c->dir->path, c->name,
	    spool_strerror(-rc));
	return rc;
}

int
spool_cursor_ack(struct spool_cursor *c, uint64_t seq, size_t off,
    bool persist_it, struct spool_err *err)
{
	uint64_t recs = 0, bytes = 0;
	size_t i, n;
	int rc;

	if ((rc = cursor_unpark(c, err)) < 0)
		return rc;
	if (seq < c->ack_seq || (seq == c->ack_seq && off <= c->ack_off))
		return persist_it ? persist(c, err) : 0;
	for (i = 0; i < c->out_n && c->out[i].seq < seq; i++)
		;
	if (i == c->out_n || c->out[i].seq != seq || off > c->out[i].len) {
		spool_seterr(err, "%s: ack of record %" PRIu64 " offset %zu: "
		    "not a record returned by the cursor", c->name, seq, off);
		return -EINVAL;
	}
	/* Records before seq are fully acknowledged. */
	for (n = 0; n < i; n++) {
		bytes += c->out[n].len -
		    (c->out[n].seq == c->ack_seq ? c->ack_off : 0);
		recs++;
	}
	bytes += off - (seq == c->ack_seq ? c->ack_off : 0);
	if (off == c->out[i].len) {
		recs++;
		i++;
		c->ack_seq = seq + 1;
		c->ack_off = 0;
	} else {
		c->ack_seq = seq;
		c->ack_off = off;
		c->rewind = true;	/* next returns the rest of seq */
	}
	memmove(c->out, c->out + i, (c->out_n - i) * sizeof(*c->out));
	c->out_n -= i;
	pending_sub(c, recs, bytes);
	if (c->done_n > 0)
		delete_done(c);
	return persist_it ? persist(c, err) : 0;
}

/*
 * Runs (spool_cursor_run): the iterator c->r.it stands at the first record
 * not fully acknowledged, frame_seq is that record, and nothing is in
 * out[]: what a run returned and what is unacknowledged are the same
 * bytes, from ack_off of that record to the end of the frame's data
 * column, so no record is noted as it goes out, and an acknowledgement
 * moves the iterator, never rewinds it.
 */

/* Consumes records of the current frame that are acknowledged already or
 * were returned from an earlier frame (frame_min); false at its end. */
static bool
run_skip(struct spool_cursor *c)
{
	struct payload_iter peek;
	struct rec_ref r;

	while (c->r.it.left > 0 &&
	    (c->frame_seq < c->ack_seq || c->frame_seq < c->frame_min)) {
		(void)payload_next(&c->r.it, &r);
		c->frame_seq++;
	}
	if (c->r.it.left == 0)
		return false;
	if (c->frame_seq != c->ack_seq || c->ack_off == 0)
		return true;
	peek = c->r.it;
	(void)payload_next(&peek, &r);
	if (c->ack_off >= r.len) {
		/* As spool_cursor_next: an offset at or past the end of its
		 * record is impossible; counted, the record sent whole. */
		c->losses.frames++;
		c->ack_off = 0;
	}
	return true;
}

int
spool_cursor_run(struct spool_cursor *c, struct spool_run *run,
    struct spool_err *err)
{
	size_t off;
	int rc;

	if ((rc = cursor_unpark(c, err)) < 0)
		return rc;
	c->run_out = false;
	if (c->rewind || c->out_n > 0)
		do_rewind(c);	/* records of spool_cursor_next in flight */
	for (;;) {
		if (c->in_frame && run_skip(c))
			break;
		c->in_frame = false;
		if ((rc = load_frame(c, err)) == 0) {
			progress_check(c);
			/* Segments read to their end while everything was
			 * acknowledged: no acknowledgement comes for them. */
			if (c->done_n > 0)
				delete_done(c);
		}
		if (rc <= 0)
			return rc;
	}
	off = c->frame_seq == c->ack_seq ? c->ack_off : 0;
	run->seq = c->frame_seq;
	run->count = c->r.it.left;
	run->off = off;
	run->data = c->r.it.data + off;
	run->len = (size_t)(c->r.it.end - c->r.it.data) - off;
	c->run_out = true;
	c->run_left = run->len;
	return 1;
}

int
spool_cursor_ack_run(struct spool_cursor *c, size_t n, bool persist_it,
    struct spool_err *err)
{
	const struct payload_iter *start = &c->frame_start;
	struct payload_iter it, peek;
	uint64_t seq, recs = 0;
	size_t off, rest, left = n;
	struct rec_ref r;
	int rc;

	if ((rc = cursor_unpark(c, err)) < 0)
		return rc;
	if (!c->run_out || n > c->run_left) {
		spool_seterr(err, "%s: ack of %zu bytes: %s", c->name, n,
		    c->run_out ? "more than the run holds" : "no run out");
		return -EINVAL;
	}
	seq = c->frame_seq;
	off = seq == c->ack_seq ? c->ack_off : 0;
	it = c->r.it;
	if (n == c->run_left) {
		/* The whole run: the iterator to the frame's end at once
		 * (the columns end where the next one starts). */
		recs = it.left;
		it.lens = start->tss;
		it.tss = start->data;
		it.data = it.end;
		it.left = 0;
		seq += recs;
		off = 0;
	} else {
		/* Stops at the record the n-th byte falls short of, or after
		 * the empty records that follow the last one it completes. */
		while (it.left > 0) {
			peek = it;
			(void)payload_next(&peek, &r);
			rest = r.len - off;
			if (left < rest)
				break;
			left -= rest;
			it = peek;
			recs++;
			seq++;
			off = 0;
		}
		off += left;
	}
	c->r.it = it;
	c->frame_seq = seq;
	c->ack_seq = seq;
	c->ack_off = off;
	c->run_left -= n;
	pending_sub(c, recs, n);
	if (c->done_n > 0)
		delete_done(c);
	return persist_it ? persist(c, err) : 0;
}
