#!/usr/bin/env python3
"""genscale.py — a generated config for the scale tests: N listeners on 127.0.0.1, each with
a catch-all group and a host group of M mappings each, every mapping to its own upstream
(127.1.X.Y:9, which nothing needs to answer). Listed "relay" listeners route their
catch-all group to a real upstream (weight 100; the group's other mappings weight 0).

    genscale.py OUT.yaml --ports-file PORTS [--listeners N] [--per-group M]
                [--extra K] [--relay INDEX=HOST:PORT ...]

--ports-file holds the listener ports, one a line; it is written (free ports of 3000-4999
and 8000-8999, outside the ephemeral range) when it does not exist, and reused when it does, so a reload
config keeps the listeners. --extra adds K more mappings to the host groups, in turn. It
writes only OUT and the ports file, and binds nothing but 127.0.0.1 for an instant.
"""
import argparse
import os
import socket


# Outside the kernel's ephemeral range (a client socket could take a port there between our
# check and tcpmapd's bind) and outside the ranges the other suites pick from.
CANDIDATES = list(range(3000, 5000)) + list(range(8000, 9000))


def ephemeral():
    try:
        lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    return lo, hi


def free_ports(n):
    lo, hi = ephemeral()
    ports = []
    for p in CANDIDATES:
        if len(ports) == n:
            break
        if lo <= p <= hi:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        ports.append(p)
    if len(ports) < n:
        raise SystemExit(f"genscale: only {len(ports)} free ports of {n} wanted")
    return ports


def mapping(out, name, port, service, host=None, weight=None):
    out.append("---\napiVersion: getambassador.io/v2\nkind: TCPMapping\n"
               f"metadata:\n  name: {name}\nspec:\n  port: {port}\n"
               f"  address: 127.0.0.1\n  service: \"{service}\"\n")
    if host:
        out.append(f"  host: {host}\n  tls_passthrough: true\n")
    if weight is not None:
        out.append(f"  weight: {weight}\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--ports-file", required=True)
    p.add_argument("--listeners", type=int, default=1000)
    p.add_argument("--per-group", type=int, default=5)
    p.add_argument("--extra", type=int, default=0)
    p.add_argument("--relay", action="append", default=[])
    a = p.parse_args()

    if os.path.exists(a.ports_file):
        with open(a.ports_file) as f:
            ports = [int(x) for x in f.read().split()][: a.listeners]
    else:
        ports = free_ports(a.listeners)
        with open(a.ports_file, "w") as f:
            f.write("\n".join(map(str, ports)) + "\n")
    relay = {}
    for r in a.relay:
        idx, target = r.split("=", 1)
        relay[int(idx)] = target

    out, k = [], 0

    def upstream():
        nonlocal k
        k += 1
        return f"127.1.{k >> 8}.{k & 255}:9"

    for i, port in enumerate(ports):
        for j in range(a.per_group):
            if i in relay:
                mapping(out, f"m{i}-c{j}", port, relay[i] if j == 0 else upstream(),
                        weight=100 if j == 0 else 0)
            else:
                mapping(out, f"m{i}-c{j}", port, upstream())
        for j in range(a.per_group):
            mapping(out, f"m{i}-h{j}", port, upstream(), host=f"h{i}.example.com")
    for e in range(a.extra):
        i = e % len(ports)
        mapping(out, f"m{i}-x{e // len(ports)}", ports[i], upstream(), host=f"h{i}.example.com")
    with open(a.out, "w") as f:
        f.write("".join(out))


if __name__ == "__main__":
    main()
