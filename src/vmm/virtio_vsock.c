/* virtio-vsock with a Firecracker-style host side.
 *
 * Host-initiated: a client connects to the unix socket UDS and writes
 * "CONNECT <port>\n"; the device sends REQUEST to guest port <port> from a
 * fresh host port H and, once the guest answers RESPONSE, writes
 * "OK <H>\n" to the client; then bytes flow both ways.
 * Guest-initiated: REQUEST to host port P connects to the unix socket
 * "<UDS>_<P>"; RESPONSE if that works, RST otherwise.
 *
 * Flow control follows the virtio spec: we never send the guest more than
 * its advertised buf_alloc minus what it has not yet forwarded, and we
 * advertise LT_VSOCK_BUF_ALLOC for data we buffer when a host socket is
 * full. A guest overrunning that gets its connection reset. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/virtio.h"

#define VSOCK_HOST_CID 2
#define VSOCK_TYPE_STREAM 1
enum {
	OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE,
	OP_CREDIT_REQUEST,
};
#define SHUT_F_RCV 1
#define SHUT_F_SEND 2
#define LT_VSOCK_BUF_ALLOC (256U * 1024)
#define MAX_CONNS 1024
#define MAX_PAYLOAD (64U * 1024)
#define RQ 0
#define TQ 1
#define EQ 2

struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

enum conn_state { C_READ_CONNECT, C_CONNECTING, C_ESTABLISHED, C_CLOSING };

struct conn {
	struct conn *next;
	enum conn_state state;
	int fd;
	uint32_t local_port, peer_port;
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint32_t fwd_cnt, fwd_cnt_sent;
	uint8_t *pend;
	uint32_t pend_len;
	char line[40];
	uint32_t line_len;
	bool rx_ready; /* socket readable, waiting for guest buffers/credit */
	bool send_response, send_credit, send_shutdown, send_request, send_rst;
	bool registered;
	uint32_t events;
};

struct orphan_rst {
	uint32_t local_port, peer_port;
};

struct vsock {
	struct lt_virtio_dev dev;
	uint64_t cid;
	char *uds;
	int listen_fd;
	struct lt_ioloop *loop;
	struct conn *conns;
	int nconns;
	uint32_t next_port;
	struct orphan_rst rst[64];
	int nrst;
	bool reset_event_pending;
	struct lt_vq_chain chain;
};

static void conn_events(struct vsock *v, struct conn *c);
static void rx_pump(struct vsock *v);

static struct conn *find_conn(struct vsock *v, uint32_t local, uint32_t peer)
{
	for (struct conn *c = v->conns; c; c = c->next)
		if (c->local_port == local && c->peer_port == peer && c->state != C_READ_CONNECT)
			return c;
	return NULL;
}

static void conn_free(struct vsock *v, struct conn *c)
{
	for (struct conn **pp = &v->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (c->registered && v->loop)
		lt_ioloop_del(v->loop, c->fd);
	close(c->fd);
	free(c->pend);
	free(c);
	v->nconns--;
}

static void queue_orphan_rst(struct vsock *v, uint32_t local, uint32_t peer)
{
	if (v->nrst < (int)LT_ARRAY_LEN(v->rst))
		v->rst[v->nrst++] = (struct orphan_rst){local, peer};
}

/* Tear a connection down and tell the guest. */
static void conn_reset(struct vsock *v, struct conn *c)
{
	if (c->state == C_CONNECTING || c->state == C_ESTABLISHED || c->state == C_CLOSING)
		queue_orphan_rst(v, c->local_port, c->peer_port);
	conn_free(v, c);
}

static struct conn *conn_new(struct vsock *v, int fd)
{
	if (v->nconns >= MAX_CONNS)
		return NULL;
	struct conn *c = lt_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->next = v->conns;
	v->conns = c;
	v->nconns++;
	return c;
}

/* ---- rx: device -> guest -------------------------------------------------- */

static void fill_hdr(struct vsock *v, struct vsock_hdr *h, uint32_t local, uint32_t peer,
		     uint16_t op, struct conn *c)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = v->cid;
	h->src_port = local;
	h->dst_port = peer;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	h->buf_alloc = LT_VSOCK_BUF_ALLOC;
	if (c) {
		h->fwd_cnt = c->fwd_cnt;
		c->fwd_cnt_sent = c->fwd_cnt;
	}
}

static uint32_t credit(const struct conn *c)
{
	uint32_t inflight = c->tx_cnt - c->peer_fwd_cnt;
	return inflight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - inflight;
}

/* Builds iovecs over the chain's writable bytes from offset off. */
static int chain_iov(const struct lt_vq_chain *ch, uint32_t off, uint32_t max, struct iovec *iov,
		     int niov)
{
	int k = 0;
	for (int i = 0; i < ch->nsegs && k < niov && max; i++) {
		const struct lt_vq_seg *s = &ch->segs[i];
		if (!s->write)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		uint32_t n = s->len - off;
		if (n > max)
			n = max;
		iov[k++] = (struct iovec){s->p + off, n};
		max -= n;
		off = 0;
	}
	return k;
}

/* One packet into one rx chain. Returns 1 sent, 0 nothing to send, -1 no
 * buffer available. */
static int rx_one(struct vsock *v, struct lt_virtq *q)
{
	struct lt_vq_chain *ch = &v->chain;
	struct vsock_hdr h;
	/* Work first, buffer second: find something to send. */
	struct conn *work = NULL;
	int kind = 0; /* 1 orphan rst, 2 control, 3 data */
	if (v->nrst) {
		kind = 1;
	} else {
		for (struct conn *c = v->conns; c && !kind; c = c->next) {
			if (c->send_request || c->send_response || c->send_shutdown ||
			    c->send_credit || c->send_rst) {
				work = c;
				kind = 2;
			}
		}
		for (struct conn *c = v->conns; c && !kind; c = c->next)
			if (c->rx_ready && c->state == C_ESTABLISHED && credit(c) > 0) {
				work = c;
				kind = 3;
			}
	}
	if (!kind)
		return 0;
	int rc = lt_virtq_pop(q, &v->dev.mem, false, ch);
	if (rc == LT_VQ_EMPTY)
		return -1;
	if (rc == LT_VQ_BROKEN) {
		lt_virtio_note_error(&v->dev, RQ, rc, ch->error);
		return -1;
	}
	if (rc == LT_VQ_BAD_CHAIN || ch->wlen < sizeof(h) || ch->rlen) {
		lt_virtio_note_error(&v->dev, RQ, LT_VQ_BAD_CHAIN,
				     ch->error ? ch->error : "rx buffer too small or readable");
		if (ch->head != 0xffff)
			lt_virtq_push(q, &v->dev.mem, ch->head, 0);
		return 1;
	}
	uint32_t len = sizeof(h);
	if (kind == 1) {
		struct orphan_rst r = v->rst[--v->nrst];
		fill_hdr(v, &h, r.local_port, r.peer_port, OP_RST, NULL);
	} else if (kind == 2) {
		struct conn *c = work;
		uint16_t op;
		if (c->send_rst) {
			op = OP_RST;
			c->send_rst = false;
		} else if (c->send_request) {
			op = OP_REQUEST;
			c->send_request = false;
		} else if (c->send_response) {
			op = OP_RESPONSE;
			c->send_response = false;
		} else if (c->send_shutdown) {
			op = OP_SHUTDOWN;
			c->send_shutdown = false;
		} else {
			op = OP_CREDIT_UPDATE;
			c->send_credit = false;
		}
		fill_hdr(v, &h, c->local_port, c->peer_port, op, c);
		if (op == OP_SHUTDOWN)
			h.flags = SHUT_F_RCV | SHUT_F_SEND;
	} else {
		struct conn *c = work;
		uint32_t max = ch->wlen - (uint32_t)sizeof(h);
		uint32_t cr = credit(c);
		if (max > cr)
			max = cr;
		if (max > MAX_PAYLOAD)
			max = MAX_PAYLOAD;
		struct iovec iov[64];
		int niov = chain_iov(ch, sizeof(h), max, iov, 64);
		ssize_t n = niov ? readv(c->fd, iov, niov) : 0;
		if (n <= 0) {
			lt_virtq_unpop(q);
			c->rx_ready = false;
			if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				/* Host side closed: tell the guest, wait for its RST. */
				c->state = C_CLOSING;
				c->send_shutdown = true;
			}
			conn_events(v, c);
			return 1;
		}
		fill_hdr(v, &h, c->local_port, c->peer_port, OP_RW, c);
		h.len = (uint32_t)n;
		c->tx_cnt += (uint32_t)n;
		len += (uint32_t)n;
	}
	lt_vq_write(ch, 0, &h, sizeof(h));
	lt_virtq_push(q, &v->dev.mem, ch->head, len);
	return 1;
}

static void rx_pump(struct vsock *v)
{
	struct lt_virtq *q = lt_virtio_queue(&v->dev, RQ);
	if (!q)
		return;
	bool any = false;
	for (int i = 0; i < 4 * LT_VIRTQ_MAX_SIZE; i++) {
		int r = rx_one(v, q);
		if (r <= 0)
			break;
		any = true;
	}
	if (any && lt_virtq_should_notify(q, &v->dev.mem))
		lt_virtio_interrupt(&v->dev);
}

/* ---- host sockets ----------------------------------------------------------- */

static void on_conn(void *opaque, int fd, uint32_t events);

static void conn_events(struct vsock *v, struct conn *c)
{
	if (!v->loop)
		return;
	uint32_t ev = 0;
	if (c->state == C_READ_CONNECT || (c->state == C_ESTABLISHED && !c->rx_ready))
		ev |= EPOLLIN;
	if (c->pend_len)
		ev |= EPOLLOUT;
	if (!c->registered) {
		if (lt_ioloop_add(v->loop, c->fd, ev, on_conn, v) == 0) {
			c->registered = true;
			c->events = ev;
		}
	} else if (ev != c->events) {
		lt_ioloop_mod(v->loop, c->fd, ev);
		c->events = ev;
	}
}

static struct conn *conn_by_fd(struct vsock *v, int fd)
{
	for (struct conn *c = v->conns; c; c = c->next)
		if (c->fd == fd)
			return c;
	return NULL;
}

/* "CONNECT <port>\n" from a host client. */
static void read_connect(struct vsock *v, struct conn *c)
{
	ssize_t n = read(c->fd, c->line + c->line_len, sizeof(c->line) - 1 - c->line_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(v, c);
		return;
	}
	c->line_len += (uint32_t)n;
	c->line[c->line_len] = '\0';
	char *nl = strchr(c->line, '\n');
	if (!nl) {
		if (c->line_len >= sizeof(c->line) - 1)
			conn_free(v, c); /* too long: not our protocol */
		return;
	}
	*nl = '\0';
	unsigned port;
	char extra;
	if (sscanf(c->line, "CONNECT %u%c", &port, &extra) != 1 || port > 0xffffffffU) {
		(void)!write(c->fd, "ERR bad request\n", 16);
		conn_free(v, c);
		return;
	}
	/* Bytes after the line would belong to the stream: the protocol has
	 * the client wait for OK, so any are dropped. */
	c->peer_port = port;
	c->local_port = v->next_port++;
	if (v->next_port < (1U << 30))
		v->next_port = 1U << 30;
	c->state = C_CONNECTING;
	c->send_request = true;
	conn_events(v, c);
	rx_pump(v);
}

static void flush_pend(struct vsock *v, struct conn *c)
{
	while (c->pend_len) {
		ssize_t n = write(c->fd, c->pend, c->pend_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_reset(v, c);
			return;
		}
		memmove(c->pend, c->pend + n, c->pend_len - (size_t)n);
		c->pend_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (c->fwd_cnt - c->fwd_cnt_sent >= LT_VSOCK_BUF_ALLOC / 4)
		c->send_credit = true;
	conn_events(v, c);
}

static void on_conn(void *opaque, int fd, uint32_t events)
{
	struct vsock *v = opaque;
	pthread_mutex_lock(&v->dev.lock);
	struct conn *c = conn_by_fd(v, fd);
	if (!c) {
		pthread_mutex_unlock(&v->dev.lock);
		return;
	}
	if (c->state == C_READ_CONNECT) {
		read_connect(v, c);
	} else {
		if ((events & EPOLLOUT) && c->pend_len) {
			flush_pend(v, c);
			c = conn_by_fd(v, fd);
		}
		if (c && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->state == C_ESTABLISHED) {
			c->rx_ready = true;
			conn_events(v, c);
		}
		rx_pump(v);
	}
	pthread_mutex_unlock(&v->dev.lock);
}

static void on_listen(void *opaque, int fd, uint32_t events)
{
	(void)events;
	struct vsock *v = opaque;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	pthread_mutex_lock(&v->dev.lock);
	struct conn *c = conn_new(v, cfd);
	if (!c) {
		close(cfd);
	} else {
		c->state = C_READ_CONNECT;
		conn_events(v, c);
	}
	pthread_mutex_unlock(&v->dev.lock);
}

/* ---- tx: guest -> device ---------------------------------------------------- */

static int connect_host(struct vsock *v, uint32_t port)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int n = snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", v->uds, port);
	if (n < 0 || (size_t)n >= sizeof(a.sun_path))
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	return fd;
}

static void guest_rw(struct vsock *v, struct conn *c, const struct lt_vq_chain *ch, uint32_t len)
{
	if (c->state != C_ESTABLISHED)
		return;
	if (len > ch->rlen - sizeof(struct vsock_hdr)) {
		conn_reset(v, c);
		return;
	}
	/* Everything beyond what we advertised is a protocol violation. */
	if (c->pend_len + len > LT_VSOCK_BUF_ALLOC) {
		conn_reset(v, c);
		return;
	}
	uint8_t *np = realloc(c->pend, c->pend_len + len ? c->pend_len + len : 1);
	if (!np) {
		conn_reset(v, c);
		return;
	}
	c->pend = np;
	lt_vq_read(ch, sizeof(struct vsock_hdr), c->pend + c->pend_len, len);
	c->pend_len += len;
	flush_pend(v, c);
}

static void tx_packet(struct vsock *v, const struct lt_vq_chain *ch)
{
	struct vsock_hdr h;
	if (lt_vq_read(ch, 0, &h, sizeof(h)) != sizeof(h)) {
		v->dev.errors++;
		return;
	}
	if (h.src_cid != v->cid || h.dst_cid != VSOCK_HOST_CID)
		return; /* not for us: drop */
	struct conn *c = find_conn(v, h.dst_port, h.src_port);
	if (h.type != VSOCK_TYPE_STREAM) {
		if (h.op != OP_RST)
			queue_orphan_rst(v, h.dst_port, h.src_port);
		return;
	}
	if (c) {
		c->peer_buf_alloc = h.buf_alloc;
		c->peer_fwd_cnt = h.fwd_cnt;
	}
	switch (h.op) {
	case OP_REQUEST: {
		if (c) {
			conn_reset(v, c);
			return;
		}
		int fd = connect_host(v, h.dst_port);
		struct conn *n = fd >= 0 ? conn_new(v, fd) : NULL;
		if (!n) {
			if (fd >= 0)
				close(fd);
			queue_orphan_rst(v, h.dst_port, h.src_port);
			return;
		}
		n->local_port = h.dst_port;
		n->peer_port = h.src_port;
		n->peer_buf_alloc = h.buf_alloc;
		n->peer_fwd_cnt = h.fwd_cnt;
		n->state = C_ESTABLISHED;
		n->send_response = true;
		conn_events(v, n);
		return;
	}
	case OP_RESPONSE:
		if (!c || c->state != C_CONNECTING) {
			if (c)
				conn_reset(v, c);
			else
				queue_orphan_rst(v, h.dst_port, h.src_port);
			return;
		}
		c->state = C_ESTABLISHED;
		{
			char ok[32];
			int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
			if (lt_write_all(c->fd, ok, (size_t)n) < 0) {
				conn_reset(v, c);
				return;
			}
		}
		conn_events(v, c);
		return;
	case OP_RW:
		if (c)
			guest_rw(v, c, ch, h.len);
		else
			queue_orphan_rst(v, h.dst_port, h.src_port);
		return;
	case OP_CREDIT_REQUEST:
		if (c)
			c->send_credit = true;
		return;
	case OP_CREDIT_UPDATE:
		return; /* credit already taken from the header */
	case OP_SHUTDOWN:
		if (!c)
			return;
		if ((h.flags & (SHUT_F_RCV | SHUT_F_SEND)) == (SHUT_F_RCV | SHUT_F_SEND)) {
			conn_reset(v, c); /* the guest waits for our RST */
		} else if (h.flags & SHUT_F_SEND) {
			if (!c->pend_len)
				shutdown(c->fd, SHUT_WR);
		}
		return;
	case OP_RST:
		if (c)
			conn_free(v, c);
		return;
	default:
		if (c)
			conn_reset(v, c);
		return;
	}
}

static void tx_pump(struct vsock *v)
{
	struct lt_virtq *q = lt_virtio_queue(&v->dev, TQ);
	if (!q)
		return;
	bool any = false;
	for (int i = 0; i < 4 * LT_VIRTQ_MAX_SIZE; i++) {
		struct lt_vq_chain *ch = &v->chain;
		int rc = lt_virtq_pop(q, &v->dev.mem, false, ch);
		if (rc == LT_VQ_EMPTY)
			break;
		if (rc == LT_VQ_BROKEN) {
			lt_virtio_note_error(&v->dev, TQ, rc, ch->error);
			break;
		}
		if (rc == LT_VQ_BAD_CHAIN || ch->rlen < sizeof(struct vsock_hdr)) {
			lt_virtio_note_error(&v->dev, TQ, LT_VQ_BAD_CHAIN,
					     ch->error ? ch->error : "tx packet shorter than a header");
		} else {
			tx_packet(v, ch);
		}
		if (ch->head != 0xffff)
			lt_virtq_push(q, &v->dev.mem, ch->head, 0);
		any = true;
	}
	if (any && lt_virtq_should_notify(q, &v->dev.mem))
		lt_virtio_interrupt(&v->dev);
}

static void send_reset_event(struct vsock *v)
{
	struct lt_virtq *q = lt_virtio_queue(&v->dev, EQ);
	if (!q || !v->reset_event_pending)
		return;
	struct lt_vq_chain *ch = &v->chain;
	int rc = lt_virtq_pop(q, &v->dev.mem, false, ch);
	if (rc != LT_VQ_OK) {
		if (rc != LT_VQ_EMPTY)
			lt_virtio_note_error(&v->dev, EQ, rc, ch->error);
		return;
	}
	uint32_t id = 0; /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
	uint32_t n = (uint32_t)lt_vq_write(ch, 0, &id, sizeof(id));
	lt_virtq_push(q, &v->dev.mem, ch->head, n);
	v->reset_event_pending = false;
	lt_virtio_interrupt(&v->dev);
}

static void vs_notify(struct lt_virtio_dev *d, int q)
{
	struct vsock *v = d->impl;
	if (q == TQ)
		tx_pump(v);
	if (q == EQ)
		send_reset_event(v);
	rx_pump(v); /* new rx buffers, or replies queued by tx */
}

static uint64_t vs_features(struct lt_virtio_dev *d)
{
	(void)d;
	return 0;
}

static void vs_read_config(struct lt_virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct vsock *v = d->impl;
	uint8_t cfg[8];
	memcpy(cfg, &v->cid, 8);
	if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
		memcpy(data, cfg + off, len);
}

static void drop_all(struct vsock *v)
{
	while (v->conns)
		conn_free(v, v->conns);
	v->nrst = 0;
}

static void vs_reset(struct lt_virtio_dev *d)
{
	drop_all(d->impl);
}

static int vs_attach(struct lt_virtio_dev *d, struct lt_ioloop *l)
{
	struct vsock *v = d->impl;
	v->loop = l;
	pthread_mutex_lock(&d->lock);
	send_reset_event(v);
	pthread_mutex_unlock(&d->lock);
	return lt_ioloop_add(l, v->listen_fd, EPOLLIN, on_listen, v);
}

static int vs_save(struct lt_virtio_dev *d, struct lt_buf *b)
{
	struct vsock *v = d->impl;
	return lt_blob_put_u64(b, 1, v->cid);
}

static int vs_load(struct lt_virtio_dev *d, const void *p, size_t n)
{
	struct vsock *v = d->impl;
	struct lt_blob_reader r = {.p = p, .len = n, .version = 1};
	uint64_t cid;
	if (!p || lt_blob_get_u64(&r, 1, &cid, "vsock cid") < 0)
		return -1;
	if (cid != v->cid)
		return lt_fail("vsock: snapshot has guest CID %llu, VM has %llu",
			       (unsigned long long)cid, (unsigned long long)v->cid);
	/* Connections never survive a snapshot: tell the guest. */
	drop_all(v);
	v->reset_event_pending = true;
	return 0;
}

static void vs_destroy(struct lt_virtio_dev *d)
{
	struct vsock *v = d->impl;
	v->loop = NULL;
	drop_all(v);
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		unlink(v->uds);
	}
	free(v->uds);
	pthread_mutex_destroy(&d->lock);
	free(v);
}

static const struct lt_virtio_ops vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.nqueues = 3,
	.features = vs_features,
	.read_config = vs_read_config,
	.notify = vs_notify,
	.reset = vs_reset,
	.attach_loop = vs_attach,
	.save = vs_save,
	.load = vs_load,
	.destroy = vs_destroy,
};

int lt_virtio_vsock_new(const struct lt_gmem *mem, uint64_t base, int irq, uint64_t cid,
			const char *uds, struct lt_virtio_dev **out)
{
	if (cid < 3 || cid > 0xffffffffULL)
		return lt_fail("vsock: guest CID %llu out of range (3..2^32-1)",
			       (unsigned long long)cid);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(uds) + 12 >= sizeof(a.sun_path))
		return lt_fail("vsock: socket path too long: %s", uds);
	struct vsock *v = lt_calloc(1, sizeof(*v));
	if (!v)
		return -1;
	lt_virtio_init(&v->dev, &vsock_ops, v, mem, base, irq);
	v->cid = cid;
	v->next_port = 1U << 30;
	v->uds = lt_strdup(uds);
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!v->uds || v->listen_fd < 0) {
		lt_fail_errno("vsock: socket");
		goto fail;
	}
	strcpy(a.sun_path, uds);
	unlink(uds); /* a stale socket from a previous run */
	if (bind(v->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(v->listen_fd, 64) < 0) {
		lt_fail_errno("vsock: %s", uds);
		goto fail;
	}
	*out = &v->dev;
	return 0;
fail:
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	v->listen_fd = -1;
	vs_destroy(&v->dev);
	return -1;
}
