#!/bin/bash
# run-demo.sh BUILD — `make run`: an echo upstream on 127.0.0.1:9000 and tcpmapd in the
# foreground on conf/tcpmap.yaml, logging to stderr. Ctrl-C stops both.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1

socat TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork PIPE &
UPSTREAM=$!
trap 'kill "$UPSTREAM" 2>/dev/null; wait "$UPSTREAM" 2>/dev/null' EXIT

echo "run: echo upstream on 127.0.0.1:9000 (pid $UPSTREAM); tcpmapd relays 127.0.0.1:2222 to it" >&2
echo "run: try   echo hello | socat - TCP:127.0.0.1:2222   (Ctrl-C to stop)" >&2
mkdir -p "$BUILD/run"
"$BUILD/tcpmapd" --config conf/tcpmap.yaml --runtime-dir "$BUILD/run" --log-target stderr &
TCPMAPD=$!
trap 'kill "$TCPMAPD" "$UPSTREAM" 2>/dev/null; wait "$TCPMAPD" "$UPSTREAM" 2>/dev/null' EXIT INT TERM
wait "$TCPMAPD"
