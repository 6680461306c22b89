/*
 * origin.c — where a stream's bytes stand in its socket's byte count
 * (FORMAT.md §10): the `origin` file of a stream dir, written by the
 * interposer when it hands a stream to `tcpspool daemon`, and the lookup
 * that turns "the socket accepted this many bytes" into the record and
 * offset where delivery must continue.
 *
 * Entries are 32 bytes, appended with one write each; a torn or corrupt
 * entry is ignored, so the file only ever says less, never something
 * wrong. The lookup reads frame headers only, and inflates the one frame
 * that holds the byte asked for.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sysio.h"

#define ORIGIN_FILE	"origin"
#define ORIGIN_MAGIC	"TSOR"
#define ORIGIN_LEN	32
#define KIND_COUNT	1
#define KIND_ANCHOR	2

static void
entry_encode(uint8_t b[ORIGIN_LEN], uint32_t kind, uint64_t a, uint64_t v)
{
	memset(b, 0, ORIGIN_LEN);
	memcpy(b, ORIGIN_MAGIC, 4);
	put_u32(b + 4, kind);
	put_u64(b + 8, a);
	put_u64(b + 16, v);
	put_u32(b + 28, spool_crc(b, 28));
}

static int
entry_append(struct spool_stream *s, uint32_t kind, uint64_t a, uint64_t v,
    bool create, struct spool_err *err)
{
	struct spool_dir *d = stream_dir(s);
	const char *name = spool_stream_name(s);
	uint8_t b[ORIGIN_LEN];
	int sfd, fd, rc = 0;

	if ((sfd = open_stream_dir(d, name, err)) < 0)
		return sfd;
	fd = sysio_openat(sfd, ORIGIN_FILE, O_WRONLY | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
	if (fd == -1) {
		rc = -errno;
		spool_seterr(err, "%s/%s/%s: open: %s", d->path, name,
		    ORIGIN_FILE, strerror(errno));
		goto out;
	}
	entry_encode(b, kind, a, v);
	if (sysio_write(fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
		rc = -EIO;
		spool_seterr(err, "%s/%s/%s: write failed", d->path, name,
		    ORIGIN_FILE);
	}
	sysio_close(fd);
out:
	sysio_close(sfd);
	return rc;
}

int
spool_origin_begin(struct spool_stream *s, bool known, uint64_t count,
    struct spool_err *err)
{
	return entry_append(s, KIND_COUNT, known ? 1 : 0, count, true, err);
}

int
spool_origin_anchor(struct spool_stream *s, uint64_t *seg_seen,
    struct spool_err *err)
{
	struct stream_live *l = stream_live(s);
	uint64_t seg, seq, abs;

	pthread_mutex_lock(&l->mu);
	seg = l->cur_seg;
	seq = l->written;
	pthread_mutex_unlock(&l->mu);
	if (seg == *seg_seen)
		return 0;
	/* Under the writer's serialisation: written and staged move together
	 * only in its own calls. */
	abs = atomic_load(&l->raw_bytes) - stream_staged_bytes(s);
	*seg_seen = seg;
	return entry_append(s, KIND_ANCHOR, seq, abs, false, err);
}

int
spool_origin_read(struct spool_dir *d, const char *name,
    struct spool_origin *o, struct spool_err *err)
{
	uint8_t b[ORIGIN_LEN];
	int sfd, fd, rc = 0;
	off_t off = 0;

	memset(o, 0, sizeof(*o));
	if ((sfd = open_stream_dir(d, name, err)) < 0)
		return sfd;
	if ((fd = open_regular(sfd, ORIGIN_FILE, O_RDONLY, 0)) < 0) {
		rc = fd;
		spool_seterr(err, "%s/%s/%s: open: %s", d->path, name,
		    ORIGIN_FILE, spool_strerror(-fd));
		goto out;
	}
	while (sysio_pread(fd, b, sizeof(b), off) == (ssize_t)sizeof(b)) {
		off += ORIGIN_LEN;
		if (memcmp(b, ORIGIN_MAGIC, 4) != 0 ||
		    get_u32(b + 28) != spool_crc(b, 28))
			continue;
		if (get_u32(b + 4) == KIND_COUNT) {
			o->have = true;
			o->known = get_u64(b + 8) == 1;
			o->count = get_u64(b + 16);
		} else if (get_u32(b + 4) == KIND_ANCHOR) {
			if (o->nanchors == SPOOL_ANCHORS_MAX) {
				memmove(o->anchors, o->anchors + 1,
				    sizeof(o->anchors[0]) *
				    (SPOOL_ANCHORS_MAX - 1));
				o->nanchors--;
			}
			o->anchors[o->nanchors].seq = get_u64(b + 8);
			o->anchors[o->nanchors++].abs = get_u64(b + 16);
		}
	}
	sysio_close(fd);
	if (!o->have) {
		rc = -ENODATA;
		spool_seterr(err, "%s/%s/%s: no origin entry", d->path, name,
		    ORIGIN_FILE);
	}
out:
	sysio_close(sfd);
	return rc;
}

/* One frame's place: its records and their bytes. */
struct fplace {
	uint64_t seg;
	bool sealed;
	uint64_t first_seq, end_seq;
	uint64_t len;
};

/* The frames of the stream, in order, header only. */
static int
frames_of(int sfd, struct fplace **out, size_t *n, struct spool_err *err)
{
	struct seg_entry *segs = NULL;
	struct fplace *v = NULL, *nv;
	size_t nseg = 0, cap = 0, i;
	struct segread r;
	enum sr_result res;
	int rc, e;

	*out = NULL;
	*n = 0;
	if ((rc = list_segments(sfd, &segs, &nseg)) < 0) {
		spool_seterr(err, "list segments: %s", strerror(-rc));
		return rc;
	}
	segread_init(&r);
	for (i = 0; i < nseg; i++) {
		if (segread_open(&r, sfd, segs[i].seq, segs[i].sealed) < 0)
			continue;	/* deleted meanwhile, or unreadable */
		while ((res = segread_next(&r, false, &e)) == SR_FRAME ||
		    res == SR_CORRUPT) {
			if (res != SR_FRAME)
				continue;
			if (*n == cap) {
				cap = cap ? cap * 2 : 64;
				if ((nv = realloc(v, cap * sizeof(*v))) ==
				    NULL) {
					rc = -ENOMEM;
					goto out;
				}
				v = nv;
			}
			v[(*n)++] = (struct fplace){ segs[i].seq,
			    segs[i].sealed, r.fh.first_seq,
			    r.fh.first_seq + r.fh.count, r.fh.data_len };
		}
		segread_close(&r);
		if (res == SR_IO) {
			rc = e;
			spool_seterr(err, "segment %016llx: %s",
			    (unsigned long long)segs[i].seq, strerror(-e));
			goto out;
		}
	}
out:
	segread_fini(&r);
	free(segs);
	if (rc < 0) {
		free(v);
		*n = 0;
		return rc;
	}
	*out = v;
	return 0;
}

/*
 * The stream byte of the first frame, from the newest anchor that falls
 * on a frame boundary of the contiguous frames f[0..n) (the origin itself
 * is the anchor (0, 0)). False if none does.
 */
static bool
first_abs(const struct spool_origin *o, const struct fplace *f, size_t n,
    uint64_t *abs)
{
	size_t a, i;

	for (a = o->nanchors + 1; a-- > 0;) {
		uint64_t seq = a < o->nanchors ? o->anchors[a].seq : 0;
		uint64_t at = a < o->nanchors ? o->anchors[a].abs : 0;
		uint64_t before = 0;

		for (i = 0; i < n && f[i].first_seq != seq; i++)
			before += f[i].len;
		if (i == n && f[n - 1].end_seq != seq)
			continue;
		if (at < before)
			continue;	/* impossible: a bad anchor */
		*abs = at - before;
		return true;
	}
	return false;
}

int
spool_locate(struct spool_dir *d, const char *name,
    const struct spool_origin *o, uint64_t want, struct spool_place *p,
    struct spool_err *err)
{
	struct fplace *f = NULL;
	struct segread r;
	struct rec_ref rr;
	enum sr_result res;
	uint64_t abs, seq;
	size_t n = 0, i, k;
	int sfd, rc, e;

	memset(p, 0, sizeof(*p));
	if ((sfd = open_stream_dir(d, name, err)) < 0)
		return sfd;
	if ((rc = frames_of(sfd, &f, &n, err)) < 0)
		goto out;
	if (n == 0) {
		p->at_end = true;
		goto out;
	}
	/* Only the newest contiguous run of frames counts: a gap (frames
	 * lost to corruption) cuts the byte arithmetic. */
	for (k = n - 1; k > 0 && f[k - 1].end_seq == f[k].first_seq; k--)
		;
	if (!first_abs(o, f + k, n - k, &abs)) {
		rc = -ENOENT;
		spool_seterr(err, "%s/%s: no anchor among the records on disk",
		    d->path, name);
		goto out;
	}
	p->first_abs = abs;
	p->first_seq = f[k].first_seq;
	if (want < abs) {
		rc = -ERANGE;
		spool_seterr(err, "%s/%s: byte %llu is before the records on "
		    "disk (first %llu)", d->path, name,
		    (unsigned long long)want, (unsigned long long)abs);
		goto out;
	}
	for (i = k; i < n && want >= abs + f[i].len; i++)
		abs += f[i].len;
	p->end_abs = abs;
	if (i == n) {
		for (; i < n; i++)
			p->end_abs += f[i].len;
		p->at_end = true;
		p->seq = f[n - 1].end_seq;
		p->beyond = want - p->end_abs;
		goto out;
	}
	/* The frame holds it: its records say which one. */
	segread_init(&r);
	if ((rc = segread_open(&r, sfd, f[i].seg, f[i].sealed)) < 0) {
		spool_seterr(err, "segment %016llx: %s",
		    (unsigned long long)f[i].seg, strerror(-rc));
		segread_fini(&r);
		goto out;
	}
	r.skip_below = f[i].first_seq;
	rc = -EILSEQ;
	while ((res = segread_next(&r, true, &e)) == SR_FRAME ||
	    res == SR_CORRUPT) {
		if (res != SR_FRAME || r.fh.first_seq != f[i].first_seq)
			continue;
		for (seq = r.fh.first_seq; payload_next(&r.it, &rr); seq++) {
			if (want < abs + rr.len) {
				p->seq = seq;
				p->off = want - abs;
				rc = 0;
				break;
			}
			abs += rr.len;
		}
		break;
	}
	segread_fini(&r);
	if (rc < 0)
		spool_seterr(err, "%s/%s: the frame at record %llu cannot be "
		    "read", d->path, name, (unsigned long long)f[i].first_seq);
	for (p->end_abs = p->first_abs, i = k; i < n; i++)
		p->end_abs += f[i].len;
out:
	free(f);
	sysio_close(sfd);
	return rc;
}

/*
 * The bytes a TCP socket accepted so far (FORMAT.md §10): acked, outq,
 * acked again until the two agree, so the pair is of one moment.
 */
int
spool_socket_count(int fd, uint64_t *count)
{
	struct tcp_info ti;
	socklen_t len;
	uint64_t a1;
	int outq, i;

	for (i = 0; i < 100; i++) {
		len = sizeof(ti);
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
			return -errno;
		if (len < offsetof(struct tcp_info, tcpi_bytes_acked) +
		    sizeof(ti.tcpi_bytes_acked))
			return -ENOTSUP;
		a1 = ti.tcpi_bytes_acked;
		if (ioctl(fd, SIOCOUTQ, &outq) == -1)
			return -errno;
		len = sizeof(ti);
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
			return -errno;
		if (ti.tcpi_bytes_acked == a1) {
			*count = a1 + (uint64_t)outq;
			return 0;
		}
	}
	return -EAGAIN;
}
