"""docs/quality-checklist.yaml names, for each of the six invariants, the tests that hold it: each named test
must exist (a renamed or deleted test would leave an invariant silently untested)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECKLIST = ROOT / "docs" / "quality-checklist.yaml"


@cache
def _test_functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    )


def _named_tests() -> list[tuple[str, str, str]]:
    doc = yaml.safe_load(CHECKLIST.read_text(encoding="utf-8"))
    return [
        (invariant, rule, test)
        for invariant, body in doc["invariants"].items()
        for rule, checks in body["rules"].items()
        for test in checks["tests"]
    ]


def test_every_invariant_has_rules_with_a_reason_and_tests() -> None:
    doc = yaml.safe_load(CHECKLIST.read_text(encoding="utf-8"))
    invariants = doc["invariants"]
    assert sorted(int(name.split("-")[0]) for name in invariants) == [1, 2, 3, 4, 5, 6]
    for name, body in invariants.items():
        assert body["text"].strip(), name
        assert body["rules"], name
        for rule, checks in body["rules"].items():
            assert checks["why"].strip() and checks["tests"], (name, rule)


def test_every_named_test_exists() -> None:
    missing = []
    for invariant, rule, test in _named_tests():
        file, _, function = test.partition("::")
        path = ROOT / file
        if not path.is_file() or function not in _test_functions(path):
            missing.append(f"{invariant}/{rule}: {test}")
    assert not missing, "the checklist names tests that do not exist:\n" + "\n".join(missing)
