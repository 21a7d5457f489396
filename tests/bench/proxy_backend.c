/* A small, fast host-side backend for the proxy tests and benchmark:
 * HTTP/1.1 keep-alive server (fixed response naming the instance) or a
 * TCP echo server. Single-threaded epoll, non-blocking.
 *
 *   proxy_backend [--addr A] [--port P] [--mode http|echo] [--name N]
 *                 [--body-size B] [--print-port] [--wait-stdin] [--delay-ms D]
 *                 [--unix PATH]
 *
 * --print-port prints "PORT <n>" on stdout once listening. --wait-stdin
 * waits for one line on stdin first (a pre-made "shell"), --delay-ms
 * sleeps first (boot or restore work). --unix also listens on a unix
 * socket (the shape of the lttle engine's upstream: the VMM's vsock UDS).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

struct conn {
	int fd;
	char in[BUF];
	size_t in_len;
	char *out;
	size_t out_len, out_off, out_cap;
	size_t skip; /* request body bytes still to discard */
	bool close_after;
	bool eof;
};

static bool http = true;
static char *response;
static size_t response_len;

static void die(const char *what)
{
	fprintf(stderr, "proxy_backend: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void out_append(struct conn *c, const char *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + n)
			cap *= 2;
		c->out = realloc(c->out, cap);
		if (!c->out)
			die("realloc");
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static bool flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return true;
}

static size_t content_length(const char *head, size_t n)
{
	for (size_t k = 0; k + 16 < n; k++) {
		if ((head[k] == '\n') && !strncasecmp(head + k + 1, "content-length:", 15))
			return (size_t)strtoul(head + k + 16, NULL, 10);
	}
	return 0;
}

static bool wants_close(const char *head, size_t n)
{
	for (size_t k = 0; k + 18 < n; k++)
		if (head[k] == '\n' && !strncasecmp(head + k + 1, "connection: close", 17))
			return true;
	/* HTTP/1.0 closes unless it asks for keep-alive */
	const char *nl = memchr(head, '\n', n);
	size_t line = nl ? (size_t)(nl - head) : 0;
	if (line && head[line - 1] == '\r')
		line--;
	if (line < 8 || strncmp(head + line - 8, "HTTP/1.0", 8))
		return false;
	for (size_t k = 0; k + 11 < n; k++)
		if (!strncasecmp(head + k, "keep-alive", 10))
			return false;
	return true;
}

/* Answers every complete request head in the buffer. */
static void serve_http(struct conn *c)
{
	size_t off = 0;
	for (;;) {
		if (c->skip) {
			size_t s = c->in_len - off < c->skip ? c->in_len - off : c->skip;
			off += s;
			c->skip -= s;
			if (c->skip)
				break;
		}
		char *end = memmem(c->in + off, c->in_len - off, "\r\n\r\n", 4);
		if (!end)
			break;
		size_t hl = (size_t)(end - (c->in + off)) + 4;
		c->skip = content_length(c->in + off, hl);
		if (wants_close(c->in + off, hl))
			c->close_after = true;
		out_append(c, response, response_len);
		off += hl;
		if (c->close_after)
			break;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	if (c->in_len == sizeof(c->in)) /* oversized head: drop it */
		c->close_after = true;
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	free(c);
}

static void on_conn(int ep, struct conn *c, uint32_t ev)
{
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		for (;;) {
			if (c->in_len == sizeof(c->in))
				break;
			ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
			if (n < 0) {
				if (errno == EAGAIN)
					break;
				conn_close(ep, c);
				return;
			}
			if (n == 0) {
				c->eof = true;
				break;
			}
			if (http) {
				c->in_len += (size_t)n;
				serve_http(c);
			} else {
				out_append(c, c->in, (size_t)n);
			}
			if ((size_t)n < sizeof(c->in) - c->in_len)
				break;
		}
	}
	if (!flush_out(c)) {
		conn_close(ep, c);
		return;
	}
	if (c->out_len == 0 && (c->close_after || c->eof)) {
		if (c->eof && !http) {
			shutdown(c->fd, SHUT_WR);
			conn_close(ep, c);
			return;
		}
		conn_close(ep, c);
		return;
	}
	struct epoll_event e = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1", *name = "backend", *unix_path = NULL;
	int port = 0, delay_ms = 0;
	long body_size = -1;
	bool print_port = false, wait_stdin = false;
	for (int k = 1; k < argc; k++) {
		const char *a = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
		if (!strcmp(a, "--addr") && v)
			addr = v, k++;
		else if (!strcmp(a, "--port") && v)
			port = atoi(v), k++;
		else if (!strcmp(a, "--mode") && v)
			http = strcmp(v, "echo") != 0, k++;
		else if (!strcmp(a, "--name") && v)
			name = v, k++;
		else if (!strcmp(a, "--body-size") && v)
			body_size = atol(v), k++;
		else if (!strcmp(a, "--delay-ms") && v)
			delay_ms = atoi(v), k++;
		else if (!strcmp(a, "--unix") && v)
			unix_path = v, k++;
		else if (!strcmp(a, "--print-port"))
			print_port = true;
		else if (!strcmp(a, "--wait-stdin"))
			wait_stdin = true;
		else {
			fprintf(stderr, "usage: proxy_backend [--addr A] [--port P] [--mode http|echo] "
					"[--name N] [--body-size B] [--print-port] [--wait-stdin] "
					"[--delay-ms D] [--unix PATH]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (wait_stdin) {
		char line[64];
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	if (delay_ms) {
		struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	/* the response: body is "<name>\n", padded with 'x' to --body-size */
	size_t blen = strlen(name) + 1;
	if (body_size >= 0 && (size_t)body_size > blen)
		blen = (size_t)body_size;
	char *body = malloc(blen + 1);
	memset(body, 'x', blen);
	memcpy(body, name, strlen(name) < blen ? strlen(name) : blen);
	body[blen - 1] = '\n';
	response = malloc(blen + 256);
	response_len = (size_t)sprintf(response,
				       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				       "Content-Length: %zu\r\n\r\n",
				       blen);
	memcpy(response + response_len, body, blen);
	response_len += blen;

	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "proxy_backend: bad address %s\n", addr);
		return 2;
	}
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4096) < 0)
		die("listen");
	socklen_t sl = sizeof(sa);
	getsockname(l, (struct sockaddr *)&sa, &sl);
	if (print_port) {
		printf("PORT %d\n", ntohs(sa.sin_port));
		fflush(stdout);
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &e);
	int ul = -1;
	if (unix_path) {
		struct sockaddr_un su = {.sun_family = AF_UNIX};
		if (strlen(unix_path) >= sizeof(su.sun_path))
			die("unix path too long");
		strcpy(su.sun_path, unix_path);
		unlink(unix_path);
		ul = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (ul < 0 || bind(ul, (struct sockaddr *)&su, sizeof(su)) < 0 || listen(ul, 4096) < 0)
			die("listen on unix socket");
		struct epoll_event ue = {.events = EPOLLIN, .data.ptr = &ul};
		epoll_ctl(ep, EPOLL_CTL_ADD, ul, &ue);
	}
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int k = 0; k < n; k++) {
			if (!evs[k].data.ptr || evs[k].data.ptr == &ul) {
				int lfd = evs[k].data.ptr ? ul : l;
				for (;;) {
					int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0)
						break;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					struct conn *c = calloc(1, sizeof(*c));
					c->fd = fd;
					struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
				}
				continue;
			}
			on_conn(ep, evs[k].data.ptr, evs[k].events);
		}
	}
}
