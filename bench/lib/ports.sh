# ports.sh — loopback ports for the bench scripts (run.sh, cpu-per-gib.sh), sourced.

# pick_port: a free ephemeral port on 127.0.0.1, as the kernel would give it.
pick_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_listening PORT [TENTHS]: bounded wait (default 10 s) until something listens on PORT.
wait_listening() {
	local i
	for ((i = 0; i < ${2:-100}; i++)); do
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	return 1
}
