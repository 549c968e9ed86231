/*
 * NAME
 *	config_dkim - [dkim] keys (SPEC §3): "DOMAIN SELECTOR FILE" entries
 * SUMMARY
 *	Each entry's key file is read now (at most 64 KiB) and parsed with
 *	OpenSSL: an RSA key of at least 1024 bits (a warning under 2048) or
 *	an Ed25519 key, never an encrypted one; one key per domain. The
 *	file's bytes are kept in the configuration (and cleansed when it is
 *	freed), so what --check accepted is what signs (relay/dkim.h).
 *	config_dkim_selector_valid() (config.h) is the selector rule, also
 *	used by hikyakuctl dkim keygen.
 * TOUCHES
 *	Reads the key files; the struct config being loaded.
 */
#include "config/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- [dkim] keys (SPEC §3): "DOMAIN SELECTOR FILE", the key read now */

#define DKIM_KEY_FILE_MAX (64 * 1024)

void cfg_dkim_keys_clear(struct config *cfg)
{
	for (size_t i = 0; i < cfg->dkim.nkeys; i++) {
		struct config_dkim_key *k = &cfg->dkim.keys[i];
		free(k->domain);
		free(k->selector);
		free(k->file);
		if (k->pem)
			OPENSSL_cleanse(k->pem, k->pem_len);
		free(k->pem);
	}
	free(cfg->dkim.keys);
	cfg->dkim.keys = NULL;
	cfg->dkim.nkeys = 0;
}

/* An encrypted key cannot be used unattended: never ask for a passphrase. */
static int dkim_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

/* The whole file, at most DKIM_KEY_FILE_MAX bytes; 0 or an errno value
 * (EFBIG when larger). */
static int dkim_read_file(const char *p, char **out, size_t *len)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	char *b = NULL;
	size_t n = 0;
	int err = 0;

	if (fd < 0)
		return errno;
	if (fstat(fd, &st) < 0) {
		err = errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		err = EISDIR;
		goto out;
	}
	b = malloc(DKIM_KEY_FILE_MAX + 1);
	if (!b) {
		err = ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, b + n, DKIM_KEY_FILE_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > DKIM_KEY_FILE_MAX) {
			err = EFBIG;
			break;
		}
	}
out:
	close(fd);
	if (err) {
		if (b)
			OPENSSL_cleanse(b, n);
		free(b);
		return err;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

/* A selector is one or more labels of letters, digits and hyphens
 * (RFC 6376 §3.1). */
bool config_dkim_selector_valid(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 63 * 4)
		return false;
	for (size_t i = 0; i <= n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.' || ch == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-')
				return false;
			label = 0;
		} else if (isalnum(ch) || ch == '-') {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

void cfg_dkim_key_add(struct load_ctx *c, const char *e, int line)
{
	struct config *cfg = c->cfg;
	char dom[256], sel[256], file[200];
	int n = 0;

	if (sscanf(e, "%255s %255s %199s %n", dom, sel, file, &n) != 3 || e[n] != '\0') {
		ERR(c, line, "keys: \"%s\" is not \"DOMAIN SELECTOR FILE\"", e);
		return;
	}
	char *ascii = config_domain_ascii(dom, strlen(dom));
	if (!ascii) {
		ERR(c, line, "keys: \"%s\" is not a valid domain", dom);
		return;
	}
	cfg_ascii_lower(sel);
	if (!config_dkim_selector_valid(sel)) {
		ERR(c, line, "keys: \"%s\" is not a valid selector (letters, digits, hyphens "
		    "and dots)", sel);
		free(ascii);
		return;
	}
	for (size_t i = 0; i < cfg->dkim.nkeys; i++)
		if (strcmp(cfg->dkim.keys[i].domain, ascii) == 0) {
			ERR(c, line, "keys: %s has a key already (line %d); one key signs "
			    "for a domain", ascii, cfg->dkim.keys[i].line);
			free(ascii);
			return;
		}
	struct config_dkim_key k = { .domain = ascii, .line = line };
	k.selector = strdup(sel);
	k.file = cfg_path_resolve(cfg->dir, file);
	if (!k.selector || !k.file) {
		c->oom = true;
		goto fail;
	}
	int err = dkim_read_file(k.file, &k.pem, &k.pem_len);
	if (err) {
		ERR(c, line, "keys: cannot read \"%s\": %s", k.file,
		    err == EFBIG ? "larger than 64 KiB, not a key" : strerror(err));
		goto fail;
	}
	BIO *bio = BIO_new_mem_buf(k.pem, (int)k.pem_len);
	EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, dkim_no_passphrase, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error();
	if (!pk) {
		ERR(c, line, "keys: \"%s\" holds no PEM private key (or an encrypted one)", k.file);
		goto fail;
	}
	int id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_RSA) {
		k.type = CONFIG_DKIM_RSA;
		k.bits = (unsigned)EVP_PKEY_get_bits(pk);
	} else if (id == EVP_PKEY_ED25519) {
		k.type = CONFIG_DKIM_ED25519;
		k.bits = 256;
	}
	EVP_PKEY_free(pk);
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
		ERR(c, line, "keys: \"%s\" is a %s key; DKIM signs with RSA or Ed25519", k.file,
		    OBJ_nid2sn(id));
		goto fail;
	}
	if (k.type == CONFIG_DKIM_RSA && k.bits < 1024) {
		ERR(c, line, "keys: \"%s\" is an RSA key of %u bits; at least 1024 are needed "
		    "(RFC 8301)", k.file, k.bits);
		goto fail;
	}
	if (k.type == CONFIG_DKIM_RSA && k.bits < 2048)
		WARN(c, line, "keys: \"%s\" is an RSA key of %u bits; use 2048 "
		     "(hikyakuctl dkim keygen)", k.file, k.bits);
	struct config_dkim_key *v = cfg_grow(c, cfg->dkim.keys, cfg->dkim.nkeys, sizeof(*v));
	if (!v)
		goto fail;
	cfg->dkim.keys = v;
	v[cfg->dkim.nkeys++] = k;
	return;
fail:
	free(k.domain);
	free(k.selector);
	free(k.file);
	if (k.pem)
		OPENSSL_cleanse(k.pem, k.pem_len);
	free(k.pem);
}
