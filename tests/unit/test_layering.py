"""The direction of imports, as a test: every `import` in the package — top-level, inside functions and under
TYPE_CHECKING alike — is read from the source, and the graph must keep these contracts.

(import-linter is the usual tool for this, but its graph builder only accepts top-level packages, and
`maildrill.harness` / `maildrill.fake_mta` are installed from their own folders; so the graph is built here.)

The layers, bottom up (a module may import its own layer and the ones below it):
- `maildrill.vocabulary`, `maildrill.polling` — the declared names (event kinds and their fields, behaviour
  kinds, toxic types) and the one deadline-bounded wait; they import nothing from maildrill
- `maildrill.fake_mta` — runs on its own; never imports `maildrill.harness`
- harness foundation: errors, events, clock, store, metrics, netcheck, children, bundled, polling
- `harness.scenario` — the validated model; nothing above it
- `harness.analysis` → `harness.verdict` → `harness.report` (pure: never run, load or faults)
- `harness.faults`, `harness.load` — the parts a run composes (neither imports the other, nor run)
- `harness.run` — composes the fleet, faults, load and report
- the front: cli, commands, pytest plugin, demos, assertions, strategies, the `maildrill` facade
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOTS = ("maildrill", "maildrill.harness", "maildrill.fake_mta", "maildrill.examples")
BOTTOM = ("maildrill.vocabulary", "maildrill.polling")  # import nothing from maildrill
FOUNDATION = ("errors", "events", "clock", "store", "metrics", "netcheck", "children", "bundled", "polling")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for root in ROOTS:
        base = Path(importlib.import_module(root).__path__[0])
        for f in sorted(base.rglob("*.py")):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([root, *parts])] = f
    return out


MODULES = _modules()


def _imported(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) for every maildrill module `name` imports, wherever the import statement stands."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            # `from package import submodule` depends on the submodule; `from package import name`, on the package
            targets = [*subs, *([base] if any(t not in MODULES for t in subs) else [])]
        else:
            continue
        for t in targets:
            if t in MODULES and t != name:
                yield t, node.lineno


GRAPH = {name: sorted(set(_imported(name, path))) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if module in BOTTOM:
        return "vocabulary"
    if module.startswith("maildrill.fake_mta"):
        return "fake_mta"
    if module.startswith("maildrill.examples"):
        return "examples"
    if module.startswith("maildrill.harness.") and len(parts) > 2:
        part = parts[2]
        return "foundation" if part in FOUNDATION else part
    return "front"


RANK = {"vocabulary": 0, "fake_mta": 1, "foundation": 2, "scenario": 3, "analysis": 4, "verdict": 5, "report": 6,
        "faults": 7, "load": 7, "run": 8}  # anything else (front, examples) may import any of these


def _edges() -> Iterator[tuple[str, str, int]]:
    for a, targets in GRAPH.items():
        for b, line in targets:
            yield a, b, line


def test_the_graph_is_read_from_every_module() -> None:
    assert "maildrill.fake_mta.session" in MODULES and "maildrill.harness.run.drill" in MODULES
    assert ("maildrill.harness.run.drill" in {a for a, b, _ in _edges() if b == "maildrill.harness.report"})


def test_each_layer_imports_only_its_own_and_lower_layers() -> None:
    bad = []
    for a, b, line in _edges():
        la, lb = _layer(a), _layer(b)
        if la in RANK and lb in RANK and (RANK[lb] > RANK[la] or (RANK[lb] == RANK[la] and la != lb)):
            bad.append(f"{MODULES[a]}:{line}: {a} ({la}) imports {b} ({lb})")
    assert bad == []


def test_fake_mta_never_imports_harness_or_examples() -> None:
    bad = [f"{MODULES[a]}:{line}: {a} imports {b}" for a, b, line in _edges()
           if a.startswith(("maildrill.fake_mta", *BOTTOM)) and not b.startswith(("maildrill.fake_mta", *BOTTOM))]
    assert bad == []


@pytest.mark.parametrize("layer", ["analysis", "verdict", "report"])
def test_analysis_verdict_and_report_never_import_run_load_or_faults(layer: str) -> None:
    bad = [f"{MODULES[a]}:{line}: {a} imports {b}" for a, b, line in _edges()
           if _layer(a) == layer and _layer(b) in ("run", "load", "faults")]
    assert bad == []


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_lazy_imports_included() -> None:
    assert _cycles() == []


def test_a_cycle_is_found_when_there_is_one() -> None:
    GRAPH["maildrill.fake_mta.clock"].append(("maildrill.fake_mta.server", 1))
    try:
        assert ["maildrill.fake_mta.clock", "maildrill.fake_mta.server"] in [
            [m for m in c if m in ("maildrill.fake_mta.clock", "maildrill.fake_mta.server")] for c in _cycles()]
    finally:
        GRAPH["maildrill.fake_mta.clock"].pop()
