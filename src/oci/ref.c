/* Image references (Docker normalisation, distribution-spec grammar),
 * digests and platforms. */
#include "internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#define NAME_TOTAL_MAX 255 /* distribution: domain + "/" + repository */
#define TAG_MAX 128

bool oci_digest_valid(const char *d)
{
	if (!d || strncmp(d, "sha256:", 7))
		return false;
	const char *h = d + 7;
	for (int i = 0; i < 64; i++)
		if (!isdigit((unsigned char)h[i]) && !(h[i] >= 'a' && h[i] <= 'f'))
			return false;
	return h[64] == '\0';
}

int oci_digest_prefix_len(const char *s)
{
	if (!strncmp(s, "sha256:", 7))
		s += 7;
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return -1;
	return (int)n;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return isalnum((unsigned char)c) != 0;
}

/* domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
static bool domain_component_ok(const char *s, size_t n)
{
	if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool ipv6_ok(const char *s, size_t n)
{
	if (n < 2 || n > 45)
		return false;
	int colons = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ':')
			colons++;
		else if (!isxdigit((unsigned char)s[i]) && s[i] != '.')
			return false;
	}
	return colons >= 2;
}

int oci_ref_check_domain(const char *d)
{
	const char *host_end;
	if (d[0] == '[') {
		const char *close = strchr(d, ']');
		if (!close || !ipv6_ok(d + 1, (size_t)(close - d - 1)))
			return lt_fail("invalid IPv6 registry address '%s'", d);
		host_end = close + 1;
		if (*host_end && *host_end != ':')
			return lt_fail("invalid registry '%s'", d);
	} else {
		host_end = strchr(d, ':');
		if (!host_end)
			host_end = d + strlen(d);
		const char *p = d;
		while (p < host_end) {
			const char *dot = memchr(p, '.', (size_t)(host_end - p));
			const char *end = dot ? dot : host_end;
			if (!domain_component_ok(p, (size_t)(end - p)))
				return lt_fail("invalid registry host '%.*s'", (int)(host_end - d), d);
			p = dot ? dot + 1 : host_end;
			if (dot && p == host_end)
				return lt_fail("invalid registry host '%.*s'", (int)(host_end - d), d);
		}
	}
	if (*host_end == ':') {
		const char *port = host_end + 1;
		size_t n = strlen(port);
		if (n == 0 || n > 5 || strspn(port, "0123456789") != n || atoi(port) > 65535 ||
		    atoi(port) == 0)
			return lt_fail("invalid registry port in '%s'", d);
	}
	return 0;
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*
 * separator := [_.] | __ | [-]+ */
static bool path_component_ok(const char *s, size_t n)
{
	size_t i = 0;
	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	while (i < n) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && !is_lower_alnum(s[j]))
			j++;
		size_t len = j - i;
		bool ok = (len == 1 && (s[i] == '_' || s[i] == '.' || s[i] == '-')) ||
			  (len == 2 && s[i] == '_' && s[i + 1] == '_') ||
			  strspn(s + i, "-") >= len;
		if (!ok)
			return false;
		i = j;
	}
	return true;
}

int oci_ref_check_repository(const char *r)
{
	if (!*r)
		return lt_fail("empty repository name");
	for (const char *c = r; *c; c++)
		if (isupper((unsigned char)*c))
			return lt_fail("repository name '%s' must be lowercase", r);
	const char *p = r;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (!path_component_ok(p, n))
			return lt_fail("invalid repository name component '%.*s'", (int)n, p);
		if (!slash)
			break;
		p = slash + 1;
	}
	return 0;
}

/* tag := [\w][\w.-]{0,127} */
int oci_ref_check_tag(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > TAG_MAX)
		return lt_fail("invalid tag '%s' (1-%d characters)", t, TAG_MAX);
	if (!is_alnum(t[0]) && t[0] != '_')
		return lt_fail("invalid tag '%s'", t);
	for (size_t i = 1; i < n; i++)
		if (!is_alnum(t[i]) && !strchr("_.-", t[i]))
			return lt_fail("invalid tag '%s'", t);
	return 0;
}

static bool looks_like_domain(const char *s, size_t n)
{
	if (n == 9 && !strncmp(s, "localhost", 9))
		return true;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '.' || s[i] == ':' || s[i] == '[' || isupper((unsigned char)s[i]))
			return true;
	return false;
}

static int ref_split(const char *s, struct oci_ref *out)
{
	char *work = lt_strdup(s);
	if (!work)
		return -1;
	char *at = strchr(work, '@');
	if (at) {
		*at = '\0';
		if (!oci_digest_valid(at + 1)) {
			lt_fail("invalid digest '%.80s' (want sha256: and 64 lowercase hex)", at + 1);
			free(work);
			return -1;
		}
		out->digest = lt_strdup(at + 1);
	}
	char *slash = strrchr(work, '/');
	char *colon = strrchr(work, ':');
	bool has_tag = colon && (!slash || colon > slash);
	if (has_tag) {
		*colon = '\0';
		out->tag = lt_strdup(colon + 1);
	}
	char *name = work;
	size_t first = strcspn(name, "/");
	if (name[first] == '/' && looks_like_domain(name, first)) {
		out->registry = lt_strndup(name, first);
		out->repository = lt_strdup(name + first + 1);
	} else {
		out->registry = lt_strdup("docker.io");
		out->repository = lt_strdup(name);
	}
	free(work);
	if (!out->registry || !out->repository || (at && !out->digest) ||
	    (has_tag && !out->tag))
		return -1;
	return 0;
}

static int ref_normalize(struct oci_ref *r)
{
	if (!strcmp(r->registry, "index.docker.io") ||
	    !strcmp(r->registry, "registry-1.docker.io")) {
		free(r->registry);
		if (!(r->registry = lt_strdup("docker.io")))
			return -1;
	}
	if (!strcmp(r->registry, "docker.io") && !strchr(r->repository, '/')) {
		char *lib = lt_sprintf("library/%s", r->repository);
		if (!lib)
			return -1;
		free(r->repository);
		r->repository = lib;
	}
	if (!r->tag && !r->digest && !(r->tag = lt_strdup("latest")))
		return -1;
	return 0;
}

int oci_ref_parse(const char *s, struct oci_ref *out)
{
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return lt_fail("empty image reference");
	if (strlen(s) > 1024)
		return lt_fail("image reference is too long");
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return lt_fail("invalid reference '%.64s': contains whitespace or "
				       "non-ASCII characters", s);
	if (oci_digest_prefix_len(s) == 64 && strncmp(s, "sha256:", 7))
		return lt_fail("invalid reference '%s': a 64-character hex string is an "
			       "image ID, not a name", s);
	int rc = ref_split(s, out);
	if (rc == 0)
		rc = ref_normalize(out);
	if (rc == 0 && (rc = oci_ref_check_domain(out->registry)) == 0 &&
	    (rc = oci_ref_check_repository(out->repository)) == 0 && out->tag)
		rc = oci_ref_check_tag(out->tag);
	if (rc == 0 && strlen(out->registry) + 1 + strlen(out->repository) > NAME_TOTAL_MAX)
		rc = lt_fail("repository name is longer than %d characters", NAME_TOTAL_MAX);
	if (rc < 0) {
		oci_ref_free(out);
		return lt_fail_ctx("invalid reference '%.200s'", s);
	}
	return 0;
}

char *oci_ref_string(const struct oci_ref *r)
{
	return lt_sprintf("%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
			  r->tag ? r->tag : "", r->digest ? "@" : "",
			  r->digest ? r->digest : "");
}

void oci_ref_free(struct oci_ref *r)
{
	if (!r)
		return;
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

/* ---- platform -------------------------------------------------------- */

static bool token_ok(const char *s, size_t n)
{
	if (n == 0 || n >= sizeof(((struct oci_platform *)0)->os))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
			return false;
	return true;
}

static void copy_lower(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)s[i]);
	dst[n] = '\0';
}

static bool is_known_os(const char *s)
{
	static const char *const oses[] = {"linux", "windows", "darwin", "freebsd"};
	for (size_t i = 0; i < LT_ARRAY_LEN(oses); i++)
		if (!strcmp(s, oses[i]))
			return true;
	return false;
}

void oci_platform_normalize(struct oci_platform *p)
{
	char *a = p->arch, *v = p->variant;
	if (!strcmp(a, "x86_64") || !strcmp(a, "x86-64")) {
		strcpy(a, "amd64");
	} else if (!strcmp(a, "aarch64")) {
		strcpy(a, "arm64");
	} else if (!strcmp(a, "armhf")) {
		strcpy(a, "arm");
		strcpy(v, "v7");
	} else if (!strcmp(a, "armel")) {
		strcpy(a, "arm");
		strcpy(v, "v6");
	} else if (!strcmp(a, "i386") || !strcmp(a, "i686")) {
		strcpy(a, "386");
	}
	/* Bare numbers are accepted as variants ("arm/7"). */
	if (isdigit((unsigned char)v[0]) && strlen(v) + 2 <= sizeof(p->variant)) {
		char tmp[sizeof(p->variant)];
		snprintf(tmp, sizeof(tmp), "v%.30s", v);
		strcpy(v, tmp);
	}
	if (!strcmp(a, "arm64") && (!strcmp(v, "v8") || !strcmp(v, "v8.0")))
		v[0] = '\0';
	else if (!strcmp(a, "amd64") && !strcmp(v, "v1"))
		v[0] = '\0';
	else if (!strcmp(a, "arm") && !v[0])
		strcpy(v, "v7");
}

int oci_platform_parse(const char *s, struct oci_platform *out)
{
	memset(out, 0, sizeof(*out));
	const char *parts[3] = {0};
	size_t lens[3] = {0};
	int n = 0;
	const char *p = s;
	if (!s || !*s)
		return lt_fail("empty platform (want os/arch[/variant], e.g. linux/amd64)");
	for (;;) {
		if (n == 3)
			return lt_fail("invalid platform '%s' (want os/arch[/variant])", s);
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (!token_ok(p, len))
			return lt_fail("invalid platform '%s' (want os/arch[/variant])", s);
		parts[n] = p;
		lens[n++] = len;
		if (!slash)
			break;
		p = slash + 1;
	}
	if (n == 1) {
		char one[32];
		copy_lower(one, sizeof(one), parts[0], lens[0]);
		struct oci_platform host;
		oci_platform_host(&host);
		if (is_known_os(one)) {
			snprintf(out->os, sizeof(out->os), "%s", one);
			snprintf(out->arch, sizeof(out->arch), "%s", host.arch);
			snprintf(out->variant, sizeof(out->variant), "%s", host.variant);
		} else {
			snprintf(out->os, sizeof(out->os), "linux");
			snprintf(out->arch, sizeof(out->arch), "%s", one);
		}
	} else {
		copy_lower(out->os, sizeof(out->os), parts[0], lens[0]);
		copy_lower(out->arch, sizeof(out->arch), parts[1], lens[1]);
		if (n == 3)
			copy_lower(out->variant, sizeof(out->variant), parts[2], lens[2]);
	}
	oci_platform_normalize(out);
	return 0;
}

void oci_platform_host(struct oci_platform *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->os, sizeof(out->os), "linux");
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(out->arch, sizeof(out->arch), "%.31s", u.machine);
	else
		snprintf(out->arch, sizeof(out->arch), "amd64");
	if (!strncmp(out->arch, "armv", 4) && isdigit((unsigned char)out->arch[4])) {
		snprintf(out->variant, sizeof(out->variant), "v%c", out->arch[4]);
		snprintf(out->arch, sizeof(out->arch), "arm");
	}
	oci_platform_normalize(out);
}

const char *oci_platform_string(const struct oci_platform *p, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s%s%s", p->os[0] ? p->os : "?", p->arch[0] ? p->arch : "?",
		 p->variant[0] ? "/" : "", p->variant);
	return buf;
}

/* Variant level for arches whose variants are ordered ("v7" -> 7; amd64's
 * implicit v1); -1 when not comparable. */
static int variant_level(const struct oci_platform *p)
{
	const char *v = p->variant;
	if (!v[0])
		return !strcmp(p->arch, "amd64") ? 1 : -1;
	if (v[0] != 'v' || !isdigit((unsigned char)v[1]) || v[2])
		return -1;
	return v[1] - '0';
}

int oci_platform_score(const struct oci_platform *want_in, const struct oci_platform *have_in)
{
	struct oci_platform want = *want_in, have = *have_in;
	oci_platform_normalize(&want);
	oci_platform_normalize(&have);
	if (strcmp(want.os, have.os) || strcmp(want.arch, have.arch))
		return 0;
	if (!strcmp(want.variant, have.variant))
		return 100;
	/* Older variants of arm and amd64 run on newer CPUs: prefer the
	 * newest one that does. */
	if (!strcmp(want.arch, "arm") || !strcmp(want.arch, "amd64")) {
		int w = variant_level(&want), h = variant_level(&have);
		if (w > 0 && h > 0 && h < w)
			return 10 + h;
	}
	return 0;
}
