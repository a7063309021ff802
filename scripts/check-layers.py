#!/usr/bin/env python3
"""Checks the layering of src/ (see ../shared/ARCHITECTURE.md and the README's
development section): no file-level import cycles, and no file importing from
a higher floor than its own.

    scripts/check-layers.py [--graph]

Edges come from `crate::…` and `super::…` paths in non-test code (doc comments
and `#[cfg(test)]` sections at the end of a file are skipped); a path that
lands on a re-export (`pub use child::Item`) is followed to the file that
defines the item. Exits 1 and names each offending edge or cycle.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

# Lowest floor first. A file may import its own floor or any floor below it.
FLOORS = [
    ("values: digest", ["model/digest.rs"]),
    ("errors", ["error/"]),
    ("values", ["model/"]),
    ("readers and files", ["integrity.rs", "atomic.rs", "lock.rs", "progress.rs", "fs.rs", "tar_out.rs"]),
    ("traits: source, sink, plan", ["source.rs", "sink.rs", "plan.rs"]),
    ("formats", ["oci/", "docker_archive/", "registry/", "bundle/"]),
    ("servers", ["serve/"]),
    ("orchestration", ["ops/"]),
    ("command line", ["cli/", "main.rs"]),
]


def floor_of(rel):
    for i, (_, prefixes) in enumerate(FLOORS):
        if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in prefixes):
            return i
    return None


def module_path(rel):
    """src-relative file → its module path as a list (['bundle', 'reader'])."""
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts == ["lib"] or parts == ["main"]:
        return []
    return parts


def file_of(mod):
    """Module path → src-relative file, or None."""
    if not mod:
        return "lib.rs"
    for cand in ("/".join(mod) + ".rs", "/".join(mod) + "/mod.rs"):
        if (SRC / cand).exists():
            return cand
    return None


def code_lines(text):
    out = []
    for line in text.splitlines():
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            break
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        out.append(line.split("//")[0] if "\"" not in line else line)
    return out


def expand_use(path):
    """'a::{b, c::d}' → ['a::b', 'a::c::d'] (one level of braces)."""
    m = re.match(r"(.*?)::\{(.*)\}$", path)
    if not m:
        return [path]
    base, inner = m.groups()
    return [f"{base}::{x.strip()}" for x in inner.split(",") if x.strip()]


PATH_RE = re.compile(r"\b(crate|super)((?:::\w+)+(?:::\{[^{}]*\})?)")


def raw_paths(rel, lines):
    """Absolute module paths (with the item as last element) used by a file."""
    here = module_path(rel)
    is_mod = rel.endswith("mod.rs") or rel == "lib.rs"
    for line in lines:
        if is_mod and re.match(r"\s*(pub(\([^)]*\))?\s+)?(use|mod)\b", line) and "pub" in line.split("use")[0]:
            continue  # a re-export is not a dependency of the parent
        for root, rest in PATH_RE.findall(line):
            for p in expand_use(rest.lstrip(":")):
                segs = [s for s in p.split("::") if s and s != "self"]
                # `super` from a/b.rs is module a; from a/mod.rs, a's parent.
                base = [] if root == "crate" else here[:-1]
                yield base + segs


def resolve(segs, seen=0):
    """Longest module prefix that is a file; follows re-exports of the item."""
    for n in range(len(segs), -1, -1):
        f = file_of(segs[:n])
        if f is None:
            continue
        rest = segs[n:]
        if rest and seen < 5:
            text = (SRC / f).read_text()
            item = re.escape(rest[0])
            m = re.search(
                r"pub(?:\([^)]*\))?\s+use\s+((?:crate::)?[\w:]+)::(?:\{[^}]*\b" + item + r"\b[^}]*\}|" + item + r")\s*;",
                text,
            )
            if m:
                target = m.group(1)
                if target.startswith("crate::"):
                    base = target[len("crate::"):].split("::")
                else:
                    base = module_path(f) + target.split("::")
                return resolve(base + [rest[0]], seen + 1)
        return f
    return None


def main():
    files = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.rs"))
    edges = {}
    for rel in files:
        lines = code_lines((SRC / rel).read_text())
        targets = set()
        for segs in raw_paths(rel, lines):
            t = resolve(segs)
            if t and t != rel and t != "lib.rs":
                targets.add(t)
        edges[rel] = targets

    problems = []
    for a in files:
        fa = floor_of(a)
        for b in sorted(edges[a]):
            fb = floor_of(b)
            if fa is not None and fb is not None and fb > fa:
                problems.append(f"{a} ({FLOORS[fa][0]}) imports {b} ({FLOORS[fb][0]}): a higher floor")
    for a in files:
        if a not in ("lib.rs",) and floor_of(a) is None:
            problems.append(f"{a} is on no floor: add it to FLOORS in scripts/check-layers.py")

    # Cycles: strongly connected components (Tarjan) of more than one file.
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in files:
        if v not in index:
            strong(v)
    for comp in sccs:
        inner = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
        problems.append("import cycle: " + "; ".join(inner))

    if "--graph" in sys.argv:
        for a in files:
            print(f"{a}: {' '.join(sorted(edges[a]))}")
    n_edges = sum(len(v) for v in edges.values())
    if problems:
        print("layering problems:")
        for p in problems:
            print("  " + p)
        return 1
    print(f"layers: {len(files)} files, {n_edges} imports, no cycles, nothing imports from a higher floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
