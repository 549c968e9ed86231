/*
 * NAME
 *	ctl_dkim - "hikyakuctl dkim keygen ..." (SPEC §8)
 * SUMMARY
 *	hikyakuctl dkim keygen DOMAIN SELECTOR FILE [--type rsa|ed25519] [--bits N]
 * DESCRIPTION
 *	ctl_dkim() makes a new private key with OpenSSL (RSA of 2048 bits
 *	by default, --bits 1024 to 8192; or Ed25519, RFC 8463), writes it to
 *	FILE as unencrypted PKCS#8 PEM with mode 0640 (never over an
 *	existing file), and prints the DNS record to publish on stdout:
 *	    SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=rsa; p=..."
 *	the value cut into quoted strings of at most 255 octets (RFC 1035
 *	§3.3.14; RFC 6376 §3.6.2.2 joins them). On stderr, the [dkim] keys
 *	line that puts the key to use. argv[0] is "dkim".
 * DIAGNOSTICS
 *	Returns the exit status: 0 written, 2 usage error, FILE exists or
 *	cannot be written (nothing is left behind). One sentence on stderr.
 * TOUCHES
 *	Creates FILE.
 */
#ifndef HK_CTL_DKIM_H
#define HK_CTL_DKIM_H

int ctl_dkim(int argc, char **argv);

#endif
