/*
 * ctl_dkim - "hikyakuctl dkim keygen". See ctl_dkim.h.
 */
#include "ctl/ctl_dkim.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config/config.h"
#include "relay/dkim.h"

#define TXT_STRING_MAX 255      /* RFC 1035 §3.3.14: one character-string */

static void keygen_usage(void)
{
	fprintf(stderr, "hikyakuctl: usage: hikyakuctl dkim keygen DOMAIN SELECTOR FILE "
	                "[--type rsa|ed25519] [--bits N]\n");
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The key as PEM, into a new file of mode 0640. */
static int write_key(const char *path, EVP_PKEY *pk)
{
	BIO *mem = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long n;

	if (!mem || PEM_write_bio_PrivateKey(mem, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (n = BIO_get_mem_data(mem, &pem)) <= 0) {
		fprintf(stderr, "hikyakuctl: OpenSSL cannot write the key.\n");
		BIO_free(mem);
		return -1;
	}
	/* O_EXCL: an existing key, perhaps in use and published, stays. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		fprintf(stderr, errno == EEXIST ? "hikyakuctl: %s exists; a key file is never "
		                                  "overwritten.\n"
		                                : "hikyakuctl: cannot create %s: %s.\n",
		        path, strerror(errno));
		BIO_free(mem);
		return -1;
	}
	/* 0640 whatever the umask: the daemon's group reads it. */
	int rc = 0;
	if (fchmod(fd, 0640) < 0 || write_all(fd, pem, (size_t)n) < 0 || fsync(fd) < 0) {
		fprintf(stderr, "hikyakuctl: cannot write %s: %s.\n", path, strerror(errno));
		rc = -1;
	}
	if (close(fd) < 0 && rc == 0) {
		fprintf(stderr, "hikyakuctl: cannot write %s: %s.\n", path, strerror(errno));
		rc = -1;
	}
	if (rc < 0)
		unlink(path);
	OPENSSL_cleanse(pem, (size_t)n);
	BIO_free(mem);
	return rc;
}

/* NAME. IN TXT "..." "...": strings of at most 255 octets. */
static void print_record(const char *selector, const char *domain, const char *value)
{
	size_t n = strlen(value);

	printf("%s._domainkey.%s. IN TXT", selector, domain);
	for (size_t i = 0; i < n; i += TXT_STRING_MAX) {
		size_t l = n - i < TXT_STRING_MAX ? n - i : TXT_STRING_MAX;
		printf(" \"%.*s\"", (int)l, value + i);
	}
	printf("\n");
}

static int keygen(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "type", required_argument, NULL, 't' },
		{ "bits", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *type = "rsa";
	long bits = 0;
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			type = optarg;
			break;
		case 'b': {
			char *end;
			errno = 0;
			bits = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg) {
				fprintf(stderr, "hikyakuctl: --bits \"%s\" is not a number.\n", optarg);
				return 2;
			}
			break;
		}
		default:
			keygen_usage();
			return 2;
		}
	}
	if (argc - optind != 3) {
		keygen_usage();
		return 2;
	}
	const char *dom_in = argv[optind], *sel_in = argv[optind + 1], *path = argv[optind + 2];
	char *domain = config_domain_ascii(dom_in, strlen(dom_in));
	if (!domain) {
		fprintf(stderr, "hikyakuctl: \"%s\" is not a valid domain.\n", dom_in);
		return 2;
	}
	char *selector = strdup(sel_in);
	for (char *p = selector; p && *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	int rc = 2;
	EVP_PKEY *pk = NULL;
	if (!selector || !config_dkim_selector_valid(selector)) {
		fprintf(stderr, "hikyakuctl: \"%s\" is not a valid selector (letters, digits, hyphens "
		                "and dots).\n", sel_in);
		goto out;
	}
	if (strcmp(type, "rsa") == 0) {
		if (bits == 0)
			bits = 2048;
		if (bits < 1024 || bits > 8192) {
			fprintf(stderr, "hikyakuctl: --bits %ld is out of range (1024 to 8192; 2048 is "
			                "the usual size).\n", bits);
			goto out;
		}
		if (bits < 2048)
			fprintf(stderr, "hikyakuctl: warning: RSA keys under 2048 bits are weak; some "
			                "receivers ignore them.\n");
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	} else if (strcmp(type, "ed25519") == 0) {
		if (bits) {
			fprintf(stderr, "hikyakuctl: --bits is for RSA keys; an Ed25519 key has no size "
			                "to choose.\n");
			goto out;
		}
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	} else {
		fprintf(stderr, "hikyakuctl: --type \"%s\" is not rsa or ed25519.\n", type);
		goto out;
	}
	if (!pk) {
		fprintf(stderr, "hikyakuctl: OpenSSL cannot make the key.\n");
		goto out;
	}
	if (write_key(path, pk) < 0)
		goto out;

	/* The record from the file just written: what is published is what
	 * hikyaku will read. */
	BIO *mem = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long n = 0;
	const char *k;
	char *p = NULL;
	if (mem && PEM_write_bio_PrivateKey(mem, pk, NULL, NULL, 0, NULL, NULL) == 1)
		n = BIO_get_mem_data(mem, &pem);
	if (n <= 0 || dkim_public_record(pem, (size_t)n, &k, &p) < 0) {
		fprintf(stderr, "hikyakuctl: cannot compute the public key.\n");
		BIO_free(mem);
		unlink(path);
		goto out;
	}
	BIO_free(mem);
	char *value = NULL;
	if (asprintf(&value, "v=DKIM1; k=%s; p=%s", k, p) < 0) {
		free(p);
		unlink(path);
		goto out;
	}
	print_record(selector, domain, value);
	fprintf(stderr, "hikyakuctl: wrote %s; publish the record above, then add to [dkim] keys:\n"
	                "    %s %s %s\n", path, domain, selector, path);
	free(value);
	free(p);
	rc = 0;
out:
	EVP_PKEY_free(pk);
	ERR_clear_error();
	free(selector);
	free(domain);
	return rc;
}

int ctl_dkim(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return keygen(argc - 1, argv + 1);
	fprintf(stderr, "hikyakuctl: usage: hikyakuctl dkim keygen DOMAIN SELECTOR FILE "
	                "[--type rsa|ed25519] [--bits N]\n");
	return 2;
}
