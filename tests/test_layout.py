"""Shared test helpers live in `tests/support/` (issue 18): a test module never imports another, whose
tests would then run twice or whose fixtures would leak into the importer."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_test_module_imports_another() -> None:
    modules = {p.stem for p in TESTS.glob("test_*.py")} | {"conftest"}
    wrong = {
        path.name: sorted(m for m in _imported_modules(path) if m.removeprefix("tests.") in modules)
        for path in sorted(TESTS.glob("test_*.py"))
    }
    wrong = {name: imports for name, imports in wrong.items() if imports}
    assert not wrong, f"move what these import into tests/support/: {wrong}"
