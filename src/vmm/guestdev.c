/* The lttle guest device (guest_abi.h): per-vCPU line buffers, the event
 * parser and the reply lines. Guest bytes are hostile: lines are bounded,
 * numbers range-checked, anything else is reported as malformed. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "vmm/vmm_int.h"

static const struct {
	const char *name;
	enum lt_guest_event_type type;
	int args; /* 0: none, 1: PORT, 2: PORT RET, 3: CODE, 4: [CODE], 5: TEXT */
} kinds[] = {
	{LT_GUEST_EV_READY, LT_GEV_READY, 0},
	{LT_GUEST_EV_LISTEN_BEFORE, LT_GEV_LISTEN_BEFORE, 1},
	{LT_GUEST_EV_LISTEN_AFTER, LT_GEV_LISTEN_AFTER, 2},
	{LT_GUEST_EV_BIND_BEFORE, LT_GEV_BIND_BEFORE, 1},
	{LT_GUEST_EV_BIND_AFTER, LT_GEV_BIND_AFTER, 2},
	{LT_GUEST_EV_EXIT, LT_GEV_EXIT, 3},
	{LT_GUEST_EV_TRIGGER, LT_GEV_TRIGGER, 4},
	{LT_GUEST_EV_HOLD, LT_GEV_HOLD, 0},
	{LT_GUEST_EV_RELEASE, LT_GEV_RELEASE, 0},
	{LT_GUEST_EV_LOG, LT_GEV_LOG, 5},
	{LT_GUEST_EV_POWEROFF, LT_GEV_POWEROFF, 0},
};

const char *lt_guest_event_name(enum lt_guest_event_type t)
{
	for (size_t i = 0; i < LT_ARRAY_LEN(kinds); i++)
		if (kinds[i].type == t)
			return kinds[i].name;
	return "unknown";
}

/* Decimal with optional '-', within [lo, hi]; the whole token. */
static int parse_int(const char *s, size_t n, long lo, long hi, long *out)
{
	if (n == 0 || n > 12)
		return -1;
	char tmp[16];
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	size_t i = tmp[0] == '-' ? 1 : 0;
	if (!tmp[i])
		return -1;
	for (size_t j = i; j < n; j++)
		if (tmp[j] < '0' || tmp[j] > '9')
			return -1;
	errno = 0;
	long v = strtol(tmp, NULL, 10);
	if (errno || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Splits off the next space-separated token. */
static bool next_tok(const char **p, const char *end, const char **tok, size_t *tn)
{
	while (*p < end && **p == ' ')
		(*p)++;
	if (*p >= end)
		return false;
	*tok = *p;
	while (*p < end && **p != ' ')
		(*p)++;
	*tn = (size_t)(*p - *tok);
	return true;
}

static void copy_text(char *dst, size_t cap, const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[k] = '\0';
}

int lt_guest_event_parse(const char *line, size_t len, struct lt_guest_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (len && line[len - 1] == '\r')
		len--;
	const char *p = line, *end = line + len, *tok;
	size_t tn;
	if (!next_tok(&p, end, &tok, &tn))
		return -1;
	copy_text(ev->name, sizeof(ev->name), tok, tn);
	int args = -1;
	ev->type = LT_GEV_UNKNOWN;
	for (size_t i = 0; i < LT_ARRAY_LEN(kinds); i++)
		if (strlen(kinds[i].name) == tn && !memcmp(kinds[i].name, tok, tn)) {
			ev->type = kinds[i].type;
			args = kinds[i].args;
		}
	if (ev->type == LT_GEV_UNKNOWN) {
		copy_text(ev->text, sizeof(ev->text), line, len);
		return 0;
	}
	long v;
	switch (args) {
	case 0:
		break;
	case 1:
	case 2:
		if (!next_tok(&p, end, &tok, &tn) || parse_int(tok, tn, 0, 65535, &v) < 0)
			return -1;
		ev->port = (uint16_t)v;
		if (args == 2) {
			if (!next_tok(&p, end, &tok, &tn) ||
			    parse_int(tok, tn, INT32_MIN, INT32_MAX, &v) < 0)
				return -1;
			ev->code = (int32_t)v;
		}
		break;
	case 3:
	case 4:
		if (!next_tok(&p, end, &tok, &tn)) {
			if (args == 3)
				return -1;
			break;
		}
		if (parse_int(tok, tn, INT32_MIN, INT32_MAX, &v) < 0)
			return -1;
		ev->code = (int32_t)v;
		break;
	case 5:
		while (p < end && *p == ' ')
			p++;
		copy_text(ev->text, sizeof(ev->text), p, (size_t)(end - p));
		return 0;
	}
	if (next_tok(&p, end, &tok, &tn))
		return -1; /* trailing junk */
	return 0;
}

int lt_guestdev_init(struct lt_guestdev *g, int nvcpus)
{
	memset(g, 0, sizeof(*g));
	g->v = lt_calloc((size_t)nvcpus, sizeof(*g->v));
	if (!g->v)
		return -1;
	g->nv = nvcpus;
	pthread_mutex_init(&g->lock, NULL);
	return 0;
}

void lt_guestdev_free(struct lt_guestdev *g)
{
	free(g->v);
	g->v = NULL;
	pthread_mutex_destroy(&g->lock);
}

static void set_reply_mode(struct lt_guestdev_vcpu *v, bool restored)
{
	v->reply_pos = 0;
	if (!restored) {
		memcpy(v->reply, "!ok\n", 4);
		v->reply_len = 4;
		return;
	}
	uint8_t rnd[32];
	size_t got = 0;
	while (got < sizeof(rnd)) {
		ssize_t r = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got < sizeof(rnd)) { /* never hand out a predictable seed */
		memcpy(v->reply, "!ok\n", 4);
		v->reply_len = 4;
		return;
	}
	/* Local hex: keeps the lean VMM binary free of libcrypto. */
	static const char digits[] = "0123456789abcdef";
	char hex[65];
	for (size_t i = 0; i < sizeof(rnd); i++) {
		hex[2 * i] = digits[rnd[i] >> 4];
		hex[2 * i + 1] = digits[rnd[i] & 15];
	}
	hex[64] = '\0';
	int n = snprintf(v->reply, sizeof(v->reply), "!restored %" PRIu64 " %s\n", lt_wall_ns(),
			 hex);
	v->reply_len = (uint32_t)n;
}

static void set_reply(struct lt_guestdev *g, struct lt_guestdev_vcpu *v)
{
	set_reply_mode(v, g->restored);
	g->restored = false;
}

void lt_guestdev_mark_restored(struct lt_guestdev *g)
{
	pthread_mutex_lock(&g->lock);
	/* A snapshot taken at a report's '\n' restores with that report's
	 * reply still unread: it becomes the "!restored" answer. */
	bool any = false;
	for (int i = 0; i < g->nv; i++) {
		struct lt_guestdev_vcpu *v = &g->v[i];
		if (v->reply_len && v->reply_pos == 0) {
			set_reply_mode(v, true);
			any = true;
		}
	}
	g->restored = !any;
	pthread_mutex_unlock(&g->lock);
}

int lt_guestdev_out(struct lt_guestdev *g, int vcpu, uint8_t byte, struct lt_guest_event *ev)
{
	if (vcpu < 0 || vcpu >= g->nv)
		return 0;
	int rc = 0;
	pthread_mutex_lock(&g->lock);
	struct lt_guestdev_vcpu *v = &g->v[vcpu];
	if (byte == '\n') {
		if (!v->discarding) {
			rc = lt_guest_event_parse(v->line, v->len, ev) < 0 ? 2 : 1;
			if (rc == 2)
				copy_text(ev->text, sizeof(ev->text), v->line, v->len);
			ev->vcpu = vcpu;
			ev->seq = ++g->seq;
			ev->mono_ns = lt_now_ns();
			set_reply(g, v);
		}
		v->len = 0;
		v->discarding = false;
	} else if (!v->discarding) {
		if (v->len + 1 >= LT_GUEST_LINE_MAX) /* the '\n' must fit too */
			v->discarding = true;
		else
			v->line[v->len++] = (char)byte;
	}
	pthread_mutex_unlock(&g->lock);
	return rc;
}

uint8_t lt_guestdev_in(struct lt_guestdev *g, int vcpu)
{
	if (vcpu < 0 || vcpu >= g->nv)
		return 0xff;
	pthread_mutex_lock(&g->lock);
	struct lt_guestdev_vcpu *v = &g->v[vcpu];
	if (v->reply_pos >= v->reply_len) /* nothing pending: a fresh "!ok" */
		set_reply(g, v);
	uint8_t c = (uint8_t)v->reply[v->reply_pos++];
	pthread_mutex_unlock(&g->lock);
	return c;
}

/* State: tag 1 = flags/seq, tag 2 (repeated) = per-vCPU buffers. */
struct gd_vstate {
	uint32_t len, discarding, reply_len, reply_pos;
	char line[LT_GUEST_LINE_MAX];
	char reply[LT_GUEST_LINE_MAX + 1];
	char pad[3];
};

int lt_guestdev_save(struct lt_guestdev *g, struct lt_buf *b)
{
	pthread_mutex_lock(&g->lock);
	uint64_t hdr[2] = {g->seq, (uint64_t)g->nv};
	int rc = lt_blob_put(b, 1, hdr, sizeof(hdr));
	for (int i = 0; i < g->nv && rc == 0; i++) {
		struct gd_vstate s;
		memset(&s, 0, sizeof(s));
		s.len = g->v[i].len;
		s.discarding = g->v[i].discarding;
		s.reply_len = g->v[i].reply_len;
		s.reply_pos = g->v[i].reply_pos;
		memcpy(s.line, g->v[i].line, sizeof(s.line));
		memcpy(s.reply, g->v[i].reply, sizeof(s.reply));
		rc = lt_blob_put(b, 2, &s, sizeof(s));
	}
	pthread_mutex_unlock(&g->lock);
	return rc;
}

int lt_guestdev_load(struct lt_guestdev *g, const void *p, size_t n)
{
	struct lt_blob_reader r = {.p = p, .len = n, .version = 1};
	uint64_t hdr[2];
	if (lt_blob_get(&r, 1, 0, hdr, sizeof(hdr), "guest device header") < 0)
		return -1;
	if (hdr[1] != (uint64_t)g->nv)
		return lt_fail("guest device state: %llu vCPUs saved, VM has %d",
			       (unsigned long long)hdr[1], g->nv);
	pthread_mutex_lock(&g->lock);
	g->seq = hdr[0];
	int rc = 0;
	for (int i = 0; i < g->nv; i++) {
		struct gd_vstate s;
		if (lt_blob_get(&r, 2, (uint32_t)i, &s, sizeof(s), "guest device vCPU") < 0) {
			rc = -1;
			break;
		}
		if (s.len >= LT_GUEST_LINE_MAX || s.reply_len > LT_GUEST_LINE_MAX ||
		    s.reply_pos > s.reply_len) {
			rc = lt_fail("guest device state: vCPU %d buffer out of range", i);
			break;
		}
		g->v[i].len = s.len;
		g->v[i].discarding = s.discarding != 0;
		g->v[i].reply_len = s.reply_len;
		g->v[i].reply_pos = s.reply_pos;
		memcpy(g->v[i].line, s.line, sizeof(s.line));
		memcpy(g->v[i].reply, s.reply, sizeof(s.reply));
	}
	pthread_mutex_unlock(&g->lock);
	return rc;
}
