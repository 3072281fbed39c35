"""Resolve every import statement of a function before it ships, so a missing module fails the deploy
instead of the first request.

A name resolves to, in this order (the order the runtime loader looks): a module of the function, the
standard library, a gateway dependency, or the fnstage SDK. A function module shadows a standard library
module of the same name, as a script's own folder does. Only static `import` statements are checked;
`importlib.import_module` and `__import__` calls are the function's own business.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping

from fnstage.build.files import ModuleFile

SDK = "fnstage"
NOT_FOUND = (
    "it is not a file of this function, the standard library, or a gateway dependency "
    "(add it with `fnstage deps set`)"
)

ImportNode = ast.Import | ast.ImportFrom
# Every field that holds statements (or handlers and match cases, which hold statements).
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


class ImportResolver:
    """Knows what one build can import; finds the import statements that name anything else."""

    def __init__(self, layout: Mapping[str, ModuleFile], dependencies: Iterable[str]) -> None:
        self._modules = frozenset(layout)
        self._top_level = frozenset(name.partition(".")[0] for name in layout)
        # Empty made-up packages (and the function's top folder, ""): what they offer is only submodules.
        self._empty_packages = frozenset(name for name, module in layout.items() if module.synthesized) | {""}
        self._external = sys.stdlib_module_names | frozenset(dependencies) | {SDK}

    def unresolved(
        self, tree: ast.Module, path: str, module: str, is_package: bool
    ) -> list[tuple[ImportNode, str]]:
        """Each import statement of `tree` that names something unknown, with the reason."""
        problems: list[tuple[ImportNode, str]] = []
        for node in import_statements(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    reason = self._absolute(alias.name)
                    if reason:
                        problems.append((node, _message(alias.name, path, node, reason)))
            else:
                problems.extend((node, message) for message in self._from(node, path, module, is_package))
        return problems

    def _absolute(self, name: str) -> str | None:
        top = name.partition(".")[0]
        if top in self._top_level:
            return None if name in self._modules else _no_module(name)
        return None if top in self._external else NOT_FOUND

    def _from(self, node: ast.ImportFrom, path: str, module: str, is_package: bool) -> list[str]:
        written = "." * node.level + (node.module or "")
        if node.level == 0:
            target = node.module or ""  # never empty: the grammar needs a module when there are no dots
            reason = self._absolute(target)
            if reason:
                return [_message(written, path, node, reason)]
            if target.partition(".")[0] not in self._top_level:
                return []  # names of outside modules are their attributes or submodules: not ours to check
        else:
            package = module.split(".") if is_package else module.split(".")[:-1]
            if node.level - 1 > len(package):
                return [_message(written, path, node, "it goes above the function's top folder")]
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            if target and target not in self._modules:
                return [_message(written, path, node, _no_module(target))]
        if target not in self._empty_packages:
            return []  # a name from a real module may be any attribute it defines
        prefix = f"{target}." if target else ""
        separator = "" if written.endswith(".") else "."
        return [
            _message(f"{written}{separator}{alias.name}", path, node, _no_module(prefix + alias.name))
            for alias in node.names
            if alias.name != "*" and prefix + alias.name not in self._modules
        ]


def import_statements(tree: ast.Module) -> Iterator[ImportNode]:
    """Imports are statements, so only blocks of statements are searched: a tenth of the nodes."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        else:
            for block in _BLOCKS:
                pending.extend(getattr(node, block, ()))


def _no_module(name: str) -> str:
    file = name.replace(".", "/")
    return f"this function has no file {file}.py or folder {file}/"


def _message(name: str, path: str, node: ImportNode, reason: str) -> str:
    return f"cannot resolve `{name}` imported by {path}:{node.lineno}: {reason}"
