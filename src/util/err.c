#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LT_ERR_MAX 1024

static _Thread_local char errbuf[LT_ERR_MAX];

static int vset(const char *fmt, va_list ap)
{
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	return -1;
}

int lt_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	return -1;
}

int lt_fail_errno(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	size_t used = strlen(errbuf);
	snprintf(errbuf + used, sizeof(errbuf) - used, ": %s", strerror(saved));
	errno = saved;
	return -1;
}

int lt_fail_ctx(const char *fmt, ...)
{
	char old[LT_ERR_MAX];
	memcpy(old, errbuf, sizeof(old));
	va_list ap;
	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	if (old[0]) {
		size_t used = strlen(errbuf);
		snprintf(errbuf + used, sizeof(errbuf) - used, ": %.*s", (int)(sizeof(errbuf) - used), old);
	}
	return -1;
}

const char *lt_errmsg(void)
{
	return errbuf[0] ? errbuf : "unknown error";
}

void lt_clear_error(void)
{
	errbuf[0] = '\0';
}
