"""No module over ~400 lines without a reason in its header (a paragraph starting "Size (").

A long module is usually several jobs; where it is one job kept whole on purpose, its docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 400
PACKAGES = ("device", "faceonly_backend", "faceonly_lab")


def test_long_modules_say_why_they_are_long() -> None:
    unexplained = []
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if "\nSize (" not in "\n" + doc:
            unexplained.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not unexplained, "split these, or say in the header why not:\n" + "\n".join(unexplained)
