/* pathtrust.c — see pathtrust.h. Must never open or follow anything itself: lstat only. */
#include "pathtrust.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int pathtrust_check(const char *path, char *why, size_t size) {
	_cleanup_free_ char *prefix = strdup(path);
	struct stat st;

	if (!prefix)
		return -ENOMEM;
	size_t len = strlen(prefix);
	/* each prefix ending before a '/', then the whole path */
	for (size_t i = 1; i <= len; i++) {
		if (i < len && prefix[i] != '/')
			continue;
		char saved = prefix[i];
		prefix[i] = '\0';
		int r = lstat(prefix, &st);
		if (r < 0 && (errno == ENOENT || errno == ENOTDIR)) {
			prefix[i] = saved;
			return 0;
		}
		if (r < 0)
			return -errno;
		if (S_ISLNK(st.st_mode) && st.st_uid != 0 && st.st_uid != geteuid()) {
			snprintf(why, size, "%s is a symlink owned by uid %u", prefix,
			         (unsigned)st.st_uid);
			return -ELOOP;
		}
		prefix[i] = saved;
	}
	return 0;
}
