/* Registry authentication helpers: WWW-Authenticate challenges, docker
 * config.json credentials, base64. */
#include "internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define CHALLENGE_HEADER_MAX 8192
#define CHALLENGES_MAX 8

/* ---- base64 ---------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *oci_base64_encode(const uint8_t *in, size_t len)
{
	if (len > (SIZE_MAX - 4) / 4 * 3 - 3) {
		lt_fail("base64 input too large");
		return NULL;
	}
	char *out = lt_malloc((len + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

int oci_base64_decode(const char *in, uint8_t **out, size_t *len)
{
	size_t n = strlen(in);
	while (n && (in[n - 1] == '\n' || in[n - 1] == '\r' || in[n - 1] == ' '))
		n--;
	size_t pad = 0;
	while (n && in[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (n % 4 == 1 || (pad && (n + pad) % 4))
		return lt_fail("invalid base64 length");
	uint8_t *o = lt_malloc(n / 4 * 3 + 3);
	if (!o)
		return -1;
	size_t olen = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(in[i]);
		if (v < 0) {
			free(o);
			return lt_fail("invalid base64 character");
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[olen++] = (uint8_t)(acc >> bits);
		}
	}
	*out = o;
	*len = olen;
	return 0;
}

/* ---- WWW-Authenticate -------------------------------------------------- */

static bool is_tchar(char c)
{
	return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static size_t token_len(const char *p)
{
	size_t n = 0;
	while (is_tchar(p[n]))
		n++;
	return n;
}

/* Parses a token or quoted-string at *pp into a fresh string. */
static int parse_value(const char **pp, char **out)
{
	const char *p = *pp;
	if (*p != '"') {
		size_t n = token_len(p);
		/* token68 characters ('/', '=') appear unquoted in the wild. */
		while (p[n] == '/' || p[n] == '=' || p[n] == ':' || is_tchar(p[n]))
			n++;
		if (n == 0)
			return lt_fail("empty parameter value");
		*out = lt_strndup(p, n);
		*pp = p + n;
		return *out ? 0 : -1;
	}
	struct lt_buf b = {0};
	p++;
	while (*p && *p != '"') {
		if (*p == '\\' && p[1])
			p++;
		if (lt_buf_append(&b, p, 1) < 0)
			return -1;
		p++;
	}
	if (*p != '"') {
		lt_buf_free(&b);
		return lt_fail("unterminated quoted string");
	}
	if (lt_buf_cstr(&b) < 0)
		return -1;
	*out = (char *)b.data;
	*pp = p + 1;
	return 0;
}

void oci_challenge_free(struct oci_challenge *c)
{
	if (!c)
		return;
	free(c->realm);
	free(c->service);
	free(c->scope);
	free(c->error);
	memset(c, 0, sizeof(*c));
}

static int set_param(struct oci_challenge *c, const char *name, size_t n, char *value)
{
	char **slot = NULL;
	if (n == 5 && !strncasecmp(name, "realm", 5))
		slot = &c->realm;
	else if (n == 7 && !strncasecmp(name, "service", 7))
		slot = &c->service;
	else if (n == 5 && !strncasecmp(name, "scope", 5))
		slot = &c->scope;
	else if (n == 5 && !strncasecmp(name, "error", 5))
		slot = &c->error;
	if (!slot || *slot) {
		free(value); /* unknown or repeated: the first one wins */
		return 0;
	}
	*slot = value;
	return 0;
}

/* Parses challenges into v; returns the count or -1. */
static int parse_challenges(const char *h, struct oci_challenge *v, int max)
{
	int n = 0;
	const char *p = h;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		size_t sl = token_len(p);
		if (sl == 0 || sl >= sizeof(v[0].scheme))
			return lt_fail("malformed WWW-Authenticate header");
		if (n == max)
			break;
		struct oci_challenge *c = &v[n++];
		for (size_t i = 0; i < sl; i++)
			c->scheme[i] = (char)tolower((unsigned char)p[i]);
		c->scheme[sl] = '\0';
		p = skip_ws(p + sl);
		/* auth-params until the next scheme. */
		for (;;) {
			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			size_t nl = token_len(p);
			const char *after = skip_ws(p + nl);
			if (nl == 0 || *after != '=')
				break; /* a new challenge (or the end) */
			const char *name = p;
			p = skip_ws(after + 1);
			char *value = NULL;
			if (parse_value(&p, &value) < 0 || set_param(c, name, nl, value) < 0)
				return lt_fail_ctx("malformed WWW-Authenticate header");
			p = skip_ws(p);
			if (*p && *p != ',')
				return lt_fail("malformed WWW-Authenticate header");
		}
	}
	return n;
}

int oci_auth_parse_challenge(const char *header, struct oci_challenge *out)
{
	memset(out, 0, sizeof(*out));
	if (!header || strlen(header) > CHALLENGE_HEADER_MAX)
		return lt_fail("missing or oversized WWW-Authenticate header");
	struct oci_challenge v[CHALLENGES_MAX];
	memset(v, 0, sizeof(v));
	int n = parse_challenges(header, v, CHALLENGES_MAX);
	int pick = -1;
	for (int i = 0; i < n && pick < 0; i++)
		if (!strcmp(v[i].scheme, "bearer"))
			pick = i;
	for (int i = 0; i < n && pick < 0; i++)
		if (!strcmp(v[i].scheme, "basic"))
			pick = i;
	int rc = 0;
	if (n < 0) {
		rc = -1;
	} else if (pick < 0) {
		rc = lt_fail("unsupported authentication scheme '%s'", n ? v[0].scheme : "");
	} else if (!strcmp(v[pick].scheme, "bearer") && !v[pick].realm) {
		rc = lt_fail("Bearer challenge without a realm");
	} else {
		*out = v[pick];
		memset(&v[pick], 0, sizeof(v[pick]));
	}
	for (int i = 0; i < CHALLENGES_MAX; i++)
		oci_challenge_free(&v[i]);
	return rc;
}

/* ---- docker config.json ------------------------------------------------ */

static bool is_docker_hub(const char *h, size_t n)
{
	static const char *const names[] = {"docker.io", "index.docker.io",
					    "registry-1.docker.io", "registry.hub.docker.com"};
	for (size_t i = 0; i < LT_ARRAY_LEN(names); i++)
		if (strlen(names[i]) == n && !strncmp(h, names[i], n))
			return true;
	return false;
}

/* "https://index.docker.io/v1/" -> "index.docker.io". */
static void auth_key_host(const char *key, const char **host, size_t *n)
{
	const char *p = strstr(key, "://");
	p = p ? p + 3 : key;
	*host = p;
	*n = strcspn(p, "/");
}

static bool key_matches(const char *key, const char *registry)
{
	const char *h;
	size_t n;
	auth_key_host(key, &h, &n);
	if (strlen(registry) == n && !strncasecmp(h, registry, n))
		return true;
	return is_docker_hub(registry, strlen(registry)) && is_docker_hub(h, n);
}

static int entry_credentials(json_t *entry, const char *registry, char **user, char **pass)
{
	json_t *auth = json_object_get(entry, "auth");
	if (json_is_string(auth) && json_string_length(auth) > 0) {
		uint8_t *raw;
		size_t len;
		if (oci_base64_decode(json_string_value(auth), &raw, &len) < 0)
			return lt_fail_ctx("docker config: auth for %s", registry);
		uint8_t *colon = memchr(raw, ':', len);
		if (!colon || memchr(raw, '\0', len)) {
			free(raw);
			return lt_fail("docker config: auth for %s is not user:password", registry);
		}
		*user = lt_strndup((char *)raw, (size_t)(colon - raw));
		*pass = lt_strndup((char *)colon + 1, len - (size_t)(colon - raw) - 1);
		free(raw);
		return *user && *pass ? 0 : -1;
	}
	json_t *u = json_object_get(entry, "username"), *p = json_object_get(entry, "password");
	if (json_is_string(u) && json_is_string(p)) {
		*user = lt_strdup(json_string_value(u));
		*pass = lt_strdup(json_string_value(p));
		return *user && *pass ? 0 : -1;
	}
	return 1;
}

int oci_docker_auth_parse(const char *text, const char *registry, char **user, char **pass)
{
	*user = *pass = NULL;
	json_error_t err;
	json_t *root = json_loads(text, 0, &err);
	if (!root)
		return lt_fail("docker config: malformed JSON at line %d: %s", err.line, err.text);
	int rc = 1;
	json_t *auths = json_object_get(root, "auths");
	const char *key;
	json_t *entry;
	if (json_is_object(auths)) {
		/* An exact key wins over an alias (docker.io vs index.docker.io). */
		for (int pass_no = 0; pass_no < 2 && rc == 1; pass_no++) {
			json_object_foreach(auths, key, entry) {
				const char *h;
				size_t n;
				auth_key_host(key, &h, &n);
				bool exact = strlen(registry) == n && !strncasecmp(h, registry, n);
				if ((pass_no == 0 && !exact) || !key_matches(key, registry) ||
				    !json_is_object(entry))
					continue;
				rc = entry_credentials(entry, registry, user, pass);
				if (rc != 1)
					break;
			}
		}
	}
	if (rc == 1 && (json_object_get(root, "credsStore") || json_object_get(root, "credHelpers")))
		lt_debug("docker config: credential helpers are not supported; no credentials "
			 "for %s", registry);
	json_decref(root);
	if (rc < 0) {
		free(*user);
		free(*pass);
		*user = *pass = NULL;
	}
	return rc;
}

int oci_docker_auth_lookup(const char *registry, char **user, char **pass)
{
	*user = *pass = NULL;
	const char *dir = getenv("DOCKER_CONFIG");
	char *path;
	if (dir && *dir) {
		path = lt_path_join(dir, "config.json");
	} else {
		const char *home = getenv("HOME");
		if (!home || !*home)
			return 1;
		path = lt_sprintf("%s/.docker/config.json", home);
	}
	if (!path)
		return -1;
	if (!lt_path_exists(path)) {
		free(path);
		return 1;
	}
	char *text;
	int rc = lt_read_file(path, 1 << 20, &text, NULL);
	if (rc == 0) {
		rc = oci_docker_auth_parse(text, registry, user, pass);
		free(text);
	}
	if (rc < 0)
		lt_fail_ctx("%s", path);
	free(path);
	return rc;
}
