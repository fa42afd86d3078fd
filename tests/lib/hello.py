#!/usr/bin/env python3
"""hello.py — a TLS client for the bats tests that drives OpenSSL through ssl.MemoryBIO,
so it controls exactly how its bytes reach the wire.

It can re-frame its ClientHello into several TLS records (--records N), write the hello
one byte per segment (--byte-writes), pad the hello with ALPN names (--pad-alpn BYTES),
send deterministic data (--send N, the same bytes as upstream.py) or text, close its
write side with close_notify (--close-notify), and read everything that comes back.

With --raw KIND it sends a hand-built ClientHello instead, one no TLS library would write
(KIND: empty-sni, two-names, long-name, non-ascii, dotdot, oversize, or padded:N for a
well-formed hello of N handshake bytes naming --sni), and reports the alert it gets:
    hello_bytes alert=N|none closed_by=eof|reset|timeout elapsed_ms

It must never hang a test: everything runs under one deadline (--timeout), and every loop
is bounded by count or time. It needs nothing beyond the standard library.

Output (one field per line, key=value):
    hello_bytes hello_records handshake=ok|failed [error=...] version cipher
    peer_subject peer_san sent_bytes sent_sha256 recv_bytes recv_sha256 [recv_text]
    closed_by=close_notify|eof|reset|timeout elapsed_ms
"""

import argparse
import hashlib
import os
import select
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream import data_stream  # noqa: E402  (same bytes on both sides)

CHUNK = 1 << 16
RECORD_HANDSHAKE = 22


class Deadline(Exception):
    pass


def split_records(data):
    """Split bytes into TLS records: [(type, version, payload)]."""
    out, i = [], 0
    while i + 5 <= len(data):
        typ, ver, n = data[i], data[i + 1:i + 3], int.from_bytes(data[i + 3:i + 5], "big")
        out.append((typ, bytes(ver), bytes(data[i + 5:i + 5 + n])))
        i += 5 + n
    if i != len(data):
        raise ValueError("trailing bytes after the last record")
    return out


def reframe(first_flight, nrecords):
    """Re-frame the handshake records of the first flight into nrecords records of about
    equal size (a handshake message may span records), keeping any other records."""
    recs = split_records(first_flight)
    hs = b"".join(p for t, _, p in recs if t == RECORD_HANDSHAKE)
    ver = next(v for t, v, _ in recs if t == RECORD_HANDSHAKE)
    rest = b"".join(bytes([t]) + v + len(p).to_bytes(2, "big") + p
                    for t, v, p in recs if t != RECORD_HANDSHAKE)
    nrecords = max(1, min(nrecords, len(hs)))
    size = -(-len(hs) // nrecords)
    out = bytearray()
    for off in range(0, len(hs), size):
        part = hs[off:off + size]
        out += bytes([RECORD_HANDSHAKE]) + ver + len(part).to_bytes(2, "big") + part
    return bytes(out) + rest, -(-len(hs) // size)


def raw_hello(kind, sni):
    """A ClientHello stream built by hand (RFC 8446 4.1.2), in one record when it fits."""
    def vec(b, w):
        return len(b).to_bytes(w, "big") + b

    def ext(typ, body):
        return typ.to_bytes(2, "big") + vec(body, 2)

    def names(*hosts):
        return ext(0, vec(b"".join(b"\x00" + vec(h, 2) for h in hosts), 2))

    host = (sni or "a.example.com").encode()
    exts = {"empty-sni": [ext(0, b"")],
            "two-names": [names(host, b"b." + host)],
            "long-name": [names(b"a" * 300)],
            "non-ascii": [names("café.example.com".encode())],
            "dotdot": [names(b"a.." + host)]}.get(kind, [names(host)])
    exts.append(ext(43, vec(b"\x03\x04\x03\x03", 1)))

    def message(pad):
        e = b"".join(exts) + (ext(21, b"\x00" * pad) if pad is not None else b"")
        body = (b"\x03\x03" + os.urandom(32) + vec(os.urandom(32), 1) +
                vec(b"\x13\x01\x13\x02", 2) + vec(b"\x00", 1) + vec(e, 2))
        return b"\x01" + vec(body, 3)

    size = 16385 if kind == "oversize" else (
        int(kind.split(":")[1]) if kind.startswith("padded:") else 0)
    msg = message(None)
    if size:
        msg = message(size - len(message(0)))
    out = bytearray()
    for off in range(0, len(msg), 16384):
        part = msg[off:off + 16384]
        out += b"\x16\x03\x01" + vec(part, 2)
    return bytes(out)


def raw_main(args, res):
    """Send a hand-built hello and report the alert that comes back, if any."""
    deadline = time.monotonic() + args.timeout
    flight = raw_hello(args.raw, args.sni)
    got = b""
    res.update(hello_bytes=len(flight), alert="none", closed_by="timeout")
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if args.byte_writes:
            for i in range(len(flight)):  # bounded by the hello's size
                sock.sendall(flight[i:i + 1])
                if args.byte_delay_ms:
                    time.sleep(args.byte_delay_ms / 1000.0)
        else:
            sock.sendall(flight)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            b = sock.recv(CHUNK)
            if not b:
                res["closed_by"] = "eof"
                break
            got += b
    except ConnectionResetError:
        res["closed_by"] = "reset"
    except socket.timeout:
        pass
    finally:
        sock.close()
        if len(got) >= 7 and got[0] == 0x15:
            res["alert"] = got[6]
        res["recv_bytes"] = len(got)


class Client:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.timeout
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if args.cafile:
            ctx.load_verify_locations(args.cafile)
            ctx.check_hostname = bool(args.sni) and not args.no_check_hostname
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if args.cert:
            ctx.load_cert_chain(args.cert, args.key)
        if args.max_tls == "1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if args.alpn:
            ctx.set_alpn_protocols(args.alpn.split(","))
        if args.pad_alpn:
            # many long ALPN names make a big hello, like a post-quantum key share does
            names, total, i = [], 0, 0
            while total < args.pad_alpn and i < 1000:
                # the last name is cut so that the padding is exactly N bytes
                name = (f"pad-{i:03d}-" + "x" * 40)[:max(1, args.pad_alpn - total - 1)]
                names.append(name)
                total += len(name) + 1
                i += 1
            names.append("http/1.1")
            ctx.set_alpn_protocols(names)
        self.inbio, self.outbio = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inbio, self.outbio, server_side=False,
                                server_hostname=args.sni or None)
        self.sock = socket.create_connection((args.host, args.port),
                                             timeout=self.left())
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.wire_out = bytearray()
        self.net_eof = False
        self.reset = False

    def left(self):
        t = self.deadline - time.monotonic()
        if t <= 0:
            raise Deadline()
        return t

    def collect(self):
        self.wire_out += self.outbio.read()

    def io(self, want_read=True, wait=True):
        """Flush pending wire bytes and read what arrived; waits at most 0.2 s."""
        self.collect()
        rl = [self.sock] if want_read and not self.net_eof else []
        wl = [self.sock] if self.wire_out else []
        if not rl and not wl:
            return
        r, w, _ = select.select(rl, wl, [], min(self.left(), 0.2) if wait else 0)
        if w:
            try:
                n = self.sock.send(self.wire_out)
                del self.wire_out[:n]
            except BlockingIOError:
                pass
        if r:
            try:
                b = self.sock.recv(CHUNK)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.reset = True
                b = b""
            if b:
                self.inbio.write(b)
            else:
                self.net_eof = True
                self.inbio.write_eof()

    def send_first_flight(self):
        """Put the ClientHello on the wire the way the options ask."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        flight = self.outbio.read()
        self.hello_bytes = len(flight)
        self.hello_records = len(split_records(flight))
        if self.args.records > 1:
            flight, self.hello_records = reframe(flight, self.args.records)
        self.sock.setblocking(True)
        if self.args.byte_writes:
            for i in range(len(flight)):  # bounded by the hello's size
                self.sock.settimeout(self.left())
                self.sock.sendall(flight[i:i + 1])
                time.sleep(self.args.byte_delay_ms / 1000.0)
        else:
            self.sock.settimeout(self.left())
            self.sock.sendall(flight)
        self.sock.setblocking(False)

    def handshake(self):
        self.send_first_flight()
        for _ in range(100000):
            try:
                self.tls.do_handshake()
                self.collect()
                return
            except ssl.SSLWantReadError:
                if self.net_eof:
                    raise ConnectionAbortedError("EOF during the handshake")
                self.io()

    def run(self, res):
        a = self.args
        self.handshake()
        res["handshake"] = "ok"
        res["version"] = self.tls.version()
        res["cipher"] = self.tls.cipher()[0]
        res["alpn"] = self.tls.selected_alpn_protocol() or "none"
        cert = self.tls.getpeercert() if a.cafile else None
        if cert:
            res["peer_subject"] = ",".join(f"{k}={v}" for rdn in cert.get("subject", ())
                                           for k, v in rdn)
            res["peer_san"] = ",".join(f"{k}:{v}" for k, v in cert.get("subjectAltName", ()))

        sh, rh = hashlib.sha256(), hashlib.sha256()
        if a.send_text is not None:
            chunks = iter([a.send_text.encode().decode("unicode_escape").encode()])
        else:
            chunks = (c[i:i + CHUNK] for c in data_stream(a.send, a.seed)
                      for i in range(0, len(c), CHUNK))
        sent, recv, text = 0, 0, bytearray()
        sending, notified = True, False
        res["closed_by"] = "timeout"
        for _ in range(10_000_000):
            # keep the wire queue short so reading goes on while we send
            if sending and len(self.wire_out) < 4 * CHUNK:
                c = next(chunks, None)
                if c is None:
                    sending = False
                else:
                    self.tls.write(c)
                    sh.update(c)
                    sent += len(c)
            if not sending and not notified and a.close_notify:
                try:
                    self.tls.unwrap()  # sends close_notify; the read side stays open
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    pass
                notified = True
            if not sending and not notified and a.shut_wr and not self.wire_out:
                self.sock.shutdown(socket.SHUT_WR)
                notified = True
            # read what is decrypted already before waiting on the socket
            done = False
            for _ in range(1000):
                try:
                    b = self.tls.read(CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    res["closed_by"] = "close_notify"
                    done = True
                    break
                except (ssl.SSLEOFError, ssl.SSLSyscallError):
                    res["closed_by"] = "reset" if self.reset else "eof"
                    done = True
                    break
                if not b:
                    res["closed_by"] = "close_notify"
                    done = True
                    break
                rh.update(b)
                recv += len(b)
                if a.text and len(text) < 4096:
                    text += b[:4096 - len(text)]
            if done:
                break
            if self.net_eof and not self.inbio.pending:
                res["closed_by"] = "reset" if self.reset else "eof"
                break
            self.io(wait=not sending)
        # flush whatever is still queued (our close_notify, say), briefly
        for _ in range(50):
            self.collect()
            if not self.wire_out:
                break
            try:
                self.io(want_read=False)
            except (Deadline, BrokenPipeError):
                # after --shut-wr OpenSSL may still queue an alert (a bare FIN is a
                # decode_error to it): our side is closed, so it cannot go out
                break
        res.update(sent_bytes=sent, sent_sha256=sh.hexdigest(), recv_bytes=recv,
                   recv_sha256=rh.hexdigest())
        if a.text:
            res["recv_text"] = text.decode(errors="replace").strip().replace("\n", "\\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--sni", default="", help="server name to send (none if empty)")
    p.add_argument("--cafile", help="verify the server against this CA")
    p.add_argument("--no-check-hostname", action="store_true")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--max-tls", choices=["1.2", "1.3"], default="1.3")
    p.add_argument("--records", type=int, default=1, help="re-frame the hello into N records")
    p.add_argument("--byte-writes", action="store_true", help="write the hello a byte at a time")
    p.add_argument("--byte-delay-ms", type=float, default=1.0)
    p.add_argument("--alpn", help="offer these ALPN protocols (comma-separated)")
    p.add_argument("--pad-alpn", type=int, default=0, help="grow the hello by N bytes")
    p.add_argument("--send", type=int, default=0, help="bytes of deterministic data to send")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--send-text", help="send this text instead (backslash escapes allowed)")
    p.add_argument("--close-notify", action="store_true",
                   help="after sending, send close_notify and keep reading")
    p.add_argument("--shut-wr", action="store_true",
                   help="after sending, shutdown(SHUT_WR) the TCP socket and keep reading")
    p.add_argument("--text", action="store_true", help="print what came back as text")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--raw", help="send a hand-built hello of this kind (see above)")
    args = p.parse_args()

    t0 = time.monotonic()
    if args.raw:
        res = {}
        raw_main(args, res)
        res["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
        for k, v in res.items():
            print(f"{k}={v}")
        return 0
    res = {"handshake": "failed"}
    client = None
    try:
        client = Client(args)
        client.run(res)
    except Deadline:
        res.setdefault("closed_by", "timeout")
        res["error"] = "deadline"
    except ssl.SSLError as e:
        res["error"] = f"ssl:{e.reason or type(e).__name__}"
    except OSError as e:
        res["error"] = f"{type(e).__name__}:{e.strerror or e}"
    finally:
        if client is not None:
            res["hello_bytes"] = getattr(client, "hello_bytes", 0)
            res["hello_records"] = getattr(client, "hello_records", 0)
            client.sock.close()
    res["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
    for k, v in res.items():
        print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
