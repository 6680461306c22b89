/*
 * codec.c — per-thread zlib state.
 *
 * Invariant: a stream holds no zlib state. Each thread that forms or reads
 * frames owns one deflate and one inflate z_stream plus an output buffer,
 * reset (deflateReset/inflateReset) for every frame and freed when the
 * thread exits. So thousands of idle streams cost no zlib memory, and a
 * frame is always one complete, independent raw deflate stream.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"

struct codec_tls {
	z_stream def;
	bool def_ready;
	int def_level;
	z_stream inf;
	bool inf_ready;
	uint8_t *out;
	size_t out_cap;
};

static pthread_key_t codec_key;
static pthread_once_t codec_once = PTHREAD_ONCE_INIT;
static bool codec_key_ok;

static void
codec_free(void *p)
{
	struct codec_tls *t = p;

	if (t == NULL)
		return;
	if (t->def_ready)
		deflateEnd(&t->def);
	if (t->inf_ready)
		inflateEnd(&t->inf);
	free(t->out);
	free(t);
}

static void
codec_key_init(void)
{
	codec_key_ok = pthread_key_create(&codec_key, codec_free) == 0;
}

static struct codec_tls *
codec_get(void)
{
	struct codec_tls *t;

	pthread_once(&codec_once, codec_key_init);
	if (!codec_key_ok)
		return NULL;
	if ((t = pthread_getspecific(codec_key)) != NULL)
		return t;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if (pthread_setspecific(codec_key, t) != 0) {
		free(t);
		return NULL;
	}
	return t;
}

static bool
deflate_ready(struct codec_tls *t, int level)
{
	if (t->def_ready && t->def_level == level)
		return deflateReset(&t->def) == Z_OK;
	if (t->def_ready)
		deflateEnd(&t->def);
	t->def_ready = false;
	memset(&t->def, 0, sizeof(t->def));
	if (deflateInit2(&t->def, level, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		return false;
	t->def_ready = true;
	t->def_level = level;
	return true;
}

size_t
codec_deflate(const struct iovec *iov, int iovcnt, size_t total, int level,
    const uint8_t **out)
{
	struct codec_tls *t;
	size_t bound;
	int i, rc = Z_OK;

	if (level <= 0 || total == 0 || (t = codec_get()) == NULL ||
	    !deflate_ready(t, level))
		return 0;
	/* Only a strictly smaller result is kept: total - 1 bytes of room. */
	bound = total - 1;
	if (t->out_cap < bound) {
		uint8_t *n = realloc(t->out, bound);
		if (n == NULL)
			return 0;
		t->out = n;
		t->out_cap = bound;
	}
	t->def.next_out = t->out;
	t->def.avail_out = (uInt)bound;
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0 && i != iovcnt - 1)
			continue;	/* deflate reports no progress */
		t->def.next_in = iov[i].iov_base;
		t->def.avail_in = (uInt)iov[i].iov_len;
		rc = deflate(&t->def, i == iovcnt - 1 ? Z_FINISH : Z_NO_FLUSH);
		if (rc == Z_STREAM_END || (rc == Z_OK && t->def.avail_out == 0) ||
		    rc == Z_BUF_ERROR)
			break;
		if (rc != Z_OK)
			return 0;
	}
	if (rc != Z_STREAM_END)
		return 0;	/* did not fit in total - 1: store */
	*out = t->out;
	return bound - t->def.avail_out;
}

bool
codec_inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t raw_len)
{
	struct codec_tls *t;
	int rc;

	if ((t = codec_get()) == NULL)
		return false;
	if (!t->inf_ready) {
		memset(&t->inf, 0, sizeof(t->inf));
		if (inflateInit2(&t->inf, -15) != Z_OK)
			return false;
		t->inf_ready = true;
	} else if (inflateReset(&t->inf) != Z_OK)
		return false;
	t->inf.next_in = (uint8_t *)in;
	t->inf.avail_in = (uInt)in_len;
	t->inf.next_out = out;
	t->inf.avail_out = (uInt)raw_len;
	rc = inflate(&t->inf, Z_FINISH);
	/* Exactly raw_len bytes out, and the stream ends exactly at in_len. */
	return rc == Z_STREAM_END && t->inf.avail_out == 0 &&
	    t->inf.avail_in == 0;
}
