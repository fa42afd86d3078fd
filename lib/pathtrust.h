/* pathtrust.h — may root follow this path? A symlink another user made, anywhere along a
 * path root was given, lets that user point root's reads at any file root can read (and
 * turn error messages or key checks into an oracle on it). Used by tcpmapctl for --config
 * and --secrets-dir when it runs as root; it reads metadata only and opens nothing.
 *
 * A check by path, not by fd: a user who can rename entries in a directory along the path
 * can still swap a component between this check and the open that follows. Keep configs
 * and secrets under directories only root can write (tcpmapctl(1)). */
#pragma once

#include <stddef.h>

/* 0 when no component of `path` is a symlink owned by someone other than root or us;
 * -ELOOP with the offending component in `why` otherwise; -errno when a component cannot
 * be examined (a missing file is for the caller's open to report: 0). */
int pathtrust_check(const char *path, char *why, size_t size);
