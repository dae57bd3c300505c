#!/usr/bin/env python3
"""Splits a perf profile of one proxy into where its CPU goes, in µs per request.

usage: profile_split.py PERF_DATA TOTAL_US_PER_REQUEST

Reads `perf report --sort dso,sym` of PERF_DATA, puts each sample's symbol into a part
(the kernel, the proxy's own code, the libraries it is built on) and scales each part's share
of the samples by the proxy's measured CPU per request (bench/cpu.sh). Prints one line of
parts, then the proxy's ten hottest user-space symbols. Used by `PROFILE=1 bench/cpu.sh`.
"""
import re
import subprocess
import sys

PARTS = [
    # (part, pattern on the symbol or the object it is in), first match wins
    ("kernel", r"^\[kernel"),
    ("libc", r"^libc[.-]"),
    ("openssl", r"^lib(ssl|crypto)"),
    ("nginx", r"^nginx "),
    ("kura", r"kura_"),
    ("hyper/h2", r"\b(hyper|h2|hyper_util)::"),
    ("tokio", r"\b(tokio|tokio_util|mio)::"),
    ("http types", r"\b(http|httparse|bytes|http_body|http_body_util)::"),
    ("tls", r"\b(rustls|tokio_rustls|aws_lc|aws_lc_rs)|aes_|sha(256|512)_|x25519|fiat_|ChaCha|gcm_"),
    ("allocator", r"\b_?mi_|mimalloc"),
    ("tracing", r"\b(tracing|tracing_core|tracing_subscriber|sharded_slab)::"),
    ("cache index", r"\b(moka|crossbeam_\w+|quanta)::"),
]


def part(dso, sym):
    text = f"{dso} {sym}"
    for name, pat in PARTS:
        if re.search(pat, text):
            return name
    return "other"


def main():
    data, total = sys.argv[1], float(sys.argv[2])
    out = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "-g", "none",
         "--percent-limit", "0", "--stdio"],
        capture_output=True, text=True, check=True).stdout
    parts, syms = {}, []
    for line in out.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        share, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        p = part(dso, sym)
        parts[p] = parts.get(p, 0.0) + share
        if p != "kernel":
            syms.append((share, sym))
    counted = sum(parts.values())
    if not counted:
        print("no samples")
        print("-")
        return
    print(" · ".join(f"{p} {v / counted * total:.1f}"
                     for p, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v / counted * total >= 0.1))
    syms.sort(reverse=True)
    print("; ".join(f"{s[:70]} {v / counted * total:.2f}" for v, s in syms[:10]))


if __name__ == "__main__":
    main()
