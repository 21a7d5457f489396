/* libmicrohttpd glue: one MHD daemon per listening socket (the unix
 * socket; optionally TCP with a bearer token), a thread per connection.
 * Request bodies are collected up to DMN_BODY_MAX (+1 to detect excess,
 * then 413) and handed to dmn_api_handle(). Streamed replies block in
 * MHD's content reader, which is allowed in thread-per-connection mode.
 */
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

int dmn_api_exists(struct dmn *d, const char *what, bool app, json_t **sources);

struct srv {
	struct dmn *d;
	char *token; /* TCP only */
};

struct req {
	struct lt_buf body;
	bool too_big;
};

/* ---- client liveness ----------------------------------------------------------- */

static bool client_gone(int fd)
{
	if (fd < 0)
		return false;
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int conn_fd(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

/* ---- streamed replies -------------------------------------------------------------- */

struct sctx {
	struct dmn *d;
	struct dmn_stream *s;
	int fd;
	bool sse;
	uint64_t last_write;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sctx *x = cls;
	(void)pos;
	for (;;) {
		ssize_t n = dmn_stream_read(x->s, buf, max, 500);
		if (n > 0) {
			x->last_write = lt_now_ns();
			return n;
		}
		if (n < 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (client_gone(x->fd)) {
			dmn_stream_detach(x->s);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (x->sse && atomic_load(&x->d->stopping))
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (x->sse && lt_now_ns() - x->last_write > LT_SEC(15) && max >= 8) {
			x->last_write = lt_now_ns();
			memcpy(buf, ": ping\n\n", 8);
			return 8;
		}
	}
}

static void stream_free(void *cls)
{
	struct sctx *x = cls;
	dmn_stream_detach(x->s);
	dmn_stream_unref(x->s);
	free(x);
}

/* ---- log followers -------------------------------------------------------------------- */

struct lsrc {
	char id[96];
	char path[DMN_PATH_MAX];
	off_t off;
	char part[512]; /* an unfinished line */
	size_t plen;
};

struct fctx {
	struct dmn *d;
	char what[128];
	bool app;
	int fd;
	struct lsrc src[64];
	size_t n;
	struct lt_buf out;
	size_t out_off;
	uint64_t last_check;
};

static void add_sources(struct fctx *x, json_t *sources)
{
	size_t i;
	json_t *s;
	json_array_foreach(sources, i, s) {
		const char *id = json_string_value(json_object_get(s, "id"));
		const char *path = json_string_value(json_object_get(s, "path"));
		if (!id || !path)
			continue;
		bool known = false;
		for (size_t k = 0; k < x->n; k++)
			known |= !strcmp(x->src[k].id, id);
		if (known || x->n == LT_ARRAY_LEN(x->src))
			continue;
		struct lsrc *l = &x->src[x->n++];
		memset(l, 0, sizeof(*l));
		snprintf(l->id, sizeof(l->id), "%s", id);
		snprintf(l->path, sizeof(l->path), "%s", path);
		/* at most the last MiB of what is there already */
		struct stat st;
		l->off = 0;
		if (stat(path, &st) == 0 && st.st_size > (off_t)(1 << 20))
			l->off = st.st_size - (1 << 20);
	}
}

static void emit_line(struct fctx *x, struct lsrc *l, const char *s, size_t n)
{
	if (x->app)
		lt_buf_printf(&x->out, "[%s] ", l->id);
	lt_buf_append(&x->out, s, n);
	lt_buf_append(&x->out, "\n", 1);
}

static void poll_source(struct fctx *x, struct lsrc *l)
{
	FILE *f = fopen(l->path, "re");
	if (!f)
		return;
	if (fseeko(f, l->off, SEEK_SET) < 0) {
		fclose(f);
		return;
	}
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && x->out.len < (1u << 20)) {
		l->off += (off_t)n;
		for (size_t k = 0; k < n; k++) {
			if (buf[k] == '\n' || l->plen == sizeof(l->part)) {
				emit_line(x, l, l->part, l->plen);
				l->plen = 0;
				if (buf[k] == '\n')
					continue;
			}
			if (buf[k] != '\r')
				l->part[l->plen++] = buf[k];
		}
	}
	fclose(f);
}

static ssize_t follow_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct fctx *x = cls;
	(void)pos;
	for (;;) {
		if (x->out_off < x->out.len) {
			size_t n = x->out.len - x->out_off;
			n = n < max ? n : max;
			memcpy(buf, x->out.data + x->out_off, n);
			x->out_off += n;
			if (x->out_off == x->out.len)
				x->out.len = x->out_off = 0;
			return (ssize_t)n;
		}
		for (size_t k = 0; k < x->n; k++)
			poll_source(x, &x->src[k]);
		if (x->out.len)
			continue;
		if (client_gone(x->fd) || atomic_load(&x->d->stopping))
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (lt_now_ns() - x->last_check > LT_MS(1000)) {
			x->last_check = lt_now_ns();
			json_t *srcs = NULL;
			int alive = dmn_api_exists(x->d, x->what, x->app, &srcs);
			if (alive <= 0) {
				/* one last read, then the end */
				for (size_t k = 0; k < x->n; k++)
					poll_source(x, &x->src[k]);
				if (x->out.len)
					continue;
				return MHD_CONTENT_READER_END_OF_STREAM;
			}
			if (srcs)
				add_sources(x, srcs);
			json_decref(srcs);
		}
		usleep(200000);
	}
}

static void follow_free(void *cls)
{
	struct fctx *x = cls;
	lt_buf_free(&x->out);
	free(x);
}

/* ---- the handler ------------------------------------------------------------------------ */

static enum MHD_Result send_reply(struct MHD_Connection *c, struct dmn *d, struct dmn_reply *r)
{
	struct MHD_Response *resp = NULL;
	if (r->stream) {
		struct sctx *x = lt_calloc(1, sizeof(*x));
		if (x) {
			x->d = d;
			x->s = r->stream;
			r->stream = NULL;
			x->fd = conn_fd(c);
			x->sse = r->content_type && strstr(r->content_type, "event-stream");
			x->last_write = lt_now_ns();
			resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
								 stream_read, x, stream_free);
			if (!resp)
				stream_free(x);
		}
	} else if (r->follow_on) {
		struct fctx *x = lt_calloc(1, sizeof(*x));
		if (x) {
			x->d = d;
			x->fd = conn_fd(c);
			snprintf(x->what, sizeof(x->what), "%s", r->follow_what);
			/* an app name is followed with every instance, prefixed */
			x->app = json_array_size(r->follow) != 1 ||
				 strcmp(json_string_value(json_object_get(json_array_get(r->follow, 0),
									  "id")),
					r->follow_what);
			add_sources(x, r->follow);
			x->last_check = lt_now_ns();
			resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
								 follow_read, x, follow_free);
			if (!resp)
				follow_free(x);
		}
	} else {
		char *body;
		size_t len;
		if (r->text) {
			body = r->text;
			len = strlen(body);
			r->text = NULL;
		} else {
			char *s = json_dumps(r->json, JSON_INDENT(2));
			body = s ? lt_sprintf("%s\n", s) : NULL;
			free(s);
			len = body ? strlen(body) : 0;
		}
		if (body)
			resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			free(body);
	}
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type",
				r->content_type ? r->content_type : "application/json");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	enum MHD_Result rc = MHD_queue_response(c, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
	struct dmn_reply r = {.status = (int)status,
			      .json = json_pack("{s:s}", "error", msg),
			      .content_type = "application/json"};
	enum MHD_Result rc = send_reply(c, NULL, &r);
	dmn_reply_free(&r);
	return rc;
}

struct qb {
	struct lt_buf b;
	bool bad;
};

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
				     const char *value)
{
	struct qb *q = cls;
	(void)kind;
	if (strchr(key, '&') || strchr(key, '=') || (value && strchr(value, '&')))
		q->bad = true;
	else if (lt_buf_printf(&q->b, "%s%s=%s", q->b.len ? "&" : "", key, value ? value : "") < 0)
		q->bad = true;
	return q->b.len > 1024 ? MHD_NO : MHD_YES;
}

static bool token_ok(struct MHD_Connection *c, const char *token)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!h || strncmp(h, "Bearer ", 7))
		return false;
	h += 7;
	size_t a = strlen(h), b = strlen(token);
	unsigned diff = (unsigned)(a ^ b);
	for (size_t k = 0; k < b; k++)
		diff |= (unsigned)(unsigned char)token[k] ^ (unsigned)(unsigned char)(k < a ? h[k] : 0);
	return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct srv *srv = cls;
	(void)version;
	struct req *rq = *con_cls;
	if (!rq) {
		rq = lt_calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		rq->body.limit = DMN_BODY_MAX;
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!rq->too_big && lt_buf_append(&rq->body, upload_data, *upload_data_size) < 0)
			rq->too_big = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (srv->token && !token_ok(c, srv->token))
		return send_error(c, 401, "missing or wrong bearer token");
	if (rq->too_big) {
		char msg[96];
		snprintf(msg, sizeof(msg), "request body too large (at most %d bytes)", DMN_BODY_MAX);
		return send_error(c, 413, msg);
	}
	struct qb q = {0};
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_query, &q);
	if (q.bad) {
		lt_buf_free(&q.b);
		return send_error(c, 400, "malformed query string");
	}
	lt_buf_cstr(&q.b);
	struct dmn_reply r;
	dmn_api_handle(srv->d, method, url, q.b.data ? (char *)q.b.data : "",
		       rq->body.data ? (char *)rq->body.data : "", rq->body.len, &r);
	lt_buf_free(&q.b);
	enum MHD_Result rc = send_reply(c, srv->d, &r);
	dmn_reply_free(&r);
	return rc;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct req *rq = *con_cls;
	if (rq) {
		lt_buf_free(&rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	lt_warn("ignitiond: http: %s", buf);
}

static struct {
	struct MHD_Daemon *m;
	struct srv *srv;
} servers[4];

static struct MHD_Daemon *start(struct dmn *d, int fd, const char *token)
{
	struct srv *srv = lt_calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	srv->d = d;
	srv->token = token ? lt_strdup(token) : NULL;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	struct MHD_Daemon *m = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_LISTEN_SOCKET, fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)256, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
	if (!m) {
		free(srv->token);
		free(srv);
		lt_fail("cannot start the HTTP server (libmicrohttpd)");
		return NULL;
	}
	/* MHD keeps a pointer to srv: freed with the daemon */
	for (size_t k = 0; k < LT_ARRAY_LEN(servers); k++)
		if (!servers[k].m) {
			servers[k].m = m;
			servers[k].srv = srv;
			break;
		}
	return m;
}

struct MHD_Daemon *dmn_http_start_unix(struct dmn *d, int listen_fd)
{
	return start(d, listen_fd, NULL);
}

struct MHD_Daemon *dmn_http_start_tcp(struct dmn *d, int listen_fd, const char *token)
{
	if (!token || !*token) {
		lt_fail("a TCP API needs --token");
		return NULL;
	}
	return start(d, listen_fd, token);
}

void dmn_http_quiesce(struct MHD_Daemon *m)
{
	if (m) {
		int fd = MHD_quiesce_daemon(m);
		if (fd >= 0)
			close(fd);
	}
}

void dmn_http_stop(struct MHD_Daemon *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m);
	for (size_t k = 0; k < LT_ARRAY_LEN(servers); k++)
		if (servers[k].m == m) {
			free(servers[k].srv->token);
			free(servers[k].srv);
			servers[k].m = NULL;
			servers[k].srv = NULL;
		}
}
