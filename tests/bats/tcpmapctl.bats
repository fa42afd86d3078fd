#!/usr/bin/env bats
# tcpmapctl.bats — tcpmapctl as tcpmapctl(1) describes it, with the inputs a careful user
# (issue 24) or a hostile config writer (issue 26) tries: any number of paths, `check PATH`
# replacing --config, route's exit statuses, FIFOs and other non-regular files (which must
# never wedge check or a reload), the same file named twice, a dangling symlink, and config
# bytes that would drive root's terminal (they must arrive escaped).
#
# Only `check`, `show`, `route` and one tcpmapd on loopback; every process is stopped by PID.

load ../lib/common

setup() {
	common_setup
	[ -x "$TCPMAPCTL" ] || skip "no tcpmapctl"
	D=$BATS_TEST_TMPDIR
}
teardown() { common_teardown; }

mapping() { # mapping FILE NAME PORT [LINE...]
	local file=$1 name=$2 port=$3
	shift 3
	write_mapping "$file" "$name" "$port" "127.0.0.1:9" "$@"
}

@test "check reads every one of 70 --config paths and 70 positional paths" {
	local args=() pos=() i
	for ((i = 1; i <= 70; i++)); do
		mapping "$D/m$i.yaml" "m$i" $((20000 + i))
		args+=(--config "$D/m$i.yaml")
		pos+=("$D/m$i.yaml")
	done
	run "$TCPMAPCTL" check "${args[@]}"
	[ "$status" -eq 0 ]
	[[ "$output" == *"70 mappings"* ]]
	echo "  weight: 150" >>"$D/m70.yaml"
	run "$TCPMAPCTL" check "${args[@]}"
	[ "$status" -eq 1 ]
	[[ "$output" == *'m70.yaml:10:11: mapping "m70": weight: 150 is over 100'* ]]
	run "$TCPMAPCTL" check "${pos[@]}"
	[ "$status" -eq 1 ]
	[[ "$output" == *'mapping "m70": weight: 150 is over 100'* ]]
}

@test "check PATH replaces --config, and the OK line names every path" {
	mapping "$D/a.yaml" a 20001
	mapping "$D/b.yaml" b 20002
	echo "not: [valid" >"$D/bad.yaml"
	run "$TCPMAPCTL" --config "$D/bad.yaml" check "$D/a.yaml" "$D/b.yaml"
	[ "$status" -eq 0 ]
	[[ "$output" == *"$D/a.yaml, $D/b.yaml: 2 mappings, 2 listeners, 0 TLS contexts: OK"* ]]
}

@test "route exits 1 when no group takes the SNI, 2 for an address that is not one" {
	mapping "$D/c.yaml" web 20003 "host: a.example.com" "tls_passthrough: true"
	run "$TCPMAPCTL" route --config "$D/c.yaml" --address 127.0.0.1 --port 20003 --sni a.example.com
	[ "$status" -eq 0 ]
	run "$TCPMAPCTL" route --config "$D/c.yaml" --address 127.0.0.1 --port 20003 --sni b.example.com
	[ "$status" -eq 1 ]
	[[ "$output" == *"no match"* ]]
	run "$TCPMAPCTL" route --config "$D/c.yaml" --port 20003 --address bogus
	[ "$status" -eq 2 ]
	[[ "$output" == *'--address takes an IP address, not "bogus"'* ]]
	run "$TCPMAPCTL" route --config "$D/c.yaml" --port 20003 --address '[::1]' --sni a.example.com
	[ "$status" -eq 1 ] # a valid address where nothing listens
}

@test "tls_passthrough with host \"\" or ~ fails check, and route agrees" {
	local h
	for h in '""' '~'; do
		rm -f "$D/p.yaml"
		mapping "$D/p.yaml" p 20004 "host: $h" "tls_passthrough: true"
		run "$TCPMAPCTL" check "$D/p.yaml"
		[ "$status" -eq 1 ]
		[[ "$output" == *"tls_passthrough: needs host"* ]]
		run "$TCPMAPCTL" route --config "$D/p.yaml" --port 20004
		[ "$status" -eq 1 ]
	done
}

@test "a FIFO as config, or in a config directory, is refused at once, by name" {
	mkfifo "$D/fifo.yaml"
	run timeout 10 "$TCPMAPCTL" check "$D/fifo.yaml"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$D/fifo.yaml: not a regular file (a FIFO)"* ]]
	mkdir "$D/dir"
	mapping "$D/dir/a.yaml" a 20005
	mkfifo "$D/dir/b.yaml"
	run timeout 10 "$TCPMAPCTL" check "$D/dir"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$D/dir/b.yaml: not a regular file (a FIFO)"* ]]
}

@test "a reload onto a FIFO is rejected and tcpmapd keeps serving" {
	local port up
	port=$(pick_port)
	up=$(pick_port)
	start_upstream 127.0.0.1 "$up" echo
	write_mapping "$D/tcpmap.yaml" echo "$port" "127.0.0.1:$up"
	start_tcpmapd "$D/tcpmap.yaml"
	rm "$D/tcpmap.yaml"
	mkfifo "$D/tcpmap.yaml"
	kill -HUP "$TCPMAPD_PID"
	wait_for_log 'not a regular file \(a FIFO\)'
	pid_alive "$TCPMAPD_PID"
	# the main thread is not stuck in open(): a second reload is answered too
	kill -HUP "$TCPMAPD_PID"
	wait_for_log 'not a regular file \(a FIFO\)' 2
	stop_pid "$TCPMAPD_PID"
	[ "$STOP_STATUS" -eq 0 ]
}

@test "the same file named twice is read once; a dangling symlink in a directory warns" {
	mkdir "$D/dir"
	mapping "$D/dir/a.yaml" a 20006
	ln -s "$D/gone.yaml" "$D/dir/z.yaml"
	run "$TCPMAPCTL" check "$D/dir" "$D/dir/a.yaml"
	[ "$status" -eq 0 ]
	[[ "$output" != *"duplicate name"* ]]
	[[ "$output" == *"warning: $D/dir/a.yaml: the same file as $D/dir/a.yaml, already read; skipping"* ]]
	[[ "$output" == *"warning: $D/dir/z.yaml: cannot read (a dangling symlink), skipping"* ]]
}

@test "config bytes reach the terminal escaped: names, apiVersion and paths in check, show and route" {
	# a name with a newline would forge an error line; names are Kubernetes names now
	printf -- '---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: "x\\nerror: forged"\nspec:\n  port: 20007\n  service: up\n' >"$D/n.yaml"
	run "$TCPMAPCTL" check "$D/n.yaml"
	[ "$status" -eq 1 ]
	! grep -q '^error: forged' <<<"$output"
	[[ "$output" == *'x\nerror: forged'* ]]
	# ESC and a C1 CSI in apiVersion
	printf -- '---\napiVersion: "v\\e]0;owned\\a\\u009b2J"\nkind: TCPMapping\nmetadata:\n  name: a\nspec:\n  port: 20007\n  service: up\n' >"$D/v.yaml"
	run "$TCPMAPCTL" check "$D/v.yaml"
	[ "$status" -eq 1 ]
	[[ "$output" == *'v\x1b]0;owned\x07\xc2\x9b2J'* ]]
	! LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' <<<"$output"
	! LC_ALL=C grep -q $'\xc2[\x80-\x9f]' <<<"$output"
	# a path with ESC in it, printed by check's OK line, show and route
	local evil=$D/$'e\e[2Jvil.yaml'
	mapping "$evil" a 20008
	for cmd in "check" "show" "route --address 127.0.0.1 --port 20008"; do
		run "$TCPMAPCTL" --config "$evil" $cmd
		[ "$status" -eq 0 ]
		[[ "$output" == *'e\x1b[2Jvil.yaml'* ]]
		! LC_ALL=C grep -q $'\x1b' <<<"$output"
	done
}

@test "check: diagnostics on stderr, the count and the OK line on stdout, as tcpmapctl(1) shows" {
	mapping "$D/a.yaml" a 20001
	local out err
	out=$("$TCPMAPCTL" check "$D/a.yaml" 2>"$D/err")
	err=$(cat "$D/err")
	echo "stdout: $out"
	echo "stderr: $err"
	[ "$out" = "0 errors, 0 warnings
$D/a.yaml: 1 mappings, 1 listeners, 0 TLS contexts: OK" ]
	[ -z "$err" ]
	echo "  weight: 150" >>"$D/a.yaml"
	echo "  colour: red" >>"$D/a.yaml"
	local st=0
	out=$("$TCPMAPCTL" check "$D/a.yaml" 2>"$D/err") || st=$?
	err=$(cat "$D/err")
	echo "stdout: $out"
	echo "stderr: $err"
	[ "$st" -eq 1 ]
	[ "$out" = "1 error, 1 warning" ]
	[[ "$err" == *"error: $D/a.yaml:"*"weight: 150 is over 100"* ]]
	[[ "$err" == *"warning: $D/a.yaml:"*"colour"* ]]
	[[ "$err" != *"1 error, 1 warning"* ]]
}
