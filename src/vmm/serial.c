/* 8250/16450 UART on COM1: enough of the register set for Linux's 8250
 * driver (scratch, LCR/DLAB, loopback probe, THRE and RX interrupts).
 * Output is buffered and flushed at '\n', when full, and by the I/O
 * thread's tick. */
#include <string.h>
#include <unistd.h>

#include "vmm/vmm_int.h"

enum {
	R_DATA = 0, R_IER = 1, R_IIR = 2, R_LCR = 3, R_MCR = 4, R_LSR = 5, R_MSR = 6, R_SCR = 7,
};
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

void lt_serial_init(struct lt_serial *s, int out_fd)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->mcr = MCR_OUT2;
	s->dll = 12; /* 9600 baud */
}

static void flush_locked(struct lt_serial *s)
{
	if (s->olen && s->out_fd >= 0)
		(void)lt_write_all(s->out_fd, s->obuf, s->olen);
	s->olen = 0;
}

bool lt_serial_thr_plain(struct lt_serial *s)
{
	pthread_mutex_lock(&s->lock);
	bool plain = !(s->ier & IER_THRI) && !(s->mcr & MCR_LOOP);
	pthread_mutex_unlock(&s->lock);
	return plain;
}

bool lt_serial_pending(struct lt_serial *s)
{
	pthread_mutex_lock(&s->lock);
	bool p = s->olen > 0;
	pthread_mutex_unlock(&s->lock);
	return p;
}

void lt_serial_flush(struct lt_serial *s)
{
	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	pthread_mutex_unlock(&s->lock);
}

static bool irq_pending(struct lt_serial *s)
{
	return ((s->ier & IER_RDI) && s->rx_len) || ((s->ier & IER_THRI) && s->iir_thre_pending);
}

static void raise_if_pending(struct lt_serial *s)
{
	if (irq_pending(s) && s->irq)
		s->irq(s->irq_opaque);
}

static void rx_push(struct lt_serial *s, uint8_t c)
{
	if (s->rx_len >= LT_SERIAL_RX_MAX)
		return;
	s->rx[(s->rx_head + s->rx_len) % LT_SERIAL_RX_MAX] = c;
	s->rx_len++;
}

static void emit(struct lt_serial *s, uint8_t c)
{
	bool first = !s->wrote_any;
	if (first) {
		s->wrote_any = true;
		s->first_byte_ns = lt_now_ns();
	}
	s->obuf[s->olen++] = c;
	/* Lines go out whole; the very first byte at once (boot latency is
	 * measured by it); a partial line (a prompt) within a tick. */
	if (first || c == '\n' || s->olen == sizeof(s->obuf))
		flush_locked(s);
}

void lt_serial_out(struct lt_serial *s, uint16_t off, uint8_t v)
{
	pthread_mutex_lock(&s->lock);
	bool dlab = s->lcr & LCR_DLAB;
	switch (off) {
	case R_DATA:
		if (dlab) {
			s->dll = v;
			break;
		}
		if (s->mcr & MCR_LOOP)
			rx_push(s, v);
		else
			emit(s, v);
		s->iir_thre_pending = 1;
		raise_if_pending(s);
		break;
	case R_IER:
		if (dlab) {
			s->dlm = v;
			break;
		}
		s->ier = v & 0x0f;
		if (s->ier & IER_THRI)
			s->iir_thre_pending = 1; /* the THR is always empty */
		raise_if_pending(s);
		break;
	case R_IIR:
		s->fcr = v;
		break;
	case R_LCR:
		s->lcr = v;
		break;
	case R_MCR:
		s->mcr = v & 0x1f;
		break;
	case R_SCR:
		s->scr = v;
		break;
	default: /* LSR/MSR are read-only */
		break;
	}
	pthread_mutex_unlock(&s->lock);
}

uint8_t lt_serial_in(struct lt_serial *s, uint16_t off)
{
	uint8_t v = 0;
	pthread_mutex_lock(&s->lock);
	bool dlab = s->lcr & LCR_DLAB;
	switch (off) {
	case R_DATA:
		if (dlab) {
			v = s->dll;
		} else if (s->rx_len) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % LT_SERIAL_RX_MAX;
			s->rx_len--;
		}
		break;
	case R_IER:
		v = dlab ? s->dlm : s->ier;
		break;
	case R_IIR:
		if ((s->ier & IER_RDI) && s->rx_len) {
			v = IIR_RDI;
		} else if ((s->ier & IER_THRI) && s->iir_thre_pending) {
			v = IIR_THRI;
			s->iir_thre_pending = 0; /* reading IIR acknowledges THRE */
		} else {
			v = IIR_NONE;
		}
		break;
	case R_LCR:
		v = s->lcr;
		break;
	case R_MCR:
		v = s->mcr;
		break;
	case R_LSR:
		v = LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0);
		break;
	case R_MSR:
		if (s->mcr & MCR_LOOP) {
			v = (uint8_t)(((s->mcr & MCR_DTR) ? 0x20 : 0) | ((s->mcr & MCR_RTS) ? 0x10 : 0) |
				      ((s->mcr & MCR_OUT1) ? 0x40 : 0) | ((s->mcr & MCR_OUT2) ? 0x80 : 0));
		} else {
			v = 0xb0; /* DCD, DSR, CTS */
		}
		break;
	case R_SCR:
		v = s->scr;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	return v;
}

size_t lt_serial_rx_room(struct lt_serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t room = LT_SERIAL_RX_MAX - s->rx_len;
	pthread_mutex_unlock(&s->lock);
	return room;
}

size_t lt_serial_feed(struct lt_serial *s, const uint8_t *data, size_t n)
{
	pthread_mutex_lock(&s->lock);
	size_t k = 0;
	for (; k < n && s->rx_len < LT_SERIAL_RX_MAX; k++)
		rx_push(s, data[k]);
	if (k)
		raise_if_pending(s);
	pthread_mutex_unlock(&s->lock);
	return k;
}

struct serial_state {
	uint8_t ier, thre, lcr, mcr, scr, dll, dlm, fcr;
	uint32_t rx_len;
	uint8_t rx[LT_SERIAL_RX_MAX];
};

int lt_serial_save(struct lt_serial *s, struct lt_buf *b)
{
	struct serial_state st;
	memset(&st, 0, sizeof(st));
	pthread_mutex_lock(&s->lock);
	flush_locked(s);
	st.ier = s->ier;
	st.thre = s->iir_thre_pending;
	st.lcr = s->lcr;
	st.mcr = s->mcr;
	st.scr = s->scr;
	st.dll = s->dll;
	st.dlm = s->dlm;
	st.fcr = s->fcr;
	st.rx_len = s->rx_len;
	for (uint32_t i = 0; i < s->rx_len; i++)
		st.rx[i] = s->rx[(s->rx_head + i) % LT_SERIAL_RX_MAX];
	pthread_mutex_unlock(&s->lock);
	return lt_blob_put(b, 1, &st, sizeof(st));
}

int lt_serial_load(struct lt_serial *s, const void *p, size_t n)
{
	struct lt_blob_reader r = {.p = p, .len = n, .version = 1};
	struct serial_state st;
	if (lt_blob_get(&r, 1, 0, &st, sizeof(st), "serial") < 0)
		return -1;
	if (st.rx_len > LT_SERIAL_RX_MAX)
		return lt_fail("serial state: rx length %u out of range", st.rx_len);
	pthread_mutex_lock(&s->lock);
	s->ier = st.ier & 0x0f;
	s->iir_thre_pending = st.thre ? 1 : 0;
	s->lcr = st.lcr;
	s->mcr = st.mcr & 0x1f;
	s->scr = st.scr;
	s->dll = st.dll;
	s->dlm = st.dlm;
	s->fcr = st.fcr;
	s->rx_head = 0;
	s->rx_len = st.rx_len;
	memcpy(s->rx, st.rx, st.rx_len);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
