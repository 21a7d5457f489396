/* A small epoll loop for the VM's I/O thread: device eventfds, sockets,
 * the serial input and the control channel. Callbacks run in the loop's
 * thread; add/del may be called from callbacks. */
#ifndef LTTLE_VMM_IOLOOP_H
#define LTTLE_VMM_IOLOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct lt_ioloop;
typedef void (*lt_io_cb)(void *opaque, int fd, uint32_t events);

struct lt_ioloop *lt_ioloop_new(void);
void lt_ioloop_free(struct lt_ioloop *l);
/* events: EPOLLIN/EPOLLOUT...; level-triggered. */
int lt_ioloop_add(struct lt_ioloop *l, int fd, uint32_t events, lt_io_cb cb, void *opaque);
int lt_ioloop_mod(struct lt_ioloop *l, int fd, uint32_t events);
void lt_ioloop_del(struct lt_ioloop *l, int fd);
/* One wait of at most timeout_ms; dispatches ready callbacks. */
int lt_ioloop_poll(struct lt_ioloop *l, int timeout_ms);

#endif
