/*
 * segread.c — reading one segment file, frame by frame, with the recovery
 * rules of FORMAT.md §5. Used by the cursor, spool_scan, spool_repair and
 * spool_stream_info.
 *
 * Invariants: pos only moves forward; every call either returns SR_TORN /
 * SR_END / SR_IO without moving or moves pos by at least one byte, and
 * never reads at or past r->size, so any input ends. No buffer is sized
 * from a field before that field was checked against the limits of
 * FORMAT.md §2 and against the bytes present before r->limit.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

#define RESYNC_CHUNK	(64u << 10)

void
segread_init(struct segread *r)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

void
segread_close(struct segread *r)
{
	if (r->fd != -1)
		sysio_close(r->fd);
	r->fd = -1;
}

void
segread_fini(struct segread *r)
{
	segread_close(r);
	free(r->stored);
	free(r->raw);
	free(r->spare);
	segread_init(r);
}

static int
pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = sysio_pread(fd, p, len, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		if (n == 0)
			return -ENODATA;	/* file shrank under us */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int
segread_refresh(struct segread *r)
{
	struct stat st;
	uint8_t b[FOOTER_LEN];

	if (fstat(r->fd, &st) == -1)
		return -errno;
	r->size = (uint64_t)st.st_size;
	r->limit = r->size;
	r->footer_seen = false;
	if (r->size >= SEG_HEADER_LEN + FOOTER_LEN &&
	    pread_all(r->fd, b, FOOTER_LEN, r->size - FOOTER_LEN) == 0 &&
	    footer_decode(b, &r->footer) &&
	    r->footer.stored_bytes == r->size) {
		r->footer_seen = true;
		r->limit = r->size - FOOTER_LEN;
	}
	return 0;
}

int
segread_open(struct segread *r, int sfd, uint64_t seq, bool sealed)
{
	uint8_t b[SEG_HEADER_LEN];
	char name[32];
	int i, rc;

	segread_close(r);
	/* A rename .open -> .seg may happen between tries. */
	for (i = 0; i < 3 && r->fd == -1; i++) {
		seg_name(name, sizeof(name), seq, (i % 2 == 0) == sealed);
		if ((rc = open_regular(sfd, name, O_RDONLY, 0)) == -ENOENT)
			continue;
		if (rc < 0)
			return rc;
		r->fd = rc;
		r->sealed = (i % 2 == 0) == sealed;
	}
	if (r->fd == -1)
		return -ENOENT;
	r->seq = seq;
	r->pos = SEG_HEADER_LEN;
	if ((rc = segread_refresh(r)) < 0)
		return rc;
	r->header_ok = r->size >= SEG_HEADER_LEN &&
	    pread_all(r->fd, b, SEG_HEADER_LEN, 0) == 0 &&
	    seg_header_decode(b, &r->hdr) && r->hdr.segment_seq == seq;
	return 0;
}

static int
grow(uint8_t **p, size_t *cap, size_t need)
{
	uint8_t *n;

	if (*cap >= need)
		return 0;
	if ((n = realloc(*p, need)) == NULL)
		return -ENOMEM;
	*p = n;
	*cap = need;
	return 0;
}

/* Does a valid frame header (with its payload inside limit) or the footer
 * start at b (file offset off)? */
static bool
candidate_ok(const struct segread *r, const uint8_t *b, uint64_t off)
{
	struct frame_header f;
	struct footer ft;

	if (frame_header_decode(b, &f))
		return off + FRAME_HEADER_LEN + f.stored_len <= r->limit;
	return off + FOOTER_LEN == r->size && footer_decode(b, &ft);
}

/* The next position after r->pos holding a plausible frame, or false. */
static bool
resync(struct segread *r, uint64_t *found, int *errp)
{
	uint8_t *buf;
	uint64_t off = r->pos + 1;
	size_t n, i;

	if ((buf = malloc(RESYNC_CHUNK + FRAME_HEADER_LEN)) == NULL) {
		*errp = -ENOMEM;
		return false;
	}
	while (off + FRAME_HEADER_LEN <= r->size) {
		n = r->size - off;
		if (n > RESYNC_CHUNK + FRAME_HEADER_LEN - 1)
			n = RESYNC_CHUNK + FRAME_HEADER_LEN - 1;
		if ((*errp = pread_all(r->fd, buf, n, off)) < 0)
			break;
		for (i = 0; i + FRAME_HEADER_LEN <= n; i++) {
			if (buf[i] != 'T' || buf[i + 1] != 'S')
				continue;
			if (candidate_ok(r, buf + i, off + i)) {
				*found = off + i;
				free(buf);
				return true;
			}
		}
		off += n - (FRAME_HEADER_LEN - 1);
	}
	free(buf);
	return false;
}

void
segread_adopt(struct segread *r, const struct frame_header *fh,
    const struct payload_iter *it)
{
	uint8_t *p = r->raw;
	size_t cap = r->raw_cap;

	r->raw = r->spare;
	r->raw_cap = r->spare_cap;
	r->spare = p;
	r->spare_cap = cap;
	if (fh != &r->fh)
		r->fh = *fh;
	r->it = *it;
}

/*
 * Reads and checks the payload of r->fh (at r->pos) into r->spare, and
 * adopts it if it is whole. Until then r->raw is not touched.
 */
static bool
payload_ok(struct segread *r, int *errp)
{
	const struct frame_header *f = &r->fh;
	struct payload_iter it;
	uint64_t off = r->pos + FRAME_HEADER_LEN;
	uint8_t *in;

	if ((*errp = grow(&r->spare, &r->spare_cap, f->raw_len + 1)) < 0)
		return false;
	if (f->codec == CODEC_STORED) {
		if ((*errp = pread_all(r->fd, r->spare, f->stored_len,
		    off)) < 0)
			return false;
		in = r->spare;
	} else {
		if ((*errp = grow(&r->stored, &r->stored_cap,
		    f->stored_len + 1)) < 0 ||
		    (*errp = pread_all(r->fd, r->stored, f->stored_len, off)) < 0)
			return false;
		in = r->stored;
	}
	if (spool_crc(in, f->stored_len) != f->payload_crc)
		return false;
	if (f->codec == CODEC_DEFLATE &&
	    !codec_inflate(r->stored, f->stored_len, r->spare, f->raw_len))
		return false;
	if (!payload_check(f, r->spare, &it))
		return false;
	segread_adopt(r, f, &it);
	return true;
}

static enum sr_result
corrupt_until(struct segread *r, uint64_t next)
{
	r->bad_off = r->pos;
	r->bad_len = next - r->pos;
	r->pos = next;
	return SR_CORRUPT;
}

enum sr_result
segread_next(struct segread *r, bool full, int *errp)
{
	uint8_t b[FRAME_HEADER_LEN];
	uint64_t next, end;

	*errp = 0;
	r->bad_hdr_ok = false;
	if (r->pos >= r->limit)
		return SR_END;
	if (r->limit - r->pos < FRAME_HEADER_LEN)
		return r->sealed ? corrupt_until(r, r->limit) : SR_TORN;
	if ((*errp = pread_all(r->fd, b, sizeof(b), r->pos)) < 0)
		return SR_IO;
	if (r->pos + FOOTER_LEN == r->size && footer_decode(b, &r->footer)) {
		r->footer_seen = true;
		return SR_END;
	}
	if (frame_header_decode(b, &r->fh)) {
		end = r->pos + FRAME_HEADER_LEN + r->fh.stored_len;
		if (end > r->limit)
			return r->sealed ? corrupt_until(r, r->limit) : SR_TORN;
		r->fh_off = r->pos;
		if (!full || r->fh.first_seq + r->fh.count <= r->skip_below) {
			r->it.left = 0;	/* header only: no records */
			r->pos = end;
			return SR_FRAME;
		}
		if (payload_ok(r, errp)) {
			r->pos = end;
			return SR_FRAME;
		}
		if (*errp == -ENODATA) {	/* the file shrank under us */
			*errp = 0;
			return SR_TORN;
		}
		if (*errp < 0)
			return SR_IO;
		/* Bad payload: in a growing .open it may be still in writing. */
		if (end == r->limit && !r->sealed)
			return SR_TORN;
		r->bad_hdr_ok = true;
		r->bad_fh = r->fh;
		return corrupt_until(r, end);
	}
	if (resync(r, &next, errp))
		return corrupt_until(r, next);
	if (*errp < 0 && *errp != -ENODATA)
		return SR_IO;
	return r->sealed ? corrupt_until(r, r->limit) : SR_TORN;
}
