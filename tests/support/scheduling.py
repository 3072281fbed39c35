"""How ./scripts/test spreads the tests over pytest-xdist's workers (`-n N --dist loadgroup`).

Each test goes to whichever worker is free, except the tests that use a module- or class-scoped fixture
(a server, a cluster, a built environment), directly or through another fixture of their module: those
of one module run together on one worker, so the fixture starts once, not once per worker. Groups go
out first, largest first, while single tests fill the gaps.

pytest-xdist's own `loadgroup` (tests marked `xdist_group`) renames each test's node id to carry its
group, which pytest 9.2 no longer allows (the id is derived, not stored); and the controller that
schedules sees node ids only. So the grouping is read here from the test module's source: which
fixtures are shared, and which tests ask for them by parameter. A test that reaches a shared fixture
another way (`request.getfixturevalue`) is not grouped: its fixture starts once more, nothing breaks.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

SHARED_SCOPES = ("module", "class")


def _fixture_decorator(function: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.expr | None:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if ast.unparse(target) in ("pytest.fixture", "fixture"):
            return decorator
    return None


def _keyword(decorator: ast.expr, name: str) -> object:
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == name and isinstance(keyword.value, ast.Constant):
                return keyword.value.value
    return None


@functools.cache
def grouped_tests(path: Path) -> frozenset[str] | None:
    """The names of the tests in `path` that use a shared fixture; None when every test does (an
    autouse one)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):  # not a test file of ours: no grouping
        return frozenset()
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    fixtures = {f: d for f in functions if (d := _fixture_decorator(f)) is not None}
    shared = {f.name for f, d in fixtures.items() if _keyword(d, "scope") in SHARED_SCOPES}
    if any(f.name in shared and _keyword(d, "autouse") is True for f, d in fixtures.items()):
        return None
    grew = True
    while grew:  # a function-scoped fixture built on a shared one shares it too
        users = {f.name for f in fixtures if shared & {a.arg for a in f.args.args}}
        grew = not users <= shared
        shared |= users
    return frozenset(
        f.name
        for f in functions
        if f.name.startswith("test") and f not in fixtures and shared & {a.arg for a in f.args.args}
    )


class SharedFixtureScheduling(LoadScopeScheduling):
    """One unit of work per test, or per module for its tests that share a fixture."""

    def __init__(self, config: pytest.Config, log: object | None = None) -> None:
        super().__init__(config, log)
        self.rootpath = config.rootpath

    def _split_scope(self, nodeid: str) -> str:
        path, _, rest = nodeid.partition("::")
        test = rest.rsplit("::", 1)[-1].split("[", 1)[0]
        sharing = grouped_tests(self.rootpath / path)
        return path if sharing is None or test in sharing else nodeid
