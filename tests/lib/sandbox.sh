#!/bin/bash
# sandbox.sh — boot a private systemd for integration tests: PID 1 of its own pid, mount, uts
# and ipc namespaces, over an overlay of / whose writes go to tmpfs.
#
#   sandbox.sh start STATE_DIR [SHARE_DIR]   boot; print systemd's PID (as seen from outside).
#                                            SHARE_DIR (default: cwd) is bind-mounted read-write
#                                            at the same path inside, so a checkout anywhere
#                                            (even under /tmp) is visible to `exec`.
#   sandbox.sh exec  STATE_DIR CMD...        run CMD inside (systemctl, journalctl, make ...)
#   sandbox.sh stop  STATE_DIR               power off and remove every trace; safe to repeat
#
# The network namespace is the host's: a socket unit inside listens on the host's loopback.
# Nothing on the host is written except through SHARE_DIR and STATE_DIR.
#
# It must never boot systemd in the caller's own cgroup. A systemd that is PID 1 of a pid
# namespace takes over the cgroup it starts in, and from the machine's root cgroup it would
# move every process of the machine into its own scope. So it first moves itself into a
# private child cgroup in every hierarchy, checks /proc/self/cgroup, and refuses to boot if
# that did not happen. `stop` removes those child cgroups again.
set -euo pipefail

die() { echo "sandbox: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

cg_dir() { # directory where the hierarchy of one /proc/self/cgroup controller field is mounted
	case "$1" in
	"") # the v2 hierarchy: beside v1 controllers (hybrid) or alone at the top (unified)
		if [ -d /sys/fs/cgroup/unified ]; then echo /sys/fs/cgroup/unified; else echo /sys/fs/cgroup; fi ;;
	name=systemd) echo /sys/fs/cgroup/systemd ;;
	*) echo "/sys/fs/cgroup/${1%%,*}" ;;
	esac
}

jail_enter() { # NAME LIST: move this shell into child cgroup NAME below its own, in every hierarchy
	local ctl path dir before
	# Snapshot first: /proc/self/cgroup changes under a reader as we move, and reading it
	# line by line while moving would visit some hierarchies twice and nest the jail.
	before=$(cat /proc/self/cgroup)
	: >"$2"
	while IFS=: read -r _ ctl path; do
		# A v1 cpuset child needs cpus and mems written before it takes a task; systemd
		# does not manage v1 cpuset, so staying where we are there is harmless.
		case "$ctl" in *cpuset*) continue ;; esac
		dir=$(cg_dir "$ctl")
		# A hierarchy not mounted where cg_dir looks is one the inner systemd cannot find
		# either: it looks up the same /sys/fs/cgroup paths through its bind of /sys.
		[ -f "$dir/cgroup.procs" ] || continue
		dir="$dir${path%/}/$1"
		mkdir -p "$dir" && echo "$dir" >>"$2" && echo "$BASHPID" >"$dir/cgroup.procs"
	done <<<"$before"
	# Trust only what the kernel now reports, never what the loop above believes it did.
	while IFS=: read -r _ ctl path; do
		case "$ctl" in *cpuset*) continue ;; esac
		[ -f "$(cg_dir "$ctl")/cgroup.procs" ] || continue
		case "$path" in
		*/"$1") ;;
		*) echo "sandbox: could not confine to a private cgroup (${ctl:-v2} is at $path); refusing to boot systemd" >&2
			exit 1 ;;
		esac
	done </proc/self/cgroup
}

jail_remove() { # LIST: move stragglers up to each jail's parent, then remove the jails depth-first
	local d f p
	[ -f "$1" ] || return 0
	while read -r d; do
		[ -d "$d" ] || continue
		while read -r f; do
			while read -r p; do
				echo "$p" >"$(dirname "$d")/cgroup.procs" 2>/dev/null || true
			done <"$f"
		done < <(find "$d" -name cgroup.procs 2>/dev/null)
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		if [ -d "$d" ]; then echo "sandbox: could not remove $d" >&2; fi
	done <"$1"
}

inner() { # STATE SHARE: runs as PID 1 of the new namespaces; builds the root and execs systemd
	local S=$1 SHARE=$2 R=$1/root u
	# Upper and work dirs must be on one filesystem that is not the lower one: a private tmpfs.
	mount -t tmpfs -o mode=755 tmpfs "$S/fs"
	mkdir -p "$S/fs/upper" "$S/fs/work" "$R"
	mount -t overlay overlay -o "lowerdir=/,upperdir=$S/fs/upper,workdir=$S/fs/work" "$R"
	mount -t proc proc "$R/proc"
	# systemd must not tune the host's kernel, nor touch the host's cgroups outside its jail.
	mount --bind "$R/proc/sys" "$R/proc/sys"
	mount -o remount,bind,ro "$R/proc/sys"
	mount --rbind /sys "$R/sys"
	mount -o remount,bind,ro "$R/sys"
	mount -o remount,bind,ro "$R/sys/fs/cgroup"
	# A minimal /dev: without udev inside, only the nodes services really open.
	mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
	for u in null zero full random urandom tty; do
		touch "$R/dev/$u"
		mount --bind "/dev/$u" "$R/dev/$u"
	done
	mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
	ln -s pts/ptmx "$R/dev/ptmx"
	mount -t tmpfs tmpfs "$R/dev/shm"
	touch "$R/dev/console"
	mount --bind /dev/null "$R/dev/console"
	mount -t tmpfs -o mode=755 tmpfs "$R/run"
	mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
	mkdir -p "$R$SHARE"
	mount --bind "$SHARE" "$R$SHARE"
	# Boot nothing of the host's own configuration, and none of the units that need real
	# hardware, a console or the host's kernel modules.
	rm -rf "$R"/etc/systemd/system/*
	for u in getty.target console-getty.service systemd-modules-load.service systemd-remount-fs.service \
		systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
		systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-tmpfiles-setup-dev.service \
		kmod-static-nodes.service systemd-timesyncd.service systemd-firstboot.service systemd-logind.service; do
		ln -s /dev/null "$R/etc/systemd/system/$u"
	done
	printf '[Unit]\nDescription=test sandbox\nRequires=sysinit.target sockets.target\nAfter=sysinit.target sockets.target\nAllowIsolate=yes\n' \
		>"$R/etc/systemd/system/sandbox.target"
	echo sandbox >/proc/sys/kernel/hostname
	# pivot_root, not chroot: the kernel refuses user namespaces to a chrooted process, and
	# services with PrivateUsers=yes need one. The host's tree is then detached entirely.
	mkdir -p "$R/.oldroot"
	cd "$R"
	pivot_root . .oldroot
	cd /
	umount -l /.oldroot
	rmdir /.oldroot
	# systemd makes / shared only outside containers, and container= says we are one; but
	# LoadCredential= fills /run/credentials from a child mount namespace and needs / shared.
	# This namespace was made private from the host's first, so nothing propagates out.
	mount --make-rshared /
	exec /usr/bin/env -i container=sandbox PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		/lib/systemd/systemd --unit=sandbox.target --show-status=no --log-target=journal-or-kmsg
}

cmd=${1:-}
S=${2:-}
{ [ -n "$cmd" ] && [ -n "$S" ]; } || die "usage: sandbox.sh start|exec|stop STATE_DIR ..."
case "$cmd" in
__inner) inner "$2" "$3" ;;
start)
	{ command -v unshare >/dev/null && command -v nsenter >/dev/null; } || die "needs unshare and nsenter (util-linux)"
	[ -x /lib/systemd/systemd ] || die "needs systemd (/lib/systemd/systemd)"
	SHARE=$(realpath "${3:-$PWD}")
	[ ! -e "$S/pid" ] || die "$S already holds a sandbox"
	mkdir -p "$S/fs"
	S=$(realpath "$S")
	JAIL=tcpmap-sandbox-$$
	(
		jail_enter "$JAIL" "$S/jails"
		exec unshare --pid --fork --mount --propagation private --uts --ipc "$(realpath "$0")" __inner "$S" "$SHARE"
	) >"$S/boot.log" 2>&1 &
	U=$!
	echo "$U" >"$S/unshare.pid"
	P=
	for _ in $(seq 100); do # 10 s
		P=$(pgrep -P "$U" 2>/dev/null | head -1 || true)
		[ -n "$P" ] && [ "$(cat /proc/"$P"/comm 2>/dev/null)" = systemd ] && break
		P=
		sleep 0.1
	done
	if [ -z "$P" ]; then
		cat "$S/boot.log" >&2
		"$0" stop "$S"
		die "systemd did not start"
	fi
	echo "$P" >"$S/pid"
	for _ in $(seq 150); do # 15 s
		st=$(nsenter -t "$P" -m -u -i -p -r -w systemctl is-system-running 2>/dev/null || true)
		case "$st" in running | degraded) break ;; esac
		sleep 0.1
	done
	echo "$P"
	;;
exec)
	shift 2
	P=$(cat "$S/pid" 2>/dev/null) || die "no sandbox in $S"
	exec nsenter -t "$P" -m -u -i -p -r -w "$@"
	;;
stop)
	[ -d "$S" ] || exit 0
	P=$(cat "$S/pid" 2>/dev/null || true)
	U=$(cat "$S/unshare.pid" 2>/dev/null || true)
	# Check it is still our systemd before signalling: a PID can be reused after a crash.
	# (An interrupted earlier stop may have left it as systemd-shutdown, comm "systemd-shutdow".)
	comm=$(cat /proc/"$P"/comm 2>/dev/null || true)
	if [ -n "$P" ] && [[ "$comm" == systemd* ]]; then
		kill -s SIGRTMIN+4 "$P" 2>/dev/null || true # systemd's "poweroff"
		for _ in $(seq 50); do
			kill -0 "$P" 2>/dev/null || break
			sleep 0.1
		done
		# PID 1 of the namespace dying takes every process inside with it.
		if kill -0 "$P" 2>/dev/null; then kill -KILL "$P" 2>/dev/null || true; fi
	fi
	if [ -n "$U" ]; then
		for _ in $(seq 50); do
			kill -0 "$U" 2>/dev/null || break
			sleep 0.1
		done
	fi
	jail_remove "$S/jails"
	# The tmpfs was mounted in the sandbox's mount namespace, which is gone; this only
	# matters if someone bind-mounted it out.
	umount "$S/fs" 2>/dev/null || true
	rm -rf "$S"
	;;
*) die "unknown command $cmd" ;;
esac
