#!/bin/sh
# deps.sh — install the Debian packages tcpmap needs to build and test.
# Both `make run` and `make check` call this; it is the one place that lists them.
# As root it runs apt-get for what is missing; otherwise it prints the command.
set -eu

PACKAGES="build-essential pkg-config libsystemd-dev libssl-dev libyaml-dev libcmocka-dev
bats clang clang-format libclang-rt-14-dev python3 python3-yaml openssl socat curl iproute2 util-linux systemd
mandoc procps psmisc parallel valgrind gdb haproxy nginx-light prometheus tmux
debhelper dpkg-dev fakeroot lintian"
# `deps.sh bench`: also the load generators and peers that only `make bench` uses.
[ "${1:-}" = bench ] && PACKAGES="$PACKAGES iperf3 wrk stunnel4 libnginx-mod-stream liburing-dev"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
	echo "deps: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# haproxy and nginx are only test peers, and prometheus (metrics-prometheus.bats) runs only
	# as the test starts it: keep their packaged services from starting.
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
	echo "deps: missing packages; run as root:" >&2
	echo "  apt-get install -y$missing" >&2
	exit 1
fi
