/* rundir.c — see rundir.h. Must never guess beyond the first entry of $RUNTIME_DIRECTORY:
 * the others belong to whatever else the unit declared. Must never use the directory's
 * path again after the checks: a path can be swapped, the fd cannot. */
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int rundir_default(char *buf, size_t size) {
	const char *e = getenv("RUNTIME_DIRECTORY");
	int n;

	if (e && *e)
		n = snprintf(buf, size, "%.*s", (int)strcspn(e, ":"), e);
	else
		n = snprintf(buf, size, "%s", RUNDIR_DEFAULT);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static bool owned_by_root_or_us(const struct stat *st) {
	return st->st_uid == 0 || st->st_uid == geteuid();
}

/* Follow a symlink at `path` only when neither it nor the directory holding it can be
 * changed by anyone but root or us: then it says what root (or systemd) meant. */
static int open_trusted_symlink(const char *path) {
	_cleanup_free_ char *copy_dir = strdup(path), *copy_base = strdup(path);
	struct stat pst, lst;

	if (!copy_dir || !copy_base)
		return -ENOMEM;
	const char *name = basename(copy_base);
	_cleanup_close_ int parent = open(dirname(copy_dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent < 0)
		return -errno;
	if (fstat(parent, &pst) < 0 || fstatat(parent, name, &lst, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISLNK(lst.st_mode))
		return -ENOTDIR;
	/* In a sticky directory others cannot remove or rename our entries. */
	bool parent_safe = owned_by_root_or_us(&pst) &&
	                   (!(pst.st_mode & (S_IWGRP | S_IWOTH)) || (pst.st_mode & S_ISVTX));
	if (!parent_safe || !owned_by_root_or_us(&lst))
		return -ELOOP;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int open_dir(const char *path, int *ret_fd, struct stat *ret_st) {
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR)) {
		fd = open_trusted_symlink(path);
		if (fd < 0)
			return fd;
	} else if (fd < 0)
		return -errno;
	if (fstat(fd, ret_st) < 0)
		return -errno;
	if (!S_ISDIR(ret_st->st_mode))
		return -ENOTDIR;
	/* Group or others who can write could create or swap the table's name (a sticky bit
	 * only stops them removing ours once it exists). */
	if (ret_st->st_mode & (S_IWGRP | S_IWOTH))
		return -EACCES;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int rundir_open(const char *path, bool create, int *ret_fd) {
	struct stat st;
	int fd, r;

	if (!path || !ret_fd)
		return -EINVAL;
	/* mkdir never follows a symlink in the last component; EEXIST is checked below. */
	/* 0700, as systemd's RuntimeDirectoryMode= in the units: run by hand as root too, the
	 * table's upstream addresses and byte counts are no other user's business. */
	if (create && mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	r = open_dir(path, &fd, &st);
	if (r < 0)
		return r;
	if (st.st_uid != geteuid()) {
		safe_close(fd);
		return -EPERM;
	}
	*ret_fd = fd;
	return 0;
}

int rundir_open_for_reading(const char *path, int *ret_fd, uid_t *ret_owner) {
	struct stat st;
	int r;

	if (!path || !ret_fd || !ret_owner)
		return -EINVAL;
	r = open_dir(path, ret_fd, &st);
	if (r < 0)
		return r;
	*ret_owner = st.st_uid;
	return 0;
}

const char *rundir_refusal(int r) {
	switch (r) {
	case -ELOOP:
		return "is a symlink that another user made or can replace";
	case -ENOTDIR:
		return "is not a directory";
	case -EPERM:
		return "belongs to another user";
	case -EACCES:
		return "is not a directory only its owner can write";
	default:
		return NULL;
	}
}
