/*
 * settings - what a session needs from the configuration. See settings.h.
 */
#include "server/settings.h"

#include <stdio.h>
#include <stdlib.h>

#include "relay/dkim.h"
#include "server/auth.h"
#include "util/tls.h"

struct diag_ctx {
	char *err;
	size_t errlen;
};

static void settings_auth_diag(void *arg, const char *msg)
{
	struct diag_ctx *d = arg;
	if (!d->err[0])
		snprintf(d->err, d->errlen, "%s", msg);
}

struct settings *settings_new(struct config *cfg, char *err, size_t errlen)
{
	struct settings *set = calloc(1, sizeof(*set));
	if (!set) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	set->refs = 1;
	set->cfg = cfg;
	set->data_mem_max = SETTINGS_DATA_MEM_MAX;
	if (cfg->server.tls_cert && cfg->server.tls_key) {
		set->tls = tls_server_ctx_new(cfg->server.tls_cert, cfg->server.tls_key, err, errlen);
		if (!set->tls)
			goto fail;
	}
	if (cfg->server.auth_file) {
		err[0] = '\0';
		struct diag_ctx d = { err, errlen };
		set->auth = auth_db_load(cfg->server.auth_file, settings_auth_diag, &d);
		if (!set->auth)
			goto fail;
	}
	set->dkim = dkim_keys_load(cfg, err, errlen);
	if (!set->dkim)
		goto fail;
	return set;
fail:
	set->cfg = NULL; /* stays with the caller */
	settings_unref(set);
	return NULL;
}

void settings_ref(struct settings *set)
{
	set->refs++;
}

void settings_unref(struct settings *set)
{
	if (!set || --set->refs > 0)
		return;
	SSL_CTX_free(set->tls);
	auth_db_unref(set->auth);
	dkim_keys_unref(set->dkim);
	config_unref(set->cfg);
	free(set);
}
