#include "util.h"

#include <stdlib.h>
#include <string.h>

static int level = -1;

static enum lt_log_level level_from_env(void)
{
	const char *e = getenv("LTTLE_LOG");
	if (!e)
		return LT_LOG_WARN;
	if (!strcmp(e, "error"))
		return LT_LOG_ERROR;
	if (!strcmp(e, "info"))
		return LT_LOG_INFO;
	if (!strcmp(e, "debug"))
		return LT_LOG_DEBUG;
	return LT_LOG_WARN;
}

void lt_log_set_level(enum lt_log_level l)
{
	level = (int)l;
}

enum lt_log_level lt_log_get_level(void)
{
	if (level < 0)
		level = (int)level_from_env();
	return (enum lt_log_level)level;
}

void lt_log(enum lt_log_level l, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	if ((int)l > (int)lt_log_get_level())
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line so concurrent writers do not interleave. */
	fprintf(stderr, "lttle: %s: %s\n", names[l], line);
}
