# tls.bash — TLS helpers for the bats suites of issue 3: a throw-away PKI made with the
# openssl CLI, secrets laid out as tcpmapd reads them, the doc's examples with only their
# ports changed, tcpmapd behind a private /etc/hosts, and openssl s_server / haproxy /
# nginx peers started in the background.
#
# It must never touch the machine's own /etc/hosts or anything outside the test's temp
# dirs, never listen beyond loopback (except tcpmapd on the doc's address-less examples),
# and never start a process it does not record for teardown. Load it after common.bash.

# The TLS suites' share of the port space (common.bash's default range is another suite's).
TEST_PORT_MIN=61000
TEST_PORT_MAX=62999

TCPMAPCTL=${TCPMAPCTL:-$(dirname "$TCPMAPD")/tcpmapctl}
HELLO_PY=$TESTLIB/hello.py
HOSTS_NS=$TESTLIB/hosts-ns.sh
EXAMPLES=$TCPMAP_ROOT/conf/examples

# ---- PKI ----------------------------------------------------------------------------

# tls_issue DIR NAME CN SANS EKU: a P-256 key and a certificate for CN signed by DIR/ca,
# SANS as openssl writes them ("DNS:a,DNS:b"), EKU "serverAuth", "clientAuth" or both.
tls_issue() {
	local dir=$1 name=$2 cn=$3 sans=$4 eku=$5 ext
	ext=$dir/$name.ext
	{
		[ -n "$sans" ] && echo "subjectAltName=$sans"
		echo "extendedKeyUsage=$eku"
		echo "basicConstraints=CA:FALSE"
	} >"$ext"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$cn" 2>/dev/null || return 1
	openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
		-CAcreateserial -days 2 -out "$dir/$name.crt" -extfile "$ext" 2>/dev/null || return 1
}

# tls_secret NAME CERTNAME: SECRETS_DIR/NAME/tls.crt and tls.key, as a Kubernetes TLS
# secret lays them out.
tls_secret() {
	mkdir -p "$SECRETS_DIR/$1"
	cp "$PKI/$2.crt" "$SECRETS_DIR/$1/tls.crt"
	cp "$PKI/$2.key" "$SECRETS_DIR/$1/tls.key"
	chmod 600 "$SECRETS_DIR/$1/tls.key"
}

# tls_make_pki: once per file (call from setup_file). Sets PKI and SECRETS_DIR.
#   supersecret     my-host-1, my-host-2 (the doc's terminating context)
#   othersecret     CN=tcpmap-origination, clientAuth (the doc's origination context)
#   wildsecret      *.example.com;  exactsecret  exact.example.com
#   upstream-1/-2/-3  the upstreams' own server certs (upstream-host-1, -2, upstream-host)
#   passthrough     CN=passthrough-upstream, SAN pass.example.net (tls_passthrough's upstream)
#   testca, otherca CA secrets (ca.crt): the CA that signed all the above, and an unrelated one
tls_make_pki() {
	PKI=$BATS_FILE_TMPDIR/pki
	SECRETS_DIR=$BATS_FILE_TMPDIR/secrets
	export PKI SECRETS_DIR
	[ -f "$PKI/done" ] && return 0
	mkdir -p "$PKI" "$SECRETS_DIR"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 2 -subj "/CN=tcpmap-test-ca" \
		2>/dev/null || return 1
	tls_issue "$PKI" my-hosts my-host-1 "DNS:my-host-1,DNS:my-host-2" serverAuth || return 1
	tls_issue "$PKI" origination tcpmap-origination "" clientAuth || return 1
	tls_issue "$PKI" wild wildcard.example.com "DNS:*.example.com" serverAuth || return 1
	tls_issue "$PKI" exact exact.example.com "DNS:exact.example.com" serverAuth || return 1
	tls_issue "$PKI" upstream-1 upstream-host-1 "DNS:upstream-host-1" serverAuth || return 1
	tls_issue "$PKI" upstream-2 upstream-host-2 "DNS:upstream-host-2" serverAuth || return 1
	tls_issue "$PKI" upstream-3 upstream-host "DNS:upstream-host,IP:127.0.0.1" serverAuth ||
		return 1
	tls_issue "$PKI" passthrough passthrough-upstream "DNS:pass.example.net" serverAuth ||
		return 1
	tls_secret supersecret my-hosts
	tls_secret othersecret origination
	tls_secret wildsecret wild
	tls_secret exactsecret exact
	# CA secrets: the test CA, and an unrelated one
	mkdir -p "$SECRETS_DIR/testca" "$SECRETS_DIR/otherca"
	cp "$PKI/ca.crt" "$SECRETS_DIR/testca/ca.crt"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/otherca.key" -out "$SECRETS_DIR/otherca/ca.crt" -days 2 \
		-subj "/CN=unrelated-ca" 2>/dev/null || return 1
	# haproxy wants certificate and key in one file
	cat "$PKI/upstream-3.crt" "$PKI/upstream-3.key" >"$PKI/upstream-3.pem"
	touch "$PKI/done"
}

# ---- private /etc/hosts ---------------------------------------------------------------

# tls_hosts_setup: the doc's upstream names for tcpmapd only. upstream-host-1 and
# upstream-host-2 get different loopback addresses so both can listen on one port, as the
# doc's examples have them (both on 9999).
tls_hosts_setup() {
	HOSTS_FILE=$BATS_TEST_TMPDIR/hosts
	{
		echo "127.0.0.1 localhost"
		echo "127.0.0.1 upstream-host-1 upstream-host"
		echo "127.0.0.2 upstream-host-2"
	} >"$HOSTS_FILE"
	TCPMAPD_WRAP=("$HOSTS_NS" "$HOSTS_FILE")
	TCPMAPD_ARGS=(--secrets-dir "$SECRETS_DIR")
}

tls_setup() {
	common_setup
	tls_make_pki
	tls_hosts_setup
}

# ---- configs --------------------------------------------------------------------------

# example_config NAME PORT UPSTREAM_PORT: the doc's example with the listening port 2222
# and the upstream port 9999 replaced, nothing else. Prints the copy's path.
example_config() {
	local src=$EXAMPLES/$1.yaml dst=$BATS_TEST_TMPDIR/$1.yaml
	[ -f "$src" ] || { echo "missing example $src" >&2; return 1; }
	sed -E -e "s/^([[:space:]]*port:[[:space:]]*)2222[[:space:]]*\$/\\1$2/" \
		-e "s/^([[:space:]]*service:[[:space:]]*\"?[A-Za-z0-9.-]+):9999(\"?)[[:space:]]*\$/\\1:$3\\2/" \
		"$src" >"$dst"
	# the substitution must have hit every port line and nothing else
	if grep -qE '2222|9999' "$dst"; then
		echo "example $1: a port was not substituted" >&2
		return 1
	fi
	diff <(sed -E 's/[0-9]{4,5}//g' "$src") <(sed -E 's/[0-9]{4,5}//g' "$dst") >/dev/null || {
		echo "example $1: the copy differs in more than its ports" >&2
		return 1
	}
	echo "$dst"
}

# write_tls_context FILE NAME SECRET [SPEC_LINE...]: append a TLSContext document.
write_tls_context() {
	local file=$1 name=$2 secret=$3 line
	shift 3
	{
		echo "---"
		echo "apiVersion: getambassador.io/v2"
		echo "kind: TLSContext"
		echo "metadata:"
		echo "  name: $name"
		echo "spec:"
		echo "  secret: $secret"
		for line in "$@"; do
			echo "  $line"
		done
	} >>"$file"
}

# write_module FILE PREREAD_MS: a Module with tcpmap's preread timeout.
write_module() {
	{
		echo "---"
		echo "apiVersion: getambassador.io/v2"
		echo "kind: Module"
		echo "metadata:"
		echo "  name: ambassador"
		echo "spec:"
		echo "  config:"
		echo "    preread_timeout_ms: $2"
	} >>"$1"
}

# ---- TLS peers ----------------------------------------------------------------------------

# start_s_server ADDRESS PORT CERTNAME [OPTS...]: openssl s_server in the background;
# its stdout and stderr go to s_server-ADDRESS-PORT.log. Waits until it listens.
start_s_server() {
	local addr=$1 port=$2 cert=$3 i
	shift 3
	local out=$BATS_TEST_TMPDIR/s_server-$addr-$port.log
	openssl s_server -accept "$addr:$port" -cert "$PKI/$cert.crt" -key "$PKI/$cert.key" \
		"$@" </dev/null >"$out" 2>&1 3>&- &
	local pid=$!
	record_pid "$pid"
	for ((i = 0; i < 50; i++)); do
		[ -n "$(ss -Hltn "src $addr:$port" 2>/dev/null)" ] && return 0
		pid_alive "$pid" || break
		sleep 0.1
	done
	echo "s_server on $addr:$port did not start:" >&2
	cat "$out" >&2
	return 1
}

s_server_log() { echo "$BATS_TEST_TMPDIR/s_server-$1-$2.log"; }

# s_client_to PORT SNI [OPTS...]: one s_client exchange through tcpmapd on 127.0.0.1:PORT
# with stdin from $S_CLIENT_INPUT (default empty). SNI "-" means -noservername. Sets
# status and output as bats' run does.
s_client_to() {
	local port=$1 sni=$2 snio
	shift 2
	if [ "$sni" = - ]; then snio=(-noservername); else snio=(-servername "$sni"); fi
	run timeout 10 openssl s_client -connect "127.0.0.1:$port" "${snio[@]}" \
		-CAfile "$PKI/ca.crt" -ign_eof "$@" <<<"${S_CLIENT_INPUT:-}"
}

# served_san PORT SNI: the subjectAltName of the certificate served for SNI.
served_san() {
	timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername "$2" -showcerts \
		</dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName 2>/dev/null |
		sed -n 's/^ *DNS/DNS/p'
}

# served_subject PORT SNI: the subject of the certificate served for SNI.
served_subject() {
	timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername "$2" \
		</dev/null 2>/dev/null | openssl x509 -noout -subject 2>/dev/null
}

hello() { python3 "$HELLO_PY" "$@" 3>&-; }

# ---- PROXY protocol peers ----------------------------------------------------------------

# start_haproxy_echo PORT [BIND_OPTS...]: haproxy in the foreground (-db) whose frontend
# takes a PROXY header (accept-proxy) and answers every HTTP request with the client
# address it parsed from that header, "src:src_port".
start_haproxy_echo() {
	local port=$1 i
	shift
	local cfg=$BATS_TEST_TMPDIR/haproxy-$port.cfg out=$BATS_TEST_TMPDIR/haproxy-$port.log
	cat >"$cfg" <<-EOF
		global
		    maxconn 64
		defaults
		    mode http
		    timeout connect 2s
		    timeout client 5s
		    timeout server 5s
		frontend fe
		    bind 127.0.0.1:$port accept-proxy $*
		    http-request return status 200 content-type text/plain lf-string "src=%[src]:%[src_port] dst=%[dst]:%[dst_port]\n"
	EOF
	haproxy -f "$cfg" -db </dev/null >"$out" 2>&1 3>&- &
	local pid=$!
	record_pid "$pid"
	for ((i = 0; i < 50; i++)); do
		port_listening "$port" && return 0
		pid_alive "$pid" || break
		sleep 0.1
	done
	echo "haproxy on $port did not start:" >&2
	cat "$out" >&2
	return 1
}

# start_nginx_echo PORT: nginx (http core, no stream module needed) listening with
# proxy_protocol, answering with the address from the PROXY header.
start_nginx_echo() {
	local port=$1 i
	local dir=$BATS_TEST_TMPDIR/nginx-$port
	mkdir -p "$dir/tmp"
	cat >"$dir/nginx.conf" <<-EOF
		worker_processes 1;
		pid $dir/nginx.pid;
		error_log $dir/error.log info;
		events { worker_connections 64; }
		http {
		    access_log off;
		    client_body_temp_path $dir/tmp;
		    proxy_temp_path $dir/tmp;
		    fastcgi_temp_path $dir/tmp;
		    uwsgi_temp_path $dir/tmp;
		    scgi_temp_path $dir/tmp;
		    server {
		        listen 127.0.0.1:$port proxy_protocol;
		        location / {
		            default_type text/plain;
		            return 200 "src=\$proxy_protocol_addr:\$proxy_protocol_port dst=\$proxy_protocol_server_addr:\$proxy_protocol_server_port\n";
		        }
		    }
		}
	EOF
	nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off; master_process off;' \
		</dev/null >"$dir/out.log" 2>&1 3>&- &
	local pid=$!
	record_pid "$pid"
	for ((i = 0; i < 50; i++)); do
		port_listening "$port" && return 0
		pid_alive "$pid" || break
		sleep 0.1
	done
	echo "nginx on $port did not start:" >&2
	cat "$dir/out.log" "$dir/error.log" >&2
	return 1
}

# ---- access log -------------------------------------------------------------------------

# close_line PATTERN: the last event=close line of tcpmapd's log matching PATTERN.
close_line() {
	grep -E 'event=close' "$TCPMAPD_LOG" | grep -E -- "$1" | tail -n 1
}

# logfield LINE KEY: KEY's value in a logfmt line (unquoted or quoted).
logfield() {
	sed -nE "s/.*(^| )$2=(\"([^\"]*)\"|([^ ]*)).*/\\3\\4/p" <<<"$1"
}
