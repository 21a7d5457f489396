#include "util.h"

#include <stdlib.h>
#include <string.h>

void *lt_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		lt_fail("out of memory allocating %zu bytes", n);
	return p;
}

void *lt_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		lt_fail("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *lt_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		lt_fail("out of memory allocating %zu bytes", n);
	return q;
}

char *lt_strdup(const char *s)
{
	return lt_strndup(s, strlen(s));
}

char *lt_strndup(const char *s, size_t n)
{
	char *d = lt_malloc(n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *lt_sprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0) {
		lt_fail("out of memory formatting a string");
		return NULL;
	}
	return s;
}

static int buf_reserve(struct lt_buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len - 1)
		return lt_fail("buffer size overflow");
	size_t need = b->len + extra + 1;
	if (b->limit && need - 1 > b->limit)
		return lt_fail("data exceeds the limit of %zu bytes", b->limit);
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *d = lt_realloc(b->data, cap);
	if (!d)
		return -1;
	b->data = d;
	b->cap = cap;
	return 0;
}

int lt_buf_append(struct lt_buf *b, const void *data, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int lt_buf_printf(struct lt_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return lt_fail("bad format string");
	if (buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int lt_buf_cstr(struct lt_buf *b)
{
	if (buf_reserve(b, 0) < 0)
		return -1;
	b->data[b->len] = '\0'; /* a never-appended buffer is fresh memory */
	return 0;
}

void lt_buf_free(struct lt_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
