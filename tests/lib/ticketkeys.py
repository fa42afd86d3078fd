#!/usr/bin/env python3
"""ticketkeys.py FILE [LOG...] — the key bytes of a tcpmap ticket-key table (lib/ticketkeys.c),
to check that no log holds them. Reads the layout from the table's own header. With LOGs,
prints each log in which a key's bytes appear raw or as hex (either case) and exits 1;
without, prints how many keys the table holds. Never prints a key.

ticketkeys.py --core FILE CORE MARKER... — whether a core file of a tcpmap process holds a
key: looks for every secret field (the AES and the HMAC key, each whole) of every slot in
use, raw, as hex and as HMAC pads it), and for each MARKER (a known string that is no secret,
such as a TLSContext's name), which must be there: it proves the core holds the heap the scan
reads. Prints the core's size and the counts; exits 1 when a key is found or a marker is not.
--core-with-keys is the control, a core that includes the keys mapping: there every secret
field must be found, which proves the scan would see one."""
import struct
import sys


def slots(path):
    """(name, aes_key, hmac_key) of every slot in use."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, size, key_size, n_keys, mutex_size, keys_offset = struct.unpack_from("<8s6I", data)
    assert magic == b"TCPMAPTK", magic
    out = []
    for i in range(n_keys):
        k = data[keys_offset + i * key_size:keys_offset + (i + 1) * key_size]
        (created,) = struct.unpack_from("<q", k, 80)
        if created:
            out.append((k[0:16], k[16:48], k[48:80]))
    return out


def keys(path):
    return [field for slot in slots(path) for field in slot]


def copies(secret):
    """The forms a copy of one secret field could take in memory: raw, as hex, and (HMAC
    keys are at most a block, so this is how HMAC pads them) XORed with ipad and opad."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode(),
            bytes(b ^ 0x36 for b in secret), bytes(b ^ 0x5C for b in secret)]


CHUNK = 1 << 20
OVERLAP = 64  # the longest needle: a 32-byte key as hex


def core_chunks(f):
    """The core in overlapping 1 MiB chunks, leaving out those all zero: gdb writes a glibc
    arena's PROT_NONE reserve out as zeros, most of the file, and no key is all zero."""
    zero = bytes(CHUNK + OVERLAP)
    pos = 0
    while True:
        f.seek(pos)
        chunk = f.read(CHUNK + OVERLAP)
        if chunk != zero[:len(chunk)]:
            yield chunk
        if len(chunk) <= OVERLAP:
            return
        pos += CHUNK


def copies(secret):
    """The forms a copy of one secret field could take in memory: raw, as hex, and (HMAC
    keys are at most a block, so this is how HMAC pads them) XORed with ipad and opad."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode(),
            bytes(b ^ 0x36 for b in secret), bytes(b ^ 0x5C for b in secret)]


def core_pieces(f):
    """The parts of an ELF core worth reading: all of it but the segments of mappings the
    process could not read (PROT_NONE: gdb writes a glibc arena's reserve out as zeros, most
    of the file). The notes stay in: they hold the threads' registers."""
    head = f.read(64)
    assert head[:4] == b"\x7fELF" and head[4] == 2, "a 64-bit ELF core"
    phoff, = struct.unpack_from("<Q", head, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    skip = []
    for i in range(phnum):
        p_type, p_flags, p_offset = struct.unpack_from("<IIQ", table, i * phentsize)
        p_filesz, = struct.unpack_from("<Q", table, i * phentsize + 32)
        if p_type == 1 and not p_flags & 4:  # PT_LOAD without PF_R
            skip.append((p_offset, p_offset + p_filesz))
    f.seek(0, 2)
    pos, pieces = 0, []
    for start, end in sorted(skip) + [(f.tell(), f.tell())]:
        if start > pos:
            f.seek(pos)
            pieces.append(f.read(start - pos))
        pos = max(pos, end)
    return pieces


def copies(secret, hmac):
    """The forms a copy of one secret field could take in memory: raw and as hex, and an
    HMAC key also as HMAC pads it to a block (XORed with ipad and opad)."""
    out = [secret, secret.hex().encode()]
    if hmac:
        out += [bytes(b ^ 0x36 for b in secret), bytes(b ^ 0x5C for b in secret)]
    return out


def scan_core(keyfile, core, markers, want_keys):
    # the name is no secret (every ticket carries it): only the AES and the HMAC key count
    secrets = [(field, field is hmac) for _, aes, hmac in slots(keyfile) for field in (aes, hmac)]
    with open(core, "rb") as f:
        pieces = list(core_chunks(f))
        size = f.seek(0, 2)
    print(f"core: {size / (1 << 20):.1f} MiB; not all zero: {len(pieces)} MiB")
    bad = not secrets
    for m in markers:
        n = sum(p.count(m.encode()) for p in pieces)
        print(f"marker {m!r}: found {n} times")
        bad |= n == 0
    found = sum(1 for s, hmac in secrets if any(c in p for c in copies(s, hmac) for p in pieces))
    print(f"key slots in use: {len(secrets) // 2}; secret fields: {len(secrets)}; "
          f"found in the core: {found}")
    bad |= found != (len(secrets) if want_keys else 0)
    return int(bad)


def main():
    if sys.argv[1] in ("--core", "--core-with-keys"):
        return scan_core(sys.argv[2], sys.argv[3], sys.argv[4:], sys.argv[1] == "--core-with-keys")
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
