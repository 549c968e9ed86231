/*
 * tls - a TLS engine on memory BIOs. See tls.h.
 *
 * Why memory BIOs: libuv owns the socket and delivers bytes in callbacks;
 * OpenSSL must never read or write the descriptor itself, or it would
 * block or race the event loop.
 */
#include "util/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

struct tls_engine {
	SSL *ssl;
	BIO *rbio;          /* network -> OpenSSL */
	BIO *wbio;          /* OpenSSL -> network */
	bool done;
	char desc[128];
	char err[256];
};

static void tls_set_err(char *dst, size_t cap, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	if (e) {
		char ebuf[200];
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
		snprintf(dst, cap, "%s: %s", what, ebuf);
	} else {
		snprintf(dst, cap, "%s", what);
	}
	ERR_clear_error();
}

SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		tls_set_err(err, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A relay's sessions are short; no resumption state to keep. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
	                    SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		char what[600];
		snprintf(what, sizeof(what), "cannot load certificate %s", cert);
		tls_set_err(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		char what[600];
		snprintf(what, sizeof(what), "cannot load key %s", key);
		tls_set_err(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_set_err(err, errlen, "certificate and key do not match");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_ctx_new(bool verify, const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		tls_set_err(err, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A hostile MX must not make us renegotiate (as the server's context). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
		                             : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			tls_set_err(err, errlen, "cannot load trusted certificates");
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

struct tls_engine *tls_engine_new(SSL_CTX *ctx, bool server, const char *host)
{
	struct tls_engine *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio) {
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		SSL_free(t->ssl);
		free(t);
		return NULL;
	}
	/* An empty read BIO means "no data yet", not end of file. */
	BIO_set_mem_eof_return(t->rbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	if (server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (host && *host) {
			SSL_set_tlsext_host_name(t->ssl, host);
			/* Checked only when the context verifies the peer. */
			SSL_set1_host(t->ssl, host);
			SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		}
	}
	return t;
}

void tls_engine_free(struct tls_engine *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* frees both BIOs */
	free(t);
}

int tls_engine_feed(struct tls_engine *t, const void *p, size_t n)
{
	while (n > 0) {
		int chunk = n > 1 << 20 ? 1 << 20 : (int)n;
		int w = BIO_write(t->rbio, p, chunk);
		if (w <= 0)
			return -1;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return 0;
}

int tls_engine_handshake(struct tls_engine *t)
{
	if (t->done)
		return 1;
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->done = true;
		return 1;
	}
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	long vr = SSL_get_verify_result(t->ssl);
	if (vr != X509_V_OK) {
		snprintf(t->err, sizeof(t->err), "certificate verification failed: %s",
		         X509_verify_cert_error_string(vr));
		ERR_clear_error();
	} else {
		tls_set_err(t->err, sizeof(t->err), "TLS handshake failed");
	}
	return -1;
}

long tls_engine_read(struct tls_engine *t, void *p, size_t cap)
{
	int chunk = cap > 1 << 20 ? 1 << 20 : (int)cap;
	int r = SSL_read(t->ssl, p, chunk);
	if (r > 0)
		return r;
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		snprintf(t->err, sizeof(t->err), "TLS connection closed by peer");
	else
		tls_set_err(t->err, sizeof(t->err), "TLS read failed");
	return -1;
}

int tls_engine_write(struct tls_engine *t, const void *p, size_t n)
{
	while (n > 0) {
		int chunk = n > 1 << 20 ? 1 << 20 : (int)n;
		int w = SSL_write(t->ssl, p, chunk);
		if (w <= 0) {
			tls_set_err(t->err, sizeof(t->err), "TLS write failed");
			return -1;
		}
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return 0;
}

int tls_engine_output(struct tls_engine *t, buf_t *out)
{
	char tmp[16384];
	int r;
	while ((r = BIO_read(t->wbio, tmp, sizeof(tmp))) > 0) {
		int rc = buf_append(out, tmp, (size_t)r);
		if (rc)
			return rc;
	}
	return 0;
}

bool tls_engine_done(const struct tls_engine *t)
{
	return t->done;
}

const char *tls_engine_error(const struct tls_engine *t)
{
	return t->err[0] ? t->err : "TLS error";
}

const char *tls_engine_describe(struct tls_engine *t)
{
	if (!t->desc[0] && t->done)
		snprintf(t->desc, sizeof(t->desc), "%s %s", SSL_get_version(t->ssl),
		         SSL_get_cipher_name(t->ssl));
	return t->desc;
}
