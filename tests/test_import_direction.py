"""The house has one direction: recipe -> core -> targets -> benchmarks as data flows,
imports pointing back. Every import counts, at the top of a module or inside a function:
a lazy import is still a dependency.

- the core (compressor/ outside compressor/flows/) imports neither targets/, benchmarks/
  nor compressor.flows; compressor/config/ imports only itself, errors and third parties;
- targets/ imports neither benchmarks/ nor compressor.flows;
- benchmarks/ outside its suite imports no compressor.flows (the suite is a user of flows);
- no circle of imports between modules, anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compressor", "targets", "benchmarks")
ENTRY_POINTS = {"compressor.__main__"}  # `python -m compressor`: it runs the CLI and nothing imports it


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (a package's __init__ for a package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import mod` imports the submodule when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for n in names:
            target = _resolve(n)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _is_core(m: str) -> bool:
    return m.split(".")[0] == "compressor" and not m.startswith("compressor.flows") and m not in ENTRY_POINTS


def _against_flow(m: str, dep: str) -> str | None:
    """The rule that `m` importing `dep` breaks, or None."""
    home, there = m.split(".")[0], dep.split(".")[0]
    flows = dep == "compressor.flows" or dep.startswith("compressor.flows.")
    if _is_core(m):
        if there in ("targets", "benchmarks") or flows:
            return "the core imports no targets/, benchmarks/ or compressor.flows"
        if m.startswith("compressor.config") and not (dep.startswith("compressor.config") or dep == "compressor.errors"):
            return "compressor/config is a leaf: it imports only itself and compressor.errors"
    if home == "targets" and (there == "benchmarks" or flows):
        return "targets/ imports neither benchmarks/ nor compressor.flows"
    if home == "benchmarks" and flows and not m.startswith("benchmarks.suite"):
        return "benchmarks/ (outside its suite) imports no compressor.flows"
    return None


def test_imports_follow_the_flow():
    wrong = [f"{m} -> {dep}: {rule}" for m, deps in sorted(GRAPH.items()) for dep in sorted(deps)
             if (rule := _against_flow(m, dep))]
    assert not wrong, "\n".join(wrong)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ importing its own submodules is no circle; drop those edges."""
    return {m: {d for d in deps if not (d.startswith(m + ".") and MODULES[m].name == "__init__.py")}
            for m, deps in graph.items()}


def test_no_import_circles():
    circles = _circles(_package_edges(GRAPH))
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_checks_can_fail():
    """The rules and the circle finder catch what they are meant to (on made-up graphs)."""
    assert _against_flow("compressor.model", "targets.base")
    assert _against_flow("compressor.config.recipe", "compressor.data")
    assert _against_flow("benchmarks.harness", "compressor.flows.run")
    assert _against_flow("targets.onnx", "benchmarks.harness")
    assert _against_flow("compressor.flows.run", "targets.base") is None
    assert _against_flow("benchmarks.suite.int8_sweep", "compressor.flows.fallback") is None
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "targets" in GRAPH["compressor.flows.run"]  # the walk sees imports inside functions


def test_no_module_over_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"modules over 400 lines (split them by job): {long}"
