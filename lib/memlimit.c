/* memlimit.c — see memlimit.h. */
#include "memlimit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* cgroup v1 says "no limit" with its page counter's maximum (2^63 rounded down to a page);
 * nothing real comes near 2^62 bytes. */
#define MEMLIMIT_V1_UNLIMITED (UINT64_C(1) << 62)

int memlimit_parse(const char *text, uint64_t *ret) {
	char *end;

	if (strncmp(text, "max", 3) == 0)
		return -ENOENT;
	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || (*end && *end != '\n'))
		return -EINVAL;
	if (v >= MEMLIMIT_V1_UNLIMITED)
		return -ENOENT;
	*ret = v;
	return 0;
}

int memlimit_parse_stat(const char *text, const char *key, uint64_t *ret) {
	size_t klen = strlen(key);

	for (const char *line = text; line && *line;) {
		const char *next = strchr(line, '\n');
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			char value[32];
			size_t n = (next ? (size_t)(next - line) : strlen(line)) - klen - 1;
			if (n == 0 || n >= sizeof value)
				return -EINVAL;
			memcpy(value, line + klen + 1, n);
			value[n] = '\0';
			return memlimit_parse(value, ret);
		}
		line = next ? next + 1 : NULL;
	}
	return -ENOENT;
}

static int read_text(const char *dir, const char *name, char *buf, size_t size) {
	char path[4400];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, size - 1 - got);
		if (n < 0)
			return -errno;
		if (n == 0 || (got += (size_t)n) == size - 1)
			break;
	}
	buf[got] = '\0';
	return 0;
}

static int read_value(const char *dir, const char *name, uint64_t *ret) {
	char buf[64];
	int r = read_text(dir, name, buf, sizeof buf);
	return r < 0 ? r : memlimit_parse(buf, ret);
}

/* This process's cgroup path in the v2 hierarchy ("0::PATH") or v1's memory controller
 * ("N:…memory…:PATH"), from /proc/self/cgroup. 0 or -ENOENT. */
static int own_cgroup(const char *root, enum memlimit_kind kind, char *ret, size_t size) {
	char path[512], line[4200];
	int r = -ENOENT;

	snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		char *controllers = strchr(line, ':');
		char *cg = controllers ? strchr(controllers + 1, ':') : NULL;
		if (!cg)
			continue;
		*cg++ = '\0';
		*controllers++ = '\0';
		bool match = false;
		if (kind == MEMLIMIT_V2)
			match = streq(line, "0") && *controllers == '\0';
		else
			for (char *save = NULL, *c = strtok_r(controllers, ",", &save); c && !match;
			     c = strtok_r(NULL, ",", &save))
				match = streq(c, "memory");
		if (match && strlen(cg) < size) {
			strcpy(ret, cg);
			r = 0;
		}
	}
	fclose(f);
	return r;
}

/* Where the hierarchy holding `cgroup` is mounted, from /proc/self/mountinfo: the cgroup2
 * mount (v2) or the cgroup mount with the memory controller (v1). Its directory, with the
 * mount's own root taken off the path (a container sees its part of the tree only). */
static int cgroup_dir(const char *root, enum memlimit_kind kind, const char *cgroup, char *ret,
                      size_t size) {
	char path[512], line[8192];
	int r = -ENOENT;

	snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof line, f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
		char *fields[5], *save = NULL, *tok = strtok_r(line, " \n", &save);
		int n = 0;
		for (; tok && n < 5; tok = strtok_r(NULL, " \n", &save))
			fields[n++] = tok;
		while (tok && !streq(tok, "-"))
			tok = strtok_r(NULL, " \n", &save);
		char *fstype = tok ? strtok_r(NULL, " \n", &save) : NULL;
		char *source = fstype ? strtok_r(NULL, " \n", &save) : NULL;
		char *super = source ? strtok_r(NULL, " \n", &save) : NULL;
		if (n < 5 || !super)
			continue;
		if (kind == MEMLIMIT_V2 && !streq(fstype, "cgroup2"))
			continue;
		if (kind == MEMLIMIT_V1) {
			bool memory = false;
			char *s2 = NULL;
			if (!streq(fstype, "cgroup"))
				continue;
			for (char *o = strtok_r(super, ",", &s2); o && !memory;
			     o = strtok_r(NULL, ",", &s2))
				memory = streq(o, "memory");
			if (!memory)
				continue;
		}
		const char *mroot = fields[3], *rest = cgroup;
		size_t rl = strlen(mroot);
		if (!streq(mroot, "/")) {
			if (strncmp(cgroup, mroot, rl) != 0 || (cgroup[rl] && cgroup[rl] != '/'))
				continue; /* this mount does not show our cgroup */
			rest = cgroup + rl;
		}
		if ((size_t)snprintf(ret, size, "%s%s%s", root, fields[4],
		                     streq(rest, "/") ? "" : rest) < size)
			r = 0;
	}
	fclose(f);
	return r;
}

int memlimit_init_at(struct memlimit *m, const char *root) {
	char cg[4096], dir[4096];
	uint64_t v;

	if (root && root != m->root)
		snprintf(m->root, sizeof m->root, "%s", root);
	else if (!root)
		m->root[0] = '\0';
	m->kind = MEMLIMIT_NONE;
	m->dir[0] = '\0';
	/* v2 first: on a hybrid host the v2 tree is mounted but has no memory controller,
	 * and then v1's memory hierarchy is the one that limits us */
	if (own_cgroup(m->root, MEMLIMIT_V2, cg, sizeof cg) >= 0 &&
	    cgroup_dir(m->root, MEMLIMIT_V2, cg, dir, sizeof dir) >= 0 &&
	    read_value(dir, "memory.current", &v) >= 0) {
		m->kind = MEMLIMIT_V2;
		snprintf(m->dir, sizeof m->dir, "%s", dir);
		return 0;
	}
	if (own_cgroup(m->root, MEMLIMIT_V1, cg, sizeof cg) >= 0 &&
	    cgroup_dir(m->root, MEMLIMIT_V1, cg, dir, sizeof dir) >= 0 &&
	    read_value(dir, "memory.usage_in_bytes", &v) >= 0) {
		m->kind = MEMLIMIT_V1;
		snprintf(m->dir, sizeof m->dir, "%s", dir);
	}
	return 0;
}

static int read_limit(const struct memlimit *m, uint64_t *current, uint64_t *max) {
	char stat[8192];
	int r;

	switch (m->kind) {
	case MEMLIMIT_V2:
		r = read_value(m->dir, "memory.max", max);
		return r < 0 ? r : read_value(m->dir, "memory.current", current);
	case MEMLIMIT_V1:
		/* a parent's limit binds us too; memory.stat says the lowest one above */
		r = read_text(m->dir, "memory.stat", stat, sizeof stat);
		if (r >= 0)
			r = memlimit_parse_stat(stat, "hierarchical_memory_limit", max);
		if (r < 0) /* no memory.stat, or no limit above us: our own, if any */
			r = read_value(m->dir, "memory.limit_in_bytes", max);
		return r < 0 ? r : read_value(m->dir, "memory.usage_in_bytes", current);
	default:
		return -ENOENT;
	}
}

int memlimit_read(struct memlimit *m, uint64_t *current, uint64_t *max) {
	int r = read_limit(m, current, max);
	if (r != -ENOENT && m->kind != MEMLIMIT_NONE)
		return r;
	/* No limit where we were: the process may have been moved since, or the controller
	 * appeared. Looking again costs a few small reads, once a second. */
	char was[sizeof m->dir];
	memcpy(was, m->dir, sizeof was);
	(void)memlimit_init_at(m, m->root);
	if (streq(was, m->dir))
		return r;
	return read_limit(m, current, max);
}
