#!/usr/bin/env python3
"""resume.py — TLS session resumption across tcpmapd processes, from one client process
(an ssl.SSLSession cannot leave the process that got it).

Connects to 127.0.0.1:PORT with SNI, reads the upstream's banner, or with --send the echo
of a line it sends (either way it also takes the TLS 1.3 tickets sent before them), prints `first reused=0|1 version=...`, then, for each further
round, waits for ROUND_FILE.N to exist (the test swaps tcpmapd meanwhile), reads the port
to use from it, connects again offering the session it holds and prints
`round N reused=0|1 version=...`. After a full handshake it keeps the new session. Every
wait is bounded; it only ever connects to loopback."""
import argparse
import os
import socket
import ssl
import sys
import time


def connect(ctx, port, sni, session, send):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
            if send:
                s.sendall(send.encode() + b"\n")
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return s.session, s.session_reused, s.version(), data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--tls", choices=["1.2", "1.3"], required=True)
    p.add_argument("--round-file", required=True, help="prefix of the files that start rounds")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--max-wait", type=float, default=30)
    p.add_argument("--send", default="", help="a line to send (an echo upstream)")
    a = p.parse_args()

    ctx = ssl.create_default_context(cafile=a.ca)
    version = ssl.TLSVersion.TLSv1_2 if a.tls == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = ctx.maximum_version = version
    session, reused, ver, data = connect(ctx, a.port, a.sni, None, a.send)
    print(f"first reused={int(reused)} version={ver} ticket={int(bool(session and session.has_ticket))} banner={data.strip().decode(errors='replace')}", flush=True)
    for n in range(1, a.rounds + 1):
        path = f"{a.round_file}.{n}"
        deadline = time.monotonic() + a.max_wait
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                print(f"round {n}: no {path}", flush=True)
                return 1
            time.sleep(0.05)
        time.sleep(0.05)  # the writer wrote the port before it renamed the file in
        with open(path) as f:
            port = int(f.read().strip() or a.port)
        new, reused, ver, data = connect(ctx, port, a.sni, session, a.send)
        print(f"round {n} reused={int(reused)} version={ver} banner={data.strip().decode(errors='replace')}", flush=True)
        if new is not None:
            session = new
    return 0


if __name__ == "__main__":
    sys.exit(main())
