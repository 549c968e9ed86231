/*
 * dkim - DKIM signing of queued mail. See dkim.h.
 *
 * RSA: libopendkim (Debian's 2.11) does the canonicalisation, the hashes
 * and the signature. It takes the private key as the PEM text of the key
 * file and parses it per message; that costs little next to an RSA
 * signature (bench/dkim_sign.c measures it).
 *
 * Ed25519: libopendkim 2.11 signs ed25519-sha256 correctly but leaks the
 * key material of every such signature (about 1.2 KB a mail: dkim_free()
 * releases the per-signature crypto state only for RSA keys; found with
 * LeakSanitizer, see tests/unit/test_dkim.c). A relay signs every mail,
 * so for this one algorithm the signature is made here with OpenSSL:
 * relaxed/relaxed canonicalisation (RFC 6376 §3.4.2, §3.4.4), the body
 * hash, the header hash over the same fields libopendkim would sign, and
 * PureEd25519 over the SHA-256 of it (RFC 8463 §3). The key is parsed
 * once, at load.
 *
 * The header section is copied once (it has to be split into fields for
 * dkim_header()); the body goes to dkim_body() straight from the parts.
 */
#include "relay/dkim.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <opendkim/dkim.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "util/buf.h"

/* The header section copied for splitting: far above any real one, and
 * a mail whose header section is larger goes unsigned, never truncated. */
#define DKIM_HEADER_MAX (1024 * 1024)

struct dkim_key {
	char *domain;
	char *selector;
	unsigned char *pem;
	size_t pem_len;
	dkim_alg_t alg;
	EVP_PKEY *ed25519;      /* Ed25519 keys: parsed once (see above) */
};

struct dkim_keys {
	atomic_int refs;
	DKIM_LIB *lib;
	enum config_dkim_sign sign;
	struct dkim_key *v;
	size_t n;
};

static const char *const signed_fields[] = { DKIM_SIGNED_FIELDS, NULL };
static const char *const oversigned_fields[] = { "From", NULL };

static void keys_free(struct dkim_keys *k)
{
	for (size_t i = 0; i < k->n; i++) {
		free(k->v[i].domain);
		free(k->v[i].selector);
		if (k->v[i].pem)
			memset(k->v[i].pem, 0, k->v[i].pem_len);
		free(k->v[i].pem);
		EVP_PKEY_free(k->v[i].ed25519);
	}
	free(k->v);
	if (k->lib)
		dkim_close(k->lib);
	free(k);
}

struct dkim_keys *dkim_keys_load(const struct config *cfg, char *err, size_t errlen)
{
	struct dkim_keys *k = calloc(1, sizeof(*k));

	if (!k) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&k->refs, 1);
	k->sign = cfg->dkim.sign;
	if (cfg->dkim.nkeys == 0)
		return k;
	k->lib = dkim_init(NULL, NULL);
	if (!k->lib) {
		snprintf(err, errlen, "libopendkim cannot be initialised");
		goto fail;
	}
	/* Casts: the option API takes void *; the lists are only read. */
	if (dkim_options(k->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, (void *)signed_fields,
	                 sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(k->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
	                 (void *)oversigned_fields, sizeof(char **)) != DKIM_STAT_OK) {
		snprintf(err, errlen, "libopendkim refuses the list of signed header fields");
		goto fail;
	}
	k->v = calloc(cfg->dkim.nkeys, sizeof(*k->v));
	if (!k->v) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < cfg->dkim.nkeys; i++) {
		const struct config_dkim_key *ck = &cfg->dkim.keys[i];
		struct dkim_key *key = &k->v[k->n];

		key->domain = strdup(ck->domain);
		key->selector = strdup(ck->selector);
		key->pem = malloc(ck->pem_len + 1);
		if (!key->domain || !key->selector || !key->pem) {
			free(key->domain);
			free(key->selector);
			free(key->pem);
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		memcpy(key->pem, ck->pem, ck->pem_len + 1);
		key->pem_len = ck->pem_len;
		key->alg = ck->type == CONFIG_DKIM_ED25519 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256;
		k->n++;
		if (ck->type == CONFIG_DKIM_ED25519) {
			BIO *bio = BIO_new_mem_buf(ck->pem, (int)ck->pem_len);
			key->ed25519 = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
			BIO_free(bio);
			ERR_clear_error();
			if (!key->ed25519) {
				snprintf(err, errlen, "%s:%d: the Ed25519 key cannot be read", cfg->path,
				         ck->line);
				goto fail;
			}
		}
	}
	return k;
fail:
	keys_free(k);
	return NULL;
}

struct dkim_keys *dkim_keys_ref(struct dkim_keys *k)
{
	if (k)
		atomic_fetch_add(&k->refs, 1);
	return k;
}

void dkim_keys_unref(struct dkim_keys *k)
{
	if (k && atomic_fetch_sub(&k->refs, 1) == 1)
		keys_free(k);
}

size_t dkim_keys_count(const struct dkim_keys *k)
{
	return k ? k->n : 0;
}

const char *dkim_key_domain(const struct dkim_key *key)
{
	return key->domain;
}

const char *dkim_key_selector(const struct dkim_key *key)
{
	return key->selector;
}

/* The key for one domain: its own, else the nearest parent's. */
static const struct dkim_key *key_for(const struct dkim_keys *k, const char *domain)
{
	const struct dkim_key *best = NULL;
	size_t dl = strlen(domain), bl = 0;

	for (size_t i = 0; i < k->n; i++) {
		const char *kd = k->v[i].domain;
		size_t kl = strlen(kd);
		bool match = (dl == kl && strcmp(domain, kd) == 0) ||
		             (dl > kl && domain[dl - kl - 1] == '.' && strcmp(domain + dl - kl, kd) == 0);
		if (match && kl > bl) {
			best = &k->v[i];
			bl = kl;
		}
	}
	return best;
}

/*
 * The key for every mailbox of the From value, or NULL with why.
 */
static const struct dkim_key *choose(const struct dkim_keys *k, const char *value, size_t len,
                                     char *why, size_t whylen)
{
	char **addrs = NULL;
	int n = route_header_addrs(value, len, &addrs);
	const struct dkim_key *key = NULL;

	if (n < 0) {
		snprintf(why, whylen, "the From field cannot be parsed");
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		char *a = route_ascii(addrs[i]);
		const char *at = a ? strrchr(a, '@') : NULL;
		const struct dkim_key *ki = at ? key_for(k, at + 1) : NULL;
		if (!ki) {
			snprintf(why, whylen, "no [dkim] key covers the From domain %s",
			         at ? at + 1 : addrs[i]);
			free(a);
			key = NULL;
			break;
		}
		free(a);
		if (key && ki != key) {
			snprintf(why, whylen, "the From mailboxes need different keys (%s and %s)",
			         key->domain, ki->domain);
			key = NULL;
			break;
		}
		key = ki;
	}
	route_addrs_free(addrs, n);
	return key;
}

/* Copy the header section (up to and without the empty line) into hdr;
 * *part and *off are where the body starts. -1 when it is too large. */
static int header_section(const struct iovec *parts, size_t nparts, buf_t *hdr,
                          size_t *part, size_t *off)
{
	/* The last bytes seen, to find CRLF CRLF across part boundaries. */
	unsigned tail = 0;

	for (size_t i = 0; i < nparts; i++) {
		const unsigned char *p = parts[i].iov_base;
		for (size_t j = 0; j < parts[i].iov_len; j++) {
			tail = (tail << 8) | p[j];
			if ((tail & 0xffffffffu) == 0x0d0a0d0au) {
				if (buf_append(hdr, p, j + 1) < 0)
					return -1;
				*part = i;
				*off = j + 1;
				return 0;
			}
			/* A message that starts with its empty line has no fields. */
			if (hdr->len == 0 && i == 0 && j == 1 && (tail & 0xffff) == 0x0d0a) {
				*part = i;
				*off = 2;
				return 0;
			}
		}
		if (buf_append(hdr, p, parts[i].iov_len) < 0)
			return -1;
	}
	*part = nparts;
	*off = 0;
	return 0;
}

static bool field_is(const char *f, size_t n, const char *name)
{
	size_t l = strlen(name);
	if (n <= l || strncasecmp(f, name, l) != 0)
		return false;
	for (size_t i = l; i < n; i++) {
		if (f[i] == ':')
			return true;
		if (f[i] != ' ' && f[i] != '\t')
			return false;
	}
	return false;
}

/* libopendkim folds with LF; the queued message has CRLF everywhere. */
static char *field_crlf(const unsigned char *v, size_t n, size_t *out_len)
{
	static const char name[] = "DKIM-Signature: ";
	size_t lf = 0;
	for (size_t i = 0; i < n; i++)
		lf += v[i] == '\n';
	char *s = malloc(sizeof(name) - 1 + n + lf + 3);
	if (!s)
		return NULL;
	size_t o = sizeof(name) - 1;
	memcpy(s, name, o);
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\r')
			continue;
		if (v[i] == '\n')
			s[o++] = '\r';
		s[o++] = (char)v[i];
	}
	memcpy(s + o, "\r\n", 3);
	*out_len = o + 2;
	return s;
}

/* ---- Ed25519 with OpenSSL (see the top of the file) -------------------- */

/* Relaxed body canonicalisation (RFC 6376 §3.4.4), streamed into SHA-256:
 * blanks at line ends dropped, runs of blanks made one space, empty lines
 * at the end dropped, a missing final CRLF added; an empty body hashes
 * as empty. */
struct body_canon {
	EVP_MD_CTX *md;
	unsigned char out[4096];
	size_t n;
	bool wsp;               /* blanks seen, not yet written */
	bool cr;                /* a CR seen, maybe the start of CRLF */
	bool line;              /* the current line has content */
	size_t empty;           /* empty lines held back */
};

static void bc_put(struct body_canon *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->out)) {
		EVP_DigestUpdate(b->md, b->out, b->n);
		b->n = 0;
	}
	memcpy(b->out + b->n, p, n);
	b->n += n;
}

static void bc_eol(struct body_canon *b)
{
	b->wsp = false;
	if (!b->line) {
		b->empty++;
		return;
	}
	for (; b->empty; b->empty--)
		bc_put(b, "\r\n", 2);
	bc_put(b, "\r\n", 2);
	b->line = false;
}

static void bc_char(struct body_canon *b, unsigned char c)
{
	if (b->cr) {
		b->cr = false;
		if (c == '\n') {
			bc_eol(b);
			return;
		}
		bc_char(b, '\r');       /* a lone CR is content (never queued anyway) */
	}
	if (c == '\r' && !b->cr) {
		b->cr = true;
		return;
	}
	if (c == ' ' || c == '\t') {
		b->wsp = true;
		return;
	}
	if (!b->line)
		for (; b->empty; b->empty--)
			bc_put(b, "\r\n", 2);
	if (b->wsp) {
		bc_put(b, " ", 1);
		b->wsp = false;
	}
	bc_put(b, &c, 1);
	b->line = true;
}

static void bc_end(struct body_canon *b)
{
	if (b->cr) {
		b->cr = false;
		bc_char(b, '\r');
	}
	if (b->line)
		bc_eol(b);
	EVP_DigestUpdate(b->md, b->out, b->n);
	b->n = 0;
}

/* Relaxed header canonicalisation (RFC 6376 §3.4.2) of one field (no
 * final CRLF) into out; crlf adds the CRLF. */
static void hc_field(buf_t *out, const char *f, size_t n, bool crlf, bool *oom)
{
	const char *colon = memchr(f, ':', n);
	size_t nl = colon ? (size_t)(colon - f) : n;
	while (nl && (f[nl - 1] == ' ' || f[nl - 1] == '\t'))
		nl--;
	for (size_t i = 0; i < nl; i++) {
		char c = (char)tolower((unsigned char)f[i]);
		*oom |= buf_append(out, &c, 1) < 0;
	}
	*oom |= buf_append(out, ":", 1) < 0;
	bool wsp = false, started = false;
	for (size_t i = colon ? (size_t)(colon - f) + 1 : n; i < n; i++) {
		char c = f[i];
		if (c == '\r' || c == '\n')
			continue;
		if (c == ' ' || c == '\t') {
			wsp = true;
			continue;
		}
		if (wsp && started)
			*oom |= buf_append(out, " ", 1) < 0;
		wsp = false;
		started = true;
		*oom |= buf_append(out, &c, 1) < 0;
	}
	if (crlf)
		*oom |= buf_append(out, "\r\n", 2) < 0;
}

struct hfield {
	const char *p;
	size_t n;
	bool used;
};

static bool name_is(const char *f, size_t n, const char *name)
{
	size_t l = strlen(name);
	if (n <= l || strncasecmp(f, name, l) != 0)
		return false;
	for (size_t i = l; i < n; i++) {
		if (f[i] == ':')
			return true;
		if (f[i] != ' ' && f[i] != '\t')
			return false;
	}
	return false;
}

static int ed25519_sign(const struct dkim_key *key, const char *h, size_t hl,
                        const struct iovec *parts, size_t nparts, size_t bpart, size_t boff,
                        char **field, size_t *field_len, char *why, size_t whylen)
{
	struct hfield *fs = NULL;
	size_t nf = 0, cap = 0;
	buf_t sig, hh;
	bool oom = false;
	int ret = -1;
	unsigned char bh[EVP_MAX_MD_SIZE], hd[EVP_MAX_MD_SIZE], raw[64];
	unsigned bhl = 0, hdl = 0;
	char bh64[64], b64[100];
	size_t rawl = sizeof(raw);
	EVP_MD_CTX *md = EVP_MD_CTX_new(), *sc = EVP_MD_CTX_new();

	buf_init(&sig, DKIM_HEADER_MAX);
	buf_init(&hh, DKIM_HEADER_MAX);
	if (!md || !sc)
		goto oom;

	/* The body hash. */
	struct body_canon bc = { .md = md };
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto oom;
	for (size_t i = bpart; i < nparts; i++)
		for (size_t j = i == bpart ? boff : 0; j < parts[i].iov_len; j++)
			bc_char(&bc, ((const unsigned char *)parts[i].iov_base)[j]);
	bc_end(&bc);
	if (EVP_DigestFinal_ex(md, bh, &bhl) != 1)
		goto oom;
	EVP_EncodeBlock((unsigned char *)bh64, bh, (int)bhl);

	/* The fields, top to bottom, and h= in that order (then From again). */
	for (size_t i = 0; i < hl;) {
		size_t e = i;
		while (e < hl && !(h[e] == '\n' && (e + 1 >= hl || (h[e + 1] != ' ' && h[e + 1] != '\t'))))
			e++;
		size_t n = e - i;
		if (n && h[i + n - 1] == '\r')
			n--;
		if (n == 0)
			break;
		if (nf == cap) {
			struct hfield *v = realloc(fs, (cap = cap ? cap * 2 : 32) * sizeof(*v));
			if (!v)
				goto oom;
			fs = v;
		}
		fs[nf++] = (struct hfield){ h + i, n, false };
		i = e + 1;
	}
	time_t now = time(NULL);
	oom |= buf_appendf(&sig, "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	                         "\td=%s; s=%s; t=%lld;\r\n\th=", key->domain, key->selector,
	                   (long long)now) < 0;
	size_t line = 3;        /* "\th=" */
	bool first = true;
	for (size_t i = 0; i <= nf; i++) {
		const char *name = NULL;
		size_t nl = 0;
		if (i < nf) {
			for (const char *const *s = signed_fields; *s && !name; s++)
				if (name_is(fs[i].p, fs[i].n, *s)) {
					name = fs[i].p;
					nl = strcspn(fs[i].p, ": \t");
				}
		} else {
			name = "From";          /* oversigned */
			nl = 4;
		}
		if (!name)
			continue;
		if (!first && line + nl + 1 > 76) {
			oom |= buf_appends(&sig, ":\r\n\t") < 0;
			line = 1;
		} else if (!first) {
			oom |= buf_append(&sig, ":", 1) < 0;
			line++;
		}
		oom |= buf_append(&sig, name, nl) < 0;
		line += nl;
		first = false;
		/* The header hash takes the instances bottom-up (RFC 6376 §5.4.2);
		 * the oversigned From, and any name with no instance left, adds
		 * nothing. */
		if (i < nf) {
			char nm[64];
			snprintf(nm, sizeof(nm), "%.*s", (int)(nl < 63 ? nl : 63), name);
			for (size_t j = nf; j-- > 0;)
				if (!fs[j].used && name_is(fs[j].p, fs[j].n, nm)) {
					fs[j].used = true;
					hc_field(&hh, fs[j].p, fs[j].n, true, &oom);
					break;
				}
		}
	}
	oom |= buf_appendf(&sig, ";\r\n\tbh=%s;\r\n\tb=", bh64) < 0;
	if (oom)
		goto oom;
	/* The signature field itself, b= empty, without its CRLF (§3.7). */
	hc_field(&hh, sig.data, sig.len, false, &oom);
	if (oom || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, hh.data, hh.len) != 1 || EVP_DigestFinal_ex(md, hd, &hdl) != 1)
		goto oom;
	/* RFC 8463 §3: PureEd25519 over the SHA-256 of the header data. */
	if (EVP_DigestSignInit(sc, NULL, NULL, NULL, key->ed25519) != 1 ||
	    EVP_DigestSign(sc, raw, &rawl, hd, hdl) != 1) {
		snprintf(why, whylen, "OpenSSL cannot sign with the Ed25519 key");
		goto out;
	}
	EVP_EncodeBlock((unsigned char *)b64, raw, (int)rawl);
	oom |= buf_appendf(&sig, "%s\r\n", b64) < 0;
	if (oom)
		goto oom;
	*field_len = sig.len;
	*field = buf_steal(&sig, field_len);
	if (!*field)
		goto oom;
	ret = 0;
	goto out;
oom:
	snprintf(why, whylen, "out of memory");
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	EVP_MD_CTX_free(sc);
	free(fs);
	buf_free(&sig);
	buf_free(&hh);
	return ret;
}

static bool route_covered(const struct dkim_keys *k, enum route_kind route)
{
	switch (k->sign) {
	case CONFIG_DKIM_SIGN_ALL: return true;
	case CONFIG_DKIM_SIGN_DIRECT: return route == ROUTE_DIRECT;
	default: return false;
	}
}

int dkim_sign_mail(const struct dkim_keys *keys, const struct iovec *parts, size_t nparts,
              enum route_kind route, char **field, size_t *field_len,
              const struct dkim_key **used, char *why, size_t whylen)
{
	buf_t hdr;
	size_t bpart, boff;
	DKIM *d = NULL;
	DKIM_STAT st;
	int ret = 0;

	*field = NULL;
	*field_len = 0;
	*used = NULL;
	why[0] = '\0';
	if (!keys || keys->n == 0 || !route_covered(keys, route))
		return 0;

	buf_init(&hdr, DKIM_HEADER_MAX);
	if (header_section(parts, nparts, &hdr, &bpart, &boff) < 0) {
		snprintf(why, whylen, "the header section is larger than %d bytes", DKIM_HEADER_MAX);
		goto out;
	}

	/* The From fields: exactly one (SPEC §4, §5). */
	const char *h = hdr.data ? hdr.data : "";
	size_t hl = hdr.len;
	const char *from = NULL;
	size_t from_len = 0;
	unsigned nfrom = 0;
	for (size_t i = 0; i < hl;) {
		size_t e = i;
		while (e < hl && !(h[e] == '\n' && (e + 1 >= hl || (h[e + 1] != ' ' && h[e + 1] != '\t'))))
			e++;
		if (field_is(h + i, e - i, "From")) {
			nfrom++;
			from = memchr(h + i, ':', e - i) + 1;
			from_len = (size_t)(h + e - from);
		}
		i = e + 1;
	}
	if (nfrom != 1) {
		snprintf(why, whylen, nfrom ? "the message has %u From fields" : "the message has no From field",
		         nfrom);
		goto out;
	}
	/* The value without its line breaks, as route_header_addrs() reads it. */
	char *fv = malloc(from_len + 1);
	if (!fv) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	size_t fn = 0;
	for (size_t i = 0; i < from_len; i++)
		if (from[i] != '\r' && from[i] != '\n')
			fv[fn++] = from[i];
	fv[fn] = '\0';
	const struct dkim_key *key = choose(keys, fv, fn, why, whylen);
	free(fv);
	if (!key)
		goto out;

	if (key->ed25519) {
		if (ed25519_sign(key, h, hl, parts, nparts, bpart, boff, field, field_len, why,
		                 whylen) < 0)
			goto out;
		*used = key;
		ret = 1;
		goto out;
	}
	d = dkim_sign(keys->lib, (const unsigned char *)"hikyaku", NULL, key->pem,
	              (const unsigned char *)key->selector, (const unsigned char *)key->domain,
	              DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, key->alg, -1, &st);
	if (!d) {
		snprintf(why, whylen, "libopendkim cannot sign: %s", dkim_getresultstr(st));
		goto out;
	}
	for (size_t i = 0; i < hl;) {
		size_t e = i;
		while (e < hl && !(h[e] == '\n' && (e + 1 >= hl || (h[e + 1] != ' ' && h[e + 1] != '\t'))))
			e++;
		/* The field without its CRLF; the empty line ends the loop. */
		size_t n = e - i;
		if (n && h[i + n - 1] == '\r')
			n--;
		if (n == 0)
			break;
		st = dkim_header(d, (unsigned char *)(uintptr_t)(h + i), n);
		if (st != DKIM_STAT_OK) {
			snprintf(why, whylen, "libopendkim refuses a header field: %s",
			         dkim_geterror(d) ? dkim_geterror(d) : dkim_getresultstr(st));
			goto out;
		}
		i = e + 1;
	}
	if ((st = dkim_eoh(d)) != DKIM_STAT_OK) {
		snprintf(why, whylen, "libopendkim: %s",
		         dkim_geterror(d) ? dkim_geterror(d) : dkim_getresultstr(st));
		goto out;
	}
	unsigned char last = '\n';
	for (size_t i = bpart; i < nparts; i++) {
		size_t o = i == bpart ? boff : 0;
		if (parts[i].iov_len <= o)
			continue;
		st = dkim_body(d, (unsigned char *)parts[i].iov_base + o, parts[i].iov_len - o);
		if (st != DKIM_STAT_OK) {
			snprintf(why, whylen, "libopendkim: %s", dkim_getresultstr(st));
			goto out;
		}
		last = ((const unsigned char *)parts[i].iov_base)[parts[i].iov_len - 1];
	}
	/* A mail from SMTP always ends in CRLF; one that does not gets it, as
	 * the relaxed body canonicalisation adds it (RFC 6376 §3.4.4), which
	 * libopendkim requires to be there. */
	if (last != '\n' && (st = dkim_body(d, (unsigned char *)"\r\n", 2)) != DKIM_STAT_OK) {
		snprintf(why, whylen, "libopendkim: %s", dkim_getresultstr(st));
		goto out;
	}
	if ((st = dkim_eom(d, NULL)) != DKIM_STAT_OK) {
		snprintf(why, whylen, "libopendkim: %s",
		         dkim_geterror(d) ? dkim_geterror(d) : dkim_getresultstr(st));
		goto out;
	}
	unsigned char *sig = NULL;
	size_t siglen = 0;
	st = dkim_getsighdr_d(d, sizeof("DKIM-Signature: ") - 1, &sig, &siglen);
	if (st != DKIM_STAT_OK || !sig) {
		snprintf(why, whylen, "libopendkim: %s",
		         dkim_geterror(d) ? dkim_geterror(d) : dkim_getresultstr(st));
		goto out;
	}
	*field = field_crlf(sig, siglen, field_len);
	if (!*field) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	*used = key;
	ret = 1;
out:
	if (d)
		dkim_free(d);
	buf_free(&hdr);
	return ret;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

int dkim_public_record(const char *pem, size_t pem_len, const char **k, char **p)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
	EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	unsigned char *der = NULL;
	int dlen = -1, ret = -1;

	BIO_free(bio);
	*p = NULL;
	if (!pk)
		goto out;
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
		*k = "rsa";
		dlen = i2d_PUBKEY(pk, &der);
	} else if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519) {
		size_t n = 0;
		*k = "ed25519";
		if (EVP_PKEY_get_raw_public_key(pk, NULL, &n) == 1 && n == 32 &&
		    (der = OPENSSL_malloc(n)) && EVP_PKEY_get_raw_public_key(pk, der, &n) == 1)
			dlen = (int)n;
	}
	if (dlen <= 0)
		goto out;
	*p = malloc(((size_t)dlen + 2) / 3 * 4 + 1);
	if (!*p)
		goto out;
	EVP_EncodeBlock((unsigned char *)*p, der, dlen);
	ret = 0;
out:
	OPENSSL_free(der);
	EVP_PKEY_free(pk);
	ERR_clear_error();
	return ret;
}
