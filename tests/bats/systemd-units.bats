#!/usr/bin/env bats
# systemd-units.bats — the units' life cycle as an operator drives it, in the private systemd of
# tests/lib/sandbox.sh: enabling and disabling single ports against a simulated boot, IPv6
# instance names, the per-connection model with a broken config, the example config that
# `make install` writes, and the recipes of README.md and tcpmap-units(7) run as written.
#
# It never boots systemd any other way than through tests/lib/sandbox.sh, and teardown_file
# always powers the sandbox off. Every process it starts on the host is stopped by its PID.
# The sandbox shares the host's network namespace: clients and upstreams are on loopback.

load ../lib/systemd

SD_PORT_MIN=5000
SD_PORT_SPAN=1000
CONF=/etc/tcpmap/tcpmap.yaml


# Write the sandbox's config: one plain mapping to the echo upstream per PORT.
write_conf() { # PORT...
	local p
	for p in "$@"; do
		printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: m%s\nspec:\n  port: %s\n  service: 127.0.0.1:%s\n' "$p" "$p" "$UP"
	done | sb sh -c "umask 022; mkdir -p /etc/tcpmap; cat >$CONF"
}

# A clean slate for the next test: disable every tcpmap unit that has a link (list-unit-files
# names templates, not their enabled instances), then stop them all.
reset_units() {
	local u
	for u in $(sb sh -c 'ls /etc/systemd/system/*.wants/ 2>/dev/null' | grep '^tcpmap' | sort -u); do
		sb systemctl disable --quiet "$u" || true
	done
	sb systemctl stop 'tcpmap*' || true
	sb systemctl reset-failed 'tcpmap*' || true
}

# No config before the install: `make install` writes its commented-out example.
setup_file() { sd_setup_installed; }

setup() { sd_skip_unavailable; }

teardown_file() {
	sd_stop
	sd_kill_recorded
}

@test "systemd-units: the installed example config, uncommented as its header says, passes tcpmapctl check" {
	local installed
	installed=$(sb cat "$CONF")
	echo "$installed"
	# Nothing is configured until the operator uncomments it.
	[ -z "$(grep -v '^#' <<<"$installed" | grep -v '^[[:space:]]*$')" ]
	# Taking "# " off the start of every line leaves valid YAML: the prose stays commented.
	run sb sh -c "sed 's/^# //' $CONF >/tmp/uncommented.yaml && tcpmapctl check /tmp/uncommented.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	# The header names the command that uncomments it; run exactly that.
	local cmd
	cmd=$(sed -n 's/^## Uncomment it: *//p' <<<"$installed")
	echo "uncomment command: '$cmd'"
	[ -n "$cmd" ]
	sb sh -c "$cmd"
	run sb cat "$CONF"
	echo "$output"
	run sb tcpmapctl check
	echo "$output"
	[ "$status" -eq 0 ]
	run sb tcpmapctl show
	echo "$output"
	[[ "$output" == *2222* ]]
}

@test "systemd-units: enable --now of one socket brings tcpmap.target up too" {
	local a
	a=$(pick_port)
	write_conf "$a"
	sb systemctl enable --now "tcpmap@$a.socket"
	[ "$(sb systemctl is-active "tcpmap@$a.socket")" = active ]
	[ "$(sb systemctl is-active tcpmap.target)" = active ]
	relay_roundtrip "$a" 1000
	reset_units
}

@test "systemd-units: starting one socket does not start a sibling that was stopped" {
	local a b
	a=$(pick_port) && b=$(pick_port "$a")
	write_conf "$a" "$b"
	sb systemctl enable --now "tcpmap@$a.socket" "tcpmap@$b.socket"
	sb systemctl stop "tcpmap@$a.socket" "tcpmap@$b.socket"
	sb systemctl start "tcpmap@$a.socket"
	[ "$(sb systemctl is-active "tcpmap@$a.socket")" = active ]
	[ "$(sb systemctl is-active "tcpmap@$b.socket")" != active ]
	reset_units
}

@test "systemd-units: disable --now of one port leaves every other enabled port in the boot" {
	local a b i
	a=$(pick_port) && b=$(pick_port "$a") && i=$(pick_port "$a" "$b")
	write_conf "$a" "$b" "$i"
	sb systemctl enable --now "tcpmap@$a.socket" "tcpmap@$b.socket" "tcpmap-inetd@$i.socket"
	sb systemctl disable --now "tcpmap@$b.socket"
	wait_port_free "$b"
	[ "$(sb systemctl is-enabled "tcpmap@$a.socket")" = enabled ]
	[ "$(sb systemctl is-enabled "tcpmap-inetd@$i.socket")" = enabled ]
	# A simulated boot: every unit file re-read, every tcpmap unit down, then sockets.target
	# started again the way the boot starts it, pulling in what is enabled.
	sb systemctl daemon-reload
	sb systemctl stop 'tcpmap*'
	wait_port_free "$a"
	wait_port_free "$i"
	sb systemctl start sockets.target
	sb systemctl list-units --no-pager --all 'tcpmap*'
	[ "$(sb systemctl is-active "tcpmap@$a.socket")" = active ]
	[ "$(sb systemctl is-active "tcpmap-inetd@$i.socket")" = active ]
	[ "$(sb systemctl is-active "tcpmap@$b.socket")" != active ]
	relay_roundtrip "$a" 2000
	relay_roundtrip "$i" 2001
	port_is_free "$b"
	reset_units
}

@test "systemd-units: an IPv6 instance named with systemd-escape listens and relays, in both models" {
	local a i u
	a=$(pick_port) && i=$(pick_port "$a")
	write_conf "$a" "$i"
	local t p
	for t in "tcpmap@.socket $a" "tcpmap-inetd@.socket $i"; do
		p=${t#* }
		u=$(sb systemd-escape --template "${t% *}" "[::1]:$p")
		echo "enabling $u"
		run sb systemctl enable --now "$u"
		echo "$output"
		[ "$status" -eq 0 ]
		[ "$(sb systemctl is-active "$u")" = active ]
		run sb systemctl show -p Listen --value "$u"
		echo "$output"
		[ "$output" = "[::1]:$p (Stream)" ]
	done
	roundtrip_to ::1 "$a" 3000
	roundtrip_to ::1 "$i" 3001
	# Only the IPv6 loopback: 127.0.0.1 on the same ports is refused.
	run relay_roundtrip "$a" 10
	[ "$status" -ne 0 ]
	reset_units
}

@test "systemd-units: a per-connection socket with a broken config leaves no failed units behind" {
	local i n
	i=$(pick_port)
	write_conf "$i"
	sb systemctl enable --now "tcpmap-inetd@$i.socket"
	relay_roundtrip "$i" 100
	# Broken YAML: every connection's process refuses the config and exits non-zero.
	sb sh -c "printf 'kind: TCPMapping\nspec: [\n' >$CONF"
	for n in 1 2 3 4 5; do
		run relay_roundtrip "$i" 10
		[ "$status" -ne 0 ]
	done
	# The failures are logged...
	for _ in $(seq 50); do
		n=$(sb journalctl --no-pager -q -u 'tcpmap-inetd@*' -p err -o cat | wc -l)
		[ "$n" -ge 5 ] && break
		sleep 0.1
	done
	[ "$n" -ge 5 ]
	# ...and the units are collected, not piled up in systemctl --failed.
	for _ in $(seq 50); do
		n=$(sb systemctl list-units --failed --no-legend --plain 'tcpmap-inetd@*' | wc -l)
		[ "$n" -eq 0 ] && break
		sleep 0.1
	done
	sb systemctl list-units --failed --no-pager 'tcpmap-inetd@*'
	[ "$n" -eq 0 ]
	# The socket keeps listening, and the next connection works once the config is fixed.
	[ "$(sb systemctl is-active "tcpmap-inetd@$i.socket")" = active ]
	write_conf "$i"
	relay_roundtrip "$i" 100
	reset_units
}

@test "systemd-units: README.md's 'Using it with systemd' runs as written and relays" {
	reset_units
	wait_port_free 2222 && port_is_free 9000 || skip "port 2222 or 9000 is in use on this host"
	local recipe
	recipe=$(readme_recipe "Using it with systemd")
	echo "$recipe"
	[ -n "$recipe" ]
	# Just installed ("Installing it" offers `make install PREFIX=/usr`; package.bats runs
	# the package route): the example config as the install writes it.
	sb rm -f "$CONF"
	sd_install
	start_echo 9000
	local echo9000=$ECHO_PID
	# $EDITOR: the operator reads the file and changes nothing.
	run sb env EDITOR=true sh -exc "cd '$ROOT'; $recipe"
	echo "$output"
	[ "$status" -eq 0 ]
	relay_roundtrip 2222 5000
	run wait_close_event 'tcpmap@*' 5000
	echo "$output"
	[ "$status" -eq 0 ]
	reset_units
	wait_port_free 2222
	kill "$echo9000"
}

@test "systemd-units: tcpmap-units(7)'s IPv6 instance recipe runs as written and relays over ::1" {
	reset_units
	wait_port_free 2222 || skip "port 2222 is in use on this host"
	local recipe
	recipe=$(man_recipe tcpmap-units.7 ipv6-instance)
	echo "$recipe"
	[ -n "$recipe" ]
	write_conf 2222
	run sb sh -exc "$recipe"
	echo "$output"
	[ "$status" -eq 0 ]
	roundtrip_to ::1 2222 4000
	run relay_roundtrip 2222 10
	[ "$status" -ne 0 ]
	reset_units
}

@test "systemd-units: tcpmap-units(7)'s ambassador-id recipe runs as written and selects that instance's documents" {
	reset_units
	wait_port_free 2224 || skip "port 2224 is in use on this host"
	local recipe
	recipe=$(man_recipe tcpmap-units.7 ambassador-id)
	echo "$recipe"
	[ -n "$recipe" ]
	# one mapping for "edge", one for the default instance on the same port: only the
	# first may be served once the recipe has run
	printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: edge\nspec:\n  ambassador_id: [edge]\n  port: 2224\n  service: 127.0.0.1:%s\n---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: other\nspec:\n  port: 2225\n  service: 127.0.0.1:%s\n' "$UP" "$UP" |
		sb sh -c "umask 022; mkdir -p /etc/tcpmap; cat >$CONF"
	run sb sh -exc "$recipe"
	echo "$output"
	[ "$status" -eq 0 ]
	run sb systemctl show -p Environment tcpmap@2224.service
	echo "$output"
	[[ "$output" == *"AMBASSADOR_ID=edge"* ]]
	sb systemctl enable --now tcpmap@2224.socket
	roundtrip_to 127.0.0.1 2224 4000
	# the close entry's structured field (journald's MESSAGE has no logfmt keys)
	run wait_close_event 'tcpmap@2224.service' 4000
	echo "$output"
	[ "$status" -eq 0 ]
	run sb journalctl -u tcpmap@2224.service -o json --no-pager
	[[ "$output" == *'"TCPMAP_MAPPING":"edge"'* ]]
	sb sh -c 'rm -f /etc/systemd/system/tcpmap@.service.d/ambassador-id.conf /etc/systemd/system.conf.d/ambassador-id.conf; systemctl daemon-reexec'
	reset_units
}

@test "systemd-units: tcpmap-units(7)'s credentials recipe: the secret only for port 443, a cleartext port beside it still runs" {
	reset_units
	wait_port_free 443 || skip "port 443 is in use on this host"
	local b recipe work=/tmp/creds-recipe
	b=$(pick_port 443)
	recipe=$(man_recipe tcpmap-units.7 credentials)
	echo "$recipe"
	[ -n "$recipe" ]
	# site.crt and site.key in the directory the operator runs the recipe from
	sb sh -c "rm -rf $work /etc/tcpmap/secrets/supersecret; mkdir -p $work && cd $work &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj /CN=creds.example -addext subjectAltName=DNS:creds.example \
			-keyout site.key -out site.crt" 2>/dev/null
	sb cat "$work/site.crt" >"$BATS_FILE_TMPDIR/creds.crt"
	# one config for both instances: TLS on 443 with the secret, cleartext on port B
	printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata:\n  name: creds\nspec:\n  hosts: [creds.example]\n  secret: supersecret\n---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: tls443\nspec:\n  port: 443\n  host: creds.example\n  service: 127.0.0.1:%s\n---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: clear%s\nspec:\n  port: %s\n  service: 127.0.0.1:%s\n' \
		"$UP" "$b" "$b" "$UP" | sb sh -c "umask 022; mkdir -p /etc/tcpmap; cat >$CONF"
	run sb sh -exc "cd $work; $recipe"
	echo "$output"
	[ "$status" -eq 0 ]
	# the key stays root-only; only tcpmap@443.service gets it
	[ "$(sb stat -c '%a %U' /etc/tcpmap/secrets/supersecret)" = "700 root" ]
	sb tcpmapctl check
	sb systemctl enable --now "tcpmap@$b.socket"
	# start both services now (Type=notify: they return once READY=1 or failed)
	sb systemctl start tcpmap@443.service
	sb systemctl start "tcpmap@$b.service"
	[ "$(sb systemctl is-active tcpmap@443.service)" = active ]
	[ "$(sb systemctl is-active "tcpmap@$b.service")" = active ]
	# the echo upstream never closes: s_client ends when its input does, a second after
	# the line went out
	run bash -c 'set -o pipefail; (echo hello-creds-443; sleep 1) | timeout 10 openssl s_client \
		-connect 127.0.0.1:443 -servername creds.example -CAfile "$1" -verify_return_error \
		-verify_hostname creds.example' _ "$BATS_FILE_TMPDIR/creds.crt"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Verify return code: 0 (ok)"* ]]
	[[ "$output" == *"hello-creds-443"* ]]
	relay_roundtrip "$b" 3000
	# the cleartext port's instance logged no error (before: it failed on the key it could
	# not read, hit the start limit, and its port stayed refused)
	run sb journalctl --no-pager -q -p err -u "tcpmap@$b.service"
	echo "$output"
	[ -z "$output" ]
	run sb systemctl show -p NRestarts --value "tcpmap@$b.service"
	[ "$output" = 0 ]
	sb sh -c "rm -rf /etc/systemd/system/tcpmap@443.service.d $work /etc/tcpmap/secrets/supersecret; systemctl daemon-reload"
	reset_units
	wait_port_free 443
}
