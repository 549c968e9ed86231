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
	struct auth_req *next;     /* waiting for a slot */
	uv_loop_t *loop;
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

static void auth_db_ref(struct auth_db *db)
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
	/* An unknown user is checked against a real hash of the file (the
	 * first), so it costs exactly what a wrong password costs: the same
	 * algorithm, the same cost parameter ($6$rounds=, $2b$12$, $y$j9T),
	 * and the reply time tells nothing about which users exist. The
	 * check can never succeed: the user is not known. A file without
	 * users gets a default yescrypt dummy. */
	if (db->n) {
		db->dummy_hash = strdup(db->users[0].hash);
		return db;
	}
	char *setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
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

/*
 * At most AUTH_MAX_RUNNING checks on the thread pool at once; the others
 * wait here, in order. A password hash costs milliseconds of CPU on
 * purpose, and the pool also runs the queue's commits: clients trying
 * passwords (anyone who can connect) must never hold every pool thread
 * and make the shop's mails wait for their 250. One loop thread calls
 * this module, so plain statics suffice.
 */
static unsigned auth_running_n;
static struct auth_req *auth_wait_head;
static struct auth_req **auth_wait_tail = &auth_wait_head;
static size_t auth_waiting_n;

static void auth_after(uv_work_t *w, int status);

static int auth_submit(struct auth_req *r)
{
	int rc = uv_queue_work(r->loop, &r->work, auth_work, auth_after);
	if (rc == 0)
		auth_running_n++;
	return rc;
}

static void auth_req_free(struct auth_req *r)
{
	auth_db_unref(r->db);
	explicit_bzero(r->pass, sizeof(r->pass));
	free(r);
}

static void auth_after(uv_work_t *w, int status)
{
	struct auth_req *r = w->data;
	auth_running_n--;
	r->cb(r->arg, status == 0 && r->ok);
	auth_req_free(r);
	while (auth_wait_head && auth_running_n < AUTH_MAX_RUNNING) {
		struct auth_req *n = auth_wait_head;
		auth_wait_head = n->next;
		if (!auth_wait_head)
			auth_wait_tail = &auth_wait_head;
		auth_waiting_n--;
		n->next = NULL;
		if (auth_submit(n) < 0) {
			n->cb(n->arg, false);
			auth_req_free(n);
		}
	}
}

unsigned auth_running(void)
{
	return auth_running_n;
}

size_t auth_waiting(void)
{
	return auth_waiting_n;
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
	r->loop = loop;
	if (auth_running_n >= AUTH_MAX_RUNNING) {
		*auth_wait_tail = r;
		auth_wait_tail = &r->next;
		auth_waiting_n++;
		return 0;
	}
	int rc = auth_submit(r);
	if (rc < 0)
		auth_req_free(r);
	return rc;
}
