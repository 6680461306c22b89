/*
 * classify.c — which fds are spooled: stream sockets of the inet families
 * (TCP) and AF_UNIX, connected, with ports admitted by TCPSPOOL_PORTS and
 * TCPSPOOL_PEER_PORTS. Everything else is passed through untouched.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "classify.h"

static uint16_t
port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

void
format_addr(const void *sa, unsigned len, char *buf, size_t size)
{
	const struct sockaddr_storage *ss = sa;
	char host[INET6_ADDRSTRLEN];

	buf[0] = '\0';
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else if (ss->ss_family == AF_UNIX) {
		const struct sockaddr_un *un = sa;
		size_t n = len > offsetof(struct sockaddr_un, sun_path) ?
		    len - offsetof(struct sockaddr_un, sun_path) : 0;

		if (n > 0 && un->sun_path[0] == '\0')	/* abstract */
			snprintf(buf, size, "unix:@%.*s", (int)(n - 1),
			    un->sun_path + 1);
		else
			snprintf(buf, size, "unix:%.*s", (int)strnlen(
			    un->sun_path, n), un->sun_path);
	}
}

enum fd_class
classify_fd(int fd, const struct tcpspool_config *cfg, struct sockinfo *si)
{
	struct sockaddr_storage local, peer;
	socklen_t llen = sizeof(local), plen = sizeof(peer), olen;
	int type, proto, saved = errno;
	enum fd_class cls = FD_NEVER;

	memset(si, 0, sizeof(*si));
	olen = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) == -1) {
		cls = errno == ENOTSOCK ? FD_NEVER : FD_NOT_NOW;
		goto out;
	}
	if (type != SOCK_STREAM)
		goto out;
	if (getsockname(fd, (struct sockaddr *)&local, &llen) == -1) {
		cls = FD_NOT_NOW;
		goto out;
	}
	if (local.ss_family == AF_INET || local.ss_family == AF_INET6) {
		olen = sizeof(proto);
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &olen) ==
		    -1 || proto != IPPROTO_TCP)
			goto out;
		if (!config_port_match(&cfg->ports, port_of(&local)))
			goto out;
	} else if (local.ss_family != AF_UNIX)
		goto out;
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) == -1) {
		cls = FD_NOT_NOW;	/* connecting: ask again later */
		goto out;
	}
	if (peer.ss_family != AF_UNIX &&
	    !config_port_match(&cfg->peer_ports, port_of(&peer)))
		goto out;
	si->family = local.ss_family;
	format_addr(&local, llen, si->local, sizeof(si->local));
	format_addr(&peer, plen, si->peer, sizeof(si->peer));
	cls = FD_SPOOL;
out:
	errno = saved;
	return cls;
}
