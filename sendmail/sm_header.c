/*
 * sm_header - the header of a message piped into hikyaku-sendmail. See
 * sm_header.h.
 *
 * The header is cut into fields here (a field is a line "name:" and the
 * lines starting with a blank after it, RFC 5322 §2.2); what a field of
 * addresses says is read by GMime, never by hand.
 */
#include "sendmail/sm_header.h"
#include "proto/smtp_header.h"

#include <gmime/gmime.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The length of a line without its line end (LF or CRLF). */
static size_t line_len(const char *p, size_t n)
{
	if (n > 0 && p[n - 1] == '\n')
		n--;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	return n;
}

/*
 * "name:" with name = 1*ftext (printable US-ASCII but ':', RFC 5322
 * §3.6.8), blanks allowed before the colon (obs-optional, §4.5.8).
 * Returns the name's length, or 0 when the line is no field.
 */
static size_t field_name_len(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && (unsigned char)p[i] >= 33 && (unsigned char)p[i] <= 126 && p[i] != ':')
		i++;
	size_t name = i;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return name > 0 && i < n && p[i] == ':' ? name : 0;
}

enum sm_hdr_end sm_header_scan(const char *p, size_t n, bool eof, size_t max, size_t *hdr_len)
{
	size_t pos = 0;
	bool field = false;

	*hdr_len = 0;
	while (pos < n) {
		const char *nl = memchr(p + pos, '\n', n - pos);
		if (!nl && !eof)
			break; /* a line still being read */
		size_t end = nl ? (size_t)(nl - p) + 1 : n;
		size_t len = line_len(p + pos, end - pos);
		if (len == 0) {
			*hdr_len = pos;
			return SM_HDR_BLANK;
		}
		if (p[pos] == ' ' || p[pos] == '\t') {
			if (!field) {
				*hdr_len = pos;
				return SM_HDR_BODY;
			}
		} else if (field_name_len(p + pos, len) == 0) {
			*hdr_len = pos;
			return SM_HDR_BODY;
		}
		field = true;
		if (end > max)
			return SM_HDR_TOO_BIG;
		pos = end;
	}
	if (eof) {
		*hdr_len = n;
		return SM_HDR_EOF;
	}
	return n >= max ? SM_HDR_TOO_BIG : SM_HDR_MORE;
}

/* ---- addresses ---------------------------------------------------------- */

static bool have_addr(GPtrArray *v, const char *a)
{
	for (guint i = 0; i < v->len; i++)
		if (g_ascii_strcasecmp(g_ptr_array_index(v, i), a) == 0)
			return true;
	return false;
}

/*
 * GMime hands back what stood between the quotes of a local part as it
 * was, a bare CR included ("a\r b"@x, or "a\r b" alone): RFC 5322 allows
 * no control character there, and an address with one must never reach
 * an SMTP command line (a CR in RCPT TO is what smuggling is made of).
 */
static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool list_clean(InternetAddressList *l)
{
	for (int i = 0; i < internet_address_list_length(l); i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		if (INTERNET_ADDRESS_IS_GROUP(a)) {
			if (!list_clean(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a))))
				return false;
			continue;
		}
		const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
		if (addr && has_ctl(addr))
			return false;
	}
	return true;
}

static int add_list(InternetAddressList *l, GPtrArray *v)
{
	int n = 0;

	for (int i = 0; i < internet_address_list_length(l); i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		if (INTERNET_ADDRESS_IS_GROUP(a)) {
			n += add_list(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)), v);
			continue;
		}
		const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
		if (!addr || !*addr)
			continue;
		n++;
		if (!have_addr(v, addr))
			g_ptr_array_add(v, g_strdup(addr));
	}
	return n;
}

static bool blank(const char *s)
{
	return s[strspn(s, " \t\r\n")] == '\0';
}

int sm_addrs_add(const char *text, GPtrArray *v)
{
	if (blank(text))
		return 0;
	InternetAddressList *l = internet_address_list_parse(NULL, text);
	if (!l)
		return -1;
	int n = list_clean(l) ? add_list(l, v) : -2;
	g_object_unref(l);
	return n;
}

/* The first mailbox of a From: value (inside a group if need be). */
static char *first_mailbox(InternetAddressList *l)
{
	for (int i = 0; i < internet_address_list_length(l); i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		if (INTERNET_ADDRESS_IS_GROUP(a)) {
			char *m = first_mailbox(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)));
			if (m)
				return m;
			continue;
		}
		const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
		if (addr && *addr && !has_ctl(addr))
			return g_strdup(addr);
	}
	return NULL;
}

/* ---- fields ------------------------------------------------------------- */

struct field {
	const char *name;
	size_t name_len;
	const char *start;          /* the field's first byte */
	size_t len;                 /* all its lines, line ends included */
};

static bool name_is(const struct field *f, const char *name)
{
	return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

/* The unfolded value (RFC 5322 §2.2.3: line ends before blanks removed);
 * only fields with a name (field_name_len) get here, so with a colon. */
static char *field_value(const struct field *f)
{
	return smtp_header_unfold(f->start, f->len);
}

/* The field's lines, each ending in CRLF. */
static void field_copy(GString *out, const struct field *f)
{
	const char *p = f->start, *end = f->start + f->len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t take = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		g_string_append_len(out, p, (gssize)line_len(p, take));
		g_string_append(out, "\r\n");
		p += take;
	}
}

static int field_addrs(const struct field *f, struct sm_header_result *r)
{
	char *v = field_value(f);
	int n = sm_addrs_add(v, r->rcpts);

	g_free(v);
	if (n < 0) {
		snprintf(r->error, sizeof(r->error), n == -2 ?
		         "the %.*s: field holds an address with a control character" :
		         "the %.*s: field holds no address that can be read",
		         (int)f->name_len, f->name);
		return -1;
	}
	return 0;
}

static void add_from(GString *out, const struct sm_header_opts *o)
{
	char *name = o->full_name && *o->full_name ? g_utf8_make_valid(o->full_name, -1) : NULL;

	/* A name is one line: control characters (a CR LF would start a
	 * field of its own) become blanks. */
	for (char *q = name; q && *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f)
			*q = ' ';
	InternetAddressList *l = internet_address_list_new();
	InternetAddress *mb = internet_address_mailbox_new(name, o->from_addr);
	GMimeFormatOptions *fo = g_mime_format_options_new();

	internet_address_list_add(l, mb);
	g_object_unref(mb);
	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	g_string_append(out, "From: ");
	internet_address_list_encode(l, fo, out); /* RFC 2047 words, folded, CRLF */
	if (out->len < 2 || out->str[out->len - 1] != '\n')
		g_string_append(out, "\r\n");
	g_mime_format_options_free(fo);
	g_object_unref(l);
	g_free(name);
}

int sm_header_process(const char *p, size_t n, const struct sm_header_opts *o,
                      struct sm_header_result *r)
{
	memset(r, 0, sizeof(*r));
	r->out = g_string_sized_new(n + 256);
	r->rcpts = g_ptr_array_new_with_free_func(g_free);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80) {
			r->eight_bit = true;
			break;
		}

	size_t pos = 0;
	while (pos < n) {
		struct field f = { .start = p + pos };
		/* The first line, then its continuation lines. */
		do {
			const char *nl = memchr(p + pos, '\n', n - pos);
			pos = nl ? (size_t)(nl - p) + 1 : n;
		} while (pos < n && (p[pos] == ' ' || p[pos] == '\t'));
		f.len = (size_t)(p + pos - f.start);
		f.name = f.start;
		f.name_len = field_name_len(f.start, line_len(f.start, f.len));
		if (f.name_len == 0) {
			/* sm_header_scan() lets no such line through; keep it. */
			field_copy(r->out, &f);
			continue;
		}
		bool bcc = name_is(&f, "Bcc") || name_is(&f, "Resent-Bcc");
		if (o->extract && (name_is(&f, "To") || name_is(&f, "Cc") || name_is(&f, "Bcc")) &&
		    field_addrs(&f, r) < 0)
			return -1;
		if (name_is(&f, "From")) {
			r->had_from = true;
			if (!r->from_addr) {
				char *v = field_value(&f);
				InternetAddressList *l = blank(v) ? NULL : internet_address_list_parse(NULL, v);
				if (l) {
					r->from_addr = first_mailbox(l);
					g_object_unref(l);
				}
				g_free(v);
			}
		}
		if (!bcc)
			field_copy(r->out, &f);
	}
	if (!r->had_from)
		add_from(r->out, o);
	return 0;
}

void sm_header_result_free(struct sm_header_result *r)
{
	if (r->out)
		g_string_free(r->out, TRUE);
	if (r->rcpts)
		g_ptr_array_unref(r->rcpts);
	g_free(r->from_addr);
	memset(r, 0, sizeof(*r));
}
