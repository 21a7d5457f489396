/* Timers on a clock: an intrusive pairing heap ordered by (deadline, arm
 * order), so arming never allocates and equal deadlines fire FIFO. */
#include "proxy.h"

static bool before(const struct lt_timer *a, const struct lt_timer *b)
{
	return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

/* Makes the later root the first child of the earlier one. */
static struct lt_timer *meld(struct lt_timer *a, struct lt_timer *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (before(b, a)) {
		struct lt_timer *t = a;
		a = b;
		b = t;
	}
	b->prev = a;
	b->next = a->child;
	if (a->child)
		a->child->prev = b;
	a->child = b;
	a->next = a->prev = NULL;
	return a;
}

/* Standard two-pass merge of a sibling list into one heap. */
static struct lt_timer *merge_pairs(struct lt_timer *first)
{
	struct lt_timer *pairs = NULL; /* merged pairs, linked through next */
	while (first) {
		struct lt_timer *a = first, *b = first->next;
		first = b ? b->next : NULL;
		a->next = a->prev = NULL;
		if (b)
			b->next = b->prev = NULL;
		struct lt_timer *m = meld(a, b);
		m->next = pairs;
		pairs = m;
	}
	struct lt_timer *root = NULL;
	while (pairs) {
		struct lt_timer *n = pairs->next;
		pairs->next = NULL;
		root = meld(root, pairs);
		pairs = n;
	}
	return root;
}

void lt_timer_init(struct lt_timer *t, void (*fn)(struct lt_timer *t))
{
	*t = (struct lt_timer){.fn = fn};
}

void lt_timer_cancel(struct lt_clock *c, struct lt_timer *t)
{
	if (!t->armed)
		return;
	t->armed = false;
	struct lt_timer *kids = merge_pairs(t->child);
	if (t == c->root) {
		c->root = kids;
	} else {
		/* prev is the parent when t is its first child, else a sibling */
		if (t->prev->child == t)
			t->prev->child = t->next;
		else
			t->prev->next = t->next;
		if (t->next)
			t->next->prev = t->prev;
		c->root = meld(c->root, kids);
	}
	t->child = t->next = t->prev = NULL;
}

void lt_timer_arm(struct lt_clock *c, struct lt_timer *t, uint64_t when)
{
	lt_timer_cancel(c, t);
	t->when = when;
	t->seq = ++c->seq;
	t->child = t->next = t->prev = NULL;
	t->armed = true;
	c->root = meld(c->root, t);
}

void lt_timer_arm_in(struct lt_clock *c, struct lt_timer *t, uint64_t delta)
{
	uint64_t now = c->now(c);
	lt_timer_arm(c, t, delta > UINT64_MAX - now ? UINT64_MAX : now + delta);
}

uint64_t lt_clock_next(struct lt_clock *c)
{
	return c->root ? c->root->when : UINT64_MAX;
}

size_t lt_clock_run(struct lt_clock *c, uint64_t now)
{
	size_t n = 0;
	while (c->root && c->root->when <= now) {
		struct lt_timer *t = c->root;
		lt_timer_cancel(c, t);
		t->fn(t);
		n++;
	}
	return n;
}
