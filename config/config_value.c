/*
 * NAME
 *	config_value - values of the configuration from text and back
 * SUMMARY
 *	Pure parsers and formatters, no diagnostics: each says only whether
 *	the text is a value (config_keys.c words the FILE:LINE message).
 *	Numbers without sign or blanks, ports, durations, sizes, rates
 *	(public: config.h), networks in CIDR form and the match of an
 *	address against one, IP:port with IPv6 in brackets, paths relative
 *	to the configuration file's directory; durations and sizes back to
 *	text in their largest exact unit (config_print, messages).
 * TOUCHES
 *	Memory only, except cfg_dir_of() (realpath()) and
 *	cfg_file_readable() (open(), fstat(), close()).
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Small string helpers                                               */
/* ------------------------------------------------------------------ */

char *cfg_trim(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

void cfg_ascii_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* Digits only (no sign, no blanks), without overflow. */
static int cfg_parse_u64(const char *s, const char **end, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*end = p;
	*out = v;
	return 0;
}

int cfg_parse_uint(const char *s, uint64_t *out)
{
	const char *end;

	if (cfg_parse_u64(s, &end, out) < 0 || *end)
		return -1;
	return 0;
}

int cfg_parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (cfg_parse_uint(s, &v) < 0 || v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Public value parsers                                               */
/* ------------------------------------------------------------------ */

int config_parse_duration(const char *s, uint64_t *ms)
{
	const char *end;
	uint64_t v, unit;

	if (!s || cfg_parse_u64(s, &end, &v) < 0)
		return -1;
	switch (*end) {
	case '\0':              /* a bare number is seconds */
	case 's': case 'S': unit = SEC(1); break;
	case 'm': case 'M': unit = MIN(1); break;
	case 'h': case 'H': unit = HOUR(1); break;
	case 'd': case 'D': unit = DAY(1); break;
	default: return -1;
	}
	if (*end && end[1])
		return -1;
	if (v > UINT64_MAX / unit)
		return -1;
	*ms = v * unit;
	return 0;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
	const char *end;
	uint64_t v, unit;

	if (!s || cfg_parse_u64(s, &end, &v) < 0)
		return -1;
	switch (*end) {
	case '\0': unit = 1; break;
	case 'k': case 'K': unit = 1024; break;
	case 'm': case 'M': unit = 1024 * 1024; break;
	case 'g': case 'G': unit = 1024 * 1024 * 1024; break;
	default: return -1;
	}
	if (*end && end[1])
		return -1;
	if (v > UINT64_MAX / unit)
		return -1;
	*bytes = v * unit;
	return 0;
}

int config_parse_rate(const char *s, unsigned *count, unsigned *period_s)
{
	const char *end;
	uint64_t v;
	unsigned p;

	if (!s || cfg_parse_u64(s, &end, &v) < 0 || v < 1 || v > UINT_MAX || *end != '/')
		return -1;
	switch (end[1]) {
	case 's': case 'S': p = 1; break;
	case 'm': case 'M': p = 60; break;
	case 'h': case 'H': p = 3600; break;
	default: return -1;
	}
	if (end[2])
		return -1;
	*count = (unsigned)v;
	*period_s = p;
	return 0;
}

/* *host_bits tells whether the address had bits set beyond the prefix. */
int cfg_cidr_parse(const char *s, struct config_cidr *out, bool *host_bits)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	struct config_cidr n = { 0 };
	unsigned max;

	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, n.addr) == 1) {
		n.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, n.addr) == 1) {
		n.family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	n.prefix = max;
	if (slash) {
		uint64_t v;
		if (cfg_parse_uint(slash + 1, &v) < 0 || v > max)
			return -1;
		n.prefix = (unsigned)v;
	}

	bool bits = false;
	for (unsigned i = 0; i < max / 8; i++) {
		unsigned keep = n.prefix > i * 8 ? n.prefix - i * 8 : 0;
		uint8_t mask = keep >= 8 ? 0xff : (uint8_t)(0xff00u >> keep);
		if (n.addr[i] & (uint8_t)~mask)
			bits = true;
		n.addr[i] &= mask;
	}
	if (host_bits)
		*host_bits = bits;
	*out = n;
	return 0;
}

int config_parse_cidr(const char *s, struct config_cidr *out)
{
	if (!s || !out)
		return -1;
	return cfg_cidr_parse(s, out, NULL);
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> rest);
	return (a[full] & mask) == net[full];
}

bool config_cidr_contains(const struct config_cidr *net, const struct sockaddr *sa)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	uint8_t a[16];

	if (!net || !sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		if (net->family == AF_INET)
			return prefix_match((const uint8_t *)&sin->sin_addr, net->addr, net->prefix);
		/* An IPv6 network such as ::ffff:0:0/96 holds the IPv4 addresses. */
		memcpy(a, v4mapped, 12);
		memcpy(a + 12, &sin->sin_addr, 4);
		return net->family == AF_INET6 && prefix_match(a, net->addr, net->prefix);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(a, &sin6->sin6_addr, 16);
		if (net->family == AF_INET6)
			return prefix_match(a, net->addr, net->prefix);
		/*
		 * A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d;
		 * they must match the IPv4 networks they come from.
		 */
		if (net->family == AF_INET && memcmp(a, v4mapped, 12) == 0)
			return prefix_match(a + 12, net->addr, net->prefix);
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Paths                                                              */
/* ------------------------------------------------------------------ */

/*
 * dir (absolute, without symbolic links: it comes from realpath()) joined
 * with p. Leading "./" and "../" of p are folded into dir, which is
 * right because every component of dir is a real directory; any later
 * ".." is left alone, as it could follow a symbolic link.
 */
char *cfg_path_resolve(const char *dir, const char *p)
{
	size_t dlen = strlen(dir);
	char *r = NULL;

	if (p[0] == '/')
		return strdup(p);
	for (;;) {
		if (p[0] == '.' && (p[1] == '/' || p[1] == '\0')) {
			p += 1;
		} else if (dir[0] == '/' && p[0] == '.' && p[1] == '.' &&
			   (p[2] == '/' || p[2] == '\0')) {
			while (dlen > 1 && dir[dlen - 1] != '/')
				dlen--;
			if (dlen > 1)
				dlen--;
			p += 2;
		} else {
			break;
		}
		while (*p == '/')
			p++;
	}
	if (*p == '\0')
		return strndup(dir, dlen);
	if (dlen == 1 && dir[0] == '/')
		dlen = 0;
	if (asprintf(&r, "%.*s/%s", (int)dlen, dir, p) < 0)
		return NULL;
	return r;
}

/* The directory of the configuration file, absolute when possible. */
char *cfg_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d;

	if (!slash)
		d = strdup(".");
	else if (slash == path)
		d = strdup("/");
	else
		d = strndup(path, (size_t)(slash - path));
	if (!d)
		return NULL;
	char *real = realpath(d, NULL);
	if (real) {
		free(d);
		return real;
	}
	return d;
}

/* 0, or an errno value; a directory is not a readable file. */
int cfg_file_readable(const char *p)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;

	if (fd < 0)
		return errno;
	int err = 0;
	if (fstat(fd, &st) < 0)
		err = errno;
	else if (S_ISDIR(st.st_mode))
		err = EISDIR;
	close(fd);
	return err;
}

/* ------------------------------------------------------------------ */
/* Host and port                                                      */
/* ------------------------------------------------------------------ */

/*
 * host:port with a numeric host; IPv6 in brackets. When default_port is
 * non-zero the port may be left out (then a bare IPv6 address needs no
 * brackets). The host comes back in inet_ntop()'s canonical form.
 */
int cfg_hostport_parse(const char *s, char host[64], int *family, uint16_t *port,
			  uint16_t default_port)
{
	char h[64];
	const char *ps = NULL;
	uint8_t bin[16];
	int fam;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || (size_t)(rb - s - 1) >= sizeof(h))
			return -1;
		memcpy(h, s + 1, (size_t)(rb - s - 1));
		h[rb - s - 1] = '\0';
		if (rb[1] == ':')
			ps = rb + 2;
		else if (rb[1] != '\0')
			return -1;
		fam = AF_INET6;
	} else if (default_port && inet_pton(AF_INET6, s, bin) == 1) {
		if (strlen(s) >= sizeof(h))
			return -1;
		strcpy(h, s);
		fam = AF_INET6;
	} else {
		const char *colon = strrchr(s, ':');
		size_t hl = colon ? (size_t)(colon - s) : strlen(s);
		if (hl >= sizeof(h))
			return -1;
		memcpy(h, s, hl);
		h[hl] = '\0';
		if (colon)
			ps = colon + 1;
		fam = AF_INET;
	}
	if (inet_pton(fam, h, bin) != 1)
		return -1;
	if (ps) {
		if (cfg_parse_port(ps, port) < 0)
			return -1;
	} else if (default_port) {
		*port = default_port;
	} else {
		return -1;
	}
	if (!inet_ntop(fam, bin, host, 64))
		return -1;
	*family = fam;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Back to text                                                       */
/* ------------------------------------------------------------------ */

void cfg_format_duration(uint64_t ms, char *out, size_t n)
{
	if (ms && ms % DAY(1) == 0)
		snprintf(out, n, "%llud", (unsigned long long)(ms / DAY(1)));
	else if (ms && ms % HOUR(1) == 0)
		snprintf(out, n, "%lluh", (unsigned long long)(ms / HOUR(1)));
	else if (ms && ms % MIN(1) == 0)
		snprintf(out, n, "%llum", (unsigned long long)(ms / MIN(1)));
	else
		snprintf(out, n, "%llus", (unsigned long long)(ms / SEC(1)));
}

void cfg_format_size(uint64_t b, char *out, size_t n)
{
	static const char units[] = "GMK";

	for (int i = 0; units[i]; i++) {
		uint64_t u = 1ull << (10 * (3 - i));
		if (b && b % u == 0) {
			snprintf(out, n, "%llu%c", (unsigned long long)(b / u), units[i]);
			return;
		}
	}
	snprintf(out, n, "%llu", (unsigned long long)b);
}
