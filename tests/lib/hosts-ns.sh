#!/bin/sh
# hosts-ns.sh HOSTS_FILE COMMAND [ARGS...] — run COMMAND with HOSTS_FILE bind-mounted over
# /etc/hosts in a private mount namespace, so the doc's host names (upstream-host-1, ...)
# resolve for that command only.
#
# It must never change the machine's own /etc/hosts: the bind mount lives only in the new
# namespace (unshare makes mounts private), and it dies with COMMAND. It execs COMMAND in
# its own PID, so the caller can stop COMMAND by the PID it started.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 HOSTS_FILE COMMAND [ARGS...]" >&2; exit 2; }
[ -f "$1" ] || { echo "$0: no hosts file $1" >&2; exit 2; }
exec unshare --mount --propagation private -- /bin/sh -c \
	'mount --bind "$1" /etc/hosts && shift && exec "$@"' hosts-ns "$@"
