/*
 * dsn - delivery status notifications (RFC 3464, RFC 6522). See dsn.h.
 *
 * The message is formatted here rather than through GMime's object
 * model: its shape is fixed, every byte of it is ours to choose, and the
 * promises of dsn.h (CRLF only, no line over 998 octets, no boundary
 * inside a part) are easier to keep and to see kept when nothing between
 * us and the buffer re-folds or re-encodes. GMime only decodes the
 * original Subject for the readable part. The tests parse the result
 * back with GMime.
 *
 * Parts (RFC 6522 §3): a readable text/plain; the machine-readable
 * status; the original header section (optional, RFC 3464 §2, so left
 * out when there is none). When a status field must carry UTF-8 (an
 * internationalised recipient address or server reply), the status part
 * is message/global-delivery-status and the report-type follows it
 * (RFC 6533 §6.1, §6.2): "utf-8;" addresses in raw UTF-8 are allowed
 * there only. Header sections with UTF-8 are message/global-headers
 * (RFC 6533 §6.3).
 */
#include "relay/dsn.h"

#include <errno.h>
#include <inttypes.h>
#include <gmime/gmime.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/smtp_header.h"   /* smtp_date_format() */

/* RFC 5322 §2.1.1: lines SHOULD be at most 78 characters, MUST be 998. */
#define DSN_FOLD 78
#define DSN_LINE_MAX 998
/* Readable text is wrapped here (code points, not bytes). */
#define DSN_WRAP 76
/* The Subject quoted in the readable part is cut after this many code points. */
#define DSN_SUBJECT_MAX 200

static pthread_once_t dsn_once = PTHREAD_ONCE_INIT;

static void dsn_init_once(void)
{
	g_mime_init();
}

/* ------------------------------------------------------------------ */
/* A writer that latches its first error                              */
/* ------------------------------------------------------------------ */

struct w {
	buf_t *b;
	int err;
};

static void put(struct w *w, const void *p, size_t n)
{
	if (!w->err)
		w->err = buf_append(w->b, p, n);
}

static void puts_(struct w *w, const char *s)
{
	put(w, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) putf(struct w *w, const char *fmt, ...)
{
	va_list ap;
	char small[512];

	if (w->err)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		w->err = -EINVAL;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		put(w, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		w->err = -ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	put(w, big, (size_t)n);
	free(big);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static bool has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

static bool str_8bit(const char *s)
{
	return s && has_8bit(s, strlen(s));
}

/* The next character of UTF-8 text (a stray byte counts as one). */
static const char *next_char(const char *s)
{
	s++;
	while (((unsigned char)*s & 0xc0) == 0x80)
		s++;
	return s;
}

/*
 * A copy of s fit for one header field or text line: every control
 * character (CR and LF of a multi-line reply included) becomes a space,
 * runs of blanks become one, and the ends are trimmed.
 */
static char *one_line(const char *s)
{
	size_t n = s ? strlen(s) : 0, k = 0;
	char *r = malloc(n + 1);

	if (!r)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			c = ' ';
		if (c == ' ' && (k == 0 || r[k - 1] == ' '))
			continue;
		r[k++] = (char)c;
	}
	while (k && r[k - 1] == ' ')
		k--;
	r[k] = '\0';
	return r;
}

/* RFC 5322 §3.3 date-time, local time with its numeric offset. */
static void rfc5322_date(char out[64], uint64_t ms)
{
	smtp_date_format(out, 64, (time_t)(ms / 1000));
}

/* status-code = class "." subject "." detail (RFC 3463 §2). */
static bool status_valid(const char *s)
{
	if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		int digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4) {
			s++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return false;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static const char *action_of(const struct dsn_rcpt *r)
{
	static const char *const known[] = { "failed", "delayed", "delivered", "relayed",
	                                     "expanded" };

	for (size_t i = 0; r->action && i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(r->action, known[i]) == 0)
			return known[i];
	return "failed";
}

static const char *status_of(const struct dsn_rcpt *r)
{
	if (status_valid(r->status))
		return r->status;
	return strcmp(action_of(r), "delayed") == 0 ? "4.0.0" : "5.0.0";
}

/* The diagnostic-type (RFC 3464 §2.3.6: an atom, e.g. "smtp", "X-Postfix"). */
static const char *diag_type_of(const struct dsn_rcpt *r)
{
	const char *t = r->diagnostic_type;
	if (!t || !*t || strlen(t) > 32)
		return "smtp";
	for (const char *p = t; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '-')
			return "smtp";
	return t;
}

/*
 * The host name of a Remote-MTA. The runner knows the server as
 * "host[ip]:port"; RFC 3464 §2.3.5 wants "dns; host". With keep_ip the
 * "[ip]" stays (for the readable part). NULL when there is no name.
 */
static char *remote_host(const char *remote, bool keep_ip)
{
	char *s = one_line(remote);
	if (!s)
		return NULL;
	char *br = strchr(s, '[');
	if (br == s) {
		char *end = strchr(s, ']');
		if (end)
			end[1] = '\0';
	} else if (br) {
		char *end = strchr(br, ']');
		if (keep_ip && end)
			end[1] = '\0';
		else
			*br = '\0';
	} else {
		char *colon = strrchr(s, ':');
		if (colon && colon == strchr(s, ':'))   /* host:port, not bare IPv6 */
			*colon = '\0';
	}
	char *sp = strchr(s, ' ');
	if (sp)
		*sp = '\0';
	if (!*s) {
		free(s);
		return NULL;
	}
	return s;
}

/*
 * Writes "Name: value" CRLF, folded (RFC 5322 §2.2.3) before a space so
 * that lines stay near 78 octets. A run without spaces longer than the
 * 998-octet limit is cut at a character boundary, with a space inserted:
 * the only change folding ever makes to a value.
 */
static void put_field(struct w *w, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;
	const char *p = value;

	puts_(w, name);
	puts_(w, ": ");
	while (*p) {
		/* The next word: up to the next space (the space is its start). */
		const char *q = p + (*p == ' ');
		while (*q && *q != ' ')
			q++;
		size_t wn = (size_t)(q - p);
		if (col + wn > DSN_FOLD && col > 1 && *p == ' ') {
			puts_(w, "\r\n");
			col = 0;
		}
		while (col + wn > DSN_LINE_MAX - 2) {
			/* Back to the start of a UTF-8 character. */
			size_t cut = DSN_LINE_MAX - 2 - col;
			while (cut && ((unsigned char)p[cut] & 0xc0) == 0x80)
				cut--;
			put(w, p, cut);
			puts_(w, "\r\n ");
			p += cut;
			wn -= cut;
			col = 1;
		}
		put(w, p, wn);
		col += wn;
		p = q;
	}
	puts_(w, "\r\n");
}

/*
 * Appends text to w->b as lines of at most DSN_WRAP code points, broken
 * at spaces; the first line starts with first, the others with indent.
 * Lines end in "\n" here: the part is encoded (and given CRLF) later.
 */
static void put_wrapped(struct w *w, const char *first, const char *indent, const char *text)
{
	size_t col = (size_t)g_utf8_strlen(first, -1);
	bool fresh = true;      /* no word on this line yet */

	puts_(w, first);
	for (const char *p = text; *p;) {
		if (*p == ' ') {
			p++;
			continue;
		}
		const char *q = p;
		size_t cps = 0;
		while (*q && *q != ' ') {
			q = next_char(q);
			cps++;
		}
		if (!fresh && col + 1 + cps > DSN_WRAP) {
			puts_(w, "\n");
			puts_(w, indent);
			col = (size_t)g_utf8_strlen(indent, -1);
			fresh = true;
		}
		if (!fresh) {
			puts_(w, " ");
			col++;
		}
		put(w, p, (size_t)(q - p));
		col += cps;
		fresh = false;
		p = q;
	}
	puts_(w, "\n");
}

/*
 * Quoted-printable (RFC 2045 §6.7) of text whose lines end in "\n":
 * CRLF line ends, lines of at most 76 characters, soft breaks never
 * inside an =XX, trailing blanks encoded.
 */
static void put_qp(struct w *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n') {
			puts_(w, "\r\n");
			col = 0;
			continue;
		}
		bool at_eol = i + 1 == n || s[i + 1] == '\n';
		char enc[3];
		size_t k;
		if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol)) {
			enc[0] = (char)c;
			k = 1;
		} else {
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			k = 3;
		}
		/* Room for this and, unless the line ends here, a soft break. */
		if (col + k > (at_eol ? 76u : 75u)) {
			puts_(w, "=\r\n");
			col = 0;
		}
		put(w, enc, k);
		col += k;
	}
}

/* Text with "\n" line ends, as CRLF (7bit/8bit parts). */
static void put_crlf_text(struct w *w, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			puts_(w, "\r\n");
		else
			put(w, s + i, 1);
	}
}

/*
 * The length of the original header section: up to the blank line that
 * ends it (RFC 5322 §2.1), or all of s when there is none.
 */
static size_t section_len(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) : n;
		size_t len = e - i;
		if (len && s[e - 1] == '\r')
			len--;
		if (len == 0)
			return i;
		i = e + 1;
	}
	return n;
}

/*
 * The original header section as CRLF lines: a line ends at LF (with or
 * without its CR), a stray CR or a NUL becomes a space, and a line over
 * 998 octets (the listener refuses those; this is a last defence) is
 * folded.
 */
static void put_headers(struct w *w, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) : n;
		size_t end = e > i && s[e - 1] == '\r' ? e - 1 : e;
		size_t col = 0;
		for (size_t k = i; k < end; k++) {
			if (col >= DSN_LINE_MAX - 1) {
				puts_(w, "\r\n ");
				col = 1;
			}
			put(w, s[k] == '\r' || s[k] == '\0' ? " " : s + k, 1);
			col++;
		}
		puts_(w, "\r\n");
		i = e + 1;
	}
}

static bool starts_with_ci(const char *s, size_t n, const char *prefix)
{
	size_t pn = strlen(prefix);

	return n >= pn && g_ascii_strncasecmp(s, prefix, pn) == 0;
}

/*
 * The original Subject, unfolded and decoded (RFC 2047; raw 8-bit text
 * is taken as UTF-8, or converted by GMime's charset guess), on one line
 * and cut to DSN_SUBJECT_MAX code points. NULL when there is none.
 */
static char *original_subject(const char *h, size_t n)
{
	GString *v = NULL;

	for (size_t i = 0; i < n;) {
		const char *nl = memchr(h + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - h) : n;
		size_t len = e - i;
		if (len && h[e - 1] == '\r')
			len--;
		if (v) {
			if (len == 0 || (h[i] != ' ' && h[i] != '\t'))
				break;  /* the field ends where no continuation follows */
			g_string_append_len(v, h + i, (gssize)len);
		} else if (starts_with_ci(h + i, len, "subject:")) {
			v = g_string_new_len(h + i + 8, (gssize)(len - 8));
		}
		i = e + 1;
	}
	if (!v)
		return NULL;
	/* A NUL would end the value early; the listener refuses them anyway. */
	for (gsize i = 0; i < v->len; i++)
		if (v->str[i] == '\0')
			v->str[i] = ' ';
	char *dec = g_mime_utils_header_decode_text(NULL, v->str);
	g_string_free(v, TRUE);
	if (!dec)
		return NULL;
	char *valid = g_utf8_make_valid(dec, -1);
	g_free(dec);
	char *r = one_line(valid);
	g_free(valid);
	if (r && g_utf8_strlen(r, -1) > DSN_SUBJECT_MAX)
		strcpy(g_utf8_offset_to_pointer(r, DSN_SUBJECT_MAX - 3), "...");
	if (r && !*r) {
		free(r);
		r = NULL;
	}
	return r;
}

/* ------------------------------------------------------------------ */
/* The three parts                                                    */
/* ------------------------------------------------------------------ */

/* The readable part, with "\n" line ends (encoded later). */
static void text_part(struct w *w, const struct dsn_info *info, const struct dsn_rcpt *rcpts,
                      size_t n, bool any_failed, const char *subject)
{
	char date[64];

	putf(w, "This is the mail system at host %s.\n\n", info->hostname);
	if (any_failed) {
		puts_(w, "Your message could not be delivered to one or more recipients.\n");
	} else {
		uint64_t until = 0;
		for (size_t i = 0; i < n; i++)
			if (rcpts[i].will_retry_until_ms > until)
				until = rcpts[i].will_retry_until_ms;
		puts_(w, "Your message has not been delivered yet to one or more recipients.\n");
		if (until) {
			rfc5322_date(date, until);
			putf(w, "The mail system will keep trying until %s.\n", date);
		} else {
			puts_(w, "The mail system will keep trying.\n");
		}
		puts_(w, "This is a warning only: you do not need to send the message again.\n");
	}
	puts_(w, "\n");
	if (subject)
		put_wrapped(w, "  Subject:  ", "            ", subject);
	if (info->queue_id && *info->queue_id)
		putf(w, "  Queue ID: %s\n", info->queue_id);
	if (info->arrival_ms) {
		rfc5322_date(date, info->arrival_ms);
		putf(w, "  Received: %s\n", date);
	}
	if (subject || (info->queue_id && *info->queue_id) || info->arrival_ms)
		puts_(w, "\n");

	for (size_t i = 0; i < n && !w->err; i++) {
		const struct dsn_rcpt *r = &rcpts[i];
		if (i)
			puts_(w, "\n");
		bool delayed = strcmp(action_of(r), "delayed") == 0;
		char *addr = one_line(r->addr);
		char *reason = one_line(r->reason);
		char *diag = one_line(r->diagnostic);
		char *host = remote_host(r->remote_mta, true);
		char *first = NULL;
		if (!addr || !reason || !diag) {
			w->err = -ENOMEM;
		} else {
			/* The runner may give the server's reply as the reason too:
			 * it is said once, as the server's answer. */
			const char *why = *reason && strcmp(reason, diag) != 0 ? reason
			                  : delayed ? "delivery is delayed; the mail system will keep trying."
			                            : "the message could not be delivered.";
			if (asprintf(&first, "<%s>: ", addr) < 0) {
				first = NULL;
				w->err = -ENOMEM;
			} else {
				put_wrapped(w, first, "    ", why);
			}
			if (*diag) {
				char *said = NULL;
				if (asprintf(&said, "The mail server%s%s answered: %s", host ? " " : "",
				             host ? host : "", diag) < 0)
					w->err = -ENOMEM;
				else
					put_wrapped(w, "    ", "    ", said);
				free(said);
			}
		}
		free(first);
		free(host);
		free(diag);
		free(reason);
		free(addr);
	}
}

/* The message/(global-)delivery-status content (RFC 3464 §2), CRLF. */
static void status_part(struct w *w, const struct dsn_info *info, const struct dsn_rcpt *rcpts,
                        size_t n)
{
	char date[64], *v = NULL;

	if (asprintf(&v, "dns; %s", info->hostname) < 0) {
		w->err = -ENOMEM;
		return;
	}
	put_field(w, "Reporting-MTA", v);
	free(v);
	/* Our queue id, so that the sender can tell us which mail it was.
	 * Not Original-Envelope-Id: that is the ENVID the client gave
	 * (RFC 3464 §2.2.1), and hikyaku's listener takes none. */
	if (info->queue_id && *info->queue_id)
		put_field(w, "X-Hikyaku-Queue-ID", info->queue_id);
	if (info->arrival_ms) {
		rfc5322_date(date, info->arrival_ms);
		put_field(w, "Arrival-Date", date);
	}
	for (size_t i = 0; i < n && !w->err; i++) {
		const struct dsn_rcpt *r = &rcpts[i];
		char *addr = one_line(r->addr);
		char *diag = one_line(r->diagnostic);
		char *host = remote_host(r->remote_mta, false);
		if (!addr || !diag) {
			w->err = -ENOMEM;
			goto next;
		}
		puts_(w, "\r\n");
		/* RFC 6533 §3: an internationalised address is of type utf-8. */
		if (asprintf(&v, "%s; %s", str_8bit(addr) ? "utf-8" : "rfc822", addr) < 0)
			goto oom;
		put_field(w, "Final-Recipient", v);
		free(v);
		put_field(w, "Action", action_of(r));
		put_field(w, "Status", status_of(r));
		if (host) {
			if (asprintf(&v, "dns; %s", host) < 0)
				goto oom;
			put_field(w, "Remote-MTA", v);
			free(v);
		}
		if (*diag) {
			if (asprintf(&v, "%s; %s", diag_type_of(r), diag) < 0)
				goto oom;
			put_field(w, "Diagnostic-Code", v);
			free(v);
		}
		if (r->last_attempt_ms) {
			rfc5322_date(date, r->last_attempt_ms);
			put_field(w, "Last-Attempt-Date", date);
		}
		/* RFC 3464 §2.3.7: only for a delayed recipient. */
		if (r->will_retry_until_ms && strcmp(action_of(r), "delayed") == 0) {
			rfc5322_date(date, r->will_retry_until_ms);
			put_field(w, "Will-Retry-Until", date);
		}
		goto next;
oom:
		w->err = -ENOMEM;
next:
		free(host);
		free(diag);
		free(addr);
	}
}

/* ------------------------------------------------------------------ */
/* The message                                                        */
/* ------------------------------------------------------------------ */

static bool addr_ok(const char *a)
{
	if (!a || !*a)
		return false;
	for (const char *p = a; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

/* Does any line of s (ends "\n") run past the 998-octet limit? */
static bool long_line(const char *s, size_t n)
{
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		col = s[i] == '\n' ? 0 : col + 1;
		if (col > DSN_LINE_MAX)
			return true;
	}
	return false;
}

static bool contains(const buf_t *b, const char *needle)
{
	return b->len && memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

int dsn_build(const struct dsn_info *info, const struct dsn_rcpt *rcpts, size_t n, buf_t *out)
{
	static atomic_uint counter;
	buf_t text, status, hdrs;
	struct w tw = { &text, 0 }, sw = { &status, 0 }, hw = { &hdrs, 0 };
	struct w ow = { out, 0 };
	size_t out_len0 = out->len;
	char *subject = NULL;
	char date[64], boundary[200];

	if (!info || !info->hostname || !*info->hostname || !addr_ok(info->sender) || !rcpts ||
	    n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!addr_ok(rcpts[i].addr))
			return -EINVAL;
	pthread_once(&dsn_once, dsn_init_once);

	buf_init(&text, out->max);
	buf_init(&status, out->max);
	buf_init(&hdrs, out->max);

	bool any_failed = false, global = str_8bit(info->hostname);
	for (size_t i = 0; i < n; i++) {
		any_failed |= strcmp(action_of(&rcpts[i]), "delayed") != 0;
		global |= str_8bit(rcpts[i].addr) || str_8bit(rcpts[i].diagnostic) ||
		          str_8bit(rcpts[i].remote_mta);
	}
	size_t hn = info->headers ? section_len(info->headers, info->headers_len) : 0;
	if (hn)
		subject = original_subject(info->headers, hn);

	text_part(&tw, info, rcpts, n, any_failed, subject);
	status_part(&sw, info, rcpts, n);
	if (hn)
		put_headers(&hw, info->headers, hn);
	int err = tw.err ? tw.err : sw.err ? sw.err : hw.err;
	if (err)
		goto out;

	/* "=_" cannot occur in quoted-printable text; the loop makes sure
	 * the boundary occurs in no part at all (RFC 2046 §5.1.1). */
	unsigned id = atomic_fetch_add(&counter, 1);
	for (unsigned k = 0;; k++) {
		snprintf(boundary, sizeof(boundary), "=_hikyaku/%s/%" PRIu64 ".%u.%u",
		         info->queue_id && *info->queue_id ? info->queue_id : "dsn", info->now_ms,
		         id, k);
		if (!contains(&text, boundary) && !contains(&status, boundary) &&
		    !contains(&hdrs, boundary))
			break;
	}

	bool text_8bit = has_8bit(text.data, text.len);
	bool text_qp = text_8bit || long_line(text.data, text.len);
	bool hdrs_8bit = has_8bit(hdrs.data, hdrs.len);

	/* RFC 5322 §3.6 header fields; RFC 3834 §5 Auto-Submitted. */
	putf(&ow, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", info->hostname);
	putf(&ow, "To: <%s>\r\n", info->sender);
	putf(&ow, "Subject: %s\r\n", any_failed ? "Undelivered Mail Returned to Sender"
	                                        : "Delayed Mail (still being retried)");
	rfc5322_date(date, info->now_ms);
	putf(&ow, "Date: %s\r\n", date);
	putf(&ow, "Message-ID: <%s.%" PRIu64 ".%u.dsn@%s>\r\n",
	     info->queue_id && *info->queue_id ? info->queue_id : "hikyaku", info->now_ms, id,
	     info->hostname);
	puts_(&ow, "Auto-Submitted: auto-replied\r\n");
	puts_(&ow, "MIME-Version: 1.0\r\n");
	putf(&ow, "Content-Type: multipart/report; report-type=%sdelivery-status;\r\n"
	          "\tboundary=\"%s\"\r\n", global ? "global-" : "", boundary);
	/* RFC 2045 §6.4: a multipart is 8bit when any of its parts is. */
	if (global || hdrs_8bit)
		puts_(&ow, "Content-Transfer-Encoding: 8bit\r\n");
	puts_(&ow, "\r\nThis is a MIME-encapsulated message.\r\n");

	putf(&ow, "\r\n--%s\r\n", boundary);
	puts_(&ow, "Content-Description: Notification\r\n"
	           "Content-Type: text/plain; charset=utf-8\r\n");
	if (text_qp)
		puts_(&ow, "Content-Transfer-Encoding: quoted-printable\r\n");
	puts_(&ow, "\r\n");
	if (text_qp)
		put_qp(&ow, text.data, text.len);
	else
		put_crlf_text(&ow, text.data, text.len);

	putf(&ow, "\r\n--%s\r\n", boundary);
	putf(&ow, "Content-Description: Delivery report\r\n"
	          "Content-Type: message/%sdelivery-status\r\n", global ? "global-" : "");
	if (global)
		puts_(&ow, "Content-Transfer-Encoding: 8bit\r\n");
	puts_(&ow, "\r\n");
	put(&ow, status.data, status.len);

	if (hdrs.len) {
		putf(&ow, "\r\n--%s\r\n", boundary);
		bool utf8 = hdrs_8bit && g_utf8_validate(hdrs.data, (gssize)hdrs.len, NULL);
		putf(&ow, "Content-Description: Undelivered Message Headers\r\n"
		          "Content-Type: %s\r\n", utf8 ? "message/global-headers" : "text/rfc822-headers");
		if (hdrs_8bit)
			puts_(&ow, "Content-Transfer-Encoding: 8bit\r\n");
		puts_(&ow, "\r\n");
		put(&ow, hdrs.data, hdrs.len);
	}
	putf(&ow, "\r\n--%s--\r\n", boundary);
	err = ow.err;
out:
	if (err) {
		out->len = out_len0;
		if (out->data)
			out->data[out->len] = '\0';
	}
	free(subject);
	buf_free(&hdrs);
	buf_free(&status);
	buf_free(&text);
	return err;
}
