/*
 * NAME
 *	addr_class - what kind of address the direct route is about to reach
 * SUMMARY
 *	Pure functions (no I/O): the class of an IP address (public,
 *	private, loopback, unspecified, link-local, multicast, reserved),
 *	whether [direct] internal_destinations lets the relay connect to it
 *	(SPEC §3), and whether an address and port are one of the relay's
 *	own listeners (SPEC §5: it never delivers to itself).
 * DESCRIPTION
 *	addr_classify() looks at an AF_INET or AF_INET6 address; an
 *	IPv4-mapped IPv6 address (::ffff:a.b.c.d) is classed as its IPv4
 *	address. Private: RFC 1918, RFC 6598 shared space (100.64/10) and
 *	IPv6 ULA (fc00::/7). Unspecified: 0.0.0.0/8 and ::. Reserved:
 *	240.0.0.0/4 and the broadcast address, and any other family.
 *
 *	addr_allowed(): DIRECT_DEST_ANY takes everything; DIRECT_DEST_PRIVATE
 *	public and private; DIRECT_DEST_PUBLIC public only.
 *
 *	addr_is_self() tells whether target (port included) is one of the
 *	listen addresses; a wildcard listener (0.0.0.0 or ::) covers every
 *	address of locals (the host's interface addresses, ports ignored)
 *	and every loopback address (on Linux all of 127/8 is local).
 *	0.0.0.0 and :: as a target mean this host too.
 * TOUCHES
 *	Nothing.
 */
#ifndef HK_RELAY_ADDR_CLASS_H
#define HK_RELAY_ADDR_CLASS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"

enum addr_class {
	ADDR_PUBLIC,
	ADDR_PRIVATE,
	ADDR_LOOPBACK,
	ADDR_UNSPECIFIED,
	ADDR_LINK_LOCAL,
	ADDR_MULTICAST,
	ADDR_RESERVED,
};

enum addr_class addr_classify(const struct sockaddr *sa);
const char *addr_class_name(enum addr_class c);
bool addr_allowed(enum config_direct_dest policy, enum addr_class c);
bool addr_is_self(const struct sockaddr *target, const struct config_listen *listen,
                  size_t nlisten, const struct sockaddr_storage *locals, size_t nlocals);

#endif
