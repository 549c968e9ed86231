/*
 * NAME
 *	tls - a TLS engine on memory BIOs (OpenSSL 3)
 * SUMMARY
 *	Drives one TLS connection without owning a socket: ciphertext from
 *	the network is fed in, plaintext comes out, plaintext to send goes in
 *	and ciphertext to write comes out. util/conn.c puts it on a libuv
 *	stream; the same engine serves the listener (server side) and the
 *	outbound client (client side, with certificate and name checks).
 * DESCRIPTION
 *	tls_server_ctx_new() loads a PEM chain and key; TLS 1.2 or later.
 *	tls_client_ctx_new() makes a client context that verifies the chain
 *	against ca_file or the system store (verify = true), or does not
 *	verify at all (opportunistic TLS).
 *	tls_engine_new() starts one connection; host (client side) is sent as
 *	SNI and, when the context verifies, checked against the certificate.
 *	tls_engine_feed() hands it network bytes; tls_engine_handshake()
 *	advances the handshake (1 done, 0 needs more input, -1 failed);
 *	tls_engine_read() returns plaintext (>0 bytes, 0 nothing yet, -1
 *	closed or failed); tls_engine_write() encrypts; tls_engine_output()
 *	moves ciphertext waiting to be sent into a buffer.
 *	tls_engine_error() tells why the last step failed, in one line.
 * TOUCHES
 *	Memory and the files named to the context constructors.
 */
#ifndef HK_UTIL_TLS_H
#define HK_UTIL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "util/buf.h"

struct tls_engine;

SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, char *err, size_t errlen);
SSL_CTX *tls_client_ctx_new(bool verify, const char *ca_file, char *err, size_t errlen);

struct tls_engine *tls_engine_new(SSL_CTX *ctx, bool server, const char *host);
void tls_engine_free(struct tls_engine *t);
int tls_engine_feed(struct tls_engine *t, const void *p, size_t n);
int tls_engine_handshake(struct tls_engine *t);
long tls_engine_read(struct tls_engine *t, void *p, size_t cap);
int tls_engine_write(struct tls_engine *t, const void *p, size_t n);
int tls_engine_output(struct tls_engine *t, buf_t *out);
bool tls_engine_done(const struct tls_engine *t);
const char *tls_engine_error(const struct tls_engine *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once the handshake is done. */
const char *tls_engine_describe(struct tls_engine *t);

#endif
