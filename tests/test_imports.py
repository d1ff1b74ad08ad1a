"""The shape of the house, read from the source: no service module imports
another service (shared code lives in ``labspace/`` or ``services/kit/``), and
there is no import circle in ``labspace/``, ``services/`` or ``spawners/``.

Imports are read with ``ast`` (every ``import`` and ``from ... import``, also
those inside functions and ``TYPE_CHECKING`` blocks are skipped), so a circle
hidden behind a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {  # source folder -> its import name
    "labspace": "labspace",
    "services": "labspace.services",
    "spawners": "labspace.spawners",
    "extensions": "labspace.extensions",
}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            if "migrations" in rel.parts:
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules ``name`` imports (resolving relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _type_checking(node)
        for child in node.body
        for n in ast.walk(child)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def service_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["labspace", "services"] and len(parts) > 2 and parts[2] != "kit":
        return parts[2]
    return None


def test_the_graph_is_read():
    g = graph()
    assert (
        "labspace.services.kit.web" in g["labspace.services.kit.run"]
        or g["labspace.services.kit.run"]
    ), "the walker found no imports at all"
    assert "labspace.settings" in g["labspace.hubconfig"]


def test_no_service_imports_another_service():
    crossing = sorted(
        f"{a} imports {b}"
        for a, targets in graph().items()
        for b in targets
        if service_of(a) and service_of(b) and service_of(a) != service_of(b)
    )
    assert crossing == []


def test_the_kit_imports_no_service():
    g = graph()
    assert (
        sorted(f"{a} imports {b}" for a in g if ".services.kit" in a for b in g[a] if service_of(b))
        == []
    )


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("folder", ["labspace", "services", "spawners"])
def test_no_import_circle(folder):
    package = FOLDERS[folder]
    g = {
        a: {b for b in targets if b.startswith(package + ".") or b == package}
        for a, targets in graph().items()
        if a.startswith(package + ".") or a == package
    }
    if folder == "labspace":  # labspace.services/spawners/extensions are other folders
        others = tuple(FOLDERS[f] for f in FOLDERS if f != "labspace")
        g = {
            a: {b for b in t if not b.startswith(others)}
            for a, t in g.items()
            if not a.startswith(others)
        }
    assert cycles(g) == []


def test_cycles_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
