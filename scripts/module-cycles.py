#!/usr/bin/env python3
"""Import circles between the modules of each crate of the workspace.

For every crate (`src/` of the root package and of each `crates/*`), each source
file is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`). A module *uses* another
when it names it in a path: `crate::x::y`, `super::x` (also through a name the
parent re-exports with `pub use child::...`). Sibling modules (children of the same
parent, the crate's top-level modules included) are joined by an edge when anything
inside one uses anything inside the other; a strongly connected component of more
than one sibling is an import circle. Children naming their parent's own items
(`super::Action` defined in `actions/mod.rs`) and parents naming their children are
the module tree, not circles.

Usage: scripts/module-cycles.py [ROOT]   (prints the graph; exit 1 if any circle)
"""
import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self)::((?:[A-Za-z_][A-Za-z0-9_]*::)*)\{([^;]*)\};", re.S)
PUB_USE_RE = re.compile(r"pub(?:\([a-z]+\))?\s+use\s+([a-z_][a-z0-9_]*)::(?:\{([^;]*)\}|([A-Za-z_][A-Za-z0-9_]*))\s*;", re.S)


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def crate_graph(src):
    files = {module_of(src, p): strip_comments(p.read_text()) for p in src.rglob("*.rs")}
    modules = set(files)
    # Names a module re-exports from one of its children: parent -> {name: child}.
    reexports = {}
    for m, text in files.items():
        for child, group, single in PUB_USE_RE.findall(text):
            if m + (child,) not in modules:
                continue
            names = [single] if single else re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?:\s*,|\s*$)", group)
            for n in names:
                reexports.setdefault(m, {})[n] = m + (child,)

    def resolve(m, head, rest):
        base = {"crate": (), "self": m, "super": m[:-1]}[head]
        segs = [s for s in rest.split("::") if s]
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
        target = base
        for s in segs:
            if target + (s,) in modules:
                target = target + (s,)
            else:
                target = reexports.get(target, {}).get(s, target)
                break
        return target

    uses = {m: set() for m in modules}
    for m, text in files.items():
        for head, rest in PATH_RE.findall(text):
            uses[m].add(resolve(m, head, rest))
        for head, prefix, group in USE_GROUP_RE.findall(text):
            for item in re.split(r",", group):
                item = item.strip().split(" as ")[0].strip()
                if item and item != "self" and "{" not in item:
                    uses[m].add(resolve(m, head, prefix + item))
    return modules, uses


def sibling_circles(modules, uses):
    circles, edges_by_parent = [], {}
    for parent in sorted({m[:-1] for m in modules if m}):
        kids = sorted(m for m in modules if len(m) == len(parent) + 1 and m[:-1] == parent)
        edges = {k: set() for k in kids}
        for a in kids:
            for m in modules:
                if m[: len(a)] != a:
                    continue
                for t in uses[m]:
                    for b in kids:
                        if b != a and t[: len(b)] == b:
                            edges[a].add(b)
        edges_by_parent[parent] = edges
        circles += [c for c in sccs(edges) if len(c) > 1]
    return circles, edges_by_parent


def sccs(edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
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
            out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    srcs = [ROOT / "src"] + sorted(p / "src" for p in (ROOT / "crates").glob("*") if (p / "src").is_dir())
    found = False
    for src in srcs:
        name = src.parent.name if src.parent != ROOT else "msgraph-connector"
        modules, uses = crate_graph(src)
        circles, edges_by_parent = sibling_circles(modules, uses)
        print(f"== {name}")
        for parent, edges in edges_by_parent.items():
            for a in sorted(edges):
                if edges[a]:
                    print(f"  {'::'.join(a)} -> {', '.join('::'.join(b) for b in sorted(edges[a]))}")
        for c in circles:
            found = True
            print(f"  CIRCLE: {' <-> '.join('::'.join(m) for m in c)}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
