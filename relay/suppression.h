/*
 * NAME
 *	suppression - the suppression list of invalid recipients (SPEC §6)
 * SUMMARY
 *	The store is chosen by db: a postgresql:// or postgres:// URI is a
 *	PostgreSQL database that several relays share (SPEC §6.6,
 *	suppression_pg.c); anything else is a file path: one SQLite
 *	database (suppression_sqlite.c, the embedded default). Both keep
 *	the same rows and answer the same calls; what follows says SQLite
 *	where the file matters.
 *
 *	One SQLite database, table "suppression", one row per address:
 *	the address as first given, the latest reason, enhanced status and
 *	response text, the source that listed it (delivery, dsn, admin,
 *	import), the first and last time it was seen (Unix milliseconds) and
 *	how often. The daemon and hikyakuctl use the file at the same time:
 *	it runs in WAL mode (readers never wait for the writer), every
 *	connection waits up to 5 s for a lock, and every write is one short
 *	transaction.
 *
 *	Addresses are compared case-insensitively for ASCII letters (the
 *	column is COLLATE NOCASE): "User@Example.COM" finds
 *	"user@example.com". Bytes beyond ASCII compare as given, so a
 *	non-ASCII local part or a U-label domain must be spelt the same way
 *	(and an U-label does not find its xn-- form).
 * DESCRIPTION
 *	supp_open() opens path, creating the file, its directory and the
 *	schema when missing, and brings an older schema up to date
 *	(PRAGMA user_version). supp_close() finalizes everything.
 *
 *	supp_lookup() tells whether address is listed and fills e (when
 *	not NULL) with copies the caller releases with supp_entry_free(). A
 *	string that supp_address_valid() refuses is never listed: lookup
 *	answers 0 for it.
 *
 *	supp_add() lists an address or, when already listed, counts it once
 *	more: count + 1, last seen = now_ms (never moving back), and each of
 *	reason, status and response replaced by the new value when that is
 *	not NULL or empty. The address and the source are kept as they were
 *	the first time: the source says how the address came on the list.
 *
 *	supp_remove() deletes an entry (any spelling of the address in
 *	ASCII case). It does not validate the address, so that an entry that
 *	a later, stricter check would refuse can still be removed.
 *
 *	supp_list() calls cb for every entry in address order, or for those
 *	whose address or reason contains search (ASCII case-insensitive;
 *	NULL or "" = all). The entry's strings are valid during the call
 *	only. cb returns 0 to go on, or a negative value to stop: supp_list()
 *	then returns that value. cb must not write through the same handle.
 *
 *	supp_import_csv() reads a CSV file (RFC 4180: quoted fields,
 *	doubled quotes, CRLF or LF, a UTF-8 byte order mark is skipped)
 *	whose first line names the columns. Names are compared ignoring
 *	case, blanks, '_' and '-'. Required: "address", "email" or
 *	"emailaddress". Optional: "reason", and the columns that
 *	supp_export_csv() writes ("status", "response", "source",
 *	"first_seen", "last_seen", "count"), and SES's "LastUpdateTime"
 *	(used for first/last seen when it parses as a time, ignored
 *	otherwise); times are read by clock_rfc3339_parse() (util/clock.h). Other columns are ignored; rows consisting only of empty
 *	fields are skipped. Every row is checked before anything is written,
 *	then all rows go in one transaction: a bad file imports nothing.
 *	A new address gets the row's values (source defaults to source,
 *	times to now_ms, count to 1); an address already listed is merged
 *	so that importing the same file twice changes nothing: earliest
 *	first seen, latest last seen, the larger count, and reason, status
 *	and response of whichever last seen is newer (the source stays). Returns the number of rows imported.
 *	supp_import_csv_cb() does the same and then, after the commit, calls
 *	on_new once for each address that was not listed before.
 *
 *	supp_export_csv() writes every entry, in address order, with the
 *	header "address,reason,status,response,source,first_seen,last_seen,
 *	count"; times are RFC 3339 UTC with milliseconds, so that importing
 *	the export gives back the same entries. Fields are quoted only when
 *	they need it; lines end in LF.
 *
 *	supp_data_version() returns a generation number that changes
 *	whenever the list changed, through this handle or any other
 *	connection, in this process or another (PRAGMA data_version, plus
 *	this handle's own commits). It costs no disk read: a cache compares
 *	it with the value it loaded at.
 *
 *	supp_address_valid() is the check supp_add() and the import apply:
 *	at most SUPP_ADDRESS_MAX bytes, valid UTF-8, no control character,
 *	a non-empty local part (dot-atom text, dots anywhere, as Japanese
 *	mobile addresses like "taro..x.@docomo.ne.jp" have them; or a quoted
 *	string) '@' and a domain (labels of letters, digits, '-', '_' or
 *	UTF-8, no empty label; or an address literal "[...]").
 *
 *	A handle is one connection: use it from one thread at a time.
 *
 *	supp_open_spool() is supp_open() for the daemon: with a PostgreSQL
 *	db and local_dir set, lookups read a local copy of the whole list
 *	(local_dir/suppression-pg.db, SQLite) that a thread keeps in step
 *	with the server (LISTEN/NOTIFY, and a full read after every
 *	reconnection); add, remove and the records of sent mail are written
 *	to that copy and to a journal in the same local transaction, and the
 *	thread writes the journal to the server, so no call waits on the
 *	server except supp_sent_find() for a record another relay made (at
 *	most a few seconds, and not at all while the server is known to be
 *	unreachable). Without local_dir (hikyakuctl) every call goes to the
 *	server and fails with -ENOTCONN or -ETIMEDOUT when it cannot be
 *	reached within a few seconds. With a SQLite path, local_dir is
 *	ignored.
 *
 *	supp_db_is_pg() tells whether db names PostgreSQL;
 *	supp_db_display() copies db without any password, for messages.
 *	supp_status_json() returns {"store": "sqlite"|"postgresql", "db":
 *	redacted, "reachable": bool, ...} for hikyakuctl status (s may be
 *	NULL when the open failed); it may be called from any thread.
 * DIAGNOSTICS
 *	Functions that return int return a negative errno on failure:
 *	-EINVAL a bad argument or address (for the import: a bad row, with
 *	*err_line and err set; *err_line is 0 for failures not tied to a
 *	line), -EBUSY the database stayed locked for 5 s, -ENOSPC, -EIO,
 *	-ENOMEM, -EACCES/-EROFS, -EBADMSG the file is not a suppression
 *	database or is damaged, -ENOTSUP it was written by a newer hikyaku,
 *	-ENOTCONN / -ETIMEDOUT the PostgreSQL server cannot be reached or did
 *	not answer in time.
 *	supp_strerror() turns these into a phrase for a message.
 * TOUCHES
 *	The database file, its -wal and -shm files, and its directory
 *	(created 0750; the file is created 0640); for PostgreSQL, the server
 *	and, in the daemon, local_dir/suppression-pg.db.
 */
#ifndef HK_RELAY_SUPPRESSION_H
#define HK_RELAY_SUPPRESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* RFC 5321 allows 64 + 1 + 255; leave room for what real mailers send. */
#define SUPP_ADDRESS_MAX 320

/* The schema version this code writes (PRAGMA user_version). */
#define SUPP_SCHEMA_VERSION 2

struct supp;

struct supp_entry {
	char *address;
	char *reason;           /* NULL when unknown */
	char *status;           /* enhanced status, "5.1.1"; NULL when none */
	char *response;         /* the reply or diagnostic text; NULL when none */
	char *source;           /* "delivery", "dsn", "admin", "import" */
	int64_t first_ms;       /* Unix time in milliseconds */
	int64_t last_ms;
	int64_t count;
};

int supp_open(const char *path, struct supp **out);
void supp_close(struct supp *s);
int supp_lookup(struct supp *s, const char *address, struct supp_entry *e);
int supp_add(struct supp *s, const char *address, const char *reason, const char *status,
             const char *response, const char *source, int64_t now_ms);
int supp_remove(struct supp *s, const char *address);
int supp_list(struct supp *s, const char *search,
              int (*cb)(void *arg, const struct supp_entry *e), void *arg);
void supp_entry_free(struct supp_entry *e);
int supp_import_csv(struct supp *s, FILE *in, const char *source, int64_t now_ms,
                    long *err_line, char *err, size_t errlen);
int supp_import_csv_cb(struct supp *s, FILE *in, const char *source, int64_t now_ms,
                       void (*on_new)(void *arg, const char *address), void *arg,
                       long *err_line, char *err, size_t errlen);
int supp_export_csv(struct supp *s, FILE *out);
int64_t supp_data_version(struct supp *s);

/*
 * What hikyaku sent through the delivery service, kept so that a bounce the
 * service sends later can be matched to its mail (SPEC §6): by the queue
 * id (VERP tag or Original-Envelope-Id) or by the service's own message id
 * from its 250 reply. supp_sent_add() records one recipient of one mail;
 * supp_sent_find() finds the record for rcpt by queue_id or service_id
 * (either may be NULL) and returns 1 with malloc'd copies of the original
 * envelope sender and queue id, 0 when nothing matches, <0 on error;
 * supp_sent_prune() forgets records older than before_ms.
 */
int supp_sent_add(struct supp *s, const char *queue_id, const char *rcpt, const char *sender,
                  const char *service_id, int64_t now_ms);
int supp_sent_find(struct supp *s, const char *queue_id, const char *service_id,
                   const char *rcpt, char **sender, char **qid);
int supp_sent_prune(struct supp *s, int64_t before_ms);
bool supp_address_valid(const char *address);

int supp_open_spool(const char *db, const char *local_dir, struct supp **out);
bool supp_db_is_pg(const char *db);
void supp_db_display(const char *db, char *out, size_t cap);
json_t *supp_status_json(struct supp *s, const char *db);
const char *supp_strerror(int rc);

#endif
