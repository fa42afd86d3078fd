# ports.bash — what every pick_port (common.bash, systemd.bash) asks of a port besides being
# unused at this instant. Sourced by both; it must never bind or hold a port itself.

# port_ephemeral PORT: PORT lies in the range the kernel hands out to client sockets.
port_ephemeral() {
	local lo hi
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range || return 1
	[ "$1" -ge "$lo" ] && [ "$1" -le "$hi" ]
}

# port_claim PORT: 0 when PORT is ours for the rest of the run. tests/run.sh runs bats files
# two at a time and points TCPMAP_PORT_CLAIMS at a directory of its own: a port one file
# picked is never handed to another, even between the check that it is free and the bind.
# mkdir is atomic, so two files cannot both claim it. Outside run.sh (one file by hand)
# there is nothing to share with and every port is claimable.
port_claim() {
	[ -n "${TCPMAP_PORT_CLAIMS:-}" ] || return 0
	mkdir "$TCPMAP_PORT_CLAIMS/$1" 2>/dev/null
}
