/*
 * dkim_sign - the CPU cost of signing one mail (relay/dkim.c)
 *
 * Makes an RSA-2048 and an Ed25519 key in a temporary directory, loads
 * them through the configuration as the daemon does, and signs a shop's
 * order confirmation (Japanese UTF-8, about 3 KB, the header block the
 * listener adds in front) N times with each, on one thread. Prints, per
 * key, the CPU time per mail (CLOCK_PROCESS_CPUTIME_ID) and the wall
 * time; and the cost of the path that signs nothing (a From domain
 * without a key: the header scan and the From parse only).
 *
 * usage: bench_dkim_sign [N]        (default 2000)
 * Built by: cmake --build build --target bench_dkim_sign (bench/dkim.sh)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config/config.h"
#include "relay/dkim.h"

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void make_key(const char *path, const char *type)
{
	EVP_PKEY *pk = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
	                                         : EVP_PKEY_Q_keygen(NULL, NULL, type);
	FILE *fp = fopen(path, "w");
	if (!pk || !fp || PEM_write_PrivateKey(fp, pk, NULL, NULL, 0, NULL, NULL) != 1) {
		fprintf(stderr, "bench_dkim_sign: cannot make the %s key\n", type);
		exit(1);
	}
	fclose(fp);
	EVP_PKEY_free(pk);
}

static char *order_mail(const char *from)
{
	static const char line[] = "ご注文の商品：オーガニックコットン タオルセット（3枚組） 数量 1 小計 3,300円\r\n";
	char *m = NULL;
	size_t n = 0;
	FILE *fp = open_memstream(&m, &n);
	fprintf(fp, "From: =?UTF-8?B?44K344On44OD44OX?= <%s>\r\n"
	            "To: yamada@example.jp\r\n"
	            "Subject: =?UTF-8?B?44GU5rOo5paH44GC44KK44GM44Go44GG44GU44GW44GE44G+44GZ?=\r\n"
	            "Date: Wed, 2 Dec 2026 10:00:00 +0900\r\n"
	            "Message-ID: <20261202100000.1234@shop.example>\r\n"
	            "MIME-Version: 1.0\r\n"
	            "Content-Type: text/plain; charset=UTF-8\r\n"
	            "Content-Transfer-Encoding: 8bit\r\n"
	            "X-Mailer: EC-CUBE\r\n\r\n", from);
	for (int i = 0; i < 25; i++)
		fputs(line, fp);
	fclose(fp);
	return m;
}

static void run(const struct dkim_keys *k, const char *label, const char *from, int n)
{
	static const char rcvd[] = "Received: from shop (localhost [127.0.0.1])\r\n"
	                           "\tby relay.example.jp (hikyaku) with ESMTP id 0006612824C4D754AB;\r\n"
	                           "\tWed, 2 Dec 2026 10:00:00 +0900\r\n";
	char *msg = order_mail(from);
	struct iovec iov[2] = { { (void *)rcvd, sizeof(rcvd) - 1 }, { msg, strlen(msg) } };
	char why[256];
	int signed_n = 0;
	double c0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
	for (int i = 0; i < n; i++) {
		char *field;
		size_t len;
		const struct dkim_key *used;
		signed_n += dkim_sign_mail(k, iov, 2, ROUTE_DIRECT, &field, &len, &used, why, sizeof(why));
		free(field);
	}
	double c1 = now(CLOCK_PROCESS_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
	printf("%-26s %6d mails (%zu bytes)  signed %6d  cpu %8.1f us/mail  wall %8.1f us/mail\n",
	       label, n, iov[0].iov_len + iov[1].iov_len, signed_n, (c1 - c0) * 1e6 / n,
	       (w1 - w0) * 1e6 / n);
	free(msg);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	char dir[] = "/tmp/bench-dkim-XXXXXX", path[300], text[1024];
	if (n <= 0 || !mkdtemp(dir))
		return 2;
	snprintf(path, sizeof(path), "%s/rsa.pem", dir);
	make_key(path, "RSA");
	snprintf(path, sizeof(path), "%s/ed.pem", dir);
	make_key(path, "ED25519");
	snprintf(path, sizeof(path), "%s/hikyaku.conf", dir);
	snprintf(text, sizeof(text), "[server]\nhostname = relay.example.jp\n[queue]\ndir = %s/q\n"
	                             "[dkim]\nkeys = rsa.example s1 %s/rsa.pem\n    ed.example e1 %s/ed.pem\n",
	         dir, dir, dir);
	FILE *fp = fopen(path, "w");
	fputs(text, fp);
	fclose(fp);
	struct config *cfg;
	struct config_diags d = { 0 };
	if (config_load(path, &cfg, &d) < 0) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n", d.v[i].text);
		return 1;
	}
	char err[256];
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	if (!k) {
		fprintf(stderr, "bench_dkim_sign: %s\n", err);
		return 1;
	}
	run(k, "rsa-sha256 (2048 bits)", "order@rsa.example", n);
	run(k, "ed25519-sha256", "order@ed.example", n);
	run(k, "no key (not signed)", "order@other.example", n);
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
	snprintf(text, sizeof(text), "rm -rf '%s'", dir);
	return system(text) == 0 ? 0 : 1;
}
