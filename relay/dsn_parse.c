/*
 * dsn_parse - read incoming delivery status notifications. See dsn_parse.h.
 *
 * GMime parses the message and its MIME tree (it bounds its own nesting:
 * about 1000 multipart and 500 message levels, checked by the tests), but
 * only a bounded prefix of it (scan_prefix()): GMime builds the whole
 * tree before any limit of ours applies.
 * The field blocks of the status part and of the returned header section
 * are read here, by a small bounded reader of RFC 5322 §2.2 fields,
 * rather than through GMime's header objects: GMime decodes RFC 2047
 * words and guesses charsets in values, which must not happen to an
 * address, and the limits (DSN_PARSE_FIELD_MAX per value, the first
 * occurrence of a field wins) are easier to keep and to see kept in one
 * loop over the bytes.
 *
 * Everything read from the report is untrusted. The strings given out
 * are valid UTF-8 without control characters, so that the event log
 * (JSON) and the suppression list can take them as they are.
 */
#include "relay/dsn_parse.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>

#include "relay/outcome.h"
#include "relay/route.h"

/* The returned-original candidates remembered during the walk. */
#define DSN_CANDIDATES_MAX 8

/* ------------------------------------------------------------------ */
/* Field blocks (RFC 3464 §2.1, RFC 5322 §2.2)                        */
/* ------------------------------------------------------------------ */

enum field_id {
	F_FINAL_RCPT,
	F_ORIG_RCPT,
	F_ACTION,
	F_STATUS,
	F_DIAG,
	F_REMOTE_MTA,
	F_REPORTING_MTA,
	F_ENVID,
	F_MESSAGE_ID,
	F_FROM,
	F_COUNT,
	F_SKIP = -1,     /* a field nobody asked for, or no field at all */
};

static const struct {
	const char *name;
	bool cut;        /* cut when too long (free text), else dropped */
} fields[F_COUNT] = {
	[F_FINAL_RCPT] = { "Final-Recipient", false },
	[F_ORIG_RCPT] = { "Original-Recipient", false },
	[F_ACTION] = { "Action", false },
	[F_STATUS] = { "Status", false },
	[F_DIAG] = { "Diagnostic-Code", true },
	[F_REMOTE_MTA] = { "Remote-MTA", false },
	[F_REPORTING_MTA] = { "Reporting-MTA", false },
	[F_ENVID] = { "Original-Envelope-Id", false },
	[F_MESSAGE_ID] = { "Message-ID", false },
	[F_FROM] = { "From", false },
};

/* The fields of one block that we want, first occurrence each (malloc). */
struct block {
	char *v[F_COUNT];     /* cleaned value; NULL when absent, empty or too long */
	bool seen[F_COUNT];
};

/* One field value being collected, its blanks collapsed as it grows. */
struct acc {
	int id;
	size_t len;
	bool blank;           /* a blank is pending (written before the next octet) */
	bool overflow;
	char buf[DSN_PARSE_FIELD_MAX + 1];
};

static void block_clear(struct block *b)
{
	for (int i = 0; i < F_COUNT; i++)
		free(b->v[i]);
	memset(b, 0, sizeof(*b));
}

/*
 * Appends value octets. Controls (CR, LF, NUL, TAB included, C1 as
 * UTF-8) count as blanks; a run of blanks becomes one space, none at the start; a blank
 * at the end is never written.
 */
static void acc_add(struct acc *a, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !a->overflow; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c <= 0x20 || c == 0x7f) {
			a->blank = a->len > 0;
			continue;
		}
		/* C1 controls in their UTF-8 form (U+0080..U+009F): CSI, OSC, ... */
		if (c == 0xc2 && i + 1 < n && (unsigned char)p[i + 1] >= 0x80 &&
		    (unsigned char)p[i + 1] <= 0x9f) {
			a->blank = a->len > 0;
			i++;
			continue;
		}
		if (a->len + (a->blank ? 2 : 1) > DSN_PARSE_FIELD_MAX) {
			a->overflow = true;
			break;
		}
		if (a->blank)
			a->buf[a->len++] = ' ';
		a->blank = false;
		a->buf[a->len++] = (char)c;
	}
}

static int acc_finish(struct acc *a, struct block *b)
{
	int id = a->id;

	a->id = F_SKIP;
	if (id == F_SKIP || b->seen[id])
		return 0;
	b->seen[id] = true;
	if (a->len == 0 || (a->overflow && !fields[id].cut))
		return 0;
	if (a->overflow) {
		/* Cut: drop a UTF-8 sequence the cut left incomplete. */
		size_t j = a->len, back = 0;
		while (j > 0 && back < 4 && ((unsigned char)a->buf[j - 1] & 0xc0) == 0x80) {
			j--;
			back++;
		}
		unsigned char lead = j > 0 ? (unsigned char)a->buf[j - 1] : 0;
		size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
		if (lead >= 0xc0 && back + 1 < need)
			a->len = j - 1;
	}
	b->v[id] = strndup(a->buf, a->len);
	return b->v[id] ? 0 : -ENOMEM;
}

static bool is_blank_line(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

/* The field of a line "Name:value", or F_SKIP; *value is after the colon. */
static int field_of(const char *p, size_t n, size_t *value)
{
	size_t i = 0, name_len;

	/* ftext: printable US-ASCII except ':' (RFC 5322 §3.6.8). */
	while (i < n && p[i] != ':' && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
		i++;
	name_len = i;
	/* obs-optional (RFC 5322 §4.5.3): blanks before the colon. */
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (name_len == 0 || i >= n || p[i] != ':')
		return F_SKIP;
	*value = i + 1;
	for (int f = 0; f < F_COUNT; f++)
		if (strlen(fields[f].name) == name_len &&
		    g_ascii_strncasecmp(p, fields[f].name, name_len) == 0)
			return f;
	return F_SKIP;
}

/*
 * Reads the next block of s[*pos, n) into b (cleared first): blank lines
 * before it are skipped, a blank line (or only blanks) ends it. Lines end
 * in LF, with or without CR. A line that is neither a field nor a
 * continuation is ignored with its continuations. Returns 1 when a block
 * was read, 0 at the end, -ENOMEM.
 */
static int block_read(const char *s, size_t n, size_t *pos, struct block *b, struct acc *a)
{
	size_t i = *pos;
	bool any = false;
	int err = 0;

	block_clear(b);
	a->id = F_SKIP;
	while (i < n && !err) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) : n;
		const char *line = s + i;
		size_t len = e - i;

		i = nl ? e + 1 : n;
		if (is_blank_line(line, len)) {
			if (any)
				break;
			continue;
		}
		any = true;
		if (line[0] == ' ' || line[0] == '\t') {
			/* RFC 5322 §2.2.3: unfolding removes the CRLF only. Not
			 * smtp_header_unfold() (proto/smtp_header.h), which needs the
			 * whole field first: here a block is split into fields in one
			 * pass, each value going straight into its bounded
			 * accumulator, which also turns every run of blanks and
			 * control characters into one space (acc_add). */
			if (a->id != F_SKIP) {
				a->blank = a->len > 0;
				acc_add(a, line, len);
			}
			continue;
		}
		err = acc_finish(a, b);
		size_t v = 0;
		a->id = field_of(line, len, &v);
		a->len = 0;
		a->blank = false;
		a->overflow = false;
		if (a->id != F_SKIP)
			acc_add(a, line + v, len - v);
	}
	if (!err)
		err = acc_finish(a, b);
	*pos = i;
	return err ? err : any;
}

/* ------------------------------------------------------------------ */
/* Field values                                                       */
/* ------------------------------------------------------------------ */

/*
 * A malloc'd copy of text fit to give out: invalid UTF-8 replaced by
 * U+FFFD, cut at a character boundary to DSN_PARSE_FIELD_MAX octets.
 * The input has no control characters (acc_add), so neither has the copy.
 * *r is NULL when s is NULL or empty.
 */
static int text_dup(const char *s, size_t n, char **r)
{
	*r = NULL;
	if (!s || n == 0)
		return 0;
	char *valid = g_utf8_make_valid(s, (gssize)n);
	size_t vn = strlen(valid);
	if (vn > DSN_PARSE_FIELD_MAX) {
		const char *end = g_utf8_find_prev_char(valid, valid + DSN_PARSE_FIELD_MAX + 1);
		vn = end ? (size_t)(end - valid) : 0;
	}
	while (vn && valid[vn - 1] == ' ')
		vn--;
	if (vn)
		*r = strndup(valid, vn);
	g_free(valid);
	return vn && !*r ? -ENOMEM : 0;
}

/* An atom of a "type;" prefix: RFC 3464 address-type, diagnostic-type, mta-name-type. */
static bool type_char(char c)
{
	return g_ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '+';
}

/*
 * Splits "type; rest". Returns the rest (blanks skipped) and the type in
 * *type / *type_len; without a well-formed type prefix, the whole value
 * and an empty type.
 */
static const char *split_type(const char *v, const char **type, size_t *type_len)
{
	const char *p = v;

	while (type_char(*p))
		p++;
	const char *end = p;
	while (*p == ' ')
		p++;
	if (*p != ';' || end == v) {
		*type = "";
		*type_len = 0;
		return v;
	}
	*type = v;
	*type_len = (size_t)(end - v);
	p++;
	while (*p == ' ')
		p++;
	return p;
}

static bool type_is(const char *type, size_t n, const char *want)
{
	return strlen(want) == n && g_ascii_strncasecmp(type, want, n) == 0;
}

/*
 * RFC 6533 §3: in a utf-8 address, "\x{HEX}" stands for one code point.
 * A malformed escape is kept as written. Returns a malloc'd string, or
 * NULL when memory ran out.
 */
static char *unescape_utf8_addr(const char *s, size_t n)
{
	char *r = malloc(n + 1);      /* \x{H..} (5+ octets) -> at most 4 */
	size_t k = 0;

	if (!r)
		return NULL;
	for (size_t i = 0; i < n;) {
		if (n - i >= 5 && memcmp(s + i, "\\x{", 3) == 0) {
			size_t j = i + 3;
			gunichar cp = 0;
			while (j < n && j - (i + 3) < 6 && g_ascii_isxdigit(s[j]))
				cp = cp * 16 + (gunichar)g_ascii_xdigit_value(s[j++]);
			if (j > i + 3 && j < n && s[j] == '}' && cp >= 0x20 &&
			    (cp < 0x7f || cp > 0x9f) && g_unichar_validate(cp)) {
				k += (size_t)g_unichar_to_utf8(cp, r + k);
				i = j + 1;
				continue;
			}
		}
		r[k++] = s[i++];
	}
	r[k] = '\0';
	return r;
}

/*
 * The address of a Final-Recipient / Original-Recipient value. *out is
 * NULL when the value names no usable address: an unknown address type,
 * no closing '>', nothing left, characters no address has, invalid UTF-8.
 */
static int address_of(const char *v, char **out)
{
	const char *type, *p, *end;
	size_t type_len;
	bool utf8;

	*out = NULL;
	if (!v)
		return 0;
	p = split_type(v, &type, &type_len);
	if (type_len && !type_is(type, type_len, "rfc822") && !type_is(type, type_len, "utf-8"))
		return 0;
	utf8 = type_is(type, type_len, "utf-8");
	if (*p == '<') {
		p++;
		end = strchr(p, '>');
		if (!end)
			return 0;
	} else {
		/* Up to a blank or a comment outside a quoted local part. */
		bool quoted = false;
		for (end = p; *end; end++) {
			if (quoted && *end == '\\' && end[1]) {
				end++;
				continue;
			}
			if (*end == '"')
				quoted = !quoted;
			else if (!quoted && (*end == ' ' || *end == '('))
				break;
		}
	}
	while (*p == ' ')
		p++;
	while (end > p && end[-1] == ' ')
		end--;
	if (end == p)
		return 0;
	for (const char *q = p; q < end; q++)
		if (*q == '<' || *q == '>')
			return 0;
	char *a = utf8 ? unescape_utf8_addr(p, (size_t)(end - p)) : strndup(p, (size_t)(end - p));
	if (!a)
		return -ENOMEM;
	if (!g_utf8_validate(a, -1, NULL)) {
		free(a);
		return 0;
	}
	*out = a;
	return 0;
}

/* Action (RFC 3464 §2.3.3), lowercased, or NULL when it is none of the five. */
static const char *action_of(const char *v)
{
	static const char *const known[] = { "failed", "delayed", "delivered", "relayed",
	                                     "expanded" };
	size_t n = 0;

	if (!v)
		return NULL;
	while (g_ascii_isalpha(v[n]))
		n++;
	if (v[n] != '\0' && v[n] != ' ' && v[n] != '(' && v[n] != ';')
		return NULL;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (type_is(v, n, known[i]))
			return known[i];
	return NULL;
}

/*
 * The status-code at the start of a Status value (RFC 3463 §2: class
 * "." 1*3digit "." 1*3digit), followed by nothing, a blank or a comment.
 * Returns its length, 0 when there is none.
 */
static size_t status_len(const char *v)
{
	size_t i = 0;

	if (!v || (v[0] != '2' && v[0] != '4' && v[0] != '5') || v[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (g_ascii_isdigit(v[i]) && d < 4) {
			i++;
			d++;
		}
		if (d == 0 || d > 3)
			return 0;
		if (part == 0 && v[i++] != '.')
			return 0;
	}
	return v[i] == '\0' || v[i] == ' ' || v[i] == '(' ? i : 0;
}

/* Diagnostic-Code (RFC 3464 §2.3.6) without its type. */
static int diagnostic_of(const char *v, char **out)
{
	const char *type;
	size_t type_len;

	if (!v) {
		*out = NULL;
		return 0;
	}
	const char *p = split_type(v, &type, &type_len);
	return text_dup(p, strlen(p), out);
}

/*
 * An MTA name (Reporting-MTA, Remote-MTA): its first word, without the
 * type. RFC 3464 §2.2.2 wants a host name for type dns, but real reports
 * add to it: "mx.example.com. (192.0.2.26, the server for the domain
 * example.com.)" (Gmail), "mx.example.com. 192.0.2.10 smtp".
 */
static int mta_of(const char *v, char **out)
{
	const char *type;
	size_t type_len;

	if (!v) {
		*out = NULL;
		return 0;
	}
	const char *p = split_type(v, &type, &type_len);
	return text_dup(p, strcspn(p, " ("), out);
}

/* The first <...> of a Message-ID value, else its first word. */
static int msgid_of(const char *v, char **out)
{
	*out = NULL;
	if (!v)
		return 0;
	const char *lt = strchr(v, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt)
		return text_dup(lt, (size_t)(gt - lt) + 1, out);
	return text_dup(v, strcspn(v, " ("), out);
}

/* ------------------------------------------------------------------ */
/* The status part                                                    */
/* ------------------------------------------------------------------ */

static void rcpt_free(struct dsn_report_rcpt *r)
{
	free(r->final_recipient);
	free(r->original_recipient);
	free(r->action);
	free(r->status);
	free(r->diagnostic);
	free(r->remote_mta);
	memset(r, 0, sizeof(*r));
}

/* A recipient block. *ok is false when it has no usable recipient. */
static int rcpt_of(const struct block *b, struct dsn_report_rcpt *r, bool *ok)
{
	const char *action = action_of(b->v[F_ACTION]);
	size_t sn = status_len(b->v[F_STATUS]);
	int err;

	memset(r, 0, sizeof(*r));
	*ok = false;
	if (!action || !sn)
		return 0;
	if ((err = address_of(b->v[F_FINAL_RCPT], &r->final_recipient)) || !r->final_recipient)
		goto out;
	r->action = strdup(action);
	r->status = strndup(b->v[F_STATUS], sn);
	if (!r->action || !r->status) {
		err = -ENOMEM;
		goto out;
	}
	if ((err = address_of(b->v[F_ORIG_RCPT], &r->original_recipient)) ||
	    (err = diagnostic_of(b->v[F_DIAG], &r->diagnostic)) ||
	    (err = mta_of(b->v[F_REMOTE_MTA], &r->remote_mta)))
		goto out;
	*ok = true;
	return 0;
out:
	rcpt_free(r);
	return err;
}

/*
 * Which of two results for one address is kept: one that puts it on
 * the suppression list, else a failure, else the first one. So repeated
 * or contradicting blocks cannot hide a failure, nor multiply it.
 */
static int rcpt_rank(const struct dsn_report_rcpt *r)
{
	return dsn_rcpt_suppresses(r) ? 2 : strcmp(r->action, "failed") == 0 ? 1 : 0;
}

static int status_read(const char *s, size_t n, struct dsn_report *out)
{
	struct block b = { 0 };
	struct acc *a = malloc(sizeof(*a));
	size_t pos = 0, cap = 0, blocks = 0;
	bool first = true;
	int err = 0, more = 0;

	if (!a)
		return -ENOMEM;
	GHashTable *by_addr = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	while (out->nrcpts < DSN_PARSE_RCPTS_MAX && blocks++ < DSN_PARSE_BLOCKS_MAX &&
	       (more = block_read(s, n, &pos, &b, a)) > 0) {
		bool per_message = first && !b.seen[F_FINAL_RCPT];
		first = false;
		if (per_message) {
			if ((err = text_dup(b.v[F_ENVID], b.v[F_ENVID] ? strlen(b.v[F_ENVID]) : 0,
			                    &out->original_envelope_id)) ||
			    (err = mta_of(b.v[F_REPORTING_MTA], &out->reporting_mta)))
				break;
			continue;
		}
		if (!b.seen[F_FINAL_RCPT])
			continue;
		if (out->nrcpts == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			if (ncap > DSN_PARSE_RCPTS_MAX)
				ncap = DSN_PARSE_RCPTS_MAX;
			void *p = realloc(out->rcpts, ncap * sizeof(*out->rcpts));
			if (!p) {
				err = -ENOMEM;
				break;
			}
			out->rcpts = p;
			cap = ncap;
		}
		bool ok;
		struct dsn_report_rcpt *x = &out->rcpts[out->nrcpts];
		if ((err = rcpt_of(&b, x, &ok)))
			break;
		if (!ok)
			continue;
		/* One result per recipient (SPEC §6.1): the first of the best rank. */
		char *key = g_utf8_casefold(x->final_recipient, -1);
		gpointer seen = g_hash_table_lookup(by_addr, key);
		if (seen) {
			struct dsn_report_rcpt *y = &out->rcpts[GPOINTER_TO_SIZE(seen) - 1];
			if (rcpt_rank(x) > rcpt_rank(y)) {
				rcpt_free(y);
				*y = *x;
				memset(x, 0, sizeof(*x));
			} else {
				rcpt_free(x);
			}
			g_free(key);
			continue;
		}
		g_hash_table_insert(by_addr, key, GSIZE_TO_POINTER(out->nrcpts + 1));
		out->nrcpts++;
	}
	if (!err && more < 0)
		err = more;
	g_hash_table_destroy(by_addr);
	block_clear(&b);
	free(a);
	return err;
}

/* The returned original's header section: Message-ID and From. */
static int headers_read(const char *s, size_t n, struct dsn_report *out)
{
	struct block b = { 0 };
	struct acc *a = malloc(sizeof(*a));
	size_t pos = 0;
	int err;

	if (!a)
		return -ENOMEM;
	err = block_read(s, n, &pos, &b, a);
	if (err > 0) {
		err = msgid_of(b.v[F_MESSAGE_ID], &out->original_message_id);
		if (!err)
			err = text_dup(b.v[F_FROM], b.v[F_FROM] ? strlen(b.v[F_FROM]) : 0,
			               &out->original_from);
	}
	block_clear(&b);
	free(a);
	return err < 0 ? err : 0;
}

/* ------------------------------------------------------------------ */
/* The MIME tree                                                      */
/* ------------------------------------------------------------------ */

struct walk {
	GMimeObject *status;           /* the first (global-)delivery-status part */
	GMimeObject *status_parent;
	GMimeObject *orig[DSN_CANDIDATES_MAX];   /* returned-original candidates */
	GMimeObject *orig_parent[DSN_CANDIDATES_MAX];
	size_t norig;
	unsigned parts;
};

static bool is_type(GMimeObject *o, const char *type, const char *subtype)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);

	return ct && g_mime_content_type_is_type(ct, type, subtype);
}

static void add_original(struct walk *w, GMimeObject *o, GMimeObject *parent)
{
	if (w->norig < DSN_CANDIDATES_MAX) {
		w->orig[w->norig] = o;
		w->orig_parent[w->norig] = parent;
		w->norig++;
	}
}

/*
 * Depth first, in order. Multiparts are entered (RFC 6522 reports are
 * often nested: a multipart/mixed around them, a multipart/alternative
 * inside); message parts never are (see dsn_parse.h).
 */
static void walk(GMimeObject *o, GMimeObject *parent, int depth, struct walk *w)
{
	if (!o || depth > DSN_PARSE_DEPTH_MAX || w->parts >= DSN_PARSE_PARTS_MAX)
		return;
	w->parts++;
	if (GMIME_IS_MULTIPART(o)) {
		GMimeMultipart *mp = GMIME_MULTIPART(o);
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n && w->parts < DSN_PARSE_PARTS_MAX; i++)
			walk(g_mime_multipart_get_part(mp, i), o, depth + 1, w);
		return;
	}
	if (GMIME_IS_MESSAGE_PART(o)) {
		if (is_type(o, "message", "rfc822") || is_type(o, "message", "global"))
			add_original(w, o, parent);
		return;
	}
	if (!GMIME_IS_PART(o))
		return;
	if (is_type(o, "message", "delivery-status") ||
	    is_type(o, "message", "global-delivery-status")) {
		if (!w->status) {
			w->status = o;
			w->status_parent = parent;
		}
	} else if (is_type(o, "text", "rfc822-headers") ||
	           is_type(o, "message", "global-headers")) {
		add_original(w, o, parent);
	}
}

/*
 * The part of the message GMime is given: g_mime_parser_construct_message()
 * builds the whole tree, with an object and a header list per part,
 * before any limit of the walk applies (25 MB of empty parts cost it
 * ~5 GB). So the input is cut, at the start of a line, before the first
 * of these that comes: DSN_PARSE_BYTES_MAX octets, DSN_PARSE_LINES_MAX
 * lines, or the line after DSN_PARSE_PARTS_MAX lines that begin with
 * "--" (every MIME boundary does, RFC 2046 §5.1.1; counting more lines
 * than the real boundaries is safe). A report puts its status part and
 * the returned original's header section first (RFC 6522 §3), so a real
 * report loses only the rest of the returned message; GMime reads a cut
 * multipart as one whose close-delimiter is missing. Costs one pass over
 * the kept prefix.
 */
static size_t scan_prefix(const char *msg, size_t len)
{
	size_t i = 0, lines = 0, delims = 0;

	while (i < len) {
		if (lines == DSN_PARSE_LINES_MAX)
			return i;
		if (len - i >= 2 && msg[i] == '-' && msg[i + 1] == '-' &&
		    ++delims > DSN_PARSE_PARTS_MAX)
			return i;
		const char *nl = memchr(msg + i, '\n', len - i);
		size_t next = nl ? (size_t)(nl - msg) + 1 : len;
		if (next > DSN_PARSE_BYTES_MAX)
			return i;      /* never half a line: a cut address is another one */
		lines++;
		i = next;
	}
	return len;
}

/* A leaf part's content, transfer encoding undone. */
static GByteArray *content_of(GMimeObject *o)
{
	GByteArray *ba = g_byte_array_new();
	GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(o));

	if (dw) {
		GMimeStream *st = g_mime_stream_mem_new_with_byte_array(ba);
		g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(st), FALSE);
		g_mime_data_wrapper_write_to_stream(dw, st);
		g_object_unref(st);
	}
	return ba;
}

static int original_read(GMimeObject *o, struct dsn_report *out)
{
	int err = 0;

	if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
		if (!m)
			return 0;
		GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(m));
		char *h = g_mime_header_list_to_string(hl, NULL);
		if (h)
			err = headers_read(h, strlen(h), out);
		g_free(h);
	} else {
		GByteArray *ba = content_of(o);
		err = headers_read((const char *)ba->data, ba->len, out);
		g_byte_array_free(ba, TRUE);
	}
	return err;
}

int dsn_parse(const char *msg, size_t len, struct dsn_report *out)
{
	struct walk w = { 0 };
	int ret = 0;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!msg && len)
		return -EINVAL;
	if (len == 0)
		return 0;
	route_init();
	len = scan_prefix(msg, len);
	if (len == 0)
		return 0;

	GMimeStream *st = g_mime_stream_mem_new_with_buffer(msg, len);
	GMimeParser *parser = g_mime_parser_new_with_stream(st);
	GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(st);
	if (!m)
		return 0;

	walk(g_mime_message_get_mime_part(m), NULL, 0, &w);
	if (!w.status)
		goto done;

	GByteArray *ba = content_of(w.status);
	ret = status_read((const char *)ba->data, ba->len, out);
	g_byte_array_free(ba, TRUE);
	if (ret < 0)
		goto done;

	/* RFC 6522 §3: the original comes right after the status part. */
	GMimeObject *orig = w.norig ? w.orig[0] : NULL;
	for (size_t i = 0; i < w.norig; i++) {
		if (w.orig_parent[i] == w.status_parent) {
			orig = w.orig[i];
			break;
		}
	}
	if (orig && (ret = original_read(orig, out)) < 0)
		goto done;
	ret = 1;
done:
	g_object_unref(m);
	if (ret != 1)
		dsn_report_free(out);
	return ret;
}

void dsn_report_free(struct dsn_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nrcpts; i++)
		rcpt_free(&r->rcpts[i]);
	free(r->rcpts);
	free(r->original_envelope_id);
	free(r->reporting_mta);
	free(r->original_message_id);
	free(r->original_from);
	memset(r, 0, sizeof(*r));
}

/* A failure whose status the one suppression rule (outcome_suppresses,
 * SPEC §6) names; a report's "delayed" 5.1.1 is no failure. */
bool dsn_rcpt_suppresses(const struct dsn_report_rcpt *r)
{
	return r && r->action && strcmp(r->action, "failed") == 0 && outcome_suppresses(r->status);
}
