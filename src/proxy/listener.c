/* Listeners and the per-connection glue: accept -> (HTTP: read the head,
 * route by Host) -> acquire an instance through the pool -> forward.
 *
 * Refusals never hang a client: in TCP mode the socket is closed after the
 * reason is logged; in HTTP mode the client gets 503 (or 404 for an unknown
 * host, 400/431 for a bad head, 408 when the head is too slow) and the
 * socket is closed after a short lingering read, so the response is not
 * lost to a reset.
 */
#include "proxy_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINGER_TIMEOUT LT_SEC(2)
#define LINGER_MAX_BYTES (256 * 1024)
#define EMFILE_PAUSE LT_MS(100)
#define REFUSAL_LOGS_PER_SEC 20

struct lt_proxy {
	struct lt_loop *loop;
	struct lt_pool *pool;
	struct lt_proxy_config cfg;
	struct lt_forwarder *fw;
	struct lt_list listeners;
	struct lt_list conns;
	uint32_t nconns;
	bool accept_paused;
	struct lt_timer resume_accept;
	/* counters for lt_proxy_metrics */
	uint64_t accepted, tcp_refused, forward_failed;
	uint64_t http_status[6]; /* 400 404 408 431 503 other */
	/* refusal log rate limit */
	uint64_t log_window;
	uint32_t log_count, log_suppressed;
};

struct route {
	struct lt_list link;
	char host[256];
	struct lt_app *app;
	uint16_t port;
};

struct lt_listener {
	struct lt_list link;
	struct lt_proxy *px;
	struct lt_watch w;
	int fd;
	bool http;
	struct lt_app *app; /* TCP mode */
	uint16_t guest_port;
	struct lt_list routes; /* HTTP mode */
	uint16_t port;
	char name[80];
};

enum pc_phase { PX_HEAD, PX_ACQUIRE, PX_FORWARD, PX_LINGER };

struct pconn {
	struct lt_list link;
	struct lt_proxy *px;
	struct lt_listener *l; /* PX_HEAD only */
	enum pc_phase phase;
	int fd;
	struct lt_watch w;
	bool watching;
	bool http;
	struct lt_app *app;
	uint16_t port;
	struct lt_pool_conn *pc;
	struct lt_fwd *fwd;
	char *head;
	size_t head_len;
	size_t linger_read;
	struct lt_timer timer;
	char peer[64];
	char app_name[64];
};

void lt_proxy_config_defaults(struct lt_proxy_config *c)
{
	lt_fwd_limits_defaults(&c->fwd);
	c->http_head_timeout = LT_SEC(10);
	c->http_head_max = 8192;
	c->accept_batch = 64;
}

/* ---- logging ------------------------------------------------------------------ */

static void log_refusal(struct lt_proxy *px, const struct pconn *c, const char *why)
{
	uint64_t now = lt_loop_now(px->loop);
	if (now - px->log_window >= LT_SEC(1)) {
		if (px->log_suppressed)
			lt_warn("proxy: %u more refusals not logged", px->log_suppressed);
		px->log_window = now;
		px->log_count = 0;
		px->log_suppressed = 0;
	}
	if (px->log_count++ >= REFUSAL_LOGS_PER_SEC) {
		px->log_suppressed++;
		return;
	}
	lt_warn("proxy: %s%s%s: refused %s: %s", c->app_name[0] ? "app " : "", c->app_name,
		c->app_name[0] ? "" : "http", c->peer, why);
}

/* ---- connection teardown --------------------------------------------------------- */

static void accept_resume_check(struct lt_proxy *px);

static void pconn_free(struct pconn *c)
{
	struct lt_proxy *px = c->px;
	lt_timer_cancel(lt_loop_clock(px->loop), &c->timer);
	if (c->watching)
		lt_watch_del(&c->w);
	if (c->fd >= 0)
		close(c->fd);
	if (c->pc)
		lt_pool_conn_cancel(c->pc);
	list_del(&c->link);
	px->nconns--;
	free(c->head);
	free(c);
	accept_resume_check(px);
}

static void linger_read(struct lt_watch *w, uint32_t events)
{
	struct pconn *c = list_entry(w, struct pconn, w);
	(void)events;
	char buf[4096];
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n > 0) {
			c->linger_read += (size_t)n;
			if (c->linger_read > LINGER_MAX_BYTES)
				break;
			continue;
		}
		if (n < 0 && errno == EAGAIN)
			return;
		break; /* EOF or error */
	}
	pconn_free(c);
}

static void timer_fired(struct lt_timer *t);

/* Writes a short HTTP response, then drains the request before closing so
 * the client reads the response rather than a reset. */
static void count_status(struct lt_proxy *px, int status)
{
	static const int codes[] = {400, 404, 408, 431, 503};
	size_t k = 0;
	while (k < LT_ARRAY_LEN(codes) && codes[k] != status)
		k++;
	px->http_status[k]++;
}

static void http_reply(struct pconn *c, int status, const char *reason, const char *body)
{
	count_status(c->px, status);
	char resp[1024];
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s\n",
			 status, reason, strlen(body) + 1,
			 status == 503 ? "Retry-After: 1\r\n" : "", body);
	if (n < 0 || (size_t)n >= sizeof(resp))
		n = snprintf(resp, sizeof(resp),
			     "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			     status, reason);
	/* a fresh socket's buffer takes a short reply whole; else give up */
	ssize_t w = send(c->fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w != n || shutdown(c->fd, SHUT_WR) < 0) {
		pconn_free(c);
		return;
	}
	c->phase = PX_LINGER;
	if (c->watching) {
		if (lt_watch_mod(&c->w, EPOLLIN) < 0) {
			pconn_free(c);
			return;
		}
		c->w.fn = linger_read;
	} else {
		if (lt_watch_add(c->px->loop, &c->w, c->fd, EPOLLIN, linger_read) < 0) {
			pconn_free(c);
			return;
		}
		c->watching = true;
	}
	lt_timer_arm_in(lt_loop_clock(c->px->loop), &c->timer, LINGER_TIMEOUT);
}

static void refuse(struct pconn *c, int status, const char *reason, const char *why)
{
	log_refusal(c->px, c, why);
	if (c->http) {
		http_reply(c, status, reason, why);
	} else {
		c->px->tcp_refused++;
		pconn_free(c);
	}
}

static void timer_fired(struct lt_timer *t)
{
	struct pconn *c = list_entry(t, struct pconn, timer);
	if (c->phase == PX_HEAD)
		refuse(c, 408, "Request Timeout", "request head not received in time");
	else
		pconn_free(c);
}

/* ---- acquire and forward ------------------------------------------------------------ */

static void fwd_done(void *ctx, const struct lt_fwd_stats *st, const char *why)
{
	struct pconn *c = ctx;
	c->fd = -1; /* the forwarder closed it */
	if (c->pc) {
		lt_pool_conn_release(c->pc, st->bytes_up, st->bytes_down);
		c->pc = NULL;
	}
	if (why)
		lt_info("proxy: app %s: %s: connection ended: %s (%llu up, %llu down)",
			c->app_name, c->peer, why, (unsigned long long)st->bytes_up,
			(unsigned long long)st->bytes_down);
	c->fwd = NULL;
	pconn_free(c);
}

static void acq_ready(void *ctx, struct lt_pool_conn *pc, int fd)
{
	struct pconn *c = ctx;
	c->pc = pc;
	if (c->watching) {
		lt_watch_del(&c->w);
		c->watching = false;
	}
	lt_timer_cancel(lt_loop_clock(c->px->loop), &c->timer);
	c->fwd = lt_fwd_start(c->px->fw, c->fd, fd, c->head, c->head_len, fwd_done, c);
	if (!c->fwd) {
		lt_warn("proxy: app %s: cannot forward %s: %s", c->app_name, c->peer,
			lt_errmsg());
		c->px->forward_failed++;
		close(fd);
		lt_pool_conn_release(pc, 0, 0);
		c->pc = NULL;
		if (c->http)
			http_reply(c, 503, "Service Unavailable", "proxy overloaded");
		else
			pconn_free(c);
		return;
	}
	c->phase = PX_FORWARD;
	free(c->head);
	c->head = NULL;
	c->head_len = 0;
}

static void acq_refused(void *ctx, const char *reason)
{
	struct pconn *c = ctx;
	c->pc = NULL;
	refuse(c, 503, "Service Unavailable", reason);
}

static void acq_lost(void *ctx, const char *reason)
{
	struct pconn *c = ctx;
	c->pc = NULL;
	if (c->fwd)
		lt_fwd_abort(c->fwd, true, reason); /* frees c through fwd_done */
	else
		pconn_free(c);
}

static const struct lt_acquire_ops acq_ops = {acq_ready, acq_refused, acq_lost};

/* Client gone (reset) while waiting for an instance. */
static void waiting_event(struct lt_watch *w, uint32_t events)
{
	struct pconn *c = list_entry(w, struct pconn, w);
	if (events & (EPOLLHUP | EPOLLERR))
		pconn_free(c);
}

static void start_acquire(struct pconn *c, struct lt_app *app, uint16_t port)
{
	c->app = app;
	c->port = port;
	snprintf(c->app_name, sizeof(c->app_name), "%s", lt_app_name(app));
	c->phase = PX_ACQUIRE;
	c->l = NULL;
	lt_timer_cancel(lt_loop_clock(c->px->loop), &c->timer);
	struct lt_pool_conn *pc = lt_app_acquire(app, port, &acq_ops, c);
	if (!pc) {
		char why[256];
		snprintf(why, sizeof(why), "%s", lt_errmsg());
		refuse(c, 503, "Service Unavailable", why);
		return;
	}
	c->pc = pc;
	/* Only errors matter now; pending request bytes stay in the socket. */
	if (c->watching) {
		if (lt_watch_mod(&c->w, 0) == 0) {
			c->w.fn = waiting_event;
			return;
		}
	} else if (lt_watch_add(c->px->loop, &c->w, c->fd, 0, waiting_event) == 0) {
		c->watching = true;
		return;
	}
	lt_warn("proxy: %s", lt_errmsg());
	pconn_free(c);
}

/* ---- HTTP head ------------------------------------------------------------------------ */

static struct route *find_route(struct lt_listener *l, const char *host)
{
	for (struct lt_list *p = l->routes.next; p != &l->routes; p = p->next) {
		struct route *r = list_entry(p, struct route, link);
		if (!strcmp(r->host, host))
			return r;
	}
	return NULL;
}

static void head_readable(struct lt_watch *w, uint32_t events)
{
	struct pconn *c = list_entry(w, struct pconn, w);
	size_t max = c->px->cfg.http_head_max;
	bool eof = false;
	(void)events;
	for (;;) {
		ssize_t n = read(c->fd, c->head + c->head_len, max - c->head_len);
		if (n < 0) {
			if (errno == EAGAIN)
				break;
			if (errno == EINTR)
				continue;
			pconn_free(c);
			return;
		}
		if (n == 0) {
			/* a client may send its request and half-close at once;
			 * EOF stays readable for the forwarder */
			eof = true;
			break;
		}
		c->head_len += (size_t)n;
		if (c->head_len == max)
			break;
	}
	char host[256];
	size_t hl = 0;
	int status = 0;
	int rc = lt_http_find_host(c->head, c->head_len, max, host, sizeof(host), &hl, &status);
	if (rc == 0) {
		if (eof) /* closed before sending a whole head */
			pconn_free(c);
		return;
	}
	if (rc < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", lt_errmsg());
		refuse(c, status, status == 431 ? "Request Header Fields Too Large" : "Bad Request",
		       why);
		return;
	}
	struct route *r = find_route(c->l, host);
	if (!r) {
		char why[320];
		snprintf(why, sizeof(why), "no app serves host '%s'", host);
		log_refusal(c->px, c, why);
		http_reply(c, 404, "Not Found", why);
		return;
	}
	start_acquire(c, r->app, r->port);
}

/* ---- accept ----------------------------------------------------------------------------- */

static void set_listen_events(struct lt_proxy *px, uint32_t ev)
{
	for (struct lt_list *p = px->listeners.next; p != &px->listeners; p = p->next) {
		struct lt_listener *l = list_entry(p, struct lt_listener, link);
		if (lt_watch_mod(&l->w, ev) < 0)
			lt_warn("proxy: %s", lt_errmsg());
	}
}

static void accept_pause(struct lt_proxy *px)
{
	if (!px->accept_paused) {
		px->accept_paused = true;
		set_listen_events(px, 0);
	}
}

static void accept_resume_check(struct lt_proxy *px)
{
	uint32_t max = px->cfg.fwd.max_conns;
	if (px->accept_paused && !lt_timer_armed(&px->resume_accept) &&
	    (!max || px->nconns < max)) {
		px->accept_paused = false;
		set_listen_events(px, EPOLLIN);
	}
}

static void resume_accept_fired(struct lt_timer *t)
{
	struct lt_proxy *px = list_entry(t, struct lt_proxy, resume_accept);
	accept_resume_check(px);
}

static void peer_name(int fd, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char a[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
			port = ntohs(s->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
			port = ntohs(s->sin6_port);
		}
	}
	snprintf(out, n, "%s:%d", a, port);
}

static void accept_one(struct lt_listener *l, int fd)
{
	struct lt_proxy *px = l->px;
	struct pconn *c = lt_calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->px = px;
	c->fd = fd;
	c->http = l->http;
	lt_timer_init(&c->timer, timer_fired);
	list_add_tail(&px->conns, &c->link);
	px->nconns++;
	px->accepted++;
	if (lt_log_get_level() >= LT_LOG_WARN)
		peer_name(fd, c->peer, sizeof(c->peer));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!l->http) {
		start_acquire(c, l->app, l->guest_port);
		return;
	}
	c->phase = PX_HEAD;
	c->l = l;
	c->head = lt_malloc(px->cfg.http_head_max);
	if (!c->head || lt_watch_add(px->loop, &c->w, fd, EPOLLIN, head_readable) < 0) {
		pconn_free(c);
		return;
	}
	c->watching = true;
	lt_timer_arm_in(lt_loop_clock(px->loop), &c->timer, px->cfg.http_head_timeout);
}

static void on_accept(struct lt_watch *w, uint32_t events)
{
	struct lt_listener *l = list_entry(w, struct lt_listener, w);
	struct lt_proxy *px = l->px;
	(void)events;
	for (uint32_t k = 0; k < px->cfg.accept_batch; k++) {
		uint32_t max = px->cfg.fwd.max_conns;
		if (max && px->nconns >= max) {
			lt_warn("proxy: %u connections open (the limit): not accepting for now",
				px->nconns);
			accept_pause(px);
			return;
		}
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				lt_warn("proxy: accept on %s: %s; pausing accepts", l->name,
					strerror(errno));
				accept_pause(px);
				lt_timer_arm_in(lt_loop_clock(px->loop), &px->resume_accept,
						EMFILE_PAUSE);
				return;
			}
			continue; /* ECONNABORTED and friends: that client is gone */
		}
		accept_one(l, fd);
	}
}

/* ---- addresses --------------------------------------------------------------------------- */

static int parse_port(const char *s, bool allow_zero, uint16_t *out)
{
	uint64_t v;
	if (!*s || lt_parse_u64(s, &v) < 0 || v > 65535 || (!allow_zero && v == 0))
		return lt_fail("bad port '%s'", s);
	*out = (uint16_t)v;
	return 0;
}

int lt_parse_listen_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	char host[INET6_ADDRSTRLEN + 2] = "0.0.0.0";
	const char *port = s;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
			return lt_fail("bad listen address '%s' (want [ADDR]:PORT)", s);
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon) {
			if ((size_t)(colon - s) >= sizeof(host) || colon == s)
				return lt_fail("bad listen address '%s'", s);
			memcpy(host, s, (size_t)(colon - s));
			host[colon - s] = '\0';
			port = colon + 1;
		}
	}
	uint16_t p;
	if (parse_port(port, true, &p) < 0)
		return lt_fail_ctx("listen address '%s'", s);
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(p);
		*len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(p);
		*len = sizeof(*v6);
		return 0;
	}
	return lt_fail("bad listen address '%s': '%s' is not an IP address", s, host);
}

int lt_parse_port_spec(const char *s, char **listen, uint16_t *guest_port)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || (s[0] == '[' && colon < strchr(s, ']')))
		return lt_fail("bad port spec '%s' (want [ADDR:]HOSTPORT:GUESTPORT)", s);
	if (parse_port(colon + 1, false, guest_port) < 0)
		return lt_fail_ctx("port spec '%s'", s);
	char *l = lt_strndup(s, (size_t)(colon - s));
	if (!l)
		return -1;
	struct sockaddr_storage ss;
	socklen_t len;
	if (lt_parse_listen_addr(l, &ss, &len) < 0) {
		free(l);
		return lt_fail_ctx("port spec '%s'", s);
	}
	*listen = l;
	return 0;
}

/* ---- listeners ----------------------------------------------------------------------------- */

static struct lt_listener *listen_on(struct lt_proxy *px, const char *addr, bool http)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (lt_parse_listen_addr(addr, &ss, &len) < 0)
		return NULL;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		lt_fail_errno("socket for %s", addr);
		return NULL;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
		lt_fail_errno("listen on %s", addr);
		close(fd);
		return NULL;
	}
	struct lt_listener *l = lt_calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return NULL;
	}
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	l->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						: ((struct sockaddr_in6 *)&ss)->sin6_port);
	l->px = px;
	l->fd = fd;
	l->http = http;
	list_init(&l->routes);
	snprintf(l->name, sizeof(l->name), "%s", addr);
	if (lt_watch_add(px->loop, &l->w, fd, px->accept_paused ? 0 : EPOLLIN, on_accept) < 0) {
		close(fd);
		free(l);
		return NULL;
	}
	list_add_tail(&px->listeners, &l->link);
	return l;
}

struct lt_listener *lt_proxy_listen_tcp(struct lt_proxy *px, const char *addr,
					struct lt_app *app, uint16_t guest_port)
{
	if (!app || guest_port == 0) {
		lt_fail("TCP listener %s needs an app and a guest port", addr);
		return NULL;
	}
	struct lt_listener *l = listen_on(px, addr, false);
	if (l) {
		l->app = app;
		l->guest_port = guest_port;
	}
	return l;
}

struct lt_listener *lt_proxy_listen_http(struct lt_proxy *px, const char *addr)
{
	return listen_on(px, addr, true);
}

int lt_listener_route(struct lt_listener *l, const char *host, struct lt_app *app,
		      uint16_t guest_port)
{
	if (!l->http)
		return lt_fail("listener %s does not route HTTP", l->name);
	char norm[256];
	size_t hl;
	int status;
	char req[600];
	/* normalise exactly as requests are */
	if (strlen(host) > 253)
		return lt_fail("host name '%.40s...' too long", host);
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	if (lt_http_find_host(req, strlen(req), sizeof(req), norm, sizeof(norm), &hl, &status) != 1)
		return lt_fail_ctx("bad host name '%s'", host);
	struct route *r = find_route(l, norm);
	if (!r) {
		r = lt_calloc(1, sizeof(*r));
		if (!r)
			return -1;
		snprintf(r->host, sizeof(r->host), "%s", norm);
		list_add_tail(&l->routes, &r->link);
	}
	r->app = app;
	r->port = guest_port;
	return 0;
}

int lt_listener_unroute(struct lt_listener *l, const char *host)
{
	for (struct lt_list *p = l->routes.next; p != &l->routes; p = p->next) {
		struct route *r = list_entry(p, struct route, link);
		if (!strcasecmp(r->host, host)) {
			list_del(&r->link);
			free(r);
			return 0;
		}
	}
	return lt_fail("no route for host '%s'", host);
}

uint16_t lt_listener_port(const struct lt_listener *l)
{
	return l->port;
}

void lt_listener_close(struct lt_listener *l)
{
	struct lt_proxy *px = l->px;
	/* connections still reading a head would route through this listener */
	for (struct lt_list *p = px->conns.next, *n; p != &px->conns; p = n) {
		n = p->next;
		struct pconn *c = list_entry(p, struct pconn, link);
		if (c->phase == PX_HEAD && c->l == l)
			pconn_free(c);
	}
	lt_watch_del(&l->w);
	close(l->fd);
	while (!list_empty(&l->routes)) {
		struct route *r = list_entry(l->routes.next, struct route, link);
		list_del(&r->link);
		free(r);
	}
	list_del(&l->link);
	free(l);
}

void lt_proxy_forget_app(struct lt_proxy *px, struct lt_app *app)
{
	for (struct lt_list *p = px->listeners.next, *n; p != &px->listeners; p = n) {
		n = p->next;
		struct lt_listener *l = list_entry(p, struct lt_listener, link);
		if (!l->http) {
			if (l->app == app)
				lt_listener_close(l);
			continue;
		}
		for (struct lt_list *q = l->routes.next, *m; q != &l->routes; q = m) {
			m = q->next;
			struct route *r = list_entry(q, struct route, link);
			if (r->app == app) {
				list_del(&r->link);
				free(r);
			}
		}
	}
}

/* ---- proxy ---------------------------------------------------------------------------------- */

struct lt_proxy *lt_proxy_new(struct lt_loop *loop, struct lt_pool *pool,
			      const struct lt_proxy_config *cfg)
{
	struct lt_proxy *px = lt_calloc(1, sizeof(*px));
	if (!px)
		return NULL;
	px->loop = loop;
	px->pool = pool;
	if (cfg)
		px->cfg = *cfg;
	else
		lt_proxy_config_defaults(&px->cfg);
	if (px->cfg.http_head_max < 256 || px->cfg.http_head_max > 65536) {
		lt_fail("http_head_max must be within 256..65536 bytes");
		free(px);
		return NULL;
	}
	if (!px->cfg.accept_batch)
		px->cfg.accept_batch = 64;
	px->fw = lt_forwarder_new(loop, &px->cfg.fwd);
	if (!px->fw) {
		free(px);
		return NULL;
	}
	list_init(&px->listeners);
	list_init(&px->conns);
	lt_timer_init(&px->resume_accept, resume_accept_fired);
	return px;
}

void lt_proxy_stop_accepting(struct lt_proxy *px)
{
	while (!list_empty(&px->listeners))
		lt_listener_close(list_entry(px->listeners.next, struct lt_listener, link));
}

void lt_proxy_free(struct lt_proxy *px)
{
	if (!px)
		return;
	lt_proxy_stop_accepting(px);
	lt_timer_cancel(lt_loop_clock(px->loop), &px->resume_accept);
	while (!list_empty(&px->conns)) {
		struct pconn *c = list_entry(px->conns.next, struct pconn, link);
		if (c->fwd)
			lt_fwd_abort(c->fwd, false, "proxy closed"); /* frees c */
		else
			pconn_free(c);
	}
	lt_forwarder_free(px->fw);
	free(px);
}

uint32_t lt_proxy_active(const struct lt_proxy *px)
{
	return px->nconns;
}

int lt_proxy_metrics(const struct lt_proxy *px, struct lt_buf *b)
{
	static const char *const codes[] = {"400", "404", "408", "431", "503", "other"};
	if (lt_buf_printf(b,
			  "# HELP lttle_proxy_accepted_total Connections accepted on any listener.\n"
			  "# TYPE lttle_proxy_accepted_total counter\n"
			  "lttle_proxy_accepted_total %llu\n"
			  "# HELP lttle_proxy_connections Connections open (routing, waiting or forwarding).\n"
			  "# TYPE lttle_proxy_connections gauge\n"
			  "lttle_proxy_connections %u\n"
			  "# HELP lttle_proxy_tcp_refused_total TCP connections closed because no instance was had.\n"
			  "# TYPE lttle_proxy_tcp_refused_total counter\n"
			  "lttle_proxy_tcp_refused_total %llu\n"
			  "# HELP lttle_proxy_forward_failed_total Connections that could not be forwarded once an instance was ready.\n"
			  "# TYPE lttle_proxy_forward_failed_total counter\n"
			  "lttle_proxy_forward_failed_total %llu\n"
			  "# HELP lttle_proxy_http_errors_total Error replies of the HTTP router, by status.\n"
			  "# TYPE lttle_proxy_http_errors_total counter\n",
			  (unsigned long long)px->accepted, px->nconns,
			  (unsigned long long)px->tcp_refused,
			  (unsigned long long)px->forward_failed) < 0)
		return -1;
	for (size_t k = 0; k < LT_ARRAY_LEN(codes); k++)
		if (lt_buf_printf(b, "lttle_proxy_http_errors_total{code=\"%s\"} %llu\n", codes[k],
				  (unsigned long long)px->http_status[k]) < 0)
			return -1;
	return 0;
}
