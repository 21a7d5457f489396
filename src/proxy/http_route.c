/* Just enough HTTP/1.x to route a connection: find the end of the request
 * head (bounded) and the Host it names. Everything else is forwarded as
 * read. Bytes come from the network: every index is bounded by len. */
#include "proxy.h"

#include <ctype.h>
#include <string.h>

static bool is_tchar(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Offset just past the blank line ending the head, or 0 if not there yet. */
static size_t head_end(const char *b, size_t len)
{
	for (size_t k = 0; k + 1 < len; k++) {
		if (b[k] != '\n')
			continue;
		if (b[k + 1] == '\n')
			return k + 2;
		if (b[k + 1] == '\r' && k + 2 < len && b[k + 2] == '\n')
			return k + 3;
	}
	return 0;
}

/* Normalises a Host value (or authority) into out: lowercase, no port, no
 * trailing dot; "[v6]" literals keep their brackets. */
static int norm_host(const char *v, size_t n, char *out, size_t out_size)
{
	while (n && (v[0] == ' ' || v[0] == '\t'))
		v++, n--;
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	size_t host_len = n;
	if (n && v[0] == '[') {
		const char *close = memchr(v, ']', n);
		if (!close)
			return lt_fail("bad IPv6 literal in Host");
		host_len = (size_t)(close - v) + 1;
	} else {
		const char *colon = memchr(v, ':', n);
		if (colon)
			host_len = (size_t)(colon - v);
	}
	if (host_len < n) { /* a port must be digits */
		if (v[host_len] != ':')
			return lt_fail("bad Host header");
		for (size_t k = host_len + 1; k < n; k++)
			if (!isdigit((unsigned char)v[k]))
				return lt_fail("bad port in Host header");
	}
	if (host_len && v[host_len - 1] == '.')
		host_len--;
	if (host_len == 0)
		return lt_fail("empty Host header");
	if (host_len >= out_size)
		return lt_fail("Host header too long");
	for (size_t k = 0; k < host_len; k++) {
		unsigned char c = (unsigned char)v[k];
		if (!(isalnum(c) || c == '-' || c == '.' || c == '_' || c == ':' || c == '[' ||
		      c == ']'))
			return lt_fail("invalid character in Host header");
		out[k] = (char)tolower(c);
	}
	out[host_len] = '\0';
	return 0;
}

static int bad(int *status, int code)
{
	*status = code;
	return -1;
}

int lt_http_find_host(const char *buf, size_t len, size_t max, char *host, size_t host_size,
		      size_t *head_len, int *status)
{
	*status = 0;
	size_t scan = len < max ? len : max;
	size_t end = head_end(buf, scan);
	if (!end) {
		if (len >= max) {
			lt_fail("request head larger than %zu bytes", max);
			return bad(status, 431);
		}
		return 0;
	}
	*head_len = end;
	/* request line: METHOD SP TARGET SP HTTP/1.x */
	const char *p = buf, *eol = memchr(buf, '\n', end);
	size_t k = 0, line = (size_t)(eol - p);
	if (line && p[line - 1] == '\r')
		line--;
	while (k < line && is_tchar((unsigned char)p[k]))
		k++;
	if (k == 0 || k >= line || p[k] != ' ') {
		lt_fail("malformed request line");
		return bad(status, 400);
	}
	size_t t0 = ++k;
	while (k < line && p[k] != ' ')
		k++;
	size_t t1 = k;
	if (t1 == t0 || k >= line || line - k - 1 != 8 || memcmp(p + k + 1, "HTTP/1.", 7) ||
	    !isdigit((unsigned char)p[k + 8])) {
		lt_fail("not an HTTP/1.x request");
		return bad(status, 400);
	}
	bool have = false;
	/* absolute-form target: its authority wins over Host (RFC 9112 3.2.2) */
	static const char *const schemes[] = {"http://", "https://"};
	for (size_t s = 0; s < 2; s++) {
		size_t sl = strlen(schemes[s]);
		if (t1 - t0 > sl && !strncasecmp(p + t0, schemes[s], sl)) {
			size_t a0 = t0 + sl, a1 = a0;
			while (a1 < t1 && p[a1] != '/' && p[a1] != '?')
				a1++;
			const char *at = memchr(p + a0, '@', a1 - a0);
			if (at)
				a0 = (size_t)(at - p) + 1;
			if (norm_host(p + a0, a1 - a0, host, host_size) < 0)
				return bad(status, 400);
			have = true;
		}
	}
	/* header fields */
	int hosts = 0;
	const char *q = eol + 1;
	const char *stop = buf + end;
	while (q < stop) {
		const char *nl = memchr(q, '\n', (size_t)(stop - q));
		size_t n = (size_t)(nl - q);
		if (n && q[n - 1] == '\r')
			n--;
		if (n == 0)
			break; /* the blank line */
		if (q[0] == ' ' || q[0] == '\t') {
			lt_fail("obsolete header line folding");
			return bad(status, 400);
		}
		const char *colon = memchr(q, ':', n);
		if (!colon || colon == q) {
			lt_fail("malformed header line");
			return bad(status, 400);
		}
		size_t nl_name = (size_t)(colon - q);
		for (size_t j = 0; j < nl_name; j++)
			if (!is_tchar((unsigned char)q[j])) {
				lt_fail("malformed header name");
				return bad(status, 400);
			}
		if (nl_name == 4 && !strncasecmp(q, "host", 4)) {
			if (++hosts > 1) {
				lt_fail("more than one Host header");
				return bad(status, 400);
			}
			if (!have) {
				char tmp[256];
				if (norm_host(colon + 1, n - nl_name - 1, tmp, sizeof(tmp)) < 0)
					return bad(status, 400);
				if (strlen(tmp) >= host_size) {
					lt_fail("Host header too long");
					return bad(status, 400);
				}
				strcpy(host, tmp);
			}
		}
		q = nl + 1;
	}
	if (!have && hosts == 0) {
		lt_fail("missing Host header");
		return bad(status, 400);
	}
	return 1;
}
