"""The import graph of the three packages: no cycles (module-level or inside functions), contracts as a leaf,
the pure stages (vision, liveness, privacy, the matcher) free of transport, service, CLI and backend code, and
one room per role: the terminal (`device`) imports neither the backend (`faceonly_backend`) nor the lab
(`faceonly_lab`); the backend does not import the lab. (The `faceonly` command names their subcommand modules
as strings in device.cli.COMMAND_MODULES; a terminal's code never imports them.)

Imports under `if TYPE_CHECKING:` are left out: they are never executed, so they cannot form a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("device", "faceonly_backend", "faceonly_lab")
ROOT = REPO / "device"
PURE = (
    "device.vision",
    "device.privacy",
    "device.identity.matcher",
    "device.identity.thresholds",
    "device.identity.claim",
    "device.access.policy",
    "device.access.schedule",
    "device.access.decide",
    "device.access.passes",
    "device.access.antipassback",
    "device.access.credentials",
)
OUTER = (
    "device.transport",
    "device.runtime.service",
    "device.cli",
    "faceonly_backend",
    "device.runtime.command_server",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in (p for package in PACKAGES for p in (REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_only(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip.update(id(n) for sub in node.body for n in ast.walk(sub))
    return skip


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    skip, found = _type_only(tree), set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.startswith(PACKAGES))
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PACKAGES)
        ):
            assert node.module is not None
            for a in node.names:
                target = _resolve(f"{node.module}.{a.name}")
                found.add(target if target not in (None, module) else _resolve(node.module))
    found.discard(module)
    found.discard(None)
    return {m for m in found if m is not None}


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_contracts_are_a_leaf() -> None:
    assert "device.contracts" in MODULES
    for module, targets in GRAPH.items():
        if module.startswith("device.contracts"):
            outside = sorted(t for t in targets if not t.startswith("device.contracts"))
            assert outside == [], f"{module} imports {outside}"


@pytest.mark.parametrize("layer", PURE)
def test_pure_stages_do_not_reach_outwards(layer: str) -> None:
    for module, targets in GRAPH.items():
        if module.startswith(layer):
            outward = sorted(t for t in targets if t.startswith(OUTER))
            assert outward == [], f"{module} imports {outward}"


def test_the_top_level_holds_packages_and_every_package_has_an_init() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"], top
    for folder in {p.parent for p in ROOT.rglob("*.py")}:
        assert (folder / "__init__.py").is_file(), f"{folder} holds modules but is not a package"


@pytest.mark.parametrize(
    ("room", "never"),
    [("device", ("faceonly_backend", "faceonly_lab")), ("faceonly_backend", ("faceonly_lab",))],
)
def test_each_role_keeps_to_its_room(room: str, never: tuple[str, ...]) -> None:
    assert any(m.startswith(never) for m in MODULES), "the rule must see the packages it keeps apart"
    for module, targets in GRAPH.items():
        if module == room or module.startswith(room + "."):
            crossing = sorted(t for t in targets if t.startswith(never))
            assert crossing == [], f"{module} imports {crossing}"


def test_the_rule_sees_a_crossing() -> None:
    tree = ast.parse("from faceonly_lab.bench import runner\nimport faceonly_backend.store\n")
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {_resolve(n) for n in names} == {"faceonly_lab.bench", "faceonly_backend.store"}


def test_the_command_line_loads_only_the_other_rooms_command_modules() -> None:
    """`faceonly run` registers every subcommand; the backend's and the lab's must not bring their code
    (database drivers, web server, plots) into the terminal's process, where it costs memory (about 9 MB
    for the backend's database drivers, measured by scripts/benchmark_terminal_rss.py)."""
    import subprocess
    import sys

    probe = (
        "import sys; from device.cli import build_parser; build_parser(); "
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith(('faceonly_backend', 'faceonly_lab', "
        "'psycopg', 'starlette', 'uvicorn', 'nats', 'matplotlib')))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert loaded, "the probe found not even the command modules"
    assert all(".cli" in m or m in ("faceonly_backend", "faceonly_lab") for m in loaded), sorted(loaded)
