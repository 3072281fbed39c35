"""The configuration keys a function declares it needs: `CONFIG = [...]` and `SECRETS = [...]` at the
top level of its entrypoint, lists (or tuples) of key names as string literals.

Found by reading the syntax tree, never by running the code: a build refuses a declaration it cannot
read (naming file and line), and a release into an environment whose configuration lacks a declared
key is refused naming the missing keys (`service.configuration.missing_keys`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from fnstage.build.syntax_tree import parse
from fnstage.domain.errors import BuildFailed
from fnstage.domain.keys import check_key

NAMES = ("CONFIG", "SECRETS")


@dataclass(frozen=True)
class DeclaredKeys:
    config: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()


def declared_keys(source: str, path: str = "index.py") -> DeclaredKeys:
    try:
        tree = parse(source, path)
    except SyntaxError:
        return DeclaredKeys()  # the build reports syntax errors itself
    return declared_in(tree, path)


def declared_in(tree: ast.Module, path: str) -> DeclaredKeys:
    found: dict[str, tuple[str, ...]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in NAMES:
                found[target.id] = _keys(value, target.id, path, stmt.lineno)
    return DeclaredKeys(found.get("CONFIG", ()), found.get("SECRETS", ()))


def _keys(value: ast.expr | None, name: str, path: str, line: int) -> tuple[str, ...]:
    where = f"{path}:{line}"
    if not isinstance(value, ast.List | ast.Tuple) or not all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
    ):
        raise BuildFailed(
            f'{where}: {name} must be a list of key names as string literals, e.g. {name} = ["DATABASE_URL"]',
            field="files",
            details=[{"file": path, "line": line, "col": None, "message": f"{name}: not a list of strings"}],
        )
    keys = tuple(e.value for e in value.elts)  # type: ignore[attr-defined]
    for key in keys:
        check_key(key, field=f"{where} {name}")
    return keys
