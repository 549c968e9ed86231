/*
 * addr_class - what kind of address the direct route is about to reach.
 * See addr_class.h.
 */
#include "relay/addr_class.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static enum addr_class class4(const uint8_t a[4])
{
	if (a[0] == 0)
		return ADDR_UNSPECIFIED;                        /* 0/8, "this network" */
	if (a[0] == 127)
		return ADDR_LOOPBACK;
	if (a[0] == 169 && a[1] == 254)
		return ADDR_LINK_LOCAL;
	if (a[0] >= 224 && a[0] <= 239)
		return ADDR_MULTICAST;
	if (a[0] >= 240)
		return ADDR_RESERVED;                           /* 240/4 and broadcast */
	if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
	    (a[0] == 100 && (a[1] & 0xc0) == 64))
		return ADDR_PRIVATE;
	return ADDR_PUBLIC;
}

enum addr_class addr_classify(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		uint8_t a[4];
		memcpy(a, &s4->sin_addr, 4);
		return class4(a);
	}
	if (sa->sa_family != AF_INET6)
		return ADDR_RESERVED;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
	const uint8_t *a = s6->sin6_addr.s6_addr;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t zero12[12] = { 0 };
	if (memcmp(a, mapped, 12) == 0)
		return class4(a + 12);
	if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
		return ADDR_UNSPECIFIED;
	if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
		return ADDR_LOOPBACK;
	/* Forms that carry an IPv4 address reach that address (on a NAT64
	 * host, through a 6to4 relay): they are what it is. RFC 6052 NAT64
	 * 64:ff9b::/96, RFC 3056 6to4 2002::/16, the deprecated
	 * IPv4-compatible ::/96 (RFC 4291 §2.5.5.1). */
	if (memcmp(a, nat64, 12) == 0 || memcmp(a, zero12, 12) == 0)
		return class4(a + 12);
	if (a[0] == 0x20 && a[1] == 0x02)
		return class4(a + 2);
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return ADDR_PRIVATE;                            /* site-local fec0::/10 (RFC 3879) */
	if (a[0] == 0xff)
		return ADDR_MULTICAST;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return ADDR_LINK_LOCAL;
	if ((a[0] & 0xfe) == 0xfc)
		return ADDR_PRIVATE;                            /* ULA */
	return ADDR_PUBLIC;
}

const char *addr_class_name(enum addr_class c)
{
	switch (c) {
	case ADDR_PUBLIC: return "public";
	case ADDR_PRIVATE: return "private";
	case ADDR_LOOPBACK: return "loopback";
	case ADDR_UNSPECIFIED: return "unspecified";
	case ADDR_LINK_LOCAL: return "link-local";
	case ADDR_MULTICAST: return "multicast";
	case ADDR_RESERVED: return "reserved";
	}
	return "reserved";
}

bool addr_allowed(enum config_direct_dest policy, enum addr_class c)
{
	switch (policy) {
	case DIRECT_DEST_ANY: return true;
	case DIRECT_DEST_PRIVATE: return c == ADDR_PUBLIC || c == ADDR_PRIVATE;
	case DIRECT_DEST_PUBLIC: return c == ADDR_PUBLIC;
	}
	return false;
}

/* The address as 16 bytes (IPv4 mapped) and its port. */
static void norm(const struct sockaddr *sa, uint8_t out[16], uint16_t *port)
{
	memset(out, 0, 16);
	*port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &s4->sin_addr, 4);
		*port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(out, &s6->sin6_addr, 16);
		*port = ntohs(s6->sin6_port);
	}
}

bool addr_is_self(const struct sockaddr *target, const struct config_listen *listen,
                  size_t nlisten, const struct sockaddr_storage *locals, size_t nlocals)
{
	uint8_t t[16], l[16];
	uint16_t port, lp;
	norm(target, t, &port);
	enum addr_class c = addr_classify(target);
	for (size_t i = 0; i < nlisten; i++) {
		if (listen[i].port != port)
			continue;
		if (c == ADDR_UNSPECIFIED)
			return true;    /* a connection to 0.0.0.0 or :: reaches this host */
		struct in6_addr a6;
		struct in_addr a4;
		bool wild;
		memset(l, 0, 16);
		if (inet_pton(AF_INET, listen[i].host, &a4) == 1) {
			l[10] = l[11] = 0xff;
			memcpy(l + 12, &a4, 4);
			wild = a4.s_addr == 0;
		} else if (inet_pton(AF_INET6, listen[i].host, &a6) == 1) {
			memcpy(l, &a6, 16);
			wild = IN6_IS_ADDR_UNSPECIFIED(&a6);
		} else {
			continue;
		}
		if (memcmp(l, t, 16) == 0)
			return true;
		if (!wild)
			continue;
		/* A wildcard listener: every address of this host. */
		if (c == ADDR_LOOPBACK || c == ADDR_UNSPECIFIED)
			return true;
		for (size_t k = 0; k < nlocals; k++) {
			norm((const struct sockaddr *)&locals[k], l, &lp);
			if (memcmp(l, t, 16) == 0)
				return true;
		}
	}
	return false;
}
