#!/usr/bin/env bats
# package.bats — issue 16: the Debian package installs like any other service. `make deb`
# builds it with debhelper and lintian finds no error; installed with apt-get in the private
# systemd of tests/lib/sandbox.sh it relays once the YAML is written and `tcpmapctl apply`
# run; an upgrade to the next build re-executes tcpmap@ in place with streams and idle TLS
# connections open, new connections are answered meanwhile (the time is printed), the streams
# arrive intact and the TLS connections keep working; purge removes what the package made and
# nothing else. Clients and the echo upstream are on the host's loopback.
#
# It never boots systemd any other way than through sandbox.sh, teardown_file powers it off,
# and every process started on the host is stopped by PID.

load ../lib/systemd

SD_PORT_MIN=7000
SD_PORT_SPAN=1000
VERSION=$(sed -n 's/^VERSION := //p' "$ROOT/Makefile")
UPGRADE=$VERSION+upgrade1-1
TLS_NAME=package.example.test
N=20

setup_file() {
	sd_require || return 0
	: >"$BATS_FILE_TMPDIR/pids"
	# under the checkout, which the sandbox sees at the same path
	export DEBS=$ROOT/build/test-debs
	rm -rf "$DEBS"
	make -C "$ROOT" -s deb DEB_DIR="$DEBS/upgrade" DEB_VERSION="$UPGRADE" \
		>"$BATS_FILE_TMPDIR/deb-upgrade.log" 2>&1 ||
		{ cat "$BATS_FILE_TMPDIR/deb-upgrade.log" >&2; return 1; }
	export UP P PKI=$BATS_FILE_TMPDIR/pki
	sd_make_server_pki "$PKI" tcpmap-package-ca "$TLS_NAME"
	UP=$(pick_port)
	P=$(pick_port "$UP")
	start_echo "$UP"
	sd_start
}

setup() { sd_skip_unavailable; }

teardown_file() {
	sd_stop
	sd_kill_recorded
	[ -z "${DEBS:-}" ] || rm -rf "$DEBS"
}

# first: what README.md's "Installing it" built; upgrade: the next version, built above
deb_of() {
	case $1 in
	first) ls "$ROOT"/build/deb/tcpmap_*_amd64.deb ;;
	*) ls "$DEBS/$1"/tcpmap_*_amd64.deb ;;
	esac
}

@test "package: README.md's 'Installing it' builds and installs a package in which lintian finds no error" {
	local deb recipe
	recipe=$(readme_recipe "Installing it")
	echo "$recipe"
	[[ "$recipe" == *"make deb"* ]]
	run sb sh -exc "cd '$ROOT'; $recipe"
	echo "$output" | tail -20
	[ "$status" -eq 0 ]
	deb=$(deb_of first)
	[ -f "$deb" ]
	[[ "$deb" == *"tcpmap_${VERSION}-1_"* ]]
	run lintian --fail-on error "$deb"
	echo "$output"
	[ "$status" -eq 0 ]
	run dpkg-deb -c "$deb"
	for f in ./usr/sbin/tcpmapd ./usr/bin/tcpmapctl ./usr/lib/tcpmap/tcpmap-tls.so \
		./lib/systemd/system-generators/tcpmap-generator ./lib/systemd/system/tcpmap@.socket \
		./lib/systemd/system/tcpmap@.service ./lib/systemd/system/tcpmap-inetd@.socket \
		./lib/systemd/system/tcpmap.target ./etc/tcpmap/tcpmap.yaml \
		./usr/share/man/man8/tcpmapd.8.gz ./usr/share/man/man8/tcpmap-generator.8.gz \
		./usr/share/man/man1/tcpmapctl.1.gz ./usr/share/man/man5/tcpmap.yaml.5.gz \
		./usr/share/man/man7/tcpmap-units.7.gz; do
		grep -q " $f\$" <<<"$output" || { echo "missing $f"; return 1; }
	done
	run dpkg-deb -f "$deb" Package Version
	[[ "$output" == *"Version: ${VERSION}-1"* ]]
	run dpkg-deb --ctrl-tarfile "$deb"
	[ "$status" -eq 0 ]
	run sh -c "dpkg-deb --info '$deb' conffiles"
	echo "$output"
	[ "$output" = /etc/tcpmap/tcpmap.yaml ]
}

@test "package: installed, the YAML written and tcpmapctl apply run, it relays" {
	run sb dpkg-query -W -f='${Status} ${Version}' tcpmap
	echo "$output"
	[ "$output" = "install ok installed ${VERSION}-1" ]
	run sb tcpmapd --version
	[ "$output" = "tcpmapd $VERSION" ]
	sb sh -c "cat >>/etc/tcpmap/tcpmap.yaml" <<-EOF
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: pkg
		spec:
		  port: $P
		  address: 127.0.0.1
		  service: 127.0.0.1:$UP
	EOF
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	relay_roundtrip "$P" 4096
	[ "$(sb systemctl is-active "tcpmap@127.0.0.1:$P.service")" = active ]
}

# An upgrade with the traffic of issue 21 open besides the two fast streams: 20 idle TLS
# connections to a TLS-terminating mapping on the same port and 20 checksummed streams, while
# new connections are probed from before `apt-get install` starts until after it ended
# (tests/lib/probe.py); the figure is printed ("answered in max_ms=...").
@test "package: an upgrade re-executes tcpmap@ in place, and a stream running through it arrives intact" {
	local svc=tcpmap@127.0.0.1:$P.service old new line probe streams report
	sd_install_secret pkgsecret
	sb sh -c "cat >>/etc/tcpmap/tcpmap.yaml" <<-EOF
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TLSContext
		metadata:
		  name: pkg-tls
		spec:
		  hosts:
		  - $TLS_NAME
		  secret: pkgsecret
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: pkg-tls
		spec:
		  port: $P
		  address: 127.0.0.1
		  host: $TLS_NAME
		  service: 127.0.0.1:$UP
	EOF
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	old=$(sb systemctl show -p MainPID --value "$svc")
	[ "$old" -gt 0 ]
	start_stream up --port "$P" --connections 2 --rate 131072 --max-seconds 120
	start_stream many --port "$P" --connections "$N" --rate 32768 --max-seconds 120
	start_tls_idle tls "$P" "$TLS_NAME" "$PKI/ca.crt" "$N"
	run probe_during "$P" sb env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$(deb_of upgrade)"
	echo "$output"
	[ "$status" -eq 0 ]
	probe=$(tail -n 1 <<<"$output")
	echo "package upgrade with $N idle TLS + $N streams: new connections answered in $probe"
	[[ "$probe" == *" failed=0" ]]
	[ "$(probe_max_ms "$probe")" -lt 1000 ]
	mark_stream up
	mark_stream many
	run sb tcpmapd --version
	[ "$output" = "tcpmapd ${UPGRADE%-1}" ]
	new=$(sb systemctl show -p MainPID --value "$svc")
	echo "main PID $old -> $new"
	[ "$new" -gt 0 ]
	[ "$new" != "$old" ]
	sleep 1
	finish_stream_ok up
	streams=$output
	line=$(grep '^connections=' <<<"$output")
	[ "$(field "$line" intact)" = 2 ]
	for c in 0 1; do
		line=$(grep "^conn=$c " <<<"$output")
		[ "$(field "$line" recv_after_mark)" -gt 0 ]
	done
	finish_stream_ok many
	streams+=$'\n'$output
	[ "$(grep -c '^conn=.* intact=1 ' <<<"$output")" -eq "$N" ]
	[ "$(grep -c '^conn=.* recv_after_mark=0 ' <<<"$output")" -eq 0 ]
	run sb journalctl --no-pager -o cat -u "$svc" _PID="$new"
	[[ "$output" == *"tcpmapd ${UPGRADE%-1} ready"* ]]
	# the reload re-executed in place (no restart): the old image logged its reexec event
	run sb journalctl --no-pager -o json -u "$svc" _PID="$old"
	[[ "$output" == *'"TCPMAP_EVENT":"reexec"'* ]]
	# one handover and one adopt per spliced connection, every stream's among them
	wait_unit_events "$svc" "$old" handover - $((N + 2))
	wait_unit_events "$svc" "$new" adopt - $((N + 2))
	run moved_once "$svc" "$old" "$new" "$streams"
	echo "$output"
	[ "$status" -eq 0 ]
	# every TLS connection still works, served by the old image's drain
	report=$(check_tls_idle tls)
	echo "$report"
	[ "$(tail -n 1 <<<"$report")" = "alive=$N" ]
}

@test "package: purge removes what the package made, and nothing the administrator put there" {
	sb sh -c 'mkdir -p /etc/tcpmap/secrets/mine && echo keep >/etc/tcpmap/secrets/mine/tls.crt'
	run sb env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tcpmap
	echo "$output"
	[ "$status" -eq 0 ]
	local f
	for f in /usr/sbin/tcpmapd /usr/bin/tcpmapctl /usr/lib/tcpmap/tcpmap-tls.so \
		/lib/systemd/system-generators/tcpmap-generator /lib/systemd/system/tcpmap@.socket \
		/etc/tcpmap/tcpmap.yaml /usr/share/man/man8/tcpmapd.8.gz; do
		run sb test -e "$f"
		[ "$status" -ne 0 ] || { echo "$f is still there"; return 1; }
	done
	run sb cat /etc/tcpmap/secrets/mine/tls.crt
	[ "$output" = keep ]
	run sb dpkg-query -W -f='${Status}' tcpmap
	[[ "$output" != *"installed"* ]]
}
