/*
 * Crashes and corruption: a torn last frame at every length, bit flips in
 * a frame header, a payload and a segment header. Detected, skipped,
 * counted with their sequence range; everything else still readable.
 */
#include <sys/stat.h>

#include <fcntl.h>

#include "helpers.h"

SPOOL_TEST_SUITE();

#define MAXF 64

struct frames {
	int n;
	uint64_t off[MAXF], first[MAXF];
	uint32_t count[MAXF], stored[MAXF];
	int problems;
	int kinds[8];
	struct spool_problem last;
};

static int
on_frame(void *arg, const struct spool_frame_info *fi)
{
	struct frames *f = arg;

	if (f->n < MAXF && fi->valid) {
		f->off[f->n] = fi->offset;
		f->first[f->n] = fi->first_seq;
		f->count[f->n] = fi->count;
		f->stored[f->n] = fi->stored_len;
		f->n++;
	}
	return 0;
}

static int
on_problem(void *arg, const struct spool_problem *p)
{
	struct frames *f = arg;

	f->problems++;
	f->kinds[p->kind]++;
	f->last = *p;
	return 0;
}

static const struct spool_scan_ops ops = { NULL, on_frame, on_problem };

/* A stream of nframes frames of 3 records "r<seq>" each; returns name. */
static void
make(struct spool_dir *d, int nframes, bool seal, char *name)
{
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	char b[64];
	int i, k;

	spool_options_default(&o);
	o.frame_target = 1 << 20;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0, k = 0; i < nframes; i++) {
		int j;

		for (j = 0; j < 3; j++, k++) {
			memset(b, 'x', sizeof(b));
			snprintf(b, sizeof(b), "r%d", k);
			append1(s, b, sizeof(b), k);
		}
		cr_assert_eq(spool_stream_flush(s, &err), 0);
	}
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, seal ? SPOOL_CLOSE_KEEP :
	    SPOOL_CLOSE_KEEP, "test", &err), 0);
}

static void
seg_path(char *p, size_t len, const char *name, const char *file)
{
	snprintf(p, len, "%s/%s/%s", t.spool, name, file);
}

static size_t
slurp(const char *path, uint8_t **out)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "%s", path);
	fstat(fd, &st);
	*out = malloc((size_t)st.st_size + 1);
	cr_assert_eq(read(fd, *out, (size_t)st.st_size), st.st_size);
	close(fd);
	return (size_t)st.st_size;
}

static void
spit(const char *path, const uint8_t *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
}

/* Reads all; returns records read, checks they are consecutive but for
 * the losses, fills *l. */
static uint64_t
read_all(struct spool_dir *d, const char *name, struct spool_losses *l,
    uint64_t *seqs, size_t max)
{
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	uint64_t n = 0;
	char want[16];
	int rc;

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	while ((rc = spool_cursor_next(c, &r, &err)) == 1) {
		snprintf(want, sizeof(want), "r%llu", (unsigned long long)r.seq);
		cr_assert_eq(memcmp(r.data, want, strlen(want)), 0);
		cr_assert_eq(r.len, 64);
		if (n < max)
			seqs[n] = r.seq;
		n++;
	}
	cr_assert_eq(rc, 0, "next: %d %s", rc, err.msg);
	spool_cursor_losses(c, l);
	spool_cursor_close(c);
	return n;
}

/* The .open file of a stream whose writer died: as the writer left it. */
static void
make_open(struct spool_dir *d, int nframes, char *name, uint8_t **file,
    size_t *len, struct frames *f)
{
	struct spool_err err = { "" };
	char p[8400];

	make(d, nframes, true, name);
	seg_path(p, sizeof(p), name, "0000000000000000.seg");
	*len = slurp(p, file);
	unlink(p);
	*len -= 64;	/* no footer: a writer that never sealed */
	seg_path(p, sizeof(p), name, "0000000000000000.open");
	spit(p, *file, *len);
	memset(f, 0, sizeof(*f));
	cr_assert_eq(spool_scan(d, name, &ops, f, &err), 0, "%s", err.msg);
	cr_assert_eq(f->n, nframes);
}

Test(spool, torn_tail_at_every_length_yields_complete_frames)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_losses l;
	struct spool_err err = { "" };
	struct frames f, g;
	uint8_t *file;
	size_t len, cut, last;
	uint64_t seqs[64];
	char name[SPOOL_NAME_MAX], p[8400];

	make_open(d, 4, name, &file, &len, &f);
	last = f.off[3];
	seg_path(p, sizeof(p), name, "0000000000000000.open");
	for (cut = last; cut <= len; cut++) {
		uint64_t want = cut == len ? 12 : 9;

		spit(p, file, cut);
		cr_assert_eq(read_all(d, name, &l, seqs, 64), want,
		    "cut at %zu", cut);
		cr_assert_eq(seqs[want - 1], want - 1);
		cr_assert_eq(l.records, 0);
		cr_assert_eq(l.frames, 0);
		memset(&g, 0, sizeof(g));
		cr_assert_eq(spool_scan(d, name, &ops, &g, &err),
		    cut == len || cut == last ? 0 : 1, "cut at %zu", cut);
		if (cut != len && cut != last)
			cr_assert_eq(g.kinds[SPOOL_PROBLEM_TORN_TAIL], 1);
		cr_assert_eq(spool_repair(d, name, &err),
		    (int64_t)(cut == len ? 0 : cut - last), "cut at %zu", cut);
		cr_assert_eq(spool_scan(d, name, NULL, NULL, &err), 0);
		cr_assert_eq(read_all(d, name, &l, seqs, 64), want);
	}
	free(file);
	spool_dir_close(d);
}

static void
flip(const char *name, const char *file, uint64_t off)
{
	char p[8400];
	uint8_t *b;
	size_t len;

	seg_path(p, sizeof(p), name, file);
	len = slurp(p, &b);
	cr_assert_lt(off, len);
	b[off] ^= 0x10;
	spit(p, b, len);
	free(b);
}

Test(spool, bit_flip_in_frame_header_is_skipped_and_counted)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_losses l;
	struct spool_err err = { "" };
	struct frames f;
	uint64_t seqs[64], n, i;
	char name[SPOOL_NAME_MAX];

	make(d, 5, true, name);
	memset(&f, 0, sizeof(f));
	spool_scan(d, name, &ops, &f, &err);
	cr_assert_eq(f.n, 5);
	flip(name, "0000000000000000.seg", f.off[2] + 9);	/* first_seq */
	n = read_all(d, name, &l, seqs, 64);
	cr_assert_eq(n, 12);
	for (i = 0; i < n; i++)
		cr_assert_eq(seqs[i], i < 6 ? i : i + 3);
	cr_assert_eq(l.frames, 1);
	cr_assert_eq(l.records, 3);
	cr_assert_eq(l.first_seq, 6);
	cr_assert_eq(l.last_seq, 8);
	memset(&f, 0, sizeof(f));
	cr_assert_geq(spool_scan(d, name, &ops, &f, &err), 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_CORRUPT_FRAME], 1);
	cr_assert_eq(f.n, 4);
	spool_dir_close(d);
}

Test(spool, bit_flip_in_payload_is_skipped_with_its_range)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_losses l;
	struct spool_err err = { "" };
	struct frames f;
	uint64_t seqs[64], n;
	char name[SPOOL_NAME_MAX];

	make(d, 5, true, name);
	memset(&f, 0, sizeof(f));
	spool_scan(d, name, &ops, &f, &err);
	flip(name, "0000000000000000.seg", f.off[1] + 64 + f.stored[1] / 2);
	n = read_all(d, name, &l, seqs, 64);
	cr_assert_eq(n, 12);
	cr_assert_eq(seqs[2], 2);
	cr_assert_eq(seqs[3], 6);
	cr_assert_eq(l.frames, 1);
	cr_assert_eq(l.records, 3);
	cr_assert_eq(l.first_seq, 3);
	cr_assert_eq(l.last_seq, 5);
	memset(&f, 0, sizeof(f));
	cr_assert_eq(spool_scan(d, name, &ops, &f, &err), 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_CORRUPT_FRAME], 1);
	cr_assert(f.last.seq_known);
	cr_assert_eq(f.last.first_seq, 3);
	cr_assert_eq(f.last.last_seq, 5);
	cr_assert(strstr(f.last.msg, "0000000000000000.seg") != NULL, "%s",
	    f.last.msg);
	spool_dir_close(d);
}

Test(spool, bit_flip_in_segment_header_skips_that_segment_only)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_losses l;
	struct spool_err err = { "" };
	struct frames f;
	uint8_t b[40000];
	uint64_t seqs[64], n;
	char name[SPOOL_NAME_MAX], p[8400];
	int i;

	/* One 40 KB record per 64 KiB segment: four segments. */
	spool_options_default(&o);
	o.segment_max = 64 << 10;
	o.frame_target = 0;
	o.level = 0;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0; i < 4; i++) {
		memset(b, 'x', sizeof(b));
		snprintf((char *)b, sizeof(b), "r%d", i);
		append1(s, b, sizeof(b), i);
	}
	strcpy(name, spool_stream_name(s));
	spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err);
	seg_path(p, sizeof(p), name, "0000000000000001.seg");
	cr_assert_eq(access(p, F_OK), 0);
	flip(name, "0000000000000000.seg", 100);	/* in local address */
	/* Opening never refuses over one bad file. */
	{
		struct spool_cursor *c;
		struct spool_record r;

		cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0);
		n = 0;
		while (spool_cursor_next(c, &r, &err) == 1)
			seqs[n++] = r.seq;
		spool_cursor_losses(c, &l);
		spool_cursor_close(c);
	}
	cr_assert_eq(n, 3);
	cr_assert_eq(seqs[0], 1);
	cr_assert_eq(l.records, 1);
	cr_assert_eq(l.first_seq, 0);
	cr_assert_eq(l.last_seq, 0);
	memset(&f, 0, sizeof(f));
	cr_assert_eq(spool_scan(d, name, &ops, &f, &err), 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_BAD_HEADER], 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_SEQ_GAP], 0);
	spool_dir_close(d);
}

Test(spool, garbage_between_frames_is_resynced)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_losses l;
	struct frames f;
	uint8_t *file, *mixed;
	size_t len;
	uint64_t seqs[64], n;
	char name[SPOOL_NAME_MAX], p[8400];

	make_open(d, 4, name, &file, &len, &f);
	/* 1000 bytes of junk ("TS" included) inserted before frame 2. */
	mixed = malloc(len + 1000);
	memcpy(mixed, file, f.off[2]);
	for (n = 0; n < 1000; n++)
		mixed[f.off[2] + n] = n % 50 == 0 ? 'T' : n % 50 == 1 ? 'S' :
		    (uint8_t)(n * 7);
	memcpy(mixed + f.off[2] + 1000, file + f.off[2], len - f.off[2]);
	seg_path(p, sizeof(p), name, "0000000000000000.open");
	spit(p, mixed, len + 1000);
	n = read_all(d, name, &l, seqs, 64);
	cr_assert_eq(n, 12);
	cr_assert_eq(l.records, 0);
	cr_assert_eq(l.frames, 1);
	free(mixed);
	free(file);
	spool_dir_close(d);
}
