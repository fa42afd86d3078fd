/* memlimit.c — see memlimit.h. */
#include "memlimit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

int memlimit_parse(const char *text, uint64_t *ret) {
	char *end;

	if (strncmp(text, "max", 3) == 0)
		return -ENOENT;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || (*end && *end != '\n'))
		return -EINVAL;
	*ret = v;
	return 0;
}

static int read_value(const char *dir, const char *name, uint64_t *ret) {
	char path[4200], buf[64];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return memlimit_parse(buf, ret);
}

int memlimit_init(struct memlimit *m) {
	char line[4000];
	uint64_t max;

	m->dir[0] = '\0';
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return 0;
	/* cgroup v2 is the one line "0::/path" */
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(m->dir, sizeof m->dir, "/sys/fs/cgroup%s", line + 3);
			break;
		}
	fclose(f);
	if (m->dir[0] && read_value(m->dir, "memory.max", &max) < 0)
		m->dir[0] = '\0'; /* no limit, or no memory controller here: nothing to watch */
	return 0;
}

int memlimit_read(const struct memlimit *m, uint64_t *current, uint64_t *max) {
	int r;

	if (!m->dir[0])
		return -ENOENT;
	r = read_value(m->dir, "memory.max", max);
	if (r >= 0)
		r = read_value(m->dir, "memory.current", current);
	return r;
}
