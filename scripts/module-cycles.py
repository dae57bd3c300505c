#!/usr/bin/env python3
"""Import circles between the modules of one crate: prints each strongly connected group of
files (a group of 2+ files that import each other, directly or through others).
usage: scripts/module-cycles.py crates/kura-proxy/src"""
import os, re, sys

root = sys.argv[1]
mods = {}
for dp, _, files in os.walk(root):
    for f in files:
        if f.endswith(".rs"):
            path = os.path.join(dp, f)
            rel = os.path.relpath(path, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            mods["::".join(parts)] = path

def resolve(name):
    # the longest module path that exists
    parts = name.split("::")
    while parts:
        n = "::".join(parts)
        if n in mods:
            return n
        parts = parts[:-1]
    return None

edges = {m: set() for m in mods}
for m, path in mods.items():
    src = open(path).read()
    # strip test modules
    src = re.split(r"#\[cfg\(test\)\]\s*mod tests", src)[0]
    for used in re.findall(r"crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", src):
        t = resolve(used)
        if t and t != m and t != "":
            edges[m].add(t)
    for used in re.findall(r"use crate::\{([^}]*)\}", src):
        for u in used.split(","):
            t = resolve(u.strip().split("::{")[0].split(" as ")[0])
            if t and t != m:
                edges[m].add(t)

index, low, stack, on, out = {}, {}, [], set(), []
counter = [0]
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            out.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in mods:
    if v not in index:
        strong(v)
for c in sorted(out, key=len, reverse=True):
    print(len(c), " ".join(c))
if not out:
    print("no import circles")
