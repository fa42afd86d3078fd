#!/usr/bin/env python3
"""dns_server.py — a tiny DNS server for the resolver tests: UDP on one address, A records
only, each name answering on its own schedule.

    --name NAME=DELAY     answer NAME with A ADDRESS after DELAY seconds ("never": drop)

Every other query, and every query for another type, is answered at once with no record
(NOERROR, empty). It logs one line per query and per answer to --log, with the time in ms
since it started, so a test can show which lookup was asked when. It must never hang a test:
--max-seconds bounds its life, and it only listens where it is told (a test's namespace).
"""

import argparse
import socket
import struct
import sys
import threading
import time


def parse_query(data):
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    pos, labels = 12, []
    while data[pos]:
        n = data[pos]
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype, qclass = struct.unpack("!HH", data[pos + 1:pos + 5])
    question = data[12:pos + 5]
    return qid, flags, ".".join(labels).lower(), qtype, question


def answer(qid, flags, question, address):
    rd = flags & 0x0100
    ancount = 1 if address else 0
    head = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080, 1, ancount, 0, 0)
    body = question
    if address:
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
    return head + body


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--name", action="append", default=[], help="NAME=DELAY_SECONDS|never")
    p.add_argument("--log", required=True)
    p.add_argument("--ready-file")
    p.add_argument("--max-seconds", type=float, default=120)
    args = p.parse_args()

    delays = {}
    for spec in args.name:
        name, delay = spec.split("=", 1)
        delays[name.lower()] = None if delay == "never" else float(delay)

    start = time.monotonic()
    lock = threading.Lock()
    log = open(args.log, "a", buffering=1)

    def note(text):
        with lock:
            log.write("t_ms=%d %s\n" % ((time.monotonic() - start) * 1000, text))

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.host, args.port))
    s.settimeout(0.5)
    if args.ready_file:
        open(args.ready_file, "w").close()

    def reply(peer, data, name, delay):
        if delay:
            time.sleep(delay)
        s.sendto(data, peer)
        note("answer name=%s after_ms=%d" % (name, (delay or 0) * 1000))

    while time.monotonic() - start < args.max_seconds:
        try:
            data, peer = s.recvfrom(4096)
        except socket.timeout:
            continue
        try:
            qid, flags, name, qtype, question = parse_query(data)
        except (IndexError, struct.error):
            continue
        known = name in delays
        note("query name=%s type=%d" % (name, qtype))
        if known and delays[name] is None:
            continue  # never answered
        address = args.address if known and qtype == 1 else None
        delay = delays.get(name) if known else 0
        threading.Thread(target=reply, args=(peer, answer(qid, flags, question, address),
                                             name, delay), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
