#!/usr/bin/env bats
# install.bats — `make install DESTDIR= PREFIX=/usr` puts every file where a systemd host
# expects it, and `make uninstall` takes back all of it except the user's config.

load ../lib/common

setup() {
	common_setup
	DEST=$BATS_TEST_TMPDIR/root
	UNITDIR=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
	BUILD_DIR=$(dirname "$TCPMAPD")
}

teardown() { common_teardown; }

@test "make install lays out binaries, units, man pages and a commented-out config; uninstall reverses it" {
	# -o all: install what the suite built, never rebuild here
	run make -C "$TCPMAP_ROOT" -o all BUILD="${BUILD_DIR#"$TCPMAP_ROOT"/}" DESTDIR="$DEST" PREFIX=/usr install
	echo "$output"
	[ "$status" -eq 0 ]
	[ -x "$DEST/usr/sbin/tcpmapd" ]
	[ -x "$DEST/usr/bin/tcpmapctl" ]
	for u in tcpmap@.socket tcpmap@.service tcpmap-inetd@.socket tcpmap-inetd@.service tcpmap.target; do
		[ -f "$DEST$UNITDIR/$u" ]
		if grep -q '@SBINDIR@\|@BINDIR@\|@SYSCONFDIR@' "$DEST$UNITDIR/$u"; then false; fi
	done
	grep -q '^ExecStart=/usr/sbin/tcpmapd --config /etc/tcpmap$' "$DEST$UNITDIR/tcpmap@.service"
	# the TLS module where the installed tcpmapd looks for it: a TLS config gets past
	# loading it, to the (missing) secret
	[ -f "$DEST/usr/lib/tcpmap/tcpmap-tls.so" ]
	local tls=$BATS_TEST_TMPDIR/tls.yaml
	printf 'apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata: {name: t}\nspec: {hosts: [a.test], secret: nothere}\n' >"$tls"
	run timeout 10 "$DEST/usr/sbin/tcpmapd" --config "$tls" --secrets-dir "$BATS_TEST_TMPDIR" \
		--runtime-dir "$BATS_TEST_TMPDIR" --log-target stderr
	echo "$output"
	[ "$status" -ne 0 ]
	grep -q 'nothere' <<<"$output"
	if grep -q 'cannot be loaded' <<<"$output"; then false; fi
	for m in man1/tcpmapctl.1 man5/tcpmap.yaml.5 man7/tcpmap-units.7 man8/tcpmapd.8; do
		[ -f "$DEST/usr/share/man/$m" ]
	done
	# the light drop-in of tcpmap-units(7), COST, where its recipe copies it from
	grep -q '^ProtectKernelTunables=no$' "$DEST/usr/share/doc/tcpmap/examples/tcpmap-inetd-light.conf"
	# the example config is there, every line commented out, so it configures nothing yet
	local conf=$DEST/etc/tcpmap/tcpmap.yaml
	[ -f "$conf" ]
	[ -z "$(grep -v '^#' "$conf" | grep -v '^[[:space:]]*$')" ]
	# inert: check says it selects nothing (tcpmapctl(1)), and passes once uncommented
	run "$DEST/usr/bin/tcpmapctl" check "$conf"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"selects no TCPMapping"* ]]
	sed 's/^# //' "$conf" >"$BATS_TEST_TMPDIR/uncommented.yaml"
	run "$DEST/usr/bin/tcpmapctl" check "$BATS_TEST_TMPDIR/uncommented.yaml"
	echo "$output"
	[ "$status" -eq 0 ]

	run make -C "$TCPMAP_ROOT" -o all BUILD="${BUILD_DIR#"$TCPMAP_ROOT"/}" DESTDIR="$DEST" PREFIX=/usr uninstall
	echo "$output"
	[ "$status" -eq 0 ]
	# only the config directory the user may have edited remains
	[ "$(find "$DEST" -type f | sed "s|^$DEST||")" = /etc/tcpmap/tcpmap.yaml ]
	note "install: 2 binaries, the TLS module, 5 units, 4 man pages, /etc/tcpmap/tcpmap.yaml; uninstall left only the config"
}
