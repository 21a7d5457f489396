/* The registry client (libcurl) and `pull`: index -> platform -> manifest
 * -> config and layers, every byte verified before it is stored. */
#include "internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HTTP_RETRIES 4
#define REDIRECTS_MAX 5
#define ERR_BODY_MAX (64 * 1024)
#define TOKEN_MAX (1 << 20)
#define PING_BODY_MAX (64 * 1024)
#define HEADER_VALUE_MAX 8192

#define MANIFEST_ACCEPT                                                              \
	"Accept: " MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST

struct reg {
	struct oci_ref ref;
	bool insecure;
	CURL *curl;
	char *base; /* scheme://host of the registry, once chosen */
	char *auth; /* "Authorization: ..." for the registry's origin */
	char *user, *pass;
	int creds; /* 0 not looked up, 1 present, -1 none */
	struct lt_progress *prog;
	FILE *out;
	bool quiet;
};

/* One HTTP exchange: where the body goes and what came back. */
struct xfer {
	struct reg *r;
	const char *accept;           /* full "Accept: ..." line or NULL */
	struct lt_buf *buf;           /* a 2xx body goes here (buf->limit bounds it), */
	struct oci_blob_writer *w;    /* or here, bounded by expect */
	uint64_t expect;
	int item;                     /* progress item or -1 */
	/* response */
	long status;
	bool ok; /* 2xx */
	char *content_type, *www_auth, *retry_after, *docker_digest, *content_range;
	int64_t content_length;
	struct lt_buf err; /* a non-2xx body (bounded) */
	char abort_msg[512];
	char curl_err[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void xfer_clear_response(struct xfer *x)
{
	free(x->content_type);
	free(x->www_auth);
	free(x->retry_after);
	free(x->docker_digest);
	free(x->content_range);
	x->content_type = x->www_auth = x->retry_after = x->docker_digest = NULL;
	x->content_range = NULL;
	lt_buf_free(&x->err);
	memset(&x->err, 0, sizeof(x->err));
	x->status = 0;
	x->ok = false;
	x->content_length = -1;
	x->abort_msg[0] = '\0';
	x->curl_err[0] = '\0';
}

static bool header_is(const char *line, size_t n, const char *name, const char **value,
		      size_t *vlen)
{
	size_t nl = strlen(name);
	if (n <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
		return false;
	const char *v = line + nl + 1;
	const char *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	*value = v;
	*vlen = (size_t)(end - v);
	return true;
}

static void keep_header(char **slot, const char *v, size_t n)
{
	if (*slot || n > HEADER_VALUE_MAX)
		return; /* the first one wins; absurd values are ignored */
	*slot = strndup(v, n);
}

/* Checks, once headers are complete, that a blob response fits the
 * descriptor, and sets up a resumed or restarted download. */
static bool blob_headers_done(struct xfer *x)
{
	uint64_t have = oci_blob_written(x->w);
	if (x->status == 206) {
		unsigned long long from = 0, to = 0;
		if (!x->content_range ||
		    sscanf(x->content_range, "bytes %llu-%llu/", &from, &to) != 2 || from != have) {
			snprintf(x->abort_msg, sizeof(x->abort_msg),
				 "bad Content-Range '%s' resuming at byte %llu",
				 x->content_range ? x->content_range : "",
				 (unsigned long long)have);
			return false;
		}
	} else if (have > 0 && oci_blob_reset(x->w) < 0) {
		snprintf(x->abort_msg, sizeof(x->abort_msg), "%s", lt_errmsg());
		return false;
	}
	uint64_t left = x->expect - oci_blob_written(x->w);
	if (x->content_length >= 0 && (uint64_t)x->content_length > left) {
		snprintf(x->abort_msg, sizeof(x->abort_msg),
			 "server announces %lld bytes for a blob of %llu bytes",
			 (long long)x->content_length, (unsigned long long)x->expect);
		return false;
	}
	return true;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	const char *v;
	size_t vl;
	if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
		/* A new response (after a 100 Continue): forget the last one. */
		xfer_clear_response(x);
		const char *sp = memchr(line, ' ', n);
		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->ok = x->status >= 200 && x->status < 300;
	} else if (header_is(line, n, "Content-Type", &v, &vl)) {
		keep_header(&x->content_type, v, vl);
	} else if (header_is(line, n, "WWW-Authenticate", &v, &vl)) {
		keep_header(&x->www_auth, v, vl);
	} else if (header_is(line, n, "Retry-After", &v, &vl)) {
		keep_header(&x->retry_after, v, vl);
	} else if (header_is(line, n, "Docker-Content-Digest", &v, &vl)) {
		keep_header(&x->docker_digest, v, vl);
	} else if (header_is(line, n, "Content-Range", &v, &vl)) {
		keep_header(&x->content_range, v, vl);
	} else if (header_is(line, n, "Content-Length", &v, &vl)) {
		char tmp[32];
		if (vl < sizeof(tmp)) {
			memcpy(tmp, v, vl);
			tmp[vl] = '\0';
			char *end;
			long long cl = strtoll(tmp, &end, 10);
			x->content_length = (*end || cl < 0) ? -1 : cl;
		}
	} else if ((n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n')) {
		if (x->ok && x->status != 100 && x->w && !blob_headers_done(x))
			return 0; /* aborts the transfer */
		if (x->ok && x->buf && x->content_length > 0 && x->buf->limit &&
		    (uint64_t)x->content_length > x->buf->limit) {
			snprintf(x->abort_msg, sizeof(x->abort_msg),
				 "response of %lld bytes exceeds the limit of %zu",
				 (long long)x->content_length, x->buf->limit);
			return 0;
		}
	}
	return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	if (!x->ok) {
		size_t room = ERR_BODY_MAX - x->err.len;
		lt_buf_append(&x->err, p, n < room ? n : room);
		return n;
	}
	if (x->w) {
		if (n > x->expect - oci_blob_written(x->w)) {
			snprintf(x->abort_msg, sizeof(x->abort_msg),
				 "body exceeds the descriptor size of %llu bytes",
				 (unsigned long long)x->expect);
			return 0;
		}
		if (oci_blob_write(x->w, p, n) < 0) {
			snprintf(x->abort_msg, sizeof(x->abort_msg), "%s", lt_errmsg());
			return 0;
		}
		if (x->item >= 0)
			lt_progress_update(x->r->prog, x->item, oci_blob_written(x->w));
		return n;
	}
	if (x->buf && lt_buf_append(x->buf, p, n) < 0) {
		snprintf(x->abort_msg, sizeof(x->abort_msg), "%s", lt_errmsg());
		return 0;
	}
	return n;
}

/* Failures worth retrying. A refused connection is not one: nothing is
 * listening, and waiting only delays the error. */
static bool curl_transient(CURLcode c)
{
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static bool status_retryable(long s)
{
	return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* scheme, host and port equal (so credentials may be sent). */
static bool same_origin(const char *a, const char *b)
{
	CURLU *ua = curl_url(), *ub = curl_url();
	char *pa[3] = {0}, *pb[3] = {0};
	static const CURLUPart parts[3] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
	bool same = ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
		    curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK;
	for (int i = 0; same && i < 3; i++) {
		same = curl_url_get(ua, parts[i], &pa[i], CURLU_DEFAULT_PORT) == CURLUE_OK &&
		       curl_url_get(ub, parts[i], &pb[i], CURLU_DEFAULT_PORT) == CURLUE_OK &&
		       !strcasecmp(pa[i], pb[i]);
	}
	for (int i = 0; i < 3; i++) {
		curl_free(pa[i]);
		curl_free(pb[i]);
	}
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}

/* Performs one exchange. Returns 0 when a response arrived (any status). */
static int http_once(struct reg *r, const char *url, struct xfer *x, const char *auth_line,
		     bool *transient)
{
	struct curl_slist *h = NULL;
	char range[64] = "";
	bool verify = !r->insecure && !oci_host_is_loopback(r->ref.registry);
	*transient = false;
	xfer_clear_response(x);
	if (x->buf)
		x->buf->len = 0;
	if (x->w && oci_blob_written(x->w) > 0)
		snprintf(range, sizeof(range), "Range: bytes=%llu-",
			 (unsigned long long)oci_blob_written(x->w));
	const char *lines[] = {"User-Agent: lttle/0.1", x->accept, auth_line,
			       range[0] ? range : NULL};
	for (size_t i = 0; i < LT_ARRAY_LEN(lines); i++) {
		if (!lines[i])
			continue;
		struct curl_slist *t = curl_slist_append(h, lines[i]);
		if (!t) {
			curl_slist_free_all(h);
			return lt_fail("out of memory building request headers");
		}
		h = t;
	}
	CURL *c = r->curl;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->curl_err);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	/* Registries on loopback or marked insecure are trusted without a
	 * verified certificate, as Docker does. */
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(h);
	if (rc == CURLE_OK)
		return 0;
	if (x->abort_msg[0])
		return lt_fail("%s", x->abort_msg);
	*transient = curl_transient(rc);
	if (rc == CURLE_PARTIAL_FILE && x->w)
		return lt_fail("truncated transfer (%llu of %llu bytes): %s",
			       (unsigned long long)oci_blob_written(x->w),
			       (unsigned long long)x->expect,
			       x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc));
	return lt_fail("%s", x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc));
}

static int authenticate(struct reg *r, const char *header);

/* GETs url with retries, redirects and (for registry requests) the auth
 * challenge dance. auth_line, if given, goes only to auth_origin. On
 * return x->status holds the final status. */
static int http_get(struct reg *r, const char *start_url, struct xfer *x, bool registry,
		    const char *auth_line, const char *auth_origin)
{
	char *url = lt_strdup(start_url);
	int attempt = 0, redirects = 0, reauth = 0;
	int rc = url ? 0 : -1;
	while (rc == 0) {
		const char *line = registry ? r->auth : auth_line;
		const char *origin = registry ? r->base : auth_origin;
		bool send = line && origin && same_origin(url, origin);
		bool transient;
		rc = http_once(r, url, x, send ? line : NULL, &transient);
		if (rc < 0) {
			if (transient && attempt < HTTP_RETRIES) {
				lt_debug("GET %s: %s; retrying", url, lt_errmsg());
				sleep_ms(oci_retry_delay_ms(attempt++, NULL));
				rc = 0;
				continue;
			}
			break;
		}
		/* A challenge from the registry itself (not from a redirect
		 * target): authenticate once and try again. */
		if (x->status == 401 && registry && reauth == 0 && same_origin(url, r->base)) {
			reauth++;
			rc = authenticate(r, x->www_auth);
			continue;
		}
		if (x->status >= 300 && x->status < 400 && x->status != 304) {
			char *next = NULL;
			curl_easy_getinfo(r->curl, CURLINFO_REDIRECT_URL, &next);
			if (!next) {
				rc = lt_fail("HTTP %ld redirect without a Location", x->status);
				break;
			}
			if (++redirects > REDIRECTS_MAX) {
				rc = lt_fail("too many redirects");
				break;
			}
			if (!oci_url_allowed(next, r->insecure)) {
				rc = lt_fail("redirect to %.200s refused: plain HTTP is only used for "
					     "loopback hosts or with --insecure", next);
				break;
			}
			lt_debug("GET %s: redirected to %s", url, next);
			free(url);
			url = lt_strdup(next);
			rc = url ? 0 : -1;
			continue;
		}
		if (status_retryable(x->status) && attempt < HTTP_RETRIES) {
			long ms = oci_retry_delay_ms(attempt++, x->retry_after);
			lt_debug("GET %s: HTTP %ld; retrying in %ld ms", url, x->status, ms);
			sleep_ms(ms);
			/* Start over: a redirect target may have been short-lived. */
			free(url);
			url = lt_strdup(start_url);
			redirects = 0;
			rc = url ? 0 : -1;
			continue;
		}
		break;
	}
	free(url);
	return rc;
}

/* "HTTP 404 MANIFEST_UNKNOWN: manifest unknown" from a registry error body. */
static int http_error(struct reg *r, const struct xfer *x)
{
	const char *code = NULL, *msg = NULL;
	json_t *root = NULL;
	if (x->err.len) {
		root = json_loadb((const char *)x->err.data, x->err.len, 0, NULL);
		json_t *e0 = json_array_get(json_object_get(root, "errors"), 0);
		code = json_string_value(json_object_get(e0, "code"));
		msg = json_string_value(json_object_get(e0, "message"));
	}
	char hint[160] = "";
	if (x->status == 401 || x->status == 403)
		snprintf(hint, sizeof(hint), r->creds > 0 ? " (the credentials for %s were rejected)"
				     : " (no credentials for %s in the docker config)",
			 r->ref.registry);
	int rc = lt_fail("HTTP %ld%s%.64s%s%.200s%s", x->status, code ? " " : "", code ? code : "",
			 msg ? ": " : "", msg ? msg : "", hint);
	json_decref(root);
	return rc;
}

/* ---- authentication --------------------------------------------------- */

static void load_creds(struct reg *r)
{
	if (r->creds)
		return;
	int rc = oci_docker_auth_lookup(r->ref.registry, &r->user, &r->pass);
	if (rc < 0) {
		lt_warn("%s; continuing without credentials", lt_errmsg());
		lt_clear_error();
	}
	r->creds = rc == 0 ? 1 : -1;
}

static char *basic_line(const char *user, const char *pass)
{
	char *raw = lt_sprintf("%s:%s", user, pass);
	if (!raw)
		return NULL;
	char *enc = oci_base64_encode((const uint8_t *)raw, strlen(raw));
	explicit_bzero(raw, strlen(raw));
	free(raw);
	if (!enc)
		return NULL;
	char *line = lt_sprintf("Authorization: Basic %s", enc);
	free(enc);
	return line;
}

static bool token_ok(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 16384)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] >= 0x7f)
			return false;
	return true;
}

/* realm?service=S&scope=A&scope=B (each space-separated scope apart). */
static char *token_url(struct reg *r, const struct oci_challenge *c)
{
	struct lt_buf b = {0};
	char *def_scope = NULL;
	const char *scope = c->scope;
	if (!scope)
		scope = def_scope = lt_sprintf("repository:%s:pull", r->ref.repository);
	if (!scope || lt_buf_printf(&b, "%s", c->realm) < 0)
		goto fail;
	char sep = strchr(c->realm, '?') ? '&' : '?';
	if (c->service) {
		char *e = curl_easy_escape(r->curl, c->service, 0);
		int rc = e ? lt_buf_printf(&b, "%cservice=%s", sep, e) : -1;
		curl_free(e);
		if (rc < 0)
			goto fail;
		sep = '&';
	}
	for (const char *p = scope; *p;) {
		size_t n = strcspn(p, " ");
		if (n) {
			char *e = curl_easy_escape(r->curl, p, (int)n);
			int rc = e ? lt_buf_printf(&b, "%cscope=%s", sep, e) : -1;
			curl_free(e);
			if (rc < 0)
				goto fail;
			sep = '&';
		}
		p += n;
		while (*p == ' ')
			p++;
	}
	free(def_scope);
	if (lt_buf_cstr(&b) < 0)
		return NULL;
	return (char *)b.data;
fail:
	free(def_scope);
	lt_buf_free(&b);
	lt_fail("cannot build the token URL");
	return NULL;
}

static int fetch_token(struct reg *r, const struct oci_challenge *c)
{
	if (!oci_url_allowed(c->realm, r->insecure))
		return lt_fail("token realm %.200s refused: it is not HTTPS", c->realm);
	load_creds(r);
	char *url = token_url(r, c);
	char *basic = r->creds > 0 ? basic_line(r->user, r->pass) : NULL;
	struct lt_buf body = {.limit = TOKEN_MAX};
	struct xfer x = {.r = r, .buf = &body, .item = -1};
	int rc = url && (r->creds <= 0 || basic) ? 0 : -1;
	if (rc == 0)
		rc = http_get(r, url, &x, false, basic, url);
	if (rc == 0 && !x.ok)
		rc = http_error(r, &x);
	json_t *root = NULL;
	if (rc == 0) {
		root = json_loadb((const char *)body.data, body.len, 0, NULL);
		const char *tok = json_string_value(json_object_get(root, "token"));
		if (!tok || !*tok)
			tok = json_string_value(json_object_get(root, "access_token"));
		if (!tok || !token_ok(tok))
			rc = lt_fail("the token server's answer has no usable token");
		else {
			free(r->auth);
			r->auth = lt_sprintf("Authorization: Bearer %s", tok);
			rc = r->auth ? 0 : -1;
		}
	}
	json_decref(root);
	xfer_clear_response(&x);
	lt_buf_free(&body);
	if (basic)
		explicit_bzero(basic, strlen(basic));
	free(basic);
	free(url);
	return rc < 0 ? lt_fail_ctx("token request to %.200s", c->realm) : 0;
}

static int authenticate(struct reg *r, const char *header)
{
	struct oci_challenge c;
	if (!header)
		return lt_fail("HTTP 401 without a WWW-Authenticate challenge");
	if (oci_auth_parse_challenge(header, &c) < 0)
		return -1;
	int rc;
	if (!strcmp(c.scheme, "basic")) {
		load_creds(r);
		if (r->creds <= 0) {
			rc = lt_fail("authentication required (no credentials for %s in the docker "
				     "config)", r->ref.registry);
		} else {
			free(r->auth);
			r->auth = basic_line(r->user, r->pass);
			rc = r->auth ? 0 : -1;
		}
	} else {
		rc = fetch_token(r, &c);
	}
	oci_challenge_free(&c);
	return rc;
}

/* ---- endpoint --------------------------------------------------------- */

static int reg_ping(struct reg *r)
{
	char *url = lt_sprintf("%s/v2/", r->base);
	struct lt_buf body = {.limit = PING_BODY_MAX};
	struct xfer x = {.r = r, .buf = &body, .item = -1};
	int rc = url ? http_get(r, url, &x, true, NULL, NULL) : -1;
	if (rc < 0 && x.status == 0)
		rc = -2; /* no HTTP answer at all */
	else if (rc == 0 && !x.ok)
		rc = http_error(r, &x);
	xfer_clear_response(&x);
	lt_buf_free(&body);
	free(url);
	return rc;
}

/* Picks https, or http for loopback/insecure registries that do not speak
 * TLS, by pinging /v2/ (which also settles authentication early). */
static int reg_connect(struct reg *r)
{
	const char *schemes[2];
	int n = oci_registry_schemes(r->ref.registry, r->insecure, schemes);
	int rc = -1;
	for (int i = 0; i < n; i++) {
		free(r->base);
		r->base = lt_sprintf("%s://%s", schemes[i], oci_registry_api_host(r->ref.registry));
		if (!r->base)
			return -1;
		rc = reg_ping(r);
		if (rc == 0)
			return 0;
		/* Any HTTP answer means the scheme works: never downgrade then. */
		if (rc == -2 && i + 1 < n) {
			lt_debug("%s: %s; trying %s", r->base, lt_errmsg(), schemes[i + 1]);
			continue;
		}
		break;
	}
	return lt_fail_ctx("%s", r->base);
}

/* ---- manifests and blobs ---------------------------------------------- */

static int fetch_manifest(struct reg *r, const char *reference, struct lt_buf *body,
			  char digest[OCI_DIGEST_MAX], struct oci_manifest *m)
{
	char *url = lt_sprintf("%s/v2/%s/manifests/%s", r->base, r->ref.repository, reference);
	struct xfer x = {.r = r, .buf = body, .item = -1, .accept = MANIFEST_ACCEPT};
	body->limit = OCI_MANIFEST_MAX;
	int rc = url ? http_get(r, url, &x, true, NULL, NULL) : -1;
	free(url);
	if (rc == 0 && !x.ok)
		rc = http_error(r, &x);
	char hex[LT_SHA256_HEX];
	if (rc == 0 && (rc = lt_sha256_hex(body->data, body->len, hex)) == 0)
		snprintf(digest, OCI_DIGEST_MAX, "sha256:%s", hex);
	if (rc == 0 && oci_digest_valid(reference) && strcmp(reference, digest))
		rc = lt_fail("digest mismatch: requested %s, got %s", reference, digest);
	if (rc == 0 && x.docker_digest && oci_digest_valid(x.docker_digest) &&
	    strcmp(x.docker_digest, digest))
		rc = lt_fail("digest mismatch: Docker-Content-Digest says %s, content is %s",
			     x.docker_digest, digest);
	if (rc == 0)
		rc = oci_manifest_parse(body->data, body->len, x.content_type, m);
	xfer_clear_response(&x);
	return rc < 0 ? lt_fail_ctx("manifest %s", reference) : 0;
}

/* Follows indexes down to the single-platform manifest for want. */
static int resolve_manifest(struct reg *r, const struct oci_platform *want, struct lt_buf *body, char digest[OCI_DIGEST_MAX], struct oci_manifest *m)
{
	const char *reference = r->ref.digest ? r->ref.digest : r->ref.tag;
	char next[OCI_DIGEST_MAX];
	snprintf(next, sizeof(next), "%s", reference);
	for (int depth = 0;; depth++) {
		if (fetch_manifest(r, next, body, digest, m) < 0)
			return -1;
		if (m->kind == OCI_KIND_MANIFEST)
			break;
		if (depth >= OCI_INDEX_DEPTH) {
			oci_manifest_free(m);
			return lt_fail("indexes nested too deeply");
		}
		int i = oci_index_select(m, want);
		if (i < 0) {
			oci_manifest_free(m);
			return -1;
		}
		snprintf(next, sizeof(next), "%s", m->manifests[i].digest);
		oci_manifest_free(m);
	}
	return 0;
}

static int fetch_blob_buf(struct reg *r, const struct oci_desc *d, struct lt_buf *body)
{
	char *url = lt_sprintf("%s/v2/%s/blobs/%s", r->base, r->ref.repository, d->digest);
	struct xfer x = {.r = r, .buf = body, .item = -1};
	body->limit = d->size;
	int rc = url ? http_get(r, url, &x, true, NULL, NULL) : -1;
	free(url);
	if (rc == 0 && !x.ok)
		rc = http_error(r, &x);
	if (rc == 0 && body->len != d->size)
		rc = lt_fail("truncated: got %zu of %llu bytes", body->len,
			     (unsigned long long)d->size);
	xfer_clear_response(&x);
	return rc;
}

/* The config, from the store when a previous pull left it there. */
static int fetch_config(struct reg *r, struct oci_store *s, const struct oci_desc *d,
			struct lt_buf *body)
{
	if (oci_store_has_blob_sized(s, d->digest, (int64_t)d->size)) {
		char *data;
		size_t n;
		if (oci_store_read_blob(s, d->digest, OCI_MANIFEST_MAX, &data, &n) == 0) {
			body->data = (uint8_t *)data;
			body->len = body->cap = n;
			return 0;
		}
		lt_warn("%s; downloading it again", lt_errmsg());
	}
	return fetch_blob_buf(r, d, body);
}

static int fetch_layer(struct reg *r, struct oci_store *s, const struct oci_desc *d)
{
	char label[32];
	snprintf(label, sizeof(label), "%.12s", d->digest + 7);
	int item = lt_progress_add(r->prog, label, d->size);
	if (oci_store_has_blob_sized(s, d->digest, (int64_t)d->size)) {
		lt_progress_done(r->prog, item, "already exists");
		return 0;
	}
	struct oci_blob_writer *w;
	if (oci_blob_begin(s, d->size ? d->size : 1, &w) < 0)
		return -1;
	char *url = lt_sprintf("%s/v2/%s/blobs/%s", r->base, r->ref.repository, d->digest);
	struct xfer x = {.r = r, .w = w, .expect = d->size, .item = item};
	int rc = url ? http_get(r, url, &x, true, NULL, NULL) : -1;
	free(url);
	if (rc == 0 && !x.ok)
		rc = http_error(r, &x);
	if (rc == 0 && oci_blob_written(w) != d->size)
		rc = lt_fail("truncated: got %llu of %llu bytes",
			     (unsigned long long)oci_blob_written(w), (unsigned long long)d->size);
	xfer_clear_response(&x);
	if (rc == 0) {
		rc = oci_blob_commit(w, d->digest, (int64_t)d->size, NULL);
	} else {
		oci_blob_abort(w);
	}
	lt_progress_done(r->prog, item, rc == 0 ? "pull complete" : "failed");
	return rc < 0 ? lt_fail_ctx("layer %s", d->digest) : 0;
}

static int pull_image(struct reg *r, struct oci_store *s, const struct oci_platform *want,
		      bool explicit_pf, char digest[OCI_DIGEST_MAX])
{
	struct lt_buf body = {0}, cfg = {0};
	struct oci_manifest m = {0};
	int rc = reg_connect(r);
	if (rc == 0)
		rc = resolve_manifest(r, want, &body, digest, &m);
	if (rc == 0 && (rc = oci_manifest_check_image(&m)) < 0)
		lt_fail_ctx("manifest %s", digest);
	if (rc == 0 && (rc = fetch_config(r, s, &m.config, &cfg)) < 0)
		lt_fail_ctx("config %s", m.config.digest);
	if (rc == 0 && (rc = oci_config_check((char *)cfg.data, cfg.len, &m, want, explicit_pf)) == 0 &&
	    (rc = oci_store_put(s, cfg.data, cfg.len, m.config.digest, NULL)) < 0)
		lt_fail_ctx("config %s", m.config.digest);
	for (size_t i = 0; rc == 0 && i < m.n_layers; i++)
		rc = fetch_layer(r, s, &m.layers[i]);
	if (rc == 0 && (rc = oci_store_put(s, body.data, body.len, digest, NULL)) < 0)
		lt_fail_ctx("manifest %s", digest);
	if (rc == 0) {
		char *canon = oci_ref_string(&r->ref);
		rc = canon ? oci_store_tag(s, canon, digest) : -1;
		free(canon);
	}
	oci_manifest_free(&m);
	lt_buf_free(&body);
	lt_buf_free(&cfg);
	return rc;
}

int oci_pull(struct oci_store *s, const char *input, const struct oci_pull_opts *o,
	     char digest[OCI_DIGEST_MAX])
{
	static const struct oci_pull_opts defaults = {0};
	struct reg r = {0};
	struct oci_platform want;
	char local_digest[OCI_DIGEST_MAX];
	if (!o)
		o = &defaults;
	if (!digest)
		digest = local_digest;
	if (oci_ref_parse(input, &r.ref) < 0)
		return -1;
	int rc = o->platform ? oci_platform_parse(o->platform, &want) : 0;
	if (!o->platform)
		oci_platform_host(&want);
	pthread_once(&curl_once, curl_init);
	if (rc == 0 && curl_init_rc != CURLE_OK)
		rc = lt_fail("cannot initialise libcurl");
	r.insecure = o->insecure;
	r.out = o->progress ? o->progress : stderr;
	r.quiet = o->quiet;
	if (rc == 0 && !(r.curl = curl_easy_init()))
		rc = lt_fail("cannot create a libcurl handle");
	if (rc == 0 && !(r.prog = lt_progress_new(r.out, o->quiet)))
		rc = -1;
	if (rc == 0 && (rc = oci_store_lock(s, false)) == 0) {
		if (!o->quiet) {
			char *canon = oci_ref_string(&r.ref);
			char pf[100];
			fprintf(r.out, "Pulling %s (%s)\n", canon ? canon : input,
				oci_platform_string(&want, pf, sizeof(pf)));
			fflush(r.out);
			free(canon);
		}
		rc = pull_image(&r, s, &want, o->platform != NULL, digest);
		oci_store_unlock(s);
	}
	lt_progress_free(r.prog);
	if (r.curl)
		curl_easy_cleanup(r.curl);
	if (r.pass)
		explicit_bzero(r.pass, strlen(r.pass));
	if (r.auth)
		explicit_bzero(r.auth, strlen(r.auth));
	free(r.user);
	free(r.pass);
	free(r.auth);
	free(r.base);
	oci_ref_free(&r.ref);
	return rc < 0 ? lt_fail_ctx("%s", input) : 0;
}
