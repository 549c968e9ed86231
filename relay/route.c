/*
 * route - the verified sender domain rule (SPEC §4). See route.h.
 *
 * GMime extracts the addr-specs of a From: header, but it is built to
 * read whatever a broken mailer sent, and "be liberal in what you
 * accept" must not let a malformed header pick the route. So the value
 * is first checked against the RFC 5322 grammar here, and GMime must
 * find as many mailboxes as the grammar does, with the same domains. A
 * value that fails either check is "unparseable" and the envelope sender
 * decides (SPEC §4).
 */
#include "relay/route.h"

#include <ctype.h>
#include <gmime/gmime.h>
#include <idn2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* RFC 5321 §4.5.3.1.2: a domain has at most 255 octets. */
#define ROUTE_DOMAIN_MAX 255

static pthread_once_t route_once = PTHREAD_ONCE_INIT;

static void route_init_once(void)
{
	g_mime_init();
}

void route_init(void)
{
	pthread_once(&route_once, route_init_once);
}

const char *route_name(enum route_kind r)
{
	return r == ROUTE_SERVICE ? "service" : "direct";
}

/* ------------------------------------------------------------------ */
/* Header parsing                                                     */
/* ------------------------------------------------------------------ */

/*
 * A strict reader of the address-list grammar (RFC 5322 §3.4, with the
 * obsolete forms of §4.4 that real mailers still write: a '.' in a
 * display name, source routes, empty list elements, CFWS between the
 * parts of an addr-spec). It only counts mailboxes: GMime extracts them,
 * and the two must agree. GMime alone is too lenient for a decision:
 * it reads "a@b@c" as a@b, "a@x, <b@y" as a@x alone, and makes mailboxes
 * of stray words.
 */
struct lex {
	const char *p;
	GString *dom;           /* the domain parse_domain() read last, as written */
	GPtrArray *doms;        /* each mailbox's domain, in order (or NULL) */
};

enum {
	TOK_END = 0,
	TOK_BAD = -1,
	TOK_ATOM = 'A',
	TOK_QUOTED = 'Q',
	TOK_LITERAL = 'L',
	/* and the specials themselves: < > @ , : ; . */
};

static bool atext(unsigned char c)
{
	/* RFC 5322 §3.2.3, and UTF-8 (RFC 6532 §3.2). */
	return c >= 0x80 || isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Skips folding white space and (nested) comments; false if one is open. */
static bool skip_cfws(struct lex *lx)
{
	const char *p = lx->p;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '(')
			break;
		int depth = 0;
		do {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')')
				depth--;
			else if (*p == '\0')
				return false;
			p++;
		} while (depth);
	}
	lx->p = p;
	return true;
}

/* Skips a quoted string or domain literal that ends in close. */
static int skip_delimited(struct lex *lx, char close, int tok)
{
	const char *p = lx->p + 1;

	for (; *p != close; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '\0' || (close == ']' && *p == '['))
			return TOK_BAD;
	}
	lx->p = p + 1;
	return tok;
}

static int lex_next(struct lex *lx)
{
	if (!skip_cfws(lx))
		return TOK_BAD;
	unsigned char c = (unsigned char)*lx->p;
	if (c == '\0')
		return TOK_END;
	if (atext(c)) {
		while (atext((unsigned char)*lx->p))
			lx->p++;
		return TOK_ATOM;
	}
	if (c == '"')
		return skip_delimited(lx, '"', TOK_QUOTED);
	if (c == '[')
		return skip_delimited(lx, ']', TOK_LITERAL);
	if (strchr("<>@,:;.", c)) {
		lx->p++;
		return c;
	}
	return TOK_BAD;
}

static int lex_peek(struct lex *lx)
{
	struct lex save = *lx;
	int t = lex_next(lx);

	*lx = save;
	return t;
}

static bool is_word(int t)
{
	return t == TOK_ATOM || t == TOK_QUOTED;
}

/* lex_next(), and where the token starts. */
static int lex_next_at(struct lex *lx, const char **start)
{
	if (!skip_cfws(lx))
		return TOK_BAD;
	*start = lx->p;
	return lex_next(lx);
}

static void dom_add(struct lex *lx, const char *start, const char *end)
{
	if (lx->dom)
		g_string_append_len(lx->dom, start, end - start);
}

/*
 * dot-atom / obs-domain, or a domain literal; one trailing dot allowed.
 * The domain is kept in lx->dom as written, without CFWS and the
 * trailing dot.
 */
static bool parse_domain(struct lex *lx)
{
	const char *start;
	int t = lex_next_at(lx, &start);

	if (lx->dom)
		g_string_truncate(lx->dom, 0);
	if (t == TOK_LITERAL) {
		dom_add(lx, start, lx->p);
		return true;
	}
	if (t != TOK_ATOM)
		return false;
	dom_add(lx, start, lx->p);
	while (lex_peek(lx) == '.') {
		lex_next(lx);
		if (lex_peek(lx) != TOK_ATOM)
			return true;    /* "x.jp.": the root, compared without it */
		lex_next_at(lx, &start);
		if (lx->dom)
			g_string_append_c(lx->dom, '.');
		dom_add(lx, start, lx->p);
	}
	return true;
}

static bool parse_addr_spec(struct lex *lx)
{
	if (!is_word(lex_next(lx)))
		return false;
	while (lex_peek(lx) == '.') {
		lex_next(lx);
		if (!is_word(lex_next(lx)))
			return false;
	}
	return lex_next(lx) == '@' && parse_domain(lx);
}

/* After '<': [obs-route] addr-spec '>'. */
static bool parse_angle_addr(struct lex *lx)
{
	int t = lex_peek(lx);

	if (t == '@' || t == ',') {
		do {
			while (lex_peek(lx) == ',')
				lex_next(lx);
			if (lex_next(lx) != '@' || !parse_domain(lx))
				return false;
		} while (lex_peek(lx) == ',');
		if (lex_next(lx) != ':')
			return false;
	}
	return parse_addr_spec(lx) && lex_next(lx) == '>';
}

/* display-name: word *(word / "." / CFWS) (obs-phrase). */
static bool parse_phrase(struct lex *lx)
{
	if (!is_word(lex_next(lx)))
		return false;
	for (int t = lex_peek(lx); is_word(t) || t == '.'; t = lex_peek(lx))
		lex_next(lx);
	return true;
}

static bool list_end(int t)
{
	return t == ',' || t == ';' || t == TOK_END;
}

/* mailbox = name-addr / addr-spec */
static bool parse_mailbox(struct lex *lx)
{
	struct lex save = *lx;
	bool ok = false;

	if (lex_peek(lx) != '<') {
		ok = parse_addr_spec(lx) && list_end(lex_peek(lx));
		if (!ok) {
			*lx = save;
			if (!parse_phrase(lx))
				return false;
		}
	}
	if (!ok)
		ok = lex_next(lx) == '<' && parse_angle_addr(lx);
	if (ok && lx->doms && lx->dom)
		g_ptr_array_add(lx->doms, g_strdup(lx->dom->str));
	return ok;
}

/*
 * The number of mailboxes in an address-list, or -1 if it is malformed.
 * With doms, each mailbox's domain as written is added to it (dom is
 * the scratch space of parse_domain()).
 */
static int address_list_count(const char *s, GString *dom, GPtrArray *doms)
{
	struct lex lx = { s, dom, doms };
	int n = 0;

	for (;;) {
		while (lex_peek(&lx) == ',')
			lex_next(&lx);
		if (lex_peek(&lx) == TOK_END)
			return n;
		/* group = display-name ":" [group-list] ";" */
		struct lex save = lx;
		if (parse_phrase(&lx) && lex_next(&lx) == ':') {
			for (;;) {
				int t = lex_peek(&lx);
				if (t == ',') {
					lex_next(&lx);
				} else if (t == ';') {
					lex_next(&lx);
					break;
				} else if (parse_mailbox(&lx)) {
					n++;
					if (!list_end(lex_peek(&lx)) || lex_peek(&lx) == TOK_END)
						return -1;
				} else {
					return -1;
				}
			}
		} else {
			lx = save;
			if (!parse_mailbox(&lx))
				return -1;
			n++;
		}
		int t = lex_next(&lx);
		if (t == TOK_END)
			return n;
		if (t != ',')
			return -1;
	}
}

/* An addr-spec as GMime gives it: something '@' something, valid UTF-8. */
static bool addr_spec_ok(const char *a)
{
	const char *at = a ? strrchr(a, '@') : NULL;

	if (!at || at == a || at[1] == '\0')
		return false;
	if (!g_utf8_validate(a, -1, NULL))
		return false;
	for (const char *p = a; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Appends the mailboxes of list (groups flattened) to v; false if bad. */
static bool collect(InternetAddressList *list, GPtrArray *v)
{
	int n = internet_address_list_length(list);

	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			InternetAddressList *m = internet_address_group_get_members(
				INTERNET_ADDRESS_GROUP(ia));
			if (m && !collect(m, v))
				return false;
			continue;
		}
		if (!INTERNET_ADDRESS_IS_MAILBOX(ia))
			return false;
		const char *a = INTERNET_ADDRESS_MAILBOX(ia)->addr;
		if (!addr_spec_ok(a))
			return false;
		g_ptr_array_add(v, (gpointer)a);
	}
	return true;
}

/*
 * GMime must also read the domain the grammar reads (fuzz/regressions/
 * address/): it decodes A-labels to U-labels, and an A-label that is not
 * the one IDNA makes of its U-label ("a@xn--r8jy971d.jp", U+F9B5 for
 * U+4F8B) would be compared as another domain (xn--r8jz45g.jp, a
 * verified 例え.jp); and its loose parser may take a mailbox out of a
 * domain literal ("\xd1@[x,:shop@example.jp,...]"). dom is the domain
 * as written, without CFWS; both compare in A-label form, and a domain
 * neither can convert (a literal) is left to route_ascii(), which
 * refuses it.
 */
static bool domain_agrees(const char *a, const char *dom)
{
	const char *at = strrchr(a, '@');
	char *x = config_domain_ascii(at + 1, strlen(at + 1));
	char *y = config_domain_ascii(dom, strlen(dom));
	bool same = x && y ? strcmp(x, y) == 0 : !x && !y;

	free(x);
	free(y);
	return same;
}

int route_header_addrs(const char *value, size_t len, char ***addrs)
{
	InternetAddressList *list = NULL;
	GPtrArray *v = NULL;
	GPtrArray *doms = NULL;
	GString *dom = NULL;
	char *s = NULL;
	char **out = NULL;
	int n = -1;

	*addrs = NULL;
	if (!value || len == 0 || memchr(value, '\0', len))
		return -1;
	route_init();
	s = g_strndup(value, len);
	dom = g_string_new(NULL);
	doms = g_ptr_array_new_with_free_func(g_free);
	int want = address_list_count(s, dom, doms);
	if (want <= 0 || (int)doms->len != want)
		goto out;       /* malformed, or an empty group alone */
	/* GMime's default (loose) mode: the grammar was checked above, and
	 * its strict mode leaks memory on some malformed input (3.2.13). */
	list = internet_address_list_parse(NULL, s);
	if (!list)
		goto out;
	v = g_ptr_array_new();
	if (!collect(list, v) || (int)v->len != want)
		goto out;
	for (guint i = 0; i < v->len; i++)
		if (!domain_agrees(g_ptr_array_index(v, i), g_ptr_array_index(doms, i)))
			goto out;
	out = calloc(v->len, sizeof(*out));
	if (!out)
		goto out;
	for (guint i = 0; i < v->len; i++) {
		out[i] = strdup(g_ptr_array_index(v, i));
		if (!out[i]) {
			route_addrs_free(out, (int)i);
			out = NULL;
			goto out;
		}
	}
	*addrs = out;
	n = (int)v->len;
out:
	if (v)
		g_ptr_array_free(v, TRUE);
	if (doms)
		g_ptr_array_free(doms, TRUE);
	if (dom)
		g_string_free(dom, TRUE);
	if (list)
		g_object_unref(list);
	g_free(s);
	return n;
}

void route_addrs_free(char **addrs, int n)
{
	if (!addrs)
		return;
	for (int i = 0; i < n; i++)
		free(addrs[i]);
	free(addrs);
}

/* ------------------------------------------------------------------ */
/* Comparison form                                                    */
/* ------------------------------------------------------------------ */

static void ascii_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* A dot-atom (RFC 5322 §3.2.3), UTF-8 allowed (RFC 6532 §3.2). */
static bool dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

/*
 * The local part as compared: "quoted"@x is the same mailbox as quoted@x,
 * since the quotes are "semantically invisible" (RFC 5322 §3.2.4), so a
 * quoted string whose content is a plain dot-atom loses its quotes.
 * Anything else stays as written. Returns a malloc'd string.
 */
static char *local_form(const char *s, size_t n)
{
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		char *u = malloc(n);
		size_t k = 0;
		if (!u)
			return NULL;
		for (size_t i = 1; i < n - 1; i++) {
			if (s[i] == '\\' && i + 1 < n - 1)
				i++;
			u[k++] = s[i];
		}
		u[k] = '\0';
		if (dot_atom(u, k))
			return u;
		free(u);
	}
	return strndup(s, n);
}

char *route_ascii(const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	if (!at || at == addr)
		return NULL;
	char *dom = config_domain_ascii(at + 1, strlen(at + 1));
	if (!dom)
		return NULL;
	char *local = local_form(addr, (size_t)(at - addr));
	char *r = NULL;
	if (local) {
		/* Only ASCII letters are folded: RFC 5321 §2.4 leaves the local
		 * part's case to the receiving host, and SPEC §4 compares
		 * case-insensitively; UTF-8 case folding is no one's practice. */
		ascii_lower(local);
		if (asprintf(&r, "%s@%s", local, dom) < 0)
			r = NULL;
	}
	free(local);
	free(dom);
	return r;
}

bool route_entry_matches(const struct config_domain *e, const char *addr_ascii)
{
	const char *at = addr_ascii ? strrchr(addr_ascii, '@') : NULL;

	if (!at || !e || !e->ascii)
		return false;
	if (e->is_address)
		return strcmp(e->ascii, addr_ascii) == 0;
	const char *dom = at + 1;
	size_t dn = strlen(dom), en = strlen(e->ascii);
	if (dn == en)
		return strcmp(dom, e->ascii) == 0;
	/* A subdomain only on a label boundary (SPEC §4, table row 4). */
	return dn > en && dom[dn - en - 1] == '.' && strcmp(dom + dn - en, e->ascii) == 0;
}

/*
 * When several entries match one address ("shop.example.jp",
 * "example.jp" and "info@shop.example.jp"), the most specific one is
 * named, as Postfix looks up user@domain before domain before parent
 * domains: an address entry, else the longest domain.
 */
const struct config_domain *route_match(const struct config *cfg, const char *addr)
{
	const struct config_domain *best = NULL;
	size_t best_len = 0;
	char *a = route_ascii(addr);

	if (!a)
		return NULL;
	for (size_t i = 0; i < cfg->routing.ndomains; i++) {
		const struct config_domain *e = &cfg->routing.domains[i];
		if (!route_entry_matches(e, a))
			continue;
		if (e->is_address) {
			best = e;
			break;
		}
		size_t n = strlen(e->ascii);
		if (!best || n > best_len) {
			best = e;
			best_len = n;
		}
	}
	free(a);
	return best;
}

/* ------------------------------------------------------------------ */
/* The rule                                                           */
/* ------------------------------------------------------------------ */

void route_decide(const struct config *cfg, const char *envelope_from, const char *header_from,
                  size_t header_from_len, unsigned n_from_fields, struct route_decision *out)
{
	char **f = NULL;
	int nf = -1;
	bool null_sender = !envelope_from || !*envelope_from;

	*out = (struct route_decision){ .route = ROUTE_DIRECT };
	/* SPEC §4: with two From: fields there is no one author to verify;
	 * F is left undefined (from = NULL) and nothing matches. */
	if (n_from_fields > 1)
		return;
	if (cfg->routing.match_on == MATCH_HEADER_FROM && header_from && n_from_fields == 1)
		nf = route_header_addrs(header_from, header_from_len, &f);
	if (nf < 0) {
		/* Missing or unparseable header, or match_on = envelope_from. */
		if (null_sender)
			return;
		f = calloc(1, sizeof(*f));
		if (!f || !(f[0] = strdup(envelope_from))) {
			free(f);
			return;
		}
		nf = 1;
	}
	out->from = strdup(f[0]);

	/* A bounce (null sender) never matches and always goes direct: the
	 * service would refuse the unverified identity, and RFC 3834 §2
	 * wants replies to bounces kept to a minimum anyway. */
	const struct config_domain *first = NULL;
	bool all = !null_sender;
	for (int i = 0; all && i < nf; i++) {
		const struct config_domain *e = route_match(cfg, f[i]);
		if (!e)
			all = false;
		else if (i == 0)
			first = e;
	}
	route_addrs_free(f, nf);
	if (!all)
		return;
	out->all_matched = true;
	out->matched = first;
	if (cfg->service.host && *cfg->service.host)
		out->route = ROUTE_SERVICE;
}

void route_decision_free(struct route_decision *d)
{
	if (!d)
		return;
	free(d->from);
	d->from = NULL;
	d->matched = NULL;
}
