/* virtio-net over a TAP device (IFF_TAP | IFF_NO_PI, no vnet header: we
 * offer no offloads, so the 12-byte virtio header is stripped on transmit
 * and zeroed on receive). Any datagram fd works in place of a TAP. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/virtio.h"

#define VIRTIO_NET_F_MAC 5
#define NET_HDR 12
#define FRAME_MAX (65535 + 14)
#define RXQ 0
#define TXQ 1

struct net {
	struct lt_virtio_dev dev;
	int fd;
	uint8_t mac[6];
	struct lt_ioloop *loop;
	bool rx_enabled;
	uint8_t frame[FRAME_MAX];
	size_t frame_len; /* a received frame waiting for a guest buffer */
	uint8_t txbuf[FRAME_MAX];
	struct lt_vq_chain chain;
	uint64_t rx_frames, tx_frames, dropped;
};

int lt_tap_open(const char *name, int *out)
{
	struct ifreq ifr;
	if (strlen(name) >= sizeof(ifr.ifr_name))
		return lt_fail("TAP name too long: %s", name);
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("/dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		close(fd);
		return lt_fail_errno("TAP %s (needs CAP_NET_ADMIN or a pre-made TAP)", name);
	}
	*out = fd;
	return 0;
}

static void set_rx(struct net *n, bool on)
{
	if (!n->loop || n->rx_enabled == on)
		return;
	n->rx_enabled = on;
	lt_ioloop_mod(n->loop, n->fd, on ? EPOLLIN : 0);
}

/* Delivers the held frame; false if the guest has no buffer. */
static bool deliver(struct net *n, struct lt_virtq *q)
{
	for (;;) {
		struct lt_vq_chain *c = &n->chain;
		int rc = lt_virtq_pop(q, &n->dev.mem, false, c);
		if (rc == LT_VQ_EMPTY)
			return false;
		if (rc == LT_VQ_BROKEN) {
			lt_virtio_note_error(&n->dev, RXQ, rc, c->error);
			return false;
		}
		if (rc == LT_VQ_BAD_CHAIN || c->wlen < NET_HDR + n->frame_len) {
			lt_virtio_note_error(&n->dev, RXQ, LT_VQ_BAD_CHAIN,
					     c->error ? c->error : "rx buffer too small");
			if (c->head != 0xffff)
				lt_virtq_push(q, &n->dev.mem, c->head, 0);
			continue;
		}
		uint8_t hdr[NET_HDR] = {0};
		hdr[10] = 1; /* num_buffers */
		lt_vq_write(c, 0, hdr, NET_HDR);
		lt_vq_write(c, NET_HDR, n->frame, n->frame_len);
		lt_virtq_push(q, &n->dev.mem, c->head, (uint32_t)(NET_HDR + n->frame_len));
		n->rx_frames++;
		n->frame_len = 0;
		return true;
	}
}

static void rx_pump(struct net *n)
{
	struct lt_virtq *q = lt_virtio_queue(&n->dev, RXQ);
	if (!q) {
		set_rx(n, false);
		return;
	}
	bool any = false;
	for (int i = 0; i < LT_VIRTQ_MAX_SIZE; i++) {
		if (!n->frame_len) {
			ssize_t r = read(n->fd, n->frame, sizeof(n->frame));
			if (r <= 0)
				break;
			n->frame_len = (size_t)r;
		}
		if (!deliver(n, q)) {
			set_rx(n, false); /* wait for buffers (rx notify) */
			break;
		}
		any = true;
	}
	if (!n->frame_len)
		set_rx(n, true);
	if (any && lt_virtq_should_notify(q, &n->dev.mem))
		lt_virtio_interrupt(&n->dev);
}

static void tx_pump(struct net *n)
{
	struct lt_virtq *q = lt_virtio_queue(&n->dev, TXQ);
	if (!q)
		return;
	bool any = false;
	for (int i = 0; i < 4 * LT_VIRTQ_MAX_SIZE; i++) {
		struct lt_vq_chain *c = &n->chain;
		int rc = lt_virtq_pop(q, &n->dev.mem, false, c);
		if (rc == LT_VQ_EMPTY)
			break;
		if (rc == LT_VQ_BROKEN) {
			lt_virtio_note_error(&n->dev, TXQ, rc, c->error);
			break;
		}
		if (rc == LT_VQ_BAD_CHAIN || c->rlen < NET_HDR || c->wlen ||
		    c->rlen - NET_HDR > FRAME_MAX) {
			lt_virtio_note_error(&n->dev, TXQ, LT_VQ_BAD_CHAIN,
					     c->error ? c->error : "bad tx frame");
			n->dropped++;
		} else {
			size_t len = lt_vq_read(c, NET_HDR, n->txbuf, c->rlen - NET_HDR);
			if (write(n->fd, n->txbuf, len) < 0)
				n->dropped++; /* a full TAP queue drops, like a wire */
			else
				n->tx_frames++;
		}
		if (c->head != 0xffff)
			lt_virtq_push(q, &n->dev.mem, c->head, 0);
		any = true;
	}
	if (any && lt_virtq_should_notify(q, &n->dev.mem))
		lt_virtio_interrupt(&n->dev);
}

static void net_notify(struct lt_virtio_dev *d, int q)
{
	struct net *n = d->impl;
	if (q == TXQ)
		tx_pump(n);
	else
		rx_pump(n);
}

static void on_tap(void *opaque, int fd, uint32_t events)
{
	(void)fd;
	(void)events;
	struct net *n = opaque;
	pthread_mutex_lock(&n->dev.lock);
	rx_pump(n);
	pthread_mutex_unlock(&n->dev.lock);
}

static void net_activate(struct lt_virtio_dev *d)
{
	rx_pump(d->impl);
}

static int net_attach(struct lt_virtio_dev *d, struct lt_ioloop *l)
{
	struct net *n = d->impl;
	n->loop = l;
	n->rx_enabled = false;
	return lt_ioloop_add(l, n->fd, 0, on_tap, n);
}

static uint64_t net_features(struct lt_virtio_dev *d)
{
	(void)d;
	return 1ULL << VIRTIO_NET_F_MAC;
}

static void net_read_config(struct lt_virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct net *n = d->impl;
	uint8_t cfg[8] = {0};
	memcpy(cfg, n->mac, 6);
	if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
		memcpy(data, cfg + off, len);
}

static void net_destroy(struct lt_virtio_dev *d)
{
	struct net *n = d->impl;
	close(n->fd);
	pthread_mutex_destroy(&d->lock);
	free(n);
}

static const struct lt_virtio_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.nqueues = 2,
	.features = net_features,
	.read_config = net_read_config,
	.notify = net_notify,
	.activate = net_activate,
	.attach_loop = net_attach,
	.destroy = net_destroy,
};

int lt_virtio_net_new(const struct lt_gmem *mem, uint64_t base, int irq, int fd,
		      const uint8_t mac[6], struct lt_virtio_dev **out)
{
	struct net *n = lt_calloc(1, sizeof(*n));
	if (!n)
		return -1;
	lt_virtio_init(&n->dev, &net_ops, n, mem, base, irq);
	n->fd = fd;
	memcpy(n->mac, mac, 6);
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	*out = &n->dev;
	return 0;
}
