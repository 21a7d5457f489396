/* NULL-terminated string vectors. */
#include "init.h"

#include <stdlib.h>
#include <string.h>

void li_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

size_t li_strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

int li_strv_push(char ***v, const char *s, size_t n)
{
	size_t len = li_strv_len(*v);
	if (len >= LI_MAX_ARGS)
		return lt_fail("more than %d entries", LI_MAX_ARGS);
	char *copy = lt_strndup(s, n);
	if (!copy)
		return -1;
	char **grown = lt_realloc(*v, (len + 2) * sizeof(char *));
	if (!grown) {
		free(copy);
		return -1;
	}
	grown[len] = copy;
	grown[len + 1] = NULL;
	*v = grown;
	return 0;
}
