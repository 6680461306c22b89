/*
 * codec.c — raw DEFLATE for frame payloads, by ISA-L, libdeflate or zlib.
 *
 * Whatever library wrote it, a frame's payload is one complete raw DEFLATE
 * stream (RFC 1951) that zlib's inflate reads (FORMAT.md §3.2); zlib is
 * the reference decoder of the tests. The two directions are chosen
 * apart, each the fastest library the build found:
 *
 *   deflate  ISA-L igzip at level 1, the default level, once
 *            spool_codec_load() found libisal.so.2 (below); libdeflate
 *            (option 'libdeflate', HAVE_LIBDEFLATE) at levels 2..9, and
 *            at every level while ISA-L is not loaded; zlib where the
 *            build has neither. ISA-L's
 *            own levels stop at 3 and none matches the ratio of zlib's
 *            or libdeflate's higher levels: a spool that asks for more
 *            than level 1 asked for ratio over speed.
 *   inflate  libdeflate, else zlib. Never ISA-L: on frames that barely
 *            compress its inflate is 3x slower than libdeflate's.
 *
 * ISA-L is never linked: libisal.so.2 exports, and calls through the
 * dynamic linker, generic names (build_heap, build_huff_tree,
 * crc32_gzip_refl...). Linked into an LD_PRELOAD library, those would
 * join the host's global scope (a host library's same-named functions
 * could be preempted by them) and its internal calls could land in a host
 * that exports the same names (-rdynamic). spool_codec_load() dlopens it
 * RTLD_LOCAL (its names stay out of the global scope) and RTLD_DEEPBIND
 * (its own references bind within itself first), and takes the two entry
 * points used here with dlsym; the build needs only the headers (Meson
 * option 'isal', HAVE_ISAL; never with a sanitizer, whose runtime refuses
 * RTLD_DEEPBIND). Who calls it, and when, is the caller's choice: the
 * interposer on its sync thread, started when a process first spools
 * (preload/syncer.c), tests in their set-up. Until it returns true, and if it never does, level 1 is
 * libdeflate's.
 *
 * Tests and benchmarks may force either direction to any library the
 * build has (codec_backend_force). The choice and its figures:
 * tests/bench/NOTES.md.
 *
 * Memory. A stream holds no codec state. A frame takes a scratch (the
 * library's state plus the buffers it needs) for the length of one call
 * (inflate) or until the caller wrote the result (deflate,
 * codec_release), and gives it back to a cache of CACHE_SLOTS per
 * direction shared by every thread. So the process holds at most as many
 * scratches as frames are being coded at once plus CACHE_SLOTS idle ones,
 * whatever the number of threads or streams; a scratch whose buffers grew
 * past CACHE_BUF_MAX (a frame_target of megabytes) is freed, not cached.
 * An ISA-L deflate scratch is its stream state (80 KiB) and its level-1
 * buffer (84 KiB, ISAL_DEF_LVL1_SMALL) plus the output buffer; it needs no
 * input buffer, since ISA-L takes the frame's columns as a stream.
 *
 * Threads and fork. The cache is an array of atomic pointers: a taker
 * exchanges a slot with NULL, a giver swaps its scratch into an empty slot
 * (or frees it). No lock is held at any time, so a fork child finds every
 * slot either empty or holding a whole idle scratch, and may code frames
 * at once; scratches other threads of the parent held at the fork are
 * never seen again in the child (lost memory there, never corruption).
 * Not async-signal-safe (malloc).
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#ifdef HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif
#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "internal.h"

#define CACHE_SLOTS	4
#define CACHE_BUF_MAX	(1u << 20)
#define STORE_SAVING	64	/* deflate must save 1/64 of a payload */

/* The state of one direction of one library, and its buffers. */
struct codec_scratch {
	enum codec_backend backend;
	int level;			/* deflate only */
	void *state;			/* z_stream, libdeflate object or
					   struct isal_deflater */
	uint8_t *in;			/* gathered input (libdeflate) */
	size_t in_cap;
	uint8_t *out;			/* compressed output (deflate) */
	size_t out_cap;
};

/* The inflater, and the deflater at levels 2..9 (and 1 without ISA-L). */
#ifdef HAVE_LIBDEFLATE
#define GENERAL_BACKEND	CODEC_BACKEND_LIBDEFLATE
#else
#define GENERAL_BACKEND	CODEC_BACKEND_ZLIB
#endif
static atomic_int deflater = GENERAL_BACKEND;
static atomic_int inflater = GENERAL_BACKEND;

#ifdef HAVE_ISAL
/*
 * libisal.so.2, loaded once: LOAD_NONE -> LOAD_BUSY (the one caller that
 * won the exchange) -> LOAD_READY or LOAD_ABSENT, never back. The entry
 * points are written before LOAD_READY is released and never change
 * after. A fork child of a process whose load was under way stays BUSY:
 * it deflates with libdeflate rather than enter a loader that another
 * thread of its parent left in the middle of a dlopen.
 */
enum { LOAD_NONE, LOAD_BUSY, LOAD_READY, LOAD_ABSENT };
static atomic_int isal_load = LOAD_NONE;
static struct {
	void (*deflate_init)(struct isal_zstream *);
	int (*deflate)(struct isal_zstream *);
} isal;
static char isal_why[160];	/* why not loaded, once LOAD_ABSENT */

static bool
isal_ready(void)
{
	return atomic_load_explicit(&isal_load, memory_order_acquire) ==
	    LOAD_READY;
}
#endif

bool
spool_codec_load(void)
{
#ifdef HAVE_ISAL
	const char *e;
	void *h;
	int st = LOAD_NONE;

	if (!atomic_compare_exchange_strong(&isal_load, &st, LOAD_BUSY))
		return st == LOAD_READY;
	/* A host built with a sanitizer: its runtime intercepts dlopen and
	 * kills the process on RTLD_DEEPBIND. Every sanitizer runtime
	 * exports this name. */
	if (dlsym(RTLD_DEFAULT, "__sanitizer_set_report_path") != NULL) {
		(void)snprintf(isal_why, sizeof(isal_why), "a sanitizer "
		    "runtime is loaded (it refuses RTLD_DEEPBIND)");
		atomic_store(&isal_load, LOAD_ABSENT);
		return false;
	}
	h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (h != NULL) {
		*(void **)&isal.deflate_init = dlsym(h, "isal_deflate_init");
		*(void **)&isal.deflate = dlsym(h, "isal_deflate");
	}
	if (h == NULL || isal.deflate_init == NULL || isal.deflate == NULL) {
		e = dlerror();
		(void)snprintf(isal_why, sizeof(isal_why), "%s",
		    e != NULL ? e : "libisal.so.2: no isal_deflate");
		if (h != NULL)
			(void)dlclose(h);
		atomic_store(&isal_load, LOAD_ABSENT);
		return false;
	}
	/* The handle is kept for the life of the process. */
	atomic_store_explicit(&isal_load, LOAD_READY, memory_order_release);
	/* Level 1 becomes ISA-L's unless a test forced a deflater. */
	st = GENERAL_BACKEND;
	(void)atomic_compare_exchange_strong(&deflater, &st,
	    CODEC_BACKEND_ISAL);
	return true;
#else
	return false;
#endif
}

const char *
spool_codec_load_error(void)
{
#ifdef HAVE_ISAL
	switch (atomic_load_explicit(&isal_load, memory_order_acquire)) {
	case LOAD_READY:
		return NULL;
	case LOAD_ABSENT:
		return isal_why;
	default:
		return "libisal.so.2 not loaded yet";
	}
#else
	return "built without ISA-L";
#endif
}

static _Atomic(struct codec_scratch *) enc_cache[CACHE_SLOTS];
static _Atomic(struct codec_scratch *) dec_cache[CACHE_SLOTS];

bool
codec_deflater_available(enum codec_backend b)
{
#ifdef HAVE_ISAL
	if (b == CODEC_BACKEND_ISAL)
		return isal_ready();
#endif
	return codec_inflater_available(b);
}

bool
codec_inflater_available(enum codec_backend b)
{
#ifdef HAVE_LIBDEFLATE
	if (b == CODEC_BACKEND_LIBDEFLATE)
		return true;
#endif
	return b == CODEC_BACKEND_ZLIB;
}

int
codec_backend_force(enum codec_backend def, enum codec_backend inf)
{
	if (!codec_deflater_available(def) || !codec_inflater_available(inf))
		return -1;
	atomic_store(&deflater, (int)def);
	atomic_store(&inflater, (int)inf);
	return 0;
}

enum codec_backend
codec_deflater(void)
{
	return (enum codec_backend)atomic_load(&deflater);
}

enum codec_backend
codec_inflater(void)
{
	return (enum codec_backend)atomic_load(&inflater);
}

const char *
codec_backend_name(enum codec_backend b)
{
	switch (b) {
	case CODEC_BACKEND_LIBDEFLATE:
		return "libdeflate";
	case CODEC_BACKEND_ISAL:
		return "ISA-L igzip";
	default:
		return "zlib";
	}
}

/* ------------------------------------------------------ scratch, cache */

/* Frees the library state of a scratch, which then has none. */
static void
state_free(struct codec_scratch *x, bool enc)
{
	if (x->state == NULL)
		return;
#ifdef HAVE_ISAL
	if (x->backend == CODEC_BACKEND_ISAL)
		free(x->state);		/* struct isal_deflater */
	else
#endif
#ifdef HAVE_LIBDEFLATE
	if (x->backend == CODEC_BACKEND_LIBDEFLATE && enc)
		libdeflate_free_compressor(x->state);
	else if (x->backend == CODEC_BACKEND_LIBDEFLATE)
		libdeflate_free_decompressor(x->state);
	else
#endif
	{
		if (enc)
			deflateEnd(x->state);
		else
			inflateEnd(x->state);
		free(x->state);
	}
	x->state = NULL;
}

static void
scratch_free(struct codec_scratch *x, bool enc)
{
	state_free(x, enc);
	free(x->in);
	free(x->out);
	free(x);
}

static struct codec_scratch *
cache_take(_Atomic(struct codec_scratch *) *cache)
{
	struct codec_scratch *x;
	int i;

	for (i = 0; i < CACHE_SLOTS; i++)
		if (atomic_load_explicit(&cache[i], memory_order_relaxed) !=
		    NULL && (x = atomic_exchange(&cache[i], NULL)) != NULL)
			return x;
	return calloc(1, sizeof(struct codec_scratch));
}

static void
cache_give(_Atomic(struct codec_scratch *) *cache, struct codec_scratch *x,
    bool enc)
{
	struct codec_scratch *empty;
	int i;

	if (x->in_cap > CACHE_BUF_MAX || x->out_cap > CACHE_BUF_MAX) {
		scratch_free(x, enc);
		return;
	}
	for (i = 0; i < CACHE_SLOTS; i++) {
		empty = NULL;
		if (atomic_compare_exchange_strong(&cache[i], &empty, x))
			return;
	}
	scratch_free(x, enc);
}

static bool
grow(uint8_t **p, size_t *cap, size_t need)
{
	uint8_t *n;

	if (*cap >= need)
		return true;
	if ((n = malloc(need)) == NULL)
		return false;
	free(*p);		/* nothing in it is kept */
	*p = n;
	*cap = need;
	return true;
}

/*
 * Makes x a scratch of backend b (deflate: at this level), dropping a
 * state made for another.
 */
static void
scratch_fit(struct codec_scratch *x, enum codec_backend b, int level,
    bool enc)
{
	if (x->state != NULL && (x->backend != b || x->level != level))
		state_free(x, enc);
	x->backend = b;
	x->level = level;
}

/* ---------------------------------------------------------------- zlib */

static size_t
zlib_deflate(struct codec_scratch *x, const struct iovec *iov, int iovcnt,
    size_t bound, int level)
{
	z_stream *z = x->state;
	int i, rc = Z_OK;

	if (z == NULL) {
		if ((z = calloc(1, sizeof(*z))) == NULL)
			return 0;
		if (deflateInit2(z, level, Z_DEFLATED, -15, 8,
		    Z_DEFAULT_STRATEGY) != Z_OK) {
			free(z);
			return 0;
		}
		x->state = z;
	} else if (deflateReset(z) != Z_OK)
		return 0;
	z->next_out = x->out;
	z->avail_out = (uInt)bound;
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0 && i != iovcnt - 1)
			continue;	/* deflate reports no progress */
		z->next_in = iov[i].iov_base;
		z->avail_in = (uInt)iov[i].iov_len;
		rc = deflate(z, i == iovcnt - 1 ? Z_FINISH : Z_NO_FLUSH);
		if (rc == Z_STREAM_END || (rc == Z_OK && z->avail_out == 0) ||
		    rc == Z_BUF_ERROR)
			break;
		if (rc != Z_OK)
			return 0;
	}
	if (rc != Z_STREAM_END)
		return 0;	/* did not fit in bound: store */
	return bound - z->avail_out;
}

static bool
zlib_inflate(struct codec_scratch *x, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t raw_len)
{
	z_stream *z = x->state;

	if (z == NULL) {
		if ((z = calloc(1, sizeof(*z))) == NULL)
			return false;
		if (inflateInit2(z, -15) != Z_OK) {
			free(z);
			return false;
		}
		x->state = z;
	} else if (inflateReset(z) != Z_OK)
		return false;
	z->next_in = (uint8_t *)in;
	z->avail_in = (uInt)in_len;
	z->next_out = out;
	z->avail_out = (uInt)raw_len;
	/* Exactly raw_len bytes out, and the stream ends exactly at in_len. */
	return inflate(z, Z_FINISH) == Z_STREAM_END && z->avail_out == 0 &&
	    z->avail_in == 0;
}

/* ---------------------------------------------------------- libdeflate */

#ifdef HAVE_LIBDEFLATE
/* libdeflate takes one buffer: the iovecs are gathered first. */
static size_t
ld_deflate(struct codec_scratch *x, const struct iovec *iov, int iovcnt,
    size_t total, size_t bound, int level)
{
	const uint8_t *in;
	size_t off = 0;
	int i;

	if (x->state == NULL &&
	    (x->state = libdeflate_alloc_compressor(level)) == NULL)
		return 0;
	if (iovcnt == 1)
		in = iov[0].iov_base;
	else {
		if (!grow(&x->in, &x->in_cap, total))
			return 0;
		for (i = 0; i < iovcnt; i++) {
			if (iov[i].iov_len == 0)
				continue;
			memcpy(x->in + off, iov[i].iov_base, iov[i].iov_len);
			off += iov[i].iov_len;
		}
		in = x->in;
	}
	/* 0 when the stream does not fit in bound: store. */
	return libdeflate_deflate_compress(x->state, in, total, x->out, bound);
}

static bool
ld_inflate(struct codec_scratch *x, const uint8_t *in, size_t in_len,
    uint8_t *out, size_t raw_len)
{
	size_t used;

	if (x->state == NULL &&
	    (x->state = libdeflate_alloc_decompressor()) == NULL)
		return false;
	/*
	 * With no actual_out_nbytes_ret, success means exactly raw_len
	 * bytes out; used says where the stream ended.
	 */
	return libdeflate_deflate_decompress_ex(x->state, in, in_len, out,
	    raw_len, &used, NULL) == LIBDEFLATE_SUCCESS && used == in_len;
}
#endif

/* --------------------------------------------------------------- ISA-L */

#ifdef HAVE_ISAL
/*
 * ISA-L's level 1 needs a buffer of its own: a hash table and the tokens
 * of the block being formed. ISAL_DEF_LVL1_SMALL (16 Ki tokens a block)
 * gives the benchmark's 128 KiB frames the same ratio as the library's
 * default LARGE (64 Ki tokens, 276 KiB) at the same speed (NOTES.md).
 */
struct isal_deflater {
	struct isal_zstream z;
	uint8_t level_buf[ISAL_DEF_LVL1_SMALL];
};

/*
 * ISA-L 2.30's deflate returns with the upper halves of the vector
 * registers dirty (its AVX-512 paths end without vzeroupper). Until the
 * thread next runs vzeroupper, legacy-SSE code in it runs slower: zlib's
 * compress2 at 0.5-0.6x of its speed, on this project's EPYC VM, and so
 * would the host program's own code after each spooled write. Every
 * frame ISA-L deflates ends with a vzeroupper (lower 128 bits kept; this
 * file is compiled without AVX, so no compiled value lives above them).
 */
static void
vector_uppers_clear(void)
{
#if defined(__x86_64__) || defined(__i386__)
	if (__builtin_cpu_supports("avx"))
		__asm__ volatile("vzeroupper" ::: "xmm0", "xmm1", "xmm2",
		    "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
		    "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
#endif
}

/*
 * ISA-L's stateful deflate takes the iovecs one after the other, the last
 * with end_of_stream: no gathering copy. Level 1 only (codec_deflate).
 */
static size_t
isal_deflate_iov(struct codec_scratch *x, const struct iovec *iov,
    int iovcnt, size_t bound)
{
	struct isal_deflater *d = x->state;
	struct isal_zstream *z;
	int i;

	if (d == NULL) {
		if ((d = calloc(1, sizeof(*d))) == NULL)
			return 0;
		x->state = d;
	}
	z = &d->z;
	isal.deflate_init(z);
	z->level = 1;
	z->level_buf = d->level_buf;
	z->level_buf_size = sizeof(d->level_buf);
	z->gzip_flag = IGZIP_DEFLATE;	/* raw: no gzip or zlib wrapper */
	z->flush = NO_FLUSH;
	z->next_out = x->out;
	z->avail_out = (uint32_t)bound;
	for (i = 0; i < iovcnt; i++) {
		z->next_in = iov[i].iov_base;
		z->avail_in = (uint32_t)iov[i].iov_len;
		z->end_of_stream = i == iovcnt - 1;
		/* Input left over means the output reached bound: store. */
		if (isal.deflate(z) != COMP_OK || z->avail_in != 0)
			return 0;
	}
	/* Not ended with all input taken: the last block did not fit. */
	if (z->internal_state.state != ZSTATE_END)
		return 0;
	return z->total_out;
}
#endif

/* ----------------------------------------------------------------- API */

size_t
codec_deflate(const struct iovec *iov, int iovcnt, size_t total, int level,
    struct codec_out *out)
{
	enum codec_backend b = codec_deflater();
	struct codec_scratch *x;
	size_t bound, zlen;

	out->p = NULL;
	out->held = NULL;
	if (level <= 0 || total <= 1 || iovcnt <= 0)
		return 0;
	if (b == CODEC_BACKEND_ISAL && level != 1)
		b = GENERAL_BACKEND;
	if ((x = cache_take(enc_cache)) == NULL)
		return 0;
	scratch_fit(x, b, level, true);
	/*
	 * A deflated payload must save at least 1/64 of it (and one byte):
	 * below that, the frame is stored, and reading it back is a copy
	 * instead of decoding Huffman-coded literals, several times faster
	 * (incompressible data: FORMAT.md §3.2, tests/bench/NOTES.md).
	 */
	bound = total - (total / STORE_SAVING > 0 ? total / STORE_SAVING : 1);
	if (!grow(&x->out, &x->out_cap, bound)) {
		cache_give(enc_cache, x, true);
		return 0;
	}
#ifdef HAVE_ISAL
	if (b == CODEC_BACKEND_ISAL) {
		zlen = isal_deflate_iov(x, iov, iovcnt, bound);
		vector_uppers_clear();
	} else
#endif
#ifdef HAVE_LIBDEFLATE
	if (b == CODEC_BACKEND_LIBDEFLATE)
		zlen = ld_deflate(x, iov, iovcnt, total, bound, level);
	else
#endif
		zlen = zlib_deflate(x, iov, iovcnt, bound, level);
	if (zlen == 0) {
		cache_give(enc_cache, x, true);
		return 0;
	}
	out->p = x->out;
	out->held = x;
	return zlen;
}

void
codec_release(struct codec_out *out)
{
	if (out->held != NULL)
		cache_give(enc_cache, out->held, true);
	out->p = NULL;
	out->held = NULL;
}

bool
codec_inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t raw_len)
{
	enum codec_backend b = codec_inflater();
	struct codec_scratch *x;
	bool ok;

	if ((x = cache_take(dec_cache)) == NULL)
		return false;
	scratch_fit(x, b, 0, false);
#ifdef HAVE_LIBDEFLATE
	if (b == CODEC_BACKEND_LIBDEFLATE)
		ok = ld_inflate(x, in, in_len, out, raw_len);
	else
#endif
		ok = zlib_inflate(x, in, in_len, out, raw_len);
	cache_give(dec_cache, x, false);
	return ok;
}
