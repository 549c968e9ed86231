#!/bin/bash
# Makes a throw-away certificate authority and certificates for the tests,
# in the directory given: ca.pem, server.pem/server.key (for NAME, default
# relay.test.example, plus localhost and 127.0.0.1), wrong.pem/wrong.key
# (a certificate for another name), expired.pem/expired.key (valid name,
# validity over; made with "openssl ca" since -days -1 is refused).
set -eu
dir=$1
name=${2:-relay.test.example}
cd "$dir"
q() { "$@" >/dev/null 2>&1; }

q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
	-subj "/CN=hikyaku test CA" -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() { # leaf FILE CN SAN
	q openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
	printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$3" >"$1.ext"
	q openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
		-out "$1.pem" -days 2 -extfile "$1.ext"
}
leaf server "$name" "DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1"
leaf wrong "wrong.test.example" "DNS:wrong.test.example"

# The expired certificate: "openssl ca" takes explicit dates.
mkdir -p ca.db
: >ca.db/index.txt
echo 1000 >ca.db/serial
cat >ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = $PWD/ca.db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = $PWD/ca.pem
private_key = $PWD/ca.key
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
CNF
q openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj "/CN=$name" \
	-addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1"
q openssl ca -batch -config ca.cnf -in expired.csr -out expired.pem \
	-startdate 20200101000000Z -enddate 20200102000000Z
