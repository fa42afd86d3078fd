#!/usr/bin/env python3
"""kat_backend.py NAME HOST PORT [--cert C --key K] [--max-seconds N] [--ready-file F]

A stand-in for the backend of Emissary's KAT tests: it answers every HTTP request with the
JSON Emissary's tests assert on,
    {"backend": NAME, "request": {"tls": {"enabled": BOOL, "server-name": SNI}}}
over cleartext and, with --cert, over TLS as well (the first byte tells which), so one
port serves both as Emissary's kat-server does.

It must never bind anything but the address it is given (loopback in the tests), never
outlive --max-seconds, and never need a third-party module.
"""

import argparse
import json
import socket
import ssl
import threading
import time


def handle(conn, name, ctx):
    info = {"enabled": False}
    try:
        conn.settimeout(10)
        first = conn.recv(1, socket.MSG_PEEK)
        if first == b"\x16" and ctx is not None:
            seen = {}

            def on_sni(sock, server_name, context):
                seen["sni"] = server_name

            ctx.sni_callback = on_sni
            conn = ctx.wrap_socket(conn, server_side=True)
            info = {"enabled": True, "server-name": seen.get("sni") or ""}
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        body = json.dumps({"backend": name, "request": {"tls": info}}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.host, a.port))
    srv.listen(64)
    srv.settimeout(0.5)
    if a.ready_file:
        open(a.ready_file, "w").close()
    deadline = time.monotonic() + a.max_seconds
    while time.monotonic() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=handle, args=(conn, a.name, ctx), daemon=True).start()


if __name__ == "__main__":
    main()
