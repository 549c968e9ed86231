/*
 * queue_tag - the unguessable reference QUEUEID-TAG of a queued mail.
 * See queue_tag.h.
 */
#include "relay/queue_tag.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int key_write(const char *dir, const char *path, const unsigned char *key)
{
	char tmp[PATH_MAX + 8], hex[QUEUE_TAG_KEY_LEN * 2 + 2];
	for (int i = 0; i < QUEUE_TAG_KEY_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	hex[QUEUE_TAG_KEY_LEN * 2] = '\n';
	hex[QUEUE_TAG_KEY_LEN * 2 + 1] = '\0';
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t len = strlen(hex);
	int rc = write(fd, hex, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : -(errno ? errno : EIO);
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	rc = fsync(dfd) < 0 ? -errno : 0;
	close(dfd);
	return rc;
}

int queue_tag_key_load(const char *dir, unsigned char key[QUEUE_TAG_KEY_LEN])
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tag.key", dir);
	FILE *fp = fopen(path, "re");
	if (fp) {
		char line[QUEUE_TAG_KEY_LEN * 2 + 8] = "";
		bool ok = fgets(line, sizeof(line), fp) != NULL;
		fclose(fp);
		for (int i = 0; ok && i < QUEUE_TAG_KEY_LEN; i++) {
			int h = hexval((unsigned char)line[2 * i]), l = hexval((unsigned char)line[2 * i + 1]);
			if (h < 0 || l < 0)
				ok = false;
			else
				key[i] = (unsigned char)(h << 4 | l);
		}
		OPENSSL_cleanse(line, sizeof(line));
		if (ok)
			return 0;
		fprintf(stderr, "hikyaku: %s is damaged; making a new key (tags of mails sent "
		        "before name nothing now)\n", path);
	} else if (errno != ENOENT) {
		return -errno;
	}
	if (RAND_bytes(key, QUEUE_TAG_KEY_LEN) != 1)
		return -EIO;
	return key_write(dir, path, key);
}

void queue_tag_ref(const unsigned char key[QUEUE_TAG_KEY_LEN], const char *id,
                   char out[QUEUE_REF_MAX + 1])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	HMAC(EVP_sha256(), key, QUEUE_TAG_KEY_LEN, (const unsigned char *)id, strlen(id), mac,
	     &maclen);
	int n = snprintf(out, QUEUE_REF_MAX + 1, "%s-", id);
	for (int i = 0; i < QUEUE_TAG_HEX / 2 && n + 2 < QUEUE_REF_MAX + 1; i++)
		n += snprintf(out + n, (size_t)(QUEUE_REF_MAX + 1 - n), "%02x", mac[i]);
}

bool queue_tag_ref_parse(const char *s, size_t n, char out[QUEUE_REF_MAX + 1],
                         char id[QUEUE_ID_LEN + 1])
{
	if (!s || n < QUEUE_ID_LEN + 1 + QUEUE_TAG_HEX || n > QUEUE_REF_MAX || s[QUEUE_ID_LEN] != '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (i == QUEUE_ID_LEN)
			continue;
		if (hexval((unsigned char)s[i]) < 0)
			return false;
		out[i] = i < QUEUE_ID_LEN ? (char)toupper((unsigned char)s[i])
		                          : (char)tolower((unsigned char)s[i]);
	}
	out[QUEUE_ID_LEN] = '-';
	out[n] = '\0';
	memcpy(id, out, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	return queue_id_valid(id);
}
