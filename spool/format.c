/*
 * format.c — encoding and decoding of the structures of FORMAT.md.
 * Nothing here does I/O; every decoder checks every limit before a caller
 * could use a field to size a buffer or a read.
 */
#include <string.h>

#include "internal.h"

void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + 4, (uint32_t)(v >> 32));
}

uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

size_t
varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

size_t
varint_get(const uint8_t *p, size_t len, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;

	for (i = 0; i < len && i < VARINT_MAX; i++) {
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

int64_t
ts_us(int64_t ts, int64_t first)
{
	return (int64_t)((uint64_t)ts - (uint64_t)first) / 1000;
}

int64_t
ts_from_us(int64_t first, int64_t us)
{
	return (int64_t)((uint64_t)first + (uint64_t)us * 1000);
}

uint64_t
zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

int64_t
unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static void
put_str(uint8_t *p, const char *s, size_t size)
{
	memset(p, 0, size);
	strlcpy((char *)p, s, size);
}

static bool
get_str(char *dst, const uint8_t *p, size_t size)
{
	if (memchr(p, '\0', size) == NULL)
		return false;
	memcpy(dst, p, size);
	return true;
}

void
seg_header_encode(uint8_t b[SEG_HEADER_LEN], const struct seg_header *h)
{
	memset(b, 0, SEG_HEADER_LEN);
	memcpy(b, SEG_MAGIC, 8);
	put_u32(b + 8, SEG_VERSION);
	put_u32(b + 12, SEG_HEADER_LEN);
	put_u64(b + 16, h->segment_seq);
	put_u64(b + 24, h->base_seq);
	put_u64(b + 32, h->id.stream_id);
	put_u64(b + 40, (uint64_t)h->id.created_ns);
	put_u32(b + 48, (uint32_t)h->id.pid);
	put_u32(b + 52, (uint32_t)h->id.fd);
	put_u64(b + 56, h->segment_max);
	put_u32(b + 64, h->codec);
	put_u32(b + 68, h->level);
	put_str(b + 72, h->id.local, SPOOL_ADDR_MAX);
	put_str(b + 200, h->id.peer, SPOOL_ADDR_MAX);
	put_u32(b + 332, spool_crc(b, 332));
}

bool
seg_header_decode(const uint8_t b[SEG_HEADER_LEN], struct seg_header *h)
{
	memset(h, 0, sizeof(*h));
	if (memcmp(b, SEG_MAGIC, 8) != 0 || get_u32(b + 8) != SEG_VERSION ||
	    get_u32(b + 12) != SEG_HEADER_LEN ||
	    get_u32(b + 332) != spool_crc(b, 332))
		return false;
	h->segment_seq = get_u64(b + 16);
	h->base_seq = get_u64(b + 24);
	h->id.stream_id = get_u64(b + 32);
	h->id.created_ns = (int64_t)get_u64(b + 40);
	h->id.pid = (int32_t)get_u32(b + 48);
	h->id.fd = (int32_t)get_u32(b + 52);
	h->segment_max = get_u64(b + 56);
	h->codec = get_u32(b + 64);
	h->level = get_u32(b + 68);
	return get_str(h->id.local, b + 72, SPOOL_ADDR_MAX) &&
	    get_str(h->id.peer, b + 200, SPOOL_ADDR_MAX);
}

void
frame_header_encode(uint8_t b[FRAME_HEADER_LEN], const struct frame_header *f)
{
	memset(b, 0, FRAME_HEADER_LEN);
	memcpy(b, FRAME_MAGIC, 4);
	put_u32(b + 4, f->codec);
	put_u64(b + 8, f->first_seq);
	put_u32(b + 16, f->count);
	put_u32(b + 20, f->data_len);
	put_u32(b + 24, f->raw_len);
	put_u32(b + 28, f->stored_len);
	put_u64(b + 32, (uint64_t)f->first_ts);
	put_u64(b + 40, (uint64_t)f->last_ts);
	put_u32(b + 48, f->payload_crc);
	put_u32(b + 60, spool_crc(b, 60));
}

bool
frame_header_decode(const uint8_t b[FRAME_HEADER_LEN], struct frame_header *f)
{
	if (memcmp(b, FRAME_MAGIC, 4) != 0 || get_u32(b + 60) != spool_crc(b, 60))
		return false;
	f->codec = get_u32(b + 4);
	f->first_seq = get_u64(b + 8);
	f->count = get_u32(b + 16);
	f->data_len = get_u32(b + 20);
	f->raw_len = get_u32(b + 24);
	f->stored_len = get_u32(b + 28);
	f->first_ts = (int64_t)get_u64(b + 32);
	f->last_ts = (int64_t)get_u64(b + 40);
	f->payload_crc = get_u32(b + 48);
	if (f->raw_len > SPOOL_FRAME_RAW_MAX || f->count == 0 ||
	    f->count > f->raw_len / 2 || f->data_len > f->raw_len ||
	    f->first_seq + f->count < f->first_seq)
		return false;
	if (f->codec == CODEC_STORED)
		return f->stored_len == f->raw_len;
	/* Deflate expands at most about 1032:1; a bound on what we inflate. */
	if (f->codec == CODEC_DEFLATE)
		return f->stored_len < f->raw_len &&
		    f->raw_len <= (uint64_t)f->stored_len * 1100 + 1024;
	return false;
}

void
footer_encode(uint8_t b[FOOTER_LEN], const struct footer *f)
{
	memset(b, 0, FOOTER_LEN);
	memcpy(b, FOOTER_MAGIC, 4);
	put_u32(b + 4, f->frames);
	put_u64(b + 8, f->first_seq);
	put_u64(b + 16, f->last_seq);
	put_u64(b + 24, f->records);
	put_u64(b + 32, f->raw_bytes);
	put_u64(b + 40, f->stored_bytes);
	put_u32(b + 60, spool_crc(b, 60));
}

bool
footer_decode(const uint8_t b[FOOTER_LEN], struct footer *f)
{
	if (memcmp(b, FOOTER_MAGIC, 4) != 0 ||
	    get_u32(b + 60) != spool_crc(b, 60))
		return false;
	f->frames = get_u32(b + 4);
	f->first_seq = get_u64(b + 8);
	f->last_seq = get_u64(b + 16);
	f->records = get_u64(b + 24);
	f->raw_bytes = get_u64(b + 32);
	f->stored_bytes = get_u64(b + 40);
	return true;
}

void
progress_encode(uint8_t b[PROGRESS_SLOT_LEN], const struct progress *p)
{
	memset(b, 0, PROGRESS_SLOT_LEN);
	memcpy(b, PROGRESS_MAGIC, 4);
	put_u32(b + 4, 1);
	put_u64(b + 8, p->generation);
	put_u64(b + 16, p->next_seq);
	put_u64(b + 24, p->next_off);
	put_u32(b + 36, spool_crc(b, 36));
}

bool
progress_decode(const uint8_t b[PROGRESS_SLOT_LEN], struct progress *p)
{
	if (memcmp(b, PROGRESS_MAGIC, 4) != 0 || get_u32(b + 4) != 1 ||
	    get_u32(b + 36) != spool_crc(b, 36))
		return false;
	p->generation = get_u64(b + 8);
	p->next_seq = get_u64(b + 16);
	p->next_off = get_u64(b + 24);
	return true;
}

static inline uint64_t
load8(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return w;
}

/* The sum of the eight bytes of w, each below 0x80. */
static inline uint64_t
bytes_sum(uint64_t w)
{
	w = (w & 0x00ff00ff00ff00ffull) + ((w >> 8) & 0x00ff00ff00ff00ffull);
	return (w * 0x0001000100010001ull) >> 48;
}

#define HIGH_BITS	0x8080808080808080ull
#define LOW_BITS	0x0101010101010101ull

/*
 * Checks the lengths and times columns (FORMAT.md §3.2) and sets the
 * iterator. Both columns are walked once, eight records at a time where
 * their eight bytes are one-byte varints (records of less than 128 bytes,
 * time deltas of less than 64 µs: every byte below 0x80), else one varint
 * at a time: the same sums, the same refusals.
 */
bool
payload_check(const struct frame_header *f, const uint8_t *raw,
    struct payload_iter *it)
{
	const uint8_t *p = raw, *end = raw + f->raw_len;
	uint64_t v, w, h, odd, sum = 0;
	int64_t q = 0;
	uint32_t i;
	size_t n;

	it->lens = p;
	for (i = 0; i < f->count;) {
		if (f->count - i >= 8 && end - p >= 8 &&
		    ((w = load8(p)) & HIGH_BITS) == 0) {
			sum += bytes_sum(w);	/* each below 128 */
			p += 8;
			i += 8;
			continue;
		}
		if ((n = varint_get(p, (size_t)(end - p), &v)) == 0 ||
		    v > SPOOL_RECORD_MAX)
			return false;
		sum += v;
		p += n;
		i++;
	}
	it->tss = p;
	for (i = 0; i < f->count;) {
		if (f->count - i >= 8 && end - p >= 8 &&
		    ((w = load8(p)) & HIGH_BITS) == 0) {
			/* unzigzag: 2h -> h, 2h + 1 -> -(h + 1), so the eight
			 * add up to sum(h) - 2 sum(h of odd) - count(odd). */
			odd = w & LOW_BITS;
			h = (w >> 1) & ~HIGH_BITS;
			q = (int64_t)((uint64_t)q + bytes_sum(h) -
			    2 * bytes_sum(h & (odd * 0xff)) - bytes_sum(odd));
			p += 8;
			i += 8;
			continue;
		}
		if ((n = varint_get(p, (size_t)(end - p), &v)) == 0)
			return false;
		q = (int64_t)((uint64_t)q + (uint64_t)unzigzag(v));
		p += n;
		i++;
	}
	if (sum != f->data_len || (uint64_t)(end - p) != sum ||
	    q != ts_us(f->last_ts, f->first_ts))
		return false;
	it->data = p;
	it->end = end;
	it->first_ts = f->first_ts;
	it->q = 0;
	it->left = f->count;
	return true;
}

bool
payload_next(struct payload_iter *it, struct rec_ref *r)
{
	uint64_t len = 0, d = 0;

	/* The payload was checked: these cannot fail or overrun. */
	if (it->left == 0)
		return false;
	it->lens += varint_get(it->lens, VARINT_MAX, &len);
	it->tss += varint_get(it->tss, VARINT_MAX, &d);
	it->q = (int64_t)((uint64_t)it->q + (uint64_t)unzigzag(d));
	r->len = (uint32_t)len;
	r->ts = ts_from_us(it->first_ts, it->q);
	r->data = it->data;
	it->data += len;
	it->left--;
	return true;
}
