/* rundir.c — see rundir.h. Must never guess beyond the first entry: the others belong to
 * whatever else the unit declared. */
#include "rundir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rundir_default(char *buf, size_t size) {
	const char *e = getenv("RUNTIME_DIRECTORY");
	int n;

	if (e && *e)
		n = snprintf(buf, size, "%.*s", (int)strcspn(e, ":"), e);
	else
		n = snprintf(buf, size, "%s", RUNDIR_DEFAULT);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
