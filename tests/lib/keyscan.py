#!/usr/bin/env python3
"""keyscan.py PID KEYFILE — where a running process holds copies of a private key.

Reads every readable mapping of PID through /proc/PID/mem (root only: tcpmapd is not
dumpable) and looks for 24-byte windows of the key: its PEM text (base64 lines of KEYFILE),
its private numbers big-endian (as DER holds them) and little-endian (as a BIGNUM's limbs
hold them on x86-64). A mapping whose smaps says Locked > 0 is OpenSSL's secure heap
(mlock'ed, MADV_DONTDUMP). Prints one line of JSON:
  {"locked_kib": N, "outside": {"pem": n, "der": n, "d_le": n, "p_le": n, ...},
   "inside": {...}}
counting windows found outside and inside locked memory. The public modulus and exponent
are never searched: they are in the certificate anyway."""
import json
import re
import sys

from cryptography.hazmat.primitives.serialization import load_pem_private_key

WINDOW = 24


def windows(data, step=WINDOW):
    return [data[i:i + WINDOW] for i in range(0, len(data) - WINDOW + 1, step)]


def main():
    pid, keyfile = sys.argv[1], sys.argv[2]
    pem = open(keyfile, "rb").read()
    key = load_pem_private_key(pem, password=None)
    priv = key.private_numbers()
    nums = {"d": priv.d, "p": priv.p, "q": priv.q, "dmp1": priv.dmp1, "dmq1": priv.dmq1,
            "iqmp": priv.iqmp}
    needles = {"pem": [l.strip() for l in pem.splitlines() if len(l.strip()) == 64]}
    needles["pem"] = [w for l in needles["pem"] for w in windows(l, 40)]
    der = []
    for name, v in nums.items():
        be = v.to_bytes((v.bit_length() + 7) // 8, "big")
        der += windows(be, 32)
        needles[name + "_le"] = windows(be[::-1], 32)
    needles["der"] = der

    outside = {k: 0 for k in needles}
    inside = {k: 0 for k in needles}
    locked_kib = 0
    regions = []
    cur = None
    for line in open(f"/proc/{pid}/smaps"):
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            cur = [int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4), 0]
            regions.append(cur)
        elif line.startswith("Locked:") and cur:
            cur[4] = int(line.split()[1])
    with open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for start, end, perms, path, locked in regions:
            if "r" not in perms or path in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            locked_kib += locked
            where = inside if locked > 0 else outside
            for k, ws in needles.items():
                for w in ws:
                    where[k] += data.count(w)
    print(json.dumps({"locked_kib": locked_kib, "outside": outside, "inside": inside}))


main()
