#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct item {
	char label[64];
	uint64_t total;
	uint64_t done;
	uint64_t last_draw_ns;
	bool finished;
	char status[32];
};

struct lt_progress {
	FILE *out;
	bool quiet;
	bool tty;
	int n;
	int drawn; /* lines currently on screen (TTY mode) */
	struct item *items;
};

struct lt_progress *lt_progress_new(FILE *out, bool quiet)
{
	struct lt_progress *p = lt_calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->out = out;
	p->quiet = quiet;
	p->tty = isatty(fileno(out)) && getenv("TERM") && strcmp(getenv("TERM"), "dumb");
	return p;
}

static void draw_item(struct lt_progress *p, const struct item *it, const char *status)
{
	char a[32], b[32];
	if (status)
		fprintf(p->out, "%s: %s\033[K\n", it->label, status);
	else if (it->total)
		fprintf(p->out, "%s: %s / %s (%3d%%)\033[K\n", it->label,
			lt_human_size(it->done, a, sizeof(a)), lt_human_size(it->total, b, sizeof(b)),
			(int)(it->done * 100 / it->total));
	else
		fprintf(p->out, "%s: %s\033[K\n", it->label, lt_human_size(it->done, a, sizeof(a)));
}

static void redraw(struct lt_progress *p)
{
	if (p->drawn)
		fprintf(p->out, "\033[%dA", p->drawn);
	for (int i = 0; i < p->n; i++)
		draw_item(p, &p->items[i], p->items[i].finished ? p->items[i].status : NULL);
	p->drawn = p->n;
	fflush(p->out);
}

int lt_progress_add(struct lt_progress *p, const char *label, uint64_t total)
{
	if (!p)
		return 0;
	struct item *items = lt_realloc(p->items, sizeof(*items) * (size_t)(p->n + 1));
	if (!items)
		return -1;
	p->items = items;
	struct item *it = &items[p->n];
	memset(it, 0, sizeof(*it));
	snprintf(it->label, sizeof(it->label), "%s", label);
	it->total = total;
	if (p->quiet)
		return p->n++;
	if (p->tty) {
		p->n++;
		redraw(p);
		return p->n - 1;
	}
	char a[32];
	if (total)
		fprintf(p->out, "%s: started (%s)\n", label, lt_human_size(total, a, sizeof(a)));
	else
		fprintf(p->out, "%s: started\n", label);
	fflush(p->out);
	return p->n++;
}

void lt_progress_update(struct lt_progress *p, int item, uint64_t done)
{
	if (!p || item < 0 || item >= p->n)
		return;
	struct item *it = &p->items[item];
	it->done = done;
	if (p->quiet || !p->tty)
		return;
	uint64_t now = lt_now_ns();
	if (now - it->last_draw_ns < 100000000ull) /* 10 redraws a second at most */
		return;
	it->last_draw_ns = now;
	redraw(p);
}

void lt_progress_done(struct lt_progress *p, int item, const char *status)
{
	if (!p || item < 0 || item >= p->n)
		return;
	struct item *it = &p->items[item];
	it->finished = true;
	snprintf(it->status, sizeof(it->status), "%s", status ? status : "done");
	if (p->quiet)
		return;
	if (p->tty) {
		redraw(p);
		return;
	}
	fprintf(p->out, "%s: %s\n", it->label, status ? status : "done");
	fflush(p->out);
}

void lt_progress_free(struct lt_progress *p)
{
	if (!p)
		return;
	free(p->items);
	free(p);
}
