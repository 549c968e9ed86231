/*
 * NAME
 *	hikyaku-sendmail - the sendmail(1) interface of hikyaku (SPEC §10)
 * SUMMARY
 *	hikyaku-sendmail [-c FILE] [-t] [-i] [-f ADDR] [-F NAME] [ADDR ...]
 *
 *	Reads one message on standard input and submits it over SMTP to the
 *	first listener of the configuration, so that the daemon queues it
 *	durably like any mail from the shop's SMTP client. This is what
 *	PHP's mail() (sendmail_path), cron and most shop software run.
 * DESCRIPTION
 *	The input is read before connecting: the header (at most HDR_MAX
 *	bytes) in memory, the body converted to DATA bytes (sm_body: CRLF,
 *	dot-stuffing, the lone-dot end without -i) into a memory buffer of
 *	SPOOL_MEM bytes and, beyond it, an unlinked temporary file in
 *	$TMPDIR (else /tmp). A slow writer (cron pipes a job's output as it
 *	comes) therefore never holds a connection open, and memory stays
 *	bounded whatever the message size. Where no temporary file can be
 *	made, the message is streamed to the daemon as it is read.
 *
 *	The configuration gives the listener and the host name: -c FILE,
 *	else $HIKYAKU_CONFIG, else /etc/hikyaku/hikyaku.conf (config_load).
 *	A user such as PHP-FPM's may be unable to read files that the
 *	configuration names (keys, passwords): then only [server] listen
 *	and hostname are read from it; when the file itself cannot be read,
 *	the default listener 127.0.0.1:2525 is tried (see hikyaku-sendmail(8)).
 * DIAGNOSTICS
 *	Exit status as sysexits(3), with one sentence on stderr: 0 queued,
 *	64 usage, 65 the message was refused (5xx at MAIL, DATA or after
 *	it), 67 a recipient was refused (5xx at RCPT), 75 the daemon is
 *	unreachable or answered 4xx (try again later), 78 no listener in
 *	the configuration, 74 standard input could not be read. Whenever the
 *	status is not 0, nothing was queued (but see the note on a reply
 *	lost after the final dot in hikyaku-sendmail(8)).
 * TOUCHES
 *	Reads the configuration file and standard input; writes a temporary
 *	file (unlinked) for messages over SPOOL_MEM; one TCP connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <gmime/gmime.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "config/config.h"
#include "config/ini_reader.h"
#include "sendmail/sm_body.h"
#include "sendmail/sm_header.h"
#include "sendmail/sm_smtp.h"

#define PROG "hikyaku-sendmail"
#define HDR_MAX ((size_t)1 << 20)        /* bytes of header read into memory */
#define SPOOL_MEM ((size_t)1 << 20)      /* DATA bytes kept in memory, then a file */
#define BLOCK 65536                      /* bytes read or sent at once */
#define DEFAULT_HOST "127.0.0.1"         /* SPEC §3: listen's default */
#define DEFAULT_PORT 2525
#define ADDR_MAX 512                     /* bytes of an envelope address (RFC 5321: 256) */

/* Timeouts (hikyaku-sendmail(8), TIMEOUTS). */
#define CONNECT_TIMEOUT_MS 10000
#define REPLY_TIMEOUT_MS 120000
#define WRITE_TIMEOUT_MS 120000
#define DOT_TIMEOUT_MS 600000            /* RFC 5321 §4.5.3.2.6 */
#define QUIT_TIMEOUT_MS 2000

struct opts {
	const char *config;
	bool extract;                    /* -t */
	bool dot_ends;                   /* no -i */
	bool from_given;                 /* -f */
	char *env_from;                  /* -f's address; "" the null sender */
	const char *full_name;           /* -F */
	GPtrArray *args;                 /* recipient arguments (argv strings) */
};

struct target {
	char host[64];
	uint16_t port;
	char *hostname;                  /* g_free */
	char note[400];                  /* why the default listener is used, or "" */
};

/* The whole state of one submission. */
struct job {
	struct opts o;
	struct target t;
	char *sender;                    /* envelope sender ("" null) */
	GPtrArray *rcpts;                /* char *, g_free */
	struct sm_header_result h;
	enum sm_hdr_end hdr_end;
	bool eight_bit;
	/* the DATA bytes of the body */
	char *mem;
	size_t mem_len;
	int spool_fd;                    /* -1: none */
	uint64_t spool_len;
	bool complete;                   /* all of the input is in mem/spool */
	bool direct;                     /* streaming to the daemon as read */
	struct sm_smtp s;
	bool connected;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *fp)
{
	fprintf(fp, "usage: " PROG " [-c FILE] [-t] [-i] [-f ADDR] [-F NAME] [ADDR ...]\n"
	            "  -c FILE  the hikyaku configuration (default: $HIKYAKU_CONFIG, else %s)\n"
	            "  -t       recipients from To:, Cc: and Bcc: (added to ADDR ...)\n"
	            "  -i, -oi  a line with a single dot does not end the message\n"
	            "  -f ADDR  envelope sender ('' or '<>': the null sender)\n"
	            "  -F NAME  display name of the From: added when the message has none\n"
	            "Accepted and ignored: -v -m -n -U -G -bm -oXXX -eX -BTYPE -NDSN -RRET -VENVID -hN -LLABEL -OOPT=VAL -Ac -Am -dX\n",
	        "/etc/hikyaku/hikyaku.conf");
}

/* ---- options ------------------------------------------------------------ */

/* No control characters, blanks or angle brackets: what goes between < > on one line. */
static bool addr_ok(const char *a)
{
	size_t n = strlen(a);

	if (n == 0 || n > ADDR_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
			return false;
		if (c == ' ' && a[0] != '"')
			return false; /* a blank only inside a quoted local part */
	}
	return true;
}

static bool is_ascii(const char *a)
{
	for (; *a; a++)
		if ((unsigned char)*a >= 0x80)
			return false;
	return true;
}

static int set_from(struct opts *o, const char *v)
{
	size_t n = strlen(v);

	if (n >= 2 && v[0] == '<' && v[n - 1] == '>') {
		v++;
		n -= 2;
	}
	g_free(o->env_from);
	o->env_from = g_strndup(v, n);
	o->from_given = true;
	if (n > 0 && !addr_ok(o->env_from)) {
		say("-f \"%s\" is not an address; nothing was sent", v);
		return EX_USAGE;
	}
	return 0;
}

/* -bX: only -bm (deliver a message, the default) is what this program does. */
static int mode_option(const char *v)
{
	if (strcmp(v, "m") == 0)
		return 0;
	if (strcmp(v, "p") == 0)
		say("-bp is not supported: list the queue with \"hikyakuctl queue list\"");
	else if (strcmp(v, "s") == 0)
		say("-bs is not supported: speak SMTP to the hikyaku listener itself");
	else
		say("-b%s is not supported: " PROG " only submits one message (-bm)", v);
	return EX_USAGE;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	bool options = true;

	o->dot_ends = true;
	o->args = g_ptr_array_new();
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!options || a[0] != '-' || a[1] == '\0') {
			g_ptr_array_add(o->args, (char *)a);
			continue;
		}
		if (strcmp(a, "--") == 0) {
			options = false;
			continue;
		}
		if (strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(a, "--version") == 0) {
			printf(PROG " (hikyaku) %s\n", HIKYAKU_VERSION);
			exit(0);
		}
		/* Flags may be bundled (-ti); a flag with a value takes the rest
		 * of the word or the next one (-fADDR, -f ADDR), as getopt(3). */
		for (const char *p = a + 1; *p; p++) {
			char f = *p;
			if (strchr("timnvUG", f)) {
				if (f == 't')
					o->extract = true;
				else if (f == 'i')
					o->dot_ends = false;
				continue; /* -m -n -v -U -G: nothing to do */
			}
			if (!strchr("cfrFoBNRVhLOAdebqC", f)) {
				say("unknown option -%c (see " PROG "(8)); nothing was sent", f);
				return EX_USAGE;
			}
			const char *v = p + 1;
			if (*v == '\0') {
				if (i + 1 >= argc) {
					say("option -%c needs a value; nothing was sent", f);
					return EX_USAGE;
				}
				v = argv[++i];
			}
			int rc = 0;
			switch (f) {
			case 'c':
				o->config = v;
				break;
			case 'f':
			case 'r': /* sendmail's old name of -f */
				rc = set_from(o, v);
				break;
			case 'F':
				o->full_name = v;
				break;
			case 'o':
				if (strcmp(v, "i") == 0)
					o->dot_ends = false;
				break; /* -odi -odb -oem -oep -oXXX: ignored */
			case 'b':
				rc = mode_option(v);
				break;
			case 'q':
				say("-q%s is not supported: the daemon runs its queue itself "
				    "(\"hikyakuctl queue\" shows it)", v);
				rc = EX_USAGE;
				break;
			case 'C':
				say("-C is not supported: give hikyaku's configuration file with -c FILE");
				rc = EX_USAGE;
				break;
			default:
				break; /* -B -N -R -V -h -L -O -A -d -e: ignored */
			}
			if (rc)
				return rc;
			break; /* the value took the rest of the word */
		}
	}
	return 0;
}

/* ---- configuration ------------------------------------------------------ */

/* "127.0.0.1:2525", "[::1]:2525" -> host and port; 0 or -1. */
static int listen_parse(const char *e, struct target *t)
{
	char h[64];
	const char *port;

	if (e[0] == '[') {
		const char *rb = strchr(e, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - e - 1) >= sizeof(h))
			return -1;
		memcpy(h, e + 1, (size_t)(rb - e - 1));
		h[rb - e - 1] = '\0';
		port = rb + 2;
	} else {
		const char *colon = strrchr(e, ':');
		if (!colon || (size_t)(colon - e) >= sizeof(h))
			return -1;
		memcpy(h, e, (size_t)(colon - e));
		h[colon - e] = '\0';
		port = colon + 1;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	if (getaddrinfo(h, port, &hints, &ai) != 0)
		return -1;
	freeaddrinfo(ai);
	char *end;
	unsigned long p = strtoul(port, &end, 10);
	if (*end || p == 0 || p > 65535)
		return -1;
	/* A wildcard listener is reached on loopback. */
	if (strcmp(h, "0.0.0.0") == 0)
		strcpy(h, "127.0.0.1");
	else if (strcmp(h, "::") == 0)
		strcpy(h, "::1");
	strcpy(t->host, h);
	t->port = (uint16_t)p;
	return 0;
}

/* What the minimal reading of a configuration found. */
struct scan {
	struct ini_reader rd;
	char *listen;                    /* the first entry */
	char *hostname;
	bool in_listen;
};

static void scan_error(void *arg, int line, const char *msg)
{
	(void)arg, (void)line, (void)msg;
}

static void scan_section(void *arg, int line, const char *name)
{
	(void)arg, (void)line, (void)name;
}

static int scan_key(void *user, const char *section, const char *name, const char *value)
{
	struct scan *sc = user;

	if (strcmp(section, "server") != 0)
		return 1;
	if (strcmp(name, "listen") == 0 && !sc->listen) {
		/* The first entry of a comma/continuation list. */
		char **v = g_strsplit(value, ",", -1);
		for (char **e = v; *e && !sc->listen; e++) {
			char *x = g_strstrip(*e);
			if (*x)
				sc->listen = g_strdup(x);
		}
		g_strfreev(v);
	} else if (strcmp(name, "hostname") == 0 && !sc->hostname && !sc->rd.continuation) {
		char *x = g_strstrip(g_strdup(value));
		if (*x)
			sc->hostname = x;
		else
			g_free(x);
	}
	return 1;
}

static char *local_hostname(void)
{
	char h[HOST_NAME_MAX + 1] = "";

	if (gethostname(h, sizeof(h)) < 0 || !h[0])
		return g_strdup("localhost");
	h[sizeof(h) - 1] = '\0';
	return g_strdup(h);
}

static int load_target(const char *path, struct target *t)
{
	struct config *cfg = NULL;
	struct config_diags d = { 0 };

	if (config_load(path, &cfg, &d) == 0) {
		config_diags_free(&d);
		const struct config_listen *l = &cfg->server.listen[0];
		char e[80];
		snprintf(e, sizeof(e), strchr(l->host, ':') ? "[%s]:%u" : "%s:%u", l->host, l->port);
		int rc = listen_parse(e, t);
		t->hostname = g_strdup(cfg->server.hostname);
		config_free(cfg);
		if (rc < 0) {
			say("%s: [server] listen \"%s\" cannot be used", path, e);
			return EX_CONFIG;
		}
		return 0;
	}

	/* The file cannot be read: the listener's default. */
	FILE *fp = fopen(path, "re");
	if (!fp) {
		int err = errno;
		snprintf(t->note, sizeof(t->note), " (%s cannot be read: %s, so the default "
		         "listener was tried)", path, strerror(err));
		config_diags_free(&d);
		strcpy(t->host, DEFAULT_HOST);
		t->port = DEFAULT_PORT;
		t->hostname = local_hostname();
		return 0;
	}
	/* Readable, with errors (for this user, most often a key or password
	 * file that only the daemon may read): [server] listen and hostname
	 * are all that is needed. */
	struct scan sc = { 0 };
	ini_reader_init(&sc.rd, fp, scan_error, scan_section, &sc);
	ini_parse_stream(ini_reader_gets, &sc.rd, scan_key, &sc);
	fclose(fp);
	int rc = 0;
	if (sc.listen && listen_parse(sc.listen, t) < 0) {
		say("%s", d.n ? d.v[0].text : "the configuration has errors");
		rc = EX_CONFIG;
	} else if (!sc.listen) {
		strcpy(t->host, DEFAULT_HOST);
		t->port = DEFAULT_PORT;
	}
	if (rc == 0) {
		snprintf(t->note, sizeof(t->note), " (%s has errors for this user, e.g. \"%s\"; "
		         "only its [server] listen, or the default, was used)", path, d.n ? d.v[0].text : "?");
		t->hostname = sc.hostname ? g_strdup(sc.hostname) : local_hostname();
	}
	g_free(sc.listen);
	g_free(sc.hostname);
	config_diags_free(&d);
	return rc;
}

/* ---- input -------------------------------------------------------------- */

static ssize_t read_in(char *p, size_t n)
{
	for (;;) {
		ssize_t r = read(STDIN_FILENO, p, n);
		if (r >= 0 || errno != EINTR)
			return r;
	}
}

/* After an error, the caller's pipe is read to its end, so that it does
 * not die of SIGPIPE before it can see the exit status. */
static void drain_input(void)
{
	char b[BLOCK];

	if (isatty(STDIN_FILENO))
		return;
	while (read_in(b, sizeof(b)) > 0)
		;
}

static int open_tmp(void)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	char *path = g_build_filename(dir, PROG ".XXXXXX", NULL);
	fd = g_mkstemp_full(path, O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		unlink(path);
	g_free(path);
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
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

/* ---- the SMTP transaction ----------------------------------------------- */

/* One sentence for a reply or a failure without one. */
static void reply_text(const struct smtp_reply *r, char *out, size_t n)
{
	if (r->code && r->status[0])
		snprintf(out, n, "%d %s %s", r->code, r->status, r->text);
	else if (r->code)
		snprintf(out, n, "%d %s", r->code, r->text);
	else
		snprintf(out, n, "%s", r->text);
}

static int fail_tempo(struct job *j, const char *what, const struct smtp_reply *r)
{
	char t[600];

	reply_text(r, t, sizeof(t));
	say("%s hikyaku at %s%s%s:%u: %s%s; the message was not queued, try again later",
	    what, strchr(j->t.host, ':') ? "[" : "", j->t.host, strchr(j->t.host, ':') ? "]" : "",
	    j->t.port, t, r->code ? "" : j->t.note);
	return EX_TEMPFAIL;
}

static void quit(struct job *j)
{
	struct smtp_reply r;

	if (!j->connected)
		return;
	sm_smtp_cmd(&j->s, "QUIT", QUIT_TIMEOUT_MS, &r);
	sm_smtp_close(&j->s);
	j->connected = false;
}

/* A reply that is not the one hoped for: the exit status and its sentence. */
static int refused(struct job *j, const char *step, const char *rcpt, const struct smtp_reply *r)
{
	char t[600];

	if (r->code == 0 || r->code < 500) {
		quit(j);
		return fail_tempo(j, r->code == 0        ? "no answer from"
		                     : r->code / 100 == 4 ? "a temporary refusal from"
		                                          : "an unexpected reply from", r);
	}
	reply_text(r, t, sizeof(t));
	quit(j);
	if (rcpt) {
		say("the recipient %s was refused: %s; nothing was sent", rcpt, t);
		return EX_NOUSER;
	}
	say("the message was refused at %s: %s; it was not queued", step, t);
	return EX_DATAERR;
}

static bool needs_smtputf8(const struct job *j)
{
	if (!is_ascii(j->sender))
		return true;
	for (guint i = 0; i < j->rcpts->len; i++)
		if (!is_ascii(g_ptr_array_index(j->rcpts, i)))
			return true;
	return false;
}

/* Connect, EHLO, MAIL, RCPT..., DATA; then the header. 0 or an exit status. */
static int smtp_open(struct job *j)
{
	struct smtp_reply r;
	char line[ADDR_MAX + 64];

	if (sm_smtp_connect(&j->s, j->t.host, j->t.port, CONNECT_TIMEOUT_MS, &r) < 0)
		return fail_tempo(j, "cannot reach", &r);
	j->connected = true;
	if (sm_smtp_reply(&j->s, REPLY_TIMEOUT_MS, false, &r) < 0 || r.code != 220)
		return refused(j, "the greeting", NULL, &r);
	/* RFC 5321 §4.1.1.1: the client's name; "localhost" is what a local
	 * program is, and the daemon takes it (SPEC §5). */
	if (sm_smtp_cmd(&j->s, "EHLO localhost", REPLY_TIMEOUT_MS, &r) < 0 || r.code != 250)
		return refused(j, "EHLO", NULL, &r);

	int n = snprintf(line, sizeof(line), "MAIL FROM:<%s>", j->sender);
	/* BODY=8BITMIME (RFC 6152) when the message has 8-bit bytes, or
	 * when streaming (the body is not known yet: declaring 8BITMIME for
	 * a 7-bit message is allowed). SIZE (RFC 1870) when known. */
	if (j->s.ext_8bitmime && (j->eight_bit || !j->complete))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " BODY=8BITMIME");
	if (j->s.ext_smtputf8 && needs_smtputf8(j))
		n += snprintf(line + n, sizeof(line) - (size_t)n, " SMTPUTF8");
	if (j->s.ext_size && j->complete)
		snprintf(line + n, sizeof(line) - (size_t)n, " SIZE=%llu",
		         (unsigned long long)(j->h.out->len + 2 + j->mem_len + j->spool_len));
	if (sm_smtp_cmd(&j->s, line, REPLY_TIMEOUT_MS, &r) < 0 || r.code / 100 != 2)
		return refused(j, "MAIL", NULL, &r);
	/* One at a time: a refused recipient stops the transaction, so that
	 * a status other than 0 always means nothing was queued. */
	for (guint i = 0; i < j->rcpts->len; i++) {
		const char *a = g_ptr_array_index(j->rcpts, i);
		snprintf(line, sizeof(line), "RCPT TO:<%s>", a);
		if (sm_smtp_cmd(&j->s, line, REPLY_TIMEOUT_MS, &r) < 0 || r.code / 100 != 2)
			return refused(j, "RCPT", r.code >= 500 ? a : NULL, &r);
	}
	if (sm_smtp_cmd(&j->s, "DATA", REPLY_TIMEOUT_MS, &r) < 0 || r.code != 354)
		return refused(j, "DATA", NULL, &r);
	/* A reply already behind the 354 answers a message not yet sent. */
	if (j->s.in_len > 0) {
		snprintf(r.text, sizeof(r.text), "protocol error: a reply before the message was sent");
		r.code = 0;
		r.status[0] = '\0';
		return refused(j, "DATA", NULL, &r);
	}
	if (sm_smtp_write(&j->s, j->h.out->str, j->h.out->len, WRITE_TIMEOUT_MS, &r) < 0 ||
	    (j->hdr_end == SM_HDR_BODY && sm_smtp_write(&j->s, "\r\n", 2, WRITE_TIMEOUT_MS, &r) < 0))
		return refused(j, "DATA", NULL, &r);
	return 0;
}

/* A send failed inside DATA: the daemon may have said why before closing. */
static int data_failed(struct job *j, const struct smtp_reply *wr)
{
	struct smtp_reply r;

	if (sm_smtp_reply(&j->s, QUIT_TIMEOUT_MS, false, &r) == 0)
		return refused(j, "DATA", NULL, &r);
	return refused(j, "DATA", NULL, wr);
}

static int data_send(struct job *j, const char *p, size_t n)
{
	struct smtp_reply r;

	if (sm_smtp_write(&j->s, p, n, WRITE_TIMEOUT_MS, &r) < 0)
		return data_failed(j, &r);
	return 0;
}

/* Sends the DATA bytes kept in memory and in the temporary file. */
static int send_kept(struct job *j)
{
	int rc;

	if (j->mem_len && (rc = data_send(j, j->mem, j->mem_len)))
		return rc;
	j->mem_len = 0;
	if (j->spool_fd < 0)
		return 0;
	char b[BLOCK];
	off_t off = 0;
	ssize_t got;
	while ((got = pread(j->spool_fd, b, sizeof(b), off)) > 0) {
		off += got;
		if ((rc = data_send(j, b, (size_t)got)))
			return rc;
	}
	if (got < 0) {
		say("cannot read the temporary file: %s; the message was not queued", strerror(errno));
		quit(j);
		return EX_IOERR;
	}
	close(j->spool_fd);
	j->spool_fd = -1;
	j->spool_len = 0;
	return 0;
}

/* From spooling to streaming: open the transaction, send what is kept. */
static int go_direct(struct job *j)
{
	int rc = smtp_open(j);

	if (rc || (rc = send_kept(j)))
		return rc;
	j->direct = true;
	return 0;
}

/* DATA bytes of the body: kept in memory, then in the file, else sent. */
static int body_out(struct job *j, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (j->direct)
		return data_send(j, p, n);
	if (j->spool_fd < 0 && j->mem_len + n <= SPOOL_MEM) {
		memcpy(j->mem + j->mem_len, p, n);
		j->mem_len += n;
		return 0;
	}
	if (j->spool_fd < 0) {
		j->spool_fd = open_tmp();
		if (j->spool_fd >= 0 && write_all(j->spool_fd, j->mem, j->mem_len) == 0) {
			j->spool_len = j->mem_len;
			j->mem_len = 0;
		} else if (j->spool_fd >= 0) {
			close(j->spool_fd);
			j->spool_fd = -1;
		}
	}
	if (j->spool_fd >= 0) {
		if (write_all(j->spool_fd, p, n) == 0) {
			j->spool_len += n;
			return 0;
		}
		/* A full disk: stream what is there and the rest. */
	}
	int rc = go_direct(j);
	return rc ? rc : data_send(j, p, n);
}

/* The final dot and its reply. */
static int finish(struct job *j)
{
	struct smtp_reply r;
	int rc;

	if (!j->direct && ((rc = smtp_open(j)) || (rc = send_kept(j))))
		return rc;
	if ((rc = data_send(j, ".\r\n", 3)))
		return rc;
	if (sm_smtp_reply(&j->s, DOT_TIMEOUT_MS, false, &r) < 0) {
		char t[600];
		reply_text(&r, t, sizeof(t));
		say("no reply from hikyaku after the message was sent (%s): it may or may not "
		    "have been queued; see \"hikyakuctl log\"", t);
		sm_smtp_close(&j->s);
		j->connected = false;
		return EX_TEMPFAIL;
	}
	if (r.code / 100 != 2)
		return refused(j, "the end of DATA", NULL, &r);
	quit(j);
	return 0;
}

/* ---- main --------------------------------------------------------------- */

static char *user_name(void)
{
	struct passwd *pw = getpwuid(getuid());

	if (pw && pw->pw_name && *pw->pw_name)
		return g_strdup(pw->pw_name);
	return g_strdup_printf("uid%lu", (unsigned long)getuid());
}

static bool have_rcpt(GPtrArray *v, const char *a)
{
	for (guint i = 0; i < v->len; i++)
		if (g_ascii_strcasecmp(g_ptr_array_index(v, i), a) == 0)
			return true;
	return false;
}

/* Reads the header; 0, or an exit status. */
static int read_header(struct job *j, char *buf, size_t *len, size_t *hdr_len)
{
	bool eof = false;

	*len = 0;
	for (;;) {
		j->hdr_end = sm_header_scan(buf, *len, eof, HDR_MAX, hdr_len);
		if (j->hdr_end == SM_HDR_TOO_BIG) {
			say("the message header is longer than %zu bytes; nothing was sent", HDR_MAX);
			drain_input();
			return EX_DATAERR;
		}
		if (j->hdr_end != SM_HDR_MORE)
			return 0;
		ssize_t got = read_in(buf + *len, HDR_MAX - *len);
		if (got < 0) {
			say("cannot read the message on standard input: %s; nothing was sent",
			    strerror(errno));
			return EX_IOERR;
		}
		if (got == 0)
			eof = true;
		*len += (size_t)got;
	}
}

static int run(struct job *j)
{
	int rc;
	const char *path = j->o.config ? j->o.config : config_default_path();

	if (!j->o.extract && j->o.args->len == 0) {
		say("no recipients: give addresses as arguments, or -t to take them from To:, "
		    "Cc: and Bcc:; nothing was sent");
		return EX_USAGE;
	}
	for (guint i = 0; i < j->o.args->len; i++) {
		const char *a = g_ptr_array_index(j->o.args, i);
		if (sm_addrs_add(a, j->rcpts) <= 0) {
			say("\"%s\" is not an address; nothing was sent", a);
			return EX_USAGE;
		}
	}
	for (guint i = 0; i < j->rcpts->len; i++) {
		if (!addr_ok(g_ptr_array_index(j->rcpts, i))) {
			say("\"%s\" is not an address; nothing was sent",
			    (char *)g_ptr_array_index(j->rcpts, i));
			return EX_USAGE;
		}
	}
	if ((rc = load_target(path, &j->t)))
		return rc;

	char *buf = g_malloc(HDR_MAX);
	size_t len = 0, hdr_len = 0;
	if ((rc = read_header(j, buf, &len, &hdr_len))) {
		g_free(buf);
		return rc;
	}

	/* The envelope sender: -f, else From:'s address, else USER@HOSTNAME. */
	char *user = user_name();
	char *local = g_strdup_printf("%s@%s", user, j->t.hostname);
	g_free(user);
	struct sm_header_opts ho = {
		.extract = j->o.extract,
		.full_name = j->o.full_name,
		.from_addr = j->o.from_given && *j->o.env_from ? j->o.env_from : local,
	};
	if (sm_header_process(buf, hdr_len, &ho, &j->h) < 0) {
		say("%s; nothing was sent", j->h.error);
		g_free(local);
		g_free(buf);
		drain_input();
		return EX_DATAERR;
	}
	if (j->o.from_given)
		j->sender = g_strdup(j->o.env_from);
	else if (j->h.from_addr && addr_ok(j->h.from_addr))
		j->sender = g_strdup(j->h.from_addr);
	else
		j->sender = g_strdup(local);
	g_free(local);
	j->eight_bit = j->h.eight_bit;

	rc = 0;
	for (guint i = 0; i < j->h.rcpts->len && !rc; i++) {
		char *a = g_ptr_array_index(j->h.rcpts, i);
		if (!addr_ok(a)) {
			say("the header names \"%s\", which is not an address; nothing was sent", a);
			rc = EX_DATAERR;
		} else if (!have_rcpt(j->rcpts, a)) {
			g_ptr_array_add(j->rcpts, g_strdup(a));
		}
	}
	if (!rc && j->rcpts->len == 0) {
		say("no recipients: the header has no To:, Cc: or Bcc: address; nothing was sent");
		rc = EX_DATAERR;
	}
	if (rc) {
		g_free(buf);
		drain_input();
		return rc;
	}

	/* The body: what was read past the header, then the rest of stdin. */
	struct sm_body b;
	char *out = g_malloc(SM_BODY_OUT_MAX(BLOCK));
	sm_body_init(&b, j->o.dot_ends);
	j->mem = g_malloc(SPOOL_MEM);
	size_t pos = hdr_len;
	bool eof = j->hdr_end == SM_HDR_EOF;
	while (!rc && !b.ended) {
		if (pos == len) {
			if (eof)
				break;
			ssize_t got = read_in(buf, BLOCK);
			if (got < 0) {
				say("cannot read the message on standard input: %s; nothing was sent",
				    strerror(errno));
				rc = EX_IOERR;
				break;
			}
			if (got == 0) {
				eof = true;
				continue;
			}
			pos = 0;
			len = (size_t)got;
		}
		size_t take = len - pos > BLOCK ? BLOCK : len - pos;
		size_t o = sm_body_feed(&b, buf + pos, take, out);
		pos += take;
		rc = body_out(j, out, o);
	}
	if (!rc) {
		size_t o = sm_body_finish(&b, out);
		rc = body_out(j, out, o);
	}
	j->eight_bit |= b.eight_bit;
	j->complete = true;
	g_free(out);
	g_free(buf);
	if (!rc)
		rc = finish(j);
	else if (rc != EX_IOERR)
		drain_input();
	return rc;
}

int main(int argc, char **argv)
{
	struct job j = { .spool_fd = -1 };
	int rc;

	signal(SIGPIPE, SIG_IGN);
	j.s.fd = -1;
	if ((rc = parse_args(argc, argv, &j.o))) {
		g_ptr_array_unref(j.o.args);
		g_free(j.o.env_from);
		return rc;
	}
	g_mime_init();
	j.rcpts = g_ptr_array_new_with_free_func(g_free);
	rc = run(&j);
	quit(&j);
	if (j.spool_fd >= 0)
		close(j.spool_fd);
	g_free(j.mem);
	g_free(j.sender);
	g_free(j.t.hostname);
	sm_header_result_free(&j.h);
	g_ptr_array_unref(j.rcpts);
	g_ptr_array_unref(j.o.args);
	g_free(j.o.env_from);
	g_mime_shutdown();
	return rc;
}
