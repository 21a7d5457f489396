#include "util.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *home_cache;

const char *lt_home(void)
{
	if (home_cache)
		return home_cache;
	const char *e = getenv("LTTLE_HOME");
	if (e && *e) {
		home_cache = lt_strdup(e);
		return home_cache;
	}
	const char *xdg = getenv("XDG_DATA_HOME");
	if (xdg && *xdg) {
		home_cache = lt_sprintf("%s/lttle", xdg);
		return home_cache;
	}
	const char *h = getenv("HOME");
	if (!h || !*h) {
		struct passwd *pw = getpwuid(getuid());
		h = pw ? pw->pw_dir : "/tmp";
	}
	home_cache = lt_sprintf("%s/.local/share/lttle", h);
	return home_cache;
}

char *lt_path_join(const char *a, const char *b)
{
	size_t la = strlen(a);
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++;
	return lt_sprintf("%.*s/%s", (int)la, a, b);
}
