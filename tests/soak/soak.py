#!/usr/bin/env python3
"""soak.py — the soak of issue 18, run by tests/soak/soak.sh once the private systemd is up and
tcpmap is installed in it: upstreams, load generators, seeded faults, samples and checks.

Everything lives in this one process, so each generator knows which of its connections a fault
may legitimately end: the fault scheduler records a window (when, which kinds, which client
port) for every fault, and a connection is "exposed" only when it overlaps one whose fault
could end it. Every other connection must get back every byte it sent, in order, and end with
a clean close; a mismatched byte is a violation even on an exposed connection.

Load, all at once, through tcpmapd in the sandbox (ports: C cleartext, T TLS, X PROXY, F the
flapping upstream, I per-connection):
    stream        long cleartext streams on C, byte-checked both ways, renewed every 5-20 s
    rr            short request/response connections on C at a steady rate
    term          TLS terminated on T (SNI term.soak.test) to a cleartext echo
    orig          terminated on T and originated again (SNI orig.soak.test) to a TLS echo
    pass          SNI passthrough on T (pass.soak.test), verified end to end by the client
    proxy         PROXY v1 on X; the upstream checks the header names the client's real port
    flap          request/response and streams on F, whose upstream the faults kill
    inetd         per-connection (Accept=yes) relays on I, each a process of its own
Faults, one every SOAK_SECONDS/10 (5 to 60 s), the first round a seeded shuffle of all of
them, then seeded picks: restart (hand-over), reload-route, broken-config, kill-relay (kill -9
of a per-connection tcpmapd), upstream-kill, slowloris, vanish (a client that goes silent
without FIN, and one that resets).

Checks: bytes (above), no connection past its timeouts, each connection exactly one close
entry in the journal (none for one whose own relay was killed), close results ok for the
unexposed, fds and threads of each threaded tcpmapd back to their idle baseline, RSS within
10 % of its first sample under load, breaker active and pending back to 0, no failed unit, no
unexpected error in the journal. Samples go to OUT/samples.tsv and OUT/samples.png.

It must never hang: every socket has a timeout, every loop a bound, every thread a deadline,
and --seconds plus a fixed margin bounds the whole run. Loopback only.
"""

import argparse
import hashlib
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib

FAULTS = ["restart", "reload-route", "broken-config", "kill-relay", "upstream-kill", "slowloris", "vanish"]
IDLE_TIMEOUT_MS = 4000
PREREAD_TIMEOUT_MS = 2000
DRAIN_TIMEOUT_MS = 3000
OP_TIMEOUT = 20.0  # one send or recv; far above any drain, hand-over or reload
# How long after a client's connect systemd may start its tcpmap-inetd@ relay on a loaded
# 2-core machine: the relay reads the config only then. In one CI run a client that
# connected 0.5 s after the fault began, while it still queried systemctl and before its
# window opened, was reset with no close entry, as a relay that read the broken config does.
INETD_START_LAG = 2.0
MID_CONFIG_REJECTED = "8a30314491d54d78b64d389de55dfad0"


def now():
    return time.time()


def rst_close(sock):
    """Close with SO_LINGER 0: the kernel sends a reset, as for a crashed process. Only
    ever from the thread that uses the socket (see Upstream)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# ---- the sandbox --------------------------------------------------------------------------


class Sandbox:
    def __init__(self, script, state):
        self.base = [script, "exec", state]

    def run(self, *cmd, stdin=None, timeout=60):
        try:
            return subprocess.run(self.base + list(cmd), input=stdin, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {timeout}s")

    def sh(self, script, stdin=None, timeout=60):
        return self.run("sh", "-c", script, stdin=stdin, timeout=timeout)


# ---- the config ---------------------------------------------------------------------------


def config_text(ports, route_to="A", broken=False):
    p = ports
    docs = [
        f"""apiVersion: getambassador.io/v3alpha1
kind: Module
metadata:
  name: ambassador
spec:
  config:
    drain_timeout_ms: {DRAIN_TIMEOUT_MS}
    preread_timeout_ms: {PREREAD_TIMEOUT_MS}""",
        """apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata:
  name: soak-term
spec:
  hosts:
  - term.soak.test
  - orig.soak.test
  secret: soaksecret""",
        f"""apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: clear
spec:
  port: {p['C']}
  address: 127.0.0.1
  service: 127.0.0.1:{p[route_to]}
  idle_timeout_ms: {IDLE_TIMEOUT_MS}""",
        f"""apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: term
spec:
  port: {p['T']}
  address: 127.0.0.1
  host: term.soak.test
  service: 127.0.0.1:{p['E']}""",
        f"""apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: orig
spec:
  port: {p['T']}
  address: 127.0.0.1
  host: orig.soak.test
  service: https://127.0.0.1:{p['S']}""",
        f"""apiVersion: getambassador.io/v2
kind: TCPMapping
metadata:
  name: pass
spec:
  port: {p['T']}
  address: 127.0.0.1
  host: pass.soak.test
  tls_passthrough: true
  service: 127.0.0.1:{p['S']}""",
        f"""apiVersion: getambassador.io/v2
kind: TCPMapping
metadata:
  name: proxy
spec:
  port: {p['X']}
  address: 127.0.0.1
  proxy_protocol: v1
  service: 127.0.0.1:{p['P']}""",
        f"""apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: flap
spec:
  port: {p['F']}
  address: 127.0.0.1
  service: 127.0.0.1:{p['U']}""",
        f"""apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: inetd
spec:
  port: {p['I']}
  address: 127.0.0.1
  service: 127.0.0.1:{p['E']}""",
    ]
    if broken:
        docs.append("""apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: broken
spec:
  port: notaport
  service: 127.0.0.1:1""")
    return "".join(f"---\n{d}\n" for d in docs)


# ---- the upstreams ------------------------------------------------------------------------


class Upstream:
    """An echo server on one loopback port: plain, TLS, or expecting a PROXY v1 header.
    kill() drops the listener and resets every connection, as a crashed process would;
    revive() listens again on the same port.

    Only the thread that uses a socket closes it. A socket closed by another thread while
    its own is inside, or about to enter, a call on its fd lets that call land on whatever
    socket takes the number next: a poll() then holds a file nobody has an fd for, whose
    close never reaches the wire. An upstream-kill so once left a connection neither reset
    nor answered, which the soak blamed on tcpmapd (a flap-stream timing out, its breaker
    slot held at the end). So kill() only marks each connection and shuts its socket's
    reading side down, which wakes its thread; that thread closes it with SO_LINGER 0 (a
    reset), under the connection's lock, so kill() never touches a closed fd. The listener
    likewise: kill() shuts it down, its accept thread closes it."""

    class Conn:
        """An accepted connection: its socket (the TLS one once wrapped), and under `lock`
        whether it is closed and whether kill() reset it."""

        def __init__(self, sock):
            self.sock, self.lock, self.closed, self.killed = sock, threading.Lock(), False, False

    def __init__(self, soak, name, port, mode, tls_ctx=None):
        self.soak, self.name, self.port, self.mode, self.tls_ctx = soak, name, port, mode, tls_ctx
        self.lock = threading.Lock()
        self.conns = set()
        self.accepts = 0
        self.listener = None
        self.listener_lock = threading.Lock()  # its accept thread closes it under this lock
        self.generation = 0

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(512)
        s.settimeout(0.2)
        with self.lock:
            self.listener = s
            self.generation += 1
            gen = self.generation
        threading.Thread(target=self.accept_loop, args=(s, gen), daemon=True).start()

    def accept_loop(self, s, gen):
        while not self.soak.finished.is_set():
            with self.lock:
                if self.generation != gen:
                    break
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn = self.Conn(c)
            with self.lock:
                if self.generation != gen:
                    rst_close(c)
                    break
                self.accepts += 1
                self.conns.add(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()
        with self.listener_lock:
            try:
                s.close()
            except OSError:
                pass

    def kill(self):
        with self.lock:
            self.generation += 1
            s, self.listener = self.listener, None
            conns, self.conns = list(self.conns), set()
        if s:
            with self.listener_lock:
                try:
                    # stops listening at once, resets the backlog and wakes the accept thread
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for conn in conns:
            with conn.lock:
                if conn.closed:
                    continue
                conn.killed = True
                try:
                    # wakes its thread, which resets it; the plain socket's shutdown, as
                    # SSLSocket's would drop the TLS state that thread still uses
                    socket.socket.shutdown(conn.sock, socket.SHUT_RD)
                except OSError:
                    pass

    def revive(self):
        for _ in range(50):
            try:
                self.start()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def read_proxy_header(self, c):
        line = b""
        while not line.endswith(b"\r\n") and len(line) < 108:
            b = c.recv(1)
            if not b:
                return False, "eof before the PROXY header"
            line += b
        try:
            words = line.decode("ascii").strip().split(" ")
        except UnicodeDecodeError:
            return False, f"not ASCII: {line[:40]!r}"
        if (len(words) != 6 or words[:4] != ["PROXY", "TCP4", "127.0.0.1", "127.0.0.1"]
                or words[5] != str(self.soak.ports["X"])):
            return False, f"bad header {line!r}"
        if not self.soak.proxy_port_live(int(words[4])):
            return False, f"header names client port {words[4]}, which no proxy client has"
        return True, ""

    def serve(self, conn):
        c = conn.sock
        try:
            c.settimeout(120)
            if self.mode == "proxy":
                ok, why = self.read_proxy_header(c)
                if not ok:
                    if not conn.killed:
                        self.soak.violation(f"PROXY upstream: {why}")
                    return
                self.soak.count("proxy_headers_checked")
            if self.mode == "tls":
                c = self.tls_ctx.wrap_socket(c, server_side=True)
                with conn.lock:
                    conn.sock = c
            while not conn.killed:
                b = c.recv(65536)
                if not b or conn.killed:
                    break
                c.sendall(b)
            if self.mode != "tls" and not conn.killed:
                c.shutdown(socket.SHUT_WR)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            with conn.lock:
                conn.closed = True
                if conn.killed:
                    rst_close(c)
                else:
                    try:
                        c.close()
                    except OSError:
                        pass


# ---- the clients --------------------------------------------------------------------------


class Record:
    """One client connection and what became of it."""

    __slots__ = ("id", "kind", "mapping", "port", "lport", "t0", "t1", "sent", "recv", "outcome",
                 "sha_sent", "sha_recv", "expect_result", "exposed")

    def __init__(self, cid, kind, mapping, port):
        self.id, self.kind, self.mapping, self.port = cid, kind, mapping, port
        self.lport = 0
        self.t0 = now()
        self.t1 = None
        self.sent = self.recv = 0
        self.outcome = "running"
        self.sha_sent, self.sha_recv = hashlib.sha256(), hashlib.sha256()
        self.expect_result = None
        self.exposed = None


class Mismatch(Exception):
    pass


class EarlyEOF(Exception):
    pass


KINDS = {
    # kind: port, mapping, SNI (TLS), rate (new connections/s) or streams (kept open), size
    "stream": dict(port="C", mapping="clear", streams=6, life=(5, 20), bps=65536),
    "rr": dict(port="C", mapping="clear", rate=8, size=(1, 32768)),
    "term": dict(port="T", mapping="term", sni="term.soak.test", rate=2, size=(4096, 32768)),
    "orig": dict(port="T", mapping="orig", sni="orig.soak.test", rate=2, size=(4096, 32768)),
    "pass": dict(port="T", mapping="pass", sni="pass.soak.test", rate=2, size=(4096, 32768)),
    "proxy": dict(port="X", mapping="proxy", rate=3, size=(1, 32768)),
    "proxy-stream": dict(port="X", mapping="proxy", streams=1, life=(5, 20), bps=32768),
    "flap": dict(port="F", mapping="flap", rate=3, size=(1, 16384)),
    "flap-stream": dict(port="F", mapping="flap", streams=2, life=(3, 10), bps=32768),
    "inetd": dict(port="I", mapping="inetd", rate=2, life=(1.5, 3.5), bps=16384),
}


class Soak:
    def __init__(self, args):
        self.args = args
        self.ports = dict(kv.split("=") for kv in args.ports.split(","))
        self.ports = {k: int(v) for k, v in self.ports.items()}
        self.sb = Sandbox(args.sandbox, args.state)
        self.lock = threading.Lock()
        self.records = []
        self.windows = []  # (kinds, t0, t1, lport or None, start_only, why)
        self.violations = []
        self.counters = {}
        self.faults = []  # (t, kind, detail)
        self.proxy_ports = {}
        self.next_id = 0
        self.stopping = threading.Event()  # generators: start nothing new
        self.finished = threading.Event()  # upstreams: stop accepting
        self.threads = []
        self.route = "A"
        self.t_start = now()
        self.rng = random.Random(args.seed)
        self.client_ctx = ssl.create_default_context(cafile=args.cafile)
        self.upstream_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.upstream_ctx.load_cert_chain(args.upstream_cert, args.upstream_key)
        self.samples = []  # (t, unit, pid, rss_kb, fds, threads)
        self.breaker_samples = []  # (t, active, pending)
        self.journal_errors = []  # (t, count)

    # -- bookkeeping
    def violation(self, text):
        with self.lock:
            self.violations.append(text)
        print(f"soak: VIOLATION {text}", flush=True)

    def count(self, name, n=1):
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def new_record(self, kind, mapping, port):
        with self.lock:
            r = Record(self.next_id, kind, mapping, port)
            self.next_id += 1
            self.records.append(r)
        return r

    def window(self, kinds, t0, t1, lport=None, start_only=False, why=""):
        with self.lock:
            self.windows.append((set(kinds), t0, t1, lport, start_only, why))

    def proxy_port_live(self, lport):
        with self.lock:
            return self.proxy_ports.get(lport, 0) > 0

    def spawn(self, target, *a):
        t = threading.Thread(target=target, args=a, daemon=True)
        t.start()
        with self.lock:
            self.threads.append(t)
            # forget the finished ones: an hour makes tens of thousands
            if len(self.threads) > 512:
                self.threads = [x for x in self.threads if x.is_alive()]
        return t

    # -- one client connection
    def connect(self, rec, spec):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(OP_TIMEOUT)
        s.bind(("127.0.0.1", 0))
        rec.lport = s.getsockname()[1]
        if rec.kind.startswith("proxy"):
            with self.lock:
                self.proxy_ports[rec.lport] = self.proxy_ports.get(rec.lport, 0) + 1
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect(("127.0.0.1", self.ports[spec["port"]]))
        if spec.get("sni"):
            s = self.client_ctx.wrap_socket(s, server_hostname=spec["sni"])
        return s

    def exchange(self, rec, s, data):
        s.sendall(data)
        rec.sent += len(data)
        rec.sha_sent.update(data)
        got = 0
        while got < len(data):
            b = s.recv(min(65536, len(data) - got))
            if not b:
                raise EarlyEOF(f"early_eof after {rec.recv} bytes back")
            if b != data[got:got + len(b)]:
                raise Mismatch(f"mismatch at byte {rec.recv}")
            got += len(b)
            rec.recv += len(b)
            rec.sha_recv.update(b)

    def finish_clean(self, rec, s, tls):
        if tls:
            return  # everything came back; a TLS half-close would end our reading too
        s.shutdown(socket.SHUT_WR)
        b = s.recv(1)
        if b:
            raise Mismatch(f"{len(b)} unexpected byte(s) after the echo")

    def run_conn(self, kind, rng_seed):
        spec = KINDS[kind]
        rec = self.new_record(kind, spec["mapping"], self.ports[spec["port"]])
        rng = random.Random(rng_seed)
        s = None
        try:
            s = self.connect(rec, spec)
            if "size" in spec:
                left = rng.randint(*spec["size"])
                while left > 0:
                    n = min(left, 16384)
                    self.exchange(rec, s, rng.randbytes(n))
                    left -= n
            else:
                life = rng.uniform(*spec["life"])
                began = time.monotonic()
                while time.monotonic() - began < life and not self.stopping.is_set():
                    self.exchange(rec, s, rng.randbytes(4096))
                    ahead = rec.sent / spec["bps"] - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(min(ahead, 1.0))
            self.finish_clean(rec, s, bool(spec.get("sni")))
            rec.outcome = "ok"
        except Mismatch as e:
            rec.outcome = f"mismatch:{e}"
        except EarlyEOF as e:
            rec.outcome = str(e)
        except socket.timeout:
            rec.outcome = "timeout"
            if spec["port"] in self.threaded_units():
                # while the socket is still open: afterwards only tcpmapd's side is left
                upstream = {"clear": self.route, "term": "E", "orig": "S", "pass": "S",
                            "proxy": "P", "flap": "U"}[spec["mapping"]]
                try:
                    self.diagnose(f"{kind} connection from port {rec.lport} timed out", spec["port"],
                                  rec.lport, upstream)
                except Exception as e:  # diagnostics must not change the verdict
                    print(f"soak: diag: failed: {e!r}", flush=True)
        except ConnectionRefusedError:
            rec.outcome = "refused"
        except ConnectionResetError:
            rec.outcome = "reset"
        except BrokenPipeError:
            rec.outcome = "broken_pipe"
        except ssl.SSLError as e:
            rec.outcome = f"tls:{e.reason or type(e).__name__}"
        except OSError as e:
            rec.outcome = f"error:{type(e).__name__}:{e.errno}"
        finally:
            rec.t1 = now()
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
            if kind.startswith("proxy") and rec.lport:
                with self.lock:
                    self.proxy_ports[rec.lport] -= 1
        return rec

    # -- the generators
    def rate_generator(self, kind):
        spec = KINDS[kind]
        gen_rng = random.Random(f"{self.args.seed}:{kind}")
        interval = 1.0 / spec["rate"]
        nxt = time.monotonic()
        live = []
        while not self.stopping.is_set():
            live = [t for t in live if t.is_alive()]
            # bounded: a stuck relay shows up as hung connections, not as a thread pile-up
            if len(live) < 64:
                live.append(self.spawn(self.run_conn, kind, gen_rng.getrandbits(63)))
            else:
                self.count(f"{kind}_skipped_busy")
            nxt += interval
            time.sleep(max(0.0, nxt - time.monotonic()))

    def stream_generator(self, kind, slot):
        gen_rng = random.Random(f"{self.args.seed}:{kind}:{slot}")
        while not self.stopping.is_set():
            rec = self.run_conn(kind, gen_rng.getrandbits(63))
            # after a failure (its upstream is down), retry at a person's pace, not in a loop
            time.sleep(0.05 if rec.outcome == "ok" else 0.5)

    def probe(self, kind="rr"):
        """One short connection of KIND in this thread (recorded like any other)."""
        return self.run_conn(kind, self.rng.getrandbits(63))

    # -- the faults
    def threaded_units(self):
        return {k: f"tcpmap@127.0.0.1:{self.ports[k]}.service" for k in ("C", "T", "X", "F")}

    def main_pid(self, unit):
        r = self.sb.run("systemctl", "show", "-p", "MainPID", "--value", unit)
        return r.stdout.strip()

    def fault_restart(self, rng):
        key = rng.choice(["C", "T", "X", "F"])
        unit = self.threaded_units()[key]
        old = self.main_pid(unit)
        t0 = now()
        r = self.sb.run("systemctl", "restart", unit, timeout=60)
        t1 = now()
        new = self.main_pid(unit)
        active = self.sb.run("systemctl", "is-active", unit).stdout.strip()
        if r.returncode != 0 or new in ("", "0", old) or active != "active":
            self.violation(f"restart of {unit}: rc={r.returncode} MainPID {old} -> {new}, {active}: {r.stderr.strip()}")
        if key == "T":
            # A TLS-terminated connection is not handed over: it drains and is closed at
            # drain_timeout (tcpmapd(8)); those open across the restart may end early.
            self.window({"term", "orig"}, t0, t1 + 0.5, why="TLS drains on restart")
        return f"{unit} {old}->{new} in {t1 - t0:.1f}s"

    def write_config(self, route, broken=False):
        r = self.sb.sh("umask 022; cat >/etc/tcpmap/tcpmap.yaml.new && mv /etc/tcpmap/tcpmap.yaml.new /etc/tcpmap/tcpmap.yaml",
                       stdin=config_text(self.ports, route, broken))
        if r.returncode != 0:
            self.violation(f"writing the config: {r.stderr.strip()}")

    def reload_all(self):
        units = list(self.threaded_units().values())
        r = self.sb.run("systemctl", "reload", *units, timeout=60)
        if r.returncode != 0:
            self.violation(f"systemctl reload: rc={r.returncode}: {r.stderr.strip()}")

    def fault_reload_route(self, rng):
        old, new = self.route, ("B" if self.route == "A" else "A")
        self.write_config(new)
        self.reload_all()
        self.route = new
        time.sleep(1.0)
        ups = self.upstreams
        before_old, before_new = ups[old].accepts, ups[new].accepts
        probes = [self.probe() for _ in range(3)]
        after_old, after_new = ups[old].accepts, ups[new].accepts
        bad = [p.outcome for p in probes if p.outcome != "ok"]
        if after_new - before_new < 3 or after_old != before_old or bad:
            self.violation(f"reload-route {old}->{new}: probes {bad or 'ok'}, new upstream +{after_new - before_new}, old +{after_old - before_old}")
        return f"clear -> upstream {new}"

    def fault_broken_config(self, rng):
        units = self.threaded_units()
        pids = {u: self.main_pid(u) for u in units.values()}
        t0 = now()
        self.write_config(self.route, broken=True)
        self.reload_all()
        time.sleep(2.0)
        probe = self.probe()
        for u, pid in pids.items():
            active = self.sb.run("systemctl", "is-active", u).stdout.strip()
            if active != "active" or self.main_pid(u) != pid:
                self.violation(f"broken config: {u} is {active}, MainPID {pid} -> {self.main_pid(u)}")
        if probe.outcome != "ok":
            self.violation(f"broken config: a connection on C failed: {probe.outcome}")
        self.write_config(self.route)
        self.reload_all()
        t1 = now()
        # A per-connection relay reads the config when it starts: one started while the
        # config was broken refuses its connection (tcpmap-inetd@.service). systemd starts
        # it some time after the client's connect (INETD_START_LAG), so a client that
        # connected just before t0 may still get a relay that read the broken config.
        self.window({"inetd"}, t0 - INETD_START_LAG, t1 + 0.5, start_only=True,
                    why="per-connection relay started on a broken config")
        with self.lock:
            self.broken_windows.append((t0 - 0.5, t1 + 3.0))
        return f"{t1 - t0:.1f}s broken"

    def fault_kill_relay(self, rng):
        for _ in range(30):
            r = self.sb.run("systemctl", "list-units", "--no-legend", "--plain", "--state=running",
                            "tcpmap-inetd@*.service")
            units = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
            if units:
                break
            time.sleep(0.1)
        else:
            self.count("kill_relay_nothing_running")
            return "no per-connection relay was running"
        unit = rng.choice(sorted(units))
        lport = int(unit.rsplit(":", 1)[1].split(".service")[0])
        pid = self.main_pid(unit)
        t0 = now()
        self.window({"inetd"}, t0 - 0.1, t0 + 0.5, lport=lport, why="its own relay was killed")
        r = self.sb.run("kill", "-9", pid)
        with self.lock:
            self.killed_units.append((unit, t0))
        return f"kill -9 {pid} ({unit}): rc={r.returncode}"

    def fault_upstream_kill(self, rng):
        up = self.upstreams["U"]
        down = rng.uniform(1.0, 3.0)
        t0 = now()
        up.kill()
        time.sleep(down)
        ok = up.revive()
        t1 = now()
        if not ok:
            self.violation("upstream U could not listen again")
        self.window({"flap", "flap-stream"}, t0 - 0.1, t1 + 1.0, why="its upstream was killed")
        return f"upstream U down {t1 - t0:.1f}s"

    def slowloris_conn(self, rec):
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", self.ports["T"]), timeout=2)
            rec.lport = s.getsockname()[1]
            s.settimeout(0.3)
            hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)
            began = time.monotonic()
            limit = PREREAD_TIMEOUT_MS / 1000 + 6
            for i in range(len(hello)):
                if time.monotonic() - began > limit:
                    rec.outcome = "timeout"  # never closed: a hang
                    return
                try:
                    s.send(hello[i:i + 1])
                    rec.sent += 1
                    s.recv(4096)  # EOF, or an alert: either way tcpmapd ended it
                    rec.outcome = "ok"
                    return
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    rec.outcome = "ok"
                    return
            rec.outcome = "timeout"
        except OSError as e:
            rec.outcome = f"error:{type(e).__name__}"
        finally:
            rec.t1 = now()
            if s:
                s.close()

    def fault_slowloris(self, rng):
        n = rng.randint(5, 15)
        recs = [self.new_record("slowloris", None, self.ports["T"]) for _ in range(n)]
        ts = [self.spawn(self.slowloris_conn, r) for r in recs]
        return f"{n} slow hellos on T ({len(ts)} started)"

    def vanish_conn(self, rec, how):
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", self.ports["C"]), timeout=5)
            rec.lport = s.getsockname()[1]
            s.settimeout(OP_TIMEOUT)
            self.exchange(rec, s, random.Random(rec.id).randbytes(1024))
            if how == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                rec.outcome = "ok"
                return
            # silent: no FIN, no byte; the mapping's idle timeout must end it
            s.settimeout(IDLE_TIMEOUT_MS / 1000 + 6)
            began = time.monotonic()
            try:
                b = s.recv(1)
                rec.outcome = "ok" if not b else "mismatch:data after silence"
            except ConnectionResetError:
                rec.outcome = "ok"
            except socket.timeout:
                rec.outcome = "timeout"
            waited = time.monotonic() - began
            if rec.outcome == "ok" and waited < IDLE_TIMEOUT_MS / 1000 - 0.5:
                rec.outcome = f"closed_early:{waited:.1f}s"
        except (Mismatch, EarlyEOF, OSError) as e:
            rec.outcome = f"error:{e}"
        finally:
            rec.t1 = now()
            if s:
                s.close()

    def fault_vanish(self, rng):
        a = self.new_record("vanish", "clear", self.ports["C"])
        a.expect_result = "idle_timeout"
        b = self.new_record("vanish", "clear", self.ports["C"])
        self.spawn(self.vanish_conn, a, "silent")
        self.spawn(self.vanish_conn, b, "rst")
        return "one silent client, one reset"

    def fault_loop(self, interval, last_at):
        rng = random.Random(self.args.seed)
        chosen = self.args.faults.split(",") if self.args.faults else FAULTS
        order = list(chosen)
        rng.shuffle(order)
        t_next = time.monotonic() + min(interval, 5.0)
        while True:
            if self.finished.is_set():
                return
            delay = t_next - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.5))
                continue
            if time.monotonic() >= last_at:
                return
            kind = order.pop(0) if order else rng.choice(chosen)
            t = now() - self.t_start
            try:
                detail = getattr(self, "fault_" + kind.replace("-", "_"))(rng)
            except Exception as e:  # a fault that could not be injected is a failure
                detail = f"raised {type(e).__name__}: {e}"
                self.violation(f"fault {kind}: {detail}")
            with self.lock:
                self.faults.append((t, kind, detail))
            print(f"soak: {t:7.1f}s fault {kind}: {detail}", flush=True)
            t_next += interval

    # -- samples
    SAMPLE_SH = r"""
for p in $(pidof tcpmapd); do
  u=$(grep -o '[^/]*\.service' /proc/$p/cgroup 2>/dev/null | head -n1)
  r=$(awk '/^VmRSS/ {print $2}' /proc/$p/status 2>/dev/null)
  f=$(ls /proc/$p/fd 2>/dev/null | wc -l)
  pp=$(ls -l /proc/$p/fd 2>/dev/null | grep -c 'pipe:')
  t=$(ls /proc/$p/task 2>/dev/null | wc -l)
  echo "$p ${u:--} ${r:-0} $f $t $pp"
done
"""

    def breaker_totals(self):
        r = self.sb.run("tcpmapctl", "status", "--json")
        try:
            j = json.loads(r.stdout)
        except ValueError:
            return None, None, r.stdout + r.stderr
        cl = j.get("clusters", [])
        return sum(c["active"] for c in cl), sum(c["pending"] for c in cl), j

    # What tcpmapd thinks of a connection that hangs, for the next failure to say more than
    # "timeout": the sockets of one client port and the service's sockets toward one
    # upstream port (state, queues, timers; ss -i info), which of the service's fds its
    # epoll instances watch and for which events (fdinfo: tfd, events, in hex), its
    # threads' kernel stacks, and tcpmapctl status. $1: the unit, $2: a client port (0:
    # none), $3: an upstream port.
    DIAG_SH = r"""
unit=$1 lport=$2 uport=$3
pid=$(systemctl show -p MainPID --value "$unit")
echo "== $unit: MainPID $pid"
if [ "$lport" != 0 ]; then
  echo "== sockets of client port $lport"
  ss -tnoei exclude time-wait "( sport = :$lport or dport = :$lport )" | sed 's/  *$//'
fi
echo "== sockets to and from upstream port $uport (tcpmapd's and the upstream's; no TIME-WAIT)"
ss -tnoei exclude time-wait "( sport = :$uport or dport = :$uport )" | sed 's/  *$//'
[ -n "$pid" ] && [ "$pid" != 0 ] || exit 0
echo "== socket and epoll fds of $pid (socket inodes: ss -e shows ino:)"
ls -l /proc/$pid/fd | awk 'NR > 1 && $NF !~ /^pipe:/ {print $(NF-2), $NF}' | sort -n
echo "pipe fds: $(ls -l /proc/$pid/fd | grep -c 'pipe:')"
for f in /proc/$pid/fd/*; do
  case $(readlink "$f") in
  *eventpoll*) echo "== epoll fd ${f##*/}: tfd = watched fd, events in hex (1 IN, 4 OUT, 8 ERR, 10 HUP, 2000 RDHUP, 80000000 ET)"
    grep '^tfd' /proc/$pid/fdinfo/${f##*/} ;;
  esac
done
echo "== threads of $pid"
for t in /proc/$pid/task/*; do
  echo "-- ${t##*/} $(cat $t/comm) state $(awk '{print $3}' $t/stat) wchan $(cat $t/wchan 2>/dev/null)"
  head -n 8 $t/stack 2>/dev/null
done
echo "== tcpmapctl status"
tcpmapctl status 2>&1 | head -n 60
"""

    def diagnose(self, why, unit_key, lport, upstream_key):
        """Print (prefixed, bounded) and keep in diag.txt what tcpmapd's unit shows of a
        hanging connection; see DIAG_SH."""
        unit = self.threaded_units()[unit_key]
        r = self.sb.run("sh", "-c", self.DIAG_SH, "diag", unit, str(lport),
                        str(self.ports[upstream_key]), timeout=30)
        up = self.upstreams.get(upstream_key)
        with up.lock:
            up_state = f"upstream {upstream_key}: {len(up.conns)} connections held, listening {up.listener is not None}, generation {up.generation}"
        text = f"{why} ({now() - self.t_start:.1f}s)\n{up_state}\n{r.stdout}{r.stderr}"
        with self.lock:
            with open(os.path.join(self.args.out, "diag.txt"), "a") as f:
                f.write(text + "\n")
        lines = text.splitlines()
        for line in lines[:400]:
            print(f"soak: diag: {line}", flush=True)
        if len(lines) > 400:
            print(f"soak: diag: ... {len(lines) - 400} more lines in diag.txt", flush=True)

    def sample(self, label=""):
        t = now() - self.t_start
        r = self.sb.sh(self.SAMPLE_SH)
        rows = []
        for line in r.stdout.splitlines():
            w = line.split()
            if len(w) == 6:
                rows.append((t, w[1], int(w[0]), int(w[2]), int(w[3]), int(w[4]), int(w[5])))
        active, pending, _ = self.breaker_totals()
        e = self.sb.sh(f"journalctl -q --no-pager -p 0..3 --since=@{int(self.t_start)} -o cat | wc -l")
        errors = int(e.stdout.strip() or 0)
        with self.lock:
            self.samples.extend(rows)
            self.breaker_samples.append((t, active, pending))
            self.journal_errors.append((t, errors))
        with open(os.path.join(self.args.out, "samples.tsv"), "a") as f:
            for row in rows:
                f.write(f"{row[0]:.1f}\t{label}\t{row[1]}\t{row[2]}\t{row[3]}\t{row[4]}\t{row[5]}\t{row[6]}\t{active}\t{pending}\t{errors}\n")
        return rows

    def sample_loop(self, interval):
        nxt = time.monotonic() + interval
        while not self.stopping.is_set():
            if time.monotonic() >= nxt:
                self.sample("load")
                nxt += interval
            time.sleep(0.2)


# ---- the checks ---------------------------------------------------------------------------


def exposed_by(soak, rec):
    for kinds, t0, t1, lport, start_only, why in soak.windows:
        if rec.kind not in kinds:
            continue
        if lport is not None and rec.lport != lport:
            continue
        end = rec.t1 if rec.t1 is not None else now()
        if start_only:
            if t0 <= rec.t0 <= t1:
                return why
        elif rec.t0 <= t1 and end >= t0:
            return why
    return None


def close_events(soak):
    r = soak.sb.run("journalctl", "--no-pager", "-o", "json", "TCPMAP_EVENT=close", f"--since=@{int(soak.t_start) - 1}",
                    "--output-fields=TCPMAP_CLIENT,TCPMAP_MAPPING,TCPMAP_BYTES_IN,TCPMAP_RESULT,_SYSTEMD_UNIT,_PID",
                    timeout=300)
    evs = []
    for line in r.stdout.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        client = e.get("TCPMAP_CLIENT", "")
        try:
            port = int(client.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            port = 0
        evs.append(dict(port=port, mapping=e.get("TCPMAP_MAPPING"), bytes_in=e.get("TCPMAP_BYTES_IN"),
                        result=e.get("TCPMAP_RESULT"), unit=e.get("_SYSTEMD_UNIT")))
    return evs


def check_close_events(soak, records):
    """Each connection exactly one close entry, matched by (listener, client port); a client
    port may come round again over an hour, so it is counted, not assumed unique."""
    bad = []
    port_to_key = {}
    for p_name in ("C", "T", "X", "F", "I"):
        port_to_key[soak.ports[p_name]] = p_name
    mapping_port = {"clear": "C", "term": "T", "orig": "T", "pass": "T", "proxy": "X", "flap": "F", "inetd": "I"}
    evs = None
    # the journal may lag the last closes by a moment: wait until the count stops moving
    last = -1
    for _ in range(20):
        evs = close_events(soak)
        if len(evs) == last:
            break
        last = len(evs)
        time.sleep(1.0)
    by_key = {}
    for e in evs:
        listener = mapping_port.get(e["mapping"], "T?")  # no mapping: closed before routing
        by_key.setdefault((listener, e["port"]), []).append(e)
    want = {}
    for r in records:
        lk = port_to_key.get(r.port)
        if r.mapping is None:
            lk = "T?"
        want.setdefault((lk, r.lport), []).append(r)
    unmatched = []
    for key, recs in want.items():
        got = by_key.pop(key, [])
        lo = sum(1 for r in recs if not r.exposed and r.outcome != "refused")
        hi = len(recs)
        if not (lo <= len(got) <= hi):
            bad.append(f"client port {key[1]} on {key[0]}: {len(got)} close entries for {hi} connection(s) "
                       f"({', '.join(f'{r.kind}:{r.outcome}' + (' exposed' if r.exposed else '') for r in recs)})")
            continue
        if len(recs) == 1 and len(got) == 1:
            r, e = recs[0], got[0]
            if not r.exposed and r.kind not in ("slowloris", "vanish") and r.outcome == "ok":
                if e["result"] != "ok":
                    bad.append(f"{r.kind} client port {r.lport}: close result {e['result']}, the client saw ok")
                elif not r.mapping or r.mapping not in ("term", "orig", "pass"):
                    if e["bytes_in"] != str(r.sent):
                        bad.append(f"{r.kind} client port {r.lport}: close says {e['bytes_in']} bytes in, the client sent {r.sent}")
            if r.expect_result and e["result"] != r.expect_result:
                bad.append(f"{r.kind} client port {r.lport}: close result {e['result']}, expected {r.expect_result}")
    for key, got in by_key.items():
        unmatched.extend(got)
    if unmatched:
        bad.append(f"{len(unmatched)} close entries for connections this soak did not make, e.g. {unmatched[:3]}")
    return bad, len(evs)


def journal_errors(soak):
    r = soak.sb.run("journalctl", "--no-pager", "-o", "json", "-p", "0..3", f"--since=@{int(soak.t_start)}",
                    "--output-fields=MESSAGE,MESSAGE_ID,_SYSTEMD_UNIT,UNIT,SYSLOG_IDENTIFIER,__REALTIME_TIMESTAMP",
                    timeout=120)
    unexpected, expected = [], 0
    for line in r.stdout.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        t = int(e.get("__REALTIME_TIMESTAMP", "0")) / 1e6
        unit = e.get("UNIT") or e.get("_SYSTEMD_UNIT") or e.get("SYSLOG_IDENTIFIER") or ""
        msg = e.get("MESSAGE", "")
        if isinstance(msg, list):
            msg = "<binary>"
        ok = False
        if any(a <= t <= b for a, b in soak.broken_windows) and (
                e.get("MESSAGE_ID") == MID_CONFIG_REJECTED or "tcpmap" in unit or "tcpmap" in msg):
            ok = True  # the broken config, said so by the threaded services and the relays
        for u, tk in soak.killed_units:
            if u in unit or u in msg:
                ok = True  # the relay we killed -9, said so by systemd
        if ok:
            expected += 1
        else:
            unexpected.append(f"{t - soak.t_start:.1f}s {unit}: {msg}")
    return unexpected, expected


# ---- the plot: a PNG from the standard library alone ---------------------------------------


def write_png(path, series, width=900, panel_h=140):
    """series: [(title, [(x, y), ...]), ...], one panel each, lines scaled to the panel."""
    h = panel_h * max(1, len(series))
    img = [bytearray(b"\xff" * (width * 3)) for _ in range(h)]
    colors = [(200, 30, 30), (30, 30, 200), (30, 150, 30), (150, 30, 150), (200, 120, 0), (0, 150, 150)]

    def put(x, y, c):
        if 0 <= x < width and 0 <= y < h:
            img[y][x * 3:x * 3 + 3] = bytes(c)

    xs = [x for _, pts in series for lines in pts.values() for x, _ in lines] or [0, 1]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    for i, (title, lines) in enumerate(series):
        top = i * panel_h
        for x in range(width):
            put(x, top, (0, 0, 0))
        ys = [y for pts in lines.values() for _, y in pts] or [0, 1]
        y0, y1 = 0, max(max(ys), 1) * 1.1
        for j, (_, pts) in enumerate(sorted(lines.items())):
            c = colors[j % len(colors)]
            prev = None
            for x, y in pts:
                px = int(20 + (x - x0) / (x1 - x0) * (width - 40))
                py = int(top + panel_h - 10 - (y - y0) / (y1 - y0) * (panel_h - 20))
                if prev:
                    steps = max(abs(px - prev[0]), abs(py - prev[1]), 1)
                    for s in range(steps + 1):
                        put(prev[0] + (px - prev[0]) * s // steps, prev[1] + (py - prev[1]) * s // steps, c)
                put(px, py, c)
                prev = (px, py)
    raw = b"".join(b"\x00" + bytes(row) for row in img)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def plot(soak):
    per = {"rss_kb": {}, "fds": {}, "threads": {}}
    for t, unit, pid, rss, fds, th, _ in soak.samples:
        if not unit.startswith("tcpmap@") or not rss:
            continue  # per-connection relays, and a process that was gone by the time we read it
        short = unit.split(":")[-1].replace(".service", "")
        per["rss_kb"].setdefault(short, []).append((t, rss))
        per["fds"].setdefault(short, []).append((t, fds))
        per["threads"].setdefault(short, []).append((t, th))
    br = {"active": [(t, a or 0) for t, a, _ in soak.breaker_samples],
          "pending": [(t, p or 0) for t, _, p in soak.breaker_samples]}
    je = {"errors": list(soak.journal_errors)}
    series = [("RSS kB per threaded tcpmapd", per["rss_kb"]), ("open fds", per["fds"]),
              ("threads", per["threads"]), ("breaker slots in use", br), ("journal errors", je)]
    write_png(os.path.join(soak.args.out, "samples.png"), series)
    names = ["red", "blue", "green", "purple", "orange", "teal"]
    legend = []
    for title, lines in series:
        parts = []
        for j, (name, pts) in enumerate(sorted(lines.items())):
            if pts:
                parts.append(f"{names[j % len(names)]}={name} {pts[0][1]}->{pts[-1][1]} (max {max(y for _, y in pts)})")
        legend.append(f"  {title}: " + ", ".join(parts))
    return legend


# ---- main ---------------------------------------------------------------------------------


def service_figures(rows):
    out = {}
    for t, unit, pid, rss, fds, th, pipes in rows:
        if unit.startswith("tcpmap@"):
            out[unit] = (pid, rss, fds, th, pipes)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sandbox", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=3600)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--upstream-cert", required=True)
    p.add_argument("--upstream-key", required=True)
    p.add_argument("--mid-close", default="")
    p.add_argument("--pipe-pool-max", type=int, default=8, help="lib/relay.c's PIPE_POOL_MAX")
    p.add_argument("--faults", default="", help="the faults to inject, comma-separated (default: all of "
                   + ",".join(FAULTS) + "): to chase one that failed")
    p.add_argument("--write-config", action="store_true", help="print the initial config and exit")
    args = p.parse_args()
    unknown = set(args.faults.split(",")) - set(FAULTS) if args.faults else set()
    if unknown:
        p.error(f"unknown faults {sorted(unknown)}; known: {','.join(FAULTS)}")
    if args.write_config:
        ports = {k: int(v) for k, v in (kv.split("=") for kv in args.ports.split(","))}
        sys.stdout.write(config_text(ports))
        return 0

    # The hard bound on our life, whatever tcpmapd or systemd do.
    killer = threading.Timer(args.seconds + 600, lambda: os._exit(3))
    killer.daemon = True
    killer.start()

    soak = Soak(args)
    soak.broken_windows, soak.killed_units = [], []
    with open(os.path.join(args.out, "samples.tsv"), "w") as f:
        f.write("t_s\tphase\tunit\tpid\trss_kb\tfds\tthreads\tpipe_fds\tbreaker_active\tbreaker_pending\tjournal_errors\n")
    print(f"soak: seed {args.seed}, {args.seconds:.0f} s, ports {args.ports}", flush=True)

    soak.upstreams = {
        "A": Upstream(soak, "A", soak.ports["A"], "echo"),
        "B": Upstream(soak, "B", soak.ports["B"], "echo"),
        "E": Upstream(soak, "E", soak.ports["E"], "echo"),
        "S": Upstream(soak, "S", soak.ports["S"], "tls", soak.upstream_ctx),
        "P": Upstream(soak, "P", soak.ports["P"], "proxy"),
        "U": Upstream(soak, "U", soak.ports["U"], "echo"),
    }
    for u in soak.upstreams.values():
        u.start()

    # Warm up: one connection of each kind starts each service; then the idle baseline.
    warm = [soak.probe(k) for k in ("rr", "term", "orig", "pass", "proxy", "flap", "inetd")]
    bad = [f"{r.kind}:{r.outcome}" for r in warm if r.outcome != "ok"]
    if bad:
        soak.violation(f"warm-up connections failed: {bad}")
    time.sleep(1.5)
    baseline = service_figures(soak.sample("idle-before"))
    t_baseline = now() - soak.t_start
    if len(baseline) != 4:
        soak.violation(f"expected 4 threaded tcpmapd at the start, found {sorted(baseline)}")

    t_load = time.monotonic()
    end_at = t_load + args.seconds
    interval = max(5.0, min(60.0, args.seconds / 10))
    sample_every = max(3.0, min(10.0, args.seconds / 12))
    for kind, spec in KINDS.items():
        if "rate" in spec:
            soak.spawn(soak.rate_generator, kind)
        else:
            for slot in range(spec["streams"]):
                soak.spawn(soak.stream_generator, kind, slot)
    sampler = soak.spawn(soak.sample_loop, sample_every)
    # no fault in the last interval: each has its time to settle before the checks
    faults = soak.spawn(soak.fault_loop, interval, end_at - min(interval, 8.0))

    next_progress = t_load + 60
    while time.monotonic() < end_at:
        time.sleep(max(0.0, min(1.0, end_at - time.monotonic())))
        if time.monotonic() >= next_progress:
            next_progress += 60
            done = sum(1 for r in soak.records if r.outcome != "running")
            print(f"soak: {time.monotonic() - t_load:6.0f}s {done} connections done, "
                  f"{len(soak.violations)} violations so far", flush=True)
    soak.stopping.set()
    faults.join(timeout=90)
    sampler.join(timeout=30)
    # every connection has its own timeouts; give them all that and a margin
    deadline = time.monotonic() + OP_TIMEOUT * 2 + 10
    for t in list(soak.threads):
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    hung = [r for r in soak.records if r.outcome == "running"]
    for r in hung:
        r.outcome = "hung"

    # ---- the verdicts
    for r in soak.records:
        r.exposed = exposed_by(soak, r)
    per_kind = {}
    for r in soak.records:
        k = per_kind.setdefault(r.kind, dict(n=0, ok=0, legit=0, failed=0, sent=0, recv=0))
        k["n"] += 1
        k["sent"] += r.sent
        k["recv"] += r.recv
        if r.outcome == "ok":
            k["ok"] += 1
        elif r.exposed and not r.outcome.startswith(("mismatch", "timeout", "hung")):
            k["legit"] += 1
        else:
            k["failed"] += 1
            soak.violation(f"{r.kind} connection from port {r.lport} ({r.t0 - soak.t_start:.1f}s-"
                           f"{(r.t1 or now()) - soak.t_start:.1f}s): {r.outcome}, {r.recv}/{r.sent} bytes back"
                           + (f" (exposed: {r.exposed})" if r.exposed else ""))

    # breaker slots back to 0 once the clients are done
    active = pending = None
    for _ in range(50):
        active, pending, raw = soak.breaker_totals()
        if active == 0 and pending == 0:
            break
        time.sleep(0.2)
    if active != 0 or pending != 0:
        soak.violation(f"breaker slots left at the end: active={active} pending={pending}: {raw}")
        # which service holds them (the upstream names it), and in which state its sockets are
        unit_of = {"A": "C", "B": "C", "E": "T", "S": "T", "P": "X", "U": "F"}
        held = {c.get("service") for c in raw.get("clusters", []) if c.get("active") or c.get("pending")} \
            if isinstance(raw, dict) else set()
        for up, key in unit_of.items():
            if f"127.0.0.1:{soak.ports[up]}" in held:
                try:
                    soak.diagnose("breaker slots left at the end", key, 0, up)
                except Exception as e:  # diagnostics must not change the verdict
                    print(f"soak: diag: failed: {e!r}", flush=True)

    # fds and threads back to the idle baseline; RSS within 10 % of its first sample under load
    time.sleep(1.0)
    final = service_figures(soak.sample("idle-after"))
    first_load = {}
    for t, unit, pid, rss, fds, th, _ in soak.samples:
        if unit.startswith("tcpmap@") and t > t_baseline and unit not in first_load:
            first_load[unit] = rss
    growth = []
    for unit, (pid, rss, fds, th, pipes) in sorted(final.items()):
        b = baseline.get(unit)
        if not b:
            soak.violation(f"{unit}: no baseline")
            continue
        warm_rss = first_load.get(unit, b[1])
        growth.append(f"{unit}: pid {b[0]}->{pid} fds {b[2]}->{fds} (pipes {b[4]}->{pipes}) threads {b[3]}->{th} "
                      f"rss {b[1]}->{warm_rss} (first under load)->{rss} kB")
        # Each relay thread keeps up to PIPE_POOL_MAX empty pipes for reuse (lib/relay.c):
        # those may stay; every other fd must be back exactly.
        if fds - pipes != b[2] - b[4]:
            soak.violation(f"{unit}: {fds - pipes} fds other than pipes open at the end, {b[2] - b[4]} at the start")
        if pipes > 2 * args.pipe_pool_max * th:
            soak.violation(f"{unit}: {pipes} pipe fds at the end, over the pools' {2 * args.pipe_pool_max} for each of {th} threads")
        if th != b[3]:
            soak.violation(f"{unit}: {th} threads at the end, {b[3]} at the start")
        if rss > warm_rss * 1.10:
            soak.violation(f"{unit}: RSS {rss} kB at the end, over 110 % of {warm_rss} kB (first sample under load)")
    leftover = [u for u in final if u.startswith("tcpmap-inetd@")]
    if leftover:
        soak.violation(f"per-connection relays still running at the end: {leftover}")

    failed = soak.sb.run("systemctl", "list-units", "--failed", "--no-legend", "--plain").stdout.strip()
    if failed:
        soak.violation(f"failed units: {failed}")

    close_bad, n_close = check_close_events(soak, soak.records)
    for b in close_bad[:30]:
        soak.violation(f"access log: {b}")
    if len(close_bad) > 30:
        soak.violation(f"access log: ... and {len(close_bad) - 30} more")
    unexpected, expected_errors = journal_errors(soak)
    for u in unexpected[:20]:
        soak.violation(f"journal error: {u}")

    soak.finished.set()
    legend = []
    try:
        legend = plot(soak)
    except Exception as e:  # the plot is for people; its failure must not hide the verdict
        print(f"soak: no plot: {e}")
    with open(os.path.join(args.out, "connections.tsv"), "w") as f:
        f.write("id\tkind\tmapping\tclient_port\tstart_s\tend_s\tsent\trecv\tsha256_sent\tsha256_recv\toutcome\texposed\n")
        for r in soak.records:
            f.write(f"{r.id}\t{r.kind}\t{r.mapping}\t{r.lport}\t{r.t0 - soak.t_start:.3f}\t"
                    f"{(r.t1 or 0) - soak.t_start:.3f}\t{r.sent}\t{r.recv}\t{r.sha_sent.hexdigest()[:16]}\t"
                    f"{r.sha_recv.hexdigest()[:16]}\t{r.outcome}\t{r.exposed or '-'}\n")

    # ---- the summary
    lines = [f"seed {args.seed}, {args.seconds:.0f} s of load, faults every {interval:.0f} s, samples every {sample_every:.0f} s"]
    lines.append(f"{'kind':<14}{'conns':>7}{'ok':>7}{'legit':>7}{'failed':>7}{'MiB sent':>10}{'MiB back':>10}")
    tot = dict(n=0, ok=0, legit=0, failed=0, sent=0, recv=0)
    for kind in list(KINDS) + ["slowloris", "vanish"]:
        k = per_kind.get(kind)
        if not k:
            continue
        for key in tot:
            tot[key] += k[key]
        lines.append(f"{kind:<14}{k['n']:>7}{k['ok']:>7}{k['legit']:>7}{k['failed']:>7}"
                     f"{k['sent'] / 2**20:>10.2f}{k['recv'] / 2**20:>10.2f}")
    lines.append(f"{'total':<14}{tot['n']:>7}{tot['ok']:>7}{tot['legit']:>7}{tot['failed']:>7}"
                 f"{tot['sent'] / 2**20:>10.2f}{tot['recv'] / 2**20:>10.2f}")
    fcount = {}
    for _, kind, _ in soak.faults:
        fcount[kind] = fcount.get(kind, 0) + 1
    lines.append("faults: " + ", ".join(f"{k} {fcount.get(k, 0)}" for k in FAULTS) + f" ({len(soak.faults)} in all)")
    lines.append(f"access log: {n_close} close entries; journal errors: {expected_errors} expected (broken config, "
                 f"killed relays), {len(unexpected)} unexpected")
    lines.append(f"PROXY headers checked by the upstream: {soak.counters.get('proxy_headers_checked', 0)}")
    lines.append(f"breaker at the end: active={active} pending={pending}")
    lines.extend(growth)
    lines.append(f"samples.png, one panel each, top to bottom, start->end (max); the x axis is time:")
    lines.extend(legend)
    extra = {k: v for k, v in soak.counters.items() if k != "proxy_headers_checked"}
    if extra:
        lines.append(f"counters: {extra}")
    lines.append(f"violations: {len(soak.violations)}")
    lines.extend("  " + v for v in soak.violations[:60])
    lines.append("FAIL" if soak.violations else "OK")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    sys.stdout.flush()
    for u in soak.upstreams.values():
        u.kill()
    return 1 if soak.violations else 0


if __name__ == "__main__":
    sys.exit(main())
