#!/usr/bin/env python3
"""ticketkeys.py FILE [LOG...] — the key bytes of a tcpmap ticket-key table (lib/ticketkeys.c),
to check that no log holds them. Reads the layout from the table's own header. With LOGs,
prints each log in which a key's bytes appear raw or as hex (either case) and exits 1;
without, prints how many keys the table holds. Never prints a key."""
import struct
import sys


def keys(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, version, size, key_size, n_keys, mutex_size, keys_offset = struct.unpack_from("<8s6I", data)
    assert magic == b"TCPMAPTK", magic
    out = []
    for i in range(n_keys):
        k = data[keys_offset + i * key_size:keys_offset + (i + 1) * key_size]
        (created,) = struct.unpack_from("<q", k, 80)
        if created:
            out.extend([k[0:16], k[16:48], k[48:80]])
    return out


def main():
    ks = keys(sys.argv[1])
    if len(sys.argv) == 2:
        print(len(ks) // 3)
        return 0
    bad = 0
    for log in sys.argv[2:]:
        with open(log, "rb") as f:
            text = f.read()
        low = text.lower()
        for k in ks:
            # any 8-byte piece, raw or in hex: a partial dump is a leak too
            for j in range(0, len(k) - 7, 4):
                piece = k[j:j + 8]
                if piece in text or piece.hex().encode() in low:
                    print(f"{log}: holds key bytes")
                    bad = 1
                    break
    return bad


if __name__ == "__main__":
    sys.exit(main())
