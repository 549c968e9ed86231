/*
 * auth - SMTP AUTH credentials from auth_file. See auth.h.
 */
#include "server/auth.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define AUTH_LINE_MAX 1024
#define AUTH_FIELD_MAX 256

struct auth_user {
	char *name;
	char *hash;
};

struct auth_db {
	int refs;
	struct auth_user *users;
	size_t n;
	char *dummy_hash;   /* verified against for unknown users */
};

struct auth_req {
	uv_work_t work;
	struct auth_db *db;
	char user[AUTH_FIELD_MAX];
	char pass[AUTH_FIELD_MAX];
	bool ok;
	auth_result_cb cb;
	void *arg;
};

static void auth_db_free(struct auth_db *db)
{
	for (size_t i = 0; i < db->n; i++) {
		free(db->users[i].name);
		free(db->users[i].hash);
	}
	free(db->users);
	free(db->dummy_hash);
	free(db);
}

void auth_db_ref(struct auth_db *db)
{
	db->refs++;
}

void auth_db_unref(struct auth_db *db)
{
	if (db && --db->refs == 0)
		auth_db_free(db);
}

static void auth_diag(auth_diag_fn diag, void *arg, const char *path, int line,
                      const char *text)
{
	char msg[1200];
	if (line)
		snprintf(msg, sizeof(msg), "%s:%d: %s", path, line, text);
	else
		snprintf(msg, sizeof(msg), "%s: %s", path, text);
	diag(arg, msg);
}

struct auth_db *auth_db_load(const char *path, auth_diag_fn diag, void *arg)
{
	FILE *fp = fopen(path, "re");
	if (!fp) {
		char text[300];
		snprintf(text, sizeof(text), "cannot open: %s", strerror(errno));
		auth_diag(diag, arg, path, 0, text);
		return NULL;
	}
	struct auth_db *db = calloc(1, sizeof(*db));
	if (!db) {
		fclose(fp);
		return NULL;
	}
	db->refs = 1;
	char line[AUTH_LINE_MAX + 2];
	int lineno = 0;
	bool bad = false;
	while (fgets(line, sizeof(line), fp)) {
		lineno++;
		size_t len = strlen(line);
		if (len && line[len - 1] != '\n' && !feof(fp)) {
			auth_diag(diag, arg, path, lineno, "line longer than 1024 bytes");
			bad = true;
			int ch;
			while ((ch = fgetc(fp)) != EOF && ch != '\n')
				;
			continue;
		}
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		char *colon = strchr(line, ':');
		if (!colon || colon == line) {
			auth_diag(diag, arg, path, lineno, "expected \"user:HASH\"");
			bad = true;
			continue;
		}
		*colon = '\0';
		const char *hash = colon + 1;
		if (hash[0] != '$' || strlen(hash) >= AUTH_FIELD_MAX ||
		    strlen(line) >= AUTH_FIELD_MAX) {
			char text[400];
			snprintf(text, sizeof(text),
			         "user %.100s: not a crypt(3) hash (expected $y$, $6$, $2b$ ...)", line);
			auth_diag(diag, arg, path, lineno, text);
			bad = true;
			continue;
		}
		struct auth_user *nu = realloc(db->users, (db->n + 1) * sizeof(*nu));
		if (!nu)
			break;
		db->users = nu;
		db->users[db->n].name = strdup(line);
		db->users[db->n].hash = strdup(hash);
		db->n++;
	}
	fclose(fp);
	if (bad) {
		auth_db_free(db);
		return NULL;
	}
	/* A dummy of the same cost as the first real hash keeps the reply time
	 * of an unknown user equal to that of a wrong password. */
	const char *prefix = db->n ? db->users[0].hash : "$y$";
	char *setting = crypt_gensalt_ra(strncmp(prefix, "$6$", 3) == 0 ? "$6$" :
	                                 strncmp(prefix, "$2b$", 4) == 0 ? "$2b$" : "$y$",
	                                 0, NULL, 0);
	if (setting) {
		struct crypt_data cd;
		memset(&cd, 0, sizeof(cd));
		const char *h = crypt_r("hikyaku-dummy", setting, &cd);
		if (h && h[0] == '$')
			db->dummy_hash = strdup(h);
		free(setting);
	}
	return db;
}

static void auth_work(uv_work_t *w)
{
	struct auth_req *r = w->data;
	const char *hash = r->db->dummy_hash;
	bool known = false;
	for (size_t i = 0; i < r->db->n; i++) {
		if (strcmp(r->db->users[i].name, r->user) == 0) {
			hash = r->db->users[i].hash;
			known = true;
			break;
		}
	}
	if (!hash)
		return;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (!cd)
		return;
	const char *h = crypt_r(r->pass, hash, cd);
	size_t hl = strlen(hash);
	r->ok = known && h && h[0] == '$' && strlen(h) == hl && CRYPTO_memcmp(h, hash, hl) == 0;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
}

static void auth_after(uv_work_t *w, int status)
{
	struct auth_req *r = w->data;
	r->cb(r->arg, status == 0 && r->ok);
	auth_db_unref(r->db);
	explicit_bzero(r->pass, sizeof(r->pass));
	free(r);
}

int auth_verify(uv_loop_t *loop, struct auth_db *db, const char *user, const char *pass,
                auth_result_cb cb, void *arg)
{
	if (strlen(user) >= AUTH_FIELD_MAX || strlen(pass) >= AUTH_FIELD_MAX)
		return -EINVAL;
	struct auth_req *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->work.data = r;
	r->db = db;
	auth_db_ref(db);
	snprintf(r->user, sizeof(r->user), "%s", user);
	snprintf(r->pass, sizeof(r->pass), "%s", pass);
	r->cb = cb;
	r->arg = arg;
	int rc = uv_queue_work(loop, &r->work, auth_work, auth_after);
	if (rc < 0) {
		auth_db_unref(db);
		free(r);
	}
	return rc;
}
