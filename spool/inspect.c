/*
 * inspect.c — spool_scan, spool_repair and spool_stream_info: the CLI's
 * view of a stream, built on segread.c. Nothing here writes except
 * spool_repair, and it only ever shortens the newest .open segment.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

struct scan {
	struct spool_dir *d;
	const char *name;
	const struct spool_scan_ops *ops;
	void *arg;
	int problems;
	bool have_expect;
	uint64_t expect;
	int stop;		/* non-0 from a callback */
	/* The progress file (FORMAT.md §6), checked against the frames:
	 * disk_end is the end of the last record any frame header names. */
	struct progress pg;
	bool seen_frame;
	uint64_t disk_end;
};

/* A problem concerning records [first, last] (known) or none. */
static void
problem_seq(struct scan *sc, const struct segread *r,
    enum spool_problem_kind k, uint64_t off, uint64_t len, bool known,
    uint64_t first, uint64_t last, const char *what)
{
	struct spool_problem p;

	sc->problems++;
	if (sc->ops == NULL || sc->ops->problem == NULL || sc->stop)
		return;
	memset(&p, 0, sizeof(p));
	p.kind = k;
	if (k == SPOOL_PROBLEM_PROGRESS)
		strlcpy(p.file, "progress", sizeof(p.file));
	else
		seg_name(p.file, sizeof(p.file), r->seq, r->sealed);
	p.offset = off;
	p.length = len;
	if (known) {
		p.seq_known = true;
		p.first_seq = first;
		p.last_seq = last;
	}
	snprintf(p.msg, sizeof(p.msg), "%s/%s/%s: offset %" PRIu64
	    ", %" PRIu64 " bytes: %s", sc->d->path, sc->name, p.file, off,
	    len, what);
	sc->stop = sc->ops->problem(sc->arg, &p);
}

/* The records of frame f (decoded: first_seq + count does not wrap). */
static void
problem(struct scan *sc, const struct segread *r, enum spool_problem_kind k,
    uint64_t off, uint64_t len, const struct frame_header *f,
    const char *what)
{
	problem_seq(sc, r, k, off, len, f != NULL, f ? f->first_seq : 0,
	    f ? f->first_seq + f->count - 1 : 0, what);
}

static void
gap(struct scan *sc, const struct segread *r, const struct frame_header *f)
{
	uint64_t end = f->first_seq + f->count;

	/* The range as 64-bit bounds: a gap can exceed any frame's count. */
	if (sc->have_expect && f->first_seq > sc->expect)
		problem_seq(sc, r, SPOOL_PROBLEM_SEQ_GAP, r->fh_off, 0, true,
		    sc->expect, f->first_seq - 1,
		    "records missing before frame");
	else if (sc->have_expect && f->first_seq < sc->expect)
		problem_seq(sc, r, SPOOL_PROBLEM_SEQ_REPEAT, r->fh_off, 0, true,
		    f->first_seq, (end < sc->expect ? end : sc->expect) - 1,
		    "frame repeats records already seen (skipped by readers)");
	sc->have_expect = true;
	if (end > sc->expect)
		sc->expect = end;
}

/* The end of the records a frame header names, for the progress check. */
static void
note_frame(struct scan *sc, const struct frame_header *f)
{
	sc->seen_frame = true;
	if (f->first_seq + f->count > sc->disk_end)
		sc->disk_end = f->first_seq + f->count;
}

/*
 * next_off must be below the length of record next_seq (FORMAT.md §6):
 * checked in the frame that holds it, whose payload r->it walks.
 */
static void
progress_offset_check(struct scan *sc, struct segread *r)
{
	const struct frame_header *f = &r->fh;
	struct payload_iter it = r->it;
	struct rec_ref rec;
	uint64_t seq = f->first_seq;
	char what[160];

	if (sc->pg.next_off == 0 || sc->pg.next_seq < f->first_seq ||
	    sc->pg.next_seq - f->first_seq >= f->count)
		return;
	while (payload_next(&it, &rec) && seq < sc->pg.next_seq)
		seq++;
	if (seq != sc->pg.next_seq || sc->pg.next_off < rec.len)
		return;
	snprintf(what, sizeof(what), "progress says %" PRIu64 " bytes of "
	    "record %" PRIu64 " were delivered, but it has %" PRIu32 ": "
	    "impossible, readers deliver the record whole", sc->pg.next_off,
	    sc->pg.next_seq, rec.len);
	problem_seq(sc, r, SPOOL_PROBLEM_PROGRESS, 0, 0, true,
	    sc->pg.next_seq, sc->pg.next_seq, what);
}

static void
frame_cb(struct scan *sc, const struct segread *r, const struct frame_header *f,
    uint64_t off, bool valid)
{
	struct spool_frame_info fi;

	if (sc->ops == NULL || sc->ops->frame == NULL || sc->stop)
		return;
	fi.segment_seq = r->seq;
	fi.offset = off;
	fi.first_seq = f->first_seq;
	fi.count = f->count;
	fi.raw_len = f->raw_len;
	fi.stored_len = f->stored_len;
	fi.first_ts_ns = f->first_ts;
	fi.last_ts_ns = f->last_ts;
	fi.codec = f->codec;
	fi.payload_crc = f->payload_crc;
	fi.valid = valid;
	sc->stop = sc->ops->frame(sc->arg, &fi);
}

/* Totals of a segment from its frame headers (for an .open one). */
static void
seg_totals(struct segread *r, struct spool_segment_info *si)
{
	enum sr_result res;
	int e;

	for (;;) {
		res = segread_next(r, false, &e);
		if (res == SR_CORRUPT)
			continue;
		if (res != SR_FRAME)
			break;
		if (si->records == 0)
			si->first_seq = r->fh.first_seq;
		si->last_seq = r->fh.first_seq + r->fh.count - 1;
		si->records += r->fh.count;
		si->raw_bytes += r->fh.data_len;
	}
	r->pos = SEG_HEADER_LEN;
}

static void
seg_info(struct segread *r, struct spool_segment_info *si)
{
	memset(si, 0, sizeof(*si));
	seg_name(si->file, sizeof(si->file), r->seq, r->sealed);
	si->segment_seq = r->seq;
	si->version = SEG_VERSION;
	si->codec = r->hdr.codec;
	si->segment_max = r->hdr.segment_max;
	si->id = r->hdr.id;
	si->sealed = r->sealed && r->footer_seen;
	si->file_size = r->size;
	si->stored_bytes = r->size;
	if (si->sealed) {
		si->first_seq = r->footer.first_seq;
		si->last_seq = r->footer.last_seq;
		si->records = r->footer.records;
		si->raw_bytes = r->footer.raw_bytes;
	} else
		seg_totals(r, si);
}

/*
 * A segment's first frame starts at its header's base_seq (FORMAT.md
 * §3.2, §5 rule 8). f is the first frame with a readable header; after
 * a corrupt region (after_bad) records may be missing, so only a frame
 * below base_seq is wrong then. In the oldest segment a frame above
 * base_seq is a gap (a reader counts those records lost); in a later one
 * it is a header that disagrees with frames that continue the previous
 * segment (or gap() reports the discontinuity).
 */
static void
base_check(struct scan *sc, const struct segread *r,
    const struct frame_header *f, bool after_bad)
{
	uint64_t base = r->hdr.base_seq;
	char what[160];

	if (f->first_seq < base) {
		snprintf(what, sizeof(what), "segment header's base_seq %"
		    PRIu64 " is above its first frame's first record %" PRIu64
		    ": impossible, base_seq ignored", base, f->first_seq);
		problem_seq(sc, r, SPOOL_PROBLEM_BAD_HEADER, 0, SEG_HEADER_LEN,
		    false, 0, 0, what);
	} else if (f->first_seq > base && !after_bad && !sc->have_expect) {
		snprintf(what, sizeof(what), "segment starts at record %"
		    PRIu64 " (base_seq) but its first frame at %" PRIu64,
		    base, f->first_seq);
		problem_seq(sc, r, SPOOL_PROBLEM_SEQ_GAP, r->fh_off, 0, true,
		    base, f->first_seq - 1, what);
	} else if (f->first_seq > base && !after_bad &&
	    sc->expect == f->first_seq) {
		snprintf(what, sizeof(what), "segment header's base_seq %"
		    PRIu64 " disagrees with its frames, which start at %"
		    PRIu64, base, f->first_seq);
		problem_seq(sc, r, SPOOL_PROBLEM_BAD_HEADER, 0, SEG_HEADER_LEN,
		    false, 0, 0, what);
	}
}

static void
scan_frames(struct scan *sc, struct segread *r)
{
	struct footer sum;
	enum sr_result res;
	bool unknown = false;	/* a corrupt region without a frame header */
	bool first = true, unknown_first = false;
	int e;

	memset(&sum, 0, sizeof(sum));
	while (!sc->stop) {
		res = segread_next(r, true, &e);
		if (first && (res == SR_FRAME || res == SR_CORRUPT)) {
			first = false;
			if (res == SR_FRAME)
				base_check(sc, r, &r->fh, false);
			else if (r->bad_hdr_ok)
				base_check(sc, r, &r->bad_fh, false);
			else
				unknown_first = true;
		} else if (unknown_first && res == SR_FRAME) {
			unknown_first = false;
			base_check(sc, r, &r->fh, true);
		}
		if (res == SR_FRAME) {
			note_frame(sc, &r->fh);
			progress_offset_check(sc, r);
			gap(sc, r, &r->fh);
			frame_cb(sc, r, &r->fh, r->fh_off, true);
			if (sum.records == 0)
				sum.first_seq = r->fh.first_seq;
			sum.records += r->fh.count;
			sum.raw_bytes += r->fh.data_len;
			sum.last_seq = r->fh.first_seq + r->fh.count - 1;
			sum.frames++;
		} else if (res == SR_CORRUPT) {
			if (r->bad_hdr_ok) {
				note_frame(sc, &r->bad_fh);
				frame_cb(sc, r, &r->bad_fh, r->bad_off, false);
				sc->have_expect = true;
				sc->expect = r->bad_fh.first_seq +
				    r->bad_fh.count;
				if (sum.records == 0)
					sum.first_seq = r->bad_fh.first_seq;
				sum.records += r->bad_fh.count;
				sum.raw_bytes += r->bad_fh.data_len;
				sum.last_seq = sc->expect - 1;
				sum.frames++;
			} else
				unknown = true;
			problem(sc, r, SPOOL_PROBLEM_CORRUPT_FRAME, r->bad_off,
			    r->bad_len, r->bad_hdr_ok ? &r->bad_fh : NULL,
			    r->bad_hdr_ok ? "frame payload fails its checksum"
			    " or does not decode" : "bytes that are no valid"
			    " frame, skipped");
		} else if (res == SR_TORN) {
			problem(sc, r, SPOOL_PROBLEM_TORN_TAIL, r->pos,
			    r->size - r->pos, NULL, "incomplete frame at the"
			    " end (torn tail, or still being written)");
			break;
		} else if (res == SR_IO) {
			problem(sc, r, SPOOL_PROBLEM_IO, r->pos, 0, NULL,
			    strerror(-e));
			break;
		} else
			break;
	}
	if (r->sealed && r->footer_seen && !sc->stop && !unknown &&
	    (sum.records != r->footer.records ||
	    sum.raw_bytes != r->footer.raw_bytes ||
	    sum.frames != r->footer.frames ||
	    (sum.records > 0 && (sum.first_seq != r->footer.first_seq ||
	    sum.last_seq != r->footer.last_seq))))
		problem(sc, r, SPOOL_PROBLEM_BAD_FOOTER, r->size - FOOTER_LEN,
		    FOOTER_LEN, NULL, "footer disagrees with the frames");
}

static void
scan_segment(struct scan *sc, struct segread *r)
{
	struct spool_segment_info si;

	if (!r->header_ok && !r->sealed && r->size < SEG_HEADER_LEN) {
		/* An .open segment whose header is not written yet: its
		 * writer is creating it (or died doing so). No record was
		 * ever in it; a torn tail, judged like any other (§5). */
		problem(sc, r, SPOOL_PROBLEM_TORN_TAIL, 0, r->size, NULL,
		    "segment header not written yet (being created, or torn "
		    "at creation)");
		return;
	}
	if (!r->header_ok) {
		problem(sc, r, SPOOL_PROBLEM_BAD_HEADER, 0,
		    r->size < SEG_HEADER_LEN ? r->size : SEG_HEADER_LEN, NULL,
		    "segment header unreadable, file skipped");
		return;
	}
	if (r->sealed && !r->footer_seen)
		problem(sc, r, SPOOL_PROBLEM_BAD_FOOTER, r->size < FOOTER_LEN ?
		    0 : r->size - FOOTER_LEN, FOOTER_LEN, NULL,
		    "sealed segment without a valid footer");
	seg_info(r, &si);
	if (sc->ops != NULL && sc->ops->segment != NULL && !sc->stop)
		sc->stop = sc->ops->segment(sc->arg, &si);
	scan_frames(sc, r);
}

/*
 * A next_seq past the end of the last record on disk (or at it with
 * next_off > 0) is impossible, or what a power loss left (FORMAT.md §6).
 * Judged only when some frame was seen, as readers do.
 */
static void
progress_end_check(struct scan *sc, struct segread *r)
{
	char what[160];

	if (sc->stop || !sc->seen_frame || sc->pg.next_seq < sc->disk_end ||
	    (sc->pg.next_seq == sc->disk_end && sc->pg.next_off == 0))
		return;
	snprintf(what, sizeof(what), "progress at record %" PRIu64 " byte %"
	    PRIu64 " is past the last record on disk (%" PRIu64 ")",
	    sc->pg.next_seq, sc->pg.next_off, sc->disk_end - 1);
	problem_seq(sc, r, SPOOL_PROBLEM_PROGRESS, 0, 0, false, 0, 0, what);
}

int
spool_scan(struct spool_dir *d, const char *name,
    const struct spool_scan_ops *ops, void *arg, struct spool_err *err)
{
	struct scan sc = { .d = d, .name = name, .ops = ops, .arg = arg };
	struct seg_entry *v;
	struct segread r;
	size_t n, i;
	int sfd, rc;

	if ((sfd = open_stream_dir(d, name, err)) < 0)
		return sfd;
	if ((rc = list_segments(sfd, &v, &n)) < 0) {
		spool_seterr(err, "%s/%s: list: %s", d->path, name,
		    strerror(-rc));
		sysio_close(sfd);
		return rc;
	}
	if ((rc = progress_load(sfd, &sc.pg)) < 0) {
		r.seq = 0;
		r.sealed = false;
		problem_seq(&sc, &r, SPOOL_PROBLEM_PROGRESS, 0, 0, false, 0, 0,
		    spool_strerror(-rc));
	}
	segread_init(&r);
	for (i = 0; i < n && !sc.stop; i++) {
		if ((rc = segread_open(&r, sfd, v[i].seq, v[i].sealed)) < 0) {
			if (rc == -ENOENT)
				continue;
			r.seq = v[i].seq;
			r.sealed = v[i].sealed;
			problem(&sc, &r, SPOOL_PROBLEM_IO, 0, 0, NULL,
			    spool_strerror(-rc));
			continue;
		}
		scan_segment(&sc, &r);
	}
	progress_end_check(&sc, &r);
	segread_fini(&r);
	free(v);
	sysio_close(sfd);
	return sc.problems;
}

int64_t
spool_repair(struct spool_dir *d, const char *name, struct spool_err *err)
{
	struct seg_entry *v;
	struct segread r;
	enum sr_result res;
	int64_t cut = 0;
	size_t n;
	int sfd, fd, rc, e;
	char f[32];

	if ((sfd = open_stream_dir(d, name, err)) < 0)
		return sfd;
	if ((rc = list_segments(sfd, &v, &n)) < 0 || n == 0 ||
	    v[n - 1].sealed) {
		free(v);
		sysio_close(sfd);
		if (rc < 0)
			spool_seterr(err, "%s/%s: list: %s", d->path, name,
			    strerror(-rc));
		return rc;
	}
	segread_init(&r);
	if ((rc = segread_open(&r, sfd, v[n - 1].seq, false)) < 0 ||
	    !r.header_ok || r.sealed)
		goto out;
	while ((res = segread_next(&r, true, &e)) == SR_FRAME ||
	    res == SR_CORRUPT)
		;
	if (res == SR_IO) {
		rc = e;
		goto out;
	}
	if (res != SR_TORN)
		goto out;
	seg_name(f, sizeof(f), r.seq, false);
	if ((fd = open_regular(sfd, f, O_WRONLY, 0)) < 0)
		rc = fd;
	else if (ftruncate(fd, (off_t)r.pos) == -1 || sysio_fsync(fd) == -1)
		rc = -errno;
	else
		cut = (int64_t)(r.size - r.pos);
	if (fd >= 0)
		sysio_close(fd);
out:
	if (rc < 0)
		spool_seterr(err, "%s/%s/%016" PRIx64 ".open: repair: %s",
		    d->path, name, v[n - 1].seq, spool_strerror(-rc));
	segread_fini(&r);
	free(v);
	sysio_close(sfd);
	return rc < 0 ? rc : cut;
}

/*
 * Adds the records of the current frame of r not yet acknowledged and not
 * seen in an earlier frame (*expect: a frame that repeats records is
 * skipped by readers, FORMAT.md §5 rule 4, so they are not counted twice).
 */
static void
info_frame(struct segread *r, const struct progress *pg, uint64_t *expect,
    struct spool_stream_info *si, bool quick)
{
	const struct frame_header *f = &r->fh;
	uint64_t seq = f->first_seq, off = r->fh_off, end = seq + f->count;
	uint64_t low = pg->next_seq > *expect ? pg->next_seq : *expect;
	struct rec_ref rec;
	int e;

	if (end > *expect)
		*expect = end;
	if (end <= low)
		return;
	if (f->first_seq > low || (f->first_seq == low &&
	    (low != pg->next_seq || pg->next_off == 0))) {
		si->records += f->count;
		si->raw_bytes += f->data_len;
		if (si->oldest_ts_ns == 0)
			si->oldest_ts_ns = f->first_ts;
		si->newest_ts_ns = f->last_ts;
		return;
	}
	/* Partly acknowledged or seen: decode it to count exactly (quick:
	 * the caller has the writer's own counts; the frame's time only). */
	if (quick) {
		if (si->oldest_ts_ns == 0)
			si->oldest_ts_ns = f->first_ts;
		si->newest_ts_ns = f->last_ts;
		return;
	}
	r->pos = off;
	r->skip_below = 0;
	if (segread_next(r, true, &e) != SR_FRAME)
		return;
	for (; payload_next(&r->it, &rec); seq++) {
		if (seq < low)
			continue;
		si->records++;
		/* An offset at or past the record's end is impossible: the
		 * cursor delivers the record whole (FORMAT.md §6). */
		si->raw_bytes += rec.len -
		    (seq == pg->next_seq && pg->next_off < rec.len ?
		    pg->next_off : 0);
		if (si->oldest_ts_ns == 0)
			si->oldest_ts_ns = rec.ts;
	}
	si->newest_ts_ns = f->last_ts;
}

int
spool_stream_info(struct spool_dir *d, const char *name,
    struct spool_stream_info *si, struct spool_err *err)
{
	return spool_stream_info_flags(d, name, 0, si, err);
}

int
spool_stream_info_flags(struct spool_dir *d, const char *name, int flags,
    struct spool_stream_info *si, struct spool_err *err)
{
	struct seg_entry *v;
	struct progress pg;
	struct segread r;
	uint64_t expect = 0;
	size_t n, i;
	int sfd, rc, e;

	memset(si, 0, sizeof(*si));
	strlcpy(si->name, name, sizeof(si->name));
	if ((sfd = open_stream_dir(d, name, err)) < 0)
		return sfd;
	if ((rc = progress_load(sfd, &pg)) < 0 ||
	    (rc = list_segments(sfd, &v, &n)) < 0) {
		spool_seterr(err, "%s/%s: %s", d->path, name,
		    spool_strerror(-rc));
		sysio_close(sfd);
		return rc;
	}
	si->acked_seq = pg.next_seq;
	segread_init(&r);
	for (i = 0; i < n; i++) {
		if (segread_open(&r, sfd, v[i].seq, v[i].sealed) < 0)
			continue;
		si->segments++;
		si->stored_bytes += r.size;
		if (!r.header_ok)
			continue;
		if (!si->id_known) {
			si->id = r.hdr.id;
			si->id_known = true;
		}
		for (;;) {
			enum sr_result res = segread_next(&r, false, &e);

			if (res == SR_FRAME)
				info_frame(&r, &pg, &expect, si,
				    (flags & SPOOL_INFO_QUICK) != 0);
			else if (res != SR_CORRUPT)
				break;
		}
	}
	segread_fini(&r);
	free(v);
	sysio_close(sfd);
	return 0;
}
