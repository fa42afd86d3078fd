#!/usr/bin/env bats
# emissary-compat.bats — one file serves tcpmap and Emissary: what tcpmap accepts also passes
# Emissary's own CRD schemas (tests/data/emissary-crds, checked by tests/lib/crd_validate.py
# as the API server would), so `kubectl apply` takes it unchanged.

load ../lib/common

setup() {
	common_setup
	/usr/bin/python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml is not installed"
	VALIDATE=(/usr/bin/python3 "$TESTLIB/crd_validate.py")
	TCPMAPCTL=${TCPMAPCTL:-$(dirname "$TCPMAPD")/tcpmapctl}
}

teardown() { common_teardown; }

@test "every shipped config passes Emissary's CRD schemas" {
	run "${VALIDATE[@]}" "$TCPMAP_ROOT"/conf/tcpmap.yaml "$TCPMAP_ROOT"/conf/examples/*.yaml
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	note "$(ls "$TCPMAP_ROOT"/conf/examples/*.yaml | wc -l) examples and conf/tcpmap.yaml pass the v2 schemas"
}

@test "the cleartext examples pass tcpmapctl check too" {
	for f in "$TCPMAP_ROOT"/conf/tcpmap.yaml "$TCPMAP_ROOT"/conf/examples/ssh.yaml "$TCPMAP_ROOT"/conf/examples/cockroach.yaml; do
		run "$TCPMAPCTL" check "$f"
		echo "$output"
		[ "$status" -eq 0 ]
	done
}

@test "the schema check is real: an integer idle_timeout_ms and a quoted port fail it" {
	local f=$BATS_TEST_TMPDIR/bad.yaml
	cat >"$f" <<'YAML'
apiVersion: getambassador.io/v2
kind: TCPMapping
metadata:
  name: bad
spec:
  port: "2222"
  service: upstream:22
  idle_timeout_ms: 500
YAML
	run "${VALIDATE[@]}" "$f"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"spec.port: str where the schema wants integer"* ]]
	[[ "$output" == *"spec.idle_timeout_ms: int where the schema wants string"* ]]
	# tcpmap reads the integer timeout (docs/ARCHITECTURE.md, "Emissary compatibility": accept
	# both) but not a quoted port
	run "$TCPMAPCTL" check "$f"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"bad.yaml:6:"*"port"* ]]
}

@test "a v3alpha1 document carrying a tcpmap extension: tcpmapctl warns, and Kubernetes would prune it" {
	local f=$BATS_TEST_TMPDIR/v3.yaml
	cat >"$f" <<'YAML'
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: db
spec:
  port: 26257
  service: cockroach:26257
  connect_timeout_ms: 1000
YAML
	run "$TCPMAPCTL" check "$f"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *warning:*connect_timeout_ms* ]]
	run "${VALIDATE[@]}" "$f"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"unknown field connect_timeout_ms (pruned by Kubernetes)"* ]]
	# the same extension in a v2 document is preserved there, and tcpmapctl is silent
	sed -i 's|getambassador.io/v3alpha1|getambassador.io/v2|' "$f"
	run "${VALIDATE[@]}" "$f"
	[ "$status" -eq 0 ]
	run "$TCPMAPCTL" check "$f"
	[ "$status" -eq 0 ]
	[[ "$output" != *warning:* ]]
}
