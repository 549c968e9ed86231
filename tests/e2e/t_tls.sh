#!/bin/bash
# STARTTLS (RFC 3207) and AUTH (RFC 4954) on the listener, with a
# certificate made for this run and crypt(3) hashes in auth_file.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs"
# One yescrypt and one SHA-512 crypt user.
{
	echo "# test users"
	echo "shop:$(mkpasswd -m yescrypt 'right horse')"
	echo "batch:$(openssl passwd -6 's3cret')"
} >"$T/auth"
write_config "allow_networks = 127.0.0.1/32
tls_cert = $T/certs/server.pem
tls_key = $T/certs/server.key
auth_file = $T/auth"
start_hikyaku || { finish; exit 1; }

$RAW 127.0.0.1 "$PORT" '<220' '>EHLO c.example\r\n' '<250' '>QUIT\r\n' '<221' >"$T/ehlo.out" 2>&1
expect "STARTTLS offered" "$T/ehlo.out" '^250-STARTTLS$'
expect_not "AUTH not offered before TLS" "$T/ehlo.out" 'AUTH'

session "AUTH before TLS: 530 5.7.0" '<220' '>EHLO c.example\r\n' '<250' '>AUTH PLAIN AHNob3AAcmlnaHQgaG9yc2U=\r\n' \
	'<530 5.7.0 Must issue a STARTTLS command first' '>QUIT\r\n' '<221'

# swaks over STARTTLS, checking the certificate against the test CA.
swaks --server 127.0.0.1 --port "$PORT" --from shop@example.jp --to user@example.com --tls \
	--tls-verify --tls-ca-path "$T/certs/ca.pem" --tls-sni relay.test.example --timeout 20 >"$T/tls.out" 2>&1
expect "mail queued over verified STARTTLS" "$T/tls.out" 'queued as'
expect "TLS 1.2 or later" "$T/tls.out" 'TLS started with cipher TLSv1\.[23]'

$RAW 127.0.0.1 "$PORT" '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' '>EHLO c.example\r\n' '<250' \
	'>QUIT\r\n' '<221' >"$T/ehlo2.out" 2>&1
expect "AUTH PLAIN LOGIN offered after TLS" "$T/ehlo2.out" '^250[- ]AUTH PLAIN LOGIN$'
sed -n '/^TLS /,$p' "$T/ehlo2.out" >"$T/ehlo3.out"
expect_not "STARTTLS not offered again inside TLS" "$T/ehlo3.out" 'STARTTLS$'

session "MAIL after STARTTLS without EHLO: 503 5.5.1" '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' \
	'>MAIL FROM:<a@example.jp>\r\n' '<503 5.5.1' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>QUIT\r\n' '<221'

# Commands pipelined behind STARTTLS in the same packet are discarded:
# after the handshake the session knows nothing of them (no HELO, no MAIL).
session "commands behind STARTTLS are never executed" '<220' '>EHLO c.example\r\n' '<250' \
	'>STARTTLS\r\nMAIL FROM:<inject@example.jp>\r\nRCPT TO:<victim@example.com>\r\n' '<220' 'tls' \
	'>DATA\r\n' '<503 5.5.1' '>EHLO c.example\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'

# AUTH from a client outside allow_networks: right and wrong passwords.
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.9 --from shop@example.jp --to user@example.com \
	--tls --auth PLAIN --auth-user shop --auth-password 'right horse' --timeout 20 >"$T/auth1.out" 2>&1
expect "AUTH PLAIN with the right password: 235" "$T/auth1.out" '<~ +235 2\.7\.0'
expect "an authenticated client may relay" "$T/auth1.out" 'queued as'
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.9 --from shop@example.jp --to user@example.com \
	--tls --auth LOGIN --auth-user batch --auth-password 's3cret' --timeout 20 >"$T/auth2.out" 2>&1
expect "AUTH LOGIN with a \$6\$ hash: 235" "$T/auth2.out" '<~ +235 2\.7\.0'
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.9 --from shop@example.jp --to user@example.com \
	--tls --auth PLAIN --auth-user shop --auth-password 'wrong horse' --timeout 20 >"$T/auth3.out" 2>&1
expect "wrong password: 535 5.7.8" "$T/auth3.out" '<~\* +535 5\.7\.8'
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.9 --from shop@example.jp --to user@example.com \
	--tls --auth LOGIN --auth-user nobody --auth-password 'x' --timeout 20 >"$T/auth4.out" 2>&1
expect "unknown user: 535 5.7.8" "$T/auth4.out" '<~\* +535 5\.7\.8'
# AUTH PLAIN with an authorization id equal to the user (SPEC §5), and one that differs.
authz_ok=$(printf 'shop\0shop\0right horse' | base64 -w0)
authz_bad=$(printf 'admin\0shop\0right horse' | base64 -w0)
session "AUTH PLAIN authzid = user accepted" --source 127.0.0.9 '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' \
	'>EHLO c.example\r\n' '<250' ">AUTH PLAIN $authz_ok\r\n" '<235 2.7.0' '>QUIT\r\n' '<221'
session "AUTH PLAIN authzid of another user refused" --source 127.0.0.9 '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' \
	'>EHLO c.example\r\n' '<250' ">AUTH PLAIN $authz_bad\r\n" '<535 5.7.8' '>QUIT\r\n' '<221'
session "AUTH PLAIN in two steps, then relaying" --source 127.0.0.9 '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' \
	'>EHLO c.example\r\n' '<250' '>AUTH PLAIN\r\n' '<334' ">$authz_ok\r\n" '<235' \
	'>MAIL FROM:<shop@example.jp>\r\n' '<250' '>RCPT TO:<user@example.com>\r\n' '<250' '>QUIT\r\n' '<221'
session "without AUTH the outside client may not relay" --source 127.0.0.9 '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' \
	'>EHLO c.example\r\n' '<250' '>MAIL FROM:<shop@example.jp>\r\n' '<250' '>RCPT TO:<user@example.com>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221'

# The received event says TLS was used.
stop_hikyaku
if $PY -c '
import json,sys
ev=[json.loads(l) for l in open(sys.argv[1])]
r=[e for e in ev if e["event"]=="received"]
sys.exit(0 if r and all(e["tls"] is True for e in r) else 1)' "$T/log.jsonl"; then ok "received events say tls: true"; else nok "received events say tls: true" "$T/log.jsonl"; fi

finish
