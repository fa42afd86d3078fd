#!/usr/bin/env bats
# man.bats — the man pages: mandoc and groff find nothing to warn about, each page has the
# sections a reader looks for, and the pages agree with the programs they describe (every
# option in --help, every MESSAGE_ID in lib/log.h, every event, result and journal field
# that lib/*.c logs, every field of every kind).
#
# Reads files and runs `--help` only: no sockets, no processes left behind.

ROOT=${TCPMAP_ROOT:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
MAN=$ROOT/man
PAGES=(tcpmapd.8 tcpmapctl.1 tcpmap.yaml.5 tcpmap-units.7 tcpmap-generator.8)

# The page as a reader sees it: mandoc's text with the overstrike of bold and underline
# removed, so option names can be matched as plain words.
render() {
	mandoc -T ascii "$1" | sed $'s/.\b//g'
}

# has_word TEXT WORD: WORD appears in TEXT with no letter, digit or dash on either side, so
# --config is not satisfied by --config-dir.
has_word() {
	grep -qE -- "(^|[^[:alnum:]-])$2([^[:alnum:]-]|$)" <<<"$1"
}

@test "man: every page exists" {
	for p in "${PAGES[@]}"; do
		[ -s "$MAN/$p" ] || { echo "missing man/$p"; return 1; }
	done
}

@test "man: mandoc -T lint -W warning prints nothing for any page" {
	command -v mandoc >/dev/null || skip "mandoc is not installed"
	local p out bad=0
	for p in "${PAGES[@]}"; do
		out=$(mandoc -T lint -W warning "$MAN/$p" 2>&1) || true # non-zero with output: reported below
		if [ -n "$out" ]; then
			echo "$out"
			bad=1
		fi
	done
	[ "$bad" -eq 0 ]
}

@test "man: groff -ww -z -man prints nothing for any page" {
	command -v groff >/dev/null || skip "groff is not installed (mandoc lint covers the pages)"
	local p out bad=0
	for p in "${PAGES[@]}"; do
		out=$(groff -ww -z -man "$MAN/$p" 2>&1) || true
		if [ -n "$out" ]; then
			echo "$p: $out"
			bad=1
		fi
	done
	[ "$bad" -eq 0 ]
}

@test "man: each page has NAME, SYNOPSIS, DESCRIPTION, FILES and SEE ALSO, and OPTIONS where it has options" {
	local p s bad=0
	for p in "${PAGES[@]}"; do
		local want=(NAME SYNOPSIS DESCRIPTION FILES "SEE ALSO")
		case $p in tcpmapd.8 | tcpmapctl.1) want+=(OPTIONS) ;; esac
		for s in "${want[@]}"; do
			if ! grep -qE "^\.SH \"?$s\"?\$" "$MAN/$p"; then
				echo "$p: no .SH $s"
				bad=1
			fi
		done
	done
	[ "$bad" -eq 0 ]
}

@test "man: each title and section match the file name, and NAME reads 'name \\- what'" {
	local p name sect bad=0
	for p in "${PAGES[@]}"; do
		name=${p%.*}
		sect=${p##*.}
		if ! grep -qiE "^\.TH \"?${name//-/\\\\-}\"? $sect " "$MAN/$p"; then
			echo "$p: .TH does not name $name($sect)"
			bad=1
		fi
		# whatis(1) and apropos(1) read the line after .SH NAME
		if ! sed -n '/^\.SH NAME$/{n;p;q}' "$MAN/$p" | grep -qE "^${name//-/\\\\-} \\\\- ."; then
			echo "$p: the NAME line is not '$name \\- description'"
			bad=1
		fi
	done
	[ "$bad" -eq 0 ]
}

@test "man: every tcpmap page named in SEE ALSO exists" {
	local p ref bad=0
	for p in "${PAGES[@]}"; do
		while read -r ref; do
			[ -e "$MAN/$ref" ] || { echo "$p refers to $ref, which does not exist"; bad=1; }
		done < <(sed -n '/^\.SH "\{0,1\}SEE ALSO/,$p' "$MAN/$p" |
			grep -oE '^\.BR tcpmap[a-z\\.-]* \([0-9]\)' |
			sed -E 's/^\.BR ([^ ]*) \(([0-9])\)/\1.\2/; s/\\-/-/g')
	done
	[ "$bad" -eq 0 ]
}

@test "man: every option in tcpmapd --help appears in tcpmapd(8)" {
	[ -x "${TCPMAPD:-}" ] || skip "tcpmapd not built (\$TCPMAPD is not executable)"
	local help page opt n=0 bad=0
	help=$("$TCPMAPD" --help)
	page=$(render "$MAN/tcpmapd.8")
	for opt in $(grep -oE -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u); do
		n=$((n + 1))
		has_word "$page" "$opt" || { echo "tcpmapd.8 does not mention $opt"; bad=1; }
	done
	[ "$n" -ge 8 ] || { echo "only $n options found in --help:"; echo "$help"; return 1; }
	[ "$bad" -eq 0 ]
}

@test "man: every option and command in tcpmapctl --help appears in tcpmapctl(1)" {
	[ -x "${TCPMAPCTL:-}" ] || skip "tcpmapctl not built (\$TCPMAPCTL is not executable)"
	local help page opt cmd bad=0
	help=$("$TCPMAPCTL" --help)
	page=$(render "$MAN/tcpmapctl.1")
	for opt in $(grep -oE -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u); do
		has_word "$page" "$opt" || { echo "tcpmapctl.1 does not mention $opt"; bad=1; }
	done
	# commands are the first word of the lines between "Commands:" and "Options:"
	for cmd in $(sed -n '/^Commands:/,/^Options:/p' <<<"$help" | grep -oE '^  [a-z]+' | sort -u); do
		grep -qE "^\.(B|BR|BI) \"?$cmd( |\"|\$)" "$MAN/tcpmapctl.1" ||
			{ echo "tcpmapctl.1 has no entry for the command $cmd"; bad=1; }
	done
	[ "$bad" -eq 0 ]
}

@test "man: tcpmapd(8) lists every MESSAGE_ID of lib/log.h, exactly" {
	local id n=0 bad=0
	for id in $(grep -oE '^#define TCPMAP_MID_[A-Z_]+ "[0-9a-f]{32}"' "$ROOT/lib/log.h" | grep -oE '[0-9a-f]{32}'); do
		n=$((n + 1))
		grep -qE "^\.B $id\$" "$MAN/tcpmapd.8" || { echo "tcpmapd.8 has no entry for MESSAGE_ID $id"; bad=1; }
	done
	[ "$n" -ge 6 ] || { echo "found only $n MESSAGE_IDs in lib/log.h"; return 1; }
	# and no ID in the page that the code does not define, e.g. a stale one after a typo
	for id in $(grep -oE '\b[0-9a-f]{32}\b' "$MAN/tcpmapd.8" | sort -u); do
		grep -q "\"$id\"" "$ROOT/lib/log.h" || { echo "tcpmapd.8 names $id, which lib/log.h does not define"; bad=1; }
	done
	[ "$bad" -eq 0 ]
}

@test "man: tcpmapd(8) documents every journal field and result" {
	local page w bad=0
	page=$(render "$MAN/tcpmapd.8")
	for w in TCPMAP_EVENT TCPMAP_MAPPING TCPMAP_CLIENT TCPMAP_SNI TCPMAP_UPSTREAM \
		TCPMAP_BYTES_IN TCPMAP_BYTES_OUT TCPMAP_DURATION_MS TCPMAP_RESULT \
		ok idle_timeout connect_failed connect_timeout breaker_overflow unknown_sni not_tls \
		handshake_failed preread_timeout \
		READY=1 STATUS= RELOADING=1 WATCHDOG=1 SIGTERM SIGHUP SIGINT \
		TCPMAP_CONFIG RUNTIME_DIRECTORY CREDENTIALS_DIRECTORY LISTEN_FDS JOURNAL_STREAM \
		NOTIFY_SOCKET WATCHDOG_USEC TCPMAP_LOG_LEVEL=debug drain_timeout_ms; do
		grep -qF -- "$w" <<<"$page" || { echo "tcpmapd.8 does not mention $w"; bad=1; }
	done
	grep -qF "journalctl MESSAGE_ID=53e68adcd31347bea852302b8bb4a825 -u 'tcpmap@*'" <<<"$page" ||
		{ echo "tcpmapd.8 lacks the journalctl MESSAGE_ID example"; bad=1; }
	grep -qF "journalctl TCPMAP_MAPPING=ssh" <<<"$page" || { echo "no TCPMAP_MAPPING example"; bad=1; }
	grep -qF "journalctl -o json" <<<"$page" || { echo "no journalctl -o json example"; bad=1; }
	[ "$bad" -eq 0 ]
}

@test "man: tcpmapd(8) has an entry for every event, result and field the code logs" {
	command -v perl >/dev/null || skip "perl is not installed"
	local page w n bad=0
	page=$(render "$MAN/tcpmapd.8")
	# events: the literal after the MESSAGE_ID in each log_event() call (calls span lines)
	n=0
	for w in $(perl -0777 -ne 'while (/log_event\([^;]*?TCPMAP_MID_\w+[^";]*"([a-z_]+)"/gs) {print "$1\n"}' \
		"$ROOT"/lib/*.c | sort -u); do
		n=$((n + 1))
		grep -qE "^\.B $w\$" "$MAN/tcpmapd.8" || { echo "tcpmapd.8 has no entry for TCPMAP_EVENT=$w"; bad=1; }
	done
	[ "$n" -ge 10 ] || { echo "found only $n events in lib/*.c"; bad=1; }
	# results: every literal on a line that finishes connections, or in the name table of enum conn_result
	n=0
	for w in $(perl -ne 'if (/conn_finish\(|conn_close_all\(|\[CONN_RESULT_[A-Z_]+\] = "/) { while (/"([a-z_]+)"/g) {print "$1\n"} }' \
		"$ROOT"/lib/*.c | sort -u); do
		n=$((n + 1))
		grep -qE "^\.B $w\$" "$MAN/tcpmapd.8" || { echo "tcpmapd.8 has no entry for TCPMAP_RESULT=$w"; bad=1; }
	done
	[ "$n" -ge 10 ] || { echo "found only $n results in lib/*.c"; bad=1; }
	# fields: every key of a struct log_field, which the journal prefixes with TCPMAP_
	for w in $(perl -ne 'while (/\{"([A-Z_]+)",/g) {print "$1\n"}' "$ROOT"/lib/*.c | sort -u); do
		has_word "$page" "TCPMAP_$w" || { echo "tcpmapd.8 does not mention TCPMAP_$w"; bad=1; }
	done
	for w in TCPMAP_FDSTORE FDSTOREREMOVE=1 RLIMIT_NOFILE PR_SET_DUMPABLE malloc_trim; do
		grep -qF -- "$w" <<<"$page" || { echo "tcpmapd.8 does not mention $w"; bad=1; }
	done
	[ "$bad" -eq 0 ]
}

@test "man: tcpmap-units(7) names every directive the units set that matters to an operator" {
	local page w bad=0
	page=$(render "$MAN/tcpmap-units.7")
	for w in FileDescriptorName=listen Environment=TCPMAP_FDSTORE=1 LimitCORE=0 LimitNOFILE= \
		FileDescriptorStoreMax=4096 MaxConnections=1024 MaxConnectionsPerSource=256; do
		grep -qF -- "$w" <<<"$page" || { echo "tcpmap-units.7 does not mention $w"; bad=1; }
		# and the units really set it, so the page does not describe a directive long gone
		grep -qF -- "${w%=}" "$ROOT"/units/* || { echo "no unit sets $w"; bad=1; }
	done
	[ "$bad" -eq 0 ]
}

@test "man: tcpmap.yaml(5) documents every field of every kind, and the examples keep their line breaks" {
	local page f bad=0
	page=$(render "$MAN/tcpmap.yaml.5")
	for f in TCPMapping TLSContext Module getambassador.io/v2 getambassador.io/v3alpha1 ambassador_id \
		port service address host tls weight idle_timeout_ms enable_ipv4 enable_ipv6 \
		circuit_breakers priority max_connections max_pending_requests max_requests max_retries \
		connect_timeout_ms proxy_protocol tls_passthrough per_connection_process per_connection_unit \
		hosts secret cert_chain_file private_key_file ca_secret cacert_chain_file cert_required \
		min_tls_version max_tls_version cipher_suites ecdh_curves alpn_protocols sni \
		config.enable_ipv4 config.enable_ipv6 config.circuit_breakers config.preread_timeout_ms \
		config.connect_timeout_ms config.drain_timeout_ms; do
		has_word "$page" "$f" || { echo "tcpmap.yaml.5 does not mention $f"; bad=1; }
	done
	# the reference doc's examples, one YAML key per line as written
	for f in 'name: ssh' 'service: upstream:22' 'name: cockroach' 'name: my-context' \
		'secret: supersecret' 'name: origination-context' 'tls: origination-context' \
		'name: test-1' 'name: test-2' 'service: upstream-host:9999'; do
		grep -qE "^ +$f\$" <<<"$page" || { echo "tcpmap.yaml.5: no example line '$f'"; bad=1; }
	done
	[ "$bad" -eq 0 ]
}

@test "man: tcpmap-units(7) covers the unit pairs, drop-ins, credentials and hardening" {
	local page w bad=0
	page=$(render "$MAN/tcpmap-units.7")
	for w in tcpmap@.socket tcpmap@.service tcpmap-inetd@.socket tcpmap-inetd@.service tcpmap.target \
		Accept=no Accept=yes tcpmap@2222.socket tcpmap@127.0.0.1:2222.socket \
		'systemctl edit tcpmap@2222.socket' ListenStream= \
		LoadCredential=supersecret.crt:/etc/tcpmap/secrets/supersecret/tls.crt \
		DynamicUser=yes CapabilityBoundingSet= NoNewPrivileges ProtectSystem=strict ProtectHome \
		PrivateTmp PrivateDevices 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
		SystemCallFilter=@system-service MemoryDenyWriteExecute LockPersonality RestrictNamespaces \
		ProtectKernel RuntimeDirectory=tcpmap RuntimeDirectoryPreserve=yes Type=notify \
		ExecReload= SIGHUP FileDescriptorStoreMax= "journalctl -u 'tcpmap@*'"; do
		grep -qF -- "$w" <<<"$page" || { echo "tcpmap-units.7 does not mention $w"; bad=1; }
	done
	[ "$bad" -eq 0 ]
}
