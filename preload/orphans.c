/*
 * orphans.c — what becomes of a spool its connection can no longer take.
 *
 * A peer that went away (reset, broken pipe, timed out, unreachable) while
 * bytes were spooled for it can never be given them on that connection.
 * TCPSPOOL_ORPHANS says what to do with them: expire (the default) keeps
 * the stream as an orphan for TCPSPOOL_ORPHAN_TTL, listed by tcpspool ls
 * with its reason and time left, counted against TCPSPOOL_MAX and
 * replayable elsewhere meanwhile, then removed by the library (syncer.c
 * sweeps); keep keeps it until an operator removes it; discard removes it
 * at once. Any other failure (the spool cannot be read, the process
 * exits with its linger time spent) keeps the orphan: it is data that
 * was interrupted, not undeliverable.
 */
#include <errno.h>
#include <inttypes.h>

#include "log.h"
#include "orphans.h"
#include "resume.h"
#include "runtime.h"
#include "stream.h"
#include "stream_impl.h"
#include "syncer.h"
#include "util.h"

bool
orphan_peer_gone(int err)
{
	switch (err) {
	case EPIPE:
	case ECONNRESET:
	case ECONNABORTED:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ENETDOWN:
		return true;
	default:
		return false;
	}
}

void
orphan_release(struct stream *s, int err, const char *reason,
    const char *detail)
{
	const struct tcpspool_config *cfg = runtime_config();
	enum orphan_policy policy = cfg->orphans;
	const char *dir = spool_dir_path(runtime_dir());
	struct spool_counts c;
	int64_t ttl, at;

	if (resume_wait(s, err, reason, detail))
		return;
	spool_stream_counts(s->spool, &c);
	if (!orphan_peer_gone(err))
		policy = ORPHANS_KEEP;
	switch (policy) {
	case ORPHANS_DISCARD:
		log_warn("spool %s (fd %d, peer %s): %s%s%s; %" PRIu64 " bytes "
		    "discarded (TCPSPOOL_ORPHANS=discard)", s->name, s->fd,
		    s->id.peer, reason, detail ? ": " : "", detail ? detail : "",
		    c.pending_bytes);
		/* Its files go once mu is released (stream_service), which
		 * then wakes the writers waiting for room: no other stream's
		 * replay waits for the unlinks. */
		if (s->gone.spool == NULL && s->gone.cur == NULL)
			spool_detach(s, &s->gone);
		else
			spool_release(s, SPOOL_CLOSE_REMOVE, reason);
		return;
	case ORPHANS_EXPIRE:
		ttl = (int64_t)cfg->orphan_ttl_ms * NS_PER_MS;
		at = real_ns() + ttl;
		spool_stream_set_expiry(s->spool, at);
		log_warn("spool %s (fd %d, peer %s): %s%s%s; %" PRIu64 " bytes "
		    "kept as orphan spool %s/%s until it expires in %" PRIu32
		    " ms (TCPSPOOL_ORPHAN_TTL)", s->name, s->fd, s->id.peer,
		    reason, detail ? ": " : "", detail ? detail : "",
		    c.pending_bytes, dir, s->name, cfg->orphan_ttl_ms);
		spool_release(s, SPOOL_CLOSE_KEEP, reason);
		syncer_sweep_at(at, 0);
		return;
	case ORPHANS_KEEP:
		break;
	}
	log_warn("spool %s (fd %d, peer %s): %s%s%s; %" PRIu64 " bytes kept "
	    "as orphan spool %s/%s", s->name, s->fd, s->id.peer, reason,
	    detail ? ": " : "", detail ? detail : "", c.pending_bytes, dir,
	    s->name);
	spool_release(s, SPOOL_CLOSE_KEEP, reason);
}

void
orphan_sweeps_start(void)
{
	const struct tcpspool_config *cfg = runtime_config();
	int64_t every = (int64_t)cfg->orphan_ttl_ms * NS_PER_MS;

	if (every > 60 * NS_PER_S)
		every = 60 * NS_PER_S;
	if (every < NS_PER_S)
		every = NS_PER_S;
	syncer_sweep_at(real_ns() + every, every);
}
